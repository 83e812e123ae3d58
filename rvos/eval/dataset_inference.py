"""ReferFormer's benchmark inference on one video of Ref-YouTube-VOS, Ref-DAVIS17 or MeViS,
written as the original writes it.

The procedure is the paper's, expression by expression: the frames of a clip are resized to the
model's short side and normalised (`rvos.modeling.processing.preprocess`), the backbone runs once
per
clip and the rest of the model once per expression (alone, so its numbers are those of running
it by itself); the query with the best score averaged over the clip's frames is the answer, and
its mask logits are resized bilinearly to the frame size.

* **ytvos**: a mask is ``sigmoid > 0.5`` and is written as a 0 / 255 PNG per expression and
  frame. The original runs each video in one pass; so does ``window=0`` (the default). With a
  window of N frames, a longer video is cut into rvos's overlapping windows and every window
  after the first keeps the object of the one before (`rvos.predictor.windows.link_query`, the rule
  `rvos.predictor.predictor.Predictor` uses); a video of at most N frames is still one pass.
* **mevis**: as ytvos: one answer per expression, the paper's best query, also where the
  expression refers to several objects (the MeViS layout and scoring are ytvos's otherwise).
  With ``objects="all"`` (ytvos and mevis) the answer is the union of every query
  `rvos.predictor.objects.select_objects` keeps in each window (the chosen query first, linked
  across windows as usual): a pixel is the object's when any kept query's mask has it.
* **davis**: the original cuts each video into clips of 36 frames, each choosing its query on
  its own (``window=36, overlap=0``). For each annotator, the probabilities of that annotator's
  expressions (one per object) are merged into one label map per frame
  (`rvos.eval.davis.merge_probabilities`) and written as indexed PNGs.

This does not go through `rvos.predictor.predictor.Predictor`: the Ref-DAVIS17 merge needs each
object's
probabilities in full precision (the predictor keeps binary masks and logits rounded to 1/16),
and the predictor normalises whitespace in expressions, which the original does not (a double
or trailing space changes RoBERTa's tokens). What it shares with the predictor is public API:
the window plan, the link rule, preprocessing and query selection.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from rvos.data.layouts import (
    DAVIS_ANNOTATORS,
    PER_EXPRESSION_FORMATS,
    DatasetError,
    DatasetVideo,
    read_frames,
)
from rvos.eval.davis import merge_probabilities
from rvos.media.labels import write_label_png
from rvos.modeling.processing import preprocess, select_query
from rvos.predictor.objects import OBJECTS_CHOICES, select_objects
from rvos.predictor.windows import WindowPlan, default_overlap, link_query, plan_windows

__all__ = [
    "DAVIS_WINDOW",
    "MASK_THRESHOLD",
    "PredictSettings",
    "iter_window_logits",
    "predict_video",
]

MASK_THRESHOLD = 0.5
DAVIS_WINDOW = 36  # ReferFormer's Ref-DAVIS17 clip length
# Full-size probabilities are computed this many pixels at a time (64 MB of float32).
_PIXELS_PER_STEP = 1 << 24


@dataclass(frozen=True)
class PredictSettings:
    """How a split is predicted (recorded with the predictions).

    ``window``: frames per model call, 0 = the whole video in one call. ``overlap``: frames
    shared by consecutive windows (used to keep the object; 0 = independent clips).
    ``short_side``: frames are resized to this short side (None: kept as they are).
    ``precision``: the model's arithmetic (`rvos.modeling.precision`; the original's is fp32).
    """

    format: str
    window: int
    overlap: int
    short_side: int | None
    precision: str = "fp32"
    objects: str = "best"

    @classmethod
    def for_format(
        cls,
        fmt: str,
        short_side: int | None,
        window: int | None = None,
        overlap: int | None = None,
        precision: str = "fp32",
        objects: str = "best",
    ) -> PredictSettings:
        """The original's settings unless overridden: ytvos one pass per video, davis 36-frame
        clips without overlap. A ytvos window defaults to rvos's overlap for it."""
        if window is None:
            window = 0 if fmt in PER_EXPRESSION_FORMATS else DAVIS_WINDOW
        if window < 0:
            raise ValueError(f"window must be >= 0 (0: the whole video), got {window}")
        if overlap is None:
            overlap = default_overlap(window) if fmt in PER_EXPRESSION_FORMATS and window else 0
        if overlap < 0 or (window and overlap >= window):
            raise ValueError(f"overlap must be in [0, window={window}), got {overlap}")
        if objects not in OBJECTS_CHOICES:
            raise ValueError(f"objects must be one of {OBJECTS_CHOICES}, got {objects!r}")
        if objects != "best" and fmt not in PER_EXPRESSION_FORMATS:
            raise ValueError("objects='all' is for ytvos and mevis (one answer per expression);"
                             " davis merges one object per expression")
        return cls(fmt, int(window), int(overlap), short_side, precision, objects)


