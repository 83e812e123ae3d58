"""DAVIS-2017 conventions: the palette, label PNGs, the Ref-DAVIS17 merge and the unsupervised-task
scores, checked against values worked out by hand from the benchmark's definitions."""

import numpy as np
import pytest
import torch
from PIL import Image

from rvos.eval.davis import (
    DavisScores,
    ObjectScores,
    decay_quarters,
    merge_probabilities,
    score_folder,
    score_sequence,
    score_statistics,
    write_tables,
)
from rvos.eval.metrics import f_measure, jaccard
from rvos.media.labels import davis_palette, read_label_png, write_label_png


def test_one_palette_the_davis_annotations_one():
    """Every mask rvos writes (rvos predict, the app, rvos dataset) uses the DAVIS palette: the
    PASCAL VOC colour map with 191 for 192 in its first 22 entries and a grey ramp after."""
    colours = davis_palette()
    assert colours[:6].tolist() == [
        [0, 0, 0],
        [128, 0, 0],
        [0, 128, 0],
        [128, 128, 0],
        [0, 0, 128],
        [128, 0, 128],
    ]
    assert colours[8].tolist() == [64, 0, 0] and colours[9].tolist() == [191, 0, 0]
    assert colours[22].tolist() == [22, 22, 22] and colours[255].tolist() == [255, 255, 255]


def test_label_pngs_are_indexed_and_read_back_as_ids(tmp_path):
    labels = np.zeros((5, 7), np.uint8)
    labels[1:3, 2:5] = 2
    labels[4, 6] = 255
    write_label_png(tmp_path / "a.png", labels)
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "P" and im.getpalette()[3:9] == [128, 0, 0, 0, 128, 0]
    assert np.array_equal(read_label_png(tmp_path / "a.png"), labels)
    Image.new("RGB", (3, 3)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="RGB image"):
        read_label_png(tmp_path / "rgb.png")


def test_merge_keeps_objects_at_half_probability_and_takes_the_most_probable():
    # Four pixels: nobody reaches 0.5; only object 2 does; both do, 1 more; exact tie.
    probs = np.array(
        [[[0.49, 0.2, 0.9, 0.7]], [[0.3, 0.5, 0.8, 0.7]]], dtype=np.float32
    )  # [O=2, 1, 4]
    expected = [[0, 2, 1, 1]]
    assert merge_probabilities(probs).tolist() == expected
    assert merge_probabilities(torch.from_numpy(probs)).tolist() == expected


def test_merge_is_the_arg_max_over_background_and_kept_objects():
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 4, 16, 24, generator=gen)
    probs[1, :, :5] = probs[0, :, :5]  # exact ties go to the lower id
    kept = torch.where(probs >= 0.5, probs, torch.zeros(()))
    stacked = torch.cat([torch.full_like(probs[:1], 0.1), kept])
    expected = stacked.argmax(0).numpy()  # torch's argmax: the first maximum
    assert np.array_equal(merge_probabilities(probs), expected)
    assert np.array_equal(merge_probabilities(probs.numpy()), expected)


def test_decay_quarters_and_statistics_follow_the_toolkit_definition():
    # T = 10: edges round(k * 9 / 4) = 0, 2 (2.25), 5 (4.5 rounds up), 7 (6.75), 9.
    assert decay_quarters(10) == [(0, 2), (2, 5), (5, 7), (7, 9)]
    assert decay_quarters(1) == [(0, 0)] * 4
    values = np.array([1.0, 1.0, 0.4, 0.9, 0.6, 0.3, 0.2, 0.5, 0.0, 0.1])
    mean, recall, decay = score_statistics(values)
    assert mean == pytest.approx(0.5)
    assert recall == pytest.approx(0.4)  # 1.0, 1.0, 0.9, 0.6 are above 0.5; 0.5 is not
    assert decay == pytest.approx(np.mean([1.0, 1.0, 0.4]) - np.mean([0.5, 0.0, 0.1]))
    # Longer than 255 frames (the toolkit's uint8 edges would wrap): still the true quarters.
    assert decay_quarters(401)[-1] == (300, 400)


