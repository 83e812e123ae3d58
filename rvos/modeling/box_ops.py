"""Box utilities: format conversion, area, IoU and generalized IoU.

Boxes are float tensors whose last dimension holds 4 numbers, either
``(cx, cy, w, h)`` ("cxcywh", the model's output format, normalised to [0, 1])
or ``(x0, y0, x1, y1)`` ("xyxy", corners; pixels or normalised).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "box_area",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_xyxy_to_cxcywh",
    "elementwise_generalized_box_iou",
    "generalized_box_iou",
    "masks_to_boxes",
]


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """Convert ``[..., 4]`` centre/size boxes to corner boxes ``[..., 4]``."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """Convert ``[..., 4]`` corner boxes to centre/size boxes ``[..., 4]``."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``[..., 4]`` xyxy boxes; degenerate (inverted) boxes count as 0."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )


def _pairwise_inter_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    area_a = box_area(a)
    area_b = box_area(b)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter, union


def box_iou(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise IoU of xyxy boxes ``a [N, 4]`` and ``b [M, 4]`` → ``[N, M]``."""
    inter, union = _pairwise_inter_union(a, b)
    return inter / union.clamp(min=eps)


def generalized_box_iou(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise generalized IoU (Rezatofighi et al., 2019) of xyxy boxes.

    GIoU = IoU - (|C| - |A ∪ B|) / |C| where C is the smallest box enclosing both.
    It lies in (-1, 1]: 1 for identical boxes, approaching -1 for tiny boxes far apart,
    and — unlike IoU — it still has a gradient when the boxes do not overlap.

    Arguments:
        a: ``[N, 4]`` xyxy boxes.
        b: ``[M, 4]`` xyxy boxes.
    Returns:
        ``[N, M]`` GIoU values.
    """
    if a.shape[-1] != 4 or b.shape[-1] != 4 or a.dim() != 2 or b.dim() != 2:
        raise ValueError(
            f"generalized_box_iou expects [N, 4] and [M, 4] boxes, got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    inter, union = _pairwise_inter_union(a, b)
    iou = inter / union.clamp(min=eps)
    lt = torch.minimum(a[:, None, :2], b[None, :, :2])
    rb = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing.clamp(min=eps)


def elementwise_generalized_box_iou(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """GIoU of corresponding xyxy boxes: ``a [..., 4]`` and ``b [..., 4]`` broadcast → ``[...]``.

    The same quantity as `generalized_box_iou`, for aligned pairs instead of all pairs (the
    batched matcher compares every query with its own video's target in every frame).
    """
    if a.shape[-1] != 4 or b.shape[-1] != 4:
        raise ValueError(
            f"boxes need 4 numbers in the last dim, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    area_a, area_b = box_area(a), box_area(b)
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(
        min=0
    )
    inter = wh[..., 0] * wh[..., 1]
    union = area_a + area_b - inter
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(
        min=0
    )
    enclosing = hull[..., 0] * hull[..., 1]
    return inter / union.clamp(min=eps) - (enclosing - union) / enclosing.clamp(min=eps)


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight xyxy boxes (pixel corners, exclusive max) around boolean masks.

    Arguments:
        masks: ``[N, H, W]`` bool/0-1 masks.
    Returns:
        ``[N, 4]`` float boxes ``(x0, y0, x1, y1)`` with ``x1 = last column + 1``;
        all zeros for empty masks.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks_to_boxes expects [N, H, W] masks, got {tuple(masks.shape)}")
    n, h, w = masks.shape
    out = torch.zeros(n, 4, dtype=torch.float32, device=masks.device)
    if n == 0:
        return out
    m = masks.bool()
    rows = m.any(dim=2)  # [N, H]
    cols = m.any(dim=1)  # [N, W]
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    nonempty = rows.any(dim=1)
    big = max(h, w) + 1
    y0 = torch.where(rows, ys, big).min(dim=1).values
    y1 = torch.where(rows, ys, -1).max(dim=1).values + 1
    x0 = torch.where(cols, xs, big).min(dim=1).values
    x1 = torch.where(cols, xs, -1).max(dim=1).values + 1
    boxes = torch.stack((x0, y0, x1, y1), dim=1).float()
    out[nonempty] = boxes[nonempty]
    return out