def iter_window_logits(
    model: torch.nn.Module,
    video: DatasetVideo,
    texts: Sequence[str],
    *,
    window: int,
    overlap: int,
    short_side: int | None,
    device: torch.device,
    objects: str = "best",
) -> Iterator[tuple[WindowPlan, list[Tensor]]]:
    """Run the model over ``video`` window by window.

    Yields:
        ``(plan, logits)``: for each text, the chosen query's mask logits on the frames the
        window reports, float32 ``[plan.keep_end - plan.keep_start, h, w]`` on ``device``
        (h, w: a quarter of the model input, rounded up); with ``objects="all"``, every kept
        query's, ``[K, n, h, w]``, the chosen query first.
    """
    n = video.num_frames
    overlap = overlap if window else 0
    plans = plan_windows(n, window or n, overlap)
    previous: list[Tensor | None] = [None] * len(texts)
    for plan in plans:
        clip = preprocess(read_frames(video, plan.start, plan.end), short_side).to(device)
        chosen = []
        with torch.inference_mode():
            visual = model.encode_video(clip)
            for k, text in enumerate(texts):
                out = model.decode(visual, [text])
                logits, masks = out["pred_logits"][0], out["pred_masks"][0]  # [t,Q,K], [t,Q,h,w]
                shared = min(overlap, plan.end - plan.start) if plan.index > 0 else 0
                if previous[k] is None or shared == 0:
                    query = select_query(logits)
                else:
                    scores = logits.float().sigmoid().max(-1).values.mean(0)
                    candidates = masks[:shared].float().sigmoid() > MASK_THRESHOLD
                    query, _, _ = link_query(previous[k][-shared:], candidates, scores)
                if overlap:
                    previous[k] = masks[-overlap:, query].float().sigmoid() > MASK_THRESHOLD
                a, b = plan.keep_start - plan.start, plan.keep_end - plan.start
                if objects == "all":
                    scores = logits.float().sigmoid().max(-1).values.mean(0)
                    kept = select_objects(scores, masks.float().sigmoid() > MASK_THRESHOLD, query)
                    chosen.append(masks[a:b, kept].float().transpose(0, 1).contiguous())
                    continue
                # A copy, so the other queries' masks are freed with this window.
                chosen.append(masks[a:b, query].float().contiguous())
        yield plan, chosen


def _probabilities(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """``[t, h, w]`` logits → ``[t, H, W]`` probabilities: bilinear (align_corners=False), then
    sigmoid, as the original (interpolating the logits, not the probabilities)."""
    return F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0].sigmoid()


class _Writer:
    """Writes a video's PNGs on a few threads (zlib releases the GIL, so encoding overlaps the
    model and other encodings); at most ``max_pending`` masks wait in memory. `close` waits
    for all and raises the first failure, naming the video and file."""

    def __init__(
        self, video: str, threads: int = min(4, os.cpu_count() or 1), max_pending: int = 256
    ) -> None:
        self.video, self.max_pending = video, max_pending
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="png")
        self.pending: deque[Future] = deque()

    def submit(self, path: Path, save: Callable[[Path], None]) -> None:
        while len(self.pending) >= self.max_pending:
            self._finish(self.pending.popleft())
        self.pending.append(self.pool.submit(self._save, path, save))

    def _save(self, path: Path, save: Callable[[Path], None]) -> None:
        try:
            save(path)
        except OSError as exc:
            raise DatasetError(f"video {self.video!r}: cannot write {path}: {exc}") from None

    @staticmethod
    def _finish(future: Future) -> None:
        future.result()

    def close(self) -> None:
        try:
            while self.pending:
                self._finish(self.pending.popleft())
        finally:
            for f in self.pending:
                f.cancel()
            self.pool.shutdown(wait=True)


