"""Focal/dice losses on hand-computed values and the full criterion on built cases."""

import math

import pytest
import torch

from rvos.training.losses import LossWeights, ReferringCriterion, dice_loss, sigmoid_focal_loss

T, Q, H, W = 2, 3, 8, 8


def test_focal_loss_of_known_logits():
    # logit 0 → p = 0.5: CE = log 2, modulating factor (1 - 0.5)^2 = 0.25.
    pos = sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([1.0])).item()
    neg = sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([0.0])).item()
    assert pos == pytest.approx(0.25 * 0.25 * math.log(2))
    assert neg == pytest.approx(0.75 * 0.25 * math.log(2))
    # logit log(3) → p = 0.75; target 1: 0.25 * 0.25^2 * -log(0.75).
    x = torch.tensor([math.log(3.0)])
    assert sigmoid_focal_loss(x, torch.ones(1)).item() == pytest.approx(
        0.25 * 0.0625 * -math.log(0.75)
    )
    # Without alpha, gamma = 0 it is plain binary cross-entropy.
    assert sigmoid_focal_loss(x, torch.zeros(1), alpha=-1, gamma=0).item() == pytest.approx(
        -math.log(0.25)
    )


def test_focal_loss_is_small_for_confident_correct_and_large_for_confident_wrong():
    right = sigmoid_focal_loss(torch.tensor([8.0, -8.0]), torch.tensor([1.0, 0.0]))
    wrong = sigmoid_focal_loss(torch.tensor([-8.0, 8.0]), torch.tensor([1.0, 0.0]))
    assert right.max() < 1e-6 and wrong.min() > 1.0


def test_dice_perfect_empty_and_disjoint():
    gt = torch.zeros(3, 4, 4)
    gt[0, :2] = 1
    gt[2, :2] = 1
    logits = torch.full((3, 4, 4), -20.0)
    logits[0, :2] = 20.0  # perfect
    logits[2, 2:] = 20.0  # disjoint
    d = dice_loss(logits, gt)
    assert d[0].item() == pytest.approx(0.0, abs=1e-6)
    assert d[1].item() == pytest.approx(0.0, abs=1e-6)  # empty prediction of an empty mask
    assert d[2].item() == pytest.approx(1 - 1 / 17, abs=1e-6)  # (0 + 1) / (8 + 8 + 1)


def _target(valid=(True, True)):
    masks = torch.zeros(T, H, W, dtype=torch.bool)
    masks[:, 0:4, 0:4] = True
    valid_t = torch.tensor(valid)
    masks[~valid_t] = False
    return {"masks": masks, "boxes": torch.tensor([[0.25, 0.25, 0.5, 0.5]] * T), "valid": valid_t}


def _perfect_outputs(target, q=1, layers=2):
    def layer():
        logits = torch.full((1, T, Q, 1), -12.0)
        logits[0, target["valid"], q] = 12.0
        boxes = torch.full((1, T, Q, 4), 0.7)
        boxes[0, :, q] = target["boxes"]
        masks = torch.full((1, T, Q, H // 4, W // 4), -30.0)
        masks[0, :, q] = torch.where(target["masks"][:, ::4, ::4], 30.0, -30.0)
        return {"pred_logits": logits, "pred_boxes": boxes, "pred_masks": masks}

    out = layer()
    out["aux_outputs"] = [layer() for _ in range(layers - 1)]
    return out


def test_perfect_prediction_has_near_zero_loss_and_aux_terms():
    target = _target()
    losses = ReferringCriterion()(_perfect_outputs(target), [target])
    for name in ["loss_cls", "loss_bbox", "loss_giou", "loss_dice", "loss_mask"]:
        assert name in losses and f"{name}_0" in losses
    # Bilinear upsampling of the 2x2 grid blurs the mask border a little, hence 0.05 for dice.
    assert losses["loss_bbox"].item() < 1e-6 and losses["loss_giou"].item() < 1e-6
    assert losses["loss_cls"].item() < 1e-3 and losses["loss_dice"].item() < 0.05
    assert losses["loss"].item() < 1.0


def test_wrong_prediction_costs_more_and_gradients_reach_every_output():
    target = _target()
    out = _perfect_outputs(target)
    out["pred_boxes"][0, :, 1] = torch.tensor([0.8, 0.8, 0.2, 0.2])
    out["pred_masks"][0, :, 1] = -out["pred_masks"][0, :, 1]
    for k in ["pred_logits", "pred_boxes", "pred_masks"]:
        out[k] = out[k].clone().requires_grad_(True)
    losses = ReferringCriterion()(out, [target])
    good = ReferringCriterion()(_perfect_outputs(target), [target])
    assert losses["loss"] > good["loss"] + 5
    losses["loss"].backward()
    for k in ["pred_logits", "pred_boxes", "pred_masks"]:
        assert out[k].grad is not None and out[k].grad.abs().sum() > 0, k


def test_weighted_total_is_the_weighted_sum_of_terms():
    target = _target()
    g = torch.Generator().manual_seed(0)
    out = {
        "pred_logits": torch.randn(1, T, Q, 1, generator=g),
        "pred_boxes": torch.rand(1, T, Q, 4, generator=g) * 0.5 + 0.25,
        "pred_masks": torch.randn(1, T, Q, H // 4, W // 4, generator=g),
    }
    w = LossWeights(cls=1, bbox=2, giou=3, dice=4, focal=5)
    losses = ReferringCriterion(weights=w)(out, [target])
    expected = (
        1 * losses["loss_cls"]
        + 2 * losses["loss_bbox"]
        + 3 * losses["loss_giou"]
        + 4 * losses["loss_dice"]
        + 5 * losses["loss_mask"]
    )
    assert losses["loss"].item() == pytest.approx(expected.item())


def test_empty_target_only_pushes_scores_down():
    empty = _target(valid=(False, False))
    out = _perfect_outputs(empty, layers=1)
    out["pred_logits"] = torch.full((1, T, Q, 1), 2.0, requires_grad=True)
    losses = ReferringCriterion()(out, [empty])
    for name in ["loss_bbox", "loss_giou", "loss_dice", "loss_mask"]:
        assert losses[name].item() == 0
    assert losses["loss_cls"].item() > 0
    losses["loss"].backward()
    assert (out["pred_logits"].grad > 0).all()  # gradient descent lowers every score


def test_invisible_frames_are_negatives_for_the_matched_query():
    target = _target(valid=(True, False))
    out = _perfect_outputs(target, layers=1)
    low = ReferringCriterion()(out, [target])["loss_cls"]
    out["pred_logits"][0, 1, 1] = 12.0  # the matched query claims the object in frame 1
    high = ReferringCriterion()(out, [target])["loss_cls"]
    assert high > low + 1
