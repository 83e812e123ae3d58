"""The app's run-time estimate: measured on the device, refined by runs, and what fits."""

from __future__ import annotations

from pathlib import Path

import pytest

from rvos.app.inputs import Limits, RunSettings
from rvos.app.models import ModelCache, model_choices
from rvos.app.runs import estimate_run, prepare_run, speedup_note
from rvos.predictor.estimate import (
    CPU_BUDGET_S,
    FPS_STEPS,
    IOSpeed,
    Speed,
    SpeedBook,
    estimate,
    format_seconds,
    processed_frames,
)
from rvos.predictor.windows import plan_windows

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "shapes_00001.mp4"  # 16 frames of 256×256 at 8 fps


def test_processed_frames_count_the_overlaps_of_the_windows():
    assert processed_frames(36, 36) == 36
    assert processed_frames(100, 36, 8) == sum(p.end - p.start for p in plan_windows(100, 36, 8))
    assert processed_frames(100, 36, 8) > 100
    assert processed_frames(0, 36) == 0


def test_cost_grows_with_expressions_and_pixels():
    speed = Speed(backbone_s=0.2, expression_s=0.1, pixels=1000)
    assert speed.per_frame(1000, 1) == pytest.approx(0.3)
    assert speed.per_frame(1000, 3) == pytest.approx(0.5)
    assert speed.per_frame(2000, 1) == pytest.approx(0.6)


def _frames_at(duration_s: float, source_fps: float, cap: int):
    def frames_at(fps):
        return min(round(duration_s * (fps or source_fps)), cap)

    return frames_at


def test_a_short_run_gets_no_offer():
    est = estimate(Speed(0.01, 0.01, 100), 100, 2, "cpu", frames_at=_frames_at(10, 25, 300),
                   fps=None, window=36, source_fps=25)
    assert not est.too_long and est.frames == 250
    assert est.seconds == pytest.approx(processed_frames(250, 36) * 0.03)
    assert "Estimated time" in est.text() and "fps" not in est.text()


def test_a_long_cpu_run_gets_the_largest_rate_and_cap_that_fit():
    speed = Speed(0.5, 0.25, 100)  # 1 s a frame with two expressions
    frames_at = _frames_at(10, 25, 300)

    def seconds(frames):
        return processed_frames(frames, 36) * 1.0

    est = estimate(speed, 100, 2, "cpu", frames_at=frames_at, fps=None, window=36,
                   source_fps=25)
    assert est.too_long and est.seconds == pytest.approx(seconds(250))
    # The offered rate fits, and the next higher step would not.
    higher = FPS_STEPS[FPS_STEPS.index(est.fps_fit) - 1]
    assert seconds(frames_at(est.fps_fit)) <= CPU_BUDGET_S < seconds(frames_at(higher))
    # The offered cap is the largest that fits.
    assert seconds(est.frames_fit) <= CPU_BUDGET_S < seconds(est.frames_fit + 1)
    text = est.text()
    assert f"{est.fps_fit:g} fps" in text and f"first {est.frames_fit} frames" in text
    # On a GPU the same numbers are only a time.
    gpu = estimate(speed, 100, 2, "cuda", frames_at=frames_at, fps=None, window=36,
                   source_fps=25)
    assert not gpu.too_long and gpu.fps_fit is None


def test_seconds_read_like_a_person_writes_them():
    assert [format_seconds(s) for s in (0.2, 45, 60, 130, 3725)] == [
        "1 s", "45 s", "1 min", "2 min 10 s", "1 h 2 min"]


def test_a_finished_run_rescales_the_measured_speed():
    book = SpeedBook()
    book.record("m", "cpu", "fp32", pixels=1000, frames=10, expressions=1, model_s=3.0)
    assert book.get("m", "cpu", "fp32", 1000).per_frame(1000, 1) == pytest.approx(0.3)
    book.record("m", "cpu", "fp32", pixels=1000, frames=10, expressions=2, model_s=10.0)
    assert book.get("m", "cpu", "fp32", 1000).per_frame(1000, 2) == pytest.approx(1.0)
    assert book.get("m", "cpu", "fp32", 5000) is None  # too far from what was measured
    assert book.get("m", "cpu", "bf16", 1000) is None


