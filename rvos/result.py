"""What a prediction holds, how it is stored compactly, rendered and written to disk.

`rvos.predictor.Predictor` fills these objects; everything here only *reads* them: rendering a
frame, writing the overlay video, the mask PNGs and ``result.json`` never runs the model again.

Memory. A 10-minute 1080p video has 18 000 frames; holding its masks as arrays would take 37 GB.
Each frame's mask is therefore kept as a run-length encoding of the exact full-size mask (a few
kB for a typical object), plus — to re-threshold without the model — the chosen query's
low-resolution mask logits quantised to int8 (steps of 1/16, clamped to ±8) and zlib-compressed.
On request (``return_query_masks``) every query's low-resolution logits are kept the same way,
one compressed ``[Q, h, w]`` block per frame, for the decoder view's masks of all queries:
``Q × h × w`` bytes before compression (5 × 90 × 160 = 72 kB for a 360×640 input), typically
5-20× less after it (`ExpressionResult.nbytes` reports what a result holds).

Every decoder layer's boxes and scores are kept for every query (iterative box refinement: the
decoder refines each query's box layer by layer and its last layer is the answer), ``Q × L × 5``
float32 per frame (600 bytes for 5 queries and 6 layers).

result.json (``VideoResult.to_json()``, schema ``RESULT_SCHEMA``, format ``rvos-result`` v2)::

    {
      "format": "rvos-result", "version": 2,
      "model": "builtin",                          # model name, or null
      "source": {                                  # the video as processed
        "path": "in.mp4" | null,                   # file name only; null for in-memory frames
        "width": 1920, "height": 1080,             # frame size (display orientation)
        "fps": 29.97, "frame_rate": "30000/1001",  # rate of the processed frames
        "num_frames": 900,                         # processed frames (after fps / max_frames)
        "source_fps": 29.97, "source_num_frames": 900 | null,
        "has_audio": true, "rotation": 90,         # rotation already applied to the frames
        "variable_frame_rate": false               # true: a VFR source, read at the constant
      },                                           #   rate "fps" (frame i at i / fps)
      "settings": {"window": 36, "overlap": 8, "short_side": 360, "threshold": 0.5,
                   "input_size": [360, 640],       # model input (H, W)
                   "mask_size": [90, 160],         # model mask logits (h, w)
                   "num_queries": 5, "device": "cpu",
                   "precision": "fp32"},               # rvos.precision (older results lack it)
      "timings": {"read_s": ..., "model_s": ..., "postprocess_s": ..., "total_s": ...,
                  "frames_per_second": ...},
      "windows": [{"index": 0, "start": 0, "end": 36}, ...],   # frame ranges [start, end)
      "expressions": [{
        "index": 0, "text": "a dog running", "words": ["a", "dog", "running"],
        "masks": "masks/0",                        # folder of this expression's PNGs
        "windows": [{"index": 0, "chosen_query": 2, "linked_by": "score",
                     "overlap_iou": null}, ...],   # how each window chose its query
        "frames": [{
          "frame": 0, "time_s": 0.0, "window": 0,
          "chosen_query": 2,                       # query index *within that window*
          "score": 0.93,                           # sigmoid score of the chosen query
          "box": [x0, y0, x1, y1],                 # chosen query's box, source pixels
          "mask_area": 12345,                      # mask pixels at the source size
          "scores": [Q floats], "boxes": [Q × [x0, y0, x1, y1]],
          "reference_points": [Q × [x, y]],        # pixels: the last layer's input reference
          "layer_boxes": [Q × [L × [x0, y0, x1, y1]]],  # each query's box after each decoder
                                                   # layer, in layer order; [q][-1] == boxes[q]
          "layer_scores": [Q × [L floats]]         # the same for scores; [q][-1] == scores[q]
        }, ...]
      }, ...],
      "outputs": {"overlay": "overlay.mp4", "masks": "masks", "masks_zip": "masks.zip"}
    }

Decoder layers (``L`` of them) refine every query's box in turn: layer ``l`` starts from a
reference point and moves it. Layer 1's reference point is a learned point of each query
(``initial_reference_points``, the same in every frame and for every sentence); layer ``l > 1``
starts from the centre of the box layer ``l - 1`` returned. So each query's path through the
decoder is ``initial_reference_points[q]`` followed by the centres of ``layer_boxes[q]``.
Version 2 added ``layer_boxes``, ``layer_scores`` and ``initial_reference_points``.

``outputs`` is present when the file was written by `write_outputs`. Mask files are
``masks/<expression index>/<frame index, 5 digits>.png``: DAVIS palette PNGs, 0 background and
1 the object; ``frame`` counts processed frames (``time_s = frame / fps``).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import queue
import shutil
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, overload

import cv2
import numpy as np
import torch

from rvos.inference import postprocess_masks

__all__ = [
    "RESULT_FORMAT",
    "RESULT_SCHEMA",
    "RESULT_VERSION",
    "AttentionMaps",
    "ExpressionResult",
    "SamplingPoints",
    "SourceInfo",
    "VideoResult",
    "WindowChoice",
    "decode_rle",
    "encode_rle",
    "encode_rle_batch",
    "quantize_logits",
    "rle_area",
    "dequantize_logits",
    "OUTPUT_NAMES",
    "remove_outputs",
    "write_outputs",
]

RESULT_FORMAT = "rvos-result"
RESULT_VERSION = 2

# int8 logits in steps of 1/16: ±8 covers probabilities 0.0003..0.9997, i.e. every threshold a
# person would pick, and the step moves a probability near 0.5 by at most 0.008.
_LOGIT_STEP = 1.0 / 16.0


# --------------------------------------------------------------------------------- encodings


def encode_rle(mask: np.ndarray) -> np.ndarray:
    """Run-length encode a bool mask ``[H, W]`` in row-major order.

    Returns uint32 run lengths alternating background/object, starting with background (a zero
    first run when the first pixel is object); they sum to ``H * W``.
    """
    flat = np.ascontiguousarray(mask, dtype=bool).reshape(-1)
    if flat.size == 0:
        return np.zeros(1, dtype=np.uint32)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds)
    if flat[0]:
        counts = np.concatenate(([0], counts))
    return counts.astype(np.uint32)


def encode_rle_batch(masks: torch.Tensor) -> list[np.ndarray]:
    """`encode_rle` of every mask of a bool tensor ``[N, H, W]``, on the tensor's device.

    Only the positions where a mask changes value leave the device, so a GPU sends a few kB per
    frame to the host instead of the whole mask.
    """
    n = masks.shape[0]
    flat = masks.reshape(n, -1)
    size = flat.shape[1]
    frame, pos = torch.nonzero(flat[:, 1:] != flat[:, :-1], as_tuple=True)
    first = flat[:, 0].cpu().numpy()
    frame, pos = frame.cpu().numpy(), pos.cpu().numpy() + 1
    splits = np.searchsorted(frame, np.arange(1, n))
    out = []
    for i, change in enumerate(np.split(pos, splits)):
        counts = np.diff(np.concatenate(([0], change, [size])))
        if first[i]:
            counts = np.concatenate(([0], counts))
        out.append(counts.astype(np.uint32))
    return out


def decode_rle(counts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of `encode_rle`: bool ``[H, W]``."""
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts.astype(np.int64))
    if flat.size != shape[0] * shape[1]:
        raise ValueError(f"run lengths cover {flat.size} pixels, not {shape[0]}×{shape[1]}")
    return flat.reshape(shape)


