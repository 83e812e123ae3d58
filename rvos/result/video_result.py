"""What a prediction holds, how it is stored compactly, rendered and written to disk.

`rvos.predictor.predictor.Predictor` fills these objects; everything here only *reads* them:
rendering a frame, writing the overlay video, the mask PNGs and ``result.json`` never runs the
model again.

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

result.json, the document ``VideoResult.to_json()`` writes, is described in
`rvos.result.result_json`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import cv2
import numpy as np
import torch

from rvos.media.video import iter_frames
from rvos.modeling.processing import postprocess_masks
from rvos.result.objects import ObjectTrack, compose_labels
from rvos.result.records import AttentionMaps, SamplingPoints, SourceInfo, WindowChoice
from rvos.result.result_json import (
    RESULT_FORMAT,
    RESULT_VERSION,
    expression_json,
    video_json,
    write_json,
)
from rvos.result.rle import decode_rle, dequantize_logits
from rvos.viz.colors import object_color, palette
from rvos.viz.decoder import draw_decoder, query_mask_grid
from rvos.viz.draw import overlay_masks
from rvos.viz.explorer import (
    attention_grid,
    attention_view,
    draw_attention,
    draw_queries,
    plot_scores,
)

__all__ = [
    "RESULT_FORMAT",
    "RESULT_VERSION",
    "ExpressionResult",
    "VideoResult",
    "is_found",
]


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
        mask_areas: int64 ``[T]`` object pixels per frame (0 where the object was not found).
        windows: how each window chose its query (`WindowChoice`).
        presence_scores: float32 ``[T]`` when the model has a presence head
            (`rvos.modeling.presence_head`): its probability that each frame's mask shows the
            sentence's object, the frames' `presence`; None: the chosen query's score is.
        presence_threshold: frames whose presence (`presence`) is below it were "not found":
            their stored mask is empty (``rvos.predictor.presence``; 0: none, the paper's).
        absent_rle: the masks the chosen query had on the frames not found (frame -> RLE at
            ``threshold``), so that a lower presence threshold restores them exactly.
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
    presence_threshold: float = 0.0
    presence_scores: np.ndarray | None = field(default=None, repr=False)
    absent_rle: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    extra_objects: list[ObjectTrack] = field(default_factory=list, repr=False)

    @property
    def num_objects(self) -> int:
        """1, or with ``objects="all"`` 1 + the further objects (`rvos.result.objects`)."""
        return 1 + len(self.extra_objects)

    def object_found(self, obj: int) -> np.ndarray:
        """bool ``[T]``: frames where object ``obj`` (0: the chosen query) has a query and its
        score reaches the presence threshold."""
        if obj == 0:
            return self.found
        track = self.extra_objects[obj - 1]
        return (track.query >= 0) & is_found(track.scores(self.scores),
                                             self.presence_threshold)

    def object_mask(self, obj: int, frame_index: int,
                    threshold: float | None = None) -> np.ndarray:
        """bool ``[H0, W0]``: object ``obj``'s mask on a frame (object 0: `mask`)."""
        if obj == 0:
            return self.mask(frame_index, threshold)
        t = self._check_frame(frame_index)
        if not self.object_found(obj)[t]:
            return np.zeros(self.size, dtype=bool)
        thr = self.threshold if threshold is None else threshold
        return self.extra_objects[obj - 1].mask(t, self.size, thr, self.lowres_shape)

    def object_masks(self, frame_index: int, threshold: float | None = None
                     ) -> list[np.ndarray]:
        """Every object's bool ``[H0, W0]`` mask on a frame, object 0 first."""
        return [self.object_mask(j, frame_index, threshold) for j in range(self.num_objects)]

    def union_mask(self, frame_index: int, threshold: float | None = None) -> np.ndarray:
        """bool ``[H0, W0]``: every object's pixels (what MeViS scores an expression by)."""
        return np.logical_or.reduce(self.object_masks(frame_index, threshold))

    def union_masks(self, threshold: float | None = None) -> Iterator[np.ndarray]:
        """`union_mask` of every frame in order, one at a time: the expression's whole answer
        (with one object, `masks`), what evaluation and comparison score."""
        if not self.extra_objects:
            yield from self.masks(threshold)
            return
        for t in range(self.num_frames):
            yield self.union_mask(t, threshold)

    def frame_mask(self, frame_index: int) -> np.ndarray:
        """What the mask PNG of a frame holds: the bool mask, or with several objects a uint8
        label map (``j + 1`` for object j, `rvos.result.objects.compose_labels`)."""
        if not self.extra_objects:
            return self.mask(frame_index)
        return compose_labels(self.object_masks(frame_index))

    @property
    def num_frames(self) -> int:
        return len(self.rle)

    @property
    def presence(self) -> np.ndarray:
        """float32 ``[T]``: how sure the model is that the object is on each frame: its presence
        head's probability (`presence_scores`) where it has one, else the chosen query's score
        there (`chosen_scores`)."""
        if self.presence_scores is not None:
            return self.presence_scores
        return self.chosen_scores

    @property
    def found(self) -> np.ndarray:
        """bool ``[T]``: frames whose `presence` reaches `presence_threshold`."""
        return is_found(self.presence, self.presence_threshold)

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
        if not self.found[t]:
            return np.zeros(self.size, dtype=bool)
        return self.raw_mask(t, threshold)

    def raw_mask(self, frame_index: int, threshold: float | None = None) -> np.ndarray:
        """bool ``[H0, W0]``: the chosen query's mask on a frame whether or not the object was
        found there (`mask` empties the frames below the presence threshold)."""
        t = self._check_frame(frame_index)
        if threshold is None or threshold == self.threshold:
            return decode_rle(self.absent_rle.get(t, self.rle[t]), self.size)
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
        with np.errstate(invalid="ignore"):  # a degenerate box (inf, -inf) has no centre: NaN
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
        total += sum(r.nbytes for r in self.absent_rle.values())
        for track in self.extra_objects:
            total += sum(r.nbytes for r in track.rle) + track.query.nbytes
            total += sum(len(b or b"") for b in track.lowres_logits or [])
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

    def to_json(self, index: int, fps: float, *, objects: bool = False) -> dict[str, Any]:
        """This expression's part of result.json (`rvos.result.result_json`); ``fps`` is the
        processed frame rate, for the frame times; ``objects``: write ``objects`` even for one
        object (a run with ``objects="all"``)."""
        return expression_json(self, index, fps, objects=objects)


