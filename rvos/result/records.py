"""The parts of a prediction: the source video as processed, how each window chose its
query, word attention and deformable sampling points (`rvos.result.video_result` holds them)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["AttentionMaps", "SamplingPoints", "SourceInfo", "WindowChoice"]


@dataclass(frozen=True)
class SourceInfo:
    """The video a result was computed on, as processed.

    ``width``/``height`` are the frame size in display orientation (what masks and boxes refer
    to); ``fps``/``frame_rate`` the rate of the processed frames, ``num_frames`` their count.
    """

    path: str | None
    width: int
    height: int
    fps: float
    frame_rate: Fraction
    num_frames: int
    source_fps: float
    source_num_frames: int | None = None
    has_audio: bool = False
    rotation: int = 0
    # Arguments that reproduce the processed frame sequence from ``path`` (for re-reading).
    sample_fps: float | None = None
    max_frames: int | None = None
    # The source has a variable frame rate; `rvos.media.video` reads it at the constant rate
    # ``fps``.
    variable_frame_rate: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.height, self.width

    def to_json(self) -> dict[str, Any]:
        # Only the file's name: the folder is the machine's business (a server's upload folder).
        return {
            "path": None if self.path is None else Path(self.path).name,
            "width": self.width,
            "height": self.height,
            "fps": round(self.fps, 6),
            "frame_rate": f"{self.frame_rate.numerator}/{self.frame_rate.denominator}",
            "num_frames": self.num_frames,
            "source_fps": round(self.source_fps, 6),
            "source_num_frames": self.source_num_frames,
            "has_audio": self.has_audio,
            "rotation": self.rotation,
            "variable_frame_rate": self.variable_frame_rate,
        }


@dataclass(frozen=True)
class WindowChoice:
    """How one window chose an expression's query.

    ``linked_by`` is ``"score"`` (best mean score over the window: the original rule, used for
    the first window and whenever the overlap gives no evidence) or ``"overlap"`` (the query
    whose masks on the frames shared with the previous window best match the previous choice,
    see `rvos.predictor.windows.link_query`); ``overlap_iou`` is that query's IoU on the overlap.
    """

    index: int
    start: int
    end: int
    chosen_query: int
    linked_by: str
    overlap_iou: float | None = None


@dataclass
class AttentionMaps:
    """Word attention of one expression: how much each image position attends to each word.

    ``maps[l]`` is float16 ``[T, num_words, h_l, w_l]`` for level ``levels[l]``, or with
    ``num_heads > 0`` ``[T, num_words, num_heads, h_l, w_l]`` (one map per attention head). A
    map is the attention of a position to the word (mean over the word's tokens, and over heads
    unless one is asked for), so over all words and special tokens it sums to 1 at every
    position. Heads specialise (one may follow colour words, another shapes), which their mean
    hides.
    """

    words: list[str]
    levels: list[str]
    maps: list[np.ndarray]
    num_heads: int = 0  # 0: the maps hold the mean over heads only

    def get(self, frame: int, word: int | None = None, level: int | str = 0,
            head: int | None = None) -> np.ndarray:
        """float32 ``[h_l, w_l]`` map of ``word`` (``None``: summed over words) on ``frame``,
        for attention head ``head`` (``None``: the mean over heads)."""
        lvl = self.levels.index(level) if isinstance(level, str) else int(level)
        if not 0 <= lvl < len(self.levels):
            raise IndexError(f"level {level} out of range; levels are {self.levels}")
        maps = self.maps[lvl][frame].astype(np.float32)
        if self.num_heads:
            if head is None:
                maps = maps.mean(1)
            elif 0 <= head < self.num_heads:
                maps = maps[:, head]
            else:
                raise IndexError(f"head {head} out of range: the model has {self.num_heads}")
        elif head is not None:
            raise ValueError("these maps hold the mean over heads only: predict with "
                             "attention_heads=True to keep each head")
        if word is None:
            return maps.sum(0)
        if not 0 <= word < len(self.words):
            raise IndexError(f"word {word} out of range: the expression has {len(self.words)}")
        return maps[word]


@dataclass
class SamplingPoints:
    """Where each query's last decoder layer sampled the image (deformable attention).

    ``points`` float32 ``[T, Q, P, 2]`` (x, y) in source pixels, ``weights`` float32
    ``[T, Q, P]`` summing to 1 over P per query; ``P = heads × levels × points`` in that order,
    ``levels[p]``/``heads[p]`` say which feature level and head point p belongs to.
    """

    points: np.ndarray
    weights: np.ndarray
    levels: np.ndarray
    heads: np.ndarray