def rle_area(counts: np.ndarray) -> int:
    """Object pixels of an `encode_rle` mask."""
    return int(counts[1::2].sum(dtype=np.int64))


def quantize_logits(logits: np.ndarray | torch.Tensor) -> list[bytes]:
    """float ``[N, h, w]`` mask logits -> per map, zlib-compressed int8 in steps of 1/16
    (clamped to ±8). Rounds on the tensor's device; only int8 leaves it."""
    x = torch.as_tensor(logits).detach()
    q = torch.clamp(torch.round(x.float() / _LOGIT_STEP), -128, 127).to(torch.int8)
    return [zlib.compress(m.tobytes(), 1) for m in q.cpu().numpy()]


def dequantize_logits(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `quantize_logits`: float32 of ``shape`` (``[h, w]``, or ``[Q, h, w]`` for a
    block of every query's logits)."""
    q = np.frombuffer(zlib.decompress(data), dtype=np.int8).reshape(shape)
    return q.astype(np.float32) * _LOGIT_STEP


# ------------------------------------------------------------------------------ result types


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
    # The source has a variable frame rate; `rvos.video` reads it at the constant rate ``fps``.
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
    see `rvos.predictor.link_query`); ``overlap_iou`` is that query's IoU on the overlap.
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


@dataclass
class ExpressionResult:
    """Everything predicted for one referring expression over the processed frames.

    Query indices are per window (query 2 of window 0 and query 2 of window 1 are unrelated);
    ``window_index`` says which window produced each frame.

    Attributes:
        text: the expression; ``words``: it split at whitespace (BPE tokens grouped).
        size: (H0, W0) source frame size.
        threshold: the probability threshold of the stored masks.
        chosen_query: int64 ``[T]``; ``window_index``: int32 ``[T]``.
        scores: float32 ``[T, Q]`` sigmoid scores of every query.
        boxes: float32 ``[T, Q, 4]`` (x0, y0, x1, y1) in source pixels.
        reference_points: float32 ``[T, Q, 2]`` (x, y) in source pixels (the decoder's last
            reference points).
        layer_boxes: float32 ``[T, Q, L, 4]``: every query's box after each of the L decoder
            layers (source pixels, layer order); ``layer_boxes[:, :, -1]`` is ``boxes``.
        layer_scores: float32 ``[T, Q, L]``: the score each layer's class head gives each query;
            ``layer_scores[:, :, -1]`` is ``scores``.
        initial_reference_points: float32 ``[Q, 2]`` (x, y) in source pixels: the first decoder
            layer's reference points, learned per query (the same on every frame).
        mask_areas: int64 ``[T]`` object pixels per frame.
        windows: how each window chose its query (`WindowChoice`).
        attention / sampling: present when asked for at prediction time.
        query_logits: when asked for, every query's low-resolution mask logits per frame
            (compressed int8 ``[Q, h, w]``, see `query_masks`).
    """

    text: str
    words: list[str]
    size: tuple[int, int]
    threshold: float
    chosen_query: np.ndarray
    window_index: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    reference_points: np.ndarray
    layer_boxes: np.ndarray = field(repr=False)
    layer_scores: np.ndarray = field(repr=False)
    initial_reference_points: np.ndarray = field(repr=False)
    mask_areas: np.ndarray
    windows: list[WindowChoice]
    rle: list[np.ndarray] = field(repr=False)
    lowres_logits: list[bytes] | None = field(default=None, repr=False)
    lowres_shape: tuple[int, int] | None = None
    attention: AttentionMaps | None = field(default=None, repr=False)
    sampling: SamplingPoints | None = field(default=None, repr=False)
    query_logits: list[bytes] | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        return len(self.rle)

    @property
    def chosen_scores(self) -> np.ndarray:
        """float32 ``[T]`` score of the chosen query on every frame."""
        return self.scores[np.arange(self.num_frames), self.chosen_query]

    @property
    def chosen_boxes(self) -> np.ndarray:
        """float32 ``[T, 4]`` box of the chosen query on every frame (source pixels)."""
        return self.boxes[np.arange(self.num_frames), self.chosen_query]

    def mask(self, frame_index: int, threshold: float | None = None) -> np.ndarray:
        """bool ``[H0, W0]`` mask on frame ``frame_index``.

        At the prediction threshold (``None``) this is the exact stored mask. Another threshold
        re-thresholds the stored low-resolution logits (quantised to 1/16, so a pixel whose
        logit is within 1/16 of the threshold's may differ from a fresh run).
        """
        t = self._check_frame(frame_index)
        if threshold is None or threshold == self.threshold:
            return decode_rle(self.rle[t], self.size)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if self.lowres_logits is None or self.lowres_shape is None:
            raise ValueError(
                "this result keeps masks at its prediction threshold only "
                f"({self.threshold}); predict with keep_logits=True to re-threshold")
        logits = dequantize_logits(self.lowres_logits[t], self.lowres_shape)
        return postprocess_masks(torch.from_numpy(logits)[None], self.size, threshold)[0].numpy()

    def masks(self, threshold: float | None = None) -> Iterator[np.ndarray]:
        """Masks of all frames in order, one bool ``[H0, W0]`` at a time."""
        for t in range(self.num_frames):
            yield self.mask(t, threshold)

    @property
    def num_layers(self) -> int:
        """Decoder layers L of the model that made this result."""
        return int(self.layer_boxes.shape[2])

    @property
    def layer_reference_points(self) -> np.ndarray:
        """float32 ``[T, Q, L, 2]`` (x, y) in source pixels: the reference point each decoder
        layer started from. Layer 1's is the learned `initial_reference_points`; layer l's is the
        centre of the box layer l - 1 returned (iterative box refinement), so the last layer's
        is `reference_points`."""
        n, q, layers = self.layer_boxes.shape[:3]
        first = np.broadcast_to(self.initial_reference_points, (n, q, 2))[:, :, None]
        corners = self.layer_boxes[:, :, :-1]
        centres = (corners[..., :2] + corners[..., 2:]) / 2
        return np.concatenate([first, centres], axis=2).astype(np.float32)

    @property
    def has_query_masks(self) -> bool:
        """Whether every query's mask was kept (``return_query_masks`` at prediction time)."""
        return self.query_logits is not None and self.lowres_shape is not None

    def query_logits_at(self, frame_index: int) -> np.ndarray:
        """float32 ``[Q, h, w]``: every query's low-resolution mask logits on a frame
        (quantised to 1/16, see `quantize_logits`)."""
        t = self._check_frame(frame_index)
        if not self.has_query_masks:
            raise ValueError("this result keeps the chosen query's mask only; predict with "
                             "return_query_masks=True to keep every query's")
        assert self.query_logits is not None and self.lowres_shape is not None
        return dequantize_logits(self.query_logits[t],
                                 (self.scores.shape[1], *self.lowres_shape))

    def query_masks(self, frame_index: int, threshold: float | None = None,
                    size: tuple[int, int] | None = None) -> np.ndarray:
        """bool ``[Q, H, W]``: every query's mask on a frame at ``size`` (default: the source
        size), from the stored low-resolution logits: bilinear resize, then sigmoid >
        ``threshold`` (default: the prediction threshold), as the chosen mask is made."""
        thr = self.threshold if threshold is None else float(threshold)
        if not 0.0 < thr < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        logits = torch.from_numpy(self.query_logits_at(frame_index))
        return postprocess_masks(logits, size or self.size, thr).numpy()

    def _check_frame(self, frame_index: int) -> int:
        t = int(frame_index)
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {frame_index} out of range: the result has "
                             f"{self.num_frames} frames")
        return t

    def nbytes(self) -> int:
        """Approximate memory held by the per-frame data (bytes)."""
        total = sum(r.nbytes for r in self.rle)
        total += sum(len(b) for b in self.lowres_logits or [])
        total += sum(len(b) for b in self.query_logits or [])
        for a in (self.chosen_query, self.window_index, self.scores, self.boxes,
                  self.reference_points, self.layer_boxes, self.layer_scores,
                  self.initial_reference_points, self.mask_areas):
            total += a.nbytes
        if self.attention is not None:
            total += sum(m.nbytes for m in self.attention.maps)
        if self.sampling is not None:
            total += self.sampling.points.nbytes + self.sampling.weights.nbytes
        return total

    def to_json(self, index: int, fps: float) -> dict[str, Any]:
        """This expression's part of result.json (see the module docstring); ``fps`` is the
        processed frame rate, for the frame times."""
        frames = []
        # The same rounding of the same float32 numbers: layer_boxes[q][-1] == boxes[q] holds
        # in the file too.
        rows = zip(self.chosen_query.tolist(), self.window_index.tolist(),
                   _round(self.scores, 4), _round(self.boxes, 1),
                   _round(self.reference_points, 1), self.mask_areas.tolist(),
                   _round(self.layer_boxes, 1), _round(self.layer_scores, 4), strict=True)
        for t, (q, w, scores, boxes, refs, area, layer_boxes, layer_scores) in enumerate(rows):
            frames.append({
                "frame": t, "time_s": round(t / fps, 6), "window": w, "chosen_query": q,
                "score": scores[q],
                "box": boxes[q], "mask_area": area, "scores": scores, "boxes": boxes,
                "reference_points": refs, "layer_boxes": layer_boxes,
                "layer_scores": layer_scores,
            })
        return {
            "index": index,
            "text": self.text,
            "words": list(self.words),
            "masks": f"masks/{index}",
            "initial_reference_points": _round(self.initial_reference_points, 1),
            "windows": [
                {"index": w.index, "chosen_query": w.chosen_query, "linked_by": w.linked_by,
                 "overlap_iou": None if w.overlap_iou is None else round(w.overlap_iou, 4)}
                for w in self.windows
            ],
            "frames": frames,
        }


