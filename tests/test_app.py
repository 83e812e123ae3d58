"""The Gradio app: `/segment` through gradio_client on a running ``python app.py``, its error
messages, and the explorer logic of `rvos.app.session` (rendering never runs the model).

The end-to-end tests use the built-in model (rvos/weights/builtin) and are skipped, saying so,
when it has not been trained yet; ``RVOS_APP_TEST_CHECKPOINT=<model folder>`` runs them with
other weights of the built-in architecture.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from rvos.app.compare import prepare_compare
from rvos.app.inputs import AppInputError, Limits, RunSettings, parse_expressions
from rvos.app.models import ModelCache, ModelChoice, model_choices
from rvos.app.runs import prepare_run
from rvos.app.session import (
    DISPLAY_MAX_SIDE,
    WORDS_ESTIMATE,
    FrameStore,
    Session,
    head_maps_fit,
    query_masks_fit,
)
from rvos.app.text import escape_markdown
from rvos.media.probe import probe
from rvos.media.video import write_video
from rvos.predictor.windows import plan_windows
from rvos.result.schema import RESULT_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ROOT / "rvos" / "weights" / "builtin"
EXAMPLES = ROOT / "examples"
STARTUP_TIMEOUT_S = 120  # generous: 2 shared cores; the page is usually up in 10-20 s


# --------------------------------------------------------------------------- running app


def app_model_args() -> list[str]:
    """Command-line model options for the app under test (skips when there is no model)."""
    override = os.environ.get("RVOS_APP_TEST_CHECKPOINT")
    if override:
        return ["--model", "builtin", "--checkpoint", override]
    if not (BUILTIN / "config.json").is_file():
        pytest.skip(f"the built-in model is not trained yet ({BUILTIN}/config.json is missing); "
                    "set RVOS_APP_TEST_CHECKPOINT=<model folder> to test the app with other "
                    "weights")
    return []


def two_expression_example() -> tuple[Path, list[str]]:
    """The first example clip that comes with two expressions (examples/examples.json)."""
    spec = json.loads((EXAMPLES / "examples.json").read_text())
    for e in spec["synthetic"]:
        if len(e["expressions"]) >= 2:
            return EXAMPLES / e["video"], e["expressions"]
    raise AssertionError("examples.json has no two-expression example")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningApp:
    url: str
    process: subprocess.Popen
    log: Path
    startup_s: float


def start_app(log_dir: Path, *extra: str, env: dict[str, str] | None = None,
              model_args: list[str] | None = None) -> Iterator[RunningApp]:
    """Start ``python app.py --port N`` (plus `model_args`, default `app_model_args()`, and
    ``extra``) with `env` added to the environment, yield once the page is served, stop it
    afterwards. Fails with the app's log if it exits or does not come up in time."""
    port = free_port()
    log = log_dir / f"app-{port}.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", **(env or {}))
    models = app_model_args() if model_args is None else model_args
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), *models, *extra]
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}:\n{log.read_text()}")
            if time.perf_counter() - started > STARTUP_TIMEOUT_S:
                pytest.fail(f"app.py did not serve {url} in {STARTUP_TIMEOUT_S} s:\n"
                            f"{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.25)
        elapsed = time.perf_counter() - started
        print(f"\napp.py served its page {elapsed:.1f} s after launch")
        yield RunningApp(url, proc, log, elapsed)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[RunningApp]:
    # --max-duration 5: the examples last 2 s, so a 6 s clip tests the length limit. The app
    # believes it runs on a laptop-class CPU without bfloat16 hardware (AVX2 only).
    yield from start_app(tmp_path_factory.mktemp("app"), "--max-duration", "5",
                         "--max-frames", "60", env={"RVOS_CPU_FLAGS": "sse4_2 avx avx2 fma"})


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app.url, verbose=False)


# ------------------------------------------------------------------------------ end to end


def test_page_is_served_and_describes_the_demo(app):
    with urllib.request.urlopen(app.url, timeout=10) as response:
        page = response.read().decode()
    assert "ReferFormer" in page
    assert app.startup_s < STARTUP_TIMEOUT_S  # measured and printed by start_app


