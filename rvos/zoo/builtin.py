"""The built-in model: a small ReferFormer trained from scratch on synthetic referring clips.

Same architecture as the released models, scaled down (about 2.5 M parameters) so that it trains
in under two hours and runs on a CPU:

* visual backbone: the (2+1)-D conv net of `rvos.modeling.small_backbone` (motion words need a
  backbone that sees neighbouring frames, see there);
* text encoder: a 2-layer RoBERTa of width 64 with its own byte-level BPE tokenizer trained on
  the generator's expressions — byte-level, so any word a user types still tokenizes;
* hidden width 64, 2 encoder + 3 decoder layers, 5 queries, as in the paper.

The text encoder is trained together with the rest (the released models freeze a pre-trained
RoBERTa; here there is no pre-trained one to freeze).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from rvos.modeling import ReferFormer, ReferFormerConfig, build_referformer
from rvos.modeling.tokenizer import TextTokenizer

__all__ = [
    "INPUT_SHORT_SIDE",
    "SPECIAL_TOKENS",
    "builtin_config",
    "build_builtin_model",
    "load_tokenizer",
    "train_tokenizer",
]

# Short side (pixels) of the frames the built-in model is trained and evaluated at. Recorded
# in the exported config.json as ``input_short_side`` so inference can resize to it.
INPUT_SHORT_SIDE = 128

# RoBERTa's special tokens, in RoBERTa's id order (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4),
# so the RobertaConfig defaults (pad_token_id=1, ...) hold.
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

# Longest caption (tokens, with <s> and </s>) the text encoder has positions for. RoBERTa's
# positions start after the padding index, hence the +2 in the config.
MAX_TOKENS = 128


def train_tokenizer(texts: Iterable[str], folder: str | os.PathLike, vocab_size: int = 1000):
    """Train a byte-level BPE tokenizer on ``texts`` and save it into ``folder``.

    The tokenizer lower-cases and collapses white space before splitting, and adds a prefix
    space, so "The Red circle", "the red  circle" and "red circle" share their word tokens.
    Every input byte is in the vocabulary, so unknown words still tokenize (into pieces).

    Returns the tokenizer as loaded back from ``folder`` (what `rvos.zoo.checkpoint.load_pretrained`
    does), so the caller uses exactly what will be shipped. The files load with
    ``transformers.AutoTokenizer`` too (``tokenizer_class`` "TokenizersBackend").
    """
    if vocab_size <= len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size must exceed {len(SPECIAL_TOKENS) + 256} (specials + bytes)")
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.NFKC(),
            normalizers.Lowercase(),
            normalizers.Replace(Regex(r"\s+"), " "),
            normalizers.Strip(),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")),
        ("<s>", tok.token_to_id("<s>")),
        add_prefix_space=True,
        trim_offsets=True,
    )
    # Saved as a generic tokenizers pipeline, so the normaliser is kept: transformers 5's
    # RobertaTokenizer class would rebuild the pipeline from the vocabulary and merges and
    # silently drop the lower-casing.
    config = {
        "tokenizer_class": "TokenizersBackend",
        "backend": "tokenizers",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "cls_token": "<s>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
        "model_max_length": MAX_TOKENS,
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    TextTokenizer(tok, config).save_pretrained(folder)
    return load_tokenizer(folder)


def load_tokenizer(folder: str | os.PathLike):
    """Load a tokenizer saved by `train_tokenizer` (or by ``save_pretrained``)."""
    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"no tokenizer.json in {folder}; create one with rvos.zoo.builtin.train_tokenizer"
        )
    return TextTokenizer.from_pretrained(folder)


def builtin_config(vocab_size: int, **overrides) -> ReferFormerConfig:
    """The built-in model's architecture.

    Arguments:
        vocab_size: size of the tokenizer's vocabulary (``len(tokenizer)``).
        overrides: ReferFormerConfig fields to change (tests use tinier models).
    """
    text = {
        "vocab_size": int(vocab_size),
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 256,
        "max_position_embeddings": MAX_TOKENS + 2,
        "type_vocab_size": 1,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }
    fields = {
        "backbone": "small3d",
        "backbone_kwargs": {
            "channels": [32, 64, 128, 192],
            "depths": [1, 1, 1, 1],
            "stem_channels": 16,
            "temporal_kernel": 3,
            "norm": "bn",
        },
        "hidden_dim": 64,
        "num_queries": 5,
        "num_feature_levels": 4,
        "enc_layers": 2,
        "dec_layers": 3,
        "nheads": 4,
        "dim_feedforward": 256,
        "enc_n_points": 4,
        "dec_n_points": 4,
        # Clips are drawn fresh every step, so there is no overfitting to regularise away.
        "dropout": 0.0,
        "mask_dim": 32,
        "controller_layers": 3,
        "dynamic_mask_channels": 8,
        "fpn_dim_feedforward": 256,
        "fpn_nheads": 4,
        "fusion_nheads": 4,
        "freeze_text_encoder": False,
        "text": text,
    }
    return with_overrides(ReferFormerConfig(**fields), **overrides)


def with_overrides(config: ReferFormerConfig, **overrides) -> ReferFormerConfig:
    """A copy of ``config`` with some fields changed; ``text`` and ``backbone_kwargs`` are
    updated key by key rather than replaced."""
    fields = config.to_dict()
    for key, value in overrides.items():
        if key in ("text", "backbone_kwargs"):
            fields[key] = {**(fields[key] or {}), **value}
        elif key in ReferFormerConfig.__dataclass_fields__:
            fields[key] = value
        else:
            raise ValueError(f"unknown ReferFormerConfig field {key!r}")
    return ReferFormerConfig.from_dict(fields)


def build_builtin_model(tokenizer, **overrides) -> ReferFormer:
    """A randomly initialised built-in model for ``tokenizer`` (see `builtin_config`)."""
    return build_referformer(builtin_config(len(tokenizer), **overrides), tokenizer)
