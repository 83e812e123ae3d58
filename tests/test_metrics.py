"""DAVIS J and F: hand-computed cases that pin the reference toolkit's conventions."""

import numpy as np
import pytest

from rvos.eval.metrics import boundary_map, f_measure, jaccard, jf


def square(shape, r0, c0, side):
    m = np.zeros(shape, dtype=bool)
    m[r0 : r0 + side, c0 : c0 + side] = True
    return m


def test_both_empty_scores_one():
    z = np.zeros((2, 20, 30), dtype=bool)
    assert jaccard(z, z).tolist() == [1.0, 1.0]
    assert f_measure(z, z).tolist() == [1.0, 1.0]


def test_one_empty_scores_zero_either_way():
    z = np.zeros((20, 30), dtype=bool)
    s = square((20, 30), 5, 5, 6)
    for gt, pred in [(z, s), (s, z)]:
        assert jaccard(gt, pred).tolist() == [0.0]
        assert f_measure(gt, pred).tolist() == [0.0]


def test_identical_masks_score_one():
    s = np.stack([square((40, 40), 3, 4, 10), square((40, 40), 20, 25, 7)])
    assert jaccard(s, s).tolist() == [1.0, 1.0]
    assert f_measure(s, s).tolist() == [1.0, 1.0]


def test_boundary_of_square_is_outline_shifted_towards_origin():
    # seg2bmap marks pixels that differ from a right/bottom/diagonal neighbour: for a 10x10
    # square at rows/cols 10..19 that is the 40-pixel outline of the 11x11 box 9..19.
    b = boundary_map(square((50, 50), 10, 10, 10))
    expected = np.zeros((50, 50), dtype=bool)
    expected[9:20, 9:20] = True
    expected[10:19, 10:19] = False
    np.testing.assert_array_equal(b, expected)


def test_shifted_square_hand_computed():
    # 50x50 -> tolerance ceil(0.008 * 70.7) = 1 pixel (4-neighbourhood).
    gt = square((50, 50), 10, 10, 10)
    pred = square((50, 50), 10, 12, 10)  # two pixels to the right
    # J: overlap 10x8 = 80, union 120.
    assert jaccard(gt, pred)[0] == pytest.approx(2 / 3)
    # F: of each 40-pixel outline, 10 + 10 pixels of the top/bottom rows and the 2 end pixels
    # of one vertical side lie within 1 pixel of the other outline: P = R = 22/40.
    assert f_measure(gt, pred)[0] == pytest.approx(0.55)
    # Both scores are symmetric in their arguments.
    assert jaccard(pred, gt)[0] == pytest.approx(2 / 3)
    assert f_measure(pred, gt)[0] == pytest.approx(0.55)


def test_tolerance_grows_with_image_diagonal():
    # 200x200 -> tolerance ceil(0.008 * 282.8) = 3 pixels: a 3-pixel shift is fully tolerated
    # by F, but not by J.
    gt = square((200, 200), 50, 50, 40)
    pred = square((200, 200), 50, 53, 40)
    assert f_measure(gt, pred)[0] == 1.0
    assert jaccard(gt, pred)[0] == pytest.approx(37 * 40 / (43 * 40))
    # A fixed pixel tolerance (bound_th >= 1) overrides the diagonal rule.
    assert f_measure(gt, pred, bound_th=1)[0] < 1.0


def test_tolerance_uses_disk_not_opencv_ellipse():
    # 128x128 -> radius 2. The two 2x2 boundary blocks are closest at offset (1, 2):
    # inside OpenCV's 5x5 MORPH_ELLIPSE but outside the x^2+y^2 <= 4 disk DAVIS uses.
    gt = np.zeros((128, 128), dtype=bool)
    pred = np.zeros((128, 128), dtype=bool)
    gt[60, 60] = True  # boundary block rows 59..60, cols 59..60
    pred[62, 63] = True  # boundary block rows 61..62, cols 62..63
    assert f_measure(gt, pred)[0] == 0.0
    pred[:] = False
    pred[62, 62] = True  # closest offset (1, 1): matched
    assert f_measure(gt, pred)[0] > 0.0


def test_partial_overlap_precision_recall_asymmetry():
    # Pred is a strict subset; J = 16/100 regardless of argument order.
    gt = square((30, 30), 5, 5, 10)
    pred = square((30, 30), 8, 8, 4)
    assert jaccard(gt, pred)[0] == pytest.approx(0.16)
    assert f_measure(gt, pred)[0] == pytest.approx(f_measure(pred, gt)[0])
    assert 0.0 <= f_measure(gt, pred)[0] < 1.0


def test_hw_input_is_one_frame_and_video_is_per_frame():
    gt = square((50, 50), 10, 10, 10)
    pred = square((50, 50), 10, 12, 10)
    assert jaccard(gt, pred).shape == (1,)
    video_j = jaccard(np.stack([gt, gt]), np.stack([pred, gt]))
    assert video_j == pytest.approx([2 / 3, 1.0])
    assert f_measure(np.stack([gt, gt]), np.stack([pred, gt])) == pytest.approx([0.55, 1.0])


def test_accepts_uint8_masks():
    gt = square((50, 50), 10, 10, 10).astype(np.uint8) * 255
    pred = square((50, 50), 10, 12, 10).astype(np.uint8)
    assert jaccard(gt, pred)[0] == pytest.approx(2 / 3)


def test_shape_mismatch_is_value_error():
    with pytest.raises(ValueError, match="shape"):
        jaccard(np.zeros((4, 5), bool), np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match="shape"):
        f_measure(np.zeros((2, 4, 5), bool), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="dimensions"):
        jaccard(np.zeros((1, 2, 4, 5), bool), np.zeros((1, 2, 4, 5), bool))


def test_jf_summary():
    mj, mf, both = jf(np.array([1.0, 0.5]), np.array([0.0, 0.5]))
    assert (mj, mf, both) == (0.75, 0.25, 0.5)
    with pytest.raises(ValueError):
        jf(np.array([1.0]), np.array([]))
