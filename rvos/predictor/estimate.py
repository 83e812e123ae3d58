"""How long a run will take, from costs measured on this machine, and what fits.

A run's time has two parts. The model's: the backbone once per frame of every window, and the
rest of the network once per frame, window and expression (`rvos.predictor.predictor` decodes each
expression alone), at the model's input size. Both costs are measured on the device itself — an
eight-frame pass at the run's input size the first time a (model, device, precision) is asked
about, after a warm-up pass that is not timed (a cold first pass, with its kernel selection and
allocations, read up to 5× too slow) — then refined by every finished run, and scaled with the
input's pixel count for other sizes. Windows overlap, so the frames the model sees are counted
from `rvos.predictor.windows.plan_windows`.

And reading and writing the video at the *source's* size, which the model's input size says
nothing about: decoding every frame, drawing and encoding the overlay, each expression's mask
upsampled and saved as PNG. On a 3-s 4K clip that is most of the run. Its cost per source pixel
(`IOSpeed`) is measured once per process with a small timed decode + encode + PNG pass through
`rvos.media.video` (after an untimed warm-up), and refined by every finished run's wall time.

On a CPU a run longer than `CPU_BUDGET_S` gets two offers that fit: a lower processing frame rate
or fewer frames.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from rvos.media.labels import write_label_png
from rvos.media.video import VideoWriter, iter_frames
from rvos.predictor.windows import default_overlap, plan_windows

__all__ = ["CPU_BUDGET_S", "Estimate", "IOSpeed", "Speed", "SpeedBook", "estimate",
           "format_seconds", "measure_io", "processed_frames"]

CPU_BUDGET_S = 120.0
# Processing rates offered when a run is too long, highest first.
FPS_STEPS = (30, 25, 20, 15, 12, 10, 8, 6, 5, 4, 3, 2, 1, 0.5)


# Frames of the pass that measures a model's `Speed` (see `SpeedBook.measure`).
MEASURE_FRAMES = 8
# Seconds a run spends whatever its size: ffmpeg processes starting, result.json, the zip.
FIXED_S = 0.5
# The pass that measures `IOSpeed`: frames of this (height, width).
IO_PROBE_SIZE = (360, 640)
IO_PROBE_FRAMES = 8


@dataclass(frozen=True)
class IOSpeed:
    """Seconds per source pixel of one frame: reading and writing it (``frame_s``: decoding,
    the overlay's drawing and encoding) and, per expression, its mask (``mask_s``: upsampled to
    the source size and saved as PNG)."""

    frame_s: float
    mask_s: float
    fixed_s: float = FIXED_S

    def seconds(self, frames: int, source_pixels: int, expressions: int) -> float:
        """Time to read and write ``frames`` frames of ``source_pixels`` pixels each."""
        if frames <= 0:
            return 0.0
        return self.fixed_s + frames * source_pixels * (self.frame_s
                                                        + max(expressions, 1) * self.mask_s)


def _io_probe_frames() -> list:
    """`IO_PROBE_FRAMES` frames with texture and motion (flat frames encode unrealistically
    fast)."""
    h, w = IO_PROBE_SIZE
    y, x = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(0).integers(0, 16, (h, w, 3), dtype=np.uint8)
    frames = []
    for t in range(IO_PROBE_FRAMES):
        checker = ((x // 16 + y // 16 + t) % 2) * 160
        frame = np.stack([(x + 6 * t) % 256, (2 * y + 3 * t) % 256, checker], -1)
        frames.append((frame.astype(np.uint8) + noise).astype(np.uint8))
    return frames


def measure_io() -> IOSpeed:
    """Time decoding, encoding and mask writing of a small clip (`IO_PROBE_SIZE`) through
    `rvos.media.video`, per pixel; a first, untimed pass warms up ffmpeg and the page cache."""
    frames = _io_probe_frames()
    h, w = IO_PROBE_SIZE
    pixels = len(frames) * h * w
    with tempfile.TemporaryDirectory(prefix="rvos-io-") as tmp:
        folder = Path(tmp)
        source = folder / "source.mp4"
        with VideoWriter(source, 25) as writer:
            for frame in frames:
                writer.write(frame)
        best = None
        for attempt in range(2):  # the first pass is the warm-up
            start = time.perf_counter()
            decoded = list(iter_frames(source))
            with VideoWriter(folder / f"out{attempt}.mp4", 25) as writer:
                for frame in decoded:
                    writer.write(frame)
            middle = time.perf_counter()
            for t in range(len(decoded)):
                low = np.full((h // 16, w // 16), float(t % 2), np.float32)
                low[: h // 32] = 1 - low[0, 0]
                mask = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
                write_label_png(folder / f"{attempt}-{t}.png", mask.astype(np.uint8))
            end = time.perf_counter()
            if attempt:
                best = IOSpeed((middle - start) / pixels, (end - middle) / pixels)
    assert best is not None
    return best


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
        self._io: IOSpeed | None = None
        self._lock = threading.Lock()

    def io(self) -> IOSpeed:
        """The cost of reading and writing video on this machine (`measure_io` the first
        time, then refined by `record_io`)."""
        with self._lock:
            if self._io is None:
                self._io = measure_io()
            return self._io

    def record_io(self, frames: int, source_pixels: int, expressions: int,
                  seconds: float) -> None:
        """A finished run spent ``seconds`` on reading and writing ``frames`` frames of
        ``source_pixels`` pixels (its wall time less the model's); rescale `io` to it."""
        if frames <= 0 or source_pixels <= 0 or seconds <= 0:
            return
        with self._lock:
            old = self._io
            if old is None:
                return  # nothing to split it by yet; the next estimate measures
            spent = max(seconds - old.fixed_s, 0.05 * seconds)
            factor = spent / (old.seconds(frames, source_pixels, expressions) - old.fixed_s)
            self._io = IOSpeed(old.frame_s * factor, old.mask_s * factor, old.fixed_s)

    def get(self, key: str, device: str, precision: str, pixels: int) -> Speed | None:
        """The speed on record, if it was measured at a comparable size (within 2×)."""
        speed = self._speeds.get((key, device, precision))
        if speed is None or not 0.5 <= pixels / speed.pixels <= 2.0:
            return None
        return speed

    def measure(self, model: torch.nn.Module, key: str, device: str, precision: str,
                input_size: tuple[int, int], frames: int = MEASURE_FRAMES) -> Speed:
        """Time a pass of ``model`` over ``frames`` frames at ``input_size`` (h, w) and keep
        it. An untimed two-frame pass comes first: the first pass of a model at a size picks
        kernels and allocates (cuDNN, oneDNN), which made a cold measurement several times too
        slow. Per frame, a pass of a few frames costs several times what a run's windows do
        (measured on a 2-core CPU: 2.6 s a frame over 2 frames, 0.3 s over 8 or 16), hence
        ``frames``: a run's window is 36 by default."""
        h, w = input_size
        seed = torch.Generator().manual_seed(0)
        clip = torch.randn(max(frames, 1), 3, h, w, generator=seed).to(device)
        with self._lock, torch.inference_mode():  # one measurement at a time: they compete
            sync = torch.cuda.synchronize if clip.is_cuda else (lambda: None)
            model.decode(model.encode_video(clip[:2]), ["the object"])  # warm-up, not timed
            sync()
            n, speed = clip.shape[0], None
            # The faster of two passes: a busy machine (other processes, a run of another
            # visitor) slows one pass at random, and the estimate should not inherit that.
            for _ in range(2):
                start = time.perf_counter()
                features = model.encode_video(clip)
                sync()
                middle = time.perf_counter()
                model.decode(features, ["the object"])
                sync()
                end = time.perf_counter()
                del features
                this = Speed((middle - start) / n, (end - middle) / n, h * w)
                if speed is None or this.per_frame(h * w, 1) < speed.per_frame(h * w, 1):
                    speed = this
            assert speed is not None
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
    """A run's expected time, and on a CPU what would bring it under `CPU_BUDGET_S`.

    ``model_s`` + ``io_s`` = ``seconds``: the model's part, and reading and writing the video
    at ``source_size`` (h, w). ``note``: a remark to show with it (e.g. the run would be refused
    as it is, and why)."""

    seconds: float
    frames: int
    expressions: int
    device: str
    per_frame_s: float
    fps_fit: float | None = None  # a processing rate whose run fits the budget
    fps_fit_seconds: float | None = None
    frames_fit: int | None = None  # a frame cap whose run fits the budget
    frames_fit_seconds: float | None = None
    model_s: float | None = None
    io_s: float = 0.0
    source_size: tuple[int, int] | None = None
    note: str = ""

    @property
    def too_long(self) -> bool:
        return self.device == "cpu" and self.seconds > CPU_BUDGET_S

    def text(self) -> str:
        """Markdown for the page."""
        what = (f"{self.frames} frame{'s' if self.frames != 1 else ''} × {self.expressions} "
                f"expression{'s' if self.expressions != 1 else ''}")
        if self.source_size is not None and self.model_s is not None:
            h, w = self.source_size
            what += (f": the model {format_seconds(self.model_s)} as measured on "
                     f"{self.device}, reading and writing the {w}×{h} video "
                     f"{format_seconds(self.io_s)}")
        else:
            what += f", {self.per_frame_s:.2g} s a frame as measured on {self.device}"
        line = f"**Estimated time: {format_seconds(self.seconds)}** ({what})."
        if self.note:
            line += f" {self.note}"
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
             source_fps: float, io: IOSpeed | None = None,
             source_size: tuple[int, int] | None = None, note: str = "") -> Estimate:
    """The time of a run, and what fits.

    Arguments:
        speed: the model's measured `Speed` on ``device``.
        pixels: model input pixels of the run (after its resize).
        frames_at: the number of frames processed at a processing rate (None: every frame),
            the frame cap included.
        fps / window: the run's processing rate and window.
        source_fps: the video's own rate (offers stay below it).
        io / source_size: the cost of reading and writing video, and the source's (h, w):
            that part of the run scales with the source's pixels, not the model's input.
        note: passed on to the `Estimate`.
    """
    per_frame = speed.per_frame(pixels, max(expressions, 1))
    source_pixels = 0 if source_size is None else source_size[0] * source_size[1]

    def parts(frames: int) -> tuple[float, float]:
        model = processed_frames(frames, window) * per_frame
        rw = 0.0 if io is None else io.seconds(frames, source_pixels, expressions)
        return model, rw

    def seconds(frames: int) -> float:
        return sum(parts(frames))

    frames = frames_at(fps)
    model_s, io_s = parts(frames)
    common = {"model_s": model_s, "io_s": io_s,
              "source_size": source_size if io is not None else None, "note": note}
    result = Estimate(model_s + io_s, frames, expressions, device, per_frame, **common)
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
    return Estimate(model_s + io_s, frames, expressions, device, per_frame, fps_fit,
                    fps_seconds, frames_fit, None if frames_fit is None else seconds(frames_fit),
                    **common)


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
