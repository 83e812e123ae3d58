"""Uploaded mask zips (`rvos.app.masks_zip`), Evaluate (`rvos.app.evaluate`) and Compare with
another system's masks as B (`rvos.app.compare`), in process, on real data: the built-in
model's answer on an example clip, written as masks.zip by rvos itself, is the ground truth
(or model B) in the layouts other tools write, changed (eroded, shifted) or broken on purpose.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from test_app import BUILTIN, two_expression_example

from rvos.app import masks_zip
from rvos.app.compare import prepare_compare
from rvos.app.evaluate import clip_frames, evaluate_result, read_truth, write_scores
from rvos.app.inputs import AppInputError, Limits, RunSettings
from rvos.app.masks_zip import MasksZip, MasksZipError
from rvos.app.models import ModelCache, model_choices
from rvos.app.session import FrameStore
from rvos.app.text import escape_markdown
from rvos.eval.metrics import f_measure, jaccard
from rvos.media.labels import label_png_bytes
from rvos.media.probe import probe


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """(video, expressions, result, masks.zip) of the built-in model on a two-expression
    example, written by rvos."""
    if not (BUILTIN / "config.json").is_file():
        pytest.skip("the built-in model is not trained yet")
    from rvos.predictor.predictor import Predictor
    from rvos.zoo.loader import load_model

    video, expressions = two_expression_example()
    out = tmp_path_factory.mktemp("predicted")
    result = Predictor(load_model("builtin")).predict(str(video), expressions, out_dir=out)
    return video, expressions, result, out / "masks.zip"


def _masks(result) -> list[list[np.ndarray]]:
    return [list(e.masks()) for e in result]


def _png(array: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=None).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _per_folder(path: Path, masks: list[list[np.ndarray]], folder="{k}/", name="{t:05d}.png",
                start: int = 0) -> Path:
    """One folder per expression of 0/255 greyscale PNGs."""
    return _zip(path, {folder.format(k=k) + name.format(t=t + start):
                       _png(m.astype(np.uint8) * 255) for k, frames in enumerate(masks)
                       for t, m in enumerate(frames)})


def _message(call) -> str:
    with pytest.raises(AppInputError) as err:
        call()
    text = str(err.value)
    assert "\n" not in text and "/tmp" not in text  # one line, no server folder
    return text


def test_rvos_masks_zip_scores_itself_100(predicted, tmp_path):
    video, expressions, result, zipped = predicted
    truth = read_truth(str(zipped), expressions, result.num_frames, result.source.size)
    assert [t.text for t in truth] == expressions
    for k, frames in enumerate(_masks(result)):
        assert all(np.array_equal(a, b) for a, b in zip(truth[k].masks(), frames, strict=True))
    scored = evaluate_result(result, truth, model="builtin")
    assert scored.overall() == {"J": 100.0, "F": 100.0, "J&F": 100.0}
    assert scored.j.shape == (2, result.num_frames) and (scored.j == 1).all()
    paths = write_scores(scored, tmp_path)
    doc = json.loads(paths["json"].read_text())
    assert doc["overall"]["J&F"] == 100 and len(doc["expressions"][1]["frames"]) == 16
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert len(rows) == 2 * 16 + 2 + 1
    assert rows[-1]["expression"] == "all" and rows[-1]["J&F"] == "100.00"
    assert rows[0]["text"] == expressions[0] and rows[0]["frame"] == "0"
    # What a visitor typed shows as text in the summary (the CSV and JSON keep it as typed).
    typed = ["<img src=x onerror=alert(1)>", "![t](http://127.0.0.1:9/x.png) | *b*"]
    marked = evaluate_result(result, read_truth(str(zipped), typed, result.num_frames,
                                                result.source.size))
    for text in typed:
        assert escape_markdown(text) in marked.summary() and text not in marked.summary()
        assert text in marked.to_csv() and text in json.dumps(marked.to_json(),
                                                              ensure_ascii=False)


def test_eroded_and_shifted_truth_score_lower_by_the_right_amount(predicted, tmp_path):
    video, expressions, result, _ = predicted
    masks = _masks(result)
    kernel = np.ones((5, 5), np.uint8)
    eroded = [[cv2.erode(m.astype(np.uint8), kernel).astype(bool) for m in f] for f in masks]
    # SAM2-style names numbered from 1, folders by name, 0/255 greyscale PNGs.
    gt = _per_folder(tmp_path / "eroded.zip", eroded, folder="obj_{k}/",
                     name="frame_{t:04d}.png", start=1)
    truth = read_truth(str(gt), expressions, result.num_frames, result.source.size)
    scored = evaluate_result(result, truth)
    # The eroded object lies inside the predicted one: J = its area / the predicted area.
    for k in range(2):
        expected = [e.sum() / max(m.sum(), 1) if m.any() else 1.0
                    for e, m in zip(eroded[k], masks[k], strict=True)]
        np.testing.assert_allclose(scored.j[k], expected, atol=1e-12)
    assert scored.overall()["J&F"] < 95 and (scored.f < 1).any()

    shifted = [[np.roll(m, 8, axis=1) for m in f] for f in masks]
    truth = read_truth(str(_per_folder(tmp_path / "shifted.zip", shifted)), expressions,
                       result.num_frames, result.source.size)
    moved = evaluate_result(result, truth)
    for k in range(2):  # the same numbers as the DAVIS metrics on the arrays
        np.testing.assert_allclose(moved.j[k], jaccard(np.stack(shifted[k]),
                                                       np.stack(masks[k])))
        np.testing.assert_allclose(moved.f[k], f_measure(np.stack(shifted[k]),
                                                         np.stack(masks[k])))
    assert moved.overall()["J&F"] < 90
    # The worst frames are the lowest (J + F) / 2 of all, worst first.
    worst = moved.to_json()["worst_frames"]
    per_frame = (moved.j + moved.f) / 2
    assert len(worst) == 3
    assert per_frame[worst[0]["expression"], worst[0]["frame"]] == per_frame.min()
    image = moved.render_worst(result, truth, FrameStore.from_result(result, str(video)))
    assert image.shape[0] >= 3 * 360 and image.shape[1] > 2 * 360
    assert moved.render_curves(2).shape[0] == 400
    summary = moved.summary()
    assert f"J&F {moved.overall()['J&F']:.1f}" in summary
    assert escape_markdown(expressions[0]) in summary


def test_other_tools_layouts_read_as_the_same_masks(predicted, tmp_path):
    video, expressions, result, _ = predicted
    masks = _masks(result)
    size = result.source.size

    def same(zip_path, message=""):
        got = MasksZip.open(zip_path).read(expressions, 16, size)
        for k in range(2):
            assert all(np.array_equal(a, b) for a, b in zip(got[k].masks(), masks[k],
                                                            strict=True)), message

    # DAVIS: one folder, palette PNGs whose value k is expression k (from 1), nested in
    # Annotations/<video>/, with an archiver's litter and a text file beside it.
    labels = [np.where(masks[1][t], 2, 0).astype(np.uint8) for t in range(16)]
    for t in range(16):
        labels[t][masks[0][t]] = 1  # where both overlap, DAVIS keeps one id: not here
    overlap = any((masks[0][t] & masks[1][t]).any() for t in range(16))
    files = {f"Annotations/clip/{t:05d}.png": label_png_bytes(labels[t]) for t in range(16)}
    files |= {"__MACOSX/Annotations/clip/._00000.png": b"junk", "README.txt": b"hello"}
    davis = _zip(tmp_path / "davis.zip", files)
    if not overlap:
        same(davis, "DAVIS label layout")
    got = MasksZip.open(davis).read(expressions, 16, size)
    assert all(np.array_equal(a, b) for a, b in zip(got[0].masks(), masks[0], strict=True))
    # The same labels drawn as RGB in the DAVIS palette read as the same ids.
    from rvos.media.labels import davis_palette

    rgb = {f"{t}.png": _png(davis_palette()[labels[t]], "RGB") for t in range(16)}
    got_rgb = MasksZip.open(_zip(tmp_path / "rgb.zip", rgb)).read(expressions, 16, size)
    for k in range(2):
        assert all(np.array_equal(a, b) for a, b in zip(got_rgb[k].masks(), got[k].masks(),
                                                        strict=True))
    # Numbers sort as numbers: obj9 before obj10, 2.png before 10.png (text order would not).
    files = {f"obj{9 + k}/{t + 1}.png": _png(masks[k][t].astype(np.uint8) * 255)
             for k in range(2) for t in range(16)}
    same(_zip(tmp_path / "natural.zip", files), "numeric order")
    # A Ref-YouTube-VOS submission (ReferFormer's, ReferDINO's): Annotations/<video>/<exp_id>/
    # with the source frames' names, every 5th number, as 0/255 PNGs.
    files = {f"Annotations/abc123/{k}/{5 * t:05d}.png": _png(masks[k][t].astype(np.uint8) * 255)
             for k in range(2) for t in range(16)}
    same(_zip(tmp_path / "ytvos.zip", files), "Ref-YouTube-VOS layout")
    # One expression: any non-zero pixel of a single folder is the object.
    one = MasksZip.open(_per_folder(tmp_path / "one.zip", masks[:1], folder="")).read(
        expressions[:1], 16, size)
    assert all(np.array_equal(a, b) for a, b in zip(one[0].masks(), masks[0], strict=True))


def test_bad_zips_get_a_specific_one_line_message(predicted, tmp_path, monkeypatch):
    video, expressions, result, zipped = predicted
    masks = _masks(result)
    size = result.source.size

    def read(path, k=2, frames=16, shape=size):
        return MasksZip.open(path and str(path), "ground truth").read(expressions[:k], frames,
                                                                  shape)

    text = tmp_path / "notes.zip"
    text.write_text("not a zip at all")
    assert "notes.zip is not a zip file" in _message(lambda: read(text))
    assert "no ground truth zip" in _message(lambda: read(None))
    # One frame missing, with the settings to check in the message.
    short = _per_folder(tmp_path / "short.zip", [f[:15] for f in masks])
    message = _message(lambda: read(short))
    assert "15 PNG masks" in message and "16 processed frames" in message
    # Frames of another size.
    small = {f"{k}/{t:05d}.png": _png(np.zeros((128, 96), np.uint8)) for k in range(2)
             for t in range(16)}
    message = _message(lambda: read(_zip(tmp_path / "small.zip", small)))
    assert "is 96×128; the clip's frames are 256×256" in message
    # Names that climb out of the zip refuse the whole zip, whatever else it holds.
    for bad in ("../evil.png", "0/../../evil.png", "/etc/evil.png", "C:\\evil.png"):
        files = {"0/00000.png": _png(np.zeros(size, np.uint8)), bad: b"x"}
        assert "unsafe file name" in _message(lambda f=files: read(_zip(tmp_path / "t.zip", f)))
    assert "no PNG masks" in _message(lambda: read(_zip(tmp_path / "txt.zip",
                                                        {"a.txt": b"x"})))
    three = _per_folder(tmp_path / "three.zip", [masks[0], masks[1], masks[1]])
    assert "3 mask folders (0, 1, 2), one per expression, but there are 2 expressions" in _message(
        lambda: read(three))
    # One folder of 0/255 masks cannot tell two expressions apart.
    binary = _per_folder(tmp_path / "binary.zip", masks[:1], folder="")
    assert "one folder of masks without any pixel labelled 1..2" in _message(
        lambda: read(binary))
    nameless = _zip(tmp_path / "nameless.zip", {"0/first.png": b"x", "1/second.png": b"x"})
    assert "first.png in nameless.zip has no frame number" in _message(lambda: read(nameless))
    broken = {f"{k}/{t:05d}.png": b"\x89PNG not really" for k in range(2) for t in range(16)}
    assert "00000.png in broken.zip is not a readable PNG" in _message(
        lambda: read(_zip(tmp_path / "broken.zip", broken)))
    dup = {"0/1.png": b"x", "0/01.png": b"x"}
    assert "two PNGs for frame 1" in _message(lambda: read(_zip(tmp_path / "dup.zip", dup)))
    # Size caps hold before decompression (and against a header that lies).
    monkeypatch.setattr(masks_zip, "MAX_PNG_MB", 1)
    big = _zip(tmp_path / "big.zip", {"0/00000.png": bytes(2 * 2**20)})
    assert "a mask PNG may be at most 1 MB" in _message(lambda: read(big))
    monkeypatch.setattr(masks_zip, "MAX_ENTRIES", 10)
    assert "at most 10 are read" in _message(lambda: read(zipped))


def test_truth_is_checked_against_the_frames_a_run_will_process(predicted, tmp_path):
    video, expressions, result, zipped = predicted
    # Processing at 4 fps keeps 8 of the 8-fps clip's 16 frames: the zip must have 8.
    frames, size = clip_frames(str(video), RunSettings(fps=4), Limits())
    assert (frames, size) == (8, (256, 256))
    message = _message(lambda: read_truth(str(zipped), expressions, frames, size))
    assert "folder 0 of masks.zip has 16 PNG masks, the clip 8 processed frames" in message
    assert "Processing fps" in message
    assert clip_frames(str(video), RunSettings(max_frames=5), Limits())[0] == 5


@pytest.fixture(scope="module")
def builtin_models():
    if not (BUILTIN / "config.json").is_file():
        pytest.skip("the built-in model is not trained yet")
    return ModelCache(model_choices(offline=True))


def test_compare_with_another_systems_masks_as_b(predicted, builtin_models, tmp_path):
    video, expressions, result, zipped = predicted
    settings = RunSettings(window=16)

    def compare(masks_b):
        run = prepare_compare(builtin_models, "builtin", "no-such-model-is-ignored",
                              str(video), "\n".join(expressions), settings, Limits(), tmp_path,
                              masks_b=str(masks_b))
        list(run.steps())
        return run.finish()

    same = compare(zipped)
    a, b = same.results
    assert same.b_is_masks and same.keys == ("builtin", "masks: masks.zip")
    assert (same.agreement() == 1).all()
    assert "result_b" not in same.paths
    for key in ("overlay_a", "overlay_b", "side_by_side"):
        assert probe(same.paths[key]).num_frames == 16
    summary = same.summary()
    assert escape_markdown("B: masks: masks.zip") in summary and "B read from the zip" in summary
    rows = [line for line in summary.splitlines() if line.startswith("| " + escape_markdown(
        expressions[0]))]
    assert rows and rows[0].endswith("| – | 1.00 |")
    timeline = same.render_scores(1, 0, 5)
    assert timeline.shape == (240, 640, 3)
    assert same.render_frame(5).shape[1] > 2 * 256

    shifted = [[np.roll(m, 12, axis=1) for m in e.masks()] for e in result]
    moved = compare(_per_folder(tmp_path / "other_system.zip", shifted))
    assert (moved.agreement() < 1).any()
    iou = [float(x) for x in re.findall(r"\| (\d\.\d\d) \|$", moved.summary(), re.M)]
    assert len(iou) == 2 and all(x < 1 for x in iou)
    assert not np.array_equal(moved.render_scores(1, 0, 5), timeline)
    # A zip that does not fit the clip fails before the model runs.
    short = _per_folder(tmp_path / "short.zip", [s[:10] for s in shifted])
    assert "10 PNG masks" in _message(lambda: prepare_compare(
        builtin_models, "builtin", None, str(video), "\n".join(expressions), settings,
        Limits(), tmp_path, masks_b=str(short)))
    with pytest.raises(MasksZipError):
        prepare_compare(builtin_models, "builtin", None, str(video), expressions[0], settings,
                        Limits(), tmp_path, masks_b=str(tmp_path / "other_system.zip"))


def test_the_examples_true_masks_give_the_j_make_examples_recorded(predicted, tmp_path):
    """The first example is clip test_00001 of the synthetic test split, whose true masks the
    generator gives back: as a DAVIS-style zip (one folder, pixel value k = expression k),
    Evaluate reproduces the mean J that examples/make_examples.py recorded for each
    expression, and the F and J&F that go with it."""
    from rvos.data.synth import make_clip

    video, expressions, result, _ = predicted
    spec = json.loads((video.parent / "examples.json").read_text())["synthetic"]
    entry = next(e for e in spec if e["video"] == video.name)
    clip = make_clip("test", int(entry["clip"].split("_")[1]), num_frames=16, size=(256, 256))
    objects = [next(e.object_index for e in clip.expressions if e.text == text)
               for text in expressions]
    masks = np.asarray(clip.masks)
    files = {}
    for t in range(16):
        labels = np.zeros((256, 256), np.uint8)
        for k, obj in enumerate(objects):
            labels[masks[obj, t]] = k + 1
        files[f"Annotations/{entry['clip']}/{t:05d}.png"] = label_png_bytes(labels)
    truth = read_truth(str(_zip(tmp_path / "truth.zip", files)), expressions, 16, (256, 256))
    scored = evaluate_result(result, truth, model="builtin")
    rows = scored.per_expression()
    for row, recorded in zip(rows, entry["mean_j"], strict=True):
        assert row["J"] == pytest.approx(100 * recorded, abs=1.0)
    assert all(60 < row["F"] <= 100 for row in rows)
    print(f"\n{video.name} against its true masks: " + scored.summary().splitlines()[0])


def test_curves_draw_each_series_at_its_height_and_any_length():
    from rvos.viz.curves import plot_curves

    red, blue = (200, 0, 0), (0, 0, 200)
    image = plot_curves([np.ones(16), np.zeros(16)], [red, blue], ["one", "zero"],
                        current_frame=3, y_label="J")
    assert image.shape == (200, 640, 3)
    plot = image[26:]  # below the legend

    def rows_of(color):
        return np.unique(np.nonzero((plot == color).all(axis=2))[0])

    top, bottom = rows_of(red), rows_of(blue)
    assert top.size and bottom.size and top.max() < bottom.min()
    # No frames, one frame, gaps (NaN), values out of range: drawn, never an error.
    for series in ([], [0.5], [np.nan, 0.2, np.nan, 0.9], [-3.0, 7.0]):
        assert plot_curves([np.asarray(series)], [red], ["x"]).shape == (200, 640, 3)
