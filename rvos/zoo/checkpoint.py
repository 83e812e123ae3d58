"""Loading released ReferFormer checkpoints, and saving / loading rvos's own models.

A released file is ``torch.save({'model': state_dict, 'args': argparse.Namespace, ...})``. It is
read with ``weights_only=True`` (only tensors, containers and ``argparse.Namespace`` may be
unpickled: nothing in a downloaded file can run code). Our module names follow the official
ones, so the rename table is short; the keys we accept and drop are named with their reason.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from rvos.errors import RvosError
from rvos.modeling import ReferFormer, ReferFormerConfig, build_referformer
from rvos.modeling.presence_head import HEAD_FILE, load_presence_head
from rvos.modeling.roberta import RobertaConfig
from rvos.modeling.tokenizer import TextTokenizer
from rvos.zoo.hub import text_encoder_folder
from rvos.zoo.registry import BACKBONE_NAMES

# (official prefix, rvos prefix): the official detector wraps the backbone in a Joiner
# (index 0 = backbone, index 1 = position embedding).
RENAMES: list[tuple[str, str]] = [("backbone.0.body.", "backbone.body.")]

# Keys a released checkpoint may carry that rvos ignores, with why.
IGNORED_KEYS: dict[str, str] = {
    "text_encoder.embeddings.position_ids":
        "a buffer transformers < 4.31 saved; positions are computed from the padding instead",
}
IGNORED_SUFFIXES: dict[str, str] = {
    "total_ops": "FLOP counters left by the thop profiler",
    "total_params": "parameter counters left by the thop profiler",
}


class CheckpointError(RvosError, ValueError):
    """A checkpoint file that rvos cannot (or will not) load; the message says why."""


def rename_official_key(key: str) -> str:
    for old, new in RENAMES:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def _is_ignored(key: str) -> bool:
    return key in IGNORED_KEYS or key.rsplit(".", 1)[-1] in IGNORED_SUFFIXES


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, argparse.Namespace | None]:
    """Safely read a released checkpoint -> (state_dict, args or None)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        # The weights-only unpickler names the class or function a pickle asked for as
        # "GLOBAL module.name"; "Unsupported operand" only means the bytes are no pickle at all.
        found = re.search(r"GLOBAL ([\w.]+)", msg)
        if found or "Unsupported global" in msg:
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"{path} was refused: it holds Python objects other than tensors{what}; rvos never "
                "runs code from a checkpoint. Use a released ReferFormer .pth or an rvos "
                "safetensors model") from None
        if "truncated" in msg:
            raise CheckpointError(f"{path} is truncated or corrupt; download it again") from None
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (neither the zip archive nor the pickle that "
            "torch.save writes)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "central directory" in first or isinstance(e, EOFError) or "failed reading" in first:
            raise CheckpointError(
                f"{path} is truncated or corrupt ({first}); download it again") from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({first})") from None
    except Exception as e:
        # Arbitrary bytes read as a legacy pickle fail in arbitrary ways (a text file starting
        # with "he" is a memo lookup, KeyError 101): none of them is a checkpoint.
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        state, args = obj["model"], obj.get("args")
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, args = obj, None
    else:
        raise CheckpointError(
            f"{path} holds no model state_dict (expected a dict with a 'model' entry, as the "
            "released ReferFormer checkpoints have)")
    return state, args if isinstance(args, argparse.Namespace) else None


def detect_backbone(state: dict) -> str:
    """Which of the nine official backbones a state_dict was trained with."""
    keys = [k for k in state if k.startswith("backbone.")]
    if any(".body.layer3." in k for k in keys):
        blocks = {int(m.group(1)) for k in keys if (m := re.search(r"\.layer3\.(\d+)\.", k))}
        return "resnet101" if len(blocks) > 6 else "resnet50"
    embed = next((state[k] for k in keys if k.endswith("patch_embed.proj.weight")), None)
    if embed is None:
        raise CheckpointError("cannot tell the backbone: no ResNet or Swin backbone keys found")
    video = embed.dim() == 5
    dim = embed.shape[0]
    stage3 = {int(m.group(1)) for k in keys if (m := re.search(r"layers\.2\.blocks\.(\d+)\.", k))}
    size = {96: "t" if len(stage3) <= 6 else "s", 128: "b", 192: "l"}.get(dim)
    if size is None:
        raise CheckpointError(f"unknown Swin width {dim} in the backbone")
    return f"{'video_' if video else ''}swin_{size}_p4w7"


def _text_config_from_state(state: dict) -> dict:
    """RoBERTa architecture read off the weights (used when no config.json is at hand)."""
    emb = "text_encoder.embeddings."
    vocab, hidden = state[emb + "word_embeddings.weight"].shape
    layers = {int(m.group(1)) for k in state
              if (m := re.match(r"text_encoder\.encoder\.layer\.(\d+)\.", k))}
    return {
        "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": len(layers),
        "num_attention_heads": max(1, hidden // 64),
        "intermediate_size":
            state["text_encoder.encoder.layer.0.intermediate.dense.weight"].shape[0],
        "max_position_embeddings": state[emb + "position_embeddings.weight"].shape[0],
        "type_vocab_size": state[emb + "token_type_embeddings.weight"].shape[0],
        "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
    }


def load_text_side(text_encoder: str | os.PathLike):
    """(RobertaConfig dict or None, tokenizer) from a local folder or a hub id.

    A local folder must hold the tokenizer files (and ideally config.json); it is read with
    `rvos.modeling.tokenizer.TextTokenizer`, without transformers. A hub id is read from the Hugging
    Face cache, else fetched with one bounded try (`rvos.zoo.hub.text_encoder_folder`, which raises
    `rvos.zoo.hub.TextEncoderError`).
    """
    source = str(text_encoder)
    folder = Path(source).expanduser()
    if folder.is_dir():
        try:
            tokenizer = TextTokenizer.from_pretrained(folder)
        except Exception as e:
            raise CheckpointError(
                f"no usable RoBERTa tokenizer in {folder} ({type(e).__name__}); the folder must "
                "hold vocab.json + merges.txt (or tokenizer.json) as saved by "
                "tokenizer.save_pretrained()") from None
        config = None
        if (folder / "config.json").is_file():
            try:
                config = RobertaConfig.from_dict(
                    json.loads((folder / "config.json").read_text(encoding="utf-8"))).to_dict()
            except (ValueError, TypeError, AttributeError) as e:
                raise CheckpointError(
                    f"{folder / 'config.json'} is not a RoBERTa config ({e})") from None
        return config, tokenizer
    if os.sep in source and not source.count("/") == 1:
        raise CheckpointError(f"text encoder folder not found: {source}")
    # A Hub id: its tokenizer files (and config.json) fetched once with a bounded wait and no
    # retries (`rvos.zoo.hub.text_encoder_folder`); a failure is remembered for a minute.

    return load_text_side(text_encoder_folder(source))


def load_official(path: str | os.PathLike, text_encoder: str | os.PathLike = "roberta-base",
                  backbone: str | None = None, device: str | torch.device = "cpu") -> ReferFormer:
    """Build ReferFormer from a released checkpoint, in eval mode.

    Arguments:
        path: the released ``.pth`` file.
        text_encoder: a hub id or a local folder with the RoBERTa config and tokenizer.
        backbone: expected backbone (``resnet50``, ...); None = detect from the weights.
        device: where to put the model.
    """
    state, _ = read_checkpoint(path)
    found = detect_backbone(state)
    if backbone is not None and backbone != found:
        raise CheckpointError(
            f"{path} holds a {BACKBONE_NAMES.get(found, found)} model, not "
            f"{BACKBONE_NAMES.get(backbone, backbone)}: pass backbone={found!r} or None")
    text_config, tokenizer = load_text_side(text_encoder)
    # The Ref-YouTube-VOS models were trained with --binary (one class); the authors' A2D
    # models may not be, so the class head's width is read from the weights.
    head = state.get("class_embed.0.weight")
    num_classes = int(head.shape[0]) if head is not None else 1
    config = ReferFormerConfig(backbone=found, num_classes=num_classes,
                               text=text_config or _text_config_from_state(state))
    with torch.device("meta"):
        model = build_referformer(config, tokenizer)
    renamed = {rename_official_key(k): v for k, v in state.items() if not _is_ignored(k)}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    wrong = sorted(k for k in set(expected) & set(renamed)
                   if tuple(expected[k].shape) != tuple(renamed[k].shape))
    if missing or unexpected or wrong:
        raise CheckpointError(_mismatch_message(path, missing, unexpected, wrong, renamed,
                                                expected))
    model = build_referformer(config, tokenizer)
    model.load_state_dict(renamed, strict=True)
    return model.to(device).eval()


def _mismatch_message(path, missing, unexpected, wrong, got, expected) -> str:
    def show(keys):
        return ", ".join(keys[:8]) + (f" … (+{len(keys) - 8})" if len(keys) > 8 else "")

    parts = [f"{path} does not match the ReferFormer architecture rvos builds:"]
    if missing:
        parts.append(f"{len(missing)} missing key(s): {show(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {show(unexpected)}")
    if wrong:
        parts.append("shape mismatch: " + show(
            [f"{k} {tuple(got[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong]))
    if any(k.startswith("text_encoder.") for k in wrong):
        parts.append("the text encoder differs: pass the matching text_encoder= folder")
    return "\n".join(parts)


# ---------------------------------------------------------------------- rvos's own format
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"


def save_pretrained(model: ReferFormer, folder: str | os.PathLike, **metadata) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (+ ``tokenizer/``) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(
        {"architecture": "ReferFormer", "config": model.config.to_dict(), **metadata},
        indent=2) + "\n")
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
    return folder


def load_pretrained(folder: str | os.PathLike, device: str | torch.device = "cpu"
                    ) -> ReferFormer:
    """Load a model written by ``save_pretrained``, in eval mode."""
    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder} is not an rvos model folder: {name} is missing")
    meta = json.loads((folder / CONFIG_FILE).read_text())
    config = ReferFormerConfig.from_dict(meta["config"])
    tokenizer = None
    if (folder / TOKENIZER_DIR).is_dir():
        tokenizer = TextTokenizer.from_pretrained(folder / TOKENIZER_DIR)
    model = build_referformer(config, tokenizer)
    try:
        missing, unexpected = load_model(model, str(folder / WEIGHTS_FILE), strict=False)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{folder / WEIGHTS_FILE} is corrupt ({e})") from None
    # Tied copies (the decoder's view of the box heads) are stored once.
    missing = [k for k in missing if not k.startswith("transformer.decoder.bbox_embed.")]
    if missing or unexpected:
        raise CheckpointError(f"{folder} does not match its config: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    model.metadata = {k: v for k, v in meta.items() if k != "config"}
    try:
        head = load_presence_head(folder, model.metadata)
    except (SafetensorError, OSError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{folder / HEAD_FILE} does not fit its config ({e})") from None
    if head is not None:
        # Beside the model, not inside it: its state dict and precision stay the paper's.
        object.__setattr__(model, "presence_head", head.to(device))
    return model.to(device).eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