def test_on_a_cpu_without_bfloat16_hardware_the_page_does_not_offer_bf16(app, client):
    """The app runs with RVOS_CPU_FLAGS of an AVX2-only CPU: its Precision menu offers fp32,
    int8 (1.29× fp32 on such a CPU) and "Fastest on this machine", not bf16 (8× slower there);
    bf16 sent through the API is refused, and auto runs int8 and records it."""
    from gradio_client import handle_file

    with urllib.request.urlopen(app.url + "config", timeout=10) as response:
        config = json.loads(response.read())
    [menu] = [c["props"] for c in config["components"]
              if c.get("props", {}).get("elem_id") == "precision"]
    assert [value for _, value in menu["choices"]] == ["fp32", "int8", "auto"]
    assert menu["value"] == "fp32"
    assert [label for label, _ in menu["choices"]][-1] == "Fastest on this machine"

    video, expressions = two_expression_example()
    clip = handle_file(str(video))
    # Gradio itself refuses a value its menu does not hold, naming what it offers (the reason
    # is the app's own line when the check runs in process: test_precision.py).
    message = _error_of(client, video=clip, expressions=expressions[0], precision="bf16")
    assert "bf16 is not in the list of choices: ['fp32', 'int8', 'auto']" in message
    _, _, result_json, _ = client.predict(video=clip, expressions=expressions[0], max_frames=3,
                                          precision="auto", api_name="/segment")
    assert json.loads(Path(result_json).read_text())["settings"]["precision"] == "int8"


def test_segment_api_returns_the_overlay_and_result_json(client):
    from gradio_client import handle_file

    video, expressions = two_expression_example()
    overlay, masks_zip, result_json, summary = client.predict(
        video=handle_file(str(video)), expressions="\n".join(expressions),
        api_name="/segment")
    source = probe(video)
    out = probe(overlay)
    assert out.num_frames == source.num_frames
    assert (out.width, out.height) == (source.width, source.height)
    assert out.codec == "h264"

    doc = json.loads(Path(result_json).read_text())
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert [e["text"] for e in doc["expressions"]] == expressions
    assert doc["model"] == "builtin"
    assert doc["source"]["num_frames"] == source.num_frames
    assert all(len(e["frames"]) == source.num_frames for e in doc["expressions"])

    with zipfile.ZipFile(masks_zip) as z:
        pngs = [n for n in z.namelist() if n.endswith(".png")]
    assert len(pngs) == len(expressions) * source.num_frames
    for text in expressions:
        assert text in summary


def test_compare_api_returns_both_overlays_of_the_clips_length(client):
    from gradio_client import handle_file

    video, expressions = two_expression_example()
    overlay_a, overlay_b, result_a, result_b, side_by_side, summary = client.predict(
        video=handle_file(str(video)), expressions="\n".join(expressions), model_a="builtin",
        model_b="builtin", api_name="/compare")
    source = probe(video)
    for overlay in (overlay_a, overlay_b):
        info = probe(overlay)
        assert info.num_frames == source.num_frames and info.codec == "h264"
        assert (info.width, info.height) == (source.width, source.height)
    docs = [json.loads(Path(p).read_text()) for p in (result_a, result_b)]
    for doc in docs:
        jsonschema.validate(doc, RESULT_SCHEMA)
        assert doc["model"] == "builtin" and [e["text"] for e in doc["expressions"]] == expressions
        assert all(len(e["frames"]) == source.num_frames for e in doc["expressions"])
        assert doc["outputs"]["overlay"] == Path(overlay_a if doc is docs[0] else overlay_b).name
    # The same model twice gives the same answer (it ran once), side by side frame by frame.
    assert docs[0]["expressions"] == docs[1]["expressions"]
    both = probe(side_by_side)
    assert both.num_frames == source.num_frames and both.width > 2 * source.width
    assert "A: builtin" in summary and "B: builtin" in summary and expressions[0] in summary
    message = _error_of(client, video=handle_file(str(video)), expressions=expressions[0],
                        model_b="ytvos-r5O", api_name="/compare")
    assert "ytvos-r5O" in message and "builtin" in message  # names the choices
    assert "no video" in _error_of(client, video=None, expressions=expressions[0],
                                   api_name="/compare")