def _disc(t, h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return np.repeat(((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)[None], t, axis=0)


def test_proposals_are_matched_to_objects_whatever_their_ids():
    t, h, w = 3, 40, 50
    a, b = _disc(t, h, w, 10, 12, 6), _disc(t, h, w, 28, 35, 8)
    gt = np.zeros((t, h, w), np.uint8)
    gt[a], gt[b] = 1, 2
    # Proposal 1 is object 2 and proposal 3 is object 1 (shifted by a pixel); 2 is noise.
    pred = np.zeros_like(gt)
    pred[np.roll(a, 1, axis=2)] = 3
    pred[b] = 1
    pred[:, 0:3, 0:3] = 2
    objects = score_sequence("seq", gt, pred)
    assert [o.name for o in objects] == ["seq_1", "seq_2"]
    shifted = np.roll(a, 1, axis=2)
    assert np.allclose(objects[0].j, jaccard(a, shifted))
    assert np.allclose(objects[0].f, f_measure(a, shifted))
    assert np.allclose(objects[1].j, 1.0) and np.allclose(objects[1].f, 1.0)


def test_missing_proposals_score_zero_and_void_pixels_are_ignored():
    t, h, w = 2, 30, 30
    a = _disc(t, h, w, 15, 15, 7)
    gt = np.zeros((t, h, w), np.uint8)
    gt[a] = 1
    gt[:, 0:4, :] = 255  # void band
    gt[:, 25:28, 25:28] = 2
    pred = np.zeros_like(gt)
    pred[a] = 1
    pred[:, 0:4, :] = 1  # predicted on void: not counted against it
    objects = score_sequence("s", gt, pred)
    assert np.allclose(objects[0].j, 1.0) and np.allclose(objects[0].f, 1.0)
    assert np.allclose(objects[1].j, 0.0)  # object 2 got no proposal (empty mask)
    with pytest.raises(ValueError, match="at most 20 proposals"):
        score_sequence("s", gt, np.full_like(gt, 21))
    with pytest.raises(ValueError, match="sequence s"):
        score_sequence("s", gt, pred[:, :-1])


def test_global_results_average_objects_and_tables_use_the_toolkit_columns(tmp_path):
    scores = DavisScores(
        [
            ObjectScores("a", 1, np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0, 1.0])),
            ObjectScores("b", 1, np.array([0.5, 0.5, 0.5, 0.5]), np.array([0.0, 0.0, 0.0, 0.0])),
        ]
    )
    g = scores.global_results()
    assert g["J-Mean"] == pytest.approx(0.5) and g["F-Mean"] == pytest.approx(0.5)
    assert g["J&F-Mean"] == pytest.approx(0.5)
    assert g["J-Recall"] == pytest.approx(0.25)  # 2 of 4 frames, then 0 of 4
    assert g["J-Decay"] == pytest.approx(0.5)  # (1 - 0) and (0.5 - 0.5), averaged
    global_path, seq_path = write_tables(tmp_path, "val", g, scores.per_sequence())
    lines = global_path.read_text().splitlines()
    assert lines[0] == "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay"
    assert lines[1] == "0.50000,0.50000,0.25000,0.50000,0.50000,0.50000,0.00000"
    assert seq_path.name == "per-sequence_results-val.csv"
    assert seq_path.read_text().splitlines() == [
        "Sequence,J-Mean,F-Mean",
        "a_1,0.50000,1.00000",
        "b_1,0.50000,0.00000",
    ]


def test_score_folder_reads_the_ground_truth_frames_and_names_a_missing_prediction(tmp_path):
    labels = np.zeros((20, 20), np.uint8)
    labels[5:10, 5:12] = 1
    for root in ("gt", "pred"):
        (tmp_path / root / "v").mkdir(parents=True)
        for f in ("00000", "00001"):
            write_label_png(tmp_path / root / "v" / f"{f}.png", labels)
    scores = score_folder(tmp_path / "gt", tmp_path / "pred", ["v"])
    assert scores.global_results()["J&F-Mean"] == pytest.approx(1.0)
    (tmp_path / "pred" / "v" / "00001.png").unlink()
    with pytest.raises(FileNotFoundError, match="sequence v.*00001.png"):
        score_folder(tmp_path / "gt", tmp_path / "pred", ["v"])
