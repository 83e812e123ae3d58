"""Segment the objects that sentences refer to in a video file (overlay, masks, result.json).

`Predictor` serves people's videos with a ReferFormer: any container, size, orientation and
length, several expressions at once. The model sees one clip tensor at a time, so the video is
streamed through windows of ``window`` frames that overlap by ``overlap`` frames:

* **Preprocessing** is the original one (`rvos.inference.preprocess`: short side 360, ImageNet
  normalisation), applied to each frame as it is decoded, so a 4K frame never reaches the
  model; masks and boxes are still reported at the source size.
* **Shared backbone.** Each window runs the visual backbone once (`ReferFormer.encode_video`)
  and decodes every expression from those features (`ReferFormer.decode`), one expression at a
  time so each expression's numbers are exactly those of running it alone.
* **Query choice.** In a window that covers the whole video the answer is the original one:
  the query with the best mean score over all frames, its masks ``sigmoid(bilinear resize to
  the frame size) > threshold``. For longer videos the first window chooses that way; every
  later window chooses by `link_query`: on the ``overlap`` frames shared with the previous
  window, the query whose masks best match (IoU) the previous window's chosen masks, weighted
  by its mean score in the new window. Query indices mean nothing across windows (query 2 of
  one window and query 2 of the next are unrelated hypotheses), so linking by index would jump
  between objects; linking by the pixels both windows saw keeps the same object.
* **Overlap frames** are reported from the window in which they are more central: the first
  half of an overlap comes from the earlier window, the second half from the later one, so
  every frame is reported once and has context on both sides where possible.
* **Memory** does not grow with video length beyond the compact per-frame results
  (`rvos.result`): one window of preprocessed frames is held at a time, masks are stored as
  run-length encodings at the source size.

Why ``window=36, overlap=8`` by default: the released models were evaluated on whole
Ref-YouTube-VOS validation videos in one pass, a few dozen frames each, so windows of that
length keep the model in the regime it was measured in. Eight shared frames give `link_query`
several frames of evidence, enough that a brief occlusion or the moment two look-alike objects
cross does not decide the link alone, while costing 36 / 28 ≈ 1.29× the compute of
non-overlapping windows.

Command line::

    python -m rvos predict VIDEO --text "a dog" [--text ...] --out DIR
        [--model NAME | --checkpoint PATH] [--window N] [--overlap N] [--fps F]
        [--max-frames N] [--threshold P] [--short-side N] [--device D] [--text-encoder NAME]
        [--figure [--figure-frames N]] [--gif]

writes ``DIR/overlay.mp4``, ``DIR/masks/<k>/<frame:05d>.png``, ``DIR/masks.zip`` and
``DIR/result.json`` (schema in `rvos.result`); ``--figure`` adds ``DIR/figure.png`` and
``DIR/figure.pdf``, ``--gif`` adds ``DIR/overlay.gif`` (slide exports, `rvos.exports`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import functools
import itertools
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rvos.box_ops import box_cxcywh_to_xyxy
from rvos.inference import (
    model_short_side,
    normalize,
    postprocess_masks,
    resize_frames,
    select_query,
)
from rvos.predict_cli import add_cli_arguments, run_cli
from rvos.result import (
    AttentionMaps,
    ExpressionResult,
    OutputWriter,
    SamplingPoints,
    SourceInfo,
    VideoResult,
    WindowChoice,
    decode_rle,
    encode_rle_batch,
    quantize_logits,
    remove_outputs,
    rle_area,
    write_outputs,
)

__all__ = [
    "ATTENTION_STRIDES",
    "DEFAULT_OVERLAP",
    "DEFAULT_WINDOW",
    "ExpressionResult",
    "Predictor",
    "PredictorError",
    "Progress",
    "VideoResult",
    "WindowPlan",
    "add_cli_arguments",
    "default_overlap",
    "group_words",
    "initial_reference_points",
    "link_query",
    "model_short_side",
    "plan_windows",
    "run_cli",
    "run_predict_cli",
    "write_outputs",
]

DEFAULT_WINDOW = 36
DEFAULT_OVERLAP = 8
# Below this IoU on the overlap no query of the new window is taken to be the previous object
# (it left, or the previous choice was a false positive): the window falls back to its score.
MIN_LINK_IOU = 0.1
# Word-attention levels kept by return_attention: the early fusion and the cross-modal FPN, in
# the order the model returns them (`ReferFormer.decode`'s ``attention``).
ATTENTION_STRIDES = {"fusion": (8, 16, 32, 64), "fpn": (4, 8, 16, 32)}
ARRAY_FPS = 30.0  # frame rate assumed for an in-memory array when none is given
# Full-size masks are computed this many pixels at a time (64 MB of float32 logits).
_MASK_PIXELS_PER_STEP = 1 << 24
# With out_dir, the writer takes the decoded frames from the predictor's reader when three
# windows of them fit in this many bytes (up to 720p at the default window), else reads them.
_PUSHED_FRAMES_BYTES = 1 << 29


# A video file, uint8 frames [T, H, W, 3], or an iterable of uint8 [H, W, 3] frames.
VideoInput = str | os.PathLike | np.ndarray | Iterable[np.ndarray]


class PredictorError(ValueError):
    """Bad input to the predictor; the message says what is wrong and what to do."""


# ------------------------------------------------------------------------------- windowing


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


def initial_reference_points(model: torch.nn.Module) -> np.ndarray | None:
    """float32 ``[Q, 2]`` (x, y) in [0, 1]: where the first decoder layer starts each query.

    Deformable DETR's first reference points are a map of the learned query embeddings
    (`rvos.modeling.ReferFormer.initial_reference_points`): the same for every frame, window
    and sentence, so they are computed once instead of being returned per window. None for a
    model without them.
    """
    points = getattr(model, "initial_reference_points", None)
    if points is None:
        return None
    with torch.inference_mode():
        return points().float().cpu().numpy()


# ----------------------------------------------------------------------------------- words


def group_words(tokenizer, text: str) -> tuple[list[str], list[list[int]]]:
    """Split ``text`` into words and map each word to its BPE token positions.

    Words are split at whitespace; Chinese and Japanese, written without spaces, give one word
    per character (a Han character or kana), and a run of other script that follows one without
    a space is a word of its own ("红色car": "红", "色", "car"). A token never splits: one
    token spanning several such characters is one word. (Thai, Lao, Khmer and Myanmar, also
    written without spaces, keep a whole run as one word: their characters are letters.)

    Returns ``(words, groups)``: ``groups[i]`` lists the positions (in the tokenised sequence,
    special tokens included) of word i's tokens; special tokens belong to no word. Punctuation
    and combining marks stay with their word ("dog," and "狗。" are one word each), as a
    reader would count words.
    """
    import unicodedata

    def unspaced(ch: str) -> bool:
        """A Han character (CJK radicals, unified and compatibility ideographs) or kana."""
        cp = ord(ch)
        return (0x2E80 <= cp <= 0x2FDF or 0x3040 <= cp <= 0x31FF or 0x3400 <= cp <= 0x4DBF
                or 0x4E00 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0xFF66 <= cp <= 0xFF9F
                or 0x20000 <= cp <= 0x3FFFF)

    def attaches(ch: str) -> bool:
        """Punctuation and combining marks belong to the word before them."""
        return unicodedata.category(ch)[0] in "PM"

    enc = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    offsets = enc["offset_mapping"]
    special = enc["special_tokens_mask"]
    spans: list[list[int]] = []  # [first char, last char, token positions...]
    pending: list[int] = []  # empty-span tokens (a lone "Ġ" space marker) start the next word
    prev_end = None
    for pos, ((s, e), sp) in enumerate(zip(offsets, special, strict=True)):
        if sp:
            continue
        if e <= s:
            pending.append(pos)
            continue
        first = text[s]
        # A byte-level BPE cuts one character into several tokens with the same span: only a
        # token that starts at or after the previous one's end can begin a word.
        new_char = prev_end is not None and s >= prev_end
        starts_word = (prev_end is None or s > prev_end or bool(pending) or first.isspace()
                       or (new_char and not attaches(first)
                           and (unspaced(first) or unspaced(text[prev_end - 1]))))
        if starts_word:
            spans.append([s, e, *pending, pos])
        else:
            spans[-1][1] = max(spans[-1][1], e)
            spans[-1].append(pos)
        pending = []
        prev_end = max(prev_end or 0, e)
    if pending and spans:
        spans[-1].extend(pending)
    words = [text[s:e].strip() for s, e, *_ in spans]
    keep = [i for i, w in enumerate(words) if w]
    return [words[i] for i in keep], [spans[i][2:] for i in keep]


# -------------------------------------------------------------------------------- progress


@dataclass
class Progress:
    """What `Predictor.iter_predict` yields after each window.

    ``total_windows`` / ``total_frames`` are estimates from the container (exact for arrays);
    ``result`` (and ``paths``, with ``out_dir``) is set on the last item only. ``partial()``
    builds a `VideoResult` of the frames finished so far (e.g. after a Stop button).
    """

    window: int
    total_windows: int | None
    frames_done: int
    total_frames: int | None
    elapsed_s: float
    result: VideoResult | None = None
    paths: dict[str, Path] | None = None  # the files written, with ``out_dir``, on the last item
    _snapshot: Callable[[], VideoResult] | None = None

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def fraction(self) -> float | None:
        if self.done:
            return 1.0
        if not self.total_frames:
            return None
        return min(self.frames_done / self.total_frames, 1.0)

    def partial(self) -> VideoResult:
        if self.result is not None:
            return self.result
        assert self._snapshot is not None
        return self._snapshot()


# ------------------------------------------------------------------------------- predictor


class _Expression:
    """Per-expression state while windows stream by: the linking memory and the per-frame
    results reported so far (all on the CPU, all compact)."""

    def __init__(self, text: str, words: list[str], groups: list[list[int]],
                 size: tuple[int, int], threshold: float, overlap: int, keep_logits: bool,
                 keep_attention: bool, keep_sampling: bool, keep_heads: bool = False,
                 keep_query_masks: bool = False,
                 initial_reference: np.ndarray | None = None) -> None:
        self.text, self.words, self.groups = text, words, groups
        self.size, self.threshold, self.overlap = size, threshold, overlap
        self.keep_logits = keep_logits
        self.keep_attention, self.keep_sampling = keep_attention, keep_sampling
        self.keep_heads = keep_heads
        self.keep_query_masks = keep_query_masks
        h0, w0 = size
        # [Q, 2] in [0, 1] -> source pixels; None: the model has no learned first references.
        self.initial_reference = (None if initial_reference is None else
                                  np.asarray(initial_reference, np.float32) * [w0, h0])
        self.layer_boxes: list[np.ndarray] = []  # per frame [Q, L, 4]
        self.layer_scores: list[np.ndarray] = []  # per frame [Q, L]
        self.query_lowres: list[bytes] = []  # per frame, int8 [Q, h, w] compressed
        self.previous: Tensor | None = None  # bool [overlap, h, w]: chosen masks, last frames
        self.choices: list[WindowChoice] = []
        self.chosen: list[int] = []
        self.window_index: list[int] = []
        self.scores: list[np.ndarray] = []
        self.boxes: list[np.ndarray] = []
        self.refs: list[np.ndarray] = []
        self.rle: list[np.ndarray] = []
        self.areas: list[int] = []
        self.lowres: list[bytes] = []
        self.lowres_shape: tuple[int, int] | None = None
        self.attention: dict[str, list[np.ndarray]] = {}
        self.num_heads = 0  # > 0 when each head's maps are kept
        self.sampling: list[tuple[np.ndarray, np.ndarray]] = []
        self.sampling_layout: tuple[np.ndarray, np.ndarray] | None = None

    def add_window(self, plan: WindowPlan, out: dict[str, Any]) -> None:
        """Choose the query of window ``plan`` and keep its reported frames. ``out`` is
        `ReferFormer.decode`'s output for this expression alone (batch of 1)."""
        logits = out["pred_logits"][0]  # [Tw, Q, K]
        masks = out["pred_masks"][0]  # [Tw, Q, h, w]
        scores = logits.float().sigmoid().max(-1).values  # [Tw, Q]
        n_shared = min(self.overlap, masks.shape[0]) if plan.index > 0 else 0
        if self.previous is None or n_shared == 0:
            query, iou, how = select_query(logits), None, "score"
        else:
            candidates = masks[:n_shared].float().sigmoid() > self.threshold
            query, iou, how = link_query(self.previous[-n_shared:], candidates, scores.mean(0))
        self.choices.append(WindowChoice(plan.index, plan.start, plan.end, query, how, iou))
        if self.overlap:
            self.previous = (masks[-self.overlap:, query].float().sigmoid() > self.threshold).cpu()

        a, b = plan.keep_start - plan.start, plan.keep_end - plan.start
        h0, w0 = self.size
        scale = torch.tensor([w0, h0, w0, h0], dtype=torch.float32, device=masks.device)
        boxes = box_cxcywh_to_xyxy(out["pred_boxes"][0, a:b].float()) * scale
        refs = out["reference_points"][0, a:b].float() * scale[:2]
        self.scores.extend(scores[a:b].cpu().numpy())
        self.boxes.extend(boxes.cpu().numpy())
        self.refs.extend(refs.cpu().numpy())
        self._add_layers(out, a, b, scale, boxes, scores[a:b])
        self.chosen.extend([query] * (b - a))
        self.window_index.extend([plan.index] * (b - a))
        self.lowres_shape = tuple(masks.shape[-2:])
        chosen = masks[a:b, query]  # [n, h, w]
        # A few frames at a time: a window of 4K masks as floats would be gigabytes.
        step = max(1, _MASK_PIXELS_PER_STEP // (h0 * w0))
        for i in range(0, b - a, step):
            full = postprocess_masks(chosen[i:i + step], self.size, self.threshold)
            for counts in encode_rle_batch(full):
                self.rle.append(counts)
                self.areas.append(rle_area(counts))
        if self.keep_logits:
            self.lowres.extend(quantize_logits(chosen))
        if self.keep_query_masks:
            # One block per frame: [n, Q, h, w] -> n maps of [Q * h, w].
            self.query_lowres.extend(quantize_logits(masks[a:b].flatten(1, 2)))
        if self.keep_attention:
            self._add_attention(out["attention"], a, b)
        if self.keep_sampling:
            self._add_sampling(out["attention"], a, b)

    def _add_layers(self, out: dict[str, Any], a: int, b: int, scale: Tensor, boxes: Tensor,
                    scores: Tensor) -> None:
        """Every decoder layer's boxes and scores of frames ``[a, b)`` of the window. The last
        layer is the reported ``boxes`` / ``scores`` themselves (the model computes it by the
        same ops), so the two agree exactly, in memory and in result.json."""
        layer_boxes = out.get("layer_boxes")
        if layer_boxes is None:  # a model that returns the last layer only
            self.layer_boxes.extend(boxes[:, :, None].cpu().numpy())
            self.layer_scores.extend(scores[:, :, None].cpu().numpy())
            return
        # [L, 1, Tw, Q, 4] -> [n, Q, L, 4]
        lb = box_cxcywh_to_xyxy(layer_boxes[:, 0, a:b].float()).permute(1, 2, 0, 3) * scale
        ls = out["layer_logits"][:, 0, a:b].float().sigmoid().max(-1).values.permute(1, 2, 0)
        lb[:, :, -1], ls[:, :, -1] = boxes, scores
        self.layer_boxes.extend(lb.cpu().numpy())
        self.layer_scores.extend(ls.cpu().numpy())

    def _add_attention(self, attn: dict[str, Any], a: int, b: int) -> None:
        heads = self.keep_heads
        for kind, strides in ATTENTION_STRIDES.items():
            for stride, maps in zip(strides, attn[f"{kind}_heads" if heads else kind],
                                    strict=True):
                # [n, h, w, L], or per head [heads, n, h, w, L] -> [n, h, w, heads, L]
                tokens = (maps[0, :, a:b].movedim(0, -2) if heads else maps[0, a:b]).float()
                per_word = [tokens[..., g].mean(-1) for g in self.groups]
                stacked = (torch.stack(per_word, 1) if per_word
                           else tokens.new_zeros(b - a, 0, *tokens.shape[1:-1]))
                if heads:  # [n, words, h, w, heads] -> [n, words, heads, h, w]
                    self.num_heads = stacked.shape[-1]
                    stacked = stacked.permute(0, 1, 4, 2, 3)
                self.attention.setdefault(f"{kind}/{stride}", []).extend(
                    stacked.to(torch.float16).cpu().numpy())

    def _add_sampling(self, attn: dict[str, Any], a: int, b: int) -> None:
        loc = attn["sampling_locations"][0, a:b].float()  # [n, Q, M, L, P, 2]
        wts = attn["sampling_weights"][0, a:b].float()  # [n, Q, M, L, P]
        n, q, heads, levels, points, _ = loc.shape
        h0, w0 = self.size
        pix = loc.reshape(n, q, -1, 2) * torch.tensor([w0, h0], dtype=torch.float32,
                                                      device=loc.device)
        # Weights sum to 1 per head; dividing by the head count makes them sum to 1 per query.
        wts = wts.reshape(n, q, -1) / heads
        for t in range(n):
            self.sampling.append((pix[t].cpu().numpy(), wts[t].cpu().numpy()))
        grid = np.indices((heads, levels, points)).reshape(3, -1)
        self.sampling_layout = (grid[1].astype(np.int16), grid[0].astype(np.int16))

    def finish(self) -> ExpressionResult:
        n = len(self.rle)
        q = self.scores[0].shape[-1] if self.scores else 0
        layers = self.layer_boxes[0].shape[1] if self.layer_boxes else 1
        initial = self.initial_reference
        if initial is None:
            # A stand-in model without learned first references (tests' scripted models): with
            # one decoder layer the last layer's input reference is the first one.
            initial = self.refs[0] if self.refs else np.zeros((q, 2), np.float32)
        attention = None
        if self.attention:
            levels = list(self.attention)
            attention = AttentionMaps(list(self.words), levels,
                                      [np.stack(self.attention[k]) for k in levels],
                                      num_heads=self.num_heads)
        sampling = None
        if self.sampling and self.sampling_layout is not None:
            sampling = SamplingPoints(np.stack([p for p, _ in self.sampling]),
                                      np.stack([w for _, w in self.sampling]),
                                      *self.sampling_layout)
        return ExpressionResult(
            text=self.text,
            words=list(self.words),
            size=self.size,
            threshold=self.threshold,
            chosen_query=np.asarray(self.chosen, dtype=np.int64).reshape(n),
            window_index=np.asarray(self.window_index, dtype=np.int32).reshape(n),
            scores=np.asarray(self.scores, dtype=np.float32).reshape(n, q),
            boxes=np.asarray(self.boxes, dtype=np.float32).reshape(n, q, 4),
            reference_points=np.asarray(self.refs, dtype=np.float32).reshape(n, q, 2),
            layer_boxes=np.asarray(self.layer_boxes, dtype=np.float32).reshape(n, q, layers, 4),
            layer_scores=np.asarray(self.layer_scores, dtype=np.float32).reshape(n, q, layers),
            initial_reference_points=np.asarray(initial, dtype=np.float32).reshape(q, 2),
            mask_areas=np.asarray(self.areas, dtype=np.int64).reshape(n),
            windows=list(self.choices),
            rle=list(self.rle),
            lowres_logits=list(self.lowres) if self.keep_logits else None,
            lowres_shape=self.lowres_shape,
            attention=attention,
            sampling=sampling,
            query_logits=list(self.query_lowres) if self.keep_query_masks else None,
        )


@dataclass
class _Source:
    frames: Iterator[np.ndarray]
    info: SourceInfo  # num_frames is replaced by the true count at the end
    estimate: int | None  # expected number of frames, None if unknown


class Predictor:
    """Referring video object segmentation of whole videos with a ReferFormer.

    Arguments:
        model: a `rvos.modeling.ReferFormer` with its tokenizer (e.g. from
            `rvos.load_model`); it is put in eval mode.
        device: where to run (default: where the model's weights are).
        window: frames per model call (default 36).
        overlap: frames shared by consecutive windows, used to keep the same object (default
            `default_overlap`: 8, or half the window if that is less; 0 makes windows
            independent).
        short_side: frames are resized so their short side is this (None: original size;
            "auto": the size the model was trained at, `model_short_side`).
        threshold: mask probability threshold.
        keep_logits: keep the chosen query's low-resolution mask logits (int8) so masks can be
            re-thresholded later (`ExpressionResult.mask(k, threshold=...)`).
        model_name: stored in results (default: the model's ``name`` attribute, if any).
        precision: ``"fp32"``, or a faster opt-in mode (`rvos.precision`: ``"bf16"``,
            ``"fp16"`` on CUDA, ``"int8"`` on a CPU); ``model`` itself is left unchanged.
            Default: the model's own (fp32 unless `rvos.precision.prepare_model` set another).

    Example::

        predictor = Predictor(load_model("builtin"))
        result = predictor.predict("walk.mp4", ["the person in red", "the dog"])
        mask = result[1].mask(0)          # bool [H, W] on frame 0
        write_outputs(result, "out/")
    """

    def __init__(self, model: torch.nn.Module, *, device: str | torch.device | None = None,
                 window: int = DEFAULT_WINDOW, overlap: int | None = None,
                 short_side: int | str | None = "auto", threshold: float = 0.5,
                 keep_logits: bool = True, model_name: str | None = None,
                 precision: str | None = None) -> None:
        overlap = default_overlap(window) if overlap is None else overlap
        _check_window(window, overlap)
        if short_side == "auto":
            short_side = model_short_side(model)
        if short_side is not None and (not isinstance(short_side, int) or short_side < 8):
            raise PredictorError(f"short_side must be a whole number >= 8 or None, "
                                 f"got {short_side!r}")
        if not 0.0 < float(threshold) < 1.0:
            raise PredictorError(f"threshold must be a probability in (0, 1), got {threshold}")
        if getattr(model, "tokenizer", None) is None:
            raise PredictorError("the model has no tokenizer; load it with "
                                 "rvos.load_model or rvos.checkpoint.load_pretrained")
        if device is None:
            device = next(model.parameters()).device
        self.device = torch.device(device)
        model = model.to(self.device).eval()
        if precision is not None:
            from rvos.precision import PrecisionError, with_precision

            try:
                model = with_precision(model, precision)
            except PrecisionError as err:
                raise PredictorError(str(err)) from None
        self.model = model
        self.precision = getattr(model, "precision", "fp32")
        self.window, self.overlap = window, overlap
        self.short_side, self.threshold = short_side, float(threshold)
        self.keep_logits = keep_logits
        self.model_name = model_name if model_name is not None else getattr(model, "name", None)

    # ------------------------------------------------------------------------- public API

    def predict(self, video: VideoInput, expressions: str | Sequence[str],
                *, fps: float | None = None, max_frames: int | None = None,
                return_attention: bool = False, return_sampling: bool = False,
                attention_heads: bool = False, return_query_masks: bool = False,
                out_dir: str | os.PathLike | None = None) -> VideoResult:
        """Segment what each expression refers to on every (processed) frame of ``video``.

        Arguments:
            video: a video file (any format ffmpeg reads; rotation applied), uint8 frames
                ``[T, H, W, 3]`` RGB, or an iterable of uint8 ``[H, W, 3]`` frames (streamed:
                memory stays flat however many it yields).
            expressions: one string or several; each is answered independently.
            fps: for a file, the processing rate (frames are subsampled by time; None = every
                frame). For an array or iterable, the rate the frames were taken at (default 30;
                used for times and the overlay video).
            max_frames: process at most this many frames (from the start).
            return_attention: keep per-word attention maps (`AttentionMaps`, float16, the
                early-fusion levels at strides 8-64 and the FPN scales at strides 4-32).
            return_sampling: keep the last decoder layer's sampling points of every query.
            attention_heads: with ``return_attention``, keep every head's maps instead of
                their mean (heads specialise; memory grows by the number of heads).
            return_query_masks: keep every query's low-resolution mask logits, not only the
                chosen one's (`ExpressionResult.query_masks`): int8, ``Q × h × w`` bytes per
                frame and expression before compression (72 kB at a 360×640 input).
            out_dir: also write `write_outputs`' files there (``overlay.mp4``, ``masks/``,
                ``masks.zip``, ``result.json``), frame by frame *while* predicting, so that
                decoding, drawing and encoding overlap the model (a file or an array only).
        Returns:
            a `VideoResult`: a sequence of `ExpressionResult`, one per expression.
        """
        for progress in self.iter_predict(video, expressions, fps=fps, max_frames=max_frames,
                                          return_attention=return_attention,
                                          attention_heads=attention_heads,
                                          return_sampling=return_sampling,
                                          return_query_masks=return_query_masks,
                                          out_dir=out_dir):
            if progress.result is not None:
                return progress.result
        raise AssertionError("iter_predict ended without a result")

    def iter_predict(self, video: VideoInput,
                     expressions: str | Sequence[str], *, fps: float | None = None,
                     max_frames: int | None = None, return_attention: bool = False,
                     return_sampling: bool = False, attention_heads: bool = False,
                     return_query_masks: bool = False,
                     out_dir: str | os.PathLike | None = None) -> Iterator[Progress]:
        """Like `predict`, as a generator: yields a `Progress` after every window, the last
        one carrying the `VideoResult`. Stop iterating to cancel (the video reader is closed).

        Frames are decoded and resized by a background thread, up to a window ahead of the
        model; with ``out_dir`` another thread writes the outputs as windows finish."""
        texts = _check_expressions(expressions)
        if out_dir is not None and not isinstance(video, (str, os.PathLike, np.ndarray)):
            raise PredictorError("out_dir needs a video file or a frame array (an iterable "
                                 "cannot be read twice); write_outputs(result, out, frames=...) "
                                 "writes the files afterwards")
        if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
            raise PredictorError(f"max_frames must be a whole number >= 1, got {max_frames!r}")
        if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps)
                                    and fps > 0):
            raise PredictorError(f"fps must be a positive number, got {fps!r}")
        started = time.perf_counter()
        source = _open_source(video, fps, max_frames)
        info = source.info
        tokenizer = self.model.tokenizer
        initial = initial_reference_points(self.model)
        states = [_Expression(text, *group_words(tokenizer, text), info.size, self.threshold,
                              self.overlap, self.keep_logits, return_attention, return_sampling,
                              attention_heads, return_query_masks, initial)
                  for text in texts]
        want_attention = return_attention or return_sampling
        total_windows = (None if source.estimate is None
                         else _count_windows(source.estimate, self.window, self.overlap))
        timings = {"read_s": 0.0, "model_s": 0.0, "postprocess_s": 0.0}
        windows: list[tuple[int, int]] = []
        input_size: tuple[int, int] | None = None
        frames_done = 0

        def snapshot(num_frames: int | None = None) -> VideoResult:
            done = frames_done if num_frames is None else num_frames
            exprs = [s.finish() for s in states]
            src = dataclasses.replace(info, num_frames=done)
            settings = {
                "window": self.window, "overlap": self.overlap, "short_side": self.short_side,
                "threshold": self.threshold,
                "input_size": list(input_size) if input_size else [0, 0],
                "mask_size": list(states[0].lowres_shape or (0, 0)),
                "num_queries": int(self.model.config.num_queries), "device": str(self.device),
                "precision": self.precision,
            }
            total = time.perf_counter() - started
            times = dict(timings, total_s=total, frames_per_second=done / max(total, 1e-9))
            return VideoResult(exprs, src, self.model_name, settings, list(windows), times)

        writer = None
        if out_dir is not None:
            # Small frames go from this reader to the writer; large ones it decodes again
            # rather than hold a few windows of them (waiting for their masks) in memory.
            h, w = info.size
            pushed = (not isinstance(video, np.ndarray)
                      and 3 * self.window * h * w * 3 <= _PUSHED_FRAMES_BYTES)
            writer = OutputWriter(out_dir, info, len(states), pushed=pushed,
                                  frames=video if isinstance(video, np.ndarray) else None)

        def masks_of(t: int) -> list[np.ndarray]:
            return [decode_rle(state.rle[t], info.size) for state in states]

        # Resized uint8 frames of the current window. Normalising a whole window at once (not
        # frame by frame) gives the tensor `rvos.inference.preprocess` gives, layout included,
        # so the convolutions pick the same kernels and the numbers match the original exactly.
        buffer: list[np.ndarray] = []
        start = 0
        tick = time.perf_counter()
        resize = self._check_and_resize(info.size)
        if writer is not None and writer.pushes:
            def resize(index: int, frame: np.ndarray, resize=resize) -> np.ndarray:
                out = resize(index, frame)
                writer.push_frame(frame)
                return out

        frames = _Prefetch(source.frames, resize, ahead=self.window)
        finished = False
        try:
            for resized, is_last in _with_last(frames):
                buffer.append(resized)
                if len(buffer) < self.window and not is_last:
                    continue
                end = start + len(buffer)
                plan = WindowPlan(len(windows), start, end, frames_done,
                                  end if is_last else end - self.overlap // 2)
                clip = normalize(np.stack(buffer)).to(self.device)
                input_size = tuple(clip.shape[-2:])
                now = time.perf_counter()
                timings["read_s"] += now - tick
                with torch.inference_mode():
                    features = self.model.encode_video(clip)
                    outputs = [self.model.decode(features, [state.text], want_attention)
                               for state in states]
                    tick = time.perf_counter()
                    timings["model_s"] += tick - now
                    for state, out in zip(states, outputs, strict=True):
                        state.add_window(plan, out)
                del features, outputs
                windows.append((start, end))
                frames_done = plan.keep_end
                if writer is not None:
                    writer.frames_ready(frames_done, masks_of)
                _release_free_memory()
                now = time.perf_counter()
                timings["postprocess_s"] += now - tick
                tick = now
                if is_last:
                    break
                estimate = None if source.estimate is None else max(source.estimate, end + 1)
                windows_left = None if total_windows is None else max(total_windows, plan.index + 2)
                yield Progress(plan.index, windows_left, frames_done, estimate, now - started,
                               _snapshot=snapshot)
                buffer = buffer[self.window - self.overlap:]
                start += self.window - self.overlap
            result = snapshot(frames_done)
            paths = None if writer is None else writer.finish(result)
            finished = True
        finally:
            # Stopping early (the caller closed this generator) must not leave ffmpeg running.
            frames.close()
            if writer is not None and not finished:
                writer.abort()
        yield Progress(len(windows) - 1, len(windows), frames_done, frames_done,
                       time.perf_counter() - started, result=result, paths=paths)

    def _check_and_resize(self, size: tuple[int, int]) -> Callable[[int, np.ndarray], np.ndarray]:
        """Frame ``index`` -> the model's input size; frames must all be uint8 ``size``."""
        def check_and_resize(index: int, frame: np.ndarray) -> np.ndarray:
            if frame.shape != (*size, 3) or frame.dtype != np.uint8:
                raise PredictorError(
                    f"frame {index} is {frame.dtype} {frame.shape}, the first uint8 "
                    f"{(*size, 3)}; all frames must be uint8 RGB of one size")
            return resize_frames(frame[None], self.short_side)[0]

        return check_and_resize


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


def _release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc).

    Every window allocates and frees frame-sized buffers (decoded frames, full-size masks).
    glibc raises its mmap threshold after such frees, so later ones come from the heap, where
    fragmentation made the resident size grow with the video (seen: +0.8 GB over 400 720p
    frames). Trimming after each window keeps it flat, for ~15 ms a window.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _check_expressions(expressions: str | Sequence[str]) -> list[str]:
    if isinstance(expressions, str):
        expressions = [expressions]
    if not isinstance(expressions, Sequence) or not expressions:
        raise PredictorError("give at least one referring expression, e.g. "
                             "['the dog on the left']")
    texts = []
    for i, text in enumerate(expressions):
        if not isinstance(text, str):
            raise PredictorError(f"expression {i + 1} must be a string, got "
                                 f"{type(text).__name__}")
        if not text.strip():
            raise PredictorError(f"expression {i + 1} is empty; describe the object in words")
        texts.append(" ".join(text.split()))
    return texts


