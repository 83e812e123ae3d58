"""Segment the objects that sentences refer to in a video file (overlay, masks, result.json).

`Predictor` serves people's videos with a ReferFormer: any container, size, orientation and
length, several expressions at once. The model sees one clip tensor at a time, so the video is
streamed through windows of ``window`` frames that overlap by ``overlap`` frames:

* **Preprocessing** is the original one (`rvos.modeling.processing.preprocess`: short side
  360, ImageNet normalisation), applied to each frame as it is decoded, so a 4K frame never
  reaches the model; masks and boxes are still reported at the source size.
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
  (`rvos.result.video_result`): one window of preprocessed frames is held at a time, masks are
  stored as run-length encodings at the source size.

Why ``window=36, overlap=8`` by default: the released models were evaluated on whole
Ref-YouTube-VOS validation videos in one pass, a few dozen frames each, so windows of that
length keep the model in the regime it was measured in. Eight shared frames give `link_query`
several frames of evidence, enough that a brief occlusion or the moment two look-alike objects
cross does not decide the link alone, while costing 36 / 28 ≈ 1.29× the compute of
non-overlapping windows.

The command line over it is ``rvos predict`` (`rvos.cli.predict`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import math
import os
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rvos.errors import PredictorError
from rvos.modeling.precision import PrecisionError, choose_precision, with_precision
from rvos.modeling.processing import (
    model_short_side,
    normalize,
    resize_frames,
)
from rvos.predictor.accumulate import _Expression
from rvos.predictor.objects import check_objects
from rvos.predictor.presence import check_presence_threshold, model_presence_threshold
from rvos.predictor.sources import VideoInput, _open_source, _Prefetch, _with_last
from rvos.predictor.windows import (
    DEFAULT_WINDOW,
    WindowPlan,
    _check_window,
    _count_windows,
    default_overlap,
)
from rvos.result.video_result import (
    VideoResult,
)
from rvos.result.writer import OutputWriter

__all__ = ["Predictor", "Progress", "group_words", "initial_reference_points"]


# With out_dir, the writer takes the decoded frames from the predictor's reader when three
# windows of them fit in this many bytes (up to 720p at the default window), else reads them.
_PUSHED_FRAMES_BYTES = 1 << 29


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
        precision: ``"fp32"``, a faster opt-in mode (`rvos.modeling.precision`: ``"bf16"`` on
            GPUs and on CPUs with AMX / AVX-512 BF16, ``"fp16"`` on CUDA, ``"int8"`` on CPUs
            with AVX2 / VNNI / ARM dot product), or ``"auto"``: the fastest of them here. A mode
            slower than fp32 on this CPU is refused (`choose_precision`); ``model`` itself is
            left unchanged. Default: the model's own (fp32 unless
            `rvos.modeling.precision.prepare_model` set another).
        presence_threshold: frames whose presence (`ExpressionResult.presence`: the chosen
            query's score, or the probability of the model's presence head where it has one,
            `rvos.modeling.presence_head`) is below this get an empty mask and count as "not
            found" (`rvos.predictor.presence`); in [0, 1]. None: the model's own
            (`model_presence_threshold`: its config.json's, else 0.0, a mask on every frame as
            in the paper).
        objects: ``"best"`` (default): the paper's answer, one query per expression;
            ``"all"``: also every other query that scores at least half the best's mean score
            over the window and does not duplicate a kept query's mask
            (`rvos.predictor.objects`), each kept apart (`ExpressionResult.extra_objects`).

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
                 precision: str | None = None,
                 presence_threshold: float | None = None, objects: str = "best") -> None:
        overlap = default_overlap(window) if overlap is None else overlap
        _check_window(window, overlap)
        if short_side == "auto":
            short_side = model_short_side(model)
        if short_side is not None and (not isinstance(short_side, int) or short_side < 8):
            raise PredictorError(f"short_side must be a whole number >= 8 or None, "
                                 f"got {short_side!r}")
        if not 0.0 < float(threshold) < 1.0:
            raise PredictorError(f"threshold must be a probability in (0, 1), got {threshold}")
        self.presence_threshold = (model_presence_threshold(model) if presence_threshold is None
                                   else check_presence_threshold(presence_threshold))
        self.objects = check_objects(objects)
        if getattr(model, "tokenizer", None) is None:
            raise PredictorError("the model has no tokenizer; load it with "
                                 "rvos.load_model or rvos.zoo.checkpoint.load_pretrained")
        if device is None:
            device = next(model.parameters()).device
        self.device = torch.device(device)
        model = model.to(self.device).eval()
        # A presence head (`rvos.modeling.presence_head`) rides on the model as a plain
        # attribute, outside its state dict; it runs in float32 whatever the precision.
        head = getattr(model, "presence_head", None)
        self.presence_head = None if head is None else head.to(self.device).eval()
        if precision is not None:
            try:
                model = with_precision(model, choose_precision(precision, self.device))
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
                     out_dir: str | os.PathLike | None = None,
                     on_frame: Callable[[np.ndarray], None] | None = None
                     ) -> Iterator[Progress]:
        """Like `predict`, as a generator: yields a `Progress` after every window, the last
        one carrying the `VideoResult`. Stop iterating to cancel (the video reader is closed).

        Frames are decoded and resized by a background thread, up to a window ahead of the
        model; with ``out_dir`` another thread writes the outputs as windows finish.
        ``on_frame`` is called with every decoded source frame (uint8 ``[H0, W0, 3]``), in
        order, on the reader thread: a caller that needs the frames again (the app's frame
        explorer) keeps them from this one decoding instead of decoding the video twice."""
        texts = _check_expressions(expressions)
        if out_dir is not None and not isinstance(video, (str, os.PathLike, np.ndarray)):
            raise PredictorError("out_dir needs a video file or a frame array (an iterable "
                                 "cannot be read twice); write_outputs(result, out, frames=...) "
                                 "writes the files afterwards")
        check_sampling(max_frames, fps)
        started = time.perf_counter()
        source = _open_source(video, fps, max_frames)
        info = source.info
        tokenizer = self.model.tokenizer
        initial = initial_reference_points(self.model)
        states = [_Expression(text, *group_words(tokenizer, text), info.size, self.threshold,
                              self.overlap, self.keep_logits, return_attention, return_sampling,
                              attention_heads, return_query_masks, initial,
                              presence_threshold=self.presence_threshold,
                              objects=self.objects, **self._presence_of(text))
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
                "precision": self.precision, "presence_threshold": self.presence_threshold,
            }
            if self.objects != "best":  # (absent: "best", the paper's one query)
                settings["objects"] = self.objects
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
            return [state.frame_mask(t) for state in states]

        # Resized uint8 frames of the current window. Normalising a whole window at once (not
        # frame by frame) gives the tensor `rvos.modeling.processing.preprocess` gives, layout
        # included,
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

        if on_frame is not None:
            def resize(index: int, frame: np.ndarray, resize=resize) -> np.ndarray:
                on_frame(frame)
                return resize(index, frame)

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
                window_frames = np.stack(buffer)
                clip = normalize(window_frames).to(self.device)
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
                        state.add_window(plan, out, window_frames)
                del features, outputs, window_frames
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

    def _presence_of(self, text: str) -> dict:
        """The presence head and the sentence as it encodes it, for an expression it can
        judge (`PresenceHead.reads`); nothing otherwise (the class score is the presence)."""
        head = self.presence_head
        if head is None or not head.reads(text):
            return {}
        with torch.inference_mode():
            return {"presence_head": head,
                    "presence_text": head.encode_sentences(self.model, [text], self.device)}

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


def check_sampling(max_frames: int | None, fps: float | None) -> None:
    """Raise `PredictorError` unless ``max_frames`` (None or a whole number >= 1) and ``fps``
    (None or a finite positive number) are usable."""
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise PredictorError(f"max_frames must be a whole number >= 1, got {max_frames!r}")
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps)
                                and fps > 0):
        raise PredictorError(f"fps must be a positive number, got {fps!r}")


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
