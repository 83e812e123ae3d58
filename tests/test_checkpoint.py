"""Official checkpoints: the key layout, backbone detection, the strict and safe loader, and
rvos's own save/load round trip.

``manifests.json`` (parity fixtures) gives the exact state_dict layout of the nine released
backbones. Fake checkpoints are built from it with every tensor a stride-0 view of one number:
the shapes are real, the files are a few kilobytes.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch

from rvos.modeling import ReferFormerConfig, build_referformer
from rvos.zoo.checkpoint import (
    IGNORED_KEYS,
    CheckpointError,
    detect_backbone,
    load_official,
    load_pretrained,
    rename_official_key,
    save_pretrained,
)

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

# How a layout name is spelled for people, in the loader's messages.
DISPLAY = {
    "resnet50": "ResNet-50", "resnet101": "ResNet-101", "swin_t_p4w7": "Swin-T",
    "swin_s_p4w7": "Swin-S", "swin_b_p4w7": "Swin-B", "swin_l_p4w7": "Swin-L",
    "video_swin_t_p4w7": "Video-Swin-T", "video_swin_s_p4w7": "Video-Swin-S",
    "video_swin_b_p4w7": "Video-Swin-B",
}
POSITION_IDS = "text_encoder.embeddings.position_ids"


@pytest.fixture(scope="module")
def manifests(parity_dir: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    raw = json.loads((parity_dir / "manifests.json").read_text())
    return {name: {k: tuple(shape) for k, shape in keys.items()} for name, keys in raw.items()}


def fake_state(shapes: dict[str, tuple[int, ...]], device: str = "cpu") -> dict[str, torch.Tensor]:
    """A state_dict with these keys and shapes (values are one repeated zero), plus the
    2022 ``position_ids`` buffer, as released files carry it."""
    if device == "meta":
        state = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    else:
        zero = torch.zeros(())
        state = {k: zero.expand(s) for k, s in shapes.items()}
    state[POSITION_IDS] = torch.zeros((), dtype=torch.long).expand(1, 514)
    return state


def save_official(path: Path, state: dict) -> Path:
    """The released file format: {'model': ..., 'args': Namespace, 'epoch': int}."""
    torch.save({"model": state, "args": argparse.Namespace(backbone="x"), "epoch": 5}, path)
    return path


def meta_model(backbone: str):
    with torch.device("meta"):
        return build_referformer(ReferFormerConfig(backbone=backbone))


# -------------------------------------------------------------------------- layout
@pytest.mark.parametrize("backbone", ["resnet50", "resnet101"])
def test_model_has_exactly_the_official_keys_and_shapes(manifests, backbone):
    """The released configuration (default ReferFormerConfig, roberta-base text encoder) has
    the official state_dict after the rename table, key for key and shape for shape."""
    official = {rename_official_key(k): s for k, s in manifests[backbone].items()
                if k not in IGNORED_KEYS}
    assert len(official) == len(manifests[backbone]), "two official keys map to one rvos key"
    ours = {k: tuple(v.shape) for k, v in meta_model(backbone).state_dict().items()}
    assert sorted(set(official) - set(ours)) == []
    assert sorted(set(ours) - set(official)) == []
    assert {k: s for k, s in ours.items() if official[k] != s} == {}


def test_released_config_predicts_2153_dynamic_mask_parameters(manifests):
    """3 dynamic 1×1 layers: (256 + 2 relative coords)·8 + 8·8 + 8·1 weights + 8 + 8 + 1 biases."""
    model = meta_model("resnet50")
    assert model.controller.layers[-1].out_features == 2153
    assert manifests["resnet50"]["controller.layers.2.weight"] == (2153, 256)


@pytest.mark.parametrize("backbone", list(DISPLAY))
def test_detect_backbone_identifies_every_official_layout(manifests, backbone):
    assert detect_backbone(fake_state(manifests[backbone], device="meta")) == backbone


def test_detect_backbone_without_backbone_keys_says_so(manifests):
    state = {k: v for k, v in fake_state(manifests["resnet50"], "meta").items()
             if not k.startswith("backbone.")}
    with pytest.raises(CheckpointError, match="cannot tell the backbone"):
        detect_backbone(state)


@pytest.mark.parametrize("backbone", [b for b in DISPLAY if "swin" in b])
def test_swin_checkpoint_asked_as_resnet_is_refused_with_both_names(manifests, tmp_path,
                                                                    backbone):
    """Swin and Video-Swin files load (tests/test_swin.py); asked for as another backbone, the
    message names what the file holds."""
    path = save_official(tmp_path / f"{backbone}.pth", fake_state(manifests[backbone]))
    assert path.stat().st_size < 1_000_000  # stride-0 tensors: shapes without data
    with pytest.raises(CheckpointError, match=f"holds a {DISPLAY[backbone]} model, not "
                                              f"ResNet-50: pass backbone='{backbone}'"):
        load_official(path, text_encoder="unused", backbone="resnet50")


# -------------------------------------------------------------------------- bad files
def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello, this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        load_official(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nowhere.pth"):
        load_official(tmp_path / "nowhere.pth")


def test_file_without_a_model_entry_says_what_it_expected(tmp_path):
    path = tmp_path / "optimizer.pth"
    torch.save({"epoch": 3, "lr": 1e-4}, path)
    with pytest.raises(CheckpointError, match="holds no model state_dict .*'model' entry"):
        load_official(path)


def test_truncated_checkpoint_says_download_again(tmp_path, parity_dir):
    """The first megabyte of a real checkpoint (an interrupted download)."""
    source = parity_dir / "referformer_r50" / "checkpoint.pth"
    if not source.is_file():
        pytest.skip(f"no parity checkpoint at {source}")
    path = tmp_path / "partial.pth"
    with open(source, "rb") as f:
        path.write_bytes(f.read(1 << 20))
    with pytest.raises(CheckpointError, match="is truncated or corrupt.*download it again"):
        load_official(path)


class _RunsACommand:
    """Unpickling this calls os.system: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_pickle_carrying_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": _RunsACommand(marker)}, path)
    with pytest.raises(CheckpointError, match=r"refused: .*Python objects other than tensors "
                                              r"\((posix|nt|os)\.system\)"):
        load_official(path)
    assert not marker.exists(), "the payload ran"


