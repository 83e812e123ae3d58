"""Shared fixtures: offline by default, where the parity fixtures live, a tiny tokenizer, and
tiny models.

``parity_dir`` is the folder described in ``../shared/parity/README.md`` (``manifests.json``,
``referformer_r50/``, ...). It is read from ``$RVOS_PARITY_DIR`` when set, else from
``../shared/parity`` next to the repository; tests that need it are skipped, with the path they
looked at, when it is absent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent

# Tests never touch the network: rvos (and the Hugging Face client) start offline and without the
# developer's mirror; the download tests switch downloads back on against a server of their own
# on 127.0.0.1 (tests/fileserver.py). Set before any test module imports rvos or
# huggingface_hub, which reads its setting once.
os.environ["RVOS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("RVOS_MIRROR", None)


@pytest.fixture(scope="session", autouse=True)
def _empty_rvos_cache(tmp_path_factory):
    """$RVOS_CACHE: an empty folder, not the developer's ~/.cache/rvos (whose downloads would
    change what the tests see)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RVOS_CACHE", str(tmp_path_factory.mktemp("rvos_cache")))
        yield

# Captions the tiny tokenizer is trained on (and that tests use): any byte sequence still
# tokenizes, since a byte-level BPE holds all 256 bytes.
TINY_CORPUS = [
    "a man in a black shirt riding a bicycle",
    "the red ball on the left",
    "the small red ball on the left of the big blue box",
    "a dog running on the grass",
    "the person walking to the right",
    "a white car parked next to the tree",
    "the cat sitting on the sofa",
] * 20

# RoBERTa's special tokens in RoBERTa's id order (<s>=0, <pad>=1, </s>=2), so the RobertaConfig
# defaults for bos/pad/eos hold.
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def parity_root() -> Path:
    """The parity fixture folder: ``$RVOS_PARITY_DIR`` or ``<repo>/../shared/parity``."""
    env = os.environ.get("RVOS_PARITY_DIR")
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "parity"


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """The parity fixture folder (holds ``manifests.json``); skips the test when absent."""
    root = parity_root()
    if not (root / "manifests.json").is_file():
        pytest.skip(f"parity fixtures not found at {root}; set RVOS_PARITY_DIR")
    return root


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer (vocabulary ~300) trained here, saved as vocab.json +
    merges.txt, the files a RoBERTa tokenizer is loaded from."""
    from tokenizers import ByteLevelBPETokenizer

    folder = tmp_path_factory.mktemp("tiny_tokenizer")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TINY_CORPUS, vocab_size=300, min_frequency=2,
                            special_tokens=SPECIAL_TOKENS, show_progress=False)
    bpe.save_model(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir):
    """The tiny tokenizer loaded as a RoBERTa tokenizer (``<s> … </s>``, pad id 1)."""
    from transformers import RobertaTokenizerFast

    return RobertaTokenizerFast.from_pretrained(str(tiny_tokenizer_dir))


def tiny_text_config(vocab_size: int) -> dict:
    """A 1-layer RoBERTa of width 32."""
    return {
        "vocab_size": vocab_size, "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 66,
        "type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0,
        "eos_token_id": 2,
    }


@pytest.fixture(scope="session")
def tiny_builtin() -> Callable:
    """``tiny_builtin(**changes)`` -> `rvos.zoo.builtin.builtin_config` overrides (a fresh dict) for
    a built-in model small enough to take a few training steps in seconds on a CPU: width 32,
    1 encoder and 2 decoder layers, 2 heads, with the built-in model's own tokenizer."""

    def make(**changes) -> dict:
        overrides = {
            "hidden_dim": 32, "dim_feedforward": 64, "enc_layers": 1, "dec_layers": 2,
            "nheads": 2, "mask_dim": 16, "fpn_dim_feedforward": 64, "fpn_nheads": 2,
            "fusion_nheads": 2,
            "backbone_kwargs": {"channels": [8, 16, 24, 32], "stem_channels": 8},
            "text": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64},
        }
        overrides.update(changes)
        return overrides

    return make


@pytest.fixture(scope="session")
def make_tiny_model(tiny_tokenizer) -> Callable:
    """``make_tiny_model(backbone="small3d", seed=0, **config_overrides)`` -> a ReferFormer of
    width 32 (1 encoder and 2 decoder layers, 2 heads) with the tiny tokenizer, in eval mode.

    Every parameter gets seeded noise on top of its initialisation: some heads start at zero
    (box deltas), which would make outputs blind to the input and tests of them unable to fail.
    """
    from rvos.modeling import ReferFormerConfig, build_referformer

    def make(backbone: str = "small3d", seed: int = 0, **overrides):
        settings = {
            "backbone": backbone, "hidden_dim": 32, "enc_layers": 1, "dec_layers": 2,
            "nheads": 2, "dim_feedforward": 64, "mask_dim": 16, "fpn_dim_feedforward": 64,
            "fpn_nheads": 2, "fusion_nheads": 2, "proj_norm_groups": 8, "fpn_norm_groups": 8,
            "text": tiny_text_config(len(tiny_tokenizer)),
        }
        if backbone == "small3d":
            settings["backbone_kwargs"] = {"channels": [8, 16, 24, 32], "stem_channels": 8,
                                           "norm": "gn"}
        settings.update(overrides)
        torch.manual_seed(seed)
        model = build_referformer(ReferFormerConfig(**settings), tiny_tokenizer)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        return model.eval()

    return make


@pytest.fixture(scope="module")
def one_cpu_thread():
    """Run a module's tests with one intra-op thread, then restore the setting.

    On a small shared CPU, OpenMP threads that wait for each other at every op make small models
    10-100× slower (measured: 0.03 s vs 0.3-4 s for a tiny forward on 2 busy cores); the full
    ResNet-50 forward was faster too (25 s vs 38 s).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_text_folder(tiny_tokenizer, make_tiny_model, tmp_path_factory) -> Path:
    """Tokenizer files + config.json of the 1-layer RoBERTa of the tiny test models."""
    from transformers import RobertaConfig

    folder = tmp_path_factory.mktemp("tiny_text")
    tiny_tokenizer.save_pretrained(str(folder))
    RobertaConfig(**make_tiny_model().config.text).save_pretrained(str(folder))
    return folder