class _Prefetch(Iterator[np.ndarray]):
    """``transform(i, item)`` of every item of ``items``, computed by a background thread up to
    ``ahead`` items before they are asked for.

    Video frames come from an ffmpeg process; reading its pipe, checking and resizing each
    frame (PIL, which releases the GIL) then run while the model works on the previous window
    instead of between windows. Errors of the source or the transform are raised in the
    consumer, at the item where they happened. `close` stops the thread and closes ``items``
    (from that thread, the only one that ever iterates it), so no ffmpeg is left running.
    """

    _END = object()

    def __init__(self, items: Iterable[np.ndarray],
                 transform: Callable[[int, np.ndarray], np.ndarray], ahead: int) -> None:
        self._items = items
        self._transform = transform
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, ahead))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rvos-frames", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for i, item in enumerate(self._items):
                out = self._transform(i, item)
                while not self._stop.is_set():
                    try:
                        self._queue.put((out, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._queue.put((self._END, None))
        except BaseException as err:  # raised again in the consumer
            self._queue.put((self._END, err))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def __next__(self) -> np.ndarray:
        if self._stop.is_set():
            raise StopIteration
        out, err = self._queue.get()
        if out is self._END:
            self._stop.set()
            if err is not None:
                raise err
            raise StopIteration
        return out

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):  # unblock a put waiting for room
                self._queue.get(timeout=0.05)
        self._thread.join()


def _with_last(items: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, bool]]:
    """Pairs (item, is_last): the stream end must be known when the last window is cut."""
    it = iter(items)
    try:
        prev = next(it)
    except StopIteration:
        return
    for item in it:
        yield prev, False
        prev = item
    yield prev, True


