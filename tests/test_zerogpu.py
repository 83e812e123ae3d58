"""ZeroGPU (`rvos.app.zerogpu`): without the ``spaces`` package nothing changes; with it and
``SPACES_ZERO_GPU`` set, every model call of the app runs inside ``spaces.GPU`` with a duration
from rvos's estimate.

The ``spaces`` package is not installed here (it only works on a Space). Where a test needs it,
it writes a small module named ``spaces`` into a temporary folder on ``sys.path`` whose ``GPU``
does what the real decorator does for the caller: calls ``duration`` with the function's
arguments, then the function (the real one does so in a GPU worker process, which this one
does not), and logs each call, so the test sees what the app asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_app import EXAMPLES, start_app

from rvos.app import zerogpu
from rvos.app.inputs import Limits, RunSettings, check_video
from rvos.app.models import ModelCache, model_choices
from rvos.app.runs import prepare_run
from rvos.modeling.processing import model_short_side, resized_size
from rvos.predictor.estimate import estimate

CLIP = EXAMPLES / "shapes_00002.mp4"

SPACES = '''
"""A stand-in for Hugging Face's ``spaces`` package (tests only): GPU(duration=...) calls
duration with the function's arguments, logs the seconds and runs the function here."""
import json, os

def GPU(task=None, *, duration=60):
    def wrap(fn):
        def run(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            with open(os.environ["SPACES_TEST_LOG"], "a") as log:
                log.write(json.dumps({"function": fn.__name__, "duration": seconds}) + "\\n")
            return fn(*args, **kwargs)
        run.__wrapped__ = fn
        return run
    return wrap(task) if task is not None else wrap
'''


@pytest.fixture
def spaces_module(tmp_path, monkeypatch):
    """A ``spaces`` module on sys.path, ``SPACES_ZERO_GPU`` set, calls logged to a file."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "spaces.py").write_text(textwrap.dedent(SPACES))
    log = tmp_path / "spaces.log"
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setenv("SPACES_TEST_LOG", str(log))
    importlib.invalidate_caches()
    yield folder, log
    sys.modules.pop("spaces", None)


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_without_spaces_the_wrapper_is_the_function_itself(monkeypatch):
    if importlib.util.find_spec("spaces") is not None:
        pytest.skip("the spaces package is installed here")
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")  # set, but no package: not ZeroGPU

    def run(x):
        return x + 1

    assert not zerogpu.zero_gpu()
    assert zerogpu.on_gpu(run, lambda x: 1) is run
    assert zerogpu.start_up_device("cuda") == "cuda"
    assert "spaces" not in sys.modules


def test_with_spaces_but_not_on_zerogpu_nothing_changes(spaces_module, monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "false")

    def run(x):
        return x

    assert zerogpu.on_gpu(run, lambda x: 1) is run


def test_on_zerogpu_calls_go_through_spaces_gpu_with_their_duration(spaces_module):
    _, log = spaces_module
    assert zerogpu.zero_gpu()
    assert zerogpu.start_up_device("cuda") == "cpu"  # no GPU outside a spaces.GPU call

    def steps(n):
        yield from range(n)

    wrapped = zerogpu.on_gpu(steps, lambda n: 20 + n)
    assert wrapped is not steps
    assert list(wrapped(3)) == [0, 1, 2]
    assert _calls(log) == [{"function": "steps", "duration": 23}]


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(1)
    return ModelCache(model_choices("builtin"))


def test_duration_comes_from_a_measured_estimate(models):
    net = models.get("builtin", "cpu")
    info = check_video(str(CLIP), Limits())
    side = model_short_side(net)
    h, w = (info.height, info.width) if side is None else resized_size(info.height, info.width,
                                                                       side)
    speed = models.speeds.measure(net, "builtin", "cpu", "fp32", (h, w))
    est = estimate(speed, h * w, 1, "cpu", frames_at=lambda fps: info.num_frames, fps=None,
                   window=36, source_fps=info.fps, io=models.speeds.io(),
                   source_size=(info.height, info.width))
    want = math.ceil(zerogpu.MARGIN * est.seconds + zerogpu.LOAD_S)
    assert zerogpu.duration_s(est) == min(max(want, zerogpu.MIN_S), zerogpu.max_seconds())
    assert zerogpu.duration_s(None) == zerogpu.DEFAULT_S


def test_run_duration_follows_the_recorded_speed(models, spaces_module, monkeypatch, tmp_path):
    limits, settings = Limits(), RunSettings()
    # Nothing recorded for this device: ZeroGPU's main process cannot measure, so the default.
    fresh = ModelCache(model_choices("builtin"))
    assert zerogpu.run_duration(fresh, limits, "builtin", str(CLIP), 1, settings) == \
        zerogpu.DEFAULT_S
    # The page's estimate on ZeroGPU neither measures (that would need the GPU) nor guesses.
    assert zerogpu.recorded_estimate(fresh, limits, "builtin", str(CLIP), 1, settings) is None
    assert not fresh.speeds._speeds
    # A real run, recorded as the app does after a GPU call.
    run = prepare_run(fresh, "builtin", str(CLIP), "the red square", settings, limits,
                      tmp_path, details=False)
    result = list(run.steps())[-1].result
    h, w = result.settings["input_size"]
    zerogpu.record_run(fresh, "builtin", settings.checked(limits), (h, w),
                       sum(e - s for s, e in result.windows), 1, result.timings["model_s"])
    est = zerogpu.recorded_estimate(fresh, limits, "builtin", str(CLIP), 1, settings)
    assert est is not None and est.frames == 16 and est.seconds > 0
    assert zerogpu.duration_s(est) == zerogpu.run_duration(fresh, limits, "builtin", str(CLIP),
                                                           1, settings)
    one = zerogpu.run_duration(fresh, limits, "builtin", str(CLIP), 1, settings)
    many = zerogpu.run_duration(fresh, limits, "builtin", str(CLIP), 400, settings)
    assert zerogpu.MIN_S <= one < many <= zerogpu.max_seconds()
    monkeypatch.setenv("RVOS_ZEROGPU_MAX_S", "40")
    assert zerogpu.run_duration(fresh, limits, "builtin", str(CLIP), 400, settings) == 40


@pytest.mark.slow
def test_the_app_runs_segment_and_word_importance_inside_spaces_gpu(spaces_module, tmp_path):
    from gradio_client import Client, handle_file

    folder, log = spaces_module
    env = {"SPACES_ZERO_GPU": "true", "SPACES_TEST_LOG": str(log), "PYTHONPATH": str(folder)}
    for app in start_app(tmp_path, "--threads", "1", env=env):
        client = Client(app.url, verbose=False)
        overlay, *_ = client.predict(handle_file(str(CLIP)), "the red square",
                                     api_name="/segment")
        assert Path(overlay).is_file()
        doc = client.predict(handle_file(str(CLIP)), "the red square",
                             api_name="/word_importance")
        assert [w["word"] for w in doc["words"]] == ["the", "red", "square"]
        calls = _calls(log)
        assert [c["function"] for c in calls] == ["_segment_steps", "_words_steps"]
        # The first call had no speed on record: the default; the second one's comes from the
        # first run's speed (the main process recorded it).
        assert calls[0]["duration"] == zerogpu.DEFAULT_S
        assert zerogpu.MIN_S <= calls[1]["duration"] <= zerogpu.max_seconds()


def test_a_model_on_another_device_is_a_copy_of_the_cpu_one_not_a_reload(models, monkeypatch):
    """On ZeroGPU the model is loaded on the CPU at start-up and every GPU call asks for it on
    "cuda": that copy comes from memory, with the same weights, not from the file again.
    ("cpu:0" stands in for "cuda" here: another device key, no GPU needed.)"""
    on_cpu = models.get(None, "cpu")

    def no_reload(*args, **kwargs):
        raise AssertionError("the weights were read from disk again")

    monkeypatch.setattr(models, "_load", no_reload)
    other = models.get(None, "cpu:0")
    assert other is not on_cpu and models.get(None, "cpu:0") is other
    assert not other.training and other.tokenizer is not None
    theirs, mine = on_cpu.state_dict(), other.state_dict()
    assert theirs.keys() == mine.keys()
    for name, value in theirs.items():
        assert torch.equal(value, mine[name]), name
        assert value.data_ptr() != mine[name].data_ptr(), name  # a copy, not shared storage