def _error_of(client, **kwargs) -> str:
    from gradio_client.exceptions import AppError

    kwargs.setdefault("api_name", "/segment")
    with pytest.raises(AppError) as err:
        client.predict(**kwargs)
    return str(err.value)


def test_bad_input_gives_a_clear_error_and_the_app_keeps_running(client, tmp_path):
    from gradio_client import handle_file

    video, expressions = two_expression_example()
    clip = handle_file(str(video))
    assert "no video" in _error_of(client, video=None, expressions="the red circle")
    assert "no expression" in _error_of(client, video=clip, expressions=" \n  \n")
    assert "at most 4" in _error_of(client, video=clip,
                                    expressions="\n".join(["the red circle"] * 5))
    junk = tmp_path / "notes.mp4"
    junk.write_text("this is not a video")
    assert "Not a video ffmpeg can read" in _error_of(client, video=handle_file(str(junk)),
                                                      expressions="the red circle")
    long_clip = tmp_path / "long.mp4"
    write_video(long_clip, np.zeros((36, 32, 32, 3), np.uint8), 6)  # 6 s
    # The limit is on the work (--max-duration 5 at 6 fps: 30 frames), not on the file: the
    # clip is not refused, its first 30 frames are processed, and the summary says what to
    # change on the page.
    overlay, _, _, summary = client.predict(video=handle_file(str(long_clip)),
                                            expressions="a circle", api_name="/segment")
    assert probe(overlay).num_frames == 30
    assert "first 30 of 36 frames" in summary and "processing fps" in summary
    assert "--max" not in summary
    assert "max_frames" in _error_of(client, video=clip, expressions="a circle",
                                     max_frames=0)

    overlay, *_ = client.predict(video=clip, expressions=expressions[0], max_frames=4,
                                 api_name="/segment")
    assert probe(overlay).num_frames == 4


# ------------------------------------------------------------------- explorer, in process


@pytest.fixture(scope="module")
def session(make_tiny_model, tmp_path_factory, one_cpu_thread) -> Session:
    """A finished run of a tiny random model on an example clip (the model's calls counted)."""
    from rvos.zoo.checkpoint import save_pretrained

    folder = save_pretrained(make_tiny_model(), tmp_path_factory.mktemp("tiny") / "model")
    models = ModelCache([ModelChoice("tiny", "tiny", "checkpoint", folder)])
    video, expressions = two_expression_example()
    run = prepare_run(models, "tiny", str(video), "\n".join(expressions),
                          RunSettings(window=6, max_frames=10), Limits(),
                          tmp_path_factory.mktemp("work"))
    model = models.get("tiny", "cpu")
    calls = {"encode": 0}
    encode = model.encode_video

    def counting_encode(*args, **kwargs):
        calls["encode"] += 1
        return encode(*args, **kwargs)

    model.encode_video = counting_encode
    steps = list(run.steps())
    session = run.finish(steps[-1].result)
    session.model_calls = calls
    session.predictor_heads = model.config.fusion_nheads
    return session


