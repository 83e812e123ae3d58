"""What a video file is: probing it with ffmpeg (size, rate, frames, variable-rate timing) and the
one check of what rvos accepts.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg

from rvos.errors import RvosError

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VideoError",
    "VideoInfo",
    "check_video_file",
    "partial_path",
    "probe",
]


PathLike = str | os.PathLike


_log = logging.getLogger(__name__)


# What the page's file picker offers. Acceptance itself is decided by the content
# (`check_video_file`), the same for the CLI, the API and the page: any file with a decodable
# video stream of more than one frame, GIF included (an animated GIF is a video).
VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".gif", ".mpg", ".mpeg", ".ts", ".mts",
    ".m2ts", ".3gp", ".3g2", ".flv", ".wmv", ".ogv", ".asf",
)


# Still images: refused with a message that says so (a PNG is not a 1-frame video).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".heic", ".heif", ".avif", ".ico",
)


class VideoError(RvosError, ValueError):
    """A video cannot be read or written; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video file.

    Attributes:
        path: the file that was probed.
        width, height: display size in pixels, i.e. after applying the rotation metadata. This is
            the size of the frames :func:`iter_frames` yields (without ``max_side``).
        fps: frame rate as a float (``float(frame_rate)``).
        frame_rate: the exact frame rate, e.g. ``Fraction(30000, 1001)`` for "29.97 fps" phone
            footage; pass it to :class:`VideoWriter` to keep the source timing exactly.
        num_frames: number of video frames (counted by demuxing the whole stream, no decoding).
        duration: seconds (container duration, or ``num_frames / fps`` when the container has
            none).
        rotation: clockwise rotation in degrees (0, 90, 180 or 270) that the player applies to the
            coded picture, i.e. the classic ``rotate`` tag of phone videos. Already applied to the
            frames this module returns.
        has_audio: whether the file has at least one audio stream.
        codec: video codec name as ffmpeg reports it, e.g. ``"h264"``, ``"hevc"``.
        pix_fmt: coded pixel format, e.g. ``"yuv420p"``.
        audio_codec: codec of the first audio stream, or ``None``.
        variable: the source has a variable frame rate (phone footage, screen recordings, GIFs
            with uneven delays). Its frames are then decoded at the constant rate
            ``frame_rate`` (the rate most of its frames come at, at least its average rate):
            frame i shows the source at time ``i / fps``, frames repeat where the source is
            slower and ``duration`` is the source's. ``num_frames`` counts those frames.
        container: ffmpeg's name of the file format, e.g. ``"mov,mp4,m4a,3gp,3g2,mj2"``'s
            first part ``"mov"``, ``"gif"``, ``"png_pipe"``.
    """

    path: str
    width: int
    height: int
    fps: float
    frame_rate: Fraction
    num_frames: int
    duration: float
    rotation: int
    has_audio: bool
    codec: str
    pix_fmt: str
    audio_codec: str | None = None
    variable: bool = False
    container: str = ""

    def sampled_frame_rate(self, fps: float | None = None) -> Fraction:
        """Frame rate of the frames :func:`iter_frames` yields for the processing rate ``fps``.

        Use it as the ``fps`` of a :class:`VideoWriter` that writes one output frame per processed
        frame, so the output lasts as long as the source (and its audio lines up).
        """
        if fps is None or fps >= self.fps:
            return self.frame_rate
        return _as_fraction(fps)

    def sampled_num_frames(self, fps: float | None = None) -> int:
        """How many frames :func:`iter_frames` yields for the processing rate ``fps``.

        Exact for constant-frame-rate videos (the ticks ``k / fps`` up to the last frame's time,
        by the rule of :func:`iter_frames`); an estimate for variable frame rates.
        """
        if fps is None or fps >= self.fps:
            return self.num_frames
        last_time = (self.num_frames - 1) / self.fps
        return math.floor(last_time * fps + 1e-6) + 1


def _ffmpeg() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def _run_ffmpeg(args: list[str]) -> tuple[int, str]:
    """Run ffmpeg to completion; return (exit code, stderr text)."""
    proc = subprocess.run(
        [_ffmpeg(), "-hide_banner", "-nostdin", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


def _last_error_line(stderr: str, path: PathLike | None = None) -> str:
    """The most telling line of an ffmpeg log, for error messages (``path`` shortened to its
    file name: messages reach people who must not see server paths)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    line = lines[-1] if lines else "(no output)"
    for ln in reversed(lines):
        if "error" in ln.lower() or "invalid" in ln.lower() or "not found" in ln.lower():
            line = ln
            break
    if path is not None:
        line = line.replace(str(path), Path(path).name)
    return line