def _round(a: np.ndarray, digits: int) -> list:
    return np.round(a.astype(np.float64), digits).tolist()


@dataclass
class VideoResult(Sequence[ExpressionResult]):
    """The results of all expressions on one video; behaves as a list of `ExpressionResult`.

    Attributes:
        expressions: one `ExpressionResult` per expression, in the order given.
        source: `SourceInfo` of the processed video.
        model_name: the model's registry name, if known.
        settings: window, overlap, short_side, threshold, input_size, mask_size, num_queries,
            device.
        windows: frame ranges ``(start, end)`` of the inference windows.
        timings: seconds spent reading, in the model, post-processing, in total.
    """

    expressions: list[ExpressionResult]
    source: SourceInfo
    model_name: str | None
    settings: dict[str, Any]
    windows: list[tuple[int, int]]
    timings: dict[str, float]

    @overload
    def __getitem__(self, index: int) -> ExpressionResult: ...
    @overload
    def __getitem__(self, index: slice) -> list[ExpressionResult]: ...
    def __getitem__(self, index):
        return self.expressions[index]

    def __len__(self) -> int:
        return len(self.expressions)

    @property
    def num_frames(self) -> int:
        return self.source.num_frames

    def frame_time(self, frame_index: int) -> float:
        """Seconds from the start of the processed sequence to frame ``frame_index``."""
        return frame_index / self.source.fps

    def to_json(self) -> dict[str, Any]:
        """The result.json document (see the module docstring and `RESULT_SCHEMA`)."""
        expressions = [e.to_json(i, self.source.fps) for i, e in enumerate(self.expressions)]
        return {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "model": self.model_name,
            "source": self.source.to_json(),
            "settings": _jsonable(self.settings),
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "windows": [{"index": i, "start": s, "end": e}
                        for i, (s, e) in enumerate(self.windows)],
            "expressions": expressions,
        }

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write `to_json` to ``path``."""
        return _write_json(Path(path), self.to_json())

    # ------------------------------------------------------------------ frames of the source

    def iter_source_frames(self, video: str | os.PathLike | np.ndarray | None = None
                           ) -> Iterator[np.ndarray]:
        """The processed frames again, uint8 ``[H0, W0, 3]`` (decoded from ``source.path``
        with the same fps / max_frames, or taken from an array)."""
        if video is None:
            video = self.source.path
        if video is None:
            raise ValueError("this result was computed on in-memory frames, not a file: pass "
                             "them as a uint8 [T, H, W, 3] array (write_outputs(..., frames=))")
        if isinstance(video, np.ndarray):
            if video.shape[0] < self.num_frames or video.shape[1:3] != self.source.size:
                raise ValueError(f"frames of shape {video.shape} do not match the result "
                                 f"({self.num_frames} frames of {self.source.size})")
            yield from video[: self.num_frames]
            return
        from rvos.video import iter_frames

        n = 0
        for frame in iter_frames(video, fps=self.source.sample_fps,
                                 max_frames=self.num_frames):
            if frame.shape[:2] != self.source.size:
                raise ValueError(f"{_file_name(video)} has frames of {frame.shape[:2]}, the result "
                                 f"{self.source.size}: not the video it was computed on")
            n += 1
            yield frame
        if n != self.num_frames:
            raise ValueError(f"{_file_name(video)} gave {n} frames, the result has "
                             f"{self.num_frames}")

    # --------------------------------------------------------------------------- rendering

    def render_overlay(self, frame_index: int, frame: np.ndarray, *,
                       threshold: float | None = None, alpha: float = 0.5,
                       expressions: Sequence[int] | None = None) -> np.ndarray:
        """uint8 ``[H0, W0, 3]``: ``frame`` with the masks of all (or the listed) expressions,
        expression k in palette colour k."""
        from rvos import visualize

        chosen = range(len(self)) if expressions is None else expressions
        masks = [self[e].mask(frame_index, threshold) for e in chosen]
        colors = visualize.palette(len(self))
        return visualize.overlay_masks(frame, masks, colors=[colors[e] for e in chosen],
                                       alpha=alpha)

    def render_queries(self, expression: int, frame_index: int, frame: np.ndarray, *,
                       sampling: bool = False, top_points: int = 32) -> np.ndarray:
        """uint8 ``[H0, W0, 3]``: every query's box (labelled with its score) and reference
        point on ``frame``, the chosen query highlighted; with ``sampling`` also each query's
        ``top_points`` heaviest deformable-attention sampling points."""
        from rvos import visualize

        e = self[expression]
        t = e._check_frame(frame_index)
        points = weights = None
        if sampling:
            if e.sampling is None:
                raise ValueError("no sampling points: predict with return_sampling=True")
            order = np.argsort(-e.sampling.weights[t], axis=1)[:, :top_points]  # [Q, N]
            points = np.take_along_axis(e.sampling.points[t], order[..., None], axis=1)
            weights = np.take_along_axis(e.sampling.weights[t], order, axis=1)
        return visualize.draw_queries(
            frame, e.boxes[t], e.scores[t], int(e.chosen_query[t]),
            ref_points=e.reference_points[t], sampling_points=points, sampling_weights=weights)

    def render_decoder(self, expression: int, frame_index: int, frame: np.ndarray, *,
                       query: int | None = None, min_width: int = 640) -> np.ndarray:
        """uint8 image: the decoder's layer-by-layer refinement on ``frame``
        (`rvos.visualize.draw_decoder`): every query's path from its first reference point
        through its box centre after each decoder layer (``query=None``), or one query's box
        after every layer with each layer's score."""
        from rvos import visualize

        e = self[expression]
        t = e._check_frame(frame_index)
        return visualize.draw_decoder(
            frame, e.layer_boxes[t], e.layer_scores[t], e.layer_reference_points[t],
            int(e.chosen_query[t]), query, min_width=min_width)

    def render_layer_scores(self, expression: int, frame_index: int, *,
                            size: tuple[int, int] = (640, 240)) -> np.ndarray:
        """uint8 ``[H, W, 3]`` plot of every query's score after each decoder layer on one
        frame (x: layer 1..L), the chosen query thicker."""
        from rvos import visualize

        e = self[expression]
        t = e._check_frame(frame_index)
        return visualize.plot_scores(e.layer_scores[t].T, int(e.chosen_query[t]), size=size,
                                     x_start=1, x_label="decoder layer")

    def render_query_masks(self, expression: int, frame_index: int, frame: np.ndarray, *,
                           threshold: float | None = None, tile_width: int = 240
                           ) -> np.ndarray:
        """uint8 image: small multiples of every query's mask on ``frame``, each with its
        score, the chosen query marked (`rvos.visualize.query_mask_grid`). Needs a result
        predicted with ``return_query_masks=True``."""
        from rvos import visualize

        e = self[expression]
        t = e._check_frame(frame_index)
        h0, w0 = frame.shape[:2]
        # tile_width wide, but at most twice as tall (a 4000×1 clip would make 1 GB tiles)
        scale = min(tile_width / w0, 2 * tile_width / h0)
        tw, th = max(1, round(w0 * scale)), max(1, round(h0 * scale))
        small = cv2.resize(frame, (tw, th), interpolation=cv2.INTER_AREA if tw < w0
                           else cv2.INTER_LINEAR)
        masks = e.query_masks(t, threshold, size=(th, tw))
        return visualize.query_mask_grid(small, masks, e.scores[t], int(e.chosen_query[t]))

    def render_attention(self, expression: int, frame_index: int, frame: np.ndarray, *,
                         word: int | str = "all", level: int | str = 0,
                         head: int | None = None) -> np.ndarray:
        """uint8 image: the attention of ``word`` (index) over ``frame`` at ``level``, or with
        ``word="all"`` a grid with one panel per word; of one ``head`` or (None) their mean.
        A title line says which word, level and head it shows, and a colour scale below gives
        the range (`rvos.visualize.attention_view`)."""
        from rvos import visualize

        e = self[expression]
        t = e._check_frame(frame_index)
        if e.attention is None:
            raise ValueError("no attention maps: predict with return_attention=True")
        att = e.attention
        lvl = att.levels.index(level) if isinstance(level, str) else int(level)
        if not 0 <= lvl < len(att.levels):
            raise IndexError(f"level {level} out of range; levels are {att.levels}")
        kind, _, stride = att.levels[lvl].partition("/")
        names = {"fusion": "early fusion", "fpn": "cross-modal FPN"}  # as the app's menu
        where = f"level {names.get(kind, kind)}, 1/{stride}" if stride else f"level {kind}"
        which = "mean of heads" if head is None else f"head {int(head) + 1}"
        if word == "all":
            if e.words:
                maps = [att.get(t, w, lvl, head) for w in range(len(e.words))]
                grid = visualize.attention_grid(frame, maps, e.words)
            else:  # nothing to pick words from: the whole expression's attention
                grid = visualize.attention_grid(frame, [att.get(t, None, lvl, head)],
                                                ["(no words)"])
            return visualize.attention_view(
                grid, f"every word · {where} · {which}", "low", "high",
                "attention weight, each panel on its own scale")
        if isinstance(word, str):
            raise ValueError(f"word must be a word index or 'all', got {word!r}")
        heat = att.get(t, word, lvl, head)
        finite = heat[np.isfinite(heat)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        return visualize.attention_view(
            visualize.draw_attention(frame, heat),
            f"word “{e.words[word]}” · {where} · {which}", low, high)

    def render_scores(self, expression: int, frame_index: int | None = None, *,
                      size: tuple[int, int] = (640, 240)) -> np.ndarray:
        """uint8 ``[H, W, 3]`` plot of every query's score over the frames of ``expression``
        (frames counted from 1 on the axis), with a cursor at ``frame_index``. The query chosen
        at ``frame_index`` (default: on the first frame) is highlighted; query indices are per
        window, so a line that crosses a window boundary joins two unrelated queries of the
        same index."""
        from rvos import visualize

        e = self[expression]
        t = 0 if frame_index is None else e._check_frame(frame_index)
        return visualize.plot_scores(e.scores, int(e.chosen_query[t]), frame_index, size=size,
                                     x_start=1, x_label="frame")


def _file_name(video: Any) -> str:
    """How messages name a source: its file name, never the folder (a server's)."""
    return "the frames" if isinstance(video, np.ndarray) else repr(Path(video).name)


def _write_json(path: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` under a temporary name, then rename it to ``path`` (never half-written)."""
    from rvos.video import partial_path

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# Every file and folder a run writes into its output folder (`write_outputs`, and the slide
# exports of `rvos.exports`); `remove_outputs` deletes them.
OUTPUT_NAMES = ("overlay.mp4", "masks", "masks.zip", "result.json", "figure.png", "figure.pdf",
                "overlay.gif")


def remove_outputs(out_dir: str | os.PathLike) -> list[Path]:
    """Delete what an earlier run wrote into ``out_dir`` (`OUTPUT_NAMES`, and the temporary
    ``.*.partial-*`` files of a run that was killed), so that the folder never mixes two runs'
    files; anything else in the folder is left alone. Returns what was removed."""
    from rvos.video import PARTIAL_GLOB

    out = Path(out_dir)
    if not out.is_dir():
        return []
    removed = []
    for path in [*(out / n for n in OUTPUT_NAMES), *out.glob(PARTIAL_GLOB)]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


# ---------------------------------------------------------------------------------- writing


class OutputWriter:
    """Writes a prediction's files *while it runs*: ``overlay.mp4`` and ``masks/<k>/<t>.png``
    (with ``masks.zip``) frame by frame in a background thread, ``result.json`` at the end.

    The predictor calls `frames_ready` after every window; the thread renders every frame
    whose masks are final and hands it to the H.264 encoder (another process). So drawing, PNG
    compression and encoding overlap the model instead of following it; on a long video they
    used to take as long again after the prediction had finished. The source frames come from
    the predictor's own reader when it hands them over (`push_frame`, with ``pushed``: small
    frames, so that the ones waiting for their masks stay a few hundred MB at most), else from
    a reader of this thread's own (as `VideoResult.iter_source_frames` reads them).

    Arguments:
        out_dir: output folder (created).
        source: the `SourceInfo` of the processed frames.
        num_expressions: how many masks each frame has.
        frames: uint8 ``[T, H0, W0, 3]`` when the result is computed on an array (a file is
            re-read from ``source.path``, or from ``video_path``).
        pushed: the frames will come through `push_frame`, in order.
        overlay / masks: write the overlay video / the mask PNGs and zip.
    """

    _END = object()

    def __init__(self, out_dir: str | os.PathLike, source: SourceInfo, num_expressions: int, *,
                 video_path: str | os.PathLike | None = None, frames: np.ndarray | None = None,
                 pushed: bool = False, overlay: bool = True, masks: bool = True) -> None:
        self.out = Path(out_dir)
        self.source = source
        self.num_expressions = num_expressions
        self.overlay, self.masks = overlay, masks
        self._video = frames if frames is not None else (video_path or source.path)
        self._pushed: queue.SimpleQueue | None = queue.SimpleQueue() if pushed else None
        if overlay and self._video is None and not pushed:
            raise ValueError("this result was computed on in-memory frames, not a file: pass "
                             "them as a uint8 [T, H, W, 3] array (write_outputs(..., frames=))")
        self._audio = self._video if (frames is None and source.has_audio) else None
        self._ready = 0  # frames whose masks are final
        self._total: int | None = None  # known at finish
        self._mask_of: Callable[[int], list[np.ndarray]] | None = None
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._stop = False
        self.seconds = 0.0  # the writing thread's busy time
        self.out.mkdir(parents=True, exist_ok=True)
        # Everything is written under temporary names (`rvos.video.partial_path`) and renamed
        # into place by `finish`; `abort` deletes them. So ``masks/``, ``masks.zip`` and
        # ``result.json`` are complete or absent (the overlay: `VideoWriter` does the same).
        from rvos.video import partial_path

        self._mask_dir = self.out / "masks"
        self._mask_tmp = partial_path(self._mask_dir)
        self._zip_tmp = partial_path(self.out / "masks.zip")
        self._placed: list[Path] = []  # final names this writer has put in place
        self._thread = threading.Thread(target=self._run, name="rvos-outputs", daemon=True)
        self._thread.start()

    @property
    def pushes(self) -> bool:
        """Whether the frames come through `push_frame`."""
        return self._pushed is not None

    def push_frame(self, frame: np.ndarray) -> None:
        """The next source frame (uint8 ``[H0, W0, 3]``), with ``pushed``."""
        assert self._pushed is not None, "push_frame needs OutputWriter(..., pushed=True)"
        self._pushed.put(frame)

    def frames_ready(self, count: int, mask_of: Callable[[int], list[np.ndarray]]) -> None:
        """Frames ``[0, count)`` are final; ``mask_of(t)`` gives frame t's bool masks
        ``[H0, W0]``, one per expression (called from the writing thread)."""
        with self._cond:
            self._raise_if_failed()
            self._mask_of = mask_of
            self._ready = max(self._ready, count)
            self._cond.notify_all()

    def finish(self, result: VideoResult) -> dict[str, Path]:
        """Write the rest, wait for the thread, then ``result.json``; paths by name
        (``overlay``, ``masks``, ``masks_zip``, ``result``)."""
        started = time.perf_counter()
        with self._cond:
            self._mask_of = self._mask_of or (lambda t: [e.mask(t) for e in result])
            self._ready = self._total = result.num_frames
            self._cond.notify_all()
        if self._pushed is not None:
            self._pushed.put(self._END)  # no frame follows
        self._thread.join()
        self._raise_if_failed()
        paths: dict[str, Path] = {}
        if self.overlay:
            paths["overlay"] = self.out / "overlay.mp4"
            self._placed.append(paths["overlay"])
        if self.masks:
            paths["masks"] = self._mask_dir
            paths["masks_zip"] = self.out / "masks.zip"
            if self._mask_dir.is_dir() and not self._mask_dir.is_symlink():
                shutil.rmtree(self._mask_dir)  # an earlier, longer run's frames must not stay
            self._mask_tmp.mkdir(exist_ok=True)  # (a run of zero frames wrote none)
            os.replace(self._mask_tmp, self._mask_dir)
            self._placed.append(self._mask_dir)
            if not self._zip_tmp.exists():
                zipfile.ZipFile(self._zip_tmp, "w").close()
            os.replace(self._zip_tmp, paths["masks_zip"])
            self._placed.append(paths["masks_zip"])
        doc = result.to_json()
        # What writing cost beyond the prediction: the thread's time left after it ended.
        doc["timings"]["write_s"] = round(time.perf_counter() - started, 4)
        doc["outputs"] = {k: v.relative_to(self.out).as_posix() for k, v in paths.items()}
        self._placed.append(self.out / "result.json")
        paths["result"] = _write_json(self.out / "result.json", doc)
        self._placed.clear()  # complete: abort() no longer removes anything
        return paths

    def abort(self) -> None:
        """Stop writing (the prediction was cancelled, failed or was interrupted) and delete
        what this writer wrote: its temporary files, and any output it had already renamed into
        place when `finish` was interrupted. Safe to call more than once."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._pushed is not None:
            self._pushed.put(self._END)  # a thread waiting for a frame wakes up
        self._thread.join()
        for path in (self._mask_tmp, self._zip_tmp, *self._placed):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        self._placed.clear()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _wait_for(self, t: int) -> bool:
        """Block until frame t is final; False when the run ended before it (or stopped)."""
        with self._cond:
            while not self._stop and t >= self._ready and (self._total is None
                                                          or t < self._total):
                self._cond.wait()
            return not self._stop and t < self._ready

    def _run(self) -> None:
        from rvos import visualize
        from rvos.video import VideoWriter

        colors = visualize.palette(self.num_expressions)
        writer = zipped = frames = None
        try:
            if not self._wait_for(0):
                return
            if self.masks:
                zipped = zipfile.ZipFile(self._zip_tmp, "w",
                                         compression=zipfile.ZIP_STORED)  # PNGs are compressed
                for k in range(self.num_expressions):
                    (self._mask_tmp / str(k)).mkdir(parents=True, exist_ok=True)
            if self.overlay:
                writer = VideoWriter(self.out / "overlay.mp4", self.source.frame_rate,
                                     audio_from=self._audio)
            frames = self._frames() if self.overlay else itertools.repeat(None)
            t = 0  # the frame being written
            for frame in frames:
                if not self._wait_for(t):
                    break
                busy = time.perf_counter()
                masks = self._mask_of(t)
                if zipped is not None:
                    for k, mask in enumerate(masks):
                        name = f"{k}/{t:05d}.png"
                        data = palette_png_bytes(mask.astype(np.uint8))
                        (self._mask_tmp / name).write_bytes(data)
                        zipped.writestr(name, data)
                if writer is not None:
                    writer.write(visualize.overlay_masks(frame, masks, colors=colors, alpha=0.5))
                self.seconds += time.perf_counter() - busy
                t += 1
            if self._stop:
                return
            if self._total is not None and t < self._total:
                raise ValueError(f"{_file_name(self._video)} gave {t} frames, the result "
                                 f"has {self._total}")
            if writer is not None:
                writer.close()
                writer = None
        except BaseException as err:  # handed to the predictor's thread
            self._error = err
        finally:
            if frames is not None:
                getattr(frames, "close", lambda: None)()  # ends the ffmpeg reader
            if writer is not None:
                writer.abort()
            if zipped is not None:
                zipped.close()

    def _frames(self) -> Iterator[np.ndarray]:
        if self._pushed is not None:
            while (frame := self._pushed.get()) is not self._END:
                yield frame
            return
        if isinstance(self._video, np.ndarray):
            yield from self._video
            return
        from rvos.video import iter_frames

        for frame in iter_frames(self._video, fps=self.source.sample_fps,
                                 max_frames=self.source.max_frames):
            if frame.shape[:2] != self.source.size:
                raise ValueError(f"{_file_name(self._video)} has frames of "
                                 f"{frame.shape[:2]}, the result {self.source.size}: not the "
                                 "video it was computed on")
            yield frame


def palette_png_bytes(labels: np.ndarray) -> bytes:
    """`rvos.video.write_palette_png`'s file, in memory."""
    from rvos.video import PNG_LEVEL, palette_image

    buffer = io.BytesIO()
    palette_image(labels).save(buffer, format="PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


def write_outputs(result: VideoResult, out_dir: str | os.PathLike, *,
                  video_path: str | os.PathLike | None = None,
                  frames: np.ndarray | None = None, overlay: bool = True,
                  masks: bool = True) -> dict[str, Path]:
    """Write ``overlay.mp4``, ``masks/<k>/<frame:05d>.png``, ``masks.zip`` and ``result.json``.

    Arguments:
        result: a `VideoResult`.
        out_dir: output folder (created).
        video_path: the source video, to read frames and copy audio from (default: the path the
            result was computed on).
        frames: uint8 ``[T, H0, W0, 3]`` instead of a file, for results computed on an array.
        overlay / masks: write the overlay video / the mask PNGs and zip.
    Returns:
        paths by name: ``overlay``, ``masks``, ``masks_zip``, ``result``.

    The overlay is H.264 yuv420p at the processed frame rate and size (odd sizes padded by one
    pixel), with the source's audio when it has one. (`Predictor.predict(..., out_dir=)` writes
    the same files while it predicts.)
    """
    if frames is not None and (frames.shape[0] < result.num_frames
                               or frames.shape[1:3] != result.source.size):
        raise ValueError(f"frames of shape {frames.shape} do not match the result "
                         f"({result.num_frames} frames of {result.source.size})")
    writer = OutputWriter(out_dir, result.source, len(result), video_path=video_path,
                          frames=frames, overlay=overlay, masks=masks)
    try:
        return writer.finish(result)
    except BaseException:
        writer.abort()  # no partial file stays behind
        raise


# ------------------------------------------------------------------------------------ schema

_NUM = {"type": "number"}
_INT = {"type": "integer"}
_NONNEG = {"type": "integer", "minimum": 0}
_BOX = {"type": "array", "items": _NUM, "minItems": 4, "maxItems": 4}
_POINT = {"type": "array", "items": _NUM, "minItems": 2, "maxItems": 2}
_PROB = {"type": "number", "minimum": 0, "maximum": 1}


def _object(props: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props,
            "required": [k for k in props if k not in optional], "additionalProperties": False}


RESULT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "rvos prediction result",
    **_object({
        "format": {"const": RESULT_FORMAT},
        "version": {"const": RESULT_VERSION},
        "model": {"type": ["string", "null"]},
        "source": _object({
            "path": {"type": ["string", "null"]},
            "width": {"type": "integer", "minimum": 1},
            "height": {"type": "integer", "minimum": 1},
            "fps": {"type": "number", "exclusiveMinimum": 0},
            "frame_rate": {"type": "string", "pattern": r"^\d+/\d+$"},
            "num_frames": {"type": "integer", "minimum": 1},
            "source_fps": {"type": "number", "exclusiveMinimum": 0},
            "source_num_frames": {"type": ["integer", "null"]},
            "has_audio": {"type": "boolean"},
            "rotation": {"enum": [0, 90, 180, 270]},
            "variable_frame_rate": {"type": "boolean"},
        }, optional=("variable_frame_rate",)),
        "settings": _object({
            "window": {"type": "integer", "minimum": 1},
            "overlap": _NONNEG,
            "short_side": {"type": ["integer", "null"]},
            "threshold": _PROB,
            "input_size": {"type": "array", "items": _INT, "minItems": 2, "maxItems": 2},
            "mask_size": {"type": "array", "items": _INT, "minItems": 2, "maxItems": 2},
            "num_queries": {"type": "integer", "minimum": 1},
            "device": {"type": "string"},
            "precision": {"enum": ["fp32", "bf16", "fp16", "int8"]},
        }, optional=("precision",)),
        "timings": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                    "required": ["read_s", "model_s", "postprocess_s", "total_s"]},
        "windows": {"type": "array", "minItems": 1, "items": _object(
            {"index": _NONNEG, "start": _NONNEG, "end": {"type": "integer", "minimum": 1}})},
        "expressions": {"type": "array", "minItems": 1, "items": _object({
            "index": _NONNEG,
            "text": {"type": "string", "minLength": 1},
            "words": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "masks": {"type": "string"},
            "initial_reference_points": {"type": "array", "items": _POINT, "minItems": 1},
            "windows": {"type": "array", "minItems": 1, "items": _object({
                "index": _NONNEG,
                "chosen_query": _NONNEG,
                "linked_by": {"enum": ["score", "overlap"]},
                "overlap_iou": {"type": ["number", "null"]},
            })},
            "frames": {"type": "array", "minItems": 1, "items": _object({
                "frame": _NONNEG,
                "time_s": {"type": "number", "minimum": 0},
                "window": _NONNEG,
                "chosen_query": _NONNEG,
                "score": _PROB,
                "box": _BOX,
                "mask_area": _NONNEG,
                "scores": {"type": "array", "items": _PROB, "minItems": 1},
                "boxes": {"type": "array", "items": _BOX, "minItems": 1},
                "reference_points": {"type": "array", "items": _POINT, "minItems": 1},
                # [query][layer]: one entry per query, each the L decoder layers in order.
                "layer_boxes": {"type": "array", "minItems": 1, "items": {
                    "type": "array", "items": _BOX, "minItems": 1}},
                "layer_scores": {"type": "array", "minItems": 1, "items": {
                    "type": "array", "items": _PROB, "minItems": 1}},
            })},
        })},
        "outputs": _object({"overlay": {"type": "string"}, "masks": {"type": "string"},
                            "masks_zip": {"type": "string"}},
                           optional=("overlay", "masks", "masks_zip")),
    }, optional=("outputs",)),
}
