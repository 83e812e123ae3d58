"""Several objects per expression (issue 22, ``objects="all"``), on a synthetic MeViS split
(`rvos synth --layout mevis`: 128-pixel, 8-frame clips with expressions about two or three
objects) and the built-in model.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest
from PIL import Image
from test_masks_zip import _per_folder

from rvos.app.compare import prepare_compare
from rvos.app.evaluate import evaluate_result, read_truth
from rvos.app.inputs import Limits, RunSettings
from rvos.app.models import ModelCache, model_choices
from rvos.cli.main import main
from rvos.data.layouts import read_frames, read_split
from rvos.data.mevis import expression_masks, mask_dict_path, read_mask_dict
from rvos.eval.dataset_inference import PredictSettings
from rvos.eval.metrics import f_measure, jaccard
from rvos.media.labels import read_label_png
from rvos.media.video import VideoWriter, read_video
from rvos.predictor.objects import select_objects
from rvos.predictor.predictor import Predictor
from rvos.result.rle import decode_rle
from rvos.result.schema import RESULT_SCHEMA
from rvos.viz.colors import object_color
from rvos.zoo.loader import load_model

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

# The synthetic val split's clip 4 has a two-object expression the built-in model answers with
# two queries, one on each triangle ("the upper of the two blue triangles and blue triangle
# that is not moving").
CLIP = "val_00004"


@pytest.fixture(scope="module")
def builtin():
    return load_model("builtin")


@pytest.fixture(scope="module")
def mevis(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mevis") / "mevis"
    assert main(["synth", "--layout", "mevis", "--split", "val", "--count", "5",
                 "--out", str(root)]) == 0
    return root


@pytest.fixture(scope="module")
def case(mevis):
    """(video, its two-object expression, frames, ground truth per object [2, T, H, W])."""
    split = read_split(mevis, "valid_u", "mevis")
    video = next(v for v in split.videos if v.name == CLIP)
    expression = next(e for e in video.expressions if len(e.anno_ids) == 2)
    frames = read_frames(video)
    size = frames.shape[1:3]
    masks = read_mask_dict(mask_dict_path(mevis, "valid_u"))
    per_object = np.stack([
        expression_masks(video, type(expression)(expression.exp_id, expression.text,
                                                 anno_ids=(a,)), masks, size)
        for a in expression.anno_ids])
    return video, expression, frames, per_object


def _jf(gt: np.ndarray, pred: np.ndarray) -> float:
    return (jaccard(gt, pred).mean() + f_measure(gt, pred).mean()) / 2


def test_all_answers_a_two_object_expression_with_both_objects(builtin, case):
    _, expression, frames, gt = case
    best = Predictor(builtin).predict(frames, expression.text)[0]
    every = Predictor(builtin, objects="all").predict(frames, expression.text)[0]
    assert best.num_objects == 1 and every.num_objects >= 2
    # Object 0 is the paper's answer, unchanged.
    for t in range(best.num_frames):
        np.testing.assert_array_equal(every.mask(t), best.mask(t))
    # Each object lies on its own ground-truth object.
    pred = np.stack([np.stack(every.object_masks(t)) for t in range(every.num_frames)], 1)
    iou = [[(p & g).sum() / max((p | g).sum(), 1) for g in gt] for p in pred[:2]]
    matched = [int(np.argmax(row)) for row in iou]
    assert sorted(matched) == [0, 1] and min(max(row) for row in iou) > 0.5
    # The union scores higher than the single answer against the expression's ground truth.
    union = np.stack([every.union_mask(t) for t in range(every.num_frames)])
    single = np.stack(list(best.masks()))
    truth = gt.any(0)
    assert _jf(truth, union) > _jf(truth, single) + 0.1


def test_result_json_keeps_the_objects_apart_and_the_overlay_colours_them(builtin, case,
                                                                          tmp_path):
    _, expression, frames, _ = case
    result = Predictor(builtin, objects="all").predict(frames, expression.text,
                                                       out_dir=tmp_path, fps=8)
    e = result[0]
    doc = json.loads((tmp_path / "result.json").read_text())
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["settings"]["objects"] == "all"
    objects = doc["expressions"][0]["objects"]
    assert [o["object"] for o in objects] == list(range(e.num_objects))
    assert [f["query"] for f in objects[0]["frames"]] == e.chosen_query.tolist()
    queries = {o["frames"][0]["query"] for o in objects}
    assert len(queries) == len(objects)  # each object its own query
    overlay = read_video(str(tmp_path / "overlay.mp4"))[0][0]
    for t in range(e.num_frames):
        masks = e.object_masks(t)
        labels = read_label_png(tmp_path / "masks" / "0" / f"{t:05d}.png")
        for j, o in enumerate(objects):
            f = o["frames"][t]
            rle = decode_rle(np.asarray(f["rle"]["counts"], np.uint32), tuple(f["rle"]["size"]))
            np.testing.assert_array_equal(rle, masks[j])
            assert f["mask_area"] == masks[j].sum()
            only = masks[j] & ~np.logical_or.reduce([m for i, m in enumerate(masks) if i != j])
            assert (labels[only] == o["label"]).all()
        # Away from the outlines, object 1 is tinted in its own colour, not object 0's.
        inner = cv2.erode((masks[1] & ~masks[0]).astype(np.uint8), np.ones((5, 5))) > 0
        if t == 0 and inner.any():
            tint = overlay[inner].astype(float).mean(0) - frames[0][inner].astype(float).mean(0)
            own = np.asarray(object_color(0, 1, 1), float) - frames[0][inner].mean(0)
            other = np.asarray(object_color(0, 0, 1), float) - frames[0][inner].mean(0)
            assert np.dot(tint, own) / np.linalg.norm(own) > np.dot(tint, other) / \
                np.linalg.norm(other)


def test_best_stays_the_default_and_writes_no_objects(builtin, case, tmp_path):
    _, expression, frames, _ = case
    default = Predictor(builtin).predict(frames, expression.text, out_dir=tmp_path / "d")
    best = Predictor(builtin, objects="best").predict(frames, expression.text,
                                                      out_dir=tmp_path / "b")
    for a, b in zip(default[0].rle, best[0].rle, strict=True):
        assert (a == b).all()
    for name in ("d", "b"):
        doc = json.loads((tmp_path / name / "result.json").read_text())
        assert "objects" not in doc["settings"]
        assert "objects" not in doc["expressions"][0]
        png = read_label_png(tmp_path / name / "masks" / "0" / "00000.png")
        assert set(np.unique(png)) <= {0, 1}
    with pytest.raises(ValueError, match="objects must be 'best'"):
        Predictor(builtin, objects="every")


def test_select_objects_keeps_the_chosen_first_and_drops_duplicates():
    masks = np.zeros((2, 4, 8, 8), bool)
    masks[:, 0, :4] = True  # object A
    masks[:, 1, :4, :7] = True  # A again (IoU 7/8)
    masks[:, 2, 5:] = True  # object B
    masks[:, 3, 6:, :2] = True  # a weak one
    scores = np.array([0.8, 0.7, 0.5, 0.3], np.float32)
    assert select_objects(scores, masks, 0) == [0, 2]  # 0.3 < 0.5 x 0.8; 1 duplicates 0
    assert select_objects(scores, masks, 2) == [2, 0]  # the chosen query (linked) first
    assert select_objects(scores, masks, 0, score_ratio=0.3) == [0, 2, 3]
    masks[:, 2] = False  # an empty query is no object
    assert select_objects(scores, masks, 0) == [0]


def test_dataset_predict_mevis_all_writes_the_union(builtin, mevis, case, tmp_path):
    video, expression, frames, gt = case
    out = {}
    for mode in ("best", "all"):
        out[mode] = tmp_path / mode
        assert main(["dataset", "predict", "--format", "mevis", str(mevis), "--split",
                     "valid_u", "--out", str(out[mode]), "--device", "cpu", "--quiet",
                     "--max-videos", "5", "--objects", mode]) == 0
    every = Predictor(builtin, objects="all").predict(frames, expression.text)[0]
    folder = out["all"] / "valid_u" / video.name / expression.exp_id
    written = np.stack([np.asarray(Image.open(folder / f"{name}.png")) > 0
                        for name in video.frames])
    union = np.stack([every.union_mask(t) for t in range(every.num_frames)])
    assert (written != union).mean() < 0.001  # the same queries; arithmetic of two paths
    single = np.stack([np.asarray(Image.open(out["best"] / "valid_u" / video.name
                                             / expression.exp_id / f"{n}.png")) > 0
                       for n in video.frames])
    truth = gt.any(0)
    assert _jf(truth, written) > _jf(truth, single)
    # davis merges one object per expression: "all" is refused there.
    with pytest.raises(ValueError, match="objects='all' is for ytvos and mevis"):
        PredictSettings.for_format("davis", 64, objects="all")


def test_the_torch_free_cli_spells_the_choices_the_predictor_takes():
    from rvos.cli import predict as predict_cli
    from rvos.predictor import objects

    assert predict_cli.OBJECTS_CHOICES == objects.OBJECTS_CHOICES


def test_objects_are_followed_across_windows_by_their_pixels(builtin, case):
    """Windows of 6 frames sharing 3 over the 8-frame clip: each further object is linked into
    the next window by the pixels both windows saw (not started again as a new object), so it
    stays on one ground-truth object."""
    _, expression, frames, gt = case
    every = Predictor(builtin, objects="all", window=6, overlap=3).predict(
        frames, expression.text)[0]
    assert len(every.windows) == 2 and every.num_objects == 2
    for j in range(every.num_objects):
        masks = np.stack([every.object_mask(j, t) for t in range(every.num_frames)])
        present = masks.reshape(len(masks), -1).any(1)
        assert present.all(), f"object {j} is lost on frames {np.flatnonzero(~present)}"
        # On every frame the same ground-truth object holds most of its pixels.
        owner = [int(np.argmax([(m & g[t]).sum() for g in gt])) for t, m in enumerate(masks)]
        assert len(set(owner)) == 1, f"object {j} jumps between objects: {owner}"


def test_compare_with_all_objects_scores_each_sides_union(case, tmp_path):
    """Compare takes the objects setting: against the two-object expression's true masks as B
    (a zip of 0/255 PNGs), A answering with every object agrees with the truth more than A
    answering with the best query alone, the agreement being the union's."""
    _, expression, frames, gt = case
    video = tmp_path / "clip.mp4"
    with VideoWriter(video, 8, crf=0) as writer:
        for frame in frames:
            writer.write(frame)
    truth = _per_folder(tmp_path / "truth.zip", [list(gt.any(0))])  # the objects' union
    models = ModelCache(model_choices(offline=True))

    def agreement(objects: str):
        run = prepare_compare(models, "builtin", None, str(video), expression.text,
                              RunSettings(objects=objects), Limits(), tmp_path,
                              masks_b=str(truth))
        list(run.steps())
        comparison = run.finish()
        assert comparison.results[0][0].num_objects == (1 if objects == "best" else 2)
        return comparison.agreement()[0], comparison.summary()

    best, _ = agreement("best")
    every, summary = agreement("all")
    assert every.mean() > best.mean() + 0.1
    assert "each side's objects together" in summary


def test_evaluation_scores_each_expressions_objects_together(builtin, case, tmp_path):
    """Evaluate scores an expression answered with several objects by their union, as MeViS
    does: against the two-object expression's true masks the `all` answer scores higher than
    the single best query (whose score is unchanged from before)."""
    _, expression, frames, gt = case
    truth_zip = _per_folder(tmp_path / "truth.zip", [list(gt.any(0))])  # the objects' union
    truth = read_truth(str(truth_zip), expression.text, len(frames), frames.shape[1:3])
    best = Predictor(builtin).predict(frames, expression.text)
    every = Predictor(builtin, objects="all").predict(frames, expression.text)
    single, union = evaluate_result(best, truth), evaluate_result(every, truth)
    expected = jaccard(gt.any(0), np.stack(list(best[0].masks())))
    np.testing.assert_allclose(single.j[0], expected)
    assert union.overall()["J&F"] > single.overall()["J&F"] + 10