def _name(path: PathLike) -> str:
    """How messages name a file: its base name, never the folder it lies in."""
    return repr(Path(path).name)


def _error(path: PathLike, message: str) -> VideoError:
    """A `VideoError` whose message names only the file; the log keeps the full path."""
    _log.info("video %s: %s", os.fspath(path), message)
    return VideoError(message)


def partial_path(path: PathLike) -> Path:
    """A temporary name beside ``path`` to write it under before renaming it into place:
    hidden, marked ``.partial-``, unique to this process, with ``path``'s suffix (so
    ``overlay.mp4`` is written as ``.overlay.partial-1234-ab12cd.mp4``). `PARTIAL_GLOB`
    matches every such name."""
    p = Path(path)
    return p.with_name(f".{p.stem}.partial-{os.getpid()}-{secrets.token_hex(3)}{p.suffix}")


PARTIAL_GLOB = ".*.partial-*"


def _check_file(path: PathLike) -> str:
    p = Path(path)
    if not p.exists():
        raise _error(p, f"Video file not found: {_name(p)}. Check the path.")
    if not p.is_file():
        raise _error(p, f"Not a file: {_name(p)}. Give a video file.")
    if p.stat().st_size == 0:
        raise _error(p, f"Video file is empty (0 bytes): {_name(p)}.")
    return str(p)


def _as_fraction(fps: float | Fraction | str) -> Fraction:
    """Parse a frame rate; recover NTSC rates (29.97 → 30000/1001) that floats cannot express."""
    if isinstance(fps, Fraction):
        rate = fps
    elif isinstance(fps, str):
        try:
            rate = Fraction(fps.strip())
        except ValueError as err:
            raise ValueError(
                f"fps must be a number or 'N/D' like '30000/1001', got {fps!r}"
            ) from err
    else:
        value = float(fps)
        if not math.isfinite(value):
            raise ValueError(f"fps must be a finite positive number, got {fps!r}")
        rate = Fraction(value).limit_denominator(1001)
        ntsc = Fraction(round(value * 1.001) * 1000, 1001)
        # 29.97, 23.976, 59.94, ... are printed rounded; the player-facing rate is k*1000/1001.
        if value != round(value) and abs(float(ntsc) - value) < 0.006:
            rate = ntsc
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return rate


_RE_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")


_RE_STREAM = re.compile(
    r"^\s*Stream #(\d+):(\d+)\S*:\s*(Video|Audio|Subtitle|Data|Attachment):\s*(.*)$"
)


_RE_FPS = re.compile(r"([\d.]+)(k?) (fps|tbr)")


_RE_MATRIX = re.compile(r"display\s*matrix:\s*rotation of\s*(-?[\d.]+)\s*degrees", re.IGNORECASE)


_RE_ROTATE_TAG = re.compile(r"^\s*rotate\s*:\s*(-?\d+)", re.MULTILINE)


_RE_SHOWINFO_RATE = re.compile(r"config in time_base: \d+/\d+, frame_rate: (\d+)/(\d+)")


_RE_SHOWINFO_FRAME = re.compile(r"\bn:\s*\d+ pts:.*?\bs:(\d+)x(\d+)")


_RE_INPUT = re.compile(r"^Input #0, ([^,]+)")


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    frame_rate: Fraction
    duration: float | None
    rotation: int
    has_audio: bool
    codec: str
    pix_fmt: str
    audio_codec: str | None
    container: str = ""


