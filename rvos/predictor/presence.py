"""Presence: whether the referred object is on a frame at all.

ReferFormer answers on every frame: the chosen query always has a mask. Its score (the sigmoid
class probability the model gives the chosen query on that frame) says how sure the model is
that the sentence's object is there; a model folder with a presence head
(`rvos.modeling.presence_head`, the built-in model's) answers that instead, from the pixels
under the mask and the sentence's words. Either is the frame's presence
(`ExpressionResult.presence`). With a presence threshold, a frame whose presence is below it
gets an empty mask and counts as "not found".

The threshold a run uses when none is given is the model's own: a model folder's
``config.json`` may carry a top-level ``"presence_threshold"`` (a model trained to say "not
there" knows where its scores split), read by `model_presence_threshold`, the one place that
looks it up. Without one it is `DEFAULT_PRESENCE_THRESHOLD`, 0.0: a mask on every frame, as in
the paper (the released checkpoints and their outputs are unchanged).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rvos.errors import PredictorError

__all__ = [
    "DEFAULT_PRESENCE_THRESHOLD",
    "PRESENCE_KEY",
    "check_presence_threshold",
    "folder_presence_threshold",
    "model_presence_threshold",
    "presence_threshold_of",
]


# 0: every frame is "found" (sigmoid scores are >= 0), the paper's behaviour.
DEFAULT_PRESENCE_THRESHOLD = 0.0


# The top-level key of a model folder's config.json (`rvos.zoo.checkpoint.save_pretrained`
# keeps every top-level key but "config" in ``model.metadata``).
PRESENCE_KEY = "presence_threshold"


def check_presence_threshold(value: Any, name: str = "presence_threshold") -> float:
    """``value`` as a presence threshold in [0, 1], or a one-line `PredictorError`."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise PredictorError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not (math.isfinite(x) and 0.0 <= x <= 1.0):
        raise PredictorError(f"{name} must be a number in [0, 1] (0: a mask on every frame), "
                             f"got {value!r}")
    return x


def presence_threshold_of(metadata: Mapping[str, Any] | None) -> float:
    """The presence threshold a model folder's config.json (its top-level keys) asks for, or
    `DEFAULT_PRESENCE_THRESHOLD` when it names none (or names one outside [0, 1])."""
    value = (metadata or {}).get(PRESENCE_KEY)
    if value is None or isinstance(value, bool):
        return DEFAULT_PRESENCE_THRESHOLD
    try:
        return check_presence_threshold(value)
    except PredictorError:
        return DEFAULT_PRESENCE_THRESHOLD


def model_presence_threshold(model: Any) -> float:
    """The presence threshold of ``model`` when a run names none: its ``presence_threshold``
    attribute when set, else its folder's config.json value (``model.metadata``), else
    `DEFAULT_PRESENCE_THRESHOLD`."""
    own = getattr(model, PRESENCE_KEY, None)
    if own is not None:
        return check_presence_threshold(own)
    metadata = getattr(model, "metadata", None)
    return presence_threshold_of(metadata if isinstance(metadata, Mapping) else None)


def folder_presence_threshold(folder: str | os.PathLike | None) -> float:
    """`presence_threshold_of` a model folder's config.json without loading the model (the
    app's menu shows it before a run); `DEFAULT_PRESENCE_THRESHOLD` for anything that is not a
    readable model folder (an official ``.pth``, a folder without config.json)."""
    if folder is None:
        return DEFAULT_PRESENCE_THRESHOLD
    path = Path(folder) / "config.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DEFAULT_PRESENCE_THRESHOLD
    return presence_threshold_of(meta if isinstance(meta, dict) else None)
