"""Exports for slides and papers, drawn from stored results (the model never runs again).

* `write_figure` → ``figure.png`` and ``figure.pdf``: the qualitative figure of a paper — one row
  per expression, ``columns`` evenly spaced frames (default 5), each expression's mask in its
  colour with its sentence as the row caption, 2000 px wide (17 cm at 300 dpi). The PDF holds the
  same raster at 300 dpi (Pillow's PDF writer: a JPEG at quality 95 without chroma subsampling,
  visually lossless; no extra dependency for vector output).
* `write_gif` → ``overlay.gif``: the overlay with the expressions as captions, for slide decks
  that cannot play MP4; at most `GIF_MAX_MB` (10 MB): frames are at most 480 px wide, and a GIF
  that would be larger keeps every second frame (then every fourth), then shrinks.
* `write_side_by_side` / `compare_frame`: two (or more) models' overlays of the same clip next to
  each other, frame by frame, as one H.264 video: synchronised by construction.

Frames come from ``frames``: a sequence (an array ``[T, H, W, 3]``, `rvos.app.session.FrameStore`)
or an iterable in order; by default they are decoded again from the result's source video.
"""

from __future__ import annotations

import io
import itertools
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from rvos.errors import RvosError
from rvos.media.probe import partial_path
from rvos.media.video import VideoWriter
from rvos.result.video_result import VideoResult
from rvos.viz.draw import caption_strip, compose_overlay_frame
from rvos.viz.figures import paper_figure, side_by_side

__all__ = [
    "MAX_FIGURE_COLUMNS",
    "ExportError",
    "check_columns",
    "FIGURE_COLUMNS",
    "FIGURE_DPI",
    "FIGURE_WIDTH",
    "GIF_MAX_MB",
    "GIF_MAX_WIDTH",
    "compare_frame",
    "figure_frames",
    "render_figure",
    "write_figure",
    "write_gif",
    "write_side_by_side",
]

FIGURE_COLUMNS = 5
FIGURE_WIDTH = 2000  # pixels; the issue asks for at least 1200 ("print resolution")
FIGURE_DPI = 300
GIF_MAX_MB = 10.0
GIF_MAX_WIDTH = 480
# Browsers play GIF frames shorter than 20 ms at 100 ms, so faster videos drop frames instead.
_GIF_MIN_FRAME_MS = 20
MAX_FIGURE_COLUMNS = 12
_GIF_MIN_WIDTH = 120

Frames = Sequence[np.ndarray] | Iterable[np.ndarray] | None


class ExportError(RvosError, ValueError):
    """An export that cannot be made as asked; the message says what to change."""


def check_columns(columns: object) -> int:
    """``columns`` as the number of frames of a figure, or an `ExportError`: 1 to
    `MAX_FIGURE_COLUMNS` (more would leave each frame a sliver of the page)."""
    try:
        value = int(columns)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = None
    if value is None or value != columns:  # 5.0 from a number field is 5; 5.5 and "5" are not
        raise ExportError(f"frames in the figure must be a whole number, got {columns!r}")
    if not 1 <= value <= MAX_FIGURE_COLUMNS:
        raise ExportError(f"frames in the figure must be between 1 and {MAX_FIGURE_COLUMNS}, "
                          f"got {value}")
    return value