def _input_section(stderr: str) -> list[str]:
    """Lines describing input #0 (stops at the stream mapping / output part)."""
    out: list[str] = []
    started = False
    for ln in stderr.splitlines():
        if ln.startswith("Input #0"):
            started = True
        elif started and ln.startswith(("Stream mapping", "Output #", "Input #1")):
            break
        if started:
            out.append(ln)
    return out


def _read_header(path: str) -> _Header:
    """Inspect a video by decoding its first frame through the ``showinfo`` filter.

    ``ffmpeg -i`` alone prints the frame rate rounded ("29.97 fps"); ``showinfo`` prints the exact
    rational rate and the frame size after ffmpeg's automatic rotation, and decoding one frame
    proves the stream is decodable at all.
    """
    _, err = _run_ffmpeg(
        ["-i", path, "-map", "0:v:0?", "-an", "-sn", "-dn", "-vf", "showinfo",
         "-frames:v", "1", "-f", "null", "-"]
    )
    if "Error opening input" in err or "moov atom not found" in err:
        raise _error(
            path,
            f"Not a video ffmpeg can read: {_name(path)} ({_last_error_line(err, path)}). "
            "Use a video file such as MP4, MOV, WebM, AVI or GIF.",
        )
    section = _input_section(err)
    video_line: str | None = None
    audio_codec: str | None = None
    has_audio = False
    rotation_ccw: float | None = None
    in_video = False
    for ln in section:
        m = _RE_STREAM.match(ln)
        if m:
            kind, rest = m.group(3), m.group(4)
            in_video = False
            if kind == "Video" and video_line is None:
                video_line = rest
                in_video = True
            elif kind == "Audio":
                if not has_audio:
                    audio_codec = rest.split()[0].strip(",") if rest.split() else None
                has_audio = True
            continue
        if in_video and rotation_ccw is None:
            mm = _RE_MATRIX.search(ln)
            if mm:
                rotation_ccw = float(mm.group(1))
            else:
                mt = _RE_ROTATE_TAG.match(ln)
                if mt:  # old-style tag is already clockwise
                    rotation_ccw = -float(mt.group(1))
    if video_line is None:
        if not section:
            raise _error(
                path, f"Not a video ffmpeg can read: {_name(path)} "
                f"({_last_error_line(err, path)})."
            )
        kinds = sorted({m.group(3).lower() for ln in section if (m := _RE_STREAM.match(ln))})
        holds = f"it holds only {' and '.join(kinds)}" if kinds else "it holds no stream"
        raise _error(path, f"{_name(path)} has no video stream ({holds}).")
    frame_match = _RE_SHOWINFO_FRAME.search(err)
    if frame_match is None:
        raise _error(
            path,
            f"{_name(path)} has a video stream but no decodable frames (zero frames, or a "
            f"broken/truncated file: {_last_error_line(err, path)}).",
        )
    width, height = int(frame_match.group(1)), int(frame_match.group(2))

    codec = video_line.split()[0].strip(",")
    # The pixel format is the second comma-separated field, ignoring commas inside parentheses.
    fields = re.split(r",\s*(?![^()]*\))", video_line)
    pix_fmt = fields[1].split("(")[0].strip() if len(fields) > 1 else "unknown"

    frame_rate: Fraction | None = None
    rm = _RE_SHOWINFO_RATE.search(err)
    if rm and int(rm.group(1)) > 0 and int(rm.group(2)) > 0:
        frame_rate = Fraction(int(rm.group(1)), int(rm.group(2)))
    if frame_rate is None:
        for value, kilo, _unit in _RE_FPS.findall(video_line):
            frame_rate = _as_fraction(float(value) * (1000 if kilo else 1))
            break
    if frame_rate is None:
        raise _error(path, f"Could not determine the frame rate of {_name(path)}.")

    duration: float | None = None
    for ln in section:
        dm = _RE_DURATION.search(ln)
        if dm:
            h, m_, s = dm.groups()
            duration = int(h) * 3600 + int(m_) * 60 + float(s)
            break

    rotation = round(-(rotation_ccw or 0.0)) % 360
    cm = _RE_INPUT.match(section[0]) if section else None
    container = cm.group(1) if cm else ""
    return _Header(
        width=width,
        height=height,
        frame_rate=frame_rate,
        duration=duration,
        rotation=rotation,
        has_audio=has_audio,
        codec=codec,
        pix_fmt=pix_fmt,
        audio_codec=audio_codec,
        container=container,
    )