def _open_source(video: VideoInput, fps: float | None, max_frames: int | None) -> _Source:
    if isinstance(video, np.ndarray):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise PredictorError(f"frames must be uint8 RGB [T, H, W, 3], got {video.dtype} "
                                 f"{video.shape}")
        if video.shape[0] == 0 or video.shape[1] == 0 or video.shape[2] == 0:
            raise PredictorError(f"the frame array is empty: shape {video.shape}")
        rate = float(fps) if fps is not None else ARRAY_FPS
        frames = video if max_frames is None else video[:max_frames]
        info = SourceInfo(path=None, width=int(video.shape[2]), height=int(video.shape[1]),
                          fps=rate, frame_rate=Fraction(rate).limit_denominator(1001),
                          num_frames=int(frames.shape[0]), source_fps=rate,
                          source_num_frames=int(video.shape[0]))
        return _Source(iter(frames), info, int(frames.shape[0]))
    if isinstance(video, Iterable) and not isinstance(video, (str, bytes, os.PathLike)):
        return _open_stream(iter(video), fps, max_frames)
    if not isinstance(video, (str, os.PathLike)):
        raise PredictorError(f"video must be a file path, a uint8 [T, H, W, 3] array or an "
                             f"iterable of [H, W, 3] frames, got {type(video).__name__}")
    from rvos.video import check_video_file, iter_frames

    meta = check_video_file(video)  # what the CLI, the API and the page accept, alike
    rate = meta.sampled_frame_rate(fps)
    estimate = meta.sampled_num_frames(fps)
    if max_frames is not None:
        estimate = min(estimate, max_frames)
    info = SourceInfo(path=str(video), width=meta.width, height=meta.height, fps=float(rate),
                      frame_rate=rate, num_frames=estimate, source_fps=meta.fps,
                      source_num_frames=meta.num_frames, has_audio=meta.has_audio,
                      rotation=meta.rotation, sample_fps=fps, max_frames=max_frames,
                      variable_frame_rate=meta.variable)
    return _Source(iter_frames(video, fps=fps, max_frames=max_frames), info, estimate)