def test_the_app_measures_the_model_once_then_estimates_from_runs(tmp_path, one_cpu_thread):
    models = ModelCache(model_choices())
    settings = RunSettings(max_frames=300)
    first = estimate_run(models, "builtin", str(EXAMPLE), "the red circle", settings,
                             Limits())
    assert first is not None and first.frames == 16 and first.seconds > 0
    measured = models.speeds.get("builtin", "cpu", "fp32", 128 * 128)
    assert measured is not None  # at the built-in model's input size, 128 × 128
    # Nothing to estimate yet: no video, or a video that is not one.
    assert estimate_run(models, "builtin", None, "x", settings, Limits()) is None
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    assert estimate_run(models, "builtin", str(bad), "x", settings, Limits()) is None
    # A run refines it: the estimate then follows that run's speed.
    run = prepare_run(models, "builtin", str(EXAMPLE), "the red circle", settings,
                          Limits(), tmp_path)
    *_, last = run.steps()
    run.finish(last.result)
    after = models.speeds.get("builtin", "cpu", "fp32", 128 * 128)
    per_frame = last.result.timings["model_s"] / 16
    assert after.per_frame(128 * 128, 1) == pytest.approx(per_frame)
    second = estimate_run(models, "builtin", str(EXAMPLE), "the red circle", settings,
                              Limits())
    assert second.model_s == pytest.approx(16 * per_frame)
    assert second.io_s > 0 and second.seconds == pytest.approx(second.model_s + second.io_s)


def test_reading_and_writing_scale_with_the_source_and_the_model_with_its_input():
    """The model's part follows the model's input pixels; decoding and writing follow the
    source's (a 4K clip run at a small input size is mostly reading and writing)."""
    speed = Speed(backbone_s=0.01, expression_s=0.005, pixels=10_000)
    io = IOSpeed(frame_s=50e-9, mask_s=5e-9, fixed_s=0.5)

    def run(pixels: int, source: tuple[int, int], expressions: int = 1):
        return estimate(speed, pixels, expressions, "cuda", frames_at=lambda fps: 75, fps=None,
                        window=36, source_fps=25, io=io, source_size=source)

    small, big = run(10_000, (360, 640)), run(10_000, (2160, 3840))
    assert big.model_s == pytest.approx(small.model_s)
    assert (big.io_s - 0.5) == pytest.approx(36 * (small.io_s - 0.5))  # 36× the pixels
    assert big.io_s == pytest.approx(0.5 + 75 * 3840 * 2160 * 55e-9)
    wider = run(20_000, (360, 640))
    assert wider.io_s == pytest.approx(small.io_s)
    assert wider.model_s == pytest.approx(2 * small.model_s)
    two = run(10_000, (360, 640), expressions=2)
    assert two.io_s - 0.5 == pytest.approx(75 * 640 * 360 * 60e-9)  # a mask per expression
    assert big.seconds == pytest.approx(big.model_s + big.io_s)
    assert "3840×2160" in big.text()


def test_a_finished_run_rescales_the_cost_of_reading_and_writing():
    book = SpeedBook()
    book._io = IOSpeed(frame_s=40e-9, mask_s=10e-9, fixed_s=0.5)
    book.record_io(frames=100, source_pixels=1_000_000, expressions=1, seconds=10.5)
    io = book.io()
    assert io.seconds(100, 1_000_000, 1) == pytest.approx(10.5)
    assert io.frame_s / io.mask_s == pytest.approx(4.0)  # the split is kept


def test_measure_io_times_real_decoding_and_encoding():
    from rvos.predictor.estimate import measure_io

    io = measure_io()
    # Any machine decodes and encodes a pixel in more than 0.1 ns and (for this small clip)
    # less than 10 µs; the mask work is a fraction of it.
    assert 1e-10 < io.frame_s < 1e-5 and 0 < io.mask_s < io.frame_s