@dataclass(frozen=True)
class _Timing:
    """The video stream's packets: how many, and the rate frames are decoded at."""

    packets: int
    frame_rate: Fraction  # constant rate of the decoded frames
    variable: bool  # True: the timestamps are not those of any constant rate (VFR)
    duration: float | None  # first frame's start to last frame's end, from the timestamps


_RE_FRAMECRC_TB = re.compile(r"^#tb 0: (\d+)/(\d+)", re.MULTILINE)


_TIMING_CACHE: dict[tuple[str, int, int], _Timing] = {}


def _timing(path: str, head: _Header) -> _Timing:
    """Count the packets of the video stream and decide whether its timing is constant.

    One demuxing pass with stream copy (no decoding) through the ``framecrc`` muxer, which prints
    every packet's timestamp and duration. A stream is variable-frame-rate when placing frame i at
    ``i / rate`` (the header's rate) would misplace some frame by more than half a frame; such a
    stream is decoded at a constant rate (see `_vfr_rate`) so that frame i is at ``i / rate`` both
    in what rvos reads and in the overlay it writes, which therefore keeps the source's duration
    and stays in sync with its sound.
    """
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    if key in _TIMING_CACHE:
        return _TIMING_CACHE[key]
    proc = subprocess.run(
        [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", path,
         "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"],
        capture_output=True, check=False,
    )
    text = proc.stdout.decode("ascii", "replace")
    rows = [ln.split(",") for ln in text.splitlines() if ln and not ln.startswith("#")]
    if proc.returncode != 0 or not rows:
        raise _error(path, f"Could not count the frames of {_name(path)}: "
                     f"{_last_error_line(proc.stderr.decode('utf-8', 'replace'), path)}")
    timing = _Timing(len(rows), head.frame_rate, False, None)
    tb = _RE_FRAMECRC_TB.search(text)
    try:
        pts = sorted(int(r[2]) for r in rows)
        last_duration = max(int(rows[-1][3]), 0)
    except (IndexError, ValueError):  # no timestamps (raw streams): take the header's rate
        pts = []
    if tb and len(pts) == len(rows) and len(pts) >= 2 and pts[-1] > pts[0]:
        base = Fraction(int(tb.group(1)), int(tb.group(2)))
        times = [(t - pts[0]) * base for t in pts]
        step = times[-1] / (len(times) - 1)
        end = times[-1] + (last_duration * base if last_duration else step)
        rate = head.frame_rate
        worst = max(abs(t - i / rate) for i, t in enumerate(times))
        if worst * rate > Fraction(1, 2):
            rate = _vfr_rate(times, end)
            timing = _Timing(_cfr_count(end, rate), rate, True, float(end))
        else:
            timing = _Timing(len(rows), rate, False, float(end))
    if len(_TIMING_CACHE) > 512:  # a long-running app sees many uploads
        _TIMING_CACHE.clear()
    _TIMING_CACHE[key] = timing
    return timing