def is_found(presence: np.ndarray, presence_threshold: float) -> np.ndarray:
    """bool: ``presence >= presence_threshold`` (the one comparison every part uses, so that
    the predictor's empty masks, `ExpressionResult.found` and result.json agree). At 0 every
    frame is found, whatever its score (even NaN): the paper's answer, unchanged."""
    presence = np.asarray(presence, dtype=np.float64)
    if float(presence_threshold) <= 0.0:
        return np.ones(presence.shape, dtype=bool)
    return presence >= float(presence_threshold)


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
        """The result.json document (`rvos.result.result_json`, `RESULT_SCHEMA`)."""
        return video_json(self)

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write `to_json` to ``path``."""
        return write_json(Path(path), self.to_json())

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
        chosen = range(len(self)) if expressions is None else expressions
        if not any(self[e].extra_objects for e in chosen):
            masks = [self[e].mask(frame_index, threshold) for e in chosen]
            colors = palette(len(self))
            return overlay_masks(frame, masks, colors=[colors[e] for e in chosen],
                                 alpha=alpha)
        # objects="all": each object in its own colour, the chosen query's on top.
        masks, colors = [], []
        for e in chosen:
            for j, m in reversed(list(enumerate(self[e].object_masks(frame_index, threshold)))):
                masks.append(m)
                colors.append(object_color(e, j, len(self)))
        return overlay_masks(frame, masks, colors=colors, alpha=alpha)

    def render_queries(self, expression: int, frame_index: int, frame: np.ndarray, *,
                       sampling: bool = False, top_points: int = 32) -> np.ndarray:
        """uint8 ``[H0, W0, 3]``: every query's box (labelled with its score) and reference
        point on ``frame``, the chosen query highlighted; with ``sampling`` also each query's
        ``top_points`` heaviest deformable-attention sampling points."""
        e = self[expression]
        t = e._check_frame(frame_index)
        points = weights = None
        if sampling:
            if e.sampling is None:
                raise ValueError("no sampling points: predict with return_sampling=True")
            order = np.argsort(-e.sampling.weights[t], axis=1)[:, :top_points]  # [Q, N]
            points = np.take_along_axis(e.sampling.points[t], order[..., None], axis=1)
            weights = np.take_along_axis(e.sampling.weights[t], order, axis=1)
        return draw_queries(
            frame, e.boxes[t], e.scores[t], int(e.chosen_query[t]),
            ref_points=e.reference_points[t], sampling_points=points, sampling_weights=weights)

    def render_decoder(self, expression: int, frame_index: int, frame: np.ndarray, *,
                       query: int | None = None, min_width: int = 640) -> np.ndarray:
        """uint8 image: the decoder's layer-by-layer refinement on ``frame``
        (`rvos.viz.decoder.draw_decoder`): every query's path from its first reference point
        through its box centre after each decoder layer (``query=None``), or one query's box
        after every layer with each layer's score."""
        e = self[expression]
        t = e._check_frame(frame_index)
        return draw_decoder(
            frame, e.layer_boxes[t], e.layer_scores[t], e.layer_reference_points[t],
            int(e.chosen_query[t]), query, min_width=min_width)

    def render_layer_scores(self, expression: int, frame_index: int, *,
                            size: tuple[int, int] = (640, 240)) -> np.ndarray:
        """uint8 ``[H, W, 3]`` plot of every query's score after each decoder layer on one
        frame (x: layer 1..L), the chosen query thicker."""
        e = self[expression]
        t = e._check_frame(frame_index)
        return plot_scores(e.layer_scores[t].T, int(e.chosen_query[t]), size=size,
                                     x_start=1, x_label="decoder layer")

    def render_query_masks(self, expression: int, frame_index: int, frame: np.ndarray, *,
                           threshold: float | None = None, tile_width: int = 240
                           ) -> np.ndarray:
        """uint8 image: small multiples of every query's mask on ``frame``, each with its
        score, the chosen query marked (`rvos.viz.decoder.query_mask_grid`). Needs a result
        predicted with ``return_query_masks=True``."""
        e = self[expression]
        t = e._check_frame(frame_index)
        h0, w0 = frame.shape[:2]
        # tile_width wide, but at most twice as tall (a 4000×1 clip would make 1 GB tiles)
        scale = min(tile_width / w0, 2 * tile_width / h0)
        tw, th = max(1, round(w0 * scale)), max(1, round(h0 * scale))
        small = cv2.resize(frame, (tw, th), interpolation=cv2.INTER_AREA if tw < w0
                           else cv2.INTER_LINEAR)
        masks = e.query_masks(t, threshold, size=(th, tw))
        return query_mask_grid(small, masks, e.scores[t], int(e.chosen_query[t]))

    def render_attention(self, expression: int, frame_index: int, frame: np.ndarray, *,
                         word: int | str = "all", level: int | str = 0,
                         head: int | None = None) -> np.ndarray:
        """uint8 image: the attention of ``word`` (index) over ``frame`` at ``level``, or with
        ``word="all"`` a grid with one panel per word; of one ``head`` or (None) their mean.
        A title line says which word, level and head it shows, and a colour scale below gives
        the range (`rvos.viz.explorer.attention_view`)."""
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
                grid = attention_grid(frame, maps, e.words)
            else:  # nothing to pick words from: the whole expression's attention
                grid = attention_grid(frame, [att.get(t, None, lvl, head)],
                                                ["(no words)"])
            return attention_view(
                grid, f"every word · {where} · {which}", "low", "high",
                "attention weight, each panel on its own scale")
        if isinstance(word, str):
            raise ValueError(f"word must be a word index or 'all', got {word!r}")
        heat = att.get(t, word, lvl, head)
        finite = heat[np.isfinite(heat)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        return attention_view(
            draw_attention(frame, heat),
            f"word “{e.words[word]}” · {where} · {which}", low, high)

    def render_scores(self, expression: int, frame_index: int | None = None, *,
                      size: tuple[int, int] = (640, 240)) -> np.ndarray:
        """uint8 ``[H, W, 3]`` plot of every query's score over the frames of ``expression``
        (frames counted from 1 on the axis), with a cursor at ``frame_index``. The query chosen
        at ``frame_index`` (default: on the first frame) is highlighted; query indices are per
        window, so a line that crosses a window boundary joins two unrelated queries of the
        same index. With a presence threshold above 0 it is drawn as a dashed line, and the
        frames where the object was not found are shaded and counted in the legend; a model
        with a presence head adds its probabilities as a black "presence" line."""
        e = self[expression]
        t = 0 if frame_index is None else e._check_frame(frame_index)
        return plot_scores(e.scores, int(e.chosen_query[t]), frame_index, size=size,
                           x_start=1, x_label="frame", found=e.found,
                           presence_threshold=e.presence_threshold,
                           presence=e.presence_scores)


def _file_name(video: Any) -> str:
    """How messages name a source: its file name, never the folder (a server's)."""
    return "the frames" if isinstance(video, np.ndarray) else repr(Path(video).name)
