"""The app's input checks: expressions, the video, run settings and their limits."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rvos.app.text import log, public_message
from rvos.errors import RvosError
from rvos.media.probe import VideoError, check_video_file
from rvos.modeling.cpu_features import CpuFeatures, cpu_features
from rvos.modeling.precision import (
    AUTO,
    PRECISIONS,
    PrecisionError,
    choose_precision,
    offered_precisions,
)

__all__ = [
    "MAX_EXPRESSIONS",
    "RUN_ERRORS",
    "AppInputError",
    "FASTEST_LABEL",
    "Limits",
    "RunSettings",
    "available_devices",
    "check_video",
    "check_work",
    "parse_expressions",
    "precision_choices",
]


MAX_EXPRESSIONS = 4


class AppInputError(RvosError, ValueError):
    """Input the app cannot run on; the message says what is wrong and what to do."""


# What a run can fail with because of its input: every such error stands on RvosError, so the
# app shows its message and keeps serving (anything else is a bug: logged with its traceback).
RUN_ERRORS: tuple[type[Exception], ...] = (RvosError,)


# What a run may ask for, whoever asks (the page's controls are built from these, and
# `RunSettings.checked` enforces them for the page and the API alike).
WINDOW_RANGE = (1, 512)  # frames per model call


SHORT_SIDE_RANGE = (32, 2160)  # model input short side in pixels (0: the model's own)


SHORT_SIDE_STEP = 8


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (the app's ``--max-*`` options).

    The limit is on the work, not on the file: a run processes at most ``max_frames`` frames
    (after the processing fps), and no more than ``max_duration_s`` seconds' worth of the
    source's own frames (``max_duration_s × source fps``), whichever is smaller. A video of any
    length is accepted; a run covers its first frames up to that limit (`check_work`).

    Attributes:
        max_duration_s: seconds' worth of source frames a run may process.
        max_frames: most frames processed per run (frames after the processing fps).
        max_upload_mb: largest accepted upload (enforced by Gradio).
    """

    max_duration_s: float = 120.0
    max_frames: int = 300
    max_upload_mb: int = 200

    def __post_init__(self) -> None:
        if not self.max_duration_s > 0 or self.max_frames < 1 or self.max_upload_mb < 1:
            raise ValueError(f"limits must be positive, got {self}")

    def frame_limit(self, source_fps: float) -> int:
        """Most frames one run may process of a video at ``source_fps``."""
        by_duration = math.floor(self.max_duration_s * source_fps + 1e-6) if source_fps > 0 \
            else self.max_frames
        return max(1, min(self.max_frames, by_duration))


def parse_expressions(text: str | None, max_expressions: int = MAX_EXPRESSIONS) -> list[str]:
    """One referring expression per non-empty line of ``text`` (white space collapsed)."""
    lines = [" ".join(line.split()) for line in (text or "").splitlines()]
    exprs = [line for line in lines if line]
    if not exprs:
        raise AppInputError("no expression: type what to segment, e.g. 'the red circle' "
                            "(one expression per line)")
    if len(exprs) > max_expressions:
        raise AppInputError(f"{len(exprs)} expressions given; at most {max_expressions} are "
                            "allowed per run (one per line)")
    return exprs


def check_video(path: str | None, limits: Limits):
    """`rvos.media.probe.VideoInfo` of ``path``, or `AppInputError` for a missing or unreadable
    video. The page, the API and the CLI accept the same files: `rvos.media.probe.check_video_file`
    decides (a GIF is a video; a still image, an audio-only or a subtitle-only file is refused).
    Its length is not refused here: the limit is on the frames a run processes (`check_work`).
    The message names the file by its own name, never by the server's folder; the log keeps
    the full reason."""
    if not path:
        raise AppInputError("no video: upload a video file or pick one of the examples")
    try:
        info = check_video_file(path)
    except VideoError as err:
        log.info("cannot read %s: %s", path, err)
        raise AppInputError(public_message(err)) from None
    return info


def check_work(info: Any, settings: RunSettings, limits: Limits) -> RunSettings:
    """``settings`` with Max frames lowered to what this app processes per run of the video
    ``info`` (`Limits.frame_limit`). Max frames is a cap, not a demand: a run is never refused
    for the video's length; it covers the video's start, and its summary says so and what to
    change on the page (`Run.notes`)."""
    allowed = limits.frame_limit(info.fps)
    if settings.max_frames <= allowed:
        return settings
    return dataclasses.replace(settings, max_frames=allowed)


FASTEST_LABEL = "Fastest on this machine"


