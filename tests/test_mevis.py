"""MeViS as a dataset format: the COCO run-length code of its masks, the synthetic MeViS split,
`rvos dataset predict --format mevis` (PNGs and a zip with the video folders at its root, the
same bytes under torchrun) and `rvos dataset eval --format mevis` (each expression against the
union of its objects' masks)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_dataset import outputs, synth, torchrun_rvos

from rvos.cli.main import main
from rvos.data.coco_rle import (
    RleError,
    counts_from_string,
    counts_to_string,
    decode_coco_rle,
    encode_coco_rle,
)
from rvos.data.layouts import read_split
from rvos.data.mevis import expression_masks, read_mask_dict
from rvos.data.synth import make_clip
from rvos.eval.metrics import f_measure, jaccard

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

SIDE = "64"
CLIP = {"num_frames": 4, "size": (64, 64), "num_objects": 3}


def predict_argv(root: Path, out: Path, split: str = "valid_u") -> list[str]:
    return ["dataset", "predict", "--format", "mevis", str(root), "--split", split, "--out",
            str(out), "--device", "cpu", "--short-side", SIDE]  # fmt: skip


def evaluate(root: Path, pred: Path, *args: str) -> int:
    return main(["dataset", "eval", "--format", "mevis", str(root), "--split", "valid_u",
                 "--pred", str(pred), "--quiet", *args])  # fmt: skip


@pytest.fixture(scope="module")
def mevis_root(tmp_path_factory) -> Path:
    return synth(
        tmp_path_factory.mktemp("mevis") / "mevis", "mevis", "--count", "3", "--frames", "4",
        "--objects", "3",
    )  # fmt: skip


@pytest.fixture(scope="module")
def single_run(mevis_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pred")
    assert main([*predict_argv(mevis_root, out), "--quiet"]) == 0
    return out


def _union_of_clip_masks(video_index: int, object_indices) -> np.ndarray:
    """Ground truth straight from the generator (no RLE involved)."""
    clip = make_clip("val", video_index, 0, **CLIP)
    return clip.masks[list(object_indices)].any(0)


def _objects(clip, expression) -> list[int]:
    """The clip's object indices an expression's obj_ids name (referred objects are numbered
    0, 1, ... in clip order)."""
    referred = sorted({e.object_index for e in clip.expressions})
    return [referred[int(o)] for o in expression.obj_ids]


# --------------------------------------------------------------------------- the RLE code


def test_rle_matches_examples_worked_out_by_hand():
    # Column-major runs: [[0, 1], [0, 1]] is two background pixels (column 0), then two object.
    assert encode_coco_rle(np.array([[0, 1], [0, 1]])) == {"size": [2, 2], "counts": "22"}
    # Runs 0, 5, 3, 2: the fourth is stored as 2 - 5 = -3, one group 0b11101 (its top bit the
    # sign) = chr(48 + 29) = "M"; the first three as themselves.
    assert counts_to_string([0, 5, 3, 2]) == "053M"
    mask = decode_coco_rle({"size": [2, 5], "counts": "053M"})
    expected = np.zeros(10, bool)
    expected[:5] = expected[8:] = True
    assert np.array_equal(mask, expected.reshape(5, 2).T)
    # 100 = 3 * 32 + 4: low group 4 with the "more" bit (48 + 32 + 4 = "T"), then 3 ("3").
    assert counts_to_string([100]) == "T3"
    assert not decode_coco_rle({"size": [10, 10], "counts": "T3"}).any()
    # The uncompressed form (a list of runs) reads the same.
    assert np.array_equal(decode_coco_rle({"size": [2, 5], "counts": [0, 5, 3, 2]}), mask)


def test_rle_round_trips_random_masks_and_runs():
    rng = np.random.default_rng(0)
    shapes = [(0, 0), (1, 1), (1, 7), (7, 1), (3, 4), (64, 64), (37, 91)]
    for h, w in shapes * 20:
        kind = rng.integers(4)
        if kind == 0:
            mask = rng.random((h, w)) < rng.random()
        elif kind == 1:
            mask = np.full((h, w), bool(rng.integers(2)))
        else:  # blobs: long runs, so the delta code sees large and negative differences
            mask = np.zeros((h, w), bool)
            if h and w:
                y, x = rng.integers(h), rng.integers(w)
                mask[y : y + rng.integers(1, h + 1), x : x + rng.integers(1, w + 1)] = True
        rle = encode_coco_rle(mask)
        assert rle["size"] == [h, w] and isinstance(rle["counts"], str)
        assert np.array_equal(decode_coco_rle(rle), mask)
    for _ in range(200):
        runs = rng.integers(0, 10 ** rng.integers(1, 9), size=rng.integers(1, 30)).tolist()
        assert counts_from_string(counts_to_string(runs)) == runs


@pytest.mark.parametrize(
    "rle, message",
    [
        ({"size": [2, 2], "counts": "2 2"}, "not part of the COCO RLE code"),
        ({"size": [10, 10], "counts": "T"}, "ends inside a value"),
        ({"size": [2, 2], "counts": "23"}, "cover 5 pixels"),
        ({"counts": "22"}, "expected"),
    ],
)
def test_a_broken_rle_is_refused_with_the_reason(rle, message):
    with pytest.raises(RleError, match=message):
        decode_coco_rle(rle)


# ------------------------------------------------------------------------- the split


def test_synth_writes_the_mevis_layout_with_multi_object_expressions(mevis_root):
    split = read_split(mevis_root, "valid_u", "mevis")
    assert [v.name for v in split.videos] == ["val_00000", "val_00001", "val_00002"]
    masks = read_mask_dict(mevis_root / "valid_u/mask_dict.json")
    meta = json.loads((mevis_root / "valid_u/meta_expressions.json").read_text())
    multi = 0
    for i, video in enumerate(split.videos):
        assert video.frames == ("00000", "00001", "00002", "00003")
        assert Image.open(video.frame_path(0)).size == (64, 64)
        clip = make_clip("val", i, 0, **CLIP)
        for e in video.expressions:
            assert len(e.anno_ids) == len(e.obj_ids) >= 1
            entry = meta["videos"][video.name]["expressions"][e.exp_id]
            assert isinstance(entry["obj_id"], list) and isinstance(entry["anno_id"], list)
            for anno in e.anno_ids:
                assert len(masks[anno]) == 4  # one entry per frame
            multi += len(e.anno_ids) > 1
        # Every referred object's masks decode to the generator's own masks.
        texts = {e.text: e for e in video.expressions}
        for expr in clip.expressions:
            e = texts[expr.text]
            got = expression_masks(video, e, masks, (64, 64))
            assert np.array_equal(got, clip.masks[expr.object_index])
    assert multi >= 2


def test_a_multi_object_expressions_ground_truth_is_the_union(mevis_root):
    split = read_split(mevis_root, "valid_u", "mevis")
    masks = read_mask_dict(mevis_root / "valid_u/mask_dict.json")
    seen = 0
    for i, video in enumerate(split.videos):
        clip = make_clip("val", i, 0, **CLIP)
        for e in video.expressions:
            if len(e.anno_ids) < 2:
                continue
            objects = _objects(clip, e)
            assert len(set(objects)) == len(objects)
            # The words join single-object expressions, one about each object of the union.
            for k in objects:
                assert any(x.text in e.text for x in clip.expressions if x.object_index == k)
            got = expression_masks(video, e, masks, (64, 64))
            assert np.array_equal(got, _union_of_clip_masks(i, objects))
            assert got.sum() > max(clip.masks[k].sum() for k in objects)  # more than any one
            seen += 1
    assert seen >= 2


def test_obj_id_and_anno_id_of_different_lengths_are_one_clear_error(mevis_root, tmp_path, capsys):
    root = tmp_path / "broken"
    shutil.copytree(mevis_root, root)
    meta_file = root / "valid_u/meta_expressions.json"
    meta = json.loads(meta_file.read_text())
    meta["videos"]["val_00001"]["expressions"]["0"]["anno_id"] = []
    meta_file.write_text(json.dumps(meta))
    assert main([*predict_argv(root, tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "val_00001" in err and "'anno_id'" in err and len(err.splitlines()) == 1


# ----------------------------------------------------------------------- predict and eval


def test_predict_writes_a_png_per_expression_and_frame_and_a_zip_of_video_folders(
    mevis_root, single_run
):
    expected = []
    for video in read_split(mevis_root, "valid_u", "mevis").videos:
        for e in video.expressions:
            for f in video.frames:
                mask = np.array(
                    Image.open(single_run / "valid_u" / video.name / e.exp_id / f"{f}.png")
                )
                assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
                expected.append(f"{video.name}/{e.exp_id}/{f}.png")
    with zipfile.ZipFile(single_run / "submission.zip") as zf:
        assert zf.namelist() == sorted(expected)
        for name in expected[:: max(1, len(expected) // 7)]:
            assert zf.read(name) == (single_run / "valid_u" / name).read_bytes()


def test_eval_prints_jf_last_and_writes_the_davis_tables(mevis_root, single_run, capsys):
    capsys.readouterr()
    assert evaluate(mevis_root, single_run) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("J&F: ")
    split = read_split(mevis_root, "valid_u", "mevis")
    masks = read_mask_dict(mevis_root / "valid_u/mask_dict.json")
    rows = (single_run / "valid_u/per-sequence_results-valid_u.csv").read_text().splitlines()
    assert rows[0] == "Sequence,J-Mean,F-Mean"
    assert len(rows) - 1 == sum(len(v.expressions) for v in split.videos)
    # The mean over expressions of each expression's mean over frames, recomputed here.
    js, fs = [], []
    for video in split.videos:
        for e in video.expressions:
            pred = np.stack(
                [
                    np.array(
                        Image.open(single_run / "valid_u" / video.name / e.exp_id / f"{f}.png")
                    )
                    > 127
                    for f in video.frames
                ]
            )
            gt = expression_masks(video, e, masks, (64, 64))
            js.append(jaccard(gt, pred).mean())
            fs.append(f_measure(gt, pred).mean())
    jf = (np.mean(js) + np.mean(fs)) / 2
    assert lines[-1] == f"J&F: {100 * jf:.1f}"
    head, values = (single_run / "valid_u/global_results-valid_u.csv").read_text().splitlines()
    glob = dict(zip(head.split(","), map(float, values.split(",")), strict=True))
    assert glob["J&F-Mean"] == pytest.approx(jf, abs=1e-5)


def test_eval_scores_the_union_as_perfect_and_one_object_of_two_as_less(
    mevis_root, tmp_path, capsys
):
    """Predictions written from the generator's masks: the union of a multi-object expression's
    objects scores 1; answering with one of its objects (as a single query does) scores its
    share of the union."""
    split = read_split(mevis_root, "valid_u", "mevis")
    pred = tmp_path / "pred"
    partial = None
    for i, video in enumerate(split.videos):
        clip = make_clip("val", i, 0, **CLIP)
        for e in video.expressions:
            objects = _objects(clip, e)
            masks = _union_of_clip_masks(i, objects)
            if len(objects) > 1 and partial is None:
                partial = (video.name, e.exp_id, masks, clip.masks[objects[0]])
                masks = clip.masks[objects[0]]
            folder = pred / "valid_u" / video.name / e.exp_id
            folder.mkdir(parents=True)
            for f, m in zip(video.frames, masks, strict=True):
                Image.fromarray(m.astype(np.uint8) * 255).save(folder / f"{f}.png")
    assert partial is not None
    assert evaluate(mevis_root, pred) == 0
    rows = {
        r.split(",")[0]: [float(x) for x in r.split(",")[1:]]
        for r in (pred / "valid_u/per-sequence_results-valid_u.csv").read_text().splitlines()[1:]
    }
    name, exp_id, union, one = partial
    j_partial = (one.sum((1, 2)) / union.sum((1, 2))).mean()
    assert rows.pop(f"{name}_{exp_id}")[0] == pytest.approx(j_partial, abs=1e-5)
    assert j_partial < 1
    assert all(j == 1.0 and f == 1.0 for j, f in rows.values())


def test_eval_of_valid_says_only_the_server_scores_it(mevis_root, tmp_path, capsys):
    root = tmp_path / "m"
    (root / "valid").mkdir(parents=True)
    shutil.copy(mevis_root / "valid_u/meta_expressions.json", root / "valid")
    assert main(["dataset", "eval", "--format", "mevis", str(root), "--split", "valid",
                 "--pred", str(tmp_path), "--quiet"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "mask_dict.json not found" in err and "MeViS server" in err


@pytest.mark.slow
def test_torchrun_two_processes_write_the_same_bytes_as_one(mevis_root, single_run, tmp_path):
    out = tmp_path / "out"
    torchrun_rvos([*predict_argv(mevis_root, out), "--quiet"], tmp_path)
    assert outputs(out) == outputs(single_run)
    record = json.loads((out / "predict-valid_u.json").read_text())
    assert {v["rank"] for v in record["videos"].values()} == {0, 1}
