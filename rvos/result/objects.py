"""The further objects of an expression answered with ``objects="all"``
(`rvos.predictor.objects`): each one its own query per frame, scores and masks.

Object 0 is always the paper's answer, the `ExpressionResult`'s chosen query; an `ObjectTrack`
holds each further one. Query indices are per window, as for the chosen query; ``-1`` marks the
frames of a window where the object had no query (it was not kept there, or it first appeared
in a later window). Masks are run-length encoded like the chosen query's
(`rvos.result.rle.encode_rle`) at the prediction threshold ``threshold``; with ``lowres_logits``
they can be re-thresholded as the chosen query's are.

Presence applies to each object by its own score: on a frame where an object's score is below
the presence threshold its mask reads as empty (`object_found`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from rvos.modeling.processing import postprocess_masks
from rvos.result.rle import decode_rle, dequantize_logits

__all__ = ["ObjectTrack", "compose_labels", "rle_json"]


@dataclass
class ObjectTrack:
    """One further object of an expression.

    Attributes:
        query: int64 ``[T]``: its query on each frame (per window), -1 where it has none.
        rle: its mask on each frame at ``threshold`` (empty where ``query`` is -1).
        mask_areas: int64 ``[T]`` pixels of those masks.
        threshold: the probability threshold of ``rle``.
        lowres_logits: its low-resolution mask logits per frame (int8, compressed; None where
            ``query`` is -1), when the run kept logits.
    """

    query: np.ndarray
    rle: list[np.ndarray] = field(repr=False)
    mask_areas: np.ndarray
    threshold: float = 0.5
    lowres_logits: list[bytes | None] | None = field(default=None, repr=False)

    def scores(self, all_scores: np.ndarray) -> np.ndarray:
        """float32 ``[T]``: its score on each frame (NaN where it has no query), from the
        expression's ``[T, Q]`` scores."""
        t = np.arange(len(self.query))
        out = np.full(len(self.query), np.nan, np.float32)
        has = self.query >= 0
        out[has] = all_scores[t[has], self.query[has]]
        return out

    def mask(self, t: int, size: tuple[int, int], threshold: float,
             lowres_shape: tuple[int, int] | None) -> np.ndarray:
        """bool ``[H0, W0]`` on frame ``t`` at ``threshold`` (from the logits when it is not
        the stored one and they were kept; else the stored mask)."""
        if self.query[t] < 0:
            return np.zeros(size, dtype=bool)
        logits = None if self.lowres_logits is None else self.lowres_logits[t]
        if threshold == self.threshold or logits is None or lowres_shape is None:
            return decode_rle(self.rle[t], size)
        low = torch.from_numpy(dequantize_logits(logits, lowres_shape))[None]
        return postprocess_masks(low, size, threshold)[0].numpy()


def compose_labels(masks: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 ``[H, W]`` label map of an expression's objects: 0 background, ``j + 1`` object
    j. Object 0 (the paper's answer) is painted last, so it keeps the pixels objects share; the
    others by falling score (lower indices win)."""
    labels = np.zeros(masks[0].shape, dtype=np.uint8)
    for j in range(len(masks) - 1, -1, -1):
        labels[masks[j]] = min(j + 1, 255)
    return labels


def rle_json(counts: np.ndarray, size: tuple[int, int]) -> dict:
    """A mask in result.json: rvos's run lengths (row-major, alternating background/object,
    starting with background) and the mask's size."""
    return {"size": [int(size[0]), int(size[1])], "counts": counts.tolist()}
