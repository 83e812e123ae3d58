"""Score a model on a DAVIS-style referring split: J, F and J&F overall and per category.

Runs the original ReferFormer inference procedure on every video: all frames of the clip at
once, the query with the best mean score over frames is the answer, its mask logits are resized
to the frame size and thresholded at 0.5. Scores follow the DAVIS definitions (`rvos.metrics`):
per expression, J and F are averaged over the frames; the split's J (F) is the mean over
expressions and J&F their average. The last line printed is exactly ``J&F: <percent>``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rvos.inference import (
    DEFAULT_SHORT_SIDE,
    model_short_side,
    postprocess_masks,
    preprocess,
    select_query,
)
from rvos.metrics import f_measure, jaccard

__all__ = [
    "DEFAULT_SHORT_SIDE",
    "EvalResult",
    "add_cli_arguments",
    "clip_to_video",
    "evaluate_videos",
    "input_short_side",
    "load_model_for_eval",
    "predict_video",
    "run_cli",
]



@dataclass
class EvalResult:
    """Per-expression scores (each in [0, 1]) and their summaries.

    ``records``: one dict per expression with video, expr_id, text, category, J, F.
    """

    records: list[dict] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        """``{"overall" | <category>: {"J", "F", "J&F", "n"}}`` in percent."""
        groups: dict[str, list[dict]] = defaultdict(list)
        for r in self.records:
            groups["overall"].append(r)
            groups[r["category"]].append(r)
        out = {}
        for name, recs in groups.items():
            j = 100 * float(np.mean([r["J"] for r in recs]))
            f = 100 * float(np.mean([r["F"] for r in recs]))
            out[name] = {"J": j, "F": f, "J&F": (j + f) / 2, "n": len(recs)}
        return out

    def table(self) -> str:
        """A plain-text table: one row per category, then overall."""
        s = self.summary()
        names = sorted(k for k in s if k != "overall") + ["overall"]
        lines = [f"{'category':<12} {'n':>5} {'J':>6} {'F':>6} {'J&F':>6}"]
        for name in names:
            v = s[name]
            lines.append(f"{name:<12} {v['n']:>5} {v['J']:>6.1f} {v['F']:>6.1f} {v['J&F']:>6.1f}")
        return "\n".join(lines)


@dataclass
class _Expr:
    expr_id: str
    text: str
    category: str
    masks: np.ndarray  # bool [T, H, W]


@dataclass
class _Video:
    name: str
    frames: np.ndarray  # uint8 [T, H, W, 3]
    expressions: list[_Expr]


def clip_to_video(clip) -> _Video:
    """A `rvos.synth.Clip` as the video records `evaluate_videos` reads (no disk round trip)."""
    exprs = [
        _Expr(str(i), e.text, e.category, clip.masks[e.object_index])
        for i, e in enumerate(clip.expressions)
    ]
    return _Video(clip.name, clip.frames, exprs)


# The frame short side a model expects (the name this module has always offered).
input_short_side = model_short_side


@torch.inference_mode()
def predict_video(
    model, frames: np.ndarray, captions: Sequence[str], short_side: int | None, threshold=0.5
) -> list[np.ndarray]:
    """Masks of every caption on one video with the original procedure.

    Arguments:
        frames: uint8 ``[T, H0, W0, 3]``.
        captions: K expressions; the backbone runs once for all of them.
    Returns:
        K bool arrays ``[T, H0, W0]``.
    """
    device = next(model.parameters()).device
    x = preprocess(frames, short_side).to(device)
    visual = model.encode_video(x)
    out = model.decode(visual, list(captions))
    masks = []
    for k in range(len(captions)):
        best = select_query(out["pred_logits"][k])
        m = postprocess_masks(out["pred_masks"][k, :, best], frames.shape[1:3], threshold)
        masks.append(m.cpu().numpy())
    return masks


def evaluate_videos(
    model,
    videos: Iterable,
    short_side: int | None,
    progress: bool = False,
) -> EvalResult:
    """Run the model on every expression of ``videos`` and score it.

    Arguments:
        model: a ReferFormer in eval mode.
        videos: objects with ``name``, ``frames`` (uint8 [T,H,W,3]) and ``expressions`` (each
            with ``expr_id``, ``text``, ``category`` and ``masks`` bool [T,H,W]), e.g. from
            `rvos.synth.read_split` or `clip_to_video`.
        short_side: resize frames so their short side is this (None: keep the size).
    """
    result = EvalResult()
    videos = list(videos) if progress else videos
    start = time.time()
    for i, video in enumerate(videos):
        exprs = list(video.expressions)
        if not exprs:
            continue
        preds = predict_video(model, video.frames, [e.text for e in exprs], short_side)
        for e, pred in zip(exprs, preds, strict=True):
            result.records.append(
                {
                    "video": video.name,
                    "expr_id": e.expr_id,
                    "text": e.text,
                    "category": e.category,
                    "J": float(jaccard(e.masks, pred).mean()),
                    "F": float(f_measure(e.masks, pred).mean()),
                }
            )
        if progress and (i + 1) % 10 == 0:
            n = len(videos)  # type: ignore[arg-type]
            print(f"  {i + 1}/{n} videos, {time.time() - start:.0f} s", file=sys.stderr)
    return result


def load_model_for_eval(model_name: str | None, checkpoint: str | None, device: str,
                        text_encoder: str | None = None, offline: bool | None = None,
                        progress: bool = False):
    """A model from the zoo (``--model``: a registry name or ``hf://...``, fetched on first
    use unless ``offline``) or a path (``--checkpoint``): an rvos model folder
    (save_pretrained), a training checkpoint written by ``rvos train``, or a released ``.pth``
    file — with a registry name, the registry's model; without one (``model_name`` None), built
    from what the file holds. ``text_encoder``: released models' RoBERTa (a hub name or a local
    folder; default roberta-base). ``progress``: show a download's progress on stderr."""
    from rvos.zoo import load_model

    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        if path.is_file() and path.suffix in (".pt", ".ckpt"):
            from rvos.train_checkpoint import load_training_checkpoint

            return load_training_checkpoint(path, device=device)
        if path.is_dir():
            from rvos.checkpoint import load_pretrained

            return load_pretrained(path, device=device)
        if model_name is None:
            from rvos.checkpoint import load_official

            kwargs = {} if text_encoder is None else {"text_encoder": text_encoder}
            return load_official(path, device=device, **kwargs).eval()
    return load_model(model_name or "builtin", checkpoint=checkpoint, device=device,
                      text_encoder=text_encoder, offline=offline, progress=progress)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", help="a split folder written by `python -m rvos synth`")
    parser.add_argument("--model", default="builtin", help="registry name (default: builtin)")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="model folder (save_pretrained), training checkpoint (.pt) or released .pth",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument(
        "--short-side",
        type=int,
        default=None,
        help="resize frames to this short side (default: what the model was trained at)",
    )
    parser.add_argument("--max-videos", type=int, default=None, help="score only the first N")
    parser.add_argument("--json", default=None, help="also write per-expression scores here")