def _open_stream(frames: Iterator[np.ndarray], fps: float | None, max_frames: int | None
                 ) -> _Source:
    """Frames from a generator (e.g. a camera or a synthetic source): length unknown."""
    first = next(frames, None)
    if first is None:
        raise PredictorError("the frame iterable yielded no frame")
    if not (isinstance(first, np.ndarray) and first.dtype == np.uint8 and first.ndim == 3
            and first.shape[-1] == 3 and first.shape[0] > 0 and first.shape[1] > 0):
        got = (f"{first.dtype} {first.shape}" if isinstance(first, np.ndarray)
               else type(first).__name__)
        raise PredictorError(f"frames must be uint8 RGB arrays [H, W, 3], got {got}")
    rate = float(fps) if fps is not None else ARRAY_FPS

    def stream() -> Iterator[np.ndarray]:
        yield first
        yield from frames

    it = stream() if max_frames is None else itertools.islice(stream(), max_frames)
    info = SourceInfo(path=None, width=int(first.shape[1]), height=int(first.shape[0]),
                      fps=rate, frame_rate=Fraction(rate).limit_denominator(1001),
                      num_frames=0, source_fps=rate)
    return _Source(it, info, max_frames)


# ------------------------------------------------------------------------------------ CLI


def _load_cli_model(args: argparse.Namespace, device: str):
    from rvos.zoo import load_model

    checkpoint = args.checkpoint
    if checkpoint is not None and not Path(checkpoint).exists():
        raise PredictorError(f"checkpoint not found: {checkpoint!r}")
    if args.model is None and checkpoint is not None:
        from rvos import checkpoint as ckpt

        if Path(checkpoint).is_dir():
            return ckpt.load_pretrained(checkpoint, device=device).eval(), Path(checkpoint).name
        kwargs = {} if args.text_encoder is None else {"text_encoder": args.text_encoder}
        model = ckpt.load_official(checkpoint, device=device, **kwargs)
        return model.eval(), Path(checkpoint).stem
    name = args.model or "builtin"
    model = load_model(name, checkpoint=checkpoint, device=device,
                       text_encoder=args.text_encoder, offline=getattr(args, "offline", None),
                       progress=not args.quiet)
    return model, name


