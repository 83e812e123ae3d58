"""Video sources for the predictor: files, arrays and frame streams, decoded a window ahead."""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from rvos.errors import PredictorError
from rvos.media.probe import check_video_file
from rvos.media.video import iter_frames
from rvos.result.records import SourceInfo

ARRAY_FPS = 30.0  # frame rate assumed for an in-memory array when none is given


# A video file, uint8 frames [T, H, W, 3], or an iterable of uint8 [H, W, 3] frames.
VideoInput = str | os.PathLike | np.ndarray | Iterable[np.ndarray]


@dataclass
class _Source:
    frames: Iterator[np.ndarray]
    info: SourceInfo  # num_frames is replaced by the true count at the end
    estimate: int | None  # expected number of frames, None if unknown


class _Prefetch(Iterator[np.ndarray]):
    """``transform(i, item)`` of every item of ``items``, computed by a background thread up to
    ``ahead`` items before they are asked for.

    Video frames come from an ffmpeg process; reading its pipe, checking and resizing each
    frame (PIL, which releases the GIL) then run while the model works on the previous window
    instead of between windows. Errors of the source or the transform are raised in the
    consumer, at the item where they happened. `close` stops the thread and closes ``items``
    (from that thread, the only one that ever iterates it), so no ffmpeg is left running.
    """

    _END = object()

    def __init__(self, items: Iterable[np.ndarray],
                 transform: Callable[[int, np.ndarray], np.ndarray], ahead: int) -> None:
        self._items = items
        self._transform = transform
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, ahead))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rvos-frames", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for i, item in enumerate(self._items):
                out = self._transform(i, item)
                while not self._stop.is_set():
                    try:
                        self._queue.put((out, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._queue.put((self._END, None))
        except BaseException as err:  # raised again in the consumer
            self._queue.put((self._END, err))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def __next__(self) -> np.ndarray:
        if self._stop.is_set():
            raise StopIteration
        out, err = self._queue.get()
        if out is self._END:
            self._stop.set()
            if err is not None:
                raise err
            raise StopIteration
        return out

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):  # unblock a put waiting for room
                self._queue.get(timeout=0.05)
        self._thread.join()


def _with_last(items: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, bool]]:
    """Pairs (item, is_last): the stream end must be known when the last window is cut."""
    it = iter(items)
    try:
        prev = next(it)
    except StopIteration:
        return
    for item in it:
        yield prev, False
        prev = item
    yield prev, True


def _open_source(video: VideoInput, fps: float | None, max_frames: int | None) -> _Source:
    if isinstance(video, np.ndarray):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise PredictorError(f"frames must be uint8 RGB [T, H, W, 3], got {video.dtype} "
                                 f"{video.shape}")
        if video.shape[0] == 0 or video.shape[1] == 0 or video.shape[2] == 0:
            raise PredictorError(f"the frame array is empty: shape {video.shape}")
        rate = float(fps) if fps is not None else ARRAY_FPS
        frames = video if max_frames is None else video[:max_frames]
        info = SourceInfo(path=None, width=int(video.shape[2]), height=int(video.shape[1]),
                          fps=rate, frame_rate=Fraction(rate).limit_denominator(1001),
                          num_frames=int(frames.shape[0]), source_fps=rate,
                          source_num_frames=int(video.shape[0]))
        return _Source(iter(frames), info, int(frames.shape[0]))
    if isinstance(video, Iterable) and not isinstance(video, (str, bytes, os.PathLike)):
        return _open_stream(iter(video), fps, max_frames)
    if not isinstance(video, (str, os.PathLike)):
        raise PredictorError(f"video must be a file path, a uint8 [T, H, W, 3] array or an "
                             f"iterable of [H, W, 3] frames, got {type(video).__name__}")

    meta = check_video_file(video)  # what the CLI, the API and the page accept, alike
    rate = meta.sampled_frame_rate(fps)
    estimate = meta.sampled_num_frames(fps)
    if max_frames is not None:
        estimate = min(estimate, max_frames)
    info = SourceInfo(path=str(video), width=meta.width, height=meta.height, fps=float(rate),
                      frame_rate=rate, num_frames=estimate, source_fps=meta.fps,
                      source_num_frames=meta.num_frames, has_audio=meta.has_audio,
                      rotation=meta.rotation, sample_fps=fps, max_frames=max_frames,
                      variable_frame_rate=meta.variable)
    return _Source(iter_frames(video, fps=fps, max_frames=max_frames), info, estimate)


def _open_stream(frames: Iterator[np.ndarray], fps: float | None, max_frames: int | None
                 ) -> _Source:
    """Frames from a generator (e.g. a camera or a synthetic source): length unknown."""
    first = next(frames, None)
    if first is None:
        raise PredictorError("the frame iterable yielded no frame")
    if not (isinstance(first, np.ndarray) and first.dtype == np.uint8 and first.ndim == 3
            and first.shape[-1] == 3 and first.shape[0] > 0 and first.shape[1] > 0):
        got = (f"{first.dtype} {first.shape}" if isinstance(first, np.ndarray)
               else type(first).__name__)
        raise PredictorError(f"frames must be uint8 RGB arrays [H, W, 3], got {got}")
    rate = float(fps) if fps is not None else ARRAY_FPS

    def stream() -> Iterator[np.ndarray]:
        yield first
        yield from frames

    it = stream() if max_frames is None else itertools.islice(stream(), max_frames)
    info = SourceInfo(path=None, width=int(first.shape[1]), height=int(first.shape[0]),
                      fps=rate, frame_rate=Fraction(rate).limit_denominator(1001),
                      num_frames=0, source_fps=rate)
    return _Source(it, info, max_frames)
