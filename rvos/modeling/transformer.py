"""Deformable transformer: multi-scale encoder and a decoder with iterative box refinement.

Frames are independent here: the batch dimension is N = B*T. The decoder's queries are the same
for every frame of a video (sentence feature + learned embeddings), so one query index tracks
one object hypothesis through the clip without any explicit association.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rvos.modeling.deformable_attention import MSDeformAttn


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs, strict=False))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def _add_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


# Hidden activations per chunk of `ffn_residual_norm` (32 MB of floats: 4096 tokens of the
# released models' 2048-wide FFN): small and reused, where the whole stride-4 level of a
# 36-frame clip would need 4 GB; wide enough that narrow FFNs (the built-in model's 256) still
# run a few large operations rather than many small ones, which stall when the CPU is shared.
FFN_CHUNK_ELEMENTS = 1 << 23
# The same for int8 layers (`rvos.modeling.quantize`): 1024 rows of a 2048-wide FFN. Without
# VNNI (AVX2's int8 products) the first product's output no longer fits the caches at 4096 rows:
# one encoder layer's FFN over 5 frames of 360×640 (23,950 tokens) took 155 ms in chunks of
# 4096 rows and 133 ms in chunks of 1024 (fp32: 312 ms); with VNNI, 67-68 ms either way.
INT8_FFN_CHUNK_ELEMENTS = 1 << 21


def ffn_residual_norm(x: Tensor, linear1: nn.Linear, linear2: nn.Linear, norm: nn.LayerNorm,
                      chunk: int | None = None) -> Tensor:
    """``norm(x + linear2(relu(linear1(x))))`` for inference (no dropout, no autograd).

    Rows are independent, so they go ``chunk`` at a time (default: `FFN_CHUNK_ELEMENTS` hidden
    values, `INT8_FFN_CHUNK_ELEMENTS` for int8 layers) through one reused hidden buffer: every
    large temporary of the plain expression (the hidden activation, its ReLU, the sum) was a
    fresh allocation of hundreds of MB, touched for the first time (page faults) and evicted
    from the caches before the next operation read it. Under autocast the two matrix products
    run in its dtype; the residual sum and the norm stay in ``x``'s.

    x: [..., C] -> [..., C].
    """
    shape = x.shape
    rows = x.reshape(-1, shape[-1])
    out = torch.empty_like(rows)
    replaced = not (isinstance(linear1.weight, Tensor) and isinstance(linear2.weight, Tensor))
    if chunk is None:
        elements = INT8_FFN_CHUNK_ELEMENTS if replaced else FFN_CHUNK_ELEMENTS
        chunk = max(1, elements // linear1.out_features)
    if replaced:
        # Replaced layers (int8): call them, still a chunk at a time.
        for start in range(0, rows.shape[0], chunk):
            part = rows[start:start + chunk]
            y = part + linear2(linear1(part).relu_())
            out[start:start + chunk] = F.layer_norm(y, norm.normalized_shape, norm.weight,
                                                    norm.bias, norm.eps)
        return out.view(shape)
    device = x.device.type
    low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else rows.dtype
    n = min(chunk, rows.shape[0])
    hidden = rows.new_empty(n, linear1.out_features, dtype=low)
    product = None if low == rows.dtype else rows.new_empty(n, shape[-1], dtype=low)
    w1, b1 = linear1.weight.to(low).t(), linear1.bias.to(low)
    w2 = linear2.weight.to(low).t()
    with torch.autocast(device, enabled=False):  # out= variants: dtypes are set by hand here
        for start in range(0, rows.shape[0], chunk):
            part = rows[start:start + chunk]
            h = hidden[:part.shape[0]]
            torch.addmm(b1, part.to(low), w1, out=h)
            h.relu_()
            y = out[start:start + chunk]
            if product is None:
                torch.addmm(part, h, w2, out=y)  # the residual plus the FFN ...
            else:
                torch.add(part, torch.mm(h, w2, out=product[:part.shape[0]]), out=y)
            y.add_(linear2.bias)  # ... and its bias
            y.copy_(F.layer_norm(y, norm.normalized_shape, norm.weight, norm.bias, norm.eps))
    return out.view(shape)


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int,
                 n_points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor, spatial_shapes: Tensor,
                padding_mask: Tensor | None) -> Tensor:
        attn, _ = self.self_attn(_add_pos(src, pos), reference_points, src, spatial_shapes,
                                 padding_mask)
        src = self.norm1(src + self.dropout1(attn))
        if not (self.training or torch.is_grad_enabled()):
            return ffn_residual_norm(src, self.linear1, self.linear2, self.norm2)
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src), inplace=True)))
        return self.norm2(src + self.dropout3(ffn))


class Encoder(nn.Module):
    def __init__(self, layer: EncoderLayer, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    @staticmethod
    def reference_points(spatial_shapes: Tensor, valid_ratios: Tensor) -> Tensor:
        """Pixel centres of every level, normalised: [N, S, L, 2] (x, y)."""
        points = []
        for level, (h, w) in enumerate(spatial_shapes.tolist()):
            ys, xs = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=valid_ratios.device),
                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=valid_ratios.device),
                indexing="ij",
            )
            ys = ys.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * h)
            xs = xs.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * w)
            points.append(torch.stack((xs, ys), -1))
        points = torch.cat(points, 1)
        return points[:, :, None] * valid_ratios[:, None]

    def forward(self, src: Tensor, spatial_shapes: Tensor, valid_ratios: Tensor, pos: Tensor,
                padding_mask: Tensor | None) -> Tensor:
        reference_points = self.reference_points(spatial_shapes, valid_ratios).to(src.dtype)
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, padding_mask)
        return src


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int,
                 n_points: int) -> None:
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, query_pos: Tensor, reference_points: Tensor, src: Tensor,
                spatial_shapes: Tensor, padding_mask: Tensor | None, return_sampling: bool):
        q = k = _add_pos(tgt, query_pos).transpose(0, 1)
        attn = self.self_attn(q, k, tgt.transpose(0, 1), need_weights=False)[0].transpose(0, 1)
        tgt = self.norm2(tgt + self.dropout2(attn))
        attn, sampling = self.cross_attn(_add_pos(tgt, query_pos), reference_points, src,
                                         spatial_shapes, padding_mask, return_sampling)
        tgt = self.norm1(tgt + self.dropout1(attn))
        ffn = self.linear2(self.dropout3(F.relu(self.linear1(tgt), inplace=True)))
        return self.norm3(tgt + self.dropout4(ffn)), sampling


class Decoder(nn.Module):
    """Stacked decoder layers; ``bbox_embed`` (set by the detector) refines boxes layer by layer."""

    def __init__(self, layer: DecoderLayer, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.bbox_embed: nn.ModuleList | None = None

    def forward(self, tgt: Tensor, reference_points: Tensor, src: Tensor, spatial_shapes: Tensor,
                valid_ratios: Tensor, query_pos: Tensor, padding_mask: Tensor | None,
                return_sampling: bool = False):
        output = tgt
        states, references, samplings = [], [], []
        for i, layer in enumerate(self.layers):
            if reference_points.shape[-1] == 4:
                ratios = torch.cat([valid_ratios] * 2, -1)
                ref_input = reference_points[:, :, None] * ratios[:, None]
            else:
                ref_input = reference_points[:, :, None] * valid_ratios[:, None]
            output, sampling = layer(output, query_pos, ref_input, src, spatial_shapes,
                                     padding_mask, return_sampling)
            if self.bbox_embed is not None:
                delta = self.bbox_embed[i](output)
                if reference_points.shape[-1] == 4:
                    new_reference = (delta + inverse_sigmoid(reference_points)).sigmoid()
                else:
                    new_reference = torch.cat(
                        [delta[..., :2] + inverse_sigmoid(reference_points), delta[..., 2:]], -1
                    ).sigmoid()
                # Refinement is not back-propagated through the next layer's reference point.
                reference_points = new_reference.detach()
            states.append(output)
            references.append(reference_points)
            samplings.append(sampling)
        return torch.stack(states), torch.stack(references), samplings


@dataclass
class TransformerOutput:
    hs: Tensor                    # [num_layers, N, Q, C] query states after each decoder layer
    init_reference: Tensor        # [N, Q, 2]
    inter_references: Tensor      # [num_layers, N, Q, 4] refined boxes (sigmoid space)
    memory: list[Tensor]          # encoder output of the first L-1 levels, each [N, C, h, w]
    sampling: list                # per decoder layer: (locations, weights) or None
    spatial_shapes: Tensor        # [L, 2]


class DeformableTransformer(nn.Module):
    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 4,
                 num_decoder_layers: int = 4, dim_feedforward: int = 2048, dropout: float = 0.1,
                 num_feature_levels: int = 4, dec_n_points: int = 4,
                 enc_n_points: int = 4) -> None:
        super().__init__()
        self.d_model = d_model
        self.encoder = Encoder(
            EncoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead,
                         enc_n_points), num_encoder_layers)
        self.decoder = Decoder(
            DecoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead,
                         dec_n_points), num_decoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reference_points = nn.Linear(d_model, 2)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
        nn.init.zeros_(self.reference_points.bias)
        nn.init.normal_(self.level_embed)

    def initial_reference(self, query_embed: Tensor) -> Tensor:
        """[Q, C] learned query embeddings -> [Q, 2] (x, y) in [0, 1]: where the first decoder
        layer starts each query. They depend on the embeddings only: the same in every frame and
        for every sentence."""
        return self.reference_points(query_embed).sigmoid()

    @staticmethod
    def valid_ratio(mask: Tensor) -> Tensor:
        """mask [N, h, w] (True = padding) -> [N, 2] (w, h) fraction of the map that is image."""
        _, h, w = mask.shape
        valid_h = (~mask[:, :, 0]).sum(1).float() / h
        valid_w = (~mask[:, 0, :]).sum(1).float() / w
        return torch.stack([valid_w, valid_h], -1)

    def forward(self, srcs: list[Tensor], masks: list[Tensor], pos_embeds: list[Tensor],
                tgt: Tensor, query_embed: Tensor, return_sampling: bool = False
                ) -> TransformerOutput:
        """Arguments:
            srcs / masks / pos_embeds: per level [N, C, h, w] / [N, h, w] / [N, C, h, w].
            tgt: [N, Q, C] decoder input (the sentence feature, repeated over queries and frames).
            query_embed: [Q, C] learned query embeddings, used as query positions.
        """
        flat_src, flat_mask, flat_pos, shapes = [], [], [], []
        for level, (src, mask, pos) in enumerate(zip(srcs, masks, pos_embeds, strict=False)):
            shapes.append(src.shape[-2:])
            flat_src.append(src.flatten(2).transpose(1, 2))
            flat_mask.append(mask.flatten(1))
            flat_pos.append(pos.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1))
        src_flatten = torch.cat(flat_src, 1)
        mask_flatten = torch.cat(flat_mask, 1)
        pos_flatten = torch.cat(flat_pos, 1)
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=src_flatten.device)
        valid_ratios = torch.stack([self.valid_ratio(m) for m in masks], 1)

        memory = self.encoder(src_flatten, spatial_shapes, valid_ratios, pos_flatten, mask_flatten)

        n, _, c = memory.shape
        query_pos = query_embed.unsqueeze(0).expand(n, -1, -1)
        init_reference = self.initial_reference(query_embed).unsqueeze(0).expand(n, -1, -1)
        hs, inter_references, sampling = self.decoder(
            tgt, init_reference, memory, spatial_shapes, valid_ratios, query_pos, mask_flatten,
            return_sampling)

        memory_maps, start = [], 0
        for h, w in shapes[:-1]:
            chunk = memory[:, start:start + h * w]
            memory_maps.append(chunk.reshape(n, h, w, c).permute(0, 3, 1, 2))
            start += h * w
        return TransformerOutput(hs, init_reference, inter_references, memory_maps, sampling,
                                 spatial_shapes)
