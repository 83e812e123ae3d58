"""Bad (and odd but valid) inputs for the bad-input matrix, made at test time with the bundled
ffmpeg, Pillow or plain bytes, and `duration_s`: a file's duration as ``ffmpeg -i`` prints it.

Nothing here imports rvos: tests/test_bad_inputs.py reaches rvos only through its command line
and its HTTP API.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()

# Small test pattern: 64x64, 8 frames at 8 fps (1 s).
PATTERN = "testsrc=size={w}x{h}:rate={fps}"


def ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg; fail with its last lines when it fails."""
    done = subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def clip(
    path: Path,
    *,
    w: int = 64,
    h: int = 64,
    frames: int = 8,
    fps: float = 8,
    codec: tuple[str, ...] = ("-c:v", "libx264", "-pix_fmt", "yuv420p"),
) -> Path:
    """A moving test pattern of ``frames`` frames of ``w``×``h`` at ``fps``."""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        PATTERN.format(w=w, h=h, fps=fps),
        "-frames:v",
        str(frames),
        *codec,
        str(path),
    )
    return path


# ------------------------------------------------------------------------------ refused


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def text(path: Path) -> Path:
    path.write_text("These are my holiday notes, not a video.\n" * 20)
    return path


def random_bytes(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, np.uint8).tobytes())
    return path


def truncated(path: Path) -> Path:
    """The first half of examples/bigbuckbunny.mp4 (its index, the moov atom, is at the end
    of the file or cut mid-way: ffmpeg cannot read it)."""
    data = (EXAMPLES / "bigbuckbunny.mp4").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_without_index(path: Path) -> Path:
    """A small mp4 whose index (moov atom, written last) is cut off with its last third."""
    whole = clip(path.with_name("whole_" + path.name), frames=16)
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def audio_m4a(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(path))
    return path


def audio_mp3(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "libmp3lame", str(path))
    return path


def subtitles_only(path: Path) -> Path:
    """An .mkv holding one SubRip subtitle stream and nothing else."""
    srt = path.with_suffix(".srt")
    srt.write_text(
        "1\n00:00:00,000 --> 00:00:01,000\nHello\n\n2\n00:00:01,000 --> 00:00:02,000\nWorld\n"
    )
    ffmpeg("-i", str(srt), "-c:s", "srt", str(path))
    srt.unlink()
    return path


def png(path: Path) -> Path:
    Image.fromarray(_pattern(48, 64)).save(path, format="PNG")
    return path


def jpeg(path: Path) -> Path:
    Image.fromarray(_pattern(48, 64)).save(path, format="JPEG", quality=90)
    return path


# ----------------------------------------------------------------------------- accepted


def gif(path: Path) -> Path:
    """An animated GIF: 6 frames of 64×48 at 10 fps (a video)."""
    frames = [Image.fromarray(np.roll(_pattern(48, 64), 8 * i, axis=1)) for i in range(6)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def avi(path: Path) -> Path:
    return clip(path, codec=("-c:v", "mpeg4", "-q:v", "5"))


def one_pixel(path: Path) -> Path:
    """1×1 pixel, 8 frames (H.264 4:4:4: yuv420p needs even sizes)."""
    return clip(path, w=1, h=1, codec=("-c:v", "libx264", "-pix_fmt", "yuv444p"))


def two_frames(path: Path) -> Path:
    return clip(path, frames=2)


def very_wide(path: Path) -> Path:
    return clip(path, w=4000, h=2, frames=4)


def very_tall(path: Path) -> Path:
    return clip(path, w=2, h=4000, frames=4)


def variable_frame_rate(path: Path) -> Path:
    """1 s at 15 fps, then 1 s at 30 fps (45 frames, 2.0 s), as a phone records: every other
    frame of a 30-fps pattern is dropped during the first second, timestamps kept."""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x64:rate=30:duration=2",
        "-vf",
        "select='gte(t\\,1)+not(mod(n\\,2))'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(path),
    )
    return path


def long_clip(path: Path, seconds: float, fps: float = 8) -> Path:
    """A 64×64 pattern lasting ``seconds`` at ``fps`` (small: a few kB per second)."""
    return clip(path, frames=round(seconds * fps), fps=fps)


def big_file(path: Path, megabytes: float) -> Path:
    """A valid clip of lossless 320×240 noise (~110 kB a frame) of at least ``megabytes`` MB."""
    frames = int(megabytes * 1e6 / 100e3) + 4
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "nullsrc=size=320x240:rate=8,geq=random(1)*255:128:128",
        "-frames:v",
        str(frames),
        "-c:v",
        "libx264",
        "-qp",
        "0",
        "-pix_fmt",
        "yuv420p",
        str(path),
    )
    if path.stat().st_size < megabytes * 1e6:
        raise AssertionError(f"{path} is only {path.stat().st_size} bytes")
    return path


MAKERS: dict[str, Callable[[Path], Path]] = {
    "empty.mp4": empty,
    "notes.mp4": text,
    "truncated.mp4": truncated,
    "truncated_no_index.mp4": truncated_without_index,
    "random.mp4": random_bytes,
    "sine.m4a": audio_m4a,
    "sine.mp3": audio_mp3,
    "subtitles.mkv": subtitles_only,
    "image.png": png,
    "image.jpg": jpeg,
    "animated.gif": gif,
    "clip.avi": avi,
    "one_pixel.mp4": one_pixel,
    "two_frames.mp4": two_frames,
    "wide_4000x2.mp4": very_wide,
    "tall_2x4000.mp4": very_tall,
    "vfr_15_then_30.mp4": variable_frame_rate,
}


def make(name: str, folder: Path) -> Path:
    """The input ``name`` of `MAKERS`, written into ``folder`` (once)."""
    path = folder / name
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        MAKERS[name](path)
    return path


# ------------------------------------------------------------------------------ reading


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")


def duration_s(path: str | os.PathLike) -> float:
    """The duration ``ffmpeg -i`` prints for ``path`` (the container's, in seconds)."""
    done = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True, timeout=30
    )
    match = _DURATION.search(done.stderr)
    if match is None:
        raise AssertionError(f"ffmpeg -i {path} printed no duration:\n{done.stderr}")
    h, m, s = match.groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


def count_frames(path: str | os.PathLike) -> int:
    """Frames of the first video stream, counted by decoding it."""
    done = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    counts = re.findall(r"frame=\s*(\d+)", done.stderr)
    if done.returncode != 0 or not counts:
        raise AssertionError(f"cannot decode {path}:\n{done.stderr[-2000:]}")
    return int(counts[-1])


def _pattern(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack(
        [x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], axis=-1
    ).astype(np.uint8)
