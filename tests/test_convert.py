"""``python -m rvos convert``: an official checkpoint (the parity one, in the released format, with
its 1-layer text encoder) becomes a self-contained folder: safetensors, config.json, tokenizer
files and a model card. ``load_model`` reads it from disk, or as ``hf://OWNER/REPO`` from the
Hugging Face Hub's cache with the Hub client offline, and gets exactly `load_official`'s
outputs, without fetching ``roberta-base`` or anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rvos.cli import convert as cv
from rvos.modeling.processing import preprocess
from rvos.zoo.checkpoint import load_official
from rvos.zoo.download import sha256_of
from rvos.zoo.loader import load_model
from rvos.zoo.registry import get_model_info

ROOT = Path(__file__).resolve().parents[1]
REPO_ID = "rvos-test/referformer-ytvos-r50"
SHORT_SIDE = 96  # a small input keeps the ResNet-50 forward well under a second

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def case(parity_dir: Path) -> Path:
    folder = parity_dir / "referformer_r50"
    if not (folder / "checkpoint.pth").is_file():
        pytest.skip(f"no parity checkpoint at {folder}")
    return folder


def run_convert(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="rvos convert")
    cv.add_cli_arguments(parser)
    return cv.run_cli(parser.parse_args(list(argv)))


@pytest.fixture(scope="module")
def cache(case: Path, tmp_path_factory) -> Path:
    """A download cache holding the parity checkpoint under ytvos-r50's registry file name."""
    folder = tmp_path_factory.mktemp("cache")
    (folder / get_model_info("ytvos-r50").filename).symlink_to(case / "checkpoint.pth")
    return folder


@pytest.fixture(scope="module")
def converted(case: Path, cache: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "referformer-ytvos-r50"
    code = run_convert("ytvos-r50", "--out", str(out), "--cache-dir", str(cache),
                       "--text-encoder", str(case / "text_encoder"), "--repo-id", REPO_ID,
                       "--quiet")
    assert code == 0
    return out


@pytest.fixture(scope="module")
def clip(case: Path) -> tuple[torch.Tensor, str]:
    """Two frames of the parity clip (real footage) at a small size, and its caption."""
    inputs = torch.load(case / "inputs.pt", weights_only=True)
    return preprocess(inputs["frames_uint8"][:2], SHORT_SIDE), inputs["caption"]


def forward(model, clip: tuple[torch.Tensor, str]) -> dict[str, torch.Tensor]:
    x, caption = clip
    with torch.inference_mode():
        out = model(x, [caption])
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


@pytest.fixture(scope="module")
def reference(case: Path, clip) -> dict[str, torch.Tensor]:
    """`load_official`'s outputs on the clip: what every converted form must reproduce."""
    model = load_official(case / "checkpoint.pth", text_encoder=case / "text_encoder")
    return forward(model, clip)


def assert_identical(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want) and {"pred_logits", "pred_boxes", "pred_masks"} <= set(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key


def test_convert_writes_weights_config_tokenizer_and_a_model_card(converted, case):
    names = sorted(p.relative_to(converted).as_posix() for p in converted.rglob("*")
                   if p.is_file())
    assert names[:3] == ["README.md", "config.json", "model.safetensors"]
    assert any(n.startswith("tokenizer/") for n in names)
    meta = json.loads((converted / "config.json").read_text())
    # The text encoder's architecture travels in config.json: no roberta-base config to fetch.
    text_config = json.loads((case / "text_encoder" / "config.json").read_text())
    assert meta["config"]["text"]["num_hidden_layers"] == text_config["num_hidden_layers"] == 1
    assert meta["config"]["text"]["vocab_size"] == text_config["vocab_size"]
    assert meta["source"]["sha256"] == sha256_of(case / "checkpoint.pth")
    assert meta["name"] == "ytvos-r50" and meta["input_short_side"] == 360
    card = (converted / "README.md").read_text()
    front = card.split("---\n")[1]
    assert "license: apache-2.0" in front and "library_name: rvos" in front
    assert "| Ref-YouTube-VOS | J&F | 55.6 |" in card  # the published scores
    assert "| Ref-DAVIS17 | J&F | 58.5 |" in card
    assert "@inproceedings{wu2022referformer" in card and "Apache License 2.0" in card
    assert f'load_model("hf://{REPO_ID}")' in card and meta["source"]["sha256"] in card


def test_converted_folder_gives_load_officials_outputs_exactly(converted, clip, reference):
    model = load_model(str(converted))
    assert not model.training
    assert_identical(forward(model, clip), reference)


def _hub_cache(folder: Path, root: Path, repo_id: str) -> Path:
    """The layout huggingface_hub's snapshot_download leaves: refs/main names a commit whose
    snapshot folder holds the files (real copies here, where the client would link blobs)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return root


def test_hf_uri_loads_from_the_hub_cache_offline(converted, case, clip, reference, tmp_path):
    hub_cache = _hub_cache(converted, tmp_path / "hub", REPO_ID)
    torch.save({"x": clip[0], "caption": clip[1]}, tmp_path / "clip.pt")
    with socket.socket() as s:  # any request the client still made would be refused here
        s.bind(("127.0.0.1", 0))
        dead_endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = dict(os.environ, HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1",
               HF_ENDPOINT=dead_endpoint, PYTHONPATH=str(ROOT))
    script = f"""
import sys, torch
torch.set_num_threads(1)
from rvos import load_model
model = load_model("hf://{REPO_ID}")
clip = torch.load(sys.argv[1], weights_only=True)
with torch.inference_mode():
    out = model(clip["x"], [clip["caption"]])
torch.save({{k: v for k, v in out.items() if isinstance(v, torch.Tensor)}}, sys.argv[2])
"""
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "clip.pt"),
                           str(tmp_path / "out.pt")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_identical(torch.load(tmp_path / "out.pt", weights_only=True), reference)



def test_hf_uri_not_in_the_cache_offline_is_one_clear_line(tmp_path, capsys):
    from rvos.cli.predict import add_cli_arguments, run_cli

    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    args = parser.parse_args([str(ROOT / "examples" / "bigbuckbunny.mp4"), "--model",
                              "hf://rvos-test/not-cached", "--text", "the rabbit", "--out",
                              str(tmp_path / "o")])
    assert run_cli(args) == 2  # offline: conftest's RVOS_OFFLINE=1, so the Hub is never asked
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "hf://rvos-test/not-cached is not in the Hugging Face cache" in err
    assert "offline mode is on" in err


def test_convert_refuses_clearly(converted, cache, tmp_path, capsys):
    assert run_convert("ytvos-r50", "--out", str(converted), "--cache-dir", str(cache)) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert run_convert(f"hf://{REPO_ID}", "--out", str(tmp_path / "a")) == 2
    assert "already an rvos model folder" in capsys.readouterr().err
    assert run_convert("ytvos-r5", "--out", str(tmp_path / "b")) == 2
    assert "did you mean ytvos-r50" in capsys.readouterr().err
    # Offline (conftest's default) and not in the cache: today's one-line instructions.
    assert run_convert("ytvos-r101", "--out", str(tmp_path / "c"), "--cache-dir",
                       str(cache)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "python -m rvos download ytvos-r101" in err
    assert not (tmp_path / "c").exists()
