"""Visual tokens attending to words, with the attention weights only on request.

The early fusion and every scale of the cross-modal FPN let each visual token attend to the
words of the sentence (`torch.nn.MultiheadAttention` modules, so the checkpoints' names hold).
The output comes from ``scaled_dot_product_attention`` (a fused kernel that never materialises
the weights); the per-head weights, which the app's attention views show, are computed beside
it only when asked for. So asking for them never changes the output, and not asking costs
nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def attend_to_words(attention: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor,
                    key_padding_mask: Tensor | None, need_weights: bool
                    ) -> tuple[Tensor, Tensor | None]:
    """``attention(query, key, value)`` for sequence-first inputs.

    Arguments:
        query: [Nq, B, C] visual tokens; key / value: [L, B, C] words.
        key_padding_mask: [B, L], True on padding.
    Returns:
        output [Nq, B, C], and the weights of each head [B, heads, Nq, L] when
        ``need_weights`` (else None).
    """
    if attention.training:  # the module itself, dropout included
        out, weights = attention(query, key, value, key_padding_mask=key_padding_mask,
                                 need_weights=need_weights, average_attn_weights=False)
        return out, weights
    heads = attention.num_heads
    nq, b, c = query.shape
    d = c // heads
    wq, wk, wv = attention.in_proj_weight.chunk(3)
    bq, bk, bv = attention.in_proj_bias.chunk(3)
    q = F.linear(query, wq, bq).view(nq, b, heads, d).permute(1, 2, 0, 3)  # [B, heads, Nq, d]
    k = F.linear(key, wk, bk).view(-1, b, heads, d).permute(1, 2, 0, 3)
    v = F.linear(value, wv, bv).view(-1, b, heads, d).permute(1, 2, 0, 3)
    mask = None
    if key_padding_mask is not None:
        # Additive, as MultiheadAttention builds it: -inf on padded words.
        mask = torch.zeros(key_padding_mask.shape, dtype=q.dtype, device=q.device)
        mask = mask.masked_fill(key_padding_mask, float("-inf"))[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, heads, Nq, d]
    out = attention.out_proj(out.permute(2, 0, 1, 3).reshape(nq, b, c))
    weights = None
    if need_weights:
        logits = torch.matmul(q, k.transpose(-1, -2)).mul_(d ** -0.5)
        if mask is not None:
            logits += mask
        weights = logits.softmax(-1)
    return out, weights
