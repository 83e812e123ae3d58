"""Windows over a long video and the query link between them (shared by every inference loop)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rvos.errors import PredictorError

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_WINDOW",
    "WindowPlan",
    "default_overlap",
    "link_query",
    "plan_windows",
]


DEFAULT_WINDOW = 36


DEFAULT_OVERLAP = 8


# Below this IoU on the overlap no query of the new window is taken to be the previous object
# (it left, or the previous choice was a false positive): the window falls back to its score.
MIN_LINK_IOU = 0.1


@dataclass(frozen=True)
class WindowPlan:
    """Window ``index`` runs the model on frames ``[start, end)`` and reports ``[keep_start,
    keep_end)``."""

    index: int
    start: int
    end: int
    keep_start: int
    keep_end: int


def plan_windows(num_frames: int, window: int = DEFAULT_WINDOW,
                 overlap: int = DEFAULT_OVERLAP) -> list[WindowPlan]:
    """The windows `Predictor` uses on ``num_frames`` frames.

    Window w starts at ``w * (window - overlap)`` and is ``window`` frames long, except the last,
    which ends at the last frame (it still shares ``overlap`` frames with the one before). Of
    the frames two windows share, the first ``ceil(overlap / 2)`` are reported from the earlier
    window and the rest from the later one.
    """
    _check_window(window, overlap)
    if num_frames < 1:
        raise PredictorError(f"num_frames must be >= 1, got {num_frames}")
    stride = window - overlap
    plans: list[WindowPlan] = []
    start, keep_start = 0, 0
    while True:
        end = min(start + window, num_frames)
        last = end == num_frames
        keep_end = end if last else end - overlap // 2
        plans.append(WindowPlan(len(plans), start, end, keep_start, keep_end))
        if last:
            return plans
        start, keep_start = start + stride, keep_end


def default_overlap(window: int) -> int:
    """``DEFAULT_OVERLAP`` frames, but at most half of a short window (so it still advances)."""
    return min(DEFAULT_OVERLAP, max(int(window), 0) // 2)


def _count_windows(num_frames: int, window: int, overlap: int) -> int:
    if num_frames <= window:
        return 1
    return 1 + math.ceil((num_frames - window) / (window - overlap))


def _check_window(window: int, overlap: int) -> None:
    if not isinstance(window, int) or window < 1:
        raise PredictorError(f"window must be a whole number of frames >= 1, got {window!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < window:
        raise PredictorError(
            f"overlap must be a whole number of frames in [0, window={window}), got {overlap!r}")


def link_query(previous: Tensor | np.ndarray, candidates: Tensor | np.ndarray,
               mean_scores: Tensor | np.ndarray, *, min_iou: float = MIN_LINK_IOU
               ) -> tuple[int, float | None, str]:
    """Choose the query of a new window that continues the previous window's object.

    Arguments:
        previous: bool ``[O, h, w]``: the previous window's chosen masks on the O shared frames.
        candidates: bool ``[O, Q, h, w]``: every query's masks of the new window on those frames.
        mean_scores: ``[Q]`` each query's score averaged over the new window.
        min_iou: below this best IoU the overlap is not evidence of any query.
    Returns:
        ``(query, iou, linked_by)``. ``linked_by == "overlap"``: ``query`` maximises
        ``IoU(previous, candidate) × mean score``, where the IoU pools all shared frames (total
        intersection / total union, so frames where the object is large weigh more and a frame
        without the object is not undefined). The product asks for both: the same pixels, and
        a query that still describes the sentence; with look-alike objects the scores are
        close and the IoU decides. ``linked_by == "score"`` (``iou`` None): the previous masks
        are empty on the overlap, or no query reaches ``min_iou``; then the best mean score
        decides, as in the original procedure.
    """
    prev = torch.as_tensor(previous).bool()
    cand = torch.as_tensor(candidates).bool()
    scores = torch.as_tensor(mean_scores).float().cpu()
    if cand.dim() != 4 or prev.dim() != 3 or cand.shape[0] != prev.shape[0] or (
            cand.shape[2:] != prev.shape[1:]) or scores.shape != (cand.shape[1],):
        raise ValueError(f"shapes do not match: previous {tuple(prev.shape)} [O,h,w], candidates "
                         f"{tuple(cand.shape)} [O,Q,h,w], mean_scores {tuple(scores.shape)} [Q]")
    if not prev.any():
        return int(scores.argmax()), None, "score"
    prev = prev[:, None].to(cand.device)
    inter = (prev & cand).sum((0, 2, 3)).float().cpu()
    union = (prev | cand).sum((0, 2, 3)).float().cpu()
    iou = inter / union  # union >= |previous| > 0
    if float(iou.max()) < min_iou:
        return int(scores.argmax()), None, "score"
    best = int((iou * scores).argmax())
    return best, float(iou[best]), "overlap"