def _save_binary(path: Path, mask: np.ndarray) -> None:
    Image.fromarray(mask.astype(np.uint8) * np.uint8(255)).save(path)


@dataclass
class VideoTiming:
    """Seconds spent on one video: ``model_s`` reading frames and running the network,
    ``write_s`` making full-size masks and handing them to the PNG writers, plus waiting for
    the writers after the last window (they run on threads, beside the network)."""

    video: str
    frames: int
    expressions: int
    model_s: float
    write_s: float

    @property
    def total_s(self) -> float:
        return self.model_s + self.write_s


def predict_video(
    model: torch.nn.Module,
    video: DatasetVideo,
    settings: PredictSettings,
    out_dirs: Sequence[Path],
    device: torch.device,
) -> VideoTiming:
    """Predict every expression of ``video`` and write its PNGs into ``out_dirs`` (one folder
    for ytvos, four for davis: `rvos.data.layouts.PredictionFolder.start`)."""
    texts = [e.text for e in video.expressions]
    model_s = write_s = 0.0
    tick = time.perf_counter()
    size: tuple[int, int] | None = None
    writer = _Writer(video.name)
    try:
        for plan, logits in iter_window_logits(
            model,
            video,
            texts,
            window=settings.window,
            overlap=settings.overlap,
            short_side=settings.short_side,
            device=device,
            objects=settings.objects,
        ):
            if size is None:
                with Image.open(video.frame_path(0)) as first:
                    size = (first.height, first.width)
            names = video.frames[plan.keep_start : plan.keep_end]
            now = time.perf_counter()
            model_s += now - tick
            if settings.format in PER_EXPRESSION_FORMATS:
                _write_ytvos(video, names, logits, size, out_dirs[0], writer)
            else:
                _write_davis(video, names, logits, size, out_dirs, writer)
            tick = time.perf_counter()
            write_s += tick - now
    finally:
        writer.close()
    write_s += time.perf_counter() - tick
    return VideoTiming(video.name, video.num_frames, len(texts), model_s, write_s)


def _frame_step(objects: int, size: tuple[int, int]) -> int:
    return max(1, _PIXELS_PER_STEP // (max(objects, 1) * size[0] * size[1]))


def _write_ytvos(
    video: DatasetVideo,
    names: Sequence[str],
    logits: list[Tensor],
    size: tuple[int, int],
    folder: Path,
    writer: _Writer,
) -> None:
    step = _frame_step(1, size)
    for expr, lg in zip(video.expressions, logits, strict=True):
        target = folder / expr.exp_id
        try:
            target.mkdir(exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"video {video.name!r}: cannot write {target}: {exc}") from None
        for i in range(0, len(names), step):
            if lg.dim() == 4:  # objects="all": [K, n, h, w], their union
                masks = torch.stack([_probabilities(o[i : i + step], size) > MASK_THRESHOLD
                                     for o in lg]).any(0).cpu().numpy()
            else:
                masks = (_probabilities(lg[i : i + step], size) > MASK_THRESHOLD).cpu().numpy()
            for name, mask in zip(names[i : i + step], masks, strict=True):
                writer.submit(target / f"{name}.png", lambda p, m=mask: _save_binary(p, m))


def _write_davis(
    video: DatasetVideo,
    names: Sequence[str],
    logits: list[Tensor],
    size: tuple[int, int],
    folders: Sequence[Path],
    writer: _Writer,
) -> None:
    objects = len(logits) // DAVIS_ANNOTATORS
    step = _frame_step(objects, size)
    for a, folder in enumerate(folders):
        mine = [logits[o * DAVIS_ANNOTATORS + a] for o in range(objects)]
        for i in range(0, len(names), step):
            probs = torch.stack([_probabilities(lg[i : i + step], size) for lg in mine])
            labels = merge_probabilities(probs)
            for name, lab in zip(names[i : i + step], labels, strict=True):
                writer.submit(folder / f"{name}.png", lambda p, m=lab: write_label_png(p, m))
