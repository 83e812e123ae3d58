"""ReferFormer's training losses.

After the matcher picks, for each video, the query sequence that describes the referred object:

* class: sigmoid focal loss (α = 0.25, γ = 2) on every query and frame; the matched query is the
  positive in the frames where the object is visible, everything else is a negative;
* boxes: L1 + GIoU between the matched query's boxes and the ground truth, visible frames only;
* masks: dice + sigmoid focal between the matched query's mask logits — upsampled from stride 4
  to the target (model input) size — and the ground-truth masks, in *every* frame (an
  invisible object has an empty target mask, which the matched query should reproduce);
* the same losses on every earlier decoder layer's outputs (``aux_outputs``), each matched
  separately.

As in the DETR family, each sum is divided by the number of target boxes in the batch (visible
frames), so the scale does not depend on batch size or clip length. Default weights are the
paper's: λ_cls = 2, λ_L1 = 5, λ_giou = 2, λ_dice = 5, λ_focal = 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from rvos.modeling.box_ops import box_cxcywh_to_xyxy, elementwise_generalized_box_iou
from rvos.training.matcher import HungarianMatcher, check_targets, stack_targets, upsample_masks

__all__ = ["LossWeights", "ReferringCriterion", "dice_loss", "sigmoid_focal_loss"]


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Elementwise focal loss (Lin et al., 2017) of logits against 0/1 targets (same shape).

    ``FL = -α_t (1 - p_t)^γ log(p_t)``; ``alpha < 0`` disables the α weighting.
    Returns the unreduced loss, same shape as ``logits``.
    """
    targets = targets.to(logits.dtype)
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def dice_loss(logits: Tensor, targets: Tensor, smooth: float = 1.0) -> Tensor:
    """Dice loss ``1 - (2|P∩G| + s) / (|P| + |G| + s)`` per mask.

    Arguments:
        logits: ``[N, ...]`` mask logits.
        targets: ``[N, ...]`` 0/1 masks.
    Returns:
        ``[N]`` losses; 0 for a perfect prediction (also of an empty mask), near 1 when disjoint.
    """
    p = logits.sigmoid().flatten(1)
    t = targets.to(p.dtype).flatten(1)
    return 1 - (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)


@dataclass
class LossWeights:
    """Weights of the loss terms (the paper's λ values)."""

    cls: float = 2.0
    bbox: float = 5.0
    giou: float = 2.0
    dice: float = 5.0
    focal: float = 2.0

    def as_dict(self) -> dict[str, float]:
        return {
            "loss_cls": self.cls,
            "loss_bbox": self.bbox,
            "loss_giou": self.giou,
            "loss_dice": self.dice,
            "loss_mask": self.focal,
        }


@dataclass
class ReferringCriterion:
    """Computes ReferFormer's losses for a batch of videos.

    Call with the model's training outputs and one target per video; returns a dict with each
    unweighted term (``loss_cls``, ``loss_bbox``, ``loss_giou``, ``loss_dice``, ``loss_mask``;
    aux layers suffixed ``_0``, ``_1``, …) and ``loss``, the weighted total to backpropagate.
    """

    weights: LossWeights = field(default_factory=LossWeights)
    matcher: HungarianMatcher | None = None
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    aux_loss: bool = True

    def __post_init__(self) -> None:
        if self.matcher is None:
            w = self.weights
            self.matcher = HungarianMatcher(
                cost_class=w.cls,
                cost_bbox=w.bbox,
                cost_giou=w.giou,
                cost_dice=w.dice,
                cost_focal=w.focal,
                focal_alpha=self.focal_alpha,
                focal_gamma=self.focal_gamma,
            )

    def single_layer(
        self,
        outputs: dict[str, Tensor],
        targets: dict[str, Tensor],
        num_boxes: float,
    ) -> dict[str, Tensor]:
        """Unweighted losses of one decoder layer's outputs (see the module docstring).

        ``targets`` are stacked (`rvos.training.matcher.stack_targets`); all videos are handled with
        batched gathers, so the cost does not grow with Python loops over the batch.
        """
        assert self.matcher is not None
        logits = outputs["pred_logits"][..., 0]  # [B, T, Q]
        B, T, Q = logits.shape
        indices = self.matcher(outputs, targets)
        matched = torch.tensor(
            [int(q[0]) if q.numel() else -1 for q, _ in indices], device=logits.device
        )
        has = matched >= 0  # [B]
        query = matched.clamp(min=0)
        valid = targets["valid"] & has[:, None]  # [B, T]: frames with a positive

        cls_target = F.one_hot(query, Q).to(logits.dtype)[:, None, :] * valid[..., None]
        cls = sigmoid_focal_loss(logits, cls_target, self.focal_alpha, self.focal_gamma)

        # The matched query's sequence in every frame: [B, T, ...].
        rows = torch.arange(B, device=logits.device)
        pred_boxes = outputs["pred_boxes"][rows, :, query]
        vmask = valid.to(pred_boxes.dtype)
        l1 = ((pred_boxes - targets["boxes"]).abs().sum(-1) * vmask).sum()
        giou = elementwise_generalized_box_iou(
            box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(targets["boxes"])
        )
        giou = ((1 - giou) * vmask).sum()

        gt_masks = targets["masks"]  # [B, T, H, W]
        pred_masks = upsample_masks(outputs["pred_masks"][rows, :, query], gt_masks.shape[-2:])
        hmask = has.to(pred_masks.dtype)[:, None]  # masks count in every frame of a matched video
        dice = dice_loss(pred_masks.flatten(0, 1), gt_masks.flatten(0, 1)).view(B, T) * hmask
        focal = sigmoid_focal_loss(pred_masks, gt_masks, self.focal_alpha, self.focal_gamma)
        focal = focal.flatten(2).mean(-1) * hmask
        return {
            "loss_cls": cls.sum() / num_boxes,
            "loss_bbox": l1 / num_boxes,
            "loss_giou": giou / num_boxes,
            "loss_dice": dice.sum() / num_boxes,
            "loss_mask": focal.sum() / num_boxes,
        }

    def __call__(
        self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        B, T = outputs["pred_logits"].shape[:2]
        check_targets(targets, B, T)
        stacked = stack_targets(targets, outputs["pred_logits"].device)
        # Number of target boxes (visible frames) in the batch, at least 1 to avoid 0/0.
        num_boxes = max(1.0, float(sum(int(t["valid"].sum()) for t in targets)))
        losses = self.single_layer(outputs, stacked, num_boxes)
        if self.aux_loss:
            for i, aux in enumerate(outputs.get("aux_outputs", [])):
                for k, v in self.single_layer(aux, stacked, num_boxes).items():
                    losses[f"{k}_{i}"] = v
        weights = self.weights.as_dict()
        # Aux terms are named "<term>_<layer>" and share the term's weight.
        total = sum(
            v * weights[k if k in weights else k.rsplit("_", 1)[0]] for k, v in losses.items()
        )
        losses["loss"] = total
        return losses
