"""Instance-sequence Hungarian matching: the obviously best query wins; empty targets match
nothing; malformed targets raise."""

import pytest
import torch

from rvos.training.matcher import HungarianMatcher, downsample_masks, upsample_masks

T, Q, H, W = 3, 5, 16, 16


def _target(valid=(True, True, True)):
    masks = torch.zeros(T, H, W, dtype=torch.bool)
    masks[:, 4:12, 2:10] = True
    valid_t = torch.tensor(valid)
    masks[~valid_t] = False
    # Normalised cxcywh of the box around columns 2..9, rows 4..11.
    boxes = torch.tensor([[6 / W, 8 / H, 8 / W, 8 / H]]).repeat(T, 1)
    return {"masks": masks, "boxes": boxes, "valid": valid_t}


def _outputs(best: int, target, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, T, Q, 1, generator=g) - 2
    boxes = torch.rand(1, T, Q, 4, generator=g) * 0.4 + 0.3
    masks = torch.randn(1, T, Q, H // 4, W // 4, generator=g) - 3
    logits[0, :, best] = 4.0
    boxes[0, :, best] = target["boxes"]
    # Stride-4 cells at least half covered by the object are foreground.
    small = target["masks"].float().reshape(T, H // 4, 4, W // 4, 4).mean((2, 4))
    masks[0, :, best] = (small >= 0.5).float() * 16 - 8
    return {"pred_logits": logits, "pred_boxes": boxes, "pred_masks": masks}


@pytest.mark.parametrize("best", [0, 2, 4])
def test_single_target_picks_the_obviously_best_query(best):
    target = _target()
    ((q, t),) = HungarianMatcher()(_outputs(best, target), [target])
    assert q.tolist() == [best] and t.tolist() == [0]


def test_each_cost_alone_picks_the_best_query():
    target = _target()
    out = _outputs(3, target, seed=1)
    for kw in ["cost_class", "cost_bbox", "cost_giou", "cost_dice", "cost_focal"]:
        weights = dict.fromkeys(
            ["cost_class", "cost_bbox", "cost_giou", "cost_dice", "cost_focal"], 0.0
        )
        weights[kw] = 1.0
        ((q, _),) = HungarianMatcher(**weights)(out, [target])
        assert q.tolist() == [3], kw


def test_empty_target_matches_nothing_and_batch_is_per_video():
    full, empty = _target(), _target(valid=(False, False, False))
    out = _outputs(1, full)
    out2 = _outputs(4, full, seed=3)
    batched = {k: torch.cat([out[k], out2[k]]) for k in out}
    (q0, t0), (q1, t1) = HungarianMatcher()(batched, [full, empty])
    assert q0.tolist() == [1] and t0.tolist() == [0]
    assert q1.numel() == 0 and t1.numel() == 0


def test_only_visible_frames_count_for_boxes():
    # The object is visible in frame 1 only; query 2 is right there and wrong elsewhere,
    # query 0 is right in the invisible frames only. Box costs must prefer query 2.
    target = _target(valid=(False, True, False))
    out = _outputs(2, target)
    out["pred_boxes"][0, :, 2] = torch.tensor([0.9, 0.9, 0.1, 0.1])
    out["pred_boxes"][0, 1, 2] = target["boxes"][1]
    out["pred_boxes"][0, :, 0] = target["boxes"][1]
    out["pred_boxes"][0, 1, 0] = torch.tensor([0.9, 0.9, 0.1, 0.1])
    matcher = HungarianMatcher(cost_class=0, cost_dice=0, cost_focal=0)
    ((q, _),) = matcher(out, [target])
    assert q.tolist() == [2]


def test_malformed_targets_raise_clear_errors():
    out = _outputs(0, _target())
    with pytest.raises(ValueError, match="one target dict per video"):
        HungarianMatcher()(out, [])
    bad = _target()
    bad["boxes"] = bad["boxes"][:2]
    with pytest.raises(ValueError, match="boxes must be"):
        HungarianMatcher()(out, [bad])
    bad = _target()
    del bad["valid"]
    with pytest.raises(ValueError, match="lacks"):
        HungarianMatcher()(out, [bad])


def test_upsample_masks_scales_by_four_and_crops():
    small = torch.zeros(2, 3, 3)
    small[:, 1, 1] = 10.0
    up = upsample_masks(small, (10, 11))
    assert up.shape == (2, 10, 11)
    # Cell (1, 1) covers pixels 4..7 in each direction.
    assert (up[0, 4:8, 4:8] > 0).all() and (up[0, :2] < 1).all()


def test_batched_videos_each_get_their_own_best_query():
    targets = [_target(), _target(valid=(True, False, True)), _target()]
    outs = [
        _outputs(best, t, seed=i)
        for i, (best, t) in enumerate(zip([4, 0, 2], targets, strict=True))
    ]
    batched = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    result = HungarianMatcher()(batched, targets)
    assert [q.tolist() for q, _ in result] == [[4], [0], [2]]


def test_downsample_masks_area_averages_and_pads_odd_sizes():
    m = torch.zeros(2, 6, 9, dtype=torch.bool)
    m[:, 0:4, 0:2] = True
    small = downsample_masks(m, (2, 3))
    assert small.shape == (2, 2, 3)
    assert small[0, 0, 0].item() == 0.5 and small[0, 1].sum().item() == 0
