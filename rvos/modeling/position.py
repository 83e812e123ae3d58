"""Sine position embeddings: 2-D for feature maps, 1-D for words."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _interleave_sin_cos(x: Tensor) -> Tensor:
    """[..., C] angles -> [..., C]: sin on even and cos on odd channels, pairwise interleaved."""
    return torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(-2)


def _frequencies(num_feats: int, temperature: float, device: torch.device) -> Tensor:
    index = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / num_feats)


class PositionEmbeddingSine2D(nn.Module):
    """Normalised sine embedding of (y, x) positions, as in DETR / Deformable DETR.

    Positions are counted over the *unpadded* part of each image (``mask`` is True on padding)
    and scaled to [0, 2π]; Deformable DETR measures from pixel centres, hence the ``- 0.5``.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = 2 * math.pi

    def forward(self, mask: Tensor) -> Tensor:
        """mask: bool [N, h, w] (True = padding) -> embedding [N, 2 * num_pos_feats, h, w].

        Without padding (rvos never pads: the frames of a clip share one size) every image has
        the same embedding; it is computed once and expanded over N (a view, no copy)."""
        if mask.shape[0] > 1 and not mask.any():
            return self._embed(mask[:1]).expand(mask.shape[0], -1, -1, -1)
        return self._embed(mask)

    def _embed(self, mask: Tensor) -> Tensor:
        not_mask = (~mask).to(torch.float32)
        y = not_mask.cumsum(1)
        x = not_mask.cumsum(2)
        eps = 1e-6
        y = (y - 0.5) / (y[:, -1:, :] + eps) * self.scale
        x = (x - 0.5) / (x[:, :, -1:] + eps) * self.scale
        freq = _frequencies(self.num_pos_feats, self.temperature, mask.device)
        pos_y = _interleave_sin_cos(y[..., None] / freq)
        pos_x = _interleave_sin_cos(x[..., None] / freq)
        return torch.cat((pos_y, pos_x), dim=-1).permute(0, 3, 1, 2)


class PositionEmbeddingSine1D(nn.Module):
    """Normalised sine embedding of word positions (padding excluded), ``num_pos_feats`` wide."""

    def __init__(self, num_pos_feats: int = 256, temperature: float = 10000.0) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = 2 * math.pi

    def forward(self, mask: Tensor) -> Tensor:
        """mask: bool [B, L] (True = padding) -> embedding [B, L, num_pos_feats]."""
        x = (~mask).to(torch.float32).cumsum(1)
        x = x / (x[:, -1:] + 1e-6) * self.scale
        freq = _frequencies(self.num_pos_feats, self.temperature, mask.device)
        return _interleave_sin_cos(x[..., None] / freq)
