"""rvos.modeling.tokenizer gives the tokens transformers' AutoTokenizer gives, on every kind of
folder
rvos reads: the built-in tokenizer (a saved tokenizers pipeline that lower-cases), the parity
fixture's RoBERTa tokenizer, a bare vocab.json + merges.txt, an older transformers' config.

transformers is the reference (it is what the released models and the shipped tokenizer were
used with); ids, attention masks, character offsets and special-token masks must be identical.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rvos.modeling.tokenizer import TextTokenizer, TokenizerError
from rvos.zoo.builtin import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ROOT / "rvos" / "weights" / "builtin" / "tokenizer"

SENTENCES = [
    "the red circle",
    "  The  RED   circle,  moving LEFT!!  ",
    "a man in a black shirt riding a bicycle",
    "café naïve — 東京の猫 🙂🐕 emoji",
    "ÅNGSTRÖM ﬁ ligature ① full-width ＡＢＣ",
    "tab\tand\nnew line",
    "hello-world's (test) [x] {y} 3.14 1,000 $5 50% #1 @you",
    "fill <mask> here and<mask>there, <s> not a start </s>",
    "x",
    " ",
    "",
    "the dog " * 40,  # long: more tokens than the built-in model_max_length
]
KEYS = ("input_ids", "attention_mask", "offset_mapping", "special_tokens_mask")


def reference(folder: Path):
    from transformers import AutoTokenizer, RobertaTokenizerFast

    if (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(folder))
    return RobertaTokenizerFast.from_pretrained(str(folder))  # bare vocab.json + merges.txt


def assert_same_tokens(folder: Path, sentences=SENTENCES) -> TextTokenizer:
    ours, theirs = TextTokenizer.from_pretrained(folder), reference(folder)
    assert len(ours) == len(theirs)
    for text in sentences:
        want = theirs(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        got = ours(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        for key in KEYS:
            assert list(got[key]) == list(want[key]), f"{key} of {text!r}"
    batch = [t for t in sentences if t.strip()]
    want = theirs(batch, padding="longest", return_tensors="pt")
    got = ours(batch, padding="longest", return_tensors="pt")
    for key in ("input_ids", "attention_mask"):
        assert got[key].dtype == torch.long and torch.equal(got[key], want[key]), key
    assert got["attention_mask"].eq(0).any(), "the batch must have padding"
    return ours


@pytest.fixture
def parity_tokenizer_dir(parity_dir) -> Path:
    folder = parity_dir / "referformer_r50" / "text_encoder"
    if not folder.is_dir():
        pytest.skip(f"no parity text encoder at {folder}")
    return folder


# ------------------------------------------------------------------------ same tokens
def test_builtin_tokenizer_gives_the_tokens_of_transformers():
    tok = assert_same_tokens(BUILTIN)
    assert tok("The  Red circle")["input_ids"] == tok("the red circle")["input_ids"]


def test_parity_tokenizer_gives_the_tokens_of_transformers(parity_tokenizer_dir):
    assert_same_tokens(parity_tokenizer_dir)


def test_bare_vocab_and_merges_give_the_tokens_of_transformers(tiny_tokenizer_dir):
    tok = assert_same_tokens(tiny_tokenizer_dir)
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id) == (0, 1, 2)


def test_older_config_with_lstrip_mask_and_prefix_space(tiny_tokenizer_dir, tmp_path):
    """transformers 4 wrote special tokens as AddedToken dicts (roberta-base's <mask> strips
    the space before it) and an added_tokens_decoder; add_prefix_space changes every id."""
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tiny_tokenizer_dir / name, tmp_path)
    mask = {"__type": "AddedToken", "content": "<mask>", "lstrip": True, "normalized": False,
            "rstrip": False, "single_word": False, "special": True}
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "RobertaTokenizer", "add_prefix_space": True, "mask_token": mask,
        "added_tokens_decoder": {str(i): {**mask, "content": c, "lstrip": c == "<mask>"}
                                 for i, c in enumerate(specials)}}))
    tok = assert_same_tokens(tmp_path)
    assert tok("red")["input_ids"] != TextTokenizer.from_pretrained(tiny_tokenizer_dir)(
        "red")["input_ids"], "add_prefix_space must change the first word's token"


def test_special_tokens_missing_from_the_vocabulary_get_the_ids_transformers_gives(
        tiny_tokenizer_dir, tmp_path):
    vocab = json.loads((tiny_tokenizer_dir / "vocab.json").read_text())
    del vocab["<mask>"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    shutil.copy(tiny_tokenizer_dir / "merges.txt", tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "RobertaTokenizer"}')
    tok = assert_same_tokens(tmp_path)
    assert tok.mask_token_id == len(vocab)


# ------------------------------------------------------------------------ saving
@pytest.mark.parametrize("kind", ["builtin", "parity"])
def test_saved_files_load_again_here_and_in_transformers(kind, request, tmp_path):
    source = BUILTIN if kind == "builtin" else request.getfixturevalue("parity_tokenizer_dir")
    files = TextTokenizer.from_pretrained(source).save_pretrained(tmp_path / "saved")
    assert all(Path(f).is_file() for f in files)
    saved = assert_same_tokens(tmp_path / "saved")
    original = TextTokenizer.from_pretrained(source)
    for text in SENTENCES:
        assert saved(text)["input_ids"] == original(text)["input_ids"], text


def test_a_trained_builtin_tokenizer_loads_identically_in_transformers(tmp_path):
    """train_tokenizer writes its files without transformers; they mean the same there."""
    corpus = ["the red circle moving left", "the big blue square", "a small green triangle"]
    tok = train_tokenizer(corpus * 20, tmp_path, vocab_size=300)
    assert tok.model_max_length == 128 and len(tok) <= 300
    assert_same_tokens(tmp_path)


# ------------------------------------------------------------------------ the call
def test_single_text_gives_flat_lists_and_a_batch_nested_ones():
    tok = TextTokenizer.from_pretrained(BUILTIN)
    one = tok("the red circle")
    assert isinstance(one["input_ids"][0], int) and set(one) == {"input_ids", "attention_mask"}
    many = tok(["the red circle", "a dog"])
    assert many["input_ids"][0] == one["input_ids"] and len(many["input_ids"]) == 2
    assert tok("the red circle", return_tensors="pt")["input_ids"].shape == (1, 5)


def test_unequal_lengths_without_padding_are_no_tensor():
    tok = TextTokenizer.from_pretrained(BUILTIN)
    with pytest.raises(ValueError, match="padding=True"):
        tok(["the red circle", "a"], return_tensors="pt")
    with pytest.raises(ValueError, match="max_length"):
        tok(["a"], padding="max_length")


def test_a_folder_without_a_tokenizer_is_named(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer in .*neither tokenizer.json"):
        TextTokenizer.from_pretrained(tmp_path)
    with pytest.raises(TokenizerError, match="not found"):
        TextTokenizer.from_pretrained(tmp_path / "nowhere")


def test_a_tokenizer_of_another_kind_is_refused(tiny_tokenizer_dir, tmp_path):
    shutil.copytree(tiny_tokenizer_dir, tmp_path / "bert")
    (tmp_path / "bert" / "tokenizer_config.json").write_text(
        '{"tokenizer_class": "BertTokenizer"}')
    with pytest.raises(TokenizerError, match="BertTokenizer; rvos reads RoBERTa"):
        TextTokenizer.from_pretrained(tmp_path / "bert")
