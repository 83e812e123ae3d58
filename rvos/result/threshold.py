"""Re-thresholding a stored result without the model."""

from __future__ import annotations

import dataclasses

import numpy as np

from rvos.errors import RvosError
from rvos.result.rle import encode_rle, rle_area
from rvos.result.video_result import VideoResult

__all__ = ["with_threshold"]


class ThresholdError(RvosError, ValueError):
    """A mask threshold outside (0, 1)."""


def with_threshold(result: VideoResult, threshold: float) -> VideoResult:
    """``result`` with its masks re-thresholded at ``threshold`` from the stored mask logits.

    The chosen queries stay as predicted (they were linked across windows at the prediction
    threshold). At the prediction threshold ``result`` itself is returned.
    """
    if not 0.0 < threshold < 1.0:
        raise ThresholdError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    if threshold == result.settings["threshold"]:
        return result
    exprs = []
    for e in result:
        rle = [encode_rle(e.mask(t, threshold)) for t in range(e.num_frames)]
        areas = np.array([rle_area(r) for r in rle], dtype=np.int64)
        exprs.append(dataclasses.replace(e, threshold=threshold, rle=rle, mask_areas=areas))
    return dataclasses.replace(result, expressions=exprs,
                               settings=dict(result.settings, threshold=threshold))
