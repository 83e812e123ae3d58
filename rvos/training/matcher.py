"""Instance-sequence Hungarian matching of ReferFormer's queries to the referred object.

ReferFormer predicts, for every query, one *sequence* of boxes/masks over the clip (the same
query slot in every frame is the same instance). Training therefore matches whole sequences:
the cost of assigning query ``q`` to the referred object sums the per-frame costs over the clip,
and the assignment is solved once per video with the Hungarian algorithm. In referring VOS there
is exactly one target per video, so the assignment reduces to "pick the cheapest query", but the
code keeps the general ``linear_sum_assignment`` form (as DETR does) so it reads the same as the
paper's formulation.

Per-frame costs (weights from the paper): focal-style class cost (λ_cls = 2), L1 box (λ_L1 = 5),
GIoU (λ_giou = 2), mask dice (λ_dice = 5) and sigmoid-focal mask cost (λ_focal = 2); mask costs
are computed on the masks' own stride-4 grid. Class and
box costs use only the frames where the object is visible (``valid``); in the other frames every
query is a negative anyway, so those frames cannot change which query is cheapest. Mask costs use
every frame (an invisible object's target mask is empty, and the matched query must learn that).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from rvos.modeling.box_ops import box_cxcywh_to_xyxy, elementwise_generalized_box_iou

__all__ = [
    "HungarianMatcher",
    "check_targets",
    "downsample_masks",
    "stack_targets",
    "upsample_masks",
]


def upsample_masks(mask_logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Upsample stride-4 mask logits ``[..., h, w]`` to the input size ``size = (H, W)``.

    The model's masks live on a grid of ``ceil(H/4) x ceil(W/4)`` cells, cell ``i`` covering
    input pixels ``4i .. 4i+3``; so we scale by exactly 4 and crop the overhang from the ceil
    rather than stretching to ``(H, W)`` (stretching would shift odd-sized inputs).
    """
    h, w = mask_logits.shape[-2:]
    H, W = size
    lead = mask_logits.shape[:-2]
    flat = mask_logits.reshape(-1, 1, h, w)
    up = F.interpolate(flat, size=(4 * h, 4 * w), mode="bilinear", align_corners=False)
    return up[..., :H, :W].reshape(*lead, H, W)


