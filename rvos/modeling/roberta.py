"""RoBERTa text encoder (Liu et al. 2019, "RoBERTa: A Robustly Optimized BERT Pretraining
Approach") in plain PyTorch: the BERT encoder (Devlin et al. 2019) with RoBERTa's embeddings.

ReferFormer reads two things from it: every token's final hidden state (the word features) and
the pooled sentence feature (tanh of a linear map of the first token, ``<s>``).

Parameter names and shapes are those of Hugging Face ``transformers.RobertaModel``, so its
state dicts — the ``text_encoder.*`` part of the released ReferFormer checkpoints, rvos's own
``model.safetensors`` — load unchanged; building the module does not need ``transformers``
(importing it costs seconds at start-up). Where the papers leave a detail open, the choice is
the one ``transformers`` documents, since the released weights were trained with it:

* positions count from ``pad_token_id + 1`` over the non-padding tokens only (padding tokens
  get position ``pad_token_id``), a quirk of fairseq's RoBERTa that the checkpoints depend on
  (hence ``max_position_embeddings = 514`` in ``roberta-base`` for 512 tokens);
* every token has token type 0 (RoBERTa has no sentence-pair embedding in use);
* post-norm residual blocks (``LayerNorm(x + sublayer(x))``), GELU with the exact erf form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rvos.errors import RvosError

__all__ = ["RobertaConfig", "RobertaModel", "roberta_position_ids"]

# transformers' names for activation functions, for the ones a RoBERTa config may name.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,  # exact: x * Phi(x) with the erf
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


class CaptionTooLongError(RvosError, ValueError):
    """A caption with more tokens than the text encoder has positions for."""


@dataclass(frozen=True)
class RobertaConfig:
    """The architecture, named as in a Hugging Face ``config.json``.

    The defaults are those of ``transformers.RobertaConfig()`` — *not* ``roberta-base``'s
    (which has 514 positions, 1 token type and LayerNorm eps 1e-5), so that a dict missing a
    key means here what it meant to ``transformers``.
    """

    vocab_size: int = 50265
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2

    def __post_init__(self) -> None:
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"unsupported hidden_act {self.hidden_act!r}; rvos's RoBERTa "
                f"knows {', '.join(ACTIVATIONS)}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )

    @classmethod
    def from_dict(cls, d: dict) -> RobertaConfig:
        """From a ``config.json`` dict: the keys above are read, the rest (``architectures``,
        ``transformers_version``, ``use_cache``, ...) are irrelevant to an encoder and ignored.
        Options that would change the function computed are refused rather than ignored."""
        if d.get("is_decoder") or d.get("add_cross_attention"):
            raise ValueError(
                "a RoBERTa decoder (is_decoder / add_cross_attention) is not a "
                "text encoder; ReferFormer uses the bidirectional encoder"
            )
        kind = d.get("position_embedding_type", "absolute")
        if kind != "absolute":
            raise ValueError(
                f"position_embedding_type {kind!r} is not supported "
                "(RoBERTa uses absolute positions)"
            )
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)


def roberta_position_ids(input_ids: Tensor, pad_token_id: int) -> Tensor:
    """input_ids [B, L] -> position ids [B, L]: ``pad_token_id + 1, + 2, ...`` over the real
    tokens, ``pad_token_id`` on padding (fairseq's numbering, which the checkpoints expect)."""
    real = input_ids.ne(pad_token_id).long()
    return real.cumsum(dim=1) * real + pad_token_id


class RobertaEmbeddings(nn.Module):
    """Word + token-type + position embeddings, then LayerNorm and dropout."""

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        h, pad = config.hidden_size, config.pad_token_id
        self.word_embeddings = nn.Embedding(config.vocab_size, h, padding_idx=pad)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h, padding_idx=pad)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pad_token_id = pad

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids [B, L] -> [B, L, H]."""
        positions = roberta_position_ids(input_ids, self.pad_token_id)
        table = self.position_embeddings.num_embeddings
        # Positions reach at most pad + L: only an input that long needs the exact (synchronising)
        # check, which turns an "index out of range" deep in the embedding into a clear message.
        if input_ids.shape[1] + self.pad_token_id >= table and int(positions.max()) >= table:
            longest = int(input_ids.ne(self.pad_token_id).sum(1).max())
            raise CaptionTooLongError(
                f"a caption of {longest} tokens is longer than the "
                f"{table - self.pad_token_id - 1} this text encoder has positions "
                "for; shorten it"
            )
        # Every token is of type 0: add that row rather than look up a tensor of zeros.
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        x = x + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


class RobertaSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention (the projections only; the output
    projection lives in `AddNorm`, as in the checkpoints' layout)."""

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: Tensor, attn_mask: Tensor | None) -> Tensor:
        """x [B, L, H], attn_mask [B, 1, 1, L] bool (True = attend) or None -> [B, L, H]."""
        b, n, h = x.shape

        def heads(t: Tensor) -> Tensor:  # [B, L, H] -> [B, heads, L, H / heads]
            return t.view(b, n, self.num_heads, h // self.num_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(self.query(x)),
            heads(self.key(x)),
            heads(self.value(x)),
            attn_mask=attn_mask,
            dropout_p=self.dropout_p if self.training else 0.0,
        )
        return out.transpose(1, 2).reshape(b, n, h)