class _CustomDict(dict):
    pass


def test_pickle_carrying_an_unknown_class_is_refused(tmp_path):
    path = tmp_path / "custom.pth"
    torch.save({"model": _CustomDict(w=torch.ones(2))}, path)
    with pytest.raises(CheckpointError, match="refused.*_CustomDict"):
        load_official(path)


def test_checkpoint_of_another_backbone_than_asked(parity_dir):
    path = parity_dir / "referformer_r50" / "checkpoint.pth"
    if not path.is_file():
        pytest.skip(f"no parity checkpoint at {path}")
    with pytest.raises(CheckpointError,
                       match="holds a ResNet-50 model, not ResNet-101: pass backbone='resnet50'"):
        load_official(path, text_encoder=path.parent / "text_encoder", backbone="resnet101")


def test_missing_text_encoder_folder(manifests, tmp_path):
    path = save_official(tmp_path / "r50.pth", fake_state(manifests["resnet50"]))
    with pytest.raises(CheckpointError, match="text encoder folder not found: .*no_such_folder"):
        load_official(path, text_encoder=tmp_path / "no_such_folder")


def test_text_encoder_folder_without_tokenizer(manifests, tmp_path):
    path = save_official(tmp_path / "r50.pth", fake_state(manifests["resnet50"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no usable RoBERTa tokenizer in .*empty"):
        load_official(path, text_encoder=tmp_path / "empty")


def test_text_encoder_of_another_size_is_named(manifests, parity_dir, tmp_path):
    """A roberta-base checkpoint with the parity fixture's 1-layer text-encoder folder."""
    folder = parity_dir / "referformer_r50" / "text_encoder"
    if not folder.is_dir():
        pytest.skip(f"no parity text encoder at {folder}")
    path = save_official(tmp_path / "r50.pth", fake_state(manifests["resnet50"]))
    with pytest.raises(CheckpointError, match="(?s)unexpected key.*text encoder differs"):
        load_official(path, text_encoder=folder)


# -------------------------------------------------------------------------- rvos's own format
def test_save_and_load_pretrained_round_trip(make_tiny_model, tmp_path):
    model = make_tiny_model()
    folder = save_pretrained(model, tmp_path / "model", note="round trip")
    assert {p.name for p in folder.iterdir()} >= {"model.safetensors", "config.json",
                                                  "tokenizer"}
    loaded = load_pretrained(folder)
    assert not loaded.training
    assert loaded.config == model.config
    assert loaded.metadata["note"] == "round trip"
    captions = ["the red ball", "a dog running on the grass"]
    assert loaded.tokenizer(captions)["input_ids"] == model.tokenizer(captions)["input_ids"]
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    frames = torch.randn(2, 2, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = model(frames, captions), loaded(frames, captions)
    for key in ("pred_logits", "pred_boxes", "pred_masks", "reference_points"):
        assert torch.equal(got[key], want[key]), key


def test_load_pretrained_names_the_missing_file(make_tiny_model, tmp_path):
    folder = save_pretrained(make_tiny_model(), tmp_path / "model")
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="not an rvos model folder: config.json is missing"):
        load_pretrained(folder)


def test_load_pretrained_refuses_corrupt_weights(make_tiny_model, tmp_path):
    folder = save_pretrained(make_tiny_model(), tmp_path / "model")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        load_pretrained(folder)


@pytest.mark.parametrize("num_classes", [1, 2])
def test_class_head_width_is_read_from_the_weights(tiny_text_folder, tmp_path, num_classes):
    """Ref-YouTube-VOS files have one class (--binary); a file with a wider class head (as the
    A2D models may have) loads with that width instead of failing on the shapes."""
    text = json.loads((tiny_text_folder / "config.json").read_text())
    config = ReferFormerConfig(backbone="resnet50", num_classes=num_classes, text=text)
    with torch.device("meta"):
        layout = build_referformer(config).state_dict()
    state = {k.replace("backbone.body.", "backbone.0.body.", 1):
             torch.tensor(0.01).expand(v.shape) for k, v in layout.items()}
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": state}, path)
    model = load_official(path, text_encoder=tiny_text_folder)
    assert model.config.num_classes == num_classes
    assert model.class_embed[0].weight.shape[0] == num_classes
