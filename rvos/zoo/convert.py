"""Convert a checkpoint into a self-contained rvos model folder, the one to upload to the Hub.

    python -m rvos convert ytvos-r50 --out referformer-ytvos-r50 [--repo-id OWNER/REPO]
    hf upload OWNER/REPO referformer-ytvos-r50 .
    python -m rvos predict clip.mp4 --model hf://OWNER/REPO --text "..." --out out/

The folder holds ``model.safetensors`` (every weight, the text encoder's included, in a format
that cannot run code), ``config.json`` (the architecture, the RoBERTa configuration among it,
and where the weights came from), ``tokenizer/`` (the text encoder's tokenizer files) and a model
card ``README.md`` (what the model is, its published scores, how to use it, the citation, the
licence). It loads with ``load_model(folder)`` or, once on the Hub, ``load_model("hf://OWNER/
REPO")`` without fetching ``roberta-base`` or anything else.

The source is a registry name (an official checkpoint, downloaded on first use like everywhere
else; ``builtin``) or an official ``.pth`` file. Before the folder takes its final name, it is
read back and every tensor compared with the converted model's: the conversion changes the
format, never a value.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rvos.errors import RvosError
from rvos.zoo import download as dl
from rvos.zoo import registry
from rvos.zoo.registry import ModelInfo

__all__ = ["ConvertError", "convert", "model_card"]


class ConvertError(RvosError, ValueError):
    """A conversion that cannot be done as asked; the message says why and what to do."""


def _identify(source: str) -> tuple[ModelInfo | None, Path | None]:
    """(registry entry, file) of `source`: a registry name, or a file whose name is a registry
    file name (a hand-made download), or any other official file (no entry)."""
    if source in registry.MODELS:
        return registry.get_model_info(source), None
    # lazy: `rvos --help`, `models` and `download` start without torch
    from rvos.zoo import hub

    if hub.is_hub_uri(source):
        raise ConvertError(f"{source} is already an rvos model folder on the Hub; nothing to do")
    path = Path(source).expanduser()
    if path.is_dir():
        raise ConvertError(f"{path} is a folder; convert takes a registry name or a .pth file")
    if not path.is_file():
        registry.get_model_info(source)  # UnknownModelError with the close names
    by_file = {m.filename: m for m in registry.list_models() if m.filename}
    return by_file.get(path.name), path


def _metadata(info: ModelInfo | None, path: Path, model: Any) -> dict[str, Any]:
    # lazy: `rvos --help`, `models` and `download` start without torch
    from rvos import __version__

    meta: dict[str, Any] = dict(getattr(model, "metadata", None) or {})
    meta.pop("architecture", None)
    meta["name"] = info.name if info is not None else path.stem
    meta["converted_by"] = f"rvos {__version__}"
    if info is not None:
        meta["training_data"] = info.training_data
        meta["scores"] = [
            {"benchmark": s.benchmark, "metric": s.metric, "value": s.value} for s in info.scores
        ]
    if info is None or info.kind == "official":
        meta.setdefault("input_short_side", 360)  # the released models' test-time resize
        meta["source"] = {
            "file": path.name,
            "size_bytes": path.stat().st_size,
            "sha256": dl.sha256_of(path),
            "url": info.url if info is not None else None,
        }
    return meta


def model_card(
    meta: dict[str, Any],
    config: dict[str, Any],
    num_parameters: int,
    info: ModelInfo | None,
    repo_id: str | None = None,
) -> str:
    """The folder's README.md: Hub front matter, then what the model is, how to use it, its
    published scores, its files and origin, the citation and the licence."""
    official = info is None or info.kind == "official"
    backbone = config.get("backbone", "?")
    shown = registry.BACKBONE_NAMES.get(backbone, backbone)
    repo = repo_id or "OWNER/REPO"
    name = meta["name"]
    license_id = registry.OFFICIAL_LICENSE
    lines = [
        "---",
        f"license: {license_id}",
        "library_name: rvos",
        "tags:",
        "- referring-video-object-segmentation",
        "- video-object-segmentation",
        "- referformer",
        "---",
        "",
        f"# ReferFormer {shown}: `{name}`",
        "",
    ]
    if info is not None and official:
        lines.append(
            f"ReferFormer (*Language as Queries for Referring Video Object Segmentation*, Wu et "
            f"al., CVPR 2022) with a {shown} backbone, trained on {info.training_data}: the "
            f"authors' released checkpoint `{meta['source']['file']}`, converted by "
            f"{meta['converted_by']} into safetensors together with its text encoder's "
            "configuration and tokenizer, so that it loads without any other download."
        )
    elif official:
        lines.append(
            f"A ReferFormer checkpoint with a {shown} backbone (`{meta['source']['file']}`, not "
            f"one of the released files rvos knows), converted by {meta['converted_by']} into "
            "safetensors together with its text encoder's configuration and tokenizer."
        )
    else:
        lines.append(
            f"rvos's built-in ReferFormer ({shown} backbone), trained on {info.training_data}; "
            "it knows synthetic coloured shapes only."
        )
    if info is not None and info.notes:
        lines += ["", info.notes]
    text = "the person on the left" if official else "the red circle"
    why = "as the authors evaluate" if official else "the size it was trained at"
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "# with rvos installed (`pip install .` in its repository)",
        f'python -m rvos predict clip.mp4 --model hf://{repo} --text "{text}" --out out/',
        f"python app.py --model hf://{repo}",
        "```",
        "",
        "```python",
        "from rvos import load_model",
        "from rvos.predictor.predictor import Predictor",
        "",
        f'model = load_model("hf://{repo}")',
        f'result = Predictor(model).predict("clip.mp4", ["{text}"])',
        "```",
        "",
        f"Frames are resized to a short side of {meta.get('input_short_side', 360)} pixels, "
        f"{why}; the best query over the clip is the answer on every frame.",
        "",
        "## Published scores",
        "",
    ]
    scores = info.scores if info is not None else ()
    if scores:
        lines += ["| benchmark | metric | value |", "| --- | --- | ---: |"]
        lines += [f"| {s.benchmark} | {s.metric} | {s.value:.1f} |" for s in scores]
        source = (
            f"the authors' model zoo ({registry.OFFICIAL_README})"
            if official
            else "rvos's own evaluation (`python -m rvos eval`)"
        )
        lines += ["", f"As published by {source}; not re-measured for this upload."]
    else:
        lines.append("None known for this file.")
    lines += [
        "",
        "## Files",
        "",
        f"- `model.safetensors`: all {num_parameters:,} parameters (backbone, transformer, "
        "text encoder, heads), float32.",
        "- `config.json`: the architecture (`config`, its `text` entry the RoBERTa "
        "configuration) and where the weights came from.",
        "- `tokenizer/`: the text encoder's byte-level BPE tokenizer.",
    ]
    if "source" in meta:
        src = meta["source"]
        where = f", from {src['url']}" if src.get("url") else ""
        lines.append(
            f"- Converted from `{src['file']}` ({src['size_bytes']:,} bytes, sha256 "
            f"`{src['sha256']}`{where}); the conversion read this folder back and found "
            "every tensor equal to the weights loaded from that file."
        )
    lines += [
        "",
        "## Citation",
        "",
        "```bibtex",
        registry.CITATION,
        "```",
        "",
        "## Licence",
        "",
    ]
    if official:
        lines.append(
            "The weights are the work of Jiannan Wu, Yi Jiang, Peize Sun, Zehuan Yuan and Ping "
            f"Luo, released with their code ({registry.OFFICIAL_REPOSITORY}) under the Apache "
            "License 2.0; this folder changes their format, not their values. rvos, which "
            "converted them, is Apache-2.0 as well."
        )
    else:
        lines.append("Apache License 2.0, as rvos.")
    return "\n".join(lines) + "\n"


def convert(
    source: str,
    out: str | Path,
    *,
    text_encoder: str | Path | None = None,
    repo_id: str | None = None,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write `source` as a self-contained model folder `out` and return it.

    Arguments:
        source: a registry name (an official model is downloaded on first use) or the path of
            an official ``.pth`` file.
        out: the folder to write; it must not exist (or be empty) unless `overwrite`.
        text_encoder: official checkpoints: the RoBERTa configuration and tokenizer (a Hub name
            or a folder; default ``roberta-base``), bundled into the folder.
        repo_id: the Hub repository the folder is meant for (fills in the card's examples).
        cache_dir, offline, progress: as for `rvos.zoo.loader.ensure_local`.

    Raises `ConvertError`, `UnknownModelError`, `rvos.zoo.registry.ModelFileMissingError`,
    `rvos.zoo.download.DownloadError` or `rvos.zoo.checkpoint.CheckpointError`.
    """
    # lazy: `rvos --help`, `models` and `download` start without torch
    import torch

    # lazy: `rvos --help`, `models` and `download` start without torch
    from rvos.zoo import checkpoint as ckpt

    # lazy: `rvos --help`, `models` and `download` start without torch
    from rvos.zoo import loader as zoo

    info, path = _identify(source)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConvertError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConvertError(f"{out} exists and is not empty; choose another folder or pass --force")
    if path is None:
        assert info is not None
        path = zoo.ensure_local(info.name, cache_dir=cache_dir, offline=offline, progress=progress)
    if info is not None and info.kind == "builtin":
        model = ckpt.load_pretrained(path)
    else:
        kwargs: dict[str, Any] = {"backbone": info.backbone if info is not None else None}
        if text_encoder is not None:
            kwargs["text_encoder"] = str(text_encoder)
        model = ckpt.load_official(path, **kwargs)
    meta = _metadata(info, path, model)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        ckpt.save_pretrained(model, staging, **meta)
        config = json.loads((staging / ckpt.CONFIG_FILE).read_text())["config"]
        count = ckpt.count_parameters(model)
        card = model_card(meta, config, count, info, repo_id)
        (staging / "README.md").write_text(card, encoding="utf-8")
        # Read back what was written: the same tensors, bit for bit (the tied box heads of the
        # decoder are stored once and come back tied).
        back = ckpt.load_pretrained(staging).state_dict()
        for key, value in model.state_dict().items():
            if not torch.equal(back[key], value):
                raise ConvertError(f"{key} changed when written to {staging}; nothing was kept")
        _publishable(staging)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _publishable(folder: Path) -> None:
    """Ordinary permissions (the staging folder was made private by mkdtemp)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
