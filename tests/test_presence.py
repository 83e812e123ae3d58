"""Presence (issue 23): each frame's answer carries the chosen query's score as its presence;
below the presence threshold the frame's mask is empty and the frame counts as "not found".

On real data: the built-in model on the example clips (examples/*.mp4), its outputs on disk,
the original procedure (`run_original`) as the reference for "0 changes nothing".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from rvos.app.models import ModelCache, ModelChoice
from rvos.app.session import found_text
from rvos.cli.predict import add_cli_arguments, run_cli
from rvos.media.labels import read_label_png
from rvos.media.video import read_video
from rvos.modeling.processing import run_original
from rvos.predictor.predictor import Predictor
from rvos.predictor.presence import (
    DEFAULT_PRESENCE_THRESHOLD,
    folder_presence_threshold,
    model_presence_threshold,
)
from rvos.result.schema import RESULT_SCHEMA
from rvos.result.threshold import with_threshold
from rvos.result.writer import write_outputs
from rvos.zoo.checkpoint import load_pretrained, save_pretrained
from rvos.zoo.loader import load_model
from rvos.zoo.registry import BUILTIN_DIR

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "examples" / "shapes_00001.mp4"
TEXTS = ["the square that is not moving", "the medium sized object"]

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def builtin():
    return load_model("builtin")


@pytest.fixture(scope="module")
def at_zero(builtin):
    return Predictor(builtin, presence_threshold=0.0).predict(str(CLIP), TEXTS)


@pytest.fixture(scope="module")
def at_one(builtin):
    return Predictor(builtin, presence_threshold=1.0).predict(str(CLIP), TEXTS)


def _shaded_columns(image: np.ndarray) -> int:
    """Columns of a score plot that carry the "not found" shade (255, 222, 222)."""
    shade = (image == np.array([255, 222, 222], np.uint8)).all(-1)
    return int(shade.any(0).sum())


def test_threshold_one_empties_every_frame_and_says_so(at_one, at_zero):
    for e, full in zip(at_one, at_zero, strict=True):
        assert e.presence_threshold == 1.0
        assert not e.found.any()
        assert (e.mask_areas == 0).all()
        assert not any(e.mask(t).any() for t in range(e.num_frames))
        # ... although the model did answer there (a real test: the masks were not empty).
        assert (full.mask_areas > 0).sum() > e.num_frames // 2
        assert found_text(e).startswith(f"found on 0 of {e.num_frames} frames (presence ≥ 1)")
        assert found_text(full).startswith(f"found on {full.num_frames} of {full.num_frames}")
    # The timeline shades every frame as not found, and only there.
    shaded = _shaded_columns(at_one.render_scores(0, 0))
    assert shaded > 500  # the whole plot width (640 px image)
    assert _shaded_columns(at_zero.render_scores(0, 0)) == 0


def test_threshold_zero_is_the_original_procedure(builtin, at_zero):
    frames, _ = read_video(str(CLIP))
    default = Predictor(builtin).predict(str(CLIP), TEXTS)
    for k, text in enumerate(TEXTS):
        original = run_original(builtin, frames, text, short_side=at_zero.settings["short_side"])
        masks = np.stack(list(at_zero[k].masks()))
        np.testing.assert_array_equal(masks, original["masks"].numpy())
        assert at_zero[k].found.all()
        assert 0 < masks.sum() < masks.size
        if model_presence_threshold(builtin) == 0.0:  # until the model names its own
            assert all((a == b).all() for a, b in zip(default[k].rle, at_zero[k].rle,
                                                      strict=True))


def test_a_middle_threshold_empties_exactly_the_frames_below_it(at_zero):
    e = at_zero[0]
    cut = float(np.median(e.presence))
    some = with_threshold(at_zero, None, cut)[0]
    below = e.presence < cut
    assert below.any() and not below.all()
    np.testing.assert_array_equal(some.found, ~below)
    for t in range(e.num_frames):
        expected = np.zeros(e.size, bool) if below[t] else e.mask(t)
        np.testing.assert_array_equal(some.mask(t), expected)
    assert (some.mask_areas[below] == 0).all()
    # Back to 0: the masks kept aside come back exactly.
    back = with_threshold(with_threshold(at_zero, None, cut), None, 0.0)[0]
    assert all((a == b).all() for a, b in zip(back.rle, e.rle, strict=True))


def test_the_predictor_and_rethresholding_agree(builtin, at_zero):
    cut = float(np.median(at_zero[1].presence))
    fresh = Predictor(builtin, presence_threshold=cut).predict(str(CLIP), TEXTS)
    later = with_threshold(at_zero, None, cut)
    for a, b in zip(fresh, later, strict=True):
        np.testing.assert_array_equal(a.found, b.found)
        assert all((x == y).all() for x, y in zip(a.rle, b.rle, strict=True))
        assert a.absent_rle.keys() == b.absent_rle.keys()
    # A lower mask threshold and a presence threshold together.
    both = with_threshold(at_zero, 0.3, cut)[1]
    assert both.threshold == 0.3 and both.presence_threshold == cut
    for t in np.flatnonzero(~both.found):
        assert not both.mask(t).any()


def test_result_json_records_presence_and_the_pngs_are_empty_where_not_found(at_zero,
                                                                             tmp_path):
    cut = float(np.median(at_zero[0].presence))
    result = with_threshold(at_zero, None, cut)
    paths = write_outputs(result, tmp_path)
    doc = json.loads(paths["result"].read_text())
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["settings"]["presence_threshold"] == cut
    for k, e in enumerate(result):
        entry = doc["expressions"][k]
        assert entry["presence_threshold"] == cut
        assert entry["found_frames"] == int(e.found.sum())
        frames = entry["frames"]
        assert [f["found"] for f in frames] == e.found.tolist()
        np.testing.assert_allclose([f["presence"] for f in frames], e.presence, atol=5e-5)
        for t, f in enumerate(frames):
            png = read_label_png(paths["masks"] / str(k) / f"{t:05d}.png")
            assert (png > 0).sum() == f["mask_area"] == e.mask_areas[t]
            if not f["found"]:
                assert f["mask_area"] == 0


def test_a_model_folder_names_its_own_threshold(make_tiny_model, tmp_path):
    folder = save_pretrained(make_tiny_model(), tmp_path / "m", presence_threshold=0.35)
    model = load_pretrained(folder)
    assert model_presence_threshold(model) == 0.35
    assert Predictor(model).presence_threshold == 0.35
    assert Predictor(model, presence_threshold=0.0).presence_threshold == 0.0
    assert folder_presence_threshold(folder) == 0.35  # without loading it (the app's menu)
    cache = ModelCache([ModelChoice("m", "m", "checkpoint", folder)])
    assert cache.presence_threshold("m") == 0.35
    plain = save_pretrained(make_tiny_model(), tmp_path / "plain")
    assert model_presence_threshold(load_pretrained(plain)) == DEFAULT_PRESENCE_THRESHOLD == 0.0
    # The built-in model: its config.json's value when it names one, else 0.
    meta = json.loads((BUILTIN_DIR / "config.json").read_text())
    assert folder_presence_threshold(BUILTIN_DIR) == meta.get("presence_threshold", 0.0)
    with pytest.raises(ValueError, match=r"presence_threshold must be a number in \[0, 1\]"):
        Predictor(model, presence_threshold=1.5)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rvos predict")
    add_cli_arguments(parser)
    return run_cli(parser.parse_args(argv))


def test_cli_presence_threshold(tmp_path, capsys):
    out = tmp_path / "out"
    assert _cli([str(CLIP), "--text", TEXTS[0], "--out", str(out), "--quiet",
                 "--presence-threshold", "1"]) == 0
    doc = json.loads((out / "result.json").read_text())
    assert doc["settings"]["presence_threshold"] == 1.0
    assert not any(f["found"] or f["mask_area"] for f in doc["expressions"][0]["frames"])
    capsys.readouterr()
    assert _cli([str(CLIP), "--text", "x", "--out", str(tmp_path / "bad"),
                 "--presence-threshold", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rvos predict: error: --presence-threshold must be between 0 and 1, got 1.5"]