def test_explorer_views_come_from_the_stored_result(session):
    calls = session.model_calls["encode"]
    assert calls == len(plan_windows(10, window=6, overlap=3))  # one backbone pass per window
    assert len(session.frames) == session.num_frames == 10
    first = session.render_queries(0, 0)
    later = session.render_queries(0, 9)
    assert first.shape == (*session.result.source.size, 3)
    assert not np.array_equal(first, later)  # the shapes moved
    words = session.word_choices(1)
    assert words[0] == ("all words", "all") and len(words) == 1 + len(session.result[1].words)
    levels = [v for _, v in session.level_choices()]
    grid = session.render_attention(1, 3, "all", levels[0])
    one = session.render_attention(1, 3, "1", levels[0])
    other_level = session.render_attention(1, 3, "1", levels[-1])
    assert grid.shape != one.shape  # a panel per word vs one heat map
    assert not np.array_equal(one, other_level)
    # A small run keeps every head's maps: the menu offers them, and a head is not the mean.
    heads = session.head_choices()
    m = session.predictor_heads
    assert heads == [("mean of heads", "mean")] + [(f"head {k + 1}", str(k)) for k in range(m)]
    assert np.array_equal(session.render_attention(1, 3, "1", levels[0], "mean"), one)
    first_head = session.render_attention(1, 3, "1", levels[0], "0")
    assert not np.array_equal(first_head, one)
    assert not np.array_equal(first_head, session.render_attention(1, 3, "1", levels[0], "1"))
    # An unknown head falls back to the mean rather than failing the view.
    assert np.array_equal(session.render_attention(1, 3, "1", levels[0], "99"), one)
    with_points = session.render_queries(1, 3, sampling=True)
    assert not np.array_equal(with_points, session.render_queries(1, 3))
    plot = session.render_scores(0, 5)
    assert plot.shape == (240, 640, 3)
    assert session.model_calls["encode"] == calls  # nothing above ran the model


def test_decoder_view_draws_every_layer_and_every_querys_mask(session):
    calls = session.model_calls["encode"]
    e = session.result[1]
    q, layers = e.scores.shape[1], e.num_layers
    assert e.has_query_masks  # a small run keeps every query's mask
    choices = [v for _, v in session.decoder_query_choices()]
    assert choices == ["all", "chosen"] + [str(k) for k in range(q)]
    every = session.render_decoder(1, 4, "all")
    chosen = session.render_decoder(1, 4, "chosen")
    assert np.array_equal(chosen, session.render_decoder(1, 4, str(e.chosen_query[4])))
    other = str((int(e.chosen_query[4]) + 1) % q)
    assert not np.array_equal(every, chosen)
    assert not np.array_equal(chosen, session.render_decoder(1, 4, other))
    assert not np.array_equal(every, session.render_decoder(1, 5, "all"))  # frame by frame
    assert every.shape[1] >= 640  # small clips are drawn larger, so the legend reads
    plot = session.render_layer_scores(1, 4)
    assert plot.shape == (240, 640, 3)
    grid = session.render_query_masks(1, 4)
    full = q * 246 + (q - 1) * 6  # one 240-pixel tile (and its border) per query, in a row
    assert grid.shape[1] == min(full, DISPLAY_MAX_SIDE)
    assert layers == 2
    assert session.model_calls["encode"] == calls


def test_slides_are_exported_from_the_session(session):
    calls = session.model_calls["encode"]
    # The figure alone by default (the GIF takes far longer): issue 20's "Export for slides
    # always builds the GIF".
    assert {p.name for p in session.export_slides(4).values()} == {"figure.png", "figure.pdf"}
    paths = session.export_slides(4, gif=True)
    assert {p.name for p in paths.values()} == {"figure.png", "figure.pdf", "overlay.gif"}
    assert all(p.parent == session.out_dir for p in paths.values())
    from PIL import Image

    with Image.open(paths["gif"]) as gif:
        assert gif.n_frames <= session.num_frames  # (identical frames merge)
    assert Image.open(paths["figure_png"]).width >= 1200
    with pytest.raises(AppInputError, match="between 1 and 12"):
        session.export_slides(0)
    assert session.model_calls["encode"] == calls


def test_query_masks_are_kept_only_when_they_fit_the_budget(make_tiny_model):
    from rvos.predictor.predictor import Predictor

    predictor = Predictor(make_tiny_model(), short_side=360)
    # 360x640 input: 90x160 mask logits per query, one int8 byte each, 5 queries.
    per_frame = 5 * 90 * 160
    assert query_masks_fit(predictor, (720, 1280), 300, 4)  # the app's limits: 86 MB
    budget = 300 * 4 * per_frame / 2**20
    assert query_masks_fit(predictor, (720, 1280), 300, 4, budget_mb=budget)
    assert not query_masks_fit(predictor, (720, 1280), 300, 4, budget_mb=budget - 0.01)


