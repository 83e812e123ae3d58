"""Which words matter: one expression run again with each word left out (or swapped).

For an expression of N words, `word_importance` answers N + 1 sentences (the full one and the
N variants with one word left out; with ``swap=True`` also each colour or noun word replaced by
another of its kind, from `COLOUR_WORDS` / `SHAPE_NOUNS` / `OBJECT_NOUNS`) and reports, per
variant, how much the answer moved:

* ``iou_change`` = 1 − IoU of the variant's masks with the full sentence's, pooled over the clip
  (total intersection / total union over all frames; 0 when both are empty everywhere: nothing
  changed);
* ``score_change`` = the variant's mean chosen-query score − the full sentence's (negative: the
  model is less sure without the word).

**What is shared.** The backbone does not read the text, so every window reads and resizes its
frames and runs `ReferFormer.encode_video` once, and decodes all N + 1 sentences from those
features (`ReferFormer.decode` takes one video and several captions): on a GPU in batches of as
many sentences as fit `CHUNK_BYTES`, on a CPU one at a time (batching was slower there).
Everything after the backbone depends on the sentence (the early fusion multiplies the visual
features by the text before the transformer encoder) and runs per sentence, so each extra word
costs what decoding one sentence costs: the backbone's share of a run is what is saved
(benchmarks/word_importance_cost.py measures it).
Windows are the predictor's (`rvos.predictor.windows.plan_windows`, the same window and overlap),
and each sentence's query is chosen and linked across windows exactly as `Predictor` does
(`rvos.predictor.accumulate._Expression`), so a variant's answer is the answer a full run of the
variant sentence would give, within float tolerance (padding a batch changes nothing else).
The masks compared are the network's, before any presence threshold (`rvos.predictor.presence`):
the chart measures what each word does to the segmentation, and a threshold would turn every
variant that names nothing into "changed everywhere" whatever the masks did.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from rvos.errors import PredictorError
from rvos.modeling.processing import normalize
from rvos.predictor.accumulate import _Expression
from rvos.predictor.predictor import (
    Predictor,
    check_sampling,
    group_words,
    initial_reference_points,
)
from rvos.predictor.sources import VideoInput, _open_source, _Prefetch, _with_last
from rvos.predictor.windows import WindowPlan, _count_windows
from rvos.result.rle import decode_rle
from rvos.result.video_result import ExpressionResult

__all__ = [
    "COLOUR_WORDS",
    "OBJECT_NOUNS",
    "SHAPE_NOUNS",
    "Variant",
    "WordImportance",
    "iter_word_importance",
    "swap_for",
    "variants_of",
    "word_importance",
]

# Swap lists: a word of one list is replaced by the next word of the same list (cyclically),
# so every swap is a plausible sentence with one attribute changed. Colours and shapes are the
# ones the built-in model was trained on (`rvos.data.synth_scene`), plus black and grey; the
# object nouns are common Ref-YouTube-VOS / COCO categories for the official models.
COLOUR_WORDS = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "cyan", "brown",
                "white", "black", "grey")
SHAPE_NOUNS = ("circle", "square", "triangle", "star", "diamond", "hexagon", "cross", "heart")
OBJECT_NOUNS = ("person", "dog", "cat", "horse", "car", "bike", "bird", "ball", "boat", "cow",
                "sheep", "truck", "man", "woman", "child", "elephant", "bear", "zebra")
_SWAP_LISTS = (COLOUR_WORDS, SHAPE_NOUNS, OBJECT_NOUNS)

# Decoding N sentences at once holds N copies of the window's backbone features and of the
# decoder's activations; chunks are sized so the copies stay under this many bytes (at least
# one sentence per chunk).
CHUNK_BYTES = 1 << 30
# The decoder's activations per sentence, as a multiple of the backbone features' size
# (measured on R50 at 360 p: the stride-4 FPN level dominates).
_ACTIVATION_FACTOR = 4


@dataclass(frozen=True)
class Variant:
    """One changed sentence: word ``index`` (of `group_words`' words) left out, or swapped for
    ``replacement``."""

    index: int
    word: str
    text: str
    kind: str  # "left out" or "swapped"
    replacement: str | None = None


@dataclass
class WordImportance:
    """`word_importance`'s answer for one expression.

    Attributes:
        text: the full sentence (white space collapsed, as the predictor reads it).
        words: its words (`group_words`).
        full: the full sentence's `ExpressionResult`.
        variants: the changed sentences, left-outs first (one per word, in order), then swaps.
        results: the `ExpressionResult` of each variant; None for a sentence with no word left
            (a one-word expression left out: nothing to run, its changes are NaN).
        iou_change, score_change: float ``[V]``, see the module docstring.
        seconds: wall time of the whole computation.
        windows: the model calls' frame ranges ``[(start, end)]``.
    """

    text: str
    words: list[str]
    full: ExpressionResult
    variants: list[Variant]
    results: list[ExpressionResult | None]
    iou_change: np.ndarray
    score_change: np.ndarray
    seconds: float = 0.0
    windows: list[tuple[int, int]] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return self.full.num_frames

    def left_out(self) -> list[int]:
        """Indices (into `variants`) of the left-out words, in word order."""
        return [i for i, v in enumerate(self.variants) if v.kind == "left out"]

    def swapped(self) -> list[int]:
        return [i for i, v in enumerate(self.variants) if v.kind == "swapped"]

    def to_json(self) -> dict:
        """``{"expression", "words": [{word, iou_change, score_change, ...}], "swaps": [...],
        ...}``; NaN (not possible today, but a drawing and a client must cope) as None."""

        def num(x: float) -> float | None:
            return float(x) if math.isfinite(float(x)) else None

        def entry(i: int) -> dict:
            v = self.variants[i]
            out = {"word": v.word, "index": v.index, "variant": v.text,
                   "iou_change": num(self.iou_change[i]),
                   "score_change": num(self.score_change[i])}
            if v.replacement is not None:
                out["replacement"] = v.replacement
            return out

        return {
            "expression": self.text,
            "frames": self.num_frames,
            "score": num(float(self.full.chosen_scores.mean())) if self.num_frames else None,
            "words": [entry(i) for i in self.left_out()],
            "swaps": [entry(i) for i in self.swapped()],
            "seconds": self.seconds,
            "windows": [list(w) for w in self.windows],
        }


def _split_words(tokenizer, text: str) -> list[tuple[str, int, int]]:
    """``(word, start, end)`` character spans of `group_words`' words in ``text``."""
    words, _ = group_words(tokenizer, text)
    spans, pos = [], 0
    for word in words:
        start = text.find(word, pos)
        if start < 0:  # cannot happen: each word is a stripped slice of the text, in order
            raise PredictorError(f"could not locate the word {word!r} in the expression")
        spans.append((word, start, start + len(word)))
        pos = start + len(word)
    return spans


def _join(text: str) -> str:
    return " ".join(text.split())


def swap_for(word: str) -> str | None:
    """The word that replaces ``word`` in a swap, or None when ``word`` is in no swap list.

    The next word of its list (cyclically), with the word's capital and the punctuation around
    it kept; a plural noun ("squares") gets a plural ("triangles"); "gray" is read as "grey"."""
    m = re.fullmatch(r"(\W*)(\w+)(\W*)", word)
    if m is None:
        return None
    lead, core, trail = m.groups()
    key = core.lower()
    key = "grey" if key == "gray" else key
    for words in _SWAP_LISTS:
        forms = [(key, "")]
        if words is not COLOUR_WORDS and key.endswith("s"):
            forms.append((key[:-1], "s"))  # a plural noun
        for base, suffix in forms:
            if base in words:
                new = words[(words.index(base) + 1) % len(words)] + suffix
                if core[:1].isupper():
                    new = new.capitalize()
                return f"{lead}{new}{trail}"
    return None


def variants_of(tokenizer, text: str, swap: bool = False) -> list[Variant]:
    """The changed sentences of ``text``: each word left out (in order), then, with ``swap``,
    each colour or noun word replaced (`swap_for`). A one-word expression left out is the empty
    sentence ``""``, which `word_importance` does not run."""
    text = _join(text)
    spans = _split_words(tokenizer, text)
    out = [Variant(i, w, _join(text[:s] + " " + text[e:]), "left out")
           for i, (w, s, e) in enumerate(spans)]
    if swap:
        for i, (w, s, e) in enumerate(spans):
            new = swap_for(w)
            if new is not None:
                out.append(Variant(i, w, _join(text[:s] + new + text[e:]), "swapped", new))
    return out


def _pooled_change(a: ExpressionResult, b: ExpressionResult) -> float:
    """1 − IoU of two expressions' masks pooled over all frames (0 when both are empty)."""
    inter = union = 0
    size = a.size
    for ra, rb in zip(a.rle, b.rle, strict=True):
        ma, mb = decode_rle(ra, size), decode_rle(rb, size)
        inter += int(np.count_nonzero(ma & mb))
        union += int(np.count_nonzero(ma | mb))
    return 0.0 if union == 0 else 1.0 - inter / union


def _slice(out: dict, i: int) -> dict:
    """Sentence ``i`` of a batched `ReferFormer.decode` output, as a batch of one."""
    sliced = {}
    for key, value in out.items():
        if not isinstance(value, torch.Tensor):
            continue
        sliced[key] = value[:, i:i + 1] if key.startswith("layer_") else value[i:i + 1]
    return sliced


def _chunk_size(features, requested: int | None) -> int:
    if requested is not None:
        if not isinstance(requested, int) or requested < 1:
            raise PredictorError(f"chunk must be a whole number >= 1, got {requested!r}")
        return requested
    if not features.features[0].is_cuda:
        # Measured on a 2-core CPU (built-in model, 16 frames): 8 sentences decoded as one
        # batch took 2x as long as one after another, 4 batches of 2 1.3x. A GPU is the other
        # way round (launch-bound at these sizes), so it gets batches.
        return 1
    nbytes = sum(t.numel() * t.element_size() for t in features.features)
    return max(1, CHUNK_BYTES // max(1, _ACTIVATION_FACTOR * nbytes))


@dataclass
class WordProgress:
    """What `iter_word_importance` yields after each window (``result`` on the last)."""

    window: int
    total_windows: int | None
    frames_done: int
    total_frames: int | None
    result: WordImportance | None = None

    @property
    def fraction(self) -> float | None:
        if self.result is not None:
            return 1.0
        if not self.total_frames:
            return None
        return min(self.frames_done / self.total_frames, 1.0)


def iter_word_importance(predictor: Predictor, video: VideoInput, expression: str, *,
                         swap: bool = False, fps: float | None = None,
                         max_frames: int | None = None, chunk: int | None = None,
                         on_frame: Callable[[np.ndarray], None] | None = None
                         ) -> Iterator[WordProgress]:
    """`word_importance` as a generator: a `WordProgress` after every window, the last one
    carrying the `WordImportance`. Stop iterating to cancel (the video reader is closed)."""
    if not isinstance(expression, str) or not expression.strip():
        raise PredictorError("give one expression with at least one word, e.g. 'the red square'")
    check_sampling(max_frames, fps)
    started = time.perf_counter()
    model = predictor.model
    tokenizer = model.tokenizer
    text = _join(expression)
    variants = variants_of(tokenizer, text, swap)
    # A one-word expression left out is no sentence at all: nothing to run (NaN changes).
    runs = [i for i, v in enumerate(variants) if v.text]
    texts = [text] + [variants[i].text for i in runs]
    source = _open_source(video, fps, max_frames)
    info = source.info
    initial = initial_reference_points(model)
    states = [_Expression(t, *group_words(tokenizer, t), info.size, predictor.threshold,
                          predictor.overlap, False, False, False, False, False, initial)
              for t in texts]
    window, overlap = predictor.window, predictor.overlap
    total_windows = (None if source.estimate is None
                     else _count_windows(source.estimate, window, overlap))
    resize = predictor._check_and_resize(info.size)
    if on_frame is not None:
        def resize(index: int, frame: np.ndarray, resize=resize) -> np.ndarray:
            on_frame(frame)
            return resize(index, frame)

    frames = _Prefetch(source.frames, resize, ahead=window)
    windows: list[tuple[int, int]] = []
    buffer: list[np.ndarray] = []
    start = frames_done = 0
    try:
        for resized, is_last in _with_last(frames):
            buffer.append(resized)
            if len(buffer) < window and not is_last:
                continue
            end = start + len(buffer)
            # The same windows as `Predictor.iter_predict` (`rvos.predictor.windows`).
            plan = WindowPlan(len(windows), start, end, frames_done,
                              end if is_last else end - overlap // 2)
            clip = normalize(np.stack(buffer)).to(predictor.device)
            with torch.inference_mode():
                features = model.encode_video(clip)
                size = _chunk_size(features, chunk)
                for first in range(0, len(texts), size):
                    batch = texts[first:first + size]
                    out = model.decode(features, batch)
                    for i in range(len(batch)):
                        states[first + i].add_window(plan, _slice(out, i))
                    del out
                del features
            windows.append((start, end))
            frames_done = plan.keep_end
            if is_last:
                break
            estimate = None if source.estimate is None else max(source.estimate, end + 1)
            yield WordProgress(plan.index, total_windows, frames_done, estimate)
            buffer = buffer[window - overlap:]
            start += window - overlap
    finally:
        frames.close()
    finished = [s.finish() for s in states]
    full = finished[0]
    rest: list[ExpressionResult | None] = [None] * len(variants)
    for i, r in zip(runs, finished[1:], strict=True):
        rest[i] = r
    full_score = float(full.chosen_scores.mean()) if full.num_frames else math.nan
    iou = np.array([math.nan if r is None else _pooled_change(full, r) for r in rest],
                   np.float64)
    score = np.array([math.nan if r is None or not r.num_frames
                      else float(r.chosen_scores.mean()) - full_score for r in rest],
                     np.float64)
    answer = WordImportance(text, [w for w, *_ in _split_words(tokenizer, text)], full,
                            variants, rest, iou, score, time.perf_counter() - started, windows)
    yield WordProgress(len(windows) - 1, len(windows), frames_done, frames_done, answer)


def word_importance(predictor: Predictor, video: VideoInput, expression: str, *,
                    swap: bool = False, fps: float | None = None,
                    max_frames: int | None = None, chunk: int | None = None) -> WordImportance:
    """How much each word of ``expression`` changes the answer on ``video``.

    Arguments:
        predictor: a `Predictor` (its model, device, window, overlap, input size and threshold
            are used).
        video: as for `Predictor.predict`.
        expression: one referring expression.
        swap: also replace each colour or noun word by another of its kind (`swap_for`).
        fps, max_frames: as for `Predictor.predict`.
        chunk: sentences decoded at once (default: as many as fit `CHUNK_BYTES`).
    Returns:
        a `WordImportance`.

    Example::

        wi = word_importance(Predictor(load_model("builtin")), "clip.mp4", "the red square")
        for v, d in zip(wi.variants, wi.iou_change):
            print(v.word, v.kind, f"{d:.2f}")
    """
    for progress in iter_word_importance(predictor, video, expression, swap=swap, fps=fps,
                                         max_frames=max_frames, chunk=chunk):
        if progress.result is not None:
            return progress.result
    raise AssertionError("iter_word_importance ended without a result")
