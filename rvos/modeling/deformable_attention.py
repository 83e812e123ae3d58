"""Multi-scale deformable attention (Deformable DETR), in plain PyTorch.

Each query looks at ``n_points`` sampled locations per head and per feature level around its
reference point; the samples are read with bilinear interpolation (zero outside the map) and mixed
with softmax weights predicted from the query. No compiled extension: ``grid_sample`` does the
sampling, so it runs on any device and dtype PyTorch supports.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ms_deform_attn_sample(
    value: Tensor, spatial_shapes: Tensor, sampling_locations: Tensor, attention_weights: Tensor
) -> Tensor:
    """Weighted bilinear sampling of multi-level value maps.

    Arguments:
        value: [N, S, M, D] flattened values of all levels (S = Σ h_l·w_l), M heads of width D.
        spatial_shapes: [L, 2] (h_l, w_l) of each level.
        sampling_locations: [N, Lq, M, L, P, 2] (x, y) in [0, 1] relative to each level's map.
        attention_weights: [N, Lq, M, L, P], summing to 1 over (L, P).
    Returns:
        [N, Lq, M*D].
    """
    n, _, heads, dim = value.shape
    _, num_queries, _, levels, points, _ = sampling_locations.shape
    sizes = [int(h) * int(w) for h, w in spatial_shapes.tolist()]
    values = value.split(sizes, dim=1)
    # grid_sample with align_corners=False maps -1/+1 to the outer pixel edges, so location x·w
    # in pixels corresponds to grid coordinate 2x - 1 (pixel centre at x·w - 0.5).
    grids = 2 * sampling_locations - 1
    weights = attention_weights.transpose(1, 2).reshape(n * heads, 1, num_queries, levels, points)
    out = None
    # One level at a time: the samples of a level ([N*M, D, Lq, P]) are as large as D·P copies
    # of the queries, so holding all levels at once multiplied the peak memory of long clips.
    for level, (h, w) in enumerate(spatial_shapes.tolist()):
        v = values[level].permute(0, 2, 3, 1).reshape(n * heads, dim, int(h), int(w))
        g = grids[:, :, :, level].transpose(1, 2).reshape(n * heads, num_queries, points, 2)
        sampled = F.grid_sample(v, g.to(v.dtype), mode="bilinear", padding_mode="zeros",
                                align_corners=False)  # [N*M, D, Lq, P]
        part = (sampled * weights[..., level, :].to(sampled.dtype)).sum(-1)  # [N*M, D, Lq]
        out = part if out is None else out + part
    return out.view(n, heads * dim, num_queries).transpose(1, 2)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module (names match the released checkpoints)."""

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8,
                 n_points: int = 4) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.d_model, self.n_levels = d_model, n_levels
        self.n_heads, self.n_points = n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Initial offsets point each head in its own direction, at growing distances per point.
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([angles.cos(), angles.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        input_flatten: Tensor,
        spatial_shapes: Tensor,
        padding_mask: Tensor | None = None,
        return_sampling: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """Arguments:
            query: [N, Lq, C].
            reference_points: [N, Lq, L, 2] points (x, y) or [N, Lq, L, 4] boxes (cx, cy, w, h),
                normalised to each level's valid area.
            input_flatten: [N, S, C] flattened multi-level features.
            spatial_shapes: [L, 2] long.
            padding_mask: [N, S] bool, True on padding.
        Returns:
            output [N, Lq, C], and (sampling_locations [N, Lq, M, L, P, 2],
            attention_weights [N, Lq, M, L, P]) when ``return_sampling``.
        """
        n, num_queries, _ = query.shape
        value = self.value_proj(input_flatten)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(n, -1, self.n_heads, self.d_model // self.n_heads)
        shape = (n, num_queries, self.n_heads, self.n_levels, self.n_points)
        offsets = self.sampling_offsets(query).view(*shape, 2)
        weights = self.attention_weights(query).view(n, num_queries, self.n_heads, -1)
        weights = weights.softmax(-1).view(shape)
        if reference_points.shape[-1] == 2:
            # Offsets are in pixels of each level: divide by (w, h).
            normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)
            locations = (reference_points[:, :, None, :, None, :]
                         + offsets / normalizer[None, None, None, :, None, :])
        elif reference_points.shape[-1] == 4:
            # Offsets are relative to the box: ±0.5·w·offset/P around its centre.
            boxes = reference_points[:, :, None, :, None]
            locations = boxes[..., :2] + offsets / self.n_points * boxes[..., 2:] * 0.5
        else:
            raise ValueError(f"reference_points must end in 2 or 4, got {reference_points.shape}")
        output = ms_deform_attn_sample(value, spatial_shapes, locations, weights)
        output = self.output_proj(output)
        return output, ((locations, weights) if return_sampling else None)