def _user_errors() -> tuple[type[BaseException], ...]:
    from rvos import registry
    from rvos.checkpoint import CheckpointError
    from rvos.download import DownloadError
    from rvos.exports import ExportError
    from rvos.hub import HubError
    from rvos.modeling.roberta import CaptionTooLongError
    from rvos.video import VideoError

    return (PredictorError, VideoError, CheckpointError, ExportError, CaptionTooLongError,
            registry.UnknownModelError,
            registry.ModelFileMissingError, registry.UnsupportedModelError, DownloadError,
            HubError, OSError)


def run_predict_cli(args: argparse.Namespace, texts: list[str], out: Path) -> int:
    """``python -m rvos predict`` once `rvos.predict_cli` has checked the video, the
    expressions and the output folder: loads the model, predicts, writes the outputs. Returns
    the exit code (0 ok, 2 bad input). Interrupted (KeyboardInterrupt, which the CLI also raises
    on SIGTERM), it removes what it wrote before passing the interruption on."""
    errors = _user_errors()
    started = False
    try:
        window = DEFAULT_WINDOW if args.window is None else args.window
        overlap = default_overlap(window) if args.overlap is None else args.overlap
        _check_window(window, overlap)
        from rvos.exports import ExportError, check_columns

        try:
            figure_frames = check_columns(getattr(args, "figure_frames", 5))
        except ExportError as err:
            raise PredictorError(f"--figure-frames: {err}") from None
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise PredictorError(f"--device {device}: no CUDA GPU is usable here; "
                                 "use --device cpu")
        model, name = _load_cli_model(args, device)
        predictor = Predictor(model, device=device, window=window, overlap=overlap,
                              short_side="auto" if args.short_side is None else args.short_side,
                              threshold=args.threshold,
                              model_name=name, precision=args.precision)
        # From here on the folder holds this run's outputs only, or none.
        started = True
        remove_outputs(out)
        result, paths = _run_with_progress(predictor, args, texts)
        if getattr(args, "figure", False) or getattr(args, "gif", False):
            paths.update(_write_slides(result, args, figure_frames))
    except errors as err:
        if started:
            remove_outputs(out)
        message = err.for_cli() if hasattr(err, "for_cli") else err  # CLI advice, not Python's
        print(f"rvos predict: error: {message}", file=sys.stderr)
        return 2
    except BaseException:  # Ctrl-C, SIGTERM: what was written of this run goes
        if started:
            remove_outputs(out)
        raise
    t = result.timings
    slides = "".join(f", {paths[k]}" for k in ("figure_png", "figure_pdf", "gif") if k in paths)
    print(f"{result.num_frames} frames, {len(result)} expression(s) in {t['total_s']:.1f} s "
          f"({t['frames_per_second']:.1f} frames/s); wrote {paths['overlay']}, "
          f"{paths['masks']}/, {paths['masks_zip']}, {paths['result']}{slides}")
    return 0


def _write_slides(result: VideoResult, args: argparse.Namespace, columns: int
                  ) -> dict[str, Path]:
    """--figure / --gif: the slide exports, from the result and the source frames."""
    from rvos import exports

    paths: dict[str, Path] = {}
    if args.figure:
        paths.update(exports.write_figure(result, args.out, columns=columns))
    if args.gif:
        paths["gif"] = exports.write_gif(result, Path(args.out) / "overlay.gif")
    return paths


def _run_with_progress(predictor: Predictor, args: argparse.Namespace, texts: list[str]
                       ) -> tuple[VideoResult, dict[str, Path]]:
    """Predict while writing the outputs into ``args.out``, with a progress bar."""
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=None, unit="frame", desc="predict", file=sys.stderr, leave=True)
    try:
        for progress in predictor.iter_predict(args.video, texts, fps=args.fps,
                                               max_frames=args.max_frames, out_dir=args.out):
            if bar is not None:
                bar.total = progress.total_frames
                bar.update(progress.frames_done - bar.n)
            if progress.result is not None:
                return progress.result, progress.paths
    finally:
        if bar is not None:
            bar.close()
    raise AssertionError("iter_predict ended without a result")
