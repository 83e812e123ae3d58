"""Dynamic mask head: every query predicts the weights of a tiny 1×1 conv net (CondInst-style)
that turns the shared mask features into its own mask."""

from __future__ import annotations

import torch
from torch import Tensor


def dynamic_param_count(in_channels: int, channels: int = 8, num_layers: int = 3,
                        rel_coord: bool = True) -> int:
    weights, biases = _param_layout(in_channels, channels, num_layers, rel_coord)
    return sum(weights) + sum(biases)


def _param_layout(in_channels: int, channels: int, num_layers: int, rel_coord: bool):
    ins = [in_channels + (2 if rel_coord else 0)] + [channels] * (num_layers - 1)
    outs = [channels] * (num_layers - 1) + [1]
    return [i * o for i, o in zip(ins, outs, strict=False)], outs


def locations(h: int, w: int, stride: int, device, dtype) -> Tensor:
    """Input-image pixel position (x, y) of every mask-feature cell centre: [h, w, 2]."""
    ys = torch.arange(h, device=device, dtype=dtype) * stride + stride // 2
    xs = torch.arange(w, device=device, dtype=dtype) * stride + stride // 2
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)


def dynamic_masks(mask_features: Tensor, params: Tensor, reference_points: Tensor,
                  image_size: tuple[int, int], channels: int = 8, num_layers: int = 3,
                  rel_coord: bool = True, stride: int = 4) -> Tensor:
    """Run each query's dynamic conv net on the mask features of its own frame.

    Arguments:
        mask_features: [B, T, C, h, w].
        params: [B, T, Q, P] dynamic parameters (all weights first, then all biases).
        reference_points: [B, T, Q, 2] (x, y) normalised to the input image.
        image_size: (H, W) of the model input; the relative coordinates are in its pixels.
    Returns:
        mask logits [B, T, Q, h, w].
    """
    c = mask_features.shape[2]
    h, w = mask_features.shape[-2:]
    weight_sizes, out_channels = _param_layout(c, channels, num_layers, rel_coord)
    chunks = params.split(weight_sizes + out_channels, dim=-1)
    weights, biases = chunks[:num_layers], chunks[num_layers:]
    lead = params.shape[:3]

    # First layer: split the weight into its mask-feature part and its coordinate part, so the
    # C-channel features are never copied per query.
    w0 = weights[0].reshape(*lead, out_channels[0], -1)
    x = torch.einsum("btqoc,btchw->btqohw", w0[..., :c], mask_features)
    if rel_coord:
        height, width = image_size
        scale = torch.tensor([width, height], device=params.device, dtype=params.dtype)
        ref = reference_points * scale
        loc = locations(h, w, stride, params.device, params.dtype)
        rel = ref[:, :, :, None, None, :] - loc  # [B, T, Q, h, w, 2]
        x = x + torch.einsum("btqoc,btqhwc->btqohw", w0[..., c:], rel)
    x = x + biases[0][..., None, None]
    for i in range(1, num_layers):
        x = torch.relu(x)
        wi = weights[i].reshape(*lead, out_channels[i], -1)
        x = torch.einsum("btqoc,btqchw->btqohw", wi, x) + biases[i][..., None, None]
    return x[:, :, :, 0]
