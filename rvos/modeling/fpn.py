"""Cross-modal FPN: a feature pyramid whose every scale first attends to the words.

Each scale runs a vision-language block over the tokens of *all frames of the clip together*
(self-attention, spatially reduced by ``sr_ratio`` to keep the stride-4 level affordable), then
cross-attention to the words, then an FFN; the result feeds a top-down FPN whose stride-4
output is the mask feature map the dynamic mask head reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rvos.modeling.attention import attend_to_words
from rvos.modeling.position import PositionEmbeddingSine1D
from rvos.modeling.transformer import ffn_residual_norm


class ConvNorm(nn.Conv2d):
    """Conv2d followed by a norm (child ``norm``) and an optional ReLU."""

    def __init__(self, *args, norm: nn.Module, relu: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


def _to_tokens(x: Tensor, b: int) -> Tensor:
    """[B*T, C, h, w] -> [T*h*w, B, C]: one sequence per video over all its frames."""
    n, c, h, w = x.shape
    return x.view(b, n // b, c, h, w).permute(1, 3, 4, 0, 2).reshape(-1, b, c)


def _from_tokens(x: Tensor, t: int, h: int, w: int) -> Tensor:
    """[T*h*w, B, C] -> [B*T, C, h, w]."""
    _, b, c = x.shape
    return x.view(t, h, w, b, c).permute(3, 0, 4, 1, 2).reshape(b * t, c, h, w)


class VisionLanguageBlock(nn.Module):
    def __init__(self, d_model: int, nhead: int = 8, dim_feedforward: int = 2048,
                 dropout: float = 0.1, sr_ratio: int = 1) -> None:
        super().__init__()
        self.sr_ratio = sr_ratio
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, t: int, h: int, w: int,
                memory_key_padding_mask: Tensor | None, pos: Tensor | None,
                query_pos: Tensor | None, need_weights: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """tgt [T*h*w, B, C] visual tokens; memory [L, B, C] words -> (tokens, with
        ``need_weights`` the word attention of each head [B, heads, T*h*w, L])."""
        b = tgt.shape[1]
        q = k = tgt if query_pos is None else tgt + query_pos
        v = tgt
        if self.sr_ratio > 1:
            # Spatial reduction: queries, keys and values are all downsampled (nearest); the
            # output is upsampled back bilinearly.
            size = (max(1, int(h / self.sr_ratio)), max(1, int(w / self.sr_ratio)))
            q, k, v = (
                _to_tokens(F.interpolate(_from_tokens(x, t, h, w), size=size, mode="nearest"), b)
                for x in (q, k, v)
            )
        attn = self.self_attn(q, k, v, need_weights=False)[0]
        if self.sr_ratio > 1:
            attn = _from_tokens(attn, t, *size)
            attn = F.interpolate(attn, size=(h, w), mode="bilinear", align_corners=False)
            attn = _to_tokens(attn, b)
        tgt = self.norm1(tgt + self.dropout1(attn))
        attn, word_attn = attend_to_words(
            self.multihead_attn, tgt if query_pos is None else tgt + query_pos,
            memory if pos is None else memory + pos, memory, memory_key_padding_mask,
            need_weights)
        tgt = self.norm2(tgt + self.dropout2(attn))
        if not (self.training or torch.is_grad_enabled()):
            # At stride 4 the FFN's activation is T·H/4·W/4 × dim_feedforward (590 MB for five
            # 360×640 frames): run it in chunks through one small buffer.
            return ffn_residual_norm(tgt, self.linear1, self.linear2, self.norm3), word_attn
        ffn = self.linear2(self.dropout(F.relu(self.linear1(tgt), inplace=True)))
        return self.norm3(tgt + self.dropout3(ffn)), word_attn


class CrossModalFPN(nn.Module):
    """Levels are numbered 1..4 from stride 4 to stride 32 (``adapter_1`` reads res2).

    Its convolutions use GroupNorm with 8 groups (the input projections use 32): the released
    weights were trained that way, and the parity fixture tells the two apart.
    """

    def __init__(self, in_channels: list[int], conv_dim: int = 256, mask_dim: int = 256,
                 dim_feedforward: int = 2048, nhead: int = 8,
                 sr_ratios: tuple[int, ...] = (8, 4, 2, 1), dropout: float = 0.1,
                 norm_groups: int = 8) -> None:
        super().__init__()
        for stage, channels in enumerate(in_channels, start=1):
            self.add_module(f"adapter_{stage}", ConvNorm(
                channels, conv_dim, 1, bias=False, norm=nn.GroupNorm(norm_groups, conv_dim)))
            self.add_module(f"layer_{stage}", ConvNorm(
                conv_dim, conv_dim, 3, padding=1, bias=False,
                norm=nn.GroupNorm(norm_groups, conv_dim), relu=True))
            self.add_module(f"cross_attn_{stage}", VisionLanguageBlock(
                conv_dim, nhead, dim_feedforward, dropout, sr_ratios[stage - 1]))
        self.num_stages = len(in_channels)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 3, padding=1)
        self.text_pos = PositionEmbeddingSine1D(conv_dim)

    def forward(self, res2: Tensor, memory: list[Tensor], poses: list[Tensor], words: Tensor,
                word_mask: Tensor, num_frames: int, need_weights: bool = False
                ) -> tuple[Tensor, list[Tensor | None]]:
        """Arguments:
            res2: [B*T, C0, H/4, W/4] backbone stride-4 features.
            memory: encoder outputs at strides 8, 16, 32, each [B*T, C, h, w].
            poses: position embeddings at strides 4, 8, 16, 32, each [B*T, C, h, w].
            words: [B, L, C] word features; word_mask: [B, L] True on padding.
        Returns:
            mask features [B*T, mask_dim, H/4, W/4] and, with ``need_weights``, the word
            attention of every scale (stride 4 first), each [B, heads, T*h*w, L] (else None).
        """
        b = words.shape[0]
        text_pos = self.text_pos(word_mask).to(words.dtype).transpose(0, 1)
        text = words.transpose(0, 1)
        inputs = [res2] + list(memory)
        y = None
        attentions = {}
        for stage in range(self.num_stages, 0, -1):  # top-down: stride 32 -> 4
            x = getattr(self, f"adapter_{stage}")(inputs[stage - 1])
            _, _, h, w = x.shape
            tokens, attn = getattr(self, f"cross_attn_{stage}")(
                _to_tokens(x, b), text, num_frames, h, w, word_mask, text_pos,
                _to_tokens(poses[stage - 1], b), need_weights)
            attentions[stage] = attn
            cur = _from_tokens(tokens, num_frames, h, w)
            if y is not None:
                # Nearest upsampling, as in FPN.
                cur = cur + F.interpolate(y, size=(h, w), mode="nearest")
            y = getattr(self, f"layer_{stage}")(cur)
        return self.mask_features(y), [attentions[s] for s in range(1, self.num_stages + 1)]
