"""RoBERTa tokenizers read from Hugging Face folders with the ``tokenizers`` package alone.

`TextTokenizer.from_pretrained(folder)` gives, for the folders rvos meets, the token ids,
attention masks, offsets and special-token masks that ``transformers.AutoTokenizer`` gives,
without importing ``transformers`` (seconds of start-up). A folder holds ``tokenizer.json`` or
``vocab.json`` + ``merges.txt``, and usually ``tokenizer_config.json``, whose
``tokenizer_class`` says how ``transformers`` would build the tokenizer:

* ``RobertaTokenizer`` / ``RobertaTokenizerFast`` (released RoBERTa text encoders, the parity
  fixture) or no config at all beside ``vocab.json`` + ``merges.txt``: the byte-level BPE
  pipeline is *rebuilt* from the vocabulary and merges, as ``transformers`` 5 does — no
  normaliser, ``ByteLevel`` pre-tokenizer with the config's ``add_prefix_space`` (default
  false), ``<s> … </s>`` around each text (``RobertaProcessing``). Whatever other pipeline a
  ``tokenizer.json`` describes is ignored, as ``transformers`` ignores it;
* ``TokenizersBackend`` / ``PreTrainedTokenizerFast`` (the built-in model's tokenizer, which
  lower-cases and collapses spaces): ``tokenizer.json`` is used as saved.

In both cases the special tokens the config names are added to the vocabulary if missing.
Padding and truncation settings stored in ``tokenizer.json`` are ignored: each call says
whether to pad (``transformers`` resets them per call too); nothing is ever truncated.
`save_pretrained` writes files that both this class and ``AutoTokenizer`` load again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE

from rvos.errors import RvosError

__all__ = ["TextTokenizer", "TokenizerError"]

CONFIG_FILE = "tokenizer_config.json"
TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"

# The named special tokens, in transformers' order, with the defaults a RoBERTa tokenizer takes.
ROBERTA_SPECIAL_TOKENS: dict[str, str] = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "cls_token": "<s>",
    "mask_token": "<mask>",
}
ROBERTA_CLASSES = ("RobertaTokenizer", "RobertaTokenizerFast")
AS_SAVED_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
# tokenizer_config.json entries that say where a tokenizer was loaded from, not what it is
# (the added tokens are in tokenizer.json, which is what transformers 5 writes too).
_NOT_SAVED = (
    "name_or_path",
    "is_local",
    "local_files_only",
    "tokenizer_file",
    "vocab_file",
    "merges_file",
    "added_tokens_decoder",
)


class TokenizerError(RvosError, ValueError):
    """A folder that holds no tokenizer rvos can read; the message says why."""


def _content(value: Any) -> str | None:
    """A special token as written in tokenizer_config.json (a string or an AddedToken dict)."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _added_token(value: Any, special: bool) -> AddedToken:
    if isinstance(value, dict):
        fields = {
            k: value[k]
            for k in ("single_word", "lstrip", "rstrip", "normalized", "special")
            if k in value
        }
        return AddedToken(value["content"], **{"special": special, **fields})
    return AddedToken(value, special=special)