def run_cli(args: argparse.Namespace) -> int:
    from rvos.synth import read_split

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        videos = read_split(args.data_dir)
        if args.max_videos is not None:
            videos = videos[: args.max_videos]
        if not any(v.expressions for v in videos):
            raise ValueError(f"{args.data_dir} holds no expressions to score")
        model = load_model_for_eval(args.model, args.checkpoint, device)
    except (FileNotFoundError, ValueError, KeyError, NotImplementedError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        msg = exc.for_cli() if hasattr(exc, "for_cli") else msg  # CLI advice, not Python's
        print(f"rvos eval: error: {msg}", file=sys.stderr)
        return 2
    short_side = args.short_side if args.short_side is not None else input_short_side(model)
    start = time.time()
    result = evaluate_videos(model.eval(), videos, short_side, progress=True)
    elapsed = time.time() - start
    n_expr = len(result.records)
    print(
        f"{len(videos)} videos, {n_expr} expressions, short side {short_side}, "
        f"{elapsed:.0f} s on {device}"
    )
    print(result.table())
    if args.json:
        out = Path(args.json)
        if out.parent != Path(""):
            os.makedirs(out.parent, exist_ok=True)
        out.write_text(
            json.dumps({"summary": result.summary(), "records": result.records}, indent=1)
        )
    print(f"J&F: {result.summary()['overall']['J&F']:.1f}")
    return 0