def _vfr_rate(times: list[Fraction], end: Fraction) -> Fraction:
    """The constant rate a variable-frame-rate stream is decoded at: the rate most of its frames
    come at (the median frame interval), but never below its average rate. So the part shot at
    the full rate keeps every frame, and slower parts or gaps repeat frames."""
    gaps = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    median = gaps[len(gaps) // 2]
    rate = float(max(1 / median, len(times) / end))
    # Timestamps in ms or µs make 30 fps come out as 30.0003: snap to whole or NTSC rates.
    for nice in (Fraction(round(rate)), Fraction(round(rate * 1.001) * 1000, 1001)):
        if nice > 0 and abs(float(nice) - rate) <= 0.002 * rate:
            return nice
    return Fraction(rate).limit_denominator(100)


def _cfr_count(end: Fraction, rate: Fraction) -> int:
    """Frames of ffmpeg's ``fps`` filter over ``[0, end)``: one per tick ``k / rate``."""
    return max(1, round(end * rate))


def probe(path: PathLike) -> VideoInfo:
    """Describe a video file.

    Arguments:
        path: a video file in any format the bundled ffmpeg reads.

    Returns:
        :class:`VideoInfo` with the display size (after rotation), exact frame rate, frame count
        (from demuxing the whole stream, which is fast but reads the file once), duration,
        rotation, audio presence and codec. For a variable-frame-rate video the rate and count
        are those of the constant-rate frames :func:`iter_frames` yields (see ``variable``).

    Raises:
        VideoError: the file is missing, not a video, has no video stream or no decodable frames.
    """
    spath = _check_file(path)
    head = _read_header(spath)
    timing = _timing(spath, head)
    if timing.packets <= 0:
        raise _error(spath, f"{_name(spath)} contains zero video frames.")
    num_frames = timing.packets if not timing.variable else _cfr_count(
        Fraction(timing.duration or 0), timing.frame_rate)
    duration = timing.duration if timing.variable else head.duration
    if not duration:
        duration = num_frames / float(timing.frame_rate)
    return VideoInfo(
        path=spath,
        width=head.width,
        height=head.height,
        fps=float(timing.frame_rate),
        frame_rate=timing.frame_rate,
        num_frames=num_frames,
        duration=float(duration),
        rotation=head.rotation,
        has_audio=head.has_audio,
        codec=head.codec,
        pix_fmt=head.pix_fmt,
        audio_codec=head.audio_codec,
        variable=timing.variable,
        container=head.container,
    )


def check_video_file(path: PathLike) -> VideoInfo:
    """The one check of what rvos accepts as a video, for the CLI, the API and the page.

    Any file ffmpeg decodes that has a video stream of at least two frames, whatever its name:
    MP4, MOV, WebM, MKV, AVI, an animated GIF (a GIF is a video), ... Refused, each with a
    one-line message that names only the file (never its folder): a missing or empty file,
    something ffmpeg cannot read, a file with no video stream (audio or subtitles only), a still
    image (PNG, JPEG, a one-frame GIF, ...: "is an image, not a video"), a video stream without
    decodable frames. `VIDEO_EXTENSIONS` is what a file picker should offer.

    Returns:
        the :class:`VideoInfo` of :func:`probe`.

    Raises:
        VideoError: the message says what is wrong, in words fit for any user.
    """
    p = Path(path)
    if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and p.stat().st_size > 0:
        raise _error(p, f"{_name(p)} is an image, not a video. Use a video file "
                     "(MP4, MOV, WebM, AVI, GIF, ...).")
    info = probe(p)
    if info.container in _IMAGE_DEMUXERS or info.container.endswith("_pipe") or (
            info.num_frames <= 1 and info.codec in _IMAGE_CODECS):
        raise _error(p, f"{_name(p)} is an image, not a video. Use a video file "
                     "(MP4, MOV, WebM, AVI, GIF, ...).")
    long, short = max(info.width, info.height), min(info.width, info.height)
    if long > MAX_ASPECT_RATIO * short:
        # The model scales the short side to a fixed size (360 px for the released models),
        # so a 4000×2 frame would become 720,000 px wide: gigabytes per frame.
        raise _error(p, f"{_name(p)} has {info.width}×{info.height} frames: too "
                     f"{'wide' if info.width > info.height else 'tall'} to segment (rvos takes "
                     f"aspect ratios up to {MAX_ASPECT_RATIO}:1).")
    return info


# The widest frames rvos accepts (long side over short side); 32:9 panoramas are 3.6.
MAX_ASPECT_RATIO = 20


# ffmpeg demuxers and codecs of still images (``Input #0, png_pipe, ...``, ``image2``).
_IMAGE_DEMUXERS = frozenset({"image2", "image2pipe"})


_IMAGE_CODECS = frozenset({"png", "mjpeg", "gif", "webp", "bmp", "tiff", "jpeg2000", "apng"})