def downsample_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Area-average ``[..., H, W]`` 0/1 masks onto the stride-4 grid ``size = (h, w)``,
    ``h = ceil(H / 4)`` (zero-padded at the bottom/right edge), giving soft targets in [0, 1]."""
    h, w = size
    H, W = masks.shape[-2:]
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, 1, H, W).float()
    flat = F.pad(flat, (0, 4 * w - W, 0, 4 * h - H))
    return F.avg_pool2d(flat, 4).reshape(*lead, h, w)


def check_targets(targets: list[dict[str, Tensor]], batch: int, frames: int) -> None:
    """Raise a ValueError if ``targets`` does not follow the training contract.

    Each target is ``dict(masks=bool [T, H, W], boxes=float [T, 4] normalised cxcywh,
    valid=bool [T])``, one per video of the batch.
    """
    if len(targets) != batch:
        raise ValueError(f"expected one target dict per video ({batch}), got {len(targets)}")
    for i, t in enumerate(targets):
        missing = {"masks", "boxes", "valid"} - set(t)
        if missing:
            raise ValueError(f"target {i} lacks {sorted(missing)}; need masks, boxes and valid")
        if t["masks"].dim() != 3 or t["masks"].shape[0] != frames:
            raise ValueError(
                f"target {i} masks must be [T={frames}, H, W], got {tuple(t['masks'].shape)}"
            )
        if tuple(t["boxes"].shape) != (frames, 4):
            raise ValueError(
                f"target {i} boxes must be [{frames}, 4], got {tuple(t['boxes'].shape)}"
            )
        if tuple(t["valid"].shape) != (frames,):
            raise ValueError(f"target {i} valid must be [{frames}], got {tuple(t['valid'].shape)}")


def stack_targets(targets: list[dict[str, Tensor]], device: torch.device) -> dict[str, Tensor]:
    """Stack per-video targets into batch tensors: masks ``[B,T,H,W]`` (float), boxes
    ``[B,T,4]``, valid ``[B,T]`` (bool), on ``device``."""
    return {
        "masks": torch.stack([t["masks"] for t in targets]).to(device, torch.float32),
        "boxes": torch.stack([t["boxes"] for t in targets]).to(device, torch.float32),
        "valid": torch.stack([t["valid"] for t in targets]).to(device, torch.bool),
    }


def _focal_terms(logits: Tensor, alpha: float, gamma: float) -> tuple[Tensor, Tensor]:
    """Elementwise focal loss of each logit if its label were 1 (pos) or 0 (neg)."""
    p = logits.sigmoid()
    pos = alpha * (1 - p).pow(gamma) * F.softplus(-logits)  # -log(p) = softplus(-x)
    neg = (1 - alpha) * p.pow(gamma) * F.softplus(logits)  # -log(1-p) = softplus(x)
    return pos, neg


@dataclass
class HungarianMatcher:
    """Match each video's query sequences to its referred object.

    Attributes are the cost weights (the paper's λ values) and the focal parameters.
    """

    cost_class: float = 2.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    cost_dice: float = 5.0
    cost_focal: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    def cost_matrix(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        """Cost of assigning each query to its video's referred object, all videos at once.

        Arguments:
            outputs: model outputs with pred_logits ``[B,T,Q,1]``, pred_boxes ``[B,T,Q,4]``,
                pred_masks ``[B,T,Q,h,w]``.
            targets: stacked targets (`stack_targets`): masks ``[B,T,H,W]``, boxes ``[B,T,4]``
                (normalised cxcywh), valid ``[B,T]``.
        Returns:
            ``[B, Q]`` costs (frame averages; a video with no visible frame gets mask costs
            only, and is not matched anyway).
        """
        logits = outputs["pred_logits"][..., 0].float()  # [B, T, Q]
        boxes = outputs["pred_boxes"].float()  # [B, T, Q, 4]
        valid = targets["valid"].to(logits.dtype)[..., None]  # [B, T, 1]
        n_valid = valid.sum(1).clamp(min=1)  # [B, 1]

        pos, neg = _focal_terms(logits, self.focal_alpha, self.focal_gamma)
        cls = ((pos - neg) * valid).sum(1) / n_valid
        gt_boxes = targets["boxes"][:, :, None]  # [B, T, 1, 4]
        l1 = ((boxes - gt_boxes).abs().sum(-1) * valid).sum(1) / n_valid
        giou = elementwise_generalized_box_iou(
            box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(gt_boxes)
        )
        giou = (giou * valid).sum(1) / n_valid

        # Mask costs are compared on the prediction's stride-4 grid (a cell is foreground when
        # at least half of its pixels are): 16x cheaper than upsampling all Q predictions, and
        # only the ranking of the queries matters here.
        mask_logits = outputs["pred_masks"].float().flatten(3)  # [B, T, Q, hw]
        gt = downsample_masks(targets["masks"], outputs["pred_masks"].shape[-2:]) >= 0.5
        gt = gt.float().flatten(2)[:, :, None]  # [B, T, 1, hw]
        prob = mask_logits.sigmoid()
        dice = 1 - (2 * (prob * gt).sum(-1) + 1) / (prob.sum(-1) + gt.sum(-1) + 1)  # [B, T, Q]
        mpos, mneg = _focal_terms(mask_logits, self.focal_alpha, self.focal_gamma)
        focal = (gt * mpos + (1 - gt) * mneg).mean(-1)  # [B, T, Q]

        return (
            self.cost_class * cls
            + self.cost_bbox * l1
            - self.cost_giou * giou
            + self.cost_dice * dice.mean(1)
            + self.cost_focal * focal.mean(1)
        )

    @torch.no_grad()
    def __call__(
        self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]] | dict[str, Tensor]
    ) -> list[tuple[Tensor, Tensor]]:
        """Return, per video, ``(query_indices, target_indices)`` int64 tensors.

        ``targets``: one dict per video (see `check_targets`) or already stacked.
        A video whose object is visible in no frame gets empty indices (nothing to match:
        every query is a negative in every frame). Otherwise exactly one query is matched.
        """
        B, T = outputs["pred_logits"].shape[:2]
        if isinstance(targets, (list, tuple)):
            check_targets(targets, B, T)
            targets = stack_targets(targets, outputs["pred_logits"].device)
        cost = self.cost_matrix(outputs, targets).cpu()  # one transfer for the whole batch
        has_object = targets["valid"].any(1).cpu()
        result: list[tuple[Tensor, Tensor]] = []
        for b in range(B):
            if not bool(has_object[b]):
                empty = torch.zeros(0, dtype=torch.int64)
                result.append((empty, empty.clone()))
                continue
            # One target per video: the Hungarian solution is the cheapest query; the general
            # solver is kept so the code states the paper's formulation.
            rows, cols = linear_sum_assignment(cost[b][:, None].numpy())
            result.append(
                (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
            )
        return result
