"""Re-thresholding a stored result without the model: the mask threshold, the presence
threshold, or both."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from rvos.errors import RvosError
from rvos.result.rle import encode_rle, rle_area
from rvos.result.video_result import ExpressionResult, VideoResult

__all__ = ["with_threshold"]


class ThresholdError(RvosError, ValueError):
    """A mask threshold outside (0, 1), or a presence threshold outside [0, 1]."""


def with_threshold(result: VideoResult, threshold: float | None = None,
                   presence_threshold: float | None = None) -> VideoResult:
    """``result`` with its masks re-thresholded at ``threshold`` from the stored mask logits,
    and/or with frames whose presence is below ``presence_threshold`` emptied ("not found");
    None keeps the result's own.

    The chosen queries stay as predicted (they were linked across windows at the prediction
    threshold). A frame not found keeps its mask aside (`ExpressionResult.absent_rle`), so a
    lower presence threshold later gives it back exactly. When nothing changes ``result``
    itself is returned.
    """
    old = float(result.settings["threshold"])
    old_presence = float(result.settings.get("presence_threshold", 0.0))
    threshold = old if threshold is None else threshold
    presence = old_presence if presence_threshold is None else presence_threshold
    if not 0.0 < threshold < 1.0:
        raise ThresholdError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    if not (isinstance(presence, (int, float)) and math.isfinite(presence)
            and 0.0 <= presence <= 1.0):
        raise ThresholdError(f"presence threshold must be between 0 and 1, got {presence}")
    if threshold == old and presence == old_presence:
        return result
    exprs = [_rethreshold(e, threshold, float(presence)) for e in result]
    return dataclasses.replace(result, expressions=exprs,
                               settings=dict(result.settings, threshold=threshold,
                                             presence_threshold=float(presence)))


def _rethreshold(e: ExpressionResult, threshold: float, presence: float) -> ExpressionResult:
    moved = dataclasses.replace(e, presence_threshold=presence)
    found = moved.found
    rle, absent = [], {}
    empty = np.array([e.size[0] * e.size[1]], dtype=np.uint32)
    for t in range(e.num_frames):
        if threshold == e.threshold:  # the stored masks themselves, exactly
            counts = e.absent_rle.get(t, e.rle[t])
        else:
            counts = encode_rle(e.raw_mask(t, threshold))
        if not found[t]:
            absent[t], counts = counts, empty
        rle.append(counts)
    areas = np.array([rle_area(r) for r in rle], dtype=np.int64)
    return dataclasses.replace(moved, threshold=threshold, rle=rle, mask_areas=areas,
                               absent_rle=absent)
