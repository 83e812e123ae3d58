"""Writing a run's outputs (overlay, masks, zip, result.json) while the model runs."""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from rvos.media.labels import label_png_bytes
from rvos.media.probe import PARTIAL_GLOB, partial_path
from rvos.media.video import VideoWriter, iter_frames
from rvos.result.records import SourceInfo
from rvos.result.result_json import write_json
from rvos.result.video_result import VideoResult, _file_name
from rvos.viz.colors import object_color, palette
from rvos.viz.draw import overlay_masks

__all__ = ["OUTPUT_NAMES", "remove_outputs", "write_outputs"]


# Every file and folder a run writes into its output folder (`write_outputs`, and the slide
# exports of `rvos.result.exports`); `remove_outputs` deletes them.
OUTPUT_NAMES = ("overlay.mp4", "masks", "masks.zip", "result.json", "figure.png", "figure.pdf",
                "overlay.gif")


def remove_outputs(out_dir: str | os.PathLike) -> list[Path]:
    """Delete what an earlier run wrote into ``out_dir`` (`OUTPUT_NAMES`, and the temporary
    ``.*.partial-*`` files of a run that was killed), so that the folder never mixes two runs'
    files; anything else in the folder is left alone. Returns what was removed."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    removed = []
    for path in [*(out / n for n in OUTPUT_NAMES), *out.glob(PARTIAL_GLOB)]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


class OutputWriter:
    """Writes a prediction's files *while it runs*: ``overlay.mp4`` and ``masks/<k>/<t>.png``
    (with ``masks.zip``) frame by frame in a background thread, ``result.json`` at the end.

    The predictor calls `frames_ready` after every window; the thread renders every frame
    whose masks are final and hands it to the H.264 encoder (another process). So drawing, PNG
    compression and encoding overlap the model instead of following it; on a long video they
    used to take as long again after the prediction had finished. The source frames come from
    the predictor's own reader when it hands them over (`push_frame`, with ``pushed``: small
    frames, so that the ones waiting for their masks stay a few hundred MB at most), else from
    a reader of this thread's own (as `VideoResult.iter_source_frames` reads them).

    Arguments:
        out_dir: output folder (created).
        source: the `SourceInfo` of the processed frames.
        num_expressions: how many masks each frame has.
        frames: uint8 ``[T, H0, W0, 3]`` when the result is computed on an array (a file is
            re-read from ``source.path``, or from ``video_path``).
        pushed: the frames will come through `push_frame`, in order.
        overlay / masks: write the overlay video / the mask PNGs and zip.
    """

    _END = object()

    def __init__(self, out_dir: str | os.PathLike, source: SourceInfo, num_expressions: int, *,
                 video_path: str | os.PathLike | None = None, frames: np.ndarray | None = None,
                 pushed: bool = False, overlay: bool = True, masks: bool = True) -> None:
        self.out = Path(out_dir)
        self.source = source
        self.num_expressions = num_expressions
        self.overlay, self.masks = overlay, masks
        self._video = frames if frames is not None else (video_path or source.path)
        self._pushed: queue.SimpleQueue | None = queue.SimpleQueue() if pushed else None
        if overlay and self._video is None and not pushed:
            raise ValueError("this result was computed on in-memory frames, not a file: pass "
                             "them as a uint8 [T, H, W, 3] array (write_outputs(..., frames=))")
        self._audio = self._video if (frames is None and source.has_audio) else None
        self._ready = 0  # frames whose masks are final
        self._total: int | None = None  # known at finish
        self._mask_of: Callable[[int], list[np.ndarray]] | None = None
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._stop = False
        self.seconds = 0.0  # the writing thread's busy time
        self.out.mkdir(parents=True, exist_ok=True)
        # Everything is written under temporary names (`rvos.media.probe.partial_path`) and renamed
        # into place by `finish`; `abort` deletes them. So ``masks/``, ``masks.zip`` and
        # ``result.json`` are complete or absent (the overlay: `VideoWriter` does the same).

        self._mask_dir = self.out / "masks"
        self._mask_tmp = partial_path(self._mask_dir)
        self._zip_tmp = partial_path(self.out / "masks.zip")
        self._placed: list[Path] = []  # final names this writer has put in place
        self._thread = threading.Thread(target=self._run, name="rvos-outputs", daemon=True)
        self._thread.start()

    @property
    def pushes(self) -> bool:
        """Whether the frames come through `push_frame`."""
        return self._pushed is not None

    def push_frame(self, frame: np.ndarray) -> None:
        """The next source frame (uint8 ``[H0, W0, 3]``), with ``pushed``."""
        assert self._pushed is not None, "push_frame needs OutputWriter(..., pushed=True)"
        self._pushed.put(frame)

    def frames_ready(self, count: int, mask_of: Callable[[int], list[np.ndarray]]) -> None:
        """Frames ``[0, count)`` are final; ``mask_of(t)`` gives frame t's masks ``[H0, W0]``,
        one per expression (called from the writing thread): bool, or a uint8 label map of
        several objects (`VideoResult` ``frame_mask``)."""
        with self._cond:
            self._raise_if_failed()
            self._mask_of = mask_of
            self._ready = max(self._ready, count)
            self._cond.notify_all()

    def finish(self, result: VideoResult) -> dict[str, Path]:
        """Write the rest, wait for the thread, then ``result.json``; paths by name
        (``overlay``, ``masks``, ``masks_zip``, ``result``)."""
        started = time.perf_counter()
        with self._cond:
            self._mask_of = self._mask_of or (lambda t: [e.frame_mask(t) for e in result])
            self._ready = self._total = result.num_frames
            self._cond.notify_all()
        if self._pushed is not None:
            self._pushed.put(self._END)  # no frame follows
        self._thread.join()
        self._raise_if_failed()
        paths: dict[str, Path] = {}
        if self.overlay:
            paths["overlay"] = self.out / "overlay.mp4"
            self._placed.append(paths["overlay"])
        if self.masks:
            paths["masks"] = self._mask_dir
            paths["masks_zip"] = self.out / "masks.zip"
            if self._mask_dir.is_dir() and not self._mask_dir.is_symlink():
                shutil.rmtree(self._mask_dir)  # an earlier, longer run's frames must not stay
            self._mask_tmp.mkdir(exist_ok=True)  # (a run of zero frames wrote none)
            os.replace(self._mask_tmp, self._mask_dir)
            self._placed.append(self._mask_dir)
            if not self._zip_tmp.exists():
                zipfile.ZipFile(self._zip_tmp, "w").close()
            os.replace(self._zip_tmp, paths["masks_zip"])
            self._placed.append(paths["masks_zip"])
        doc = result.to_json()
        # What writing cost beyond the prediction: the thread's time left after it ended.
        doc["timings"]["write_s"] = round(time.perf_counter() - started, 4)
        doc["outputs"] = {k: v.relative_to(self.out).as_posix() for k, v in paths.items()}
        self._placed.append(self.out / "result.json")
        paths["result"] = write_json(self.out / "result.json", doc)
        self._placed.clear()  # complete: abort() no longer removes anything
        return paths

    def abort(self) -> None:
        """Stop writing (the prediction was cancelled, failed or was interrupted) and delete
        what this writer wrote: its temporary files, and any output it had already renamed into
        place when `finish` was interrupted. Safe to call more than once."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._pushed is not None:
            self._pushed.put(self._END)  # a thread waiting for a frame wakes up
        self._thread.join()
        for path in (self._mask_tmp, self._zip_tmp, *self._placed):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        self._placed.clear()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _wait_for(self, t: int) -> bool:
        """Block until frame t is final; False when the run ended before it (or stopped)."""
        with self._cond:
            while not self._stop and t >= self._ready and (self._total is None
                                                          or t < self._total):
                self._cond.wait()
            return not self._stop and t < self._ready

    def _run(self) -> None:
        colors = palette(self.num_expressions)
        writer = zipped = frames = None
        try:
            if not self._wait_for(0):
                return
            if self.masks:
                zipped = zipfile.ZipFile(self._zip_tmp, "w",
                                         compression=zipfile.ZIP_STORED)  # PNGs are compressed
                for k in range(self.num_expressions):
                    (self._mask_tmp / str(k)).mkdir(parents=True, exist_ok=True)
            if self.overlay:
                writer = VideoWriter(self.out / "overlay.mp4", self.source.frame_rate,
                                     audio_from=self._audio)
            frames = self._frames() if self.overlay else itertools.repeat(None)
            t = 0  # the frame being written
            for frame in frames:
                if not self._wait_for(t):
                    break
                busy = time.perf_counter()
                masks = self._mask_of(t)
                if zipped is not None:
                    for k, mask in enumerate(masks):
                        name = f"{k}/{t:05d}.png"
                        data = label_png_bytes(mask.astype(np.uint8))
                        (self._mask_tmp / name).write_bytes(data)
                        zipped.writestr(name, data)
                if writer is not None:
                    writer.write(_overlay(frame, masks, colors))
                self.seconds += time.perf_counter() - busy
                t += 1
            if self._stop:
                return
            if self._total is not None and t < self._total:
                raise ValueError(f"{_file_name(self._video)} gave {t} frames, the result "
                                 f"has {self._total}")
            if writer is not None:
                writer.close()
                writer = None
        except BaseException as err:  # handed to the predictor's thread
            self._error = err
        finally:
            if frames is not None:
                getattr(frames, "close", lambda: None)()  # ends the ffmpeg reader
            if writer is not None:
                writer.abort()
            if zipped is not None:
                zipped.close()

    def _frames(self) -> Iterator[np.ndarray]:
        if self._pushed is not None:
            while (frame := self._pushed.get()) is not self._END:
                yield frame
            return
        if isinstance(self._video, np.ndarray):
            yield from self._video
            return

        for frame in iter_frames(self._video, fps=self.source.sample_fps,
                                 max_frames=self.source.max_frames):
            if frame.shape[:2] != self.source.size:
                raise ValueError(f"{_file_name(self._video)} has frames of "
                                 f"{frame.shape[:2]}, the result {self.source.size}: not the "
                                 "video it was computed on")
            yield frame


