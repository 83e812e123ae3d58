"""One app run: a Predictor run that reports progress and ends in a Session."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rvos.app.inputs import (
    RUN_ERRORS,
    AppInputError,
    Limits,
    RunSettings,
    check_video,
    check_work,
    parse_expressions,
)
from rvos.app.models import ModelCache, torch_device_type
from rvos.app.session import (
    QUERY_MASKS_BUDGET_MB,
    FrameStore,
    Session,
    _export,
    head_maps_fit,
    query_masks_fit,
)
from rvos.app.text import plural
from rvos.errors import PredictorError
from rvos.media.probe import VideoError, probe
from rvos.modeling.processing import model_short_side, resized_size
from rvos.predictor.estimate import Estimate, Speed, SpeedBook, estimate
from rvos.predictor.predictor import Predictor, Progress
from rvos.result.video_result import VideoResult

__all__ = ["Run", "estimate_run", "prepare_run", "progress_text", "speedup_note"]


class Run:
    """One prediction, validated and ready: iterate `steps`, then call `finish`.

    Made by `prepare_run`; holds the `Predictor`, the expressions and the probed video.
    """

    def __init__(self, predictor: Predictor, video: str, expressions: list[str], info: Any,
                 settings: RunSettings, work_dir: Path, *, details: bool = True,
                 on_finish: Callable[..., None] | None = None,
                 limits: Limits | None = None) -> None:
        # e.g. to refine the time estimates: called with the result and the run's wall time
        self.on_finish = on_finish
        self._started: float | None = None
        self._out: Path | None = None
        self._paths: dict[str, Path] | None = None
        self._frames: FrameStore | None = None  # filled while the run decodes the video
        self.predictor, self.video, self.expressions = predictor, video, expressions
        asked = settings.max_frames
        if limits is not None:  # the limit is on the work: frames processed
            settings = check_work(info, settings, limits)
        self.limited = settings.max_frames < asked  # by the app's limit, not by Max frames
        self.info, self.settings, self.work_dir = info, settings, work_dir
        available = info.sampled_num_frames(settings.fps)
        self.num_frames = min(available, settings.max_frames)
        self.truncated_from = available if available > settings.max_frames else None
        # details: what the frame explorer draws (attention, sampling points, every query's
        # mask); a comparison needs none of it.
        self.details = details
        size = (info.height, info.width)
        self.attention_heads = details and head_maps_fit(predictor, size, self.num_frames,
                                                         len(expressions))
        self.query_masks = details and query_masks_fit(predictor, size, self.num_frames,
                                                       len(expressions))

    def steps(self) -> Iterator[Progress]:
        """`Progress` after every window; the last one carries the `VideoResult`. Closing the
        iterator early (a Stop button) stops the model and the video reader. A run with
        ``details`` (Segment's) writes overlay.mp4, masks.zip and result.json into a new folder
        of ``work_dir`` while it runs."""
        self._started = time.perf_counter()
        out = None
        if self.details:
            self._out = out = Path(tempfile.mkdtemp(prefix="run-", dir=self.work_dir))
        # The explorer's frames come from the predictor's own decoding: one pass over the video.
        self._frames = FrameStore([], (0, 0), (0, 0)) if self.details else None
        try:
            for progress in self.predictor.iter_predict(
                    self.video, self.expressions, fps=self.settings.fps,
                    max_frames=self.settings.max_frames, return_attention=self.details,
                    return_sampling=self.details, attention_heads=self.attention_heads,
                    return_query_masks=self.query_masks, out_dir=out,
                    on_frame=None if self._frames is None else self._frames.add):
                if progress.paths is not None:
                    self._paths = progress.paths
                yield progress
        except BaseException:  # failed, or stopped (GeneratorExit): its partial outputs go
            self.discard()
            raise

    def discard(self) -> None:
        """Delete this run's partial outputs (a run that failed or was stopped)."""
        if self._out is not None:
            shutil.rmtree(self._out, ignore_errors=True)
            self._out, self._paths = None, None

    def finish(self, result: VideoResult) -> Session:
        """The outputs (written while the run went, else now into a new folder of
        ``work_dir``) and the frames for the explorer."""
        if self._paths is not None and self._out is not None:
            out, paths = self._out, dict(self._paths)
            # masks.zip holds the same PNGs; the loose copies would only fill the disk.
            shutil.rmtree(paths.pop("masks"), ignore_errors=True)
        else:
            self._out = out = Path(tempfile.mkdtemp(prefix="run-", dir=self.work_dir))
            paths = {}
        try:
            if not paths:
                paths = _export(result, out, self.video)
            frames = self._frames
            if frames is None or len(frames) != result.num_frames:
                frames = FrameStore.from_result(result, self.video)  # a run without details
        except BaseException:
            self.discard()
            raise
        if self.on_finish is not None and self._started is not None:
            self.on_finish(result, time.perf_counter() - self._started)
        return Session(result, frames, self.video, out, paths, result, self.notes(result))

    def notes(self, result: VideoResult) -> list[str]:
        """Remarks for the summary: frames left out, views that did not fit in memory."""
        notes = []
        if self.truncated_from is not None:
            why = (f"this app processes at most {plural(self.settings.max_frames, 'frame')} "
                   "of this video per run" if self.limited else "Max frames")
            notes.append(f"Only the first {result.num_frames} of {self.truncated_from} frames "
                         f"were processed ({why}); lower the processing fps (Advanced "
                         "settings) to cover more of the video.")
        if self.details and not self.query_masks:
            notes.append(f"Every query's mask was not kept (more than "
                         f"{QUERY_MASKS_BUDGET_MB} MB for this many frames at this size); the "
                         "decoder view shows the boxes of all queries and the chosen mask.")
        return notes


def download_before_run(models: ModelCache, model_keys: Sequence[str | None],
                        video: str | None, expressions: str | None, settings: RunSettings,
                        limits: Limits) -> Iterator[Any]:
    """What a run does before it takes the one-run slot: check the inputs (cheapest first, so
    a bad video downloads nothing), then fetch each model that is not here yet, yielding its
    `rvos.zoo.loader.FetchProgress`. Raises `AppInputError` with the first problem found."""
    parse_expressions(expressions)
    settings.checked(limits)
    keys = [models.choice(k).key for k in model_keys]
    check_video(video, limits)
    for key in dict.fromkeys(keys):
        yield from models.fetch_steps(key)


def prepare_run(models: ModelCache, model: str | None, video: str | None,
                expressions: str | None, settings: RunSettings, limits: Limits,
                work_dir: str | Path, *, on_download: Callable[[Any], None] | None = None,
                details: bool = True) -> Run:
    """Check every input (cheapest first), load the model if needed and build the predictor.

    A model whose weights are not here yet is downloaded first, its progress reported to
    ``on_download`` (a `rvos.zoo.loader.FetchProgress`). ``details``: keep what the frame explorer
    draws (attention, sampling points, every query's mask; see `Run`). Raises `AppInputError`
    with the first problem found.
    """
    texts = parse_expressions(expressions)
    settings = settings.checked(limits)
    choice = models.choice(model)
    info = check_video(video, limits)
    net = models.get(choice.key, settings.device, on_download=on_download,
                     precision=settings.precision)

    try:
        predictor = Predictor(net, device=settings.device, window=settings.window,
                              short_side=settings.short_side or "auto",
                              threshold=settings.threshold, model_name=choice.key,
                              presence_threshold=settings.presence_threshold,
                              objects=settings.objects)
    except PredictorError as err:
        raise AppInputError(str(err)) from None
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)

    def record(result: VideoResult, wall_s: float | None = None) -> None:
        # every run refines the estimates; reading and writing only from a Segment's wall time
        # (a comparison's runs write nothing while they run)
        h, w = result.settings["input_size"]
        model_s = result.timings["model_s"]
        models.speeds.record(choice.key, settings.device, settings.precision, h * w,
                             sum(end - start for start, end in result.windows), len(result),
                             model_s)
        if wall_s is not None:
            models.speeds.record_io(result.num_frames, info.height * info.width, len(result),
                                    wall_s - model_s)

    return Run(predictor, str(video), texts, info, settings, work, details=details,
               on_finish=record, limits=limits)


