"""Variable-frame-rate video (phone footage: the rate drops in low light) keeps its timing.

Each clip is made at test time by the bundled ffmpeg: a black picture whose frame rate changes
half-way, one white frame (the flash) and a 1 kHz beep at the same instant. `rvos predict`'s
overlay must last as long as the source, show the flash when its sound beeps (within one
frame), and result.json must give the rate and times the overlay has.
"""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import jsonschema
import numpy as np
import pytest

from rvos.media.probe import probe
from rvos.media.video import iter_frames
from rvos.result.schema import RESULT_SCHEMA

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SIZE = (64, 48)
pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def make_vfr_clip(path: Path, segments: list[tuple[int, float]], flash_s: float) -> Path:
    """Black 64x48 video: ``segments`` of (fps, seconds) one after the other, one white frame
    at ``flash_s`` and a 30 ms beep starting at ``flash_s``; AAC audio for the whole length."""
    total = sum(d for _, d in segments)
    inputs: list[str] = []
    for rate, duration in segments:
        inputs += ["-f", "lavfi", "-i", f"color=black:s={SIZE[0]}x{SIZE[1]}:r={rate}:d={duration}"]
    beep = f"if(between(t,{flash_s},{flash_s + 0.03}),0.8*sin(2*PI*1000*t),0)"
    inputs += ["-f", "lavfi", "-i", f"aevalsrc='{beep}':s=44100:d={total}"]
    # The flash: the first frame at or after flash_s (in the concatenated timeline).
    start = 0.0
    chains, labels = [], []
    for k, (rate, duration) in enumerate(segments):
        local = flash_s - start
        if 0 <= local < duration:
            on = f"between(t,{local},{local + 0.999 / rate})"
            chains.append(f"[{k}:v]drawbox=x=0:y=0:w={SIZE[0]}:h={SIZE[1]}:color=white:t=fill:"
                          f"enable='{on}'[v{k}]")
        else:
            chains.append(f"[{k}:v]null[v{k}]")
        labels.append(f"[v{k}]")
        start += duration
    graph = ";".join(chains) + f";{''.join(labels)}concat=n={len(segments)}:v=1:a=0[v]"
    subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *inputs,
         "-filter_complex", graph, "-map", "[v]", "-map", f"{len(segments)}:a",
         "-fps_mode", "passthrough", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-c:a", "aac", str(path)],
        check=True)
    return path


def flash_time(video: Path, rate: Fraction) -> float:
    """Time of the brightest frame when frame i is shown at ``i / rate``."""
    brightness = [frame.mean() for frame in iter_frames(video)]
    return int(np.argmax(brightness)) / float(rate)


def beep_time(video: Path) -> float:
    """When the audio track of ``video`` first gets loud, in seconds (decoded at 48 kHz)."""
    pcm = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(video), "-map", "0:a:0", "-ac", "1", "-ar", "48000",
         "-f", "s16le", "-"], capture_output=True, check=True).stdout
    samples = np.abs(np.frombuffer(pcm, np.int16).astype(np.float32))
    return int(np.argmax(samples > 0.3 * samples.max())) / 48000


def real_duration(video: Path) -> float:
    """The video stream's length from its packets: the last frame's timestamp plus its
    duration (ffmpeg's ``framecrc`` lists every packet without decoding)."""
    text = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(video), "-map", "0:v:0", "-c", "copy",
         "-f", "framecrc", "-"], capture_output=True, text=True, check=True).stdout
    num, den = text.split("#tb 0: ")[1].split()[0].split("/")
    rows = [ln.split(",") for ln in text.splitlines() if ln and not ln.startswith("#")]
    end = max(int(r[2]) + int(r[3]) for r in rows) - min(int(r[2]) for r in rows)
    return end * int(num) / int(den)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("segments", "flash_s"),
    [([(15, 2.0), (30, 2.0)], 3.0),   # 4.0 s: once became a 6.0 s overlay
     ([(15, 3.0), (30, 1.5)], 3.8)],  # 4.5 s: once became a 2.7 s overlay at 25 fps
    ids=["2s@15+2s@30", "3s@15+1.5s@30"])
def test_predict_keeps_the_timing_of_a_variable_frame_rate_video(
        tmp_path: Path, segments: list[tuple[int, float]], flash_s: float) -> None:
    from rvos.predictor.predictor import Predictor
    from rvos.zoo.loader import load_model

    clip = make_vfr_clip(tmp_path / "phone.mp4", segments, flash_s)
    source = probe(clip)
    assert source.variable and source.has_audio
    total = sum(d for _, d in segments)
    assert source.duration == pytest.approx(total, abs=1 / 30)
    # What rvos reads: frame i at i / fps (the flash frame lands on its time).
    assert flash_time(clip, source.frame_rate) == pytest.approx(flash_s, abs=1 / source.fps)

    out = tmp_path / "out"
    predictor = Predictor(load_model("builtin"), device="cpu")
    result = predictor.predict(clip, "the white screen", out_dir=out)
    overlay = out / "overlay.mp4"
    written = probe(overlay)
    assert not written.variable
    frame = 1 / written.fps
    assert real_duration(overlay) == pytest.approx(total, abs=frame)
    shown, heard = flash_time(overlay, written.frame_rate), beep_time(overlay)
    assert heard == pytest.approx(flash_s, abs=0.01)  # the sound is untouched
    assert shown == pytest.approx(heard, abs=frame)  # the picture stays with its sound

    doc = json.loads((out / "result.json").read_text())
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["source"]["variable_frame_rate"] is True
    assert doc["source"]["fps"] == pytest.approx(written.fps)
    assert doc["source"]["num_frames"] == result.num_frames == written.num_frames
    times = [f["time_s"] for f in doc["expressions"][0]["frames"]]
    assert times[-1] + frame == pytest.approx(total, abs=frame)