@pytest.fixture(scope="module")
def two_models(make_tiny_model, tmp_path_factory):
    """A model cache with two different tiny models, their backbone calls counted."""
    from rvos.zoo.checkpoint import save_pretrained

    root = tmp_path_factory.mktemp("two")
    choices = [ModelChoice(name, name, "checkpoint",
                               save_pretrained(make_tiny_model(seed=seed), root / name))
               for name, seed in (("tiny_a", 0), ("tiny_b", 1))]
    models = ModelCache(choices)
    calls = {}
    for c in choices:
        model = models.get(c.key, "cpu")
        encode = model.encode_video

        def counting(*args, _encode=encode, _key=c.key, **kwargs):
            calls[_key] = calls.get(_key, 0) + 1
            return _encode(*args, **kwargs)

        model.encode_video = counting
    return models, calls


def test_compare_runs_each_model_once_and_shows_them_in_step(two_models, tmp_path,
                                                             one_cpu_thread):
    models, calls = two_models
    video, expressions = two_expression_example()
    settings = RunSettings(window=8, max_frames=6)
    before = dict(calls)
    run = prepare_compare(models, "tiny_a", "tiny_b", str(video), "\n".join(expressions),
                              settings, Limits(), tmp_path)
    fractions = [f for f, _ in run.steps()]
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    comparison = run.finish()
    assert {k: calls[k] - before.get(k, 0) for k in calls} == {"tiny_a": 1, "tiny_b": 1}
    a, b = comparison.results
    assert a.model_name == "tiny_a" and b.model_name == "tiny_b" and a.num_frames == 6
    assert not np.array_equal(a[0].scores, b[0].scores)
    assert a[0].attention is None and not a[0].has_query_masks  # a comparison needs neither
    for key in ("overlay_a", "overlay_b", "side_by_side"):
        assert probe(comparison.paths[key]).num_frames == 6
    for side in "ab":
        doc = json.loads(comparison.paths[f"result_{side}"].read_text())
        jsonschema.validate(doc, RESULT_SCHEMA)
    view = comparison.render_frame(3)
    assert view.shape[1] > 2 * a.source.width
    assert not np.array_equal(comparison.render_scores(0, 0, 3), comparison.render_scores(1, 0, 3))
    summary = comparison.summary()  # Markdown: names and expressions escaped
    assert escape_markdown("A: tiny_a") in summary
    assert "| " + escape_markdown(expressions[1]) in summary
    assert re.search(r"A \d+\.\d s, B \d+\.\d s", summary)  # each model's own time

    # The same model twice runs once.
    before = dict(calls)
    same = prepare_compare(models, "tiny_b", "tiny_b", str(video), expressions[0],
                               settings, Limits(), tmp_path)
    list(same.steps())
    twice = same.finish()
    assert calls["tiny_b"] - before["tiny_b"] == 1 and twice.results[0] is twice.results[1]
    # One run, one time: not a time for B that is A's again.
    assert re.search(r"run once in \d+\.\d s", twice.summary())
    assert not re.search(r"B \d+\.\d s", twice.summary())


def test_rethresholding_rewrites_the_outputs_without_the_model(session):
    calls = session.model_calls["encode"]
    low, high = session.rethreshold(0.2), session.rethreshold(0.8)
    for s in (low, high):
        doc = json.loads(Path(s.paths["result"]).read_text())
        assert doc["settings"]["threshold"] == s.threshold
        assert probe(s.paths["overlay"]).num_frames == session.num_frames
    areas = [np.array([f["mask_area"] for f in json.loads(
        Path(s.paths["result"]).read_text())["expressions"][0]["frames"]]) for s in (low, high)]
    assert np.all(areas[0] >= areas[1])
    assert "re-thresholded at 0.2" in low.summary()
    assert session.model_calls["encode"] == calls


