"""The original inference procedure as functions: preprocessing, query choice, masks.

Agreement with torchvision's Resize on the recorded clip is checked in test_parity.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rvos.modeling.processing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    postprocess_masks,
    preprocess,
    resize_frames,
    resized_size,
    run_original,
    select_query,
)

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(("size", "expected"), [
    ((272, 640), (360, 847)),   # long side truncated: 360·640/272 = 847.06
    ((640, 272), (847, 360)),
    ((480, 480), (360, 360)),
    ((720, 1280), (360, 640)),
    ((101, 202), (360, 720)),
])
def test_resized_size_sets_the_short_side(size, expected):
    assert resized_size(*size, short_side=360) == expected


def test_preprocess_resizes_and_normalises():
    clip = frames(2, 90, 160)
    clip[0] = 255
    x = preprocess(clip, short_side=45)
    assert x.shape == (2, 3, 45, 80) and x.dtype == torch.float32
    # A white frame stays white through the resize: (1 - mean) / std per channel.
    white = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    torch.testing.assert_close(x[0].amax((1, 2)), torch.tensor(white))
    torch.testing.assert_close(x[0].amin((1, 2)), torch.tensor(white))
    # The same from a torch tensor, and without a resize the pixels map one to one.
    assert torch.equal(preprocess(torch.from_numpy(clip), short_side=45), x)
    same = preprocess(clip, short_side=None)
    assert same.shape == (2, 3, 90, 160)
    torch.testing.assert_close(same[1, 0, 5, 7],
                               torch.tensor((clip[1, 5, 7, 0] / 255 - IMAGENET_MEAN[0])
                                            / IMAGENET_STD[0], dtype=torch.float32))
    assert resize_frames(clip, 90) is clip  # already at the size asked for


@pytest.mark.parametrize(("clip", "error", "message"), [
    (frames(2, 8, 8).astype(np.float32), TypeError, "frames must be uint8 RGB, got float32"),
    (frames(1, 8, 8)[0], ValueError, r"frames must be \[T, H, W, 3\] RGB, got shape \(8, 8, 3\)"),
    (np.zeros((2, 8, 8, 4), np.uint8), ValueError, r"got shape \(2, 8, 8, 4\)"),
    (np.zeros((2, 3, 8, 8), np.uint8), ValueError, r"got shape \(2, 3, 8, 8\)"),
    (np.zeros((0, 8, 8, 3), np.uint8), ValueError, "no frames"),
])
def test_preprocess_names_bad_frames(clip, error, message):
    with pytest.raises(error, match=message):
        preprocess(clip)


def test_select_query_takes_the_best_score_averaged_over_frames():
    logits = torch.tensor([
        [[5.0], [0.0], [1.0]],    # query 0 is best in frame 0 only
        [[-5.0], [0.5], [1.0]],
        [[-5.0], [0.5], [1.0]],   # query 2 is steadily good
    ])
    assert select_query(logits) == 2
    with pytest.raises(ValueError, match=r"pred_logits must be \[T, Q, K\]"):
        select_query(logits[None])


def test_postprocess_masks_resizes_bilinearly_then_thresholds():
    logits = torch.tensor([[[10.0, -10.0], [-10.0, 10.0]]])
    masks = postprocess_masks(logits, (4, 4))
    assert masks.dtype == torch.bool and masks.shape == (1, 4, 4)
    # Bilinear (align_corners=False) from 2 to 4: per axis 10, 5, -5, -10 -> a 2×2 checkerboard.
    block = torch.tensor([[True, False], [False, True]])
    assert torch.equal(masks[0], block.repeat_interleave(2, 0).repeat_interleave(2, 1))
    # Next to the corner the logit is 2.5 (sigmoid 0.92): below a 0.95 threshold.
    strict = postprocess_masks(logits, (4, 4), threshold=0.95)
    assert strict[0, 0, 0] and not strict[0, 1, 1]


def test_run_original_on_a_tiny_model(make_tiny_model):
    model = make_tiny_model()
    clip = frames(3, 50, 70)
    result = run_original(model, clip, "the red ball", short_side=32)
    q = model.config.num_queries
    assert result["pred_logits"].shape == (3, q, 1)
    assert result["pred_masks"].shape == (3, q, 8, 11)  # input 32×44, stride 4
    assert result["best_query"] == select_query(result["pred_logits"])
    assert torch.equal(result["masks"],
                       postprocess_masks(result["pred_masks"][:, result["best_query"]], (50, 70)))
    assert result["masks"].shape == (3, 50, 70)
