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

# Samples (query × head × level × point) per chunk of the gather path: ~1 M samples, i.e.
# 16 MB of int32 indices and 16 MB of weights for their four corners.
_GATHER_CHUNK = 1 << 20


def ms_deform_attn_sample(
    value: Tensor, spatial_shapes: Tensor, sampling_locations: Tensor, attention_weights: Tensor
) -> Tensor:
    """Weighted bilinear sampling of multi-level value maps (see `ms_deform_attn_grid_sample`).

    Without autograd on a CPU this runs `ms_deform_attn_gather`, which computes the same sums
    in another order (they agree to float rounding) several times faster; training and other
    devices use ``grid_sample``.
    """
    if _use_gather(value, sampling_locations, attention_weights):
        size = _level_sizes(spatial_shapes, sampling_locations)[:, None]  # [L, 1, 2]
        return ms_deform_attn_gather(value, spatial_shapes, sampling_locations * size - 0.5,
                                     attention_weights)
    return ms_deform_attn_grid_sample(value, spatial_shapes, sampling_locations,
                                      attention_weights)


def _use_gather(*tensors: Tensor) -> bool:
    return tensors[0].device.type == "cpu" and not (
        torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _level_sizes(spatial_shapes: Tensor, like: Tensor) -> Tensor:
    """[L, 2] (w, h) of every level, for (x, y) coordinates (``[:, None]`` to broadcast over
    the points of ``[..., L, P, 2]``)."""
    return spatial_shapes.flip(-1).to(device=like.device, dtype=like.dtype)


def ms_deform_attn_gather(
    value: Tensor, spatial_shapes: Tensor, pixel_locations: Tensor, attention_weights: Tensor
) -> Tensor:
    """`ms_deform_attn_grid_sample`'s result as one weighted gather (``embedding_bag``).

    Every sample reads four pixels (its bilinear corners) of one head's value map; its
    attention weight times each corner's bilinear weight is that pixel's weight, so a query's
    output for a head is a weighted sum of ``4 · levels · points`` value rows — what
    ``F.embedding_bag(mode="sum", per_sample_weights=...)`` computes, without materialising
    the samples (``grid_sample`` writes ``[N·M, D, Lq, P]`` per level, which is then multiplied
    and summed, after every level's values are permuted into a copy).

    Zero padding: each level's map gets one zero row and column before it and two after, and
    coordinates are clamped to [-1, size]; a corner outside the image then lands on a zero, and a
    clamped sample puts all its weight on zeros, as ``grid_sample(padding_mode="zeros")`` does.

    Arguments:
        value, spatial_shapes, attention_weights: as `ms_deform_attn_grid_sample`.
        pixel_locations: [N, Lq, M, L, P, 2] (x, y) in pixels of each level's map, pixel
            centres at integers (``location · size - 0.5``).
    Returns:
        [N, Lq, M*D].
    """
    return _gather_planes(value, spatial_shapes, pixel_locations[..., 0].clone(),
                          pixel_locations[..., 1].clone(), attention_weights)


def _gather_planes(value: Tensor, spatial_shapes: Tensor, x: Tensor, y: Tensor,
                   attention_weights: Tensor) -> Tensor:
    """`ms_deform_attn_gather` on separate x and y pixel coordinates, each [N, Lq, M, L, P]
    (innermost L·P contiguous for speed); both are overwritten (clamped, then fractions)."""
    n, _, heads, dim = value.shape
    _, num_queries, _, levels, points = x.shape
    dtype, dev = value.dtype, value.device
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    padded = [(h + 3) * (w + 3) for h, w in shapes]
    size_pad = sum(padded)
    starts = [sum(padded[:i]) for i in range(levels)]

    def per_level(values: list[int], dtype=torch.int32) -> Tensor:  # [L, P], one row per level
        return torch.tensor(values, device=dev, dtype=dtype).view(levels, 1).expand(
            levels, points).contiguous()

    # Rows of the table viewed as [frames · size_pad · M, D]: one step in y, and where padded
    # pixel (1, 1) (the image's first pixel) of every level and head is.
    step_y = per_level([(w + 3) * heads for _, w in shapes])
    origin = (per_level(starts) * heads + step_y + heads
              + torch.arange(heads, device=dev, dtype=torch.int32).view(heads, 1, 1))
    # A bag is (frame, query, head); its 4·L·P indices are corner-major: [4, L, P], corners
    # (x0, y0), (x1, y0), (x0, y1), (x1, y1).
    corner = torch.stack([torch.zeros_like(step_y), torch.full_like(step_y, heads), step_y,
                          step_y + heads])
    x.clamp_(min=-1)
    torch.minimum(x, per_level([w for _, w in shapes], x.dtype), out=x)
    y.clamp_(min=-1)
    torch.minimum(y, per_level([h for h, _ in shapes], y.dtype), out=y)

    per_frame = num_queries * heads * levels * points
    step = max(1, _GATHER_CHUNK // max(per_frame, 1))
    sizes = [h * w for h, w in shapes]
    outputs = []
    for f0 in range(0, n, step):
        f1 = min(n, f0 + step)
        k = f1 - f0
        table = value.new_zeros(k, size_pad, heads * dim)
        for (h, w), start, src in zip(shapes, starts, value[f0:f1].split(sizes, 1), strict=True):
            level = table[:, start:start + (h + 3) * (w + 3)].view(k, h + 3, w + 3, -1)
            level[:, 1:h + 1, 1:w + 1] = src.reshape(k, h, w, -1)
        fx, fy = x[f0:f1], y[f0:f1]
        x0, y0 = fx.floor(), fy.floor()
        fx -= x0  # now the fractions
        fy -= y0
        row = y0.to(torch.int32).mul_(step_y)
        row.add_(x0.to(torch.int32), alpha=heads)
        frame = torch.arange(k, device=dev, dtype=torch.int32).view(k, 1, 1, 1, 1)
        row += frame * (size_pad * heads) + origin  # [k, Lq, M, L, P]: top-left corners
        rows = row[:, :, :, None] + corner  # [k, Lq, M, 4, L, P]
        w = attention_weights[f0:f1].to(dtype)
        fx, fy = fx.to(dtype), fy.to(dtype)
        weights = rows.new_empty(rows.shape, dtype=dtype)
        wy1 = w * fy
        wy0 = w - wy1
        torch.mul(wy0, fx, out=weights[:, :, :, 1])
        torch.sub(wy0, weights[:, :, :, 1], out=weights[:, :, :, 0])
        torch.mul(wy1, fx, out=weights[:, :, :, 3])
        torch.sub(wy1, weights[:, :, :, 3], out=weights[:, :, :, 2])
        bags = k * num_queries * heads
        out = F.embedding_bag(rows.view(bags, -1), table.view(-1, dim),
                              per_sample_weights=weights.view(bags, -1), mode="sum")
        outputs.append(out.view(k, num_queries, heads * dim))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def ms_deform_attn_grid_sample(
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
        if padding_mask is not None and padding_mask.any():
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(n, -1, self.n_heads, self.d_model // self.n_heads)
        shape = (n, num_queries, self.n_heads, self.n_levels, self.n_points)
        # Weights and locations in the query's precision even under autocast: a bfloat16 pixel
        # coordinate is off by up to half a pixel at x = 100.
        weights = self.attention_weights(query).to(query.dtype)
        weights = weights.view(n, num_queries, self.n_heads, -1).softmax(-1).view(shape)
        if reference_points.shape[-1] not in (2, 4):
            raise ValueError(f"reference_points must end in 2 or 4, got {reference_points.shape}")
        gather = _use_gather(value, query, weights)
        if gather and reference_points.shape[-1] == 2:
            # Offsets are in pixels of each level, so a sample's pixel is its reference point's
            # plus its offset (the point `_locations` gives, without the round trip). The
            # offset layer's rows are reordered so that x and y come out as separate planes.
            size = _level_sizes(spatial_shapes, query)
            planes = F.linear(query, *self._planar_offsets()).to(query.dtype).view(
                n, num_queries, 2, *shape[2:])
            start = (reference_points * size - 0.5).movedim(-1, 0)  # [2, N, Lq, L]
            x, y = (plane + s[:, :, None, :, None].expand(-1, -1, -1, -1, self.n_points)
                    for plane, s in zip(planes.unbind(2), start, strict=True))
            locations = None
            if return_sampling:
                locations = (torch.stack((x, y), -1) + 0.5) / size[:, None]
            output = _gather_planes(value, spatial_shapes, x, y, weights)
            return self.output_proj(output), ((locations, weights) if return_sampling else None)
        offsets = self.sampling_offsets(query).to(query.dtype).view(*shape, 2)
        locations = self._locations(offsets, reference_points, spatial_shapes)
        if gather:
            size = _level_sizes(spatial_shapes, locations)[:, None]
            output = ms_deform_attn_gather(value, spatial_shapes, locations * size - 0.5, weights)
        else:
            output = ms_deform_attn_grid_sample(value, spatial_shapes, locations, weights)
        return self.output_proj(output), ((locations, weights) if return_sampling else None)

    def _planar_offsets(self) -> tuple[Tensor, Tensor]:
        """The offset layer's weight and bias with rows reordered from (head, level, point,
        xy) to (xy, head, level, point)."""
        m, lv, pt = self.n_heads, self.n_levels, self.n_points
        weight = self.sampling_offsets.weight.view(m, lv, pt, 2, -1).permute(3, 0, 1, 2, 4)
        bias = self.sampling_offsets.bias.view(m, lv, pt, 2).permute(3, 0, 1, 2)
        return weight.reshape(2 * m * lv * pt, -1), bias.reshape(-1)

    def _locations(self, offsets: Tensor, reference_points: Tensor, spatial_shapes: Tensor
                   ) -> Tensor:
        """Sampling locations [N, Lq, M, L, P, 2], (x, y) in [0, 1] of each level's map."""
        if reference_points.shape[-1] == 2:
            # Offsets are in pixels of each level: divide by (w, h).
            size = _level_sizes(spatial_shapes, offsets)
            return reference_points[:, :, None, :, None, :] + offsets / size[:, None]
        # Offsets are relative to the box: ±0.5·w·offset/P around its centre.
        boxes = reference_points[:, :, None, :, None]
        return boxes[..., :2] + offsets / self.n_points * boxes[..., 2:] * 0.5
