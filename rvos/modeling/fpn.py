"""Cross-modal FPN: a feature pyramid whose every scale first attends to the words.

Each scale runs a vision-language block over the tokens of *all frames of the clip together*
(self-attention, spatially reduced by ``sr_ratio`` to keep the stride-4 level affordable), then
cross-attention to the words, then an FFN; the result feeds a top-down FPN whose stride-4
output is the mask feature map the dynamic mask head reads. That self-attention is the only
operation here that mixes frames; everything else is per frame.
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
    """One scale of the cross-modal FPN: self-attention over the tokens of *all frames of the
    clip together* (spatially reduced), cross-attention to the words, an FFN.

    The self-attention is the one operation after the backbone that mixes frames, so it is
    split out: `reduce` (per frame) gives its queries/keys and values, `mix_frames` runs it over
    every frame of each video, and `forward` (per frame again) does the rest on any run of
    frames. A long window thus goes through `forward` a few frames at a time, and only the
    reduced tokens (1/64 of the stride-4 map) of the whole window are held together.
    """

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

    def reduce(self, x: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        """x, pos [N, C, h, w] -> the self-attention's queries (= keys, ``x + pos``) and values
        (``x``), spatially reduced by ``sr_ratio`` (nearest), each [N, C, h', w']."""
        qk = x + pos
        if self.sr_ratio == 1:
            return qk, x
        h, w = x.shape[-2:]
        size = (max(1, int(h / self.sr_ratio)), max(1, int(w / self.sr_ratio)))
        return F.interpolate(qk, size=size, mode="nearest"), F.interpolate(x, size=size,
                                                                           mode="nearest")

    def mix_frames(self, qk: Tensor, v: Tensor, b: int) -> Tensor:
        """`reduce`'s output for *every* frame of B videos, each [B*T, C, h', w'] -> the
        self-attention over each video's T·h'·w' tokens, [B*T, C, h', w']."""
        t, (h, w) = qk.shape[0] // b, qk.shape[-2:]
        q = _to_tokens(qk, b)
        attn = self.self_attn(q, q, _to_tokens(v, b), need_weights=False)[0]
        return _from_tokens(attn, t, h, w)

    def forward(self, x: Tensor, mixed: Tensor, memory: Tensor,
                memory_key_padding_mask: Tensor | None, pos: Tensor | None, query_pos: Tensor,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Arguments:
            x: [B*T', C, h, w] visual features of T' frames of each of B videos.
            mixed: [B*T', C, h', w'] those frames' part of `mix_frames`'s output.
            memory: [L, B, C] words; pos: their position embeddings.
            query_pos: [B*T', C, h, w] position embeddings of the visual features.
        Returns:
            tokens [T'*h*w, B, C] and, with ``need_weights``, the word attention of each head
            [B, heads, T'*h*w, L].
        """
        b, (h, w) = memory.shape[1], x.shape[-2:]
        if self.sr_ratio > 1:
            # The reduced attention output is upsampled back bilinearly.
            mixed = F.interpolate(mixed, size=(h, w), mode="bilinear", align_corners=False)
        tgt = self.norm1(_to_tokens(x, b) + self.dropout1(_to_tokens(mixed, b)))
        query_pos = _to_tokens(query_pos, b)
        attn, word_attn = attend_to_words(
            self.multihead_attn, tgt + query_pos, memory if pos is None else memory + pos,
            memory, memory_key_padding_mask, need_weights)
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

    Three steps, so that a long clip can go through the per-frame ones a few frames at a time
    (`rvos.modeling.ReferFormer` does): `adapt` and `reduce` (per frame), `mix_frames` (every
    frame of the clip at once, on reduced tokens), `forward` (per frame: the rest of every
    scale, top-down, and the mask features).
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

    def adapt(self, res2: Tensor, memory: list[Tensor]) -> list[Tensor]:
        """res2 [N, C0, H/4, W/4] backbone stride-4 features and the encoder outputs at strides
        8, 16, 32 ([N, C, h, w] each) -> every scale's input, [N, conv_dim, h, w] (stride 4
        first). Per frame."""
        return [getattr(self, f"adapter_{stage}")(x)
                for stage, x in enumerate([res2, *memory], start=1)]

    def reduce(self, adapted: list[Tensor], poses: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """`adapt`'s output and the position embeddings at strides 4..32 -> every scale's
        reduced self-attention inputs (`VisionLanguageBlock.reduce`). Per frame."""
        return [getattr(self, f"cross_attn_{stage}").reduce(x, pos)
                for stage, (x, pos) in enumerate(zip(adapted, poses, strict=False), start=1)]

    def mix_frames(self, reduced: list[tuple[Tensor, Tensor]], b: int) -> list[Tensor]:
        """`reduce`'s output for every frame of B videos -> every scale's self-attention output
        over all the frames of each video ([B*T, C, h', w'] each)."""
        return [getattr(self, f"cross_attn_{stage}").mix_frames(qk, v, b)
                for stage, (qk, v) in enumerate(reduced, start=1)]

    def forward(self, adapted: list[Tensor], mixed: list[Tensor], poses: list[Tensor],
                words: Tensor, word_mask: Tensor, need_weights: bool = False
                ) -> tuple[Tensor, list[Tensor | None]]:
        """The rest of the FPN on T' frames of each of B videos.

        Arguments:
            adapted: `adapt`'s output for these frames, each [B*T', C, h, w].
            mixed: these frames' part of `mix_frames`'s output, each [B*T', C, h', w'].
            poses: position embeddings at strides 4, 8, 16, 32, each [B*T', C, h, w].
            words: [B, L, C] word features; word_mask: [B, L] True on padding.
        Returns:
            mask features [B*T', mask_dim, H/4, W/4] and, with ``need_weights``, the word
            attention of every scale (stride 4 first), each [B, heads, T'*h*w, L] (else None).
        """
        b = words.shape[0]
        text_pos = self.text_pos(word_mask).to(words.dtype).transpose(0, 1)
        text = words.transpose(0, 1)
        y = None
        attentions = {}
        for stage in range(self.num_stages, 0, -1):  # top-down: stride 32 -> 4
            x = adapted[stage - 1]
            n, _, h, w = x.shape
            tokens, attn = getattr(self, f"cross_attn_{stage}")(
                x, mixed[stage - 1], text, word_mask, text_pos, poses[stage - 1], need_weights)
            attentions[stage] = attn
            cur = _from_tokens(tokens, n // b, h, w)
            if y is not None:
                # Nearest upsampling, as in FPN.
                cur = cur + F.interpolate(y, size=(h, w), mode="nearest")
            y = getattr(self, f"layer_{stage}")(cur)
        return self.mask_features(y), [attentions[s] for s in range(1, self.num_stages + 1)]

    def run(self, res2: Tensor, memory: list[Tensor], poses: list[Tensor], words: Tensor,
            word_mask: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor | None]]:
        """The whole FPN on whole clips (`adapt`, `reduce`, `mix_frames`, `forward`): arguments
        as `adapt` and `forward`, over every frame."""
        adapted = self.adapt(res2, memory)
        mixed = self.mix_frames(self.reduce(adapted, poses), words.shape[0])
        return self(adapted, mixed, poses, words, word_mask, need_weights)
