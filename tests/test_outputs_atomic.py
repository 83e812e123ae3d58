"""`rvos predict`'s outputs are complete or absent: written under temporary names and renamed
when complete; Ctrl-C and SIGTERM remove them; a reused --out never mixes two runs' files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import pytest

from rvos.result.writer import OUTPUT_NAMES

REPO = Path(__file__).resolve().parents[1]
BUNNY = REPO / "examples" / "bigbuckbunny.mp4"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """Big Buck Bunny looped 8 times (42 s, 1056 frames): far longer than a test waits."""
    path = tmp_path_factory.mktemp("long") / "bunny_x8.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-y", "-stream_loop", "7", "-i", str(BUNNY),
                    "-c", "copy", str(path)], check=True)
    return path


def _what_is_left(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_a_stopped_run_leaves_no_outputs(long_video, tmp_path, sig, code, word):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # not rvos's: stays
    proc = subprocess.Popen(
        [sys.executable, "-m", "rvos", "predict", str(long_video), "--text", "the rabbit",
         "--out", str(out), "--quiet", "--device", "cpu", "--figure", "--gif"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    try:
        # Wait until mask PNGs are being written (under their temporary folder).
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.suffix == ".png" for p in out.rglob("*")):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        written = [p.relative_to(out).parts[0] for p in out.rglob("*.png")]
        assert written and all(name.startswith(".masks.partial-") for name in written)
        assert not set(_what_is_left(out)) & set(OUTPUT_NAMES)  # nothing under a final name
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in err, err
    assert _what_is_left(out) == ["notes.txt"]


@pytest.mark.slow
def test_reusing_out_replaces_the_previous_runs_outputs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("figure.png", "figure.pdf", "overlay.gif", "result.json"):
        (out / name).write_text("of another video")
    (out / "masks" / "0").mkdir(parents=True)
    (out / "masks" / "0" / "00099.png").write_text("of another video")
    (out / ".overlay.partial-1-abcdef.mp4").write_text("of a killed run")
    (out / "notes.txt").write_text("mine")
    done = subprocess.run(
        [sys.executable, "-m", "rvos", "predict", str(BUNNY), "--text", "the rabbit", "--out",
         str(out), "--max-frames", "3", "--quiet", "--device", "cpu"],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _what_is_left(out) == ["masks", "masks.zip", "notes.txt", "overlay.mp4",
                                  "result.json"]
    assert sorted(p.name for p in (out / "masks" / "0").iterdir()) == [
        "00000.png", "00001.png", "00002.png"]
    assert json.loads((out / "result.json").read_text())["source"]["path"] == "bigbuckbunny.mp4"


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_out_that_is_a_file_is_one_clear_line(tmp_path):
    (tmp_path / "taken").write_text("a file")
    done = subprocess.run(
        [sys.executable, "-m", "rvos", "predict", str(BUNNY), "--text", "the rabbit", "--out",
         str(tmp_path / "taken"), "--quiet"],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    line = _one_line(done.stderr)
    assert "is a file, not a folder" in line and "Errno" not in line
    done = subprocess.run(
        [sys.executable, "-m", "rvos", "predict", str(BUNNY), "--text", "the rabbit", "--out",
         str(tmp_path / "taken" / "sub"), "--quiet"],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert "cannot create the folder" in _one_line(done.stderr)


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.write_bytes(b"\x00not a video\x00" * 64), "Not a video ffmpeg can read"),
    (lambda p: p.write_bytes(b""), "empty"),
])
def test_a_bad_video_fails_before_torch_is_imported(tmp_path, make, message):
    bad = tmp_path / "upload" / "clip.mp4"
    bad.parent.mkdir()
    make(bad)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rvos", "predict", str(bad), "--text", "a",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    imported = [ln.split("|")[-1].strip() for ln in done.stderr.splitlines()
                if ln.startswith("import time:")]
    assert "rvos.media.probe" in imported and "torch" not in imported
    [line] = [ln for ln in done.stderr.splitlines() if not ln.startswith("import time:")]
    assert line.startswith("rvos predict: error:") and message in line
    assert str(bad.parent) not in line  # the file's name at most, never its folder
    assert not (tmp_path / "out").exists()


def test_a_cancelled_or_failed_prediction_leaves_nothing_in_its_folder(make_tiny_model,
                                                                        long_video, tmp_path):
    """What the app's run folders rely on: closing `iter_predict` (a cancelled run) or a
    failing `write_outputs` removes every file the run wrote, partial or complete."""
    from rvos.predictor.predictor import Predictor
    from rvos.result.writer import write_outputs

    predictor = Predictor(make_tiny_model(), window=4, overlap=1, short_side=32, device="cpu")
    out = tmp_path / "run-1"
    run = predictor.iter_predict(long_video, "the rabbit", max_frames=40, out_dir=out)
    for progress in run:
        if progress.frames_done >= 12:
            break
    deadline = time.monotonic() + 60  # the writer thread catches up with the finished frames
    while not any(out.rglob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(out.rglob("*.png"))
    run.close()
    assert _what_is_left(out) == []

    result = predictor.predict(long_video, "the rabbit", max_frames=3)
    done = tmp_path / "run-2"
    with pytest.raises(ValueError, match="'short.mp4' gave 2 frames") as failed:
        write_outputs(result, done, video_path=_two_frames(tmp_path))  # frames run out mid-way
    assert str(tmp_path) not in str(failed.value)
    assert _what_is_left(done) == []


def _two_frames(tmp_path: Path) -> Path:
    path = tmp_path / "short.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(BUNNY), "-frames:v", "2",
                    str(path)], check=True)
    return path
