"""Score a model on a DAVIS-style referring split: J, F and J&F overall and per category.

Runs the original ReferFormer inference procedure on every video: all frames of the clip at
once, the query with the best mean score over frames is the answer, its mask logits are resized
to the frame size and thresholded at 0.5. Scores follow the DAVIS definitions (`rvos.eval.metrics`):
per expression, J and F are averaged over the frames; the split's J (F) is the mean over
expressions and J&F their average. The last line printed is exactly ``J&F: <percent>``.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from rvos.eval.metrics import f_measure, jaccard
from rvos.modeling.processing import (
    model_short_side,
    postprocess_masks,
    preprocess,
    select_query,
)

__all__ = ["EvalResult", "clip_to_video", "evaluate_videos", "input_short_side", "predict_video"]


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
    """A `rvos.data.synth_scene.Clip` as the video records `evaluate_videos` reads (no disk round
    trip)."""
    exprs = [
        _Expr(str(i), e.text, e.category, clip.target_masks(e))
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
            `rvos.data.synth_split.read_synth_split` or `clip_to_video`.
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
