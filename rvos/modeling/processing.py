"""The original inference procedure and preprocessing, as functions.

Preprocessing: each frame is resized so its short side is 360 (bilinear with antialiasing, as
PIL does it for ``torchvision.transforms.Resize(360)``), scaled to [0, 1] and normalised with the
ImageNet mean and std. Postprocessing: the query with the best score averaged over the frames is
the answer on every frame; its mask logits are resized to the frame size and thresholded.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SHORT_SIDE = 360  # the released models' test-time resize


def model_short_side(model) -> int | None:
    """The frame short side a model expects: ``input_short_side`` from its saved metadata (the
    built-in model records the size it was trained at), else the released models' 360."""
    meta = getattr(model, "metadata", None) or {}
    side = meta.get("input_short_side", DEFAULT_SHORT_SIDE)
    return None if side is None else int(side)


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Output (H, W) with the short side ``short_side``; the long side is truncated, as
    torchvision's Resize(int) computes it."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def resize_frames(frames: np.ndarray, short_side: int | None = 360) -> np.ndarray:
    """uint8 [T, H0, W0, 3] -> uint8 [T, H, W, 3] (PIL bilinear, antialiased)."""
    frames = _check_uint8_frames(frames)
    if short_side is None:
        return frames
    h, w = resized_size(frames.shape[1], frames.shape[2], short_side)
    if (h, w) == frames.shape[1:3]:
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR))
                     for f in frames])


def normalize(frames_uint8: np.ndarray | Tensor) -> Tensor:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W], ImageNet-normalised."""
    x = torch.as_tensor(np.ascontiguousarray(frames_uint8)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def preprocess(frames_uint8: np.ndarray | Tensor, short_side: int | None = 360) -> Tensor:
    """RGB uint8 frames [T, H0, W0, 3] -> model input float32 [T, 3, H, W]."""
    if isinstance(frames_uint8, Tensor):
        frames_uint8 = frames_uint8.cpu().numpy()
    return normalize(resize_frames(frames_uint8, short_side))


def select_query(pred_logits: Tensor) -> int:
    """pred_logits [T, Q, K] -> index of the query with the best score averaged over frames."""
    if pred_logits.dim() != 3:
        raise ValueError(f"pred_logits must be [T, Q, K], got {tuple(pred_logits.shape)}")
    scores = pred_logits.float().sigmoid().mean(0).max(-1).values
    return int(scores.argmax())


def postprocess_masks(mask_logits: Tensor, size: tuple[int, int], threshold: float = 0.5
                      ) -> Tensor:
    """mask_logits [T, h, w] -> bool [T, H0, W0]: bilinear resize (align_corners=False), then
    sigmoid > threshold."""
    up = F.interpolate(mask_logits[None].float(), size=tuple(size), mode="bilinear",
                       align_corners=False)[0]
    return up.sigmoid() > threshold


def run_original(model, frames_uint8: np.ndarray, caption: str, short_side: int = 360,
                 threshold: float = 0.5) -> dict:
    """The original procedure on one video: preprocess, forward, best query, masks at the frame
    size. Returns the raw outputs (batch removed), ``best_query`` and ``masks`` [T, H0, W0]."""
    device = next(model.parameters()).device
    x = preprocess(frames_uint8, short_side).to(device)
    with torch.inference_mode():
        out = model(x, [caption])
    best = select_query(out["pred_logits"][0])
    masks = postprocess_masks(out["pred_masks"][0, :, best], frames_uint8.shape[1:3], threshold)
    # Per-layer outputs are [layers, B, ...]: their batch axis is the second.
    return {**{k: v[:, 0] if k.startswith("layer_") else v[0] for k, v in out.items()
               if isinstance(v, Tensor)},
            "best_query": best, "masks": masks}


def _check_uint8_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise TypeError(f"frames must be uint8 RGB, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3] RGB, got shape {frames.shape}")
    if frames.shape[0] == 0:
        raise ValueError("no frames")
    return frames
