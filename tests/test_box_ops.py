"""Box conversions, IoU/GIoU and masks_to_boxes on hand-computed cases."""

import math

import pytest
import torch

from rvos.modeling.box_ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    elementwise_generalized_box_iou,
    generalized_box_iou,
    masks_to_boxes,
)


def test_cxcywh_xyxy_known_values_and_round_trip():
    cxcywh = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.2, 0.2]])
    xyxy = box_cxcywh_to_xyxy(cxcywh)
    assert torch.allclose(xyxy, torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.0, 0.8, 0.2, 1.0]]))
    assert torch.allclose(box_xyxy_to_cxcywh(xyxy), cxcywh)
    # Works on any leading shape ([B, T, Q, 4] model outputs).
    boxes = torch.rand(2, 3, 5, 4)
    assert torch.allclose(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(boxes)), boxes, atol=1e-6)


def test_area_clamps_inverted_boxes_to_zero():
    assert box_area(torch.tensor([[0.0, 0.0, 2.0, 3.0], [2.0, 2.0, 1.0, 1.0]])).tolist() == [6, 0]


def test_giou_identical_disjoint_and_overlapping():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    assert generalized_box_iou(a, a).item() == pytest.approx(1.0)
    # Disjoint side by side: IoU 0, union 2, enclosing 3 → GIoU = -(3 - 2) / 3.
    left, right = torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[2.0, 0.0, 3.0, 1.0]])
    assert box_iou(left, right).item() == 0
    assert generalized_box_iou(left, right).item() == pytest.approx(-1 / 3)
    # Overlapping: intersection 1, union 7, enclosing 9.
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    assert box_iou(a, b).item() == pytest.approx(1 / 7)
    assert generalized_box_iou(a, b).item() == pytest.approx(1 / 7 - 2 / 9)


def test_giou_is_pairwise_and_has_gradient_for_disjoint_boxes():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]], requires_grad=True)
    b = torch.tensor([[5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    g = generalized_box_iou(a, b)
    assert g.shape == (2, 3)
    assert g[0, 1].item() == pytest.approx(1.0) and g[1, 2].item() == pytest.approx(1.0)
    g[0, 0].backward()
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_giou_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        generalized_box_iou(torch.zeros(4), torch.zeros(1, 4))


def test_masks_to_boxes():
    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    boxes = masks_to_boxes(masks)
    assert boxes[0].tolist() == [2, 1, 5, 3]
    assert boxes[1].tolist() == [0, 0, 0, 0]
    assert not math.isnan(boxes.sum().item())


def test_elementwise_giou_is_the_diagonal_of_the_pairwise_giou():
    g = torch.Generator().manual_seed(0)
    a = box_cxcywh_to_xyxy(torch.rand(7, 4, generator=g) * 0.5 + 0.2)
    b = box_cxcywh_to_xyxy(torch.rand(7, 4, generator=g) * 0.5 + 0.2)
    assert torch.allclose(elementwise_generalized_box_iou(a, b), generalized_box_iou(a, b).diag())
    # Broadcasting: [2, 3, 4] against [2, 1, 4], as the matcher compares queries with a target.
    queries, target = a[:6].view(2, 3, 4), b[:2].view(2, 1, 4)
    assert elementwise_generalized_box_iou(queries, target).shape == (2, 3)
