"""Video and mask I/O for any phone or web video, built on the ffmpeg bundled with imageio-ffmpeg.

Everything here talks to the ``ffmpeg`` executable through pipes, so reading and writing are
streaming (constant memory even for a 10-minute 4K video) and work on every container and codec
ffmpeg knows. The main pieces:

- :func:`probe` → :class:`VideoInfo` (display size after rotation, exact frame rate, frame count).
- :func:`iter_frames` / :func:`read_video`: upright RGB ``uint8`` frames, optionally subsampled to
  a processing frame rate and downscaled.
- :class:`VideoWriter` / :func:`write_video`: browser-playable H.264 (yuv420p, ``+faststart``) MP4,
  optionally carrying the audio track of a source video.
- :func:`write_label_png` / :func:`read_label_png` / :func:`zip_folder`: DAVIS-style masks.

Problems a user can cause (missing file, not a video, no frames) raise :class:`VideoError`.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from rvos.media.probe import (
    PathLike,
    VideoError,
    VideoInfo,
    _as_fraction,
    _check_file,
    _error,
    _ffmpeg,
    _Header,
    _last_error_line,
    _name,
    _read_header,
    _run_ffmpeg,
    _Timing,
    _timing,
    partial_path,
    probe,
)

__all__ = ["VideoWriter", "iter_frames", "read_video", "write_video"]


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(w, h) so that the long side is at most ``max_side``, keeping the aspect ratio."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _select_expr(fps: float) -> str:
    """ffmpeg ``select`` expression keeping the first frame at or after each tick ``k / fps``.

    Uses presentation timestamps (relative to the first frame), so it is right for variable-frame-
    rate phone videos too. The 1e-6 guards ticks that coincide with a frame time against rounding.
    """
    f = repr(float(fps))
    tick = f"floor((t-start_t)*{f}+1e-6)"
    prev = f"floor((prev_t-start_t)*{f}+1e-6)"
    return f"select='if(isnan(prev_t),1,gt({tick},{prev}))'"


def iter_frames(
    path: PathLike,
    *,
    fps: float | None = None,
    max_frames: int | None = None,
    max_side: int | None = None,
) -> Iterator[np.ndarray]:
    """Stream the frames of a video, upright, as RGB ``uint8`` arrays of shape ``[H, W, 3]``.

    Memory use is one frame, whatever the video length. Rotation metadata (portrait phone videos)
    is applied, so frames have the display orientation.

    Arguments:
        path: video file.
        fps: processing frame rate. ``None`` or a rate at least the source's keeps every frame.
            Otherwise frames are subsampled by timestamp: for every tick ``t_k = k / fps``
            (``k = 0, 1, ...``, time measured from the first frame) the first frame with timestamp
            ``>= t_k`` is kept, so a 30 fps clip at ``fps=10`` yields frames 0, 3, 6, ...
            A variable-frame-rate video is first brought to the constant rate
            ``probe(path).frame_rate`` (see `VideoInfo.variable`), so frame i is at ``i / rate``.
        max_frames: stop after this many (processed) frames.
        max_side: downscale (area interpolation) so that ``max(H, W) <= max_side``.

    Yields:
        ``np.ndarray`` uint8 ``[H, W, 3]`` RGB, C-contiguous and writable.

    Raises:
        VideoError: unreadable input (see :func:`probe`) or ffmpeg failing mid-stream.
        ValueError: bad arguments.
    """
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number or None, got {fps!r}")
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0 or None, got {max_frames!r}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1 or None, got {max_side!r}")
    spath = _check_file(path)
    head = _read_header(spath)
    timing = _timing(spath, head)
    return _frame_stream(spath, head, timing, fps=fps, max_frames=max_frames, max_side=max_side)


def _frame_stream(
    path: str, head: _Header, timing: _Timing, *, fps: float | None, max_frames: int | None,
    max_side: int | None
) -> Iterator[np.ndarray]:
    if max_frames == 0:
        return
    width, height = _scaled_size(head.width, head.height, max_side)
    filters: list[str] = []
    rate = timing.frame_rate
    if timing.variable:
        # One frame per tick k / rate from the first frame's time, the nearest source frame each.
        filters.append("setpts=PTS-STARTPTS")
        filters.append(f"fps=fps={rate.numerator}/{rate.denominator}:start_time=0:round=near")
    if fps is not None and fps < float(rate):
        filters.append(_select_expr(fps))
    if (width, height) != (head.width, head.height):
        filters.append(f"scale={width}:{height}:flags=area")
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", path,
           "-map", "0:v:0", "-an", "-sn", "-dn"]
    if filters:
        cmd += ["-vf", ",".join(filters)]
    if max_frames is not None:
        cmd += ["-frames:v", str(max_frames)]
    # Passthrough: one output frame per decoded (selected) frame; the default for raw pipes would
    # duplicate/drop frames to reach a constant rate on variable-frame-rate phone videos.
    cmd += ["-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"]

    frame_bytes = width * height * 3
    # stderr goes to a temporary file: a pipe could fill up and stall ffmpeg.
    with tempfile.TemporaryFile() as errlog:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=errlog, stdin=subprocess.DEVNULL
        )
        assert proc.stdout is not None
        produced = 0
        finished = False
        try:
            while max_frames is None or produced < max_frames:
                buf = proc.stdout.read(frame_bytes)
                if not buf:
                    break
                if len(buf) < frame_bytes:
                    raise _error(
                        path, f"ffmpeg ended in the middle of a frame while reading "
                        f"{_name(path)}."
                    )
                produced += 1
                yield np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3).copy()
            finished = True
        finally:
            if not finished or (max_frames is not None and produced >= max_frames):
                proc.kill()
            proc.stdout.close()
            rc = proc.wait()
        if finished and rc != 0 and not (max_frames is not None and produced >= max_frames):
            errlog.seek(0)
            msg = _last_error_line(errlog.read().decode("utf-8", "replace"), path)
            raise _error(
                path, f"ffmpeg failed while decoding {_name(path)} after {produced} frames: {msg}"
            )
        if finished and produced == 0:
            raise _error(path, f"{_name(path)} yielded zero frames.")


def read_video(
    path: PathLike,
    *,
    fps: float | None = None,
    max_frames: int | None = None,
    max_side: int | None = None,
) -> tuple[np.ndarray, VideoInfo]:
    """Read a (short) video into memory.

    Arguments: as :func:`iter_frames`.

    Returns:
        ``(frames, info)``: frames ``uint8 [T, H, W, 3]`` RGB (processed: subsampled/downscaled as
        requested) and the :class:`VideoInfo` of the *source* file. The frames' rate is
        ``info.sampled_frame_rate(fps)``.
    """
    info = probe(path)
    frames = list(iter_frames(path, fps=fps, max_frames=max_frames, max_side=max_side))
    if not frames:
        w, h = _scaled_size(info.width, info.height, max_side)
        return np.zeros((0, h, w, 3), dtype=np.uint8), info
    return np.stack(frames), info


class VideoWriter:
    """Stream RGB frames into a browser-playable H.264 MP4 (yuv420p, ``+faststart``).

    Use as a context manager::

        with VideoWriter("out.mp4", info.frame_rate, audio_from="in.mp4") as writer:
            for frame in frames:
                writer.write(frame)

    All frames must have the size of the first. yuv420p needs even sizes, so an odd width or height
    is padded by one pixel on the right/bottom, replicating the edge pixels (nothing is cropped or
    resampled). If ``audio_from`` is a video with an audio stream, its first audio track is muxed in
    on :meth:`close` (copied when it is AAC, else re-encoded to AAC) and cut at the video's end.

    Arguments:
        path: output ``.mp4`` path (parent folders are created). The video is encoded under a
            temporary name (`partial_path`) and renamed to ``path`` by :meth:`close`, so
            ``path`` never holds a half-written video; :meth:`abort` deletes the temporary.
        fps: frame rate; a ``Fraction`` or ``"30000/1001"`` string keeps NTSC rates exact
            (a float such as 29.97 is mapped to 30000/1001 too).
        audio_from: optional source video whose audio to copy; ignored if it has no audio.
        crf: x264 constant rate factor (lower is better quality, 18-23 is visually good).
        preset: x264 speed preset.
    """

    def __init__(
        self,
        path: PathLike,
        fps: float | Fraction | str,
        *,
        audio_from: PathLike | None = None,
        crf: int = 20,
        preset: str = "veryfast",
    ) -> None:
        self.path = Path(path)
        self.frame_rate = _as_fraction(fps)
        self.audio_from = None if audio_from is None else _check_file(audio_from)
        # Inspect the audio source now, so a bad path fails before a long encode, not after.
        self._audio_head = None if self.audio_from is None else _read_header(self.audio_from)
        self.crf = int(crf)
        self.preset = preset
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (W, H) of the input frames
        self._proc: subprocess.Popen[bytes] | None = None
        self._errlog: tempfile._TemporaryFileWrapper[bytes] | None = None
        self._video_path: Path | None = None  # the encoder's output, a partial_path
        self._muxed_path: Path | None = None  # the video with audio, a partial_path
        self._closed = False

    # ---- context manager
    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _start(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (width, height)
        out_w, out_h = width + width % 2, height + height % 2
        # Encoded under a temporary name and renamed into place by close(): ``path`` is either
        # absent (or its previous content) or a complete video, never half-written.
        self._video_path = partial_path(self.path)
        # Lives as long as the encoder; closed (and deleted) in close()/abort().
        self._errlog = tempfile.NamedTemporaryFile(prefix="rvos-ffmpeg-", suffix=".log")  # noqa: SIM115
        cmd = [
            _ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{out_w}x{out_h}",
            "-framerate", f"{self.frame_rate.numerator}/{self.frame_rate.denominator}",
            "-i", "-",
            "-an", "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf),
            "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4",
            str(self._video_path),
        ]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._errlog
        )

    def _ffmpeg_log(self) -> str:
        if self._errlog is None:
            return ""
        self._errlog.seek(0)
        return self._errlog.read().decode("utf-8", "replace")

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: ``uint8 [H, W, 3]`` RGB, the same size as the first frame."""
        if self._closed:
            raise VideoError(f"VideoWriter for {str(self.path)!r} is already closed.")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(
                f"frame must be uint8 [H, W, 3] RGB, got dtype {frame.dtype} shape {frame.shape}"
            )
        h, w = frame.shape[:2]
        if h == 0 or w == 0:
            raise ValueError(f"frame must not be empty, got shape {frame.shape}")
        if self._proc is None:
            self._start(w, h)
        elif (w, h) != self.size:
            raise ValueError(
                f"all frames must have the first frame's size {self.size} (W, H), got {(w, h)}"
            )
        if w % 2 or h % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError as err:
            self._proc.wait()
            raise VideoError(
                f"ffmpeg stopped while writing {str(self.path)!r}: "
                f"{_last_error_line(self._ffmpeg_log())}"
            ) from err
        self.frames_written += 1

    def close(self) -> None:
        """Finish encoding (and mux audio). Raises :class:`VideoError` if no frame was written."""
        if self._closed:
            return
        self._closed = True
        if self._proc is None:
            raise VideoError(f"No frames were written to {str(self.path)!r}; nothing to encode.")
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        rc = self._proc.wait()
        log = self._ffmpeg_log()
        if self._errlog is not None:
            self._errlog.close()
        if rc != 0:
            self._cleanup_temp()
            raise VideoError(f"ffmpeg failed to encode {str(self.path)!r}: {_last_error_line(log)}")
        try:
            self._mux_audio()
        finally:
            self._cleanup_temp()

    def abort(self) -> None:
        """Stop without finishing; removes partial output."""
        if self._closed:
            return
        self._closed = True
        if self._proc is not None:
            self._proc.kill()
            if self._proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    self._proc.stdin.close()
            self._proc.wait()
        if self._errlog is not None:
            self._errlog.close()
        self._cleanup_temp()

    def _cleanup_temp(self) -> None:
        if self._video_path is not None:
            self._video_path.unlink(missing_ok=True)
        if self._muxed_path is not None:
            self._muxed_path.unlink(missing_ok=True)

    def _mux_audio(self) -> None:
        assert self._video_path is not None
        head = self._audio_head
        if self.audio_from is None or head is None or not head.has_audio:
            os.replace(self._video_path, self.path)
            return
        self._muxed_path = partial_path(self.path)
        # AAC plays in every browser's MP4 support; anything else (Opus in MP4, PCM from some
        # cameras, AMR from old phones) is re-encoded.
        audio = ["-c:a", "copy"] if head.audio_codec == "aac" else ["-c:a", "aac", "-b:a", "160k"]
        # Cut the audio at the video's end; the video itself is never shortened (``-shortest``
        # would drop frames when the source audio is shorter than the video).
        duration = self.frames_written / self.frame_rate
        rc, err = _run_ffmpeg(
            ["-y", "-i", str(self._video_path), "-i", self.audio_from,
             "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *audio,
             "-t", f"{float(duration):.6f}", "-movflags", "+faststart", "-f", "mp4",
             str(self._muxed_path)]
        )
        if rc != 0:
            raise VideoError(
                f"Could not add the audio of {_name(self.audio_from)} to {_name(self.path)}: "
                f"{_last_error_line(err, self.audio_from)}"
            )
        os.replace(self._muxed_path, self.path)


def write_video(
    path: PathLike,
    frames: np.ndarray | list[np.ndarray],
    fps: float | Fraction | str,
    *,
    audio_from: PathLike | None = None,
) -> Path:
    """Write frames ``uint8 [T, H, W, 3]`` with :class:`VideoWriter`; returns the path."""
    with VideoWriter(path, fps, audio_from=audio_from) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)