def _overlay(frame: np.ndarray, masks: list[np.ndarray], colors: list) -> np.ndarray:
    """The overlay of one frame: expression k's bool mask in ``colors[k]``, or, for a label
    map of several objects (``objects="all"``), each object in its own colour
    (`rvos.viz.colors.object_color`), the chosen query's on top."""
    if all(m.dtype == bool for m in masks):
        return overlay_masks(frame, masks, colors=colors, alpha=0.5)
    layers, layer_colors = [], []
    for k, m in enumerate(masks):
        if m.dtype == bool:
            layers.append(m)
            layer_colors.append(colors[k])
            continue
        for j in range(int(m.max()) - 1, -1, -1):
            layers.append(m == j + 1)
            layer_colors.append(object_color(k, j, len(masks)))
    return overlay_masks(frame, layers, colors=layer_colors, alpha=0.5)


def write_outputs(result: VideoResult, out_dir: str | os.PathLike, *,
                  video_path: str | os.PathLike | None = None,
                  frames: np.ndarray | None = None, overlay: bool = True,
                  masks: bool = True) -> dict[str, Path]:
    """Write ``overlay.mp4``, ``masks/<k>/<frame:05d>.png``, ``masks.zip`` and ``result.json``.

    Arguments:
        result: a `VideoResult`.
        out_dir: output folder (created).
        video_path: the source video, to read frames and copy audio from (default: the path the
            result was computed on).
        frames: uint8 ``[T, H0, W0, 3]`` instead of a file, for results computed on an array.
        overlay / masks: write the overlay video / the mask PNGs and zip.
    Returns:
        paths by name: ``overlay``, ``masks``, ``masks_zip``, ``result``.

    The overlay is H.264 yuv420p at the processed frame rate and size (odd sizes padded by one
    pixel), with the source's audio when it has one. (`Predictor.predict(..., out_dir=)` writes
    the same files while it predicts.)
    """
    if frames is not None and (frames.shape[0] < result.num_frames
                               or frames.shape[1:3] != result.source.size):
        raise ValueError(f"frames of shape {frames.shape} do not match the result "
                         f"({result.num_frames} frames of {result.source.size})")
    writer = OutputWriter(out_dir, result.source, len(result), video_path=video_path,
                          frames=frames, overlay=overlay, masks=masks)
    try:
        return writer.finish(result)
    except BaseException:
        writer.abort()  # no partial file stays behind
        raise
