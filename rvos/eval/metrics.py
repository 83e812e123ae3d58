"""Region (J) and boundary (F) accuracy of video masks, as defined by the DAVIS benchmark.

The numbers match the DAVIS 2017 evaluation toolkit (davis2017-evaluation, ``metrics.py``):

* J is the intersection-over-union of the two masks; a frame where both are empty scores 1.
* F is the boundary F-measure. Boundaries are one pixel wide and follow the ``seg2bmap``
  convention (a pixel is on the boundary when it differs from its right, bottom or bottom-right
  neighbour, with the last row and column compared against zero padding only along the image
  edge). Two boundaries match within ``ceil(0.008 * image diagonal)`` pixels, measured by a
  dilation with scikit-image's ``disk`` footprint (``x**2 + y**2 <= r**2``), which is what the
  toolkit passes to ``cv2.dilate``. Note: this is *not* OpenCV's ``MORPH_ELLIPSE`` kernel, which
  is one pixel fatter at some radii and would change the scores.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["BOUND_TH", "boundary_map", "f_measure", "jaccard", "jf"]

# Fraction of the image diagonal (DAVIS default); values >= 1 are read as pixels.
BOUND_TH = 0.008


def _as_video_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(
            f"ground truth has shape {gt.shape} but prediction has shape {pred.shape}; "
            "resize the prediction to the annotation's size before scoring"
        )
    if gt.ndim == 2:
        gt, pred = gt[None], pred[None]
    elif gt.ndim != 3:
        raise ValueError(
            f"masks must be [H,W] or [T,H,W], got {gt.ndim} dimensions with shape {gt.shape}"
        )
    if gt.shape[1] == 0 or gt.shape[2] == 0:
        raise ValueError(f"masks must have non-zero height and width, got shape {gt.shape}")
    return gt.astype(bool), pred.astype(bool)


def jaccard(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Region similarity J (intersection over union) per frame.

    Arguments:
        gt: ground-truth mask, bool-like ``[T,H,W]`` or ``[H,W]`` (treated as T=1).
        pred: predicted mask with the same shape.

    Returns:
        float64 ``[T]``; 1.0 on frames where both masks are empty.
    """
    gt, pred = _as_video_pair(gt, pred)
    inter = np.logical_and(gt, pred).sum(axis=(1, 2)).astype(np.float64)
    union = np.logical_or(gt, pred).sum(axis=(1, 2)).astype(np.float64)
    out = np.ones(gt.shape[0], dtype=np.float64)
    nonempty = union > 0
    out[nonempty] = inter[nonempty] / union[nonempty]
    return out


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a mask, DAVIS ``seg2bmap`` convention.

    Arguments:
        mask: bool-like ``[H,W]``.

    Returns:
        bool ``[H,W]``; boundaries sit half a pixel towards the origin of the true edge.
    """
    seg = np.asarray(mask).astype(bool)
    if seg.ndim != 2:
        raise ValueError(f"boundary_map expects an [H,W] mask, got shape {seg.shape}")
    right = np.zeros_like(seg)
    below = np.zeros_like(seg)
    diag = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    below[:-1, :] = seg[1:, :]
    diag[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ right) | (seg ^ below) | (seg ^ diag)
    # Along the last row/column only the in-image neighbour counts, and the corner never does;
    # this asymmetry is part of the reference definition, so F depends on it.
    b[-1, :] = seg[-1, :] ^ right[-1, :]
    b[:, -1] = seg[:, -1] ^ below[:, -1]
    b[-1, -1] = False
    return b


def _disk(radius: float) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    x, y = np.meshgrid(r, r)
    return (x**2 + y**2 <= radius**2).astype(np.uint8)


def _bound_pixels(shape: tuple[int, int], bound_th: float) -> float:
    return bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*shape))


def _f_frame(gt: np.ndarray, pred: np.ndarray, kernel: np.ndarray) -> float:
    fg_b = boundary_map(pred)
    gt_b = boundary_map(gt)
    n_fg = int(fg_b.sum())
    n_gt = int(gt_b.sum())
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        # One boundary missing: precision or recall is 0 and the other 1, so F = 0.
        return 0.0
    fg_dil = cv2.dilate(fg_b.astype(np.uint8), kernel).astype(bool)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel).astype(bool)
    precision = np.logical_and(fg_b, gt_dil).sum() / n_fg
    recall = np.logical_and(gt_b, fg_dil).sum() / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def f_measure(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> np.ndarray:
    """Boundary accuracy F per frame.

    Arguments:
        gt: ground-truth mask, bool-like ``[T,H,W]`` or ``[H,W]`` (treated as T=1).
        pred: predicted mask with the same shape.
        bound_th: match tolerance; a fraction of the image diagonal if < 1, else pixels.

    Returns:
        float64 ``[T]``: 1.0 where both boundaries are empty, 0.0 where exactly one is.
    """
    gt, pred = _as_video_pair(gt, pred)
    if bound_th <= 0:
        raise ValueError(f"bound_th must be positive, got {bound_th}")
    kernel = _disk(_bound_pixels(gt.shape[1:], bound_th))
    scores = [_f_frame(g, p, kernel) for g, p in zip(gt, pred, strict=True)]
    return np.array(scores, dtype=np.float64)


def jf(j: np.ndarray, f: np.ndarray) -> tuple[float, float, float]:
    """Summarise per-frame (or per-expression) scores.

    Arguments:
        j: J scores, any shape. f: F scores, same number of elements.

    Returns:
        ``(mean J, mean F, (mean J + mean F) / 2)``, the DAVIS "J&F".
    """
    j = np.asarray(j, dtype=np.float64).ravel()
    f = np.asarray(f, dtype=np.float64).ravel()
    if j.size == 0 or j.size != f.size:
        raise ValueError(f"need equally many J and F scores (>0), got {j.size} and {f.size}")
    mj, mf = float(j.mean()), float(f.mean())
    return mj, mf, (mj + mf) / 2
