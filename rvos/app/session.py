"""One finished app run: `Session` holds the result, the outputs on disk and the frames,
and renders the frame explorer's views (queries, the decoder layer by layer, every query's
mask, word attention, scores over time) at any frame, expression, word, level or threshold,
each view guarded so that one that fails shows a notice in its place; it re-thresholds and
writes the slide exports (`Session.export_slides`, `Session.export_gif`): never the model
again. `FrameStore` keeps the frames under the drawings.

Source frames for the explorer. Rendering needs the frame under the drawing. Re-decoding frame k
from the file costs decoding k frames (ffmpeg cannot seek exactly to a frame index of a
subsampled variable-rate stream), seconds for a late frame of a long clip; holding raw frames
costs ``T × H × W × 3`` bytes (300 frames of 1080p: 1.9 GB). The session therefore keeps each
processed frame once as a JPEG (quality 90) no larger than `DISPLAY_MAX_SIDE`: 10-20 kB for a
256-pixel example frame, ~120 kB for a 960×540 one (measured on Big Buck Bunny), decoded in a few
milliseconds, where the raw 960×540 frame would take 1.5 MB. Frames larger than that are scaled
back to the source size before drawing, because boxes, points and masks are in source pixels,
and the drawing is scaled down again for the browser. The store is filled from the
predictor's own decoding (`Predictor.iter_predict(on_frame=)`): a run reads its video once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rvos.app.inputs import AppInputError
from rvos.app.text import escape_markdown, log, plural, public_message
from rvos.media.video import iter_frames
from rvos.modeling.processing import resized_size
from rvos.predictor.accumulate import ATTENTION_STRIDES
from rvos.predictor.predictor import Predictor
from rvos.result import exports
from rvos.result.threshold import ThresholdError, with_threshold
from rvos.result.video_result import ExpressionResult, VideoResult
from rvos.result.writer import write_outputs
from rvos.viz import draw as visualize

__all__ = [
    "DISPLAY_MAX_SIDE",
    "FrameStore",
    "Session",
    "first_frame",
    "head_maps_fit",
    "level_label",
    "query_masks_fit",
    "safe_view",
]


# A run keeps every attention head's maps (the explorer's "Attention head" menu) when they are
# estimated to fit in this much memory; otherwise only their mean, as the original returns.
HEAD_MAPS_BUDGET_MB = 256


WORDS_ESTIMATE = 12  # words per expression, for that estimate


# A run keeps every query's low-resolution mask (the decoder view's masks of all queries) when
# they fit in this much memory before compression (int8: Q × h/4 × w/4 bytes per frame and
# expression; zlib typically divides it by 5-20); otherwise only the chosen query's.
QUERY_MASKS_BUDGET_MB = 128


# Long side of the frames kept for the explorer and of the images sent to the browser.
DISPLAY_MAX_SIDE = 960


JPEG_QUALITY = 90


def safe_view(name: str, draw: Callable[..., np.ndarray], *args: Any, **kwargs: Any
              ) -> np.ndarray:
    """``draw(*args, **kwargs)``, or, when it fails, a one-line notice in its place: a view
    that cannot be drawn must not empty the others. The traceback goes to the log."""
    try:
        return draw(*args, **kwargs)
    except Exception as err:
        log.exception("the %s view failed", name)
        text = f"The {name} view could not be drawn here ({type(err).__name__}: " \
               f"{public_message(err)})"
        return visualize.notice(640, text[:200] + ("…)" if len(text) > 200 else ""))


def first_frame(path: str | None) -> np.ndarray | None:
    """uint8 ``[H, W, 3]``: the first frame of ``path`` no larger than `DISPLAY_MAX_SIDE` (the
    page's preview of an upload, whatever its format), or None when it cannot be read (a run
    says why)."""
    if not path:
        return None
    try:
        with contextlib.closing(iter_frames(path)) as frames:
            return _fit(next(iter(frames)))
    except Exception:
        log.info("no preview of %s", path, exc_info=True)
        return None


def head_maps_fit(predictor: Predictor, size: tuple[int, int], num_frames: int,
                  num_expressions: int, budget_mb: float = HEAD_MAPS_BUDGET_MB) -> bool:
    """Whether every head's attention maps of a run fit in ``budget_mb`` (float16, all eight
    levels, `WORDS_ESTIMATE` words per expression). ``size`` is the source's (height, width)."""
    h, w = size if predictor.short_side is None else resized_size(*size, predictor.short_side)
    pixels = sum(-(-h // s) * -(-w // s) for strides in ATTENTION_STRIDES.values()
                 for s in strides)
    config = predictor.model.config
    heads = max(config.fusion_nheads, config.fpn_nheads)
    total = num_frames * num_expressions * WORDS_ESTIMATE * heads * pixels * 2
    return total <= budget_mb * 2**20


def query_masks_fit(predictor: Predictor, size: tuple[int, int], num_frames: int,
                    num_expressions: int, budget_mb: float = QUERY_MASKS_BUDGET_MB) -> bool:
    """Whether every query's low-resolution mask logits of a run fit in ``budget_mb`` before
    compression: int8 ``Q × ceil(h/4) × ceil(w/4)`` per frame and expression at the model's
    input size (h, w). ``size`` is the source's (height, width)."""
    h, w = size if predictor.short_side is None else resized_size(*size, predictor.short_side)
    queries = predictor.model.config.num_queries
    total = num_frames * num_expressions * queries * -(-h // 4) * -(-w // 4)
    return total <= budget_mb * 2**20


def _export(result: VideoResult, out: Path, video: str) -> dict[str, Path]:
    paths = write_outputs(result, out, video_path=video)
    # masks.zip holds the same PNGs; the loose copies would only fill the disk.
    shutil.rmtree(paths.pop("masks"), ignore_errors=True)
    return paths


@dataclass
class FrameStore:
    """The processed frames as JPEGs no larger than `DISPLAY_MAX_SIDE` (see the module
    docstring for why). ``frame(t)`` gives uint8 ``[H0, W0, 3]`` at the source size."""

    jpegs: list[bytes]
    source_size: tuple[int, int]  # (H0, W0)
    stored_size: tuple[int, int]  # (h, w) of the JPEGs

    @classmethod
    def from_frames(cls, frames: Iterator[np.ndarray] | Sequence[np.ndarray],
                    max_side: int = DISPLAY_MAX_SIDE) -> FrameStore:
        store = cls([], (0, 0), (0, 0))
        for frame in frames:
            store.add(frame, max_side)
        return store

    def add(self, frame: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> None:
        """Keep the next frame (uint8 ``[H0, W0, 3]`` RGB), e.g. as the predictor decodes it."""
        small = _fit(frame, max_side)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError("could not JPEG-encode a frame")
        self.jpegs.append(buf.tobytes())
        self.source_size, self.stored_size = frame.shape[:2], small.shape[:2]

    @classmethod
    def from_result(cls, result: VideoResult, video: str) -> FrameStore:
        return cls.from_frames(result.iter_source_frames(video))

    def __len__(self) -> int:
        return len(self.jpegs)

    def __getitem__(self, t: int) -> np.ndarray:
        return self.frame(t)

    def nbytes(self) -> int:
        return sum(len(j) for j in self.jpegs)

    def frame(self, t: int) -> np.ndarray:
        """uint8 ``[H0, W0, 3]`` RGB frame ``t`` (upscaled when stored smaller)."""
        if not 0 <= t < len(self.jpegs):
            raise IndexError(f"frame {t} out of range: {len(self.jpegs)} frames")
        bgr = cv2.imdecode(np.frombuffer(self.jpegs[t], np.uint8), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h0, w0 = self.source_size
        if rgb.shape[:2] != (h0, w0):
            rgb = cv2.resize(rgb, (w0, h0), interpolation=cv2.INTER_LINEAR)
        return rgb


def _fit(image: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """``image`` scaled down (area interpolation) so its long side is at most ``max_side``."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                      interpolation=cv2.INTER_AREA)


_LEVEL_NAMES = {"fusion": "early fusion", "fpn": "cross-modal FPN"}


def _index(value: int | float | str | None, n: int) -> int:
    """A UI value (a slider's float, a radio's string; None or "": the first) as an index in
    ``[0, n)``, clamped."""
    k = 0 if value in (None, "") else round(float(value))
    return min(max(k, 0), n - 1)


def _expression_choices(result: VideoResult) -> list[tuple[str, str]]:
    """(label, value) per expression, value the index as a string."""
    return [(f"{k + 1}: {e.text}", str(k)) for k, e in enumerate(result)]


def level_label(level: str) -> str:
    """Menu text of an attention level, e.g. ``"fusion/8"`` → ``"early fusion, 1/8"``."""
    kind, _, stride = level.partition("/")
    return f"{_LEVEL_NAMES.get(kind, kind)}, 1/{stride}" if stride else level


@dataclass
class Session:
    """A finished run as the app keeps it per browser session.

    Attributes:
        result: the `VideoResult` at the prediction threshold (re-thresholding starts from it).
        frames: the processed frames (`FrameStore`).
        video: the source file.
        out_dir / paths: the written outputs (``overlay``, ``masks_zip``, ``result``).
        exported: the result as written (``result`` re-thresholded, or ``result`` itself).
        notes: remarks for the summary (e.g. frames left out).
    """

    result: VideoResult
    frames: FrameStore
    video: str
    out_dir: Path
    paths: dict[str, Path]
    exported: VideoResult
    notes: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return self.result.num_frames

    @property
    def threshold(self) -> float:
        """Threshold of the written outputs."""
        return float(self.exported.settings["threshold"])

    @property
    def presence_threshold(self) -> float:
        """Presence threshold of the written outputs."""
        return float(self.exported.settings.get("presence_threshold", 0.0))

    def close(self) -> None:
        """Delete the written outputs (the app calls this when the session expires)."""
        shutil.rmtree(self.out_dir, ignore_errors=True)

    def rethreshold(self, threshold: float | None = None,
                    presence_threshold: float | None = None) -> Session:
        """A session whose outputs are written at mask ``threshold`` and presence threshold
        ``presence_threshold`` (None: as they stand; from the stored logits and scores, no
        model run). Returns ``self`` when nothing changes."""
        threshold = self.threshold if threshold is None else float(threshold)
        presence = (self.presence_threshold if presence_threshold is None
                    else float(presence_threshold))
        if threshold == self.threshold and presence == self.presence_threshold:
            return self
        try:
            exported = with_threshold(self.result, threshold, presence)
        except ThresholdError as err:
            raise AppInputError(str(err)) from None
        out = Path(tempfile.mkdtemp(prefix="run-", dir=self.out_dir.parent))
        paths = _export(exported, out, self.video)
        self.close()
        return dataclasses.replace(self, out_dir=out, paths=paths, exported=exported)

    # ------------------------------------------------------------------------- menus

    def expression_choices(self) -> list[tuple[str, str]]:
        return _expression_choices(self.result)

    def word_choices(self, expression: int) -> list[tuple[str, str]]:
        """("all words", "all") then (word, index as string) for each word of the expression."""
        e = self.result[self._expr(expression)]
        return [("all words", "all")] + [(w, str(i)) for i, w in enumerate(e.words)]

    def level_choices(self) -> list[tuple[str, str]]:
        e = self.result[0]
        return [] if e.attention is None else [(level_label(lv), lv) for lv in
                                               e.attention.levels]

    def head_choices(self) -> list[tuple[str, str]]:
        """("mean of heads", "mean"), then ("head k", "k-1") when the run kept every head."""
        e = self.result[0]
        heads = 0 if e.attention is None else e.attention.num_heads
        return [("mean of heads", "mean")] + [(f"head {k + 1}", str(k)) for k in range(heads)]

    # ----------------------------------------------------------------------- rendering

    def render_queries(self, expression: int, frame: int, threshold: float | None = None,
                       sampling: bool = False) -> np.ndarray:
        """uint8 image: the expression's mask at ``threshold`` with every query's box and
        score, the chosen query highlighted, the reference points (and sampling points)."""
        k, t = self._expr(expression), self._frame(frame)
        thr = self.threshold if threshold is None else float(threshold)
        # The outputs as they stand: a frame where the object was not found has no mask.
        base = self.exported.render_overlay(t, self.frames.frame(t), threshold=thr,
                                            expressions=[k])
        return _fit(self.result.render_queries(k, t, base, sampling=sampling))

    def decoder_query_choices(self) -> list[tuple[str, str]]:
        """The decoder view's menu: all queries, the chosen one (whichever it is on the frame),
        then each query."""
        q = self.result[0].scores.shape[1]
        return [("all queries", "all"), ("the chosen query", "chosen")] + [
            (f"q{k + 1}", str(k)) for k in range(q)]  # counted from 1, as the drawings

    def render_decoder(self, expression: int, frame: int, query: str | int | None = "all"
                       ) -> np.ndarray:
        """uint8 image: the decoder's layer-by-layer refinement on ``frame``: every query's
        path (``"all"``), or the boxes of one query (an index, or ``"chosen"``) after each
        layer with each layer's score."""
        k, t = self._expr(expression), self._frame(frame)
        e = self.result[k]
        if query in (None, "", "all"):
            focus = None
        elif query == "chosen":
            focus = int(e.chosen_query[t])
        else:
            focus = min(max(int(query), 0), e.scores.shape[1] - 1)
        base = self.exported.render_overlay(t, self.frames.frame(t), expressions=[k])
        return _fit(self.result.render_decoder(k, t, base, query=focus))

    def render_layer_scores(self, expression: int, frame: int) -> np.ndarray:
        """uint8 ``[240, 640, 3]``: every query's score after each decoder layer on ``frame``."""
        return self.result.render_layer_scores(self._expr(expression), self._frame(frame))

    def render_query_masks(self, expression: int, frame: int) -> np.ndarray:
        """uint8 image: every query's mask on ``frame`` as small multiples with their scores,
        the chosen one marked (a note instead when the run did not keep them)."""
        k, t = self._expr(expression), self._frame(frame)
        if not self.result[k].has_query_masks:
            return visualize.notice(960, "Every query's mask was not kept for this run (it "
                                         f"would take over {QUERY_MASKS_BUDGET_MB} MB); only "
                                         "the chosen query's mask is stored.")
        return _fit(self.result.render_query_masks(k, t, self.frames.frame(t),
                                                   threshold=self.threshold))

    def export_slides(self, columns: int = 5, gif: bool = False) -> dict[str, Path]:
        """Write ``figure.png`` and ``figure.pdf`` (``columns`` evenly spaced frames) of the
        outputs as they stand (threshold included) into this session's folder, and with
        ``gif`` also ``overlay.gif`` (`export_gif`: it takes far longer than the figure);
        returns their paths as ``figure_png``, ``figure_pdf`` (and ``gif``)."""
        try:
            columns = exports.check_columns(columns)
            paths = exports.write_figure(self.exported, self.out_dir, self.frames,
                                         columns=columns)
        except exports.ExportError as err:
            raise AppInputError(str(err)) from None
        if gif:
            paths["gif"] = self.export_gif()
        return paths

    def export_gif(self) -> Path:
        """Write ``overlay.gif`` of the outputs as they stand into this session's folder."""
        try:
            return exports.write_gif(self.exported, self.out_dir / "overlay.gif", self.frames)
        except exports.ExportError as err:
            raise AppInputError(str(err)) from None

    def render_attention(self, expression: int, frame: int, word: str | int = "all",
                         level: str | None = None, head: str | int | None = "mean"
                         ) -> np.ndarray:
        """uint8 image: word ``word`` (index, or ``"all"`` for one panel per word) of the
        expression attending over frame ``frame`` at feature level ``level``, for attention
        head ``head`` (index, or ``"mean"``)."""
        k, t = self._expr(expression), self._frame(frame)
        levels = [v for _, v in self.level_choices()]
        lv = level if level in levels else levels[0]
        w: str | int = "all" if word in (None, "", "all") else int(word)
        if w != "all" and not 0 <= int(w) < len(self.result[k].words):
            w = "all"
        heads = [v for _, v in self.head_choices()]
        hd = None if head is None or str(head) not in heads[1:] else int(head)
        return _fit(self.result.render_attention(k, t, self.frames.frame(t), word=w, level=lv,
                                                 head=hd))

    def render_scores(self, expression: int, frame: int) -> np.ndarray:
        """uint8 ``[240, 640, 3]`` plot of every query's score over time, cursor at ``frame``:
        the timeline, with the frames where the object was not found shaded."""
        return self.exported.render_scores(self._expr(expression), self._frame(frame))

    def _expr(self, expression: int | str | None) -> int:
        return _index(expression, len(self.result))

    def _frame(self, frame: int | float | None) -> int:
        return _index(frame, self.num_frames)

    # ------------------------------------------------------------------------- summary

    def summary(self) -> str:
        """Markdown: what was processed, how fast, and per expression how sure the model was."""
        r = self.exported
        s, t = r.source, r.timings
        head = (f"**{plural(r.num_frames, 'frame')}** ({s.width}×{s.height}, {s.fps:.3g} fps)"
                f" · {plural(len(r.windows), 'window')} · "
                f"{t['total_s']:.1f} s on {escape_markdown(r.settings['device'])} "
                f"({t['frames_per_second']:.1f} frames/s) · model "
                f"**{escape_markdown(r.model_name)}** · threshold {self.threshold:g} · "
                f"presence threshold {self.presence_threshold:g}")
        lines = [head, ""]
        for k, e in enumerate(r):
            lines.append(f"{k + 1}. *{escape_markdown(e.text)}*: {found_text(e)}")
        if self.threshold != self.result.settings["threshold"]:
            lines += ["", f"Masks re-thresholded at {self.threshold:g} from the stored mask "
                          f"logits (predicted at {self.result.settings['threshold']:g})."]
        for note in self.notes:
            lines += ["", note]  # the app's own words
        return "\n".join(lines)


def found_text(e: ExpressionResult) -> str:
    """One expression's line of the summary (Markdown-safe: numbers and fixed words only):
    on how many frames the object was found (and whether a presence head judged it), how sure
    the model was, and how many masks are empty although found."""
    found = int(e.found.sum())
    shown = int((e.mask_areas > 0).sum())
    text = f"found on {found} of {plural(e.num_frames, 'frame')}"
    if e.presence_threshold > 0:
        text += f" (presence ≥ {e.presence_threshold:g})"
        if e.presence_scores is not None:
            text += " · judged by the model's presence head"
    text += f" · score {float(e.chosen_scores.mean()):.2f} (mean of the chosen query)"
    if shown < found:
        text += f" · mask empty on {found - shown} of them"
    if e.num_objects > 1:
        text += f" · {e.num_objects} objects, each in its own colour"
    return text


def _safe_name(key: str) -> str:
    """A model key as a file-name part (checkpoint keys are file names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") or "model"