def figure_frames(num_frames: int, columns: int = FIGURE_COLUMNS) -> list[int]:
    """Frame indices of the figure's columns: ``columns`` evenly spaced frames from the first to
    the last (all frames when the clip has fewer)."""
    if columns < 1:
        raise ExportError(f"the figure needs at least one column, got {columns}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_frames <= columns:
        return list(range(num_frames))
    if columns == 1:
        return [(num_frames - 1) // 2]
    return [round(j * (num_frames - 1) / (columns - 1)) for j in range(columns)]


def _source(result: VideoResult, frames: Frames) -> Sequence[np.ndarray] | Iterable[np.ndarray]:
    return result.iter_source_frames() if frames is None else frames


def _frames_at(result: VideoResult, frames: Frames, indices: Sequence[int]) -> list[np.ndarray]:
    """The frames at ``indices`` (ascending), random access when ``frames`` allows it."""
    source = _source(result, frames)
    if hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        return [np.asarray(source[i]) for i in indices]  # type: ignore[index]
    wanted, picked = set(indices), {}
    iterator = iter(source)
    try:
        for t, frame in enumerate(iterator):
            if t in wanted:
                picked[t] = frame
            if t >= max(indices):
                break
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # stop the ffmpeg reader behind a generator
    missing = [i for i in indices if i not in picked]
    if missing:
        raise ValueError(f"the frames ended before frame {missing[0]}")
    return [picked[i] for i in indices]


def render_figure(result: VideoResult, frames: Frames = None, *, columns: int = FIGURE_COLUMNS,
                  width: int = FIGURE_WIDTH, threshold: float | None = None) -> np.ndarray:
    """uint8 ``[H, width, 3]``: the paper-style grid (`rvos.viz.figures.paper_figure`) of
    ``result``; the columns are `figure_frames`, labelled with their index and time."""
    if width < 1200:
        raise ExportError(f"a print figure should be at least 1200 px wide, got {width}")
    indices = figure_frames(result.num_frames, columns)
    images = _frames_at(result, frames, indices)
    # Every object of an expression (objects="all") in the expression's colour.
    masks = [[e.union_mask(t, threshold) for t in indices] for e in result]
    # Frames counted from 1, as people count them; the time from the first frame's 0 s.
    labels = [f"frame {t + 1} · {result.frame_time(t):.2f} s" for t in indices]
    return paper_figure(images, masks, [e.text for e in result],
                                  column_labels=labels, width=width)


def write_figure(result: VideoResult, out_dir: str | os.PathLike, frames: Frames = None, *,
                 columns: int = FIGURE_COLUMNS, width: int = FIGURE_WIDTH,
                 threshold: float | None = None) -> dict[str, Path]:
    """Write ``figure.png`` and ``figure.pdf`` (the same image, at `FIGURE_DPI`) into
    ``out_dir``; returns their paths as ``figure_png`` / ``figure_pdf``."""
    image = Image.fromarray(render_figure(result, frames, columns=columns, width=width,
                                          threshold=threshold))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, pdf = out / "figure.png", out / "figure.pdf"
    # Temporary names, renamed when complete: an interrupted export leaves no half file.
    png_tmp, pdf_tmp = partial_path(png), partial_path(pdf)
    try:
        image.save(png_tmp, "PNG", dpi=(FIGURE_DPI, FIGURE_DPI))
        image.save(pdf_tmp, "PDF", resolution=float(FIGURE_DPI), quality=95, subsampling=0,
                   title="rvos: " + " / ".join(e.text for e in result))
        os.replace(png_tmp, png)
        os.replace(pdf_tmp, pdf)
    finally:
        png_tmp.unlink(missing_ok=True)
        pdf_tmp.unlink(missing_ok=True)
    return {"figure_png": png, "figure_pdf": pdf}


def _gif_frame(result: VideoResult, t: int, frame: np.ndarray, threshold: float | None,
               max_width: int) -> np.ndarray:
    masks = [e.union_mask(t, threshold) for e in result]
    image = compose_overlay_frame(frame, masks, [e.text for e in result])
    h, w = image.shape[:2]
    if w > max_width:
        image = cv2.resize(image, (max_width, max(1, round(h * max_width / w))),
                           interpolation=cv2.INTER_AREA)
    return image


def _gif_durations(count: int, frame_ms: float) -> list[int]:
    """Milliseconds per frame in the GIF's 10 ms steps, chosen so that frame i starts at
    ``i * frame_ms`` rounded: the GIF keeps the video's pace and length (8 fps: 120, 130, 120,
    130, … rather than 120 throughout)."""
    starts = [10 * round(i * frame_ms / 10) for i in range(count + 1)]
    return [max(10, b - a) for a, b in itertools.pairwise(starts)]


def _encode_gif(images: Sequence[np.ndarray], frame_ms: float) -> bytes:
    pil = [Image.fromarray(i).quantize(256, method=Image.Quantize.MEDIANCUT,
                                       dither=Image.Dither.NONE) for i in images]
    buffer = io.BytesIO()
    pil[0].save(buffer, "GIF", save_all=True, append_images=pil[1:],
                duration=_gif_durations(len(pil), frame_ms), loop=0, disposal=1)
    return buffer.getvalue()


def write_gif(result: VideoResult, path: str | os.PathLike, frames: Frames = None, *,
              max_width: int = GIF_MAX_WIDTH, max_mb: float = GIF_MAX_MB,
              threshold: float | None = None) -> Path:
    """Write the overlay (masks and the expressions as captions) as an animated, looping GIF.

    Every frame is kept at the video's rate when it fits: frames at most ``max_width`` pixels
    wide, 256 colours each. A GIF over ``max_mb`` keeps every second frame (each shown twice as
    long, so it still lasts as long as the video), then every fourth, then shrinks by 3/4 until
    it fits. Frames shorter than 20 ms (videos over 50 fps) are subsampled the same way, since
    browsers slow such frames down to 100 ms. Pillow merges a frame identical to the one before
    into it (their durations add).
    """
    if max_mb <= 0:
        raise ValueError(f"max_mb must be positive, got {max_mb}")
    images = [_gif_frame(result, t, frame, threshold, max_width)
              for t, frame in enumerate(_source(result, frames))]
    if len(images) != result.num_frames:
        raise ValueError(f"got {len(images)} frames, the result has {result.num_frames}")
    frame_ms = 1000.0 / result.source.fps
    step = 1
    while frame_ms * step < _GIF_MIN_FRAME_MS:
        step *= 2
    width = images[0].shape[1]
    while True:
        chosen = images[::step]
        if width != images[0].shape[1]:
            h, w = images[0].shape[:2]
            size = (width, max(1, round(h * width / w)))
            chosen = [cv2.resize(i, size, interpolation=cv2.INTER_AREA) for i in chosen]
        data = _encode_gif(chosen, frame_ms * step)
        if len(data) <= max_mb * 1e6:
            break
        if step < 4 and len(images) > step:
            step *= 2
        elif width > _GIF_MIN_WIDTH:
            width = max(_GIF_MIN_WIDTH, math.floor(width * 0.75))
        else:
            raise ExportError(f"cannot fit a {len(images)}-frame GIF in {max_mb:g} MB; "
                              "shorten the clip (--max-frames) or lower its rate (--fps)")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(out)  # renamed when complete: never a truncated GIF under its name
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def compare_frame(results: Sequence[VideoResult], titles: Sequence[str], t: int,
                  frame: np.ndarray, *, max_panel_width: int = 640,
                  thresholds: Sequence[float | None] | None = None) -> np.ndarray:
    """uint8 image: frame ``t`` with each result's masks, the panels side by side under their
    titles, the expressions (in their colours) in a strip below. Even width and height."""
    if len(results) != len(titles):
        raise ValueError(f"need one title per result, got {len(results)} and {len(titles)}")
    thresholds = thresholds or [None] * len(results)
    h, w = frame.shape[:2]
    scale = min(1.0, max_panel_width / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    panels = []
    for result, threshold in zip(results, thresholds, strict=True):
        overlay = result.render_overlay(t, frame, threshold=threshold)
        if scale < 1:
            overlay = cv2.resize(overlay, size, interpolation=cv2.INTER_AREA)
        panels.append(overlay)
    image = side_by_side(panels, titles)
    strip = caption_strip(image.shape[1], [e.text for e in results[0]])
    if strip.shape[0] % 2:
        strip = np.concatenate([strip, strip[-1:]], axis=0)
    return np.concatenate([image, strip], axis=0)


def write_side_by_side(results: Sequence[VideoResult], titles: Sequence[str],
                       path: str | os.PathLike, frames: Frames = None, *,
                       max_panel_width: int = 640,
                       thresholds: Sequence[float | None] | None = None) -> Path:
    """Write `compare_frame` of every frame as one H.264 video at the results' frame rate.

    The results must cover the same frames of the same video (the same clip, fps and frame
    limit through different models); ``frames`` default to the first result's source."""
    if not results:
        raise ValueError("no result to compare")
    first = results[0]
    for r in results[1:]:
        if r.num_frames != first.num_frames or r.source.size != first.source.size or (
                [e.text for e in r] != [e.text for e in first]):
            raise ValueError("the results to compare must cover the same frames and "
                             "expressions of the same video")
    out = Path(path)
    with VideoWriter(out, first.source.frame_rate) as writer:
        for t, frame in enumerate(_source(first, frames)):
            if t >= first.num_frames:
                break
            writer.write(compare_frame(results, titles, t, frame,
                                       max_panel_width=max_panel_width, thresholds=thresholds))
    return out