@pytest.fixture(scope="module")
def clip_4k(tmp_path_factory) -> Path:
    """0.4 s of the Big Buck Bunny example scaled to 3840×2160 (10 frames)."""
    import subprocess

    import imageio_ffmpeg

    out = tmp_path_factory.mktemp("4k") / "bbb_4k.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i",
                    str(ROOT / "examples" / "bigbuckbunny.mp4"), "-t", "0.4", "-vf",
                    "scale=3840:2160", "-an", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def test_the_app_estimates_a_4k_clip_by_its_source_size(clip_4k, one_cpu_thread):
    models = ModelCache(model_choices())
    settings = RunSettings(max_frames=300)
    big = estimate_run(models, "builtin", str(clip_4k), "the rabbit", settings,
                           Limits())
    small = estimate_run(models, "builtin", str(ROOT / "examples" / "bigbuckbunny.mp4"),
                             "the rabbit", RunSettings(max_frames=10), Limits())
    assert big.source_size == (2160, 3840) and big.frames == small.frames == 10
    # the same model input size (the model's short side), 36× the source pixels
    assert big.model_s == pytest.approx(small.model_s, rel=1e-6)
    assert big.io_s > 5 * small.io_s and big.io_s > big.model_s


def test_a_video_over_the_length_limit_is_estimated_for_the_frames_processed(one_cpu_thread):
    """The limit is on the work: a 2-s clip (16 frames at 8 fps) against a 1-s limit is
    estimated for its first 8 frames, and the note says so and what the visitor can change."""
    models = ModelCache(model_choices())
    est = estimate_run(models, "builtin", str(EXAMPLE), "the red circle",
                           RunSettings(max_frames=300), Limits(max_duration_s=1.0))
    assert est is not None and est.frames == 8
    assert "first 8 frames of 16" in est.text() and "fps" in est.text() and est.seconds > 0


def test_a_model_that_fails_to_load_has_no_estimate(tmp_path, one_cpu_thread):
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    models = ModelCache(model_choices(checkpoint=bad))
    assert estimate_run(models, None, str(EXAMPLE), "the red circle",
                            RunSettings(max_frames=300), Limits()) is None


def test_the_estimate_says_how_much_faster_than_fp32_a_mode_ran_here(monkeypatch,
                                                                      one_cpu_thread):
    """Once fp32 and a faster mode were both measured on this machine (the estimate's passes),
    the estimate says by how much the mode beat fp32 here, or that it did not."""
    book = SpeedBook()
    book.record("m", "cpu", "fp32", pixels=1000, frames=10, expressions=1, model_s=3.0)
    fast = Speed(backbone_s=0.1, expression_s=0.05, pixels=1000)  # 0.15 s a frame vs 0.3
    assert speedup_note(book, "m", "cpu", "int8", 1000, 1, fast) == (
        "int8 runs this model 2.00× as fast as fp32 on this machine.")
    slow = Speed(backbone_s=0.5, expression_s=0.1, pixels=1000)
    assert "2.00× slower than fp32" in speedup_note(book, "m", "cpu", "int8", 1000, 1, slow)
    assert speedup_note(book, "m", "cpu", "fp32", 1000, 1, fast) == ""
    assert speedup_note(book, "other", "cpu", "int8", 1000, 1, fast) == ""  # no fp32 figure

    monkeypatch.setenv("RVOS_CPU_FLAGS", "sse4_2 avx avx2 fma")  # int8 is offered here
    models = ModelCache(model_choices())
    plain = estimate_run(models, "builtin", str(EXAMPLE), "the red circle",
                         RunSettings(max_frames=300), Limits())
    assert plain is not None and "as fast as fp32" not in plain.text()
    auto = estimate_run(models, "builtin", str(EXAMPLE), "the red circle",
                        RunSettings(max_frames=300, precision="auto"), Limits())
    base = models.speeds.get("builtin", "cpu", "fp32", 128 * 128)
    int8 = models.speeds.get("builtin", "cpu", "int8", 128 * 128)
    assert int8 is not None  # auto ran int8 on this (faked) AVX2 CPU
    ratio = base.per_frame(128 * 128, 1) / int8.per_frame(128 * 128, 1)
    words = (f"runs this model {ratio:.2f}× as fast as fp32" if ratio >= 1
             else f"ran this model {1 / ratio:.2f}× slower than fp32")
    assert f"int8 {words} on this machine" in auto.text()
