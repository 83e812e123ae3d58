"""Text side: RoBERTa word features and pooled sentence feature, resized to the model width."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FeatureResizer(nn.Module):
    """Linear projection + LayerNorm from the text encoder width to the transformer width."""

    def __init__(self, input_dim: int, output_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc = nn.Linear(input_dim, output_dim)
        self.layer_norm = nn.LayerNorm(output_dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.layer_norm(self.fc(x)))


def tokenize(tokenizer, captions: list[str], device: torch.device | str) -> dict[str, Tensor]:
    """Tokenise a batch of captions, padded to the longest: input_ids / attention_mask [B, L]."""
    if not isinstance(captions, (list, tuple)) or not captions:
        raise ValueError("captions must be a non-empty list of strings, one per video")
    for caption in captions:
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"every caption must be a non-empty string, got {caption!r}")
    encoded = tokenizer(list(captions), padding="longest", return_tensors="pt")
    return {k: encoded[k].to(device) for k in ("input_ids", "attention_mask")}