def precision_choices(devices: Sequence[str],
                      features: CpuFeatures | None = None) -> list[tuple[str, str]]:
    """The Precision menu for these devices, as (label, value) pairs: fp32 (exact) first, then
    each mode faster than fp32 on one of them (on a CPU only those its hardware runs natively,
    `rvos.modeling.precision.offered_precisions`; ``features``: this CPU's when None), then
    "Fastest on this machine" (``"auto"``)."""
    where: dict[str, list[str]] = {}
    for device in devices:
        kind = "GPU" if device.startswith("cuda") else "CPU"
        for precision in offered_precisions(device, features):
            if precision != "fp32" and kind not in where.setdefault(precision, []):
                where[precision].append(kind)
    cpu = features or cpu_features()
    units = {"bf16": cpu.bf16_unit, "int8": cpu.int8_unit}

    def label(precision: str) -> str:
        kinds = [f"CPU: {units[precision]}" if k == "CPU" and units.get(precision) else k
                 for k in where[precision]]
        return f"{precision} (faster on {', '.join(kinds)})"

    return ([("fp32 (exact, default)", "fp32")]
            + [(label(p), p) for p in PRECISIONS if p in where]
            + [(FASTEST_LABEL, AUTO)])


def available_devices() -> list[str]:
    """Devices a run can use here: ``cuda`` first when a GPU is usable, then ``cpu``."""
    return (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]


@dataclass(frozen=True)
class RunSettings:
    """The "Advanced" settings of one run.

    Attributes:
        threshold: mask probability threshold, in (0, 1).
        window: frames per model call (see `rvos.predictor.predictor`).
        fps: processing frame rate; None or 0 processes every frame.
        max_frames: process at most this many frames (from the start).
        short_side: model input short side; None or 0 uses the model's own.
        device: torch device of the run.
        precision: "fp32" (the default, checked against the original), a mode of
            `rvos.modeling.precision` faster than fp32 on the device, or "auto" (the fastest);
            `checked` turns "auto" into the mode it picks.
        presence_threshold: frames whose presence (`ExpressionResult.presence`) is below it
            get no mask and count as "not found"; in [0, 1]; None: the model's own
            (`rvos.predictor.presence`).
        objects: "best" (the paper's one query per expression) or "all" (every object the
            expression refers to, `rvos.predictor.objects`).
    """

    threshold: float = 0.5
    window: int = 36
    fps: float | None = None
    max_frames: int = 300
    short_side: int | None = None
    device: str = "cpu"
    precision: str = "fp32"
    presence_threshold: float | None = None
    objects: str = "best"

    def checked(self, limits: Limits) -> RunSettings:
        """These settings normalised (0 → None, whole numbers as int), or `AppInputError`."""

        def number(name: str, value: Any) -> float:
            try:
                x = float(value)
            except (TypeError, ValueError):
                raise AppInputError(f"{name} must be a number, got {value!r}") from None
            if not math.isfinite(x):
                raise AppInputError(f"{name} must be a finite number, got {value!r}")
            return x

        threshold = number("threshold", self.threshold)
        if not 0.0 < threshold < 1.0:
            raise AppInputError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
        window = number("window", self.window)
        lo, hi = WINDOW_RANGE
        if window != int(window) or not lo <= window <= hi:
            raise AppInputError(f"window must be a whole number of frames in {lo}..{hi}, got "
                                f"{window:g}")
        fps = number("fps", 0 if self.fps is None else self.fps)
        if fps < 0:
            raise AppInputError(f"fps must be positive (or 0 for every frame), got {fps}")
        max_frames = number("max_frames", self.max_frames)
        if max_frames != int(max_frames) or not 1 <= max_frames <= limits.max_frames:
            raise AppInputError(f"max_frames must be a whole number in 1..{limits.max_frames} "
                                f"(this app's limit), got {max_frames:g}")
        side = number("short_side", 0 if self.short_side is None else self.short_side)
        lo, hi = SHORT_SIDE_RANGE
        if side != int(side) or not (side == 0 or lo <= side <= hi):
            raise AppInputError(f"short_side must be 0 (the model's own) or a whole number of "
                                f"pixels in {lo}..{hi}, got {side:g}")
        devices = available_devices()
        device = str(self.device or devices[0])
        if device not in devices and not (device.startswith("cuda:") and "cuda" in devices):
            raise AppInputError(f"device {device!r} is not available here; choose one of "
                                f"{', '.join(devices)}")

        try:
            precision = choose_precision(str(self.precision or "fp32"), device)
        except PrecisionError as err:
            raise AppInputError(str(err)) from None
        presence = None
        if self.presence_threshold not in (None, ""):
            presence = number("presence_threshold", self.presence_threshold)
            if not 0.0 <= presence <= 1.0:
                raise AppInputError("presence_threshold must be between 0 and 1 (0: a mask "
                                    f"on every frame), got {presence:g}")
        objects = self.objects or "best"
        if objects not in ("best", "all"):
            raise AppInputError(f"objects must be 'best' or 'all', got {objects!r}")
        return RunSettings(threshold, int(window), fps or None, int(max_frames),
                           int(side) or None, device, precision, presence, objects)