class TextTokenizer:
    """A byte-level BPE tokenizer with RoBERTa's special tokens, called like a Hugging Face
    tokenizer: ``tok(["a dog", "the red ball"], padding="longest", return_tensors="pt")``.

    Arguments:
        backend: the ``tokenizers.Tokenizer`` doing the work (its full pipeline).
        config: the ``tokenizer_config.json`` entries (``tokenizer_class``, special tokens,
            ``model_max_length``, ...), written back by `save_pretrained`.
    """

    def __init__(self, backend: Tokenizer, config: dict[str, Any]) -> None:
        self.backend_tokenizer = backend
        self.config = dict(config)
        self.special_tokens: dict[str, str] = {
            name: content
            for name in ROBERTA_SPECIAL_TOKENS
            if (content := _content(config.get(name))) is not None
        }
        self.padding_side: str = config.get("padding_side", "right")
        self.model_max_length: int | None = config.get("model_max_length")
        backend.encode_special_tokens = bool(config.get("split_special_tokens", False))

    # ------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> TextTokenizer:
        """Load the tokenizer saved in ``folder`` (see the module docstring for which files)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise TokenizerError(f"tokenizer folder not found: {folder}")
        config: dict[str, Any] = {}
        if (folder / CONFIG_FILE).is_file():
            config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        has_json = (folder / TOKENIZER_FILE).is_file()
        has_bpe = (folder / VOCAB_FILE).is_file() and (folder / MERGES_FILE).is_file()
        kind = config.get("tokenizer_class")
        if kind is None:
            kind = (
                ROBERTA_CLASSES[0]
                if has_bpe or _model_type(folder) == "roberta"
                else (AS_SAVED_CLASSES[0])
            )
            config["tokenizer_class"] = kind
        if not (has_json or has_bpe):
            raise TokenizerError(
                f"no tokenizer in {folder}: it holds neither {TOKENIZER_FILE} "
                f"nor {VOCAB_FILE} + {MERGES_FILE}"
            )
        file_tokens: list[tuple[int, AddedToken]] = []
        if kind in ROBERTA_CLASSES:
            vocab, merges, file_tokens = _read_bpe(folder, has_json)
            config = {**ROBERTA_SPECIAL_TOKENS, **config}
            backend = _roberta_pipeline(vocab, merges, config)
        elif kind in AS_SAVED_CLASSES:
            if not has_json:
                raise TokenizerError(f"{folder} names {kind} but has no {TOKENIZER_FILE}")
            backend = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        else:
            raise TokenizerError(
                f"{folder} holds a {kind}; rvos reads RoBERTa byte-level BPE tokenizers "
                f"({', '.join(ROBERTA_CLASSES + AS_SAVED_CLASSES)})"
            )
        if "added_tokens_decoder" in config:  # takes precedence over tokenizer.json's list
            file_tokens = [
                (int(i), _added_token(t, bool(t.get("special", False))))
                for i, t in config["added_tokens_decoder"].items()
            ]
        _add_tokens(backend, file_tokens, config)
        if kind in ROBERTA_CLASSES:
            sep, bos = config["sep_token"], config["cls_token"]
            backend.post_processor = processors.RobertaProcessing(
                (_content(sep), backend.token_to_id(_content(sep))),
                (_content(bos), backend.token_to_id(_content(bos))),
                trim_offsets=bool(config.get("trim_offsets", True)),
                add_prefix_space=bool(config.get("add_prefix_space", False)),
            )
        return cls(backend, config)

    # ------------------------------------------------------------------------- encoding
    def __call__(
        self,
        text: str | Sequence[str],
        *,
        padding: bool | str = False,
        return_tensors: str | None = None,
        add_special_tokens: bool = True,
        return_attention_mask: bool = True,
        return_offsets_mapping: bool = False,
        return_special_tokens_mask: bool = False,
    ) -> dict[str, Any]:
        """Tokenise one text or a batch.

        Arguments:
            text: a string, or a list of strings (a batch).
            padding: False / "do_not_pad", or True / "longest" (pad to the batch's longest
                with ``pad_token``, on ``padding_side``).
            return_tensors: None (lists) or "pt" ([B, L] int64 tensors; a single text gives
                B = 1; the batch must be padded unless all texts have one length).
            return_offsets_mapping: add ``offset_mapping``, (start, end) characters of each
                token in its text ((0, 0) for special tokens).
            return_special_tokens_mask: add ``special_tokens_mask``, 1 on special tokens.
        Returns a dict with ``input_ids`` and ``attention_mask`` (1 = real token, 0 = padding)
        and the requested extras; for a single string and no tensors, each a flat list.
        """
        batched = not isinstance(text, str)
        texts = list(text) if batched else [text]
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"text must be a string or a list of strings, got {type(t)}")
        backend = self.backend_tokenizer
        if padding in (True, "longest"):
            if self.pad_token_id is None:
                raise ValueError("this tokenizer has no pad_token, so it cannot pad")
            backend.enable_padding(
                direction=self.padding_side,
                pad_id=self.pad_token_id,
                pad_type_id=0,
                pad_token=self.special_tokens["pad_token"],
            )
        elif padding in (False, None, "do_not_pad"):
            backend.no_padding()
        else:
            raise ValueError(f"padding={padding!r} is not supported (True, 'longest' or False)")
        backend.no_truncation()
        encodings = backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        out: dict[str, Any] = {"input_ids": [e.ids for e in encodings]}
        if return_attention_mask:
            out["attention_mask"] = [e.attention_mask for e in encodings]
        if return_special_tokens_mask:
            out["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encodings]
        if return_tensors == "pt":
            if len({len(ids) for ids in out["input_ids"]}) > 1:
                raise ValueError(
                    "texts of different lengths need padding=True to become one tensor"
                )
            return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
        if return_tensors is not None:
            raise ValueError(f"return_tensors={return_tensors!r} is not supported (None or 'pt')")
        return out if batched else {k: v[0] for k, v in out.items()}

    def __len__(self) -> int:
        """Vocabulary size, added tokens included (the embedding table's rows)."""
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        if isinstance(ids, int):
            return self.backend_tokenizer.id_to_token(ids)
        return [self.backend_tokenizer.id_to_token(int(i)) for i in ids]

    def token_to_id(self, token: str) -> int | None:
        return self.backend_tokenizer.token_to_id(token)

    def __getattr__(self, name: str) -> Any:
        """``bos_token`` ... ``mask_token`` and their ``*_id``, as in transformers (None when
        the tokenizer has no such token)."""
        specials = self.__dict__.get("special_tokens")
        base = name.removesuffix("_id")
        if specials is None or base not in ROBERTA_SPECIAL_TOKENS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        token = specials.get(base)
        if name == base or token is None:
            return token
        return self.token_to_id(token)

    @property
    def all_special_tokens(self) -> list[str]:
        """The named special tokens (``<s>``, ``</s>``, ``<unk>``, ``<pad>``, ``<mask>``)."""
        return list(dict.fromkeys(self.special_tokens.values()))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.token_to_id(t) for t in self.all_special_tokens]

    # ------------------------------------------------------------------------- saving
    def save_pretrained(self, folder: str | os.PathLike) -> tuple[str, ...]:
        """Write ``tokenizer_config.json`` and ``tokenizer.json`` (+ ``vocab.json`` and
        ``merges.txt`` for a RoBERTa tokenizer) into ``folder``; returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        backend = self.backend_tokenizer
        backend.no_padding()
        backend.no_truncation()
        paths = [folder / CONFIG_FILE, folder / TOKENIZER_FILE]
        config = {k: v for k, v in self.config.items() if k not in _NOT_SAVED}
        paths[0].write_text(
            json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        backend.save(str(paths[1]))
        if config.get("tokenizer_class") in ROBERTA_CLASSES:
            paths += [Path(p) for p in backend.model.save(str(folder))]
        return tuple(str(p) for p in paths)

    def __repr__(self) -> str:
        return (
            f"TextTokenizer({self.config.get('tokenizer_class')}, vocabulary {len(self)}, "
            f"special {self.all_special_tokens})"
        )


def _model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def _read_bpe(
    folder: Path, has_json: bool
) -> tuple[dict[str, int], list[tuple[str, str]], list[tuple[int, AddedToken]]]:
    """(vocab, merges, added tokens) from tokenizer.json if present (what transformers
    prefers), else from vocab.json + merges.txt."""
    if has_json:
        data = json.loads((folder / TOKENIZER_FILE).read_text(encoding="utf-8"))
        model = data.get("model", {})
        if model.get("type", "BPE") != "BPE":
            raise TokenizerError(
                f"{folder / TOKENIZER_FILE} holds a {model.get('type')} model, "
                "not the byte-level BPE of RoBERTa"
            )
        vocab = model["vocab"]
        merges = [
            tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])
        ]
        added = [
            (int(t["id"]), _added_token(t, bool(t.get("special", False))))
            for t in data.get("added_tokens", [])
        ]
        return vocab, merges, added
    vocab, merges = BPE.read_file(str(folder / VOCAB_FILE), str(folder / MERGES_FILE))
    return vocab, merges, []


def _roberta_pipeline(
    vocab: dict[str, int], merges: list[tuple[str, str]], config: dict[str, Any]
) -> Tokenizer:
    """RoBERTa's byte-level BPE without special tokens or post-processing (added later)."""
    backend = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    )
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=bool(config.get("add_prefix_space", False))
    )
    backend.decoder = decoders.ByteLevel()
    return backend


def _add_tokens(
    backend: Tokenizer, file_tokens: list[tuple[int, AddedToken]], config: dict[str, Any]
) -> None:
    """Add the saved added tokens the backend lacks (in id order), then any named special
    token still missing — the order in which transformers adds them, so new ids agree."""
    present = backend.get_added_tokens_decoder().values()
    seen = {repr(t) for t in present}
    to_add = [t for _, t in sorted(file_tokens, key=lambda it: it[0]) if repr(t) not in seen]
    contents = [t.content for t in present] + [t.content for t in to_add]
    named = [config[name] for name in ROBERTA_SPECIAL_TOKENS if config.get(name) is not None]
    for extra in ("additional_special_tokens", "extra_special_tokens"):
        if isinstance(config.get(extra), list):
            named += config[extra]
    named_contents = {_content(v) for v in named}
    for value in named:
        if _content(value) not in contents:
            to_add.append(_added_token(value, special=True))
            contents.append(_content(value))
    for token in to_add:
        if not token.special and token.content in named_contents:
            token.special = True
    if to_add:
        backend.add_tokens(to_add)
