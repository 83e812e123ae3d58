"""How long a run will take, from the model's own measured cost on this device, and what fits.

A run's time is nearly all the model's: the backbone once per frame of every window, and the
rest of the network once per frame, window and expression (`rvos.predictor` decodes each
expression alone). Both costs are measured on the device itself — a two-frame pass at the run's
input size the first time a (model, device, precision) is asked about, then refined by every
finished run — and scaled with the input's pixel count for other sizes. Windows overlap, so the
frames the model sees are counted from `rvos.predictor.plan_windows`.

On a CPU a run longer than `CPU_BUDGET_S` gets two offers that fit: a lower processing frame rate
or fewer frames.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rvos.predictor import default_overlap, plan_windows

__all__ = ["CPU_BUDGET_S", "Estimate", "Speed", "SpeedBook", "estimate", "format_seconds",
           "processed_frames"]

CPU_BUDGET_S = 120.0
# Processing rates offered when a run is too long, highest first.
FPS_STEPS = (30, 25, 20, 15, 12, 10, 8, 6, 5, 4, 3, 2, 1, 0.5)


@dataclass(frozen=True)
class Speed:
    """Seconds per frame at ``pixels`` model-input pixels: the backbone's, and the rest of the
    network's for one expression."""

    backbone_s: float
    expression_s: float
    pixels: int

    def per_frame(self, pixels: int, expressions: int) -> float:
        """Seconds per frame of a window at ``pixels`` input pixels (cost grows with them)."""
        return (self.backbone_s + expressions * self.expression_s) * pixels / self.pixels


class SpeedBook:
    """Measured `Speed` per (model, device, precision); safe to share between sessions."""

    def __init__(self) -> None:
        self._speeds: dict[tuple[str, str, str], Speed] = {}
        self._lock = threading.Lock()

    def get(self, key: str, device: str, precision: str, pixels: int) -> Speed | None:
        """The speed on record, if it was measured at a comparable size (within 2×)."""
        speed = self._speeds.get((key, device, precision))
        if speed is None or not 0.5 <= pixels / speed.pixels <= 2.0:
            return None
        return speed

    def measure(self, model: torch.nn.Module, key: str, device: str, precision: str,
                input_size: tuple[int, int]) -> Speed:
        """Time a two-frame pass of ``model`` at ``input_size`` (h, w) and keep it."""
        h, w = input_size
        clip = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
        with self._lock, torch.inference_mode():  # one measurement at a time: they compete
            sync = torch.cuda.synchronize if clip.is_cuda else (lambda: None)
            start = time.perf_counter()
            features = model.encode_video(clip)
            sync()
            middle = time.perf_counter()
            model.decode(features, ["the object"])
            sync()
            end = time.perf_counter()
            speed = Speed((middle - start) / 2, (end - middle) / 2, h * w)
            self._speeds[(key, device, precision)] = speed
        return speed

    def record(self, key: str, device: str, precision: str, pixels: int, frames: int,
               expressions: int, model_s: float) -> None:
        """A finished run: ``frames`` frames through the model (overlaps included) with
        ``expressions`` expressions took ``model_s``. Rescales the speed on record to it (or
        starts one, split like the last measurement or half and half)."""
        if frames <= 0 or model_s <= 0:
            return
        with self._lock:
            old = self._speeds.get((key, device, precision))
            if old is None:
                share = 0.5
                old = Speed(share, (1 - share) / max(expressions, 1), pixels)
            per_frame = model_s / frames
            factor = per_frame / old.per_frame(pixels, expressions)
            self._speeds[(key, device, precision)] = Speed(
                old.backbone_s * factor * pixels / old.pixels,
                old.expression_s * factor * pixels / old.pixels, pixels)


def processed_frames(frames: int, window: int, overlap: int | None = None) -> int:
    """Frames the model sees for a run of ``frames`` frames (overlapping windows included)."""
    if frames <= 0:
        return 0
    overlap = default_overlap(window) if overlap is None else overlap
    return sum(p.end - p.start for p in plan_windows(frames, window, overlap))


@dataclass(frozen=True)
class Estimate:
    """A run's expected time, and on a CPU what would bring it under `CPU_BUDGET_S`."""

    seconds: float
    frames: int
    expressions: int
    device: str
    per_frame_s: float
    fps_fit: float | None = None  # a processing rate whose run fits the budget
    fps_fit_seconds: float | None = None
    frames_fit: int | None = None  # a frame cap whose run fits the budget
    frames_fit_seconds: float | None = None

    @property
    def too_long(self) -> bool:
        return self.device == "cpu" and self.seconds > CPU_BUDGET_S

    def text(self) -> str:
        """Markdown for the page."""
        what = (f"{self.frames} frames × {self.expressions} expression"
                f"{'s' if self.expressions != 1 else ''}, "
                f"{self.per_frame_s:.2g} s a frame as measured on {self.device}")
        line = f"**Estimated time: {format_seconds(self.seconds)}** ({what})."
        if not self.too_long:
            return line
        offers = []
        if self.fps_fit is not None:
            offers.append(f"process at **{self.fps_fit:g} fps** (about "
                          f"{format_seconds(self.fps_fit_seconds)})")
        if self.frames_fit is not None:
            offers.append(f"process only the **first {self.frames_fit} frames** (about "
                          f"{format_seconds(self.frames_fit_seconds)})")
        if not offers:
            return line + " Even one frame takes long on this CPU; a GPU would help."
        return (line + f" That is more than {format_seconds(CPU_BUDGET_S)} on this CPU: "
                + " or ".join(offers) + ".")


def estimate(speed: Speed, pixels: int, expressions: int, device: str, *,
             frames_at: Callable[[float | None], int], fps: float | None, window: int,
             source_fps: float) -> Estimate:
    """The time of a run, and what fits.

    Arguments:
        speed: the model's measured `Speed` on ``device``.
        pixels: model input pixels of the run (after its resize).
        frames_at: the number of frames processed at a processing rate (None: every frame),
            the frame cap included.
        fps / window: the run's processing rate and window.
        source_fps: the video's own rate (offers stay below it).
    """
    per_frame = speed.per_frame(pixels, max(expressions, 1))

    def seconds(frames: int) -> float:
        return processed_frames(frames, window) * per_frame

    frames = frames_at(fps)
    total = seconds(frames)
    result = Estimate(total, frames, expressions, device, per_frame)
    if not result.too_long:
        return result
    fps_fit = fps_seconds = None
    current = fps or source_fps
    for rate in FPS_STEPS:
        if rate < current and seconds(frames_at(rate)) <= CPU_BUDGET_S:
            fps_fit, fps_seconds = float(rate), seconds(frames_at(rate))
            break
    lo, hi = 0, frames  # the largest cap that fits: seconds() grows with the frame count
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if seconds(mid) <= CPU_BUDGET_S else (lo, mid - 1)
    frames_fit = lo if lo >= 1 else None
    return Estimate(total, frames, expressions, device, per_frame, fps_fit, fps_seconds,
                    frames_fit, None if frames_fit is None else seconds(frames_fit))


def format_seconds(seconds: float | None) -> str:
    """``"45 s"``, ``"2 min 10 s"``, ``"1 h 5 min"``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{max(s, 1)} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"