def estimate_run(models: ModelCache, model: str | None, video: str | None,
                 expressions: str | None, settings: RunSettings, limits: Limits
                 ) -> Estimate | None:
    """How long Segment would take with these inputs (`rvos.predictor.estimate`): the model's part,
    measured on this device the first time, and reading and writing the video at the source's
    size. None while something is missing (no video yet, a model still to download) or wrong
    (a model that does not load: the run itself will say what). A video longer than the app's
    limit is estimated for the frames the run will process (`check_work`), and the note says
    so; a video the run would refuse gets an estimate when it can be probed, with the reason."""
    try:
        texts = parse_expressions(expressions) if (expressions or "").strip() else ["x"]
        settings = settings.checked(limits)
        choice = models.choice(model)
        if video is None or models.needs_download(choice.key):
            return None
        note = ""
        try:
            info = check_video(video, limits)
        except AppInputError as err:
            try:
                info = probe(video)  # a video over a limit: estimate it, say why it is refused
            except VideoError:
                return None
            note = f"As it is, the run would be refused: {err}"
        limited = check_work(info, settings, limits)  # the limit is on the frames processed
        if limited.max_frames < settings.max_frames and limited.max_frames < info.num_frames:
            note = (f"The run processes the first {plural(limited.max_frames, 'frame')} of "
                    f"{info.num_frames} (this app's limit for this video); lower the "
                    "processing fps (Advanced settings) to cover more of it.")
        settings = limited
        net = models.get(choice.key, settings.device, precision=settings.precision)
    except RUN_ERRORS:
        return None
    except Exception:  # a model that fails to load in an unforeseen way: no stale estimate
        logging.getLogger("rvos.app").exception("could not load %r for the estimate", model)
        return None
    try:
        side = settings.short_side or model_short_side(net)
        h, w = (info.height, info.width) if side is None else resized_size(
            info.height, info.width, side)
        speed = models.speeds.get(choice.key, settings.device, settings.precision, h * w)
        if speed is None:
            speed = models.speeds.measure(net, choice.key, settings.device, settings.precision,
                                          (h, w))
        io = models.speeds.io()
        gain = speedup_note(models.speeds, choice.key, settings.device, settings.precision,
                            h * w, len(texts), speed)
        note = f"{gain} {note}".strip()
    except Exception:  # e.g. out of memory: no estimate rather than a stale one
        logging.getLogger("rvos.app").exception("could not measure the run-time estimate")
        return None

    def frames_at(fps: float | None) -> int:
        return min(info.sampled_num_frames(fps), settings.max_frames)

    return estimate(speed, h * w, len(texts), torch_device_type(settings.device),
                    frames_at=frames_at, fps=settings.fps, window=settings.window,
                    source_fps=info.fps, io=io, source_size=(info.height, info.width),
                    note=note)


def speedup_note(book: SpeedBook, key: str, device: str, precision: str, pixels: int,
                 expressions: int, speed: Speed) -> str:
    """How much faster than fp32 ``precision`` ran this model on this machine, once both were
    measured here (the estimate's passes, refined by runs); "" otherwise or for fp32."""
    base = None if precision == "fp32" else book.get(key, device, "fp32", pixels)
    if base is None:
        return ""
    ratio = base.per_frame(pixels, expressions) / speed.per_frame(pixels, expressions)
    if ratio >= 1:
        return f"{precision} runs this model {ratio:.2f}× as fast as fp32 on this machine."
    return (f"{precision} ran this model {1 / ratio:.2f}× slower than fp32 on this machine: "
            "fp32 is faster here.")


def progress_text(p: Progress) -> str:
    """One line for a progress bar, e.g. ``"window 2/4: 64/120 frames"``."""
    windows = f"window {p.window + 1}/{p.total_windows}" if p.total_windows else \
        f"window {p.window + 1}"
    if p.total_frames:
        return f"{windows}: {p.frames_done}/{plural(p.total_frames, 'frame')}"
    return f"{windows}: {plural(p.frames_done, 'frame')}"