class AddNorm(nn.Module):
    """``LayerNorm(residual + dropout(dense(x)))``: the end of both sub-layers of a block."""

    def __init__(self, d_in: int, d_out: int, config: RobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class RobertaAttention(nn.Module):
    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        # Named "self" because the checkpoints' keys are "attention.self.query.weight", ...
        self.self = RobertaSelfAttention(config)
        self.output = AddNorm(config.hidden_size, config.hidden_size, config)

    def forward(self, x: Tensor, attn_mask: Tensor | None) -> Tensor:
        return self.output(self.self(x, attn_mask), x)


class RobertaIntermediate(nn.Module):
    """The first half of the feed-forward sub-layer: ``act(dense(x))``."""

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACTIVATIONS[config.hidden_act]

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.dense(x))


class RobertaLayer(nn.Module):
    """One post-norm transformer block: self-attention, then the feed-forward network."""

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        self.attention = RobertaAttention(config)
        self.intermediate = RobertaIntermediate(config)
        self.output = AddNorm(config.intermediate_size, config.hidden_size, config)

    def forward(self, x: Tensor, attn_mask: Tensor | None) -> Tensor:
        x = self.attention(x, attn_mask)
        return self.output(self.intermediate(x), x)


class RobertaEncoder(nn.Module):
    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(RobertaLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: Tensor, attn_mask: Tensor | None) -> Tensor:
        for layer in self.layer:
            x = layer(x, attn_mask)
        return x


class RobertaPooler(nn.Module):
    """Sentence feature: ``tanh(dense(first token))`` (BERT's pooler; for RoBERTa the first
    token is ``<s>``)."""

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class RobertaModel(nn.Module):
    """RoBERTa encoder with its pooler.

    Arguments:
        config: a `RobertaConfig` or a ``config.json``-style dict.
    """

    def __init__(self, config: RobertaConfig | dict) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = RobertaConfig.from_dict(config)
        self.config = config
        self.embeddings = RobertaEmbeddings(config)
        self.encoder = RobertaEncoder(config)
        self.pooler = RobertaPooler(config)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT's initialisation: N(0, initializer_range) weights, zero biases, zero padding
        embeddings, unit LayerNorms."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Arguments:
            input_ids: [B, L] token ids, padded with ``pad_token_id``.
            attention_mask: [B, L], 1 on real tokens and 0 on padding (None = all real).
        Returns ``(last_hidden_state [B, L, H], pooler_output [B, H])``. Padding positions of
        ``last_hidden_state`` hold values too (their queries attend to the real tokens); no key
        attends to them.
        """
        x = self.embeddings(input_ids)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :]
        hidden = self.encoder(x, mask)
        return hidden, self.pooler(hidden)

    @property
    def num_positions(self) -> int:
        """Longest input (tokens, special tokens included) the position table covers."""
        return self.config.max_position_embeddings - self.config.pad_token_id - 1