def test_frames_are_kept_small_and_given_back_at_source_size():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (3, 48, 64, 3), dtype=np.uint8)
    store = FrameStore.from_frames(small)
    assert store.stored_size == (48, 64) and store.frame(2).shape == (48, 64, 3)
    # JPEG keeps a smooth image within a few grey levels.
    ramp = np.broadcast_to(np.linspace(0, 255, 1600, dtype=np.uint8)[None, :, None],
                           (1200, 1600, 3)).copy()
    store = FrameStore.from_frames([ramp], max_side=DISPLAY_MAX_SIDE)
    assert store.stored_size == (720, 960)
    back = store.frame(0)
    assert back.shape == ramp.shape
    assert np.abs(back.astype(int) - ramp).mean() < 3


def test_input_checks_say_what_to_do(tmp_path):
    assert parse_expressions("  the red  circle \n\n a square\n") == ["the red circle",
                                                                          "a square"]
    with pytest.raises(AppInputError, match="no expression"):
        parse_expressions("\n  \n")
    with pytest.raises(AppInputError, match="at most 4"):
        parse_expressions("a\nb\nc\nd\ne")
    limits = Limits(max_frames=50)
    checked = RunSettings(window=12.0, fps=0, max_frames=50.0, short_side=0).checked(limits)
    assert (checked.window, checked.fps, checked.max_frames, checked.short_side) == (
        12, None, 50, None)
    for bad, match in [({"threshold": 1.0}, "threshold"), ({"max_frames": 51}, "1..50"),
                       ({"window": 2.5}, "window"), ({"short_side": 7}, "short_side"),
                       ({"device": "tpu"}, "not available")]:
        with pytest.raises(AppInputError, match=match):
            RunSettings(**{"max_frames": 50, **bad}).checked(limits)
    with pytest.raises(AppInputError, match="checkpoint not found"):
        model_choices(checkpoint=tmp_path / "missing")
    with pytest.raises(AppInputError, match="unknown model"):
        model_choices("ytvos-r5O")


def test_every_heads_maps_are_kept_only_when_they_fit_the_budget(make_tiny_model):
    from rvos.predictor.predictor import Predictor

    predictor = Predictor(make_tiny_model(), short_side=360)
    heads = predictor.model.config.fpn_nheads
    # 360x640 input: 23,980 positions over the eight levels, 2 bytes per head and word.
    per_frame = 23_980 * heads * WORDS_ESTIMATE * 2
    assert head_maps_fit(predictor, (720, 1280), 10, 1)
    assert not head_maps_fit(predictor, (720, 1280), 300, 4,
                                 budget_mb=300 * 4 * per_frame / 2**20 - 1)
    assert head_maps_fit(predictor, (720, 1280), 300, 4,
                             budget_mb=300 * 4 * per_frame / 2**20)


def test_a_segment_run_decodes_its_video_once(tmp_path, monkeypatch):
    """The frame explorer keeps the frames the predictor decodes: a run reads the video once
    (it read it again for the explorer before), and the explorer still has every frame."""
    import sys

    import rvos.media.video
    from rvos.app.inputs import Limits, RunSettings
    from rvos.app.models import ModelCache, model_choices
    from rvos.app.runs import prepare_run

    real, calls = rvos.media.video.iter_frames, []

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    for module in list(sys.modules.values()):  # every module that imported it by name
        if getattr(module, "__name__", "").startswith("rvos") and \
                getattr(module, "iter_frames", None) is real:
            monkeypatch.setattr(module, "iter_frames", counting)
    clip = ROOT / "examples" / "bigbuckbunny.mp4"
    run = prepare_run(ModelCache(model_choices()), "builtin", str(clip), "the big grey rabbit",
                      RunSettings(max_frames=40), Limits(), tmp_path)
    result = None
    for step in run.steps():
        result = step.result or result
    session = run.finish(result)
    assert len(calls) == 1
    assert len(session.frames) == result.num_frames == 40
    assert session.frames.frame(39).shape == (result.source.height, result.source.width, 3)
