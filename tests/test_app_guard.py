"""The page's callbacks, called in process on a real run of a tiny model: a view that fails shows
a notice in its place and leaves the others filled, a failed Segment shows its message as text
(no server path) and leaves the explorer alone, the slides come without the GIF, a run's folder
goes when the run fails or is stopped, and the app removes its work folder on SIGTERM."""

from __future__ import annotations

import importlib.util
import logging
import signal
import subprocess

import numpy as np
import pytest
from test_app import ROOT, start_app, two_expression_example

from rvos.app.inputs import Limits, RunSettings
from rvos.app.models import ModelCache, ModelChoice
from rvos.app.runs import prepare_run
from rvos.app.session import Session

XSS = ["<img src=x>", "![t](http://127.0.0.1:9/track.png)", '"><iframe src=about:blank>']


def _load_app():
    spec = importlib.util.spec_from_file_location("rvos_app_under_test", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def page(make_tiny_model, tmp_path_factory, one_cpu_thread):
    """The demo built around a tiny model: ``(callbacks by name, models, work folder)``."""
    from rvos.zoo.checkpoint import save_pretrained

    folder = save_pretrained(make_tiny_model(), tmp_path_factory.mktemp("tiny") / "model")
    models = ModelCache([ModelChoice("tiny", "tiny", "checkpoint", folder)])
    work = tmp_path_factory.mktemp("work")
    app = _load_app()
    demo = app.build_demo(models, Limits(max_frames=12), "cpu", work)
    fns = {}
    for block_fn in demo.fns.values():
        fns.setdefault(block_fn.fn.__name__ if block_fn.fn else None, block_fn.fn)
    return fns, models, work


def _segment(fns, video, text, **kwargs):
    """Run the page's Segment to the end: its last output values."""
    args = {"model": "tiny", "window": 6, "max_frames": 8, "previous": None, **kwargs}
    return list(fns["segment_page"](str(video) if video else None, text, **args))[-1]


@pytest.fixture(scope="module")
def segmented(page):
    fns, _, _ = page
    video, expressions = two_expression_example()
    *outputs, status, fresh = _segment(fns, video, "\n".join([expressions[0], *XSS]))
    assert status == "" and fresh is True
    return outputs


def test_a_failing_view_shows_a_notice_and_every_other_view_fills(page, segmented,
                                                                  monkeypatch, caplog):
    fns, _, _ = page
    session = segmented[4]
    assert isinstance(session, Session)

    def broken(*args, **kwargs):
        raise ValueError("tipLength > 0 asserted")

    monkeypatch.setattr(Session, "render_scores", broken)
    with caplog.at_level(logging.ERROR, logger="rvos.app"):
        values = fns["explore"](session, True)
    controls, images = values[:6], values[6:]
    assert len(images) == 6
    assert all(isinstance(v, np.ndarray) and v.ndim == 3 for v in images)
    # The controls were filled, the expression menu included.
    assert [c for c, _ in controls[1].choices][1].startswith("2: ")
    # The scores view (third) is a notice that says which view failed and why.
    from rvos.viz import draw as visualize

    notice = images[2]
    assert notice.shape[1] == 640
    words = visualize.notice(640, "The Scores view could not be drawn here (ValueError: "
                                  "tipLength > 0 asserted)")
    assert np.array_equal(notice, words)
    # The others are the real drawings.
    assert images[0].shape[:2] == session.result.source.size
    assert "tipLength" in caplog.text and "Traceback" in caplog.text


def test_a_failing_control_still_lets_the_views_fill(page, segmented, monkeypatch):
    fns, _, _ = page
    session = segmented[4]
    monkeypatch.setattr(Session, "word_choices", lambda *a: 1 / 0)
    values = fns["explore"](session, True)
    assert all(isinstance(v, np.ndarray) for v in values[6:])


def test_explorer_stays_as_it_was_after_a_failed_segment(page, segmented):
    fns, _, _ = page
    assert fns["explore"](segmented[4], False) == (fns["explore"](None))


def test_expressions_are_shown_as_text_in_the_summary(segmented):
    summary = segmented[3]
    import markdown_it

    html = markdown_it.MarkdownIt("commonmark").enable("table").render(summary)
    assert "<img" not in html and "<iframe" not in html and "<a " not in html
    for text in XSS:  # each is visible literally once the Markdown is rendered
        shown = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
            .replace('"', "&quot;")
        assert shown in html, (shown, html)


def test_a_failed_segment_says_why_as_text_without_server_paths(page, tmp_path):
    fns, _, work = page
    video, _ = two_expression_example()
    *outputs, status, fresh = _segment(fns, video, "  \n ")
    assert fresh is False and all(o == {"__type__": "update"} for o in outputs)
    assert "no expression" in status and status.startswith("**Error:**")
    junk = tmp_path / "my holiday.mp4"
    junk.write_text("not a video")
    *_, status, fresh = _segment(fns, junk, "a circle")
    assert "Not a video ffmpeg can read" in status and "my holiday.mp4" in status
    assert str(tmp_path) not in status and "/tmp" not in status, status
    # An API error is as clean.
    with pytest.raises(Exception) as err:
        list(fns["segment"](str(junk), "a circle", "tiny"))
    assert "my holiday.mp4" in err.value.message and str(tmp_path) not in err.value.message
    assert not list(work.glob("run-*")) or all(  # no partial folder of the failed runs
        (d / "result.json").exists() or (d / "overlay.mp4").exists() for d in work.glob("run-*"))


def test_a_stopped_or_failed_run_removes_its_folder(page, monkeypatch):
    fns, models, work = page
    video, expressions = two_expression_example()
    before = set(work.glob("run-*"))
    run = prepare_run(models, "tiny", str(video), expressions[0],
                          RunSettings(window=4, max_frames=12), Limits(), work)
    steps = run.steps()
    next(steps)
    assert set(work.glob("run-*")) - before  # it writes while it runs
    steps.close()  # what Stop does
    assert set(work.glob("run-*")) == before

    run = prepare_run(models, "tiny", str(video), expressions[0],
                          RunSettings(window=4, max_frames=12), Limits(), work)
    original = run.predictor.iter_predict

    def failing(*args, **kwargs):
        for k, step in enumerate(original(*args, **kwargs)):
            if k == 1:
                raise OSError("disk full")
            yield step

    monkeypatch.setattr(run.predictor, "iter_predict", failing)
    with pytest.raises(OSError):
        list(run.steps())
    assert set(work.glob("run-*")) == before


def test_slides_come_without_the_gif_and_the_gif_on_request(page, segmented):
    fns, _, _ = page
    session = segmented[4]
    png, pdf, status = fns["export_slides"](session, 3)
    assert status == ""
    assert png.value["orig_name"] == "figure.png" and pdf.value["orig_name"] == "figure.pdf"
    assert not (session.out_dir / "overlay.gif").exists()
    gif, status = fns["export_gif"](session)
    assert status == "" and gif.value["orig_name"] == "overlay.gif"
    assert (session.out_dir / "overlay.gif").stat().st_size > 1000


def test_a_long_video_is_processed_up_to_the_frame_limit(page, tmp_path):
    """The limit is on the work: a video longer than --max-duration is not refused; a run
    covers its first frames up to the limit, and the summary says what to change on the page."""
    from rvos.media.video import write_video

    _, models, work = page
    clip = tmp_path / "long.mp4"
    write_video(clip, np.random.default_rng(0).integers(0, 255, (40, 32, 32, 3), np.uint8), 4)
    limits = Limits(max_duration_s=5, max_frames=30)  # the clip lasts 10 s: 40 frames
    run = prepare_run(models, "tiny", str(clip), "a circle",
                          RunSettings(window=6, max_frames=8), limits, work)
    assert run.num_frames == 8
    # Max frames 30 asked, 5 s at 4 fps allowed: the first 20 frames.
    run = prepare_run(models, "tiny", str(clip), "a circle",
                          RunSettings(window=6, max_frames=30), limits, work)
    assert run.num_frames == 20
    result = list(run.steps())[-1].result
    assert result.num_frames == 20
    note = run.notes(result)[0]
    assert "first 20 of 40 frames" in note and "at most 20 frames" in note
    assert "processing fps" in note and "--" not in note  # no advice for the operator
    run.discard()
    run = prepare_run(models, "tiny", str(clip), "a circle",
                          RunSettings(window=6, max_frames=30, fps=1), limits, work)
    assert run.num_frames == 10  # 10 s at 1 fps: all of it


def test_sigterm_removes_the_work_folder(tmp_path):
    parent = tmp_path / "work"
    gen = start_app(tmp_path, env={"RVOS_WORK_DIR": str(parent)})
    app = next(gen)
    try:
        folders = list(parent.glob("rvos-app-*"))
        assert len(folders) == 1 and f"work folder {folders[0]}" in app.log.read_text()
        (folders[0] / "run-x").mkdir()  # what a run leaves while it goes
        app.process.send_signal(signal.SIGTERM)
        try:
            app.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"app.py did not stop on SIGTERM:\n{app.log.read_text()}")
        assert not folders[0].exists(), app.log.read_text()
    finally:
        gen.close()
