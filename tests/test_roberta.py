"""rvos's own RoBERTa computes transformers' RobertaModel, and the built-in path needs no
transformers.

transformers is the reference here (the released checkpoints were trained with it): the same
state-dict layout (so every checkpoint loads unchanged), the same outputs within float tolerance
on random weights and on the parity fixture's text encoder, padded batches included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rvos.modeling.referformer import ROBERTA_BASE
from rvos.modeling.roberta import RobertaConfig, RobertaModel, roberta_position_ids
from rvos.modeling.tokenizer import TextTokenizer
from rvos.zoo.builtin import builtin_config
from rvos.zoo.checkpoint import IGNORED_KEYS, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_TEXT = json.loads((ROOT / "rvos/weights/builtin/config.json").read_text())["config"]["text"]
CAPTIONS = [
    "a man in a black shirt riding a bicycle",
    "the dog",
    "the small red ball on the left of the big blue box, next to the tree",
]


def reference_model(config: dict):
    """transformers' RobertaModel for a config dict (on the current default device)."""
    import transformers

    return transformers.RobertaModel(transformers.RobertaConfig(**config))


def layout(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def tiny_config(**changes) -> dict:
    return {**builtin_config(300).text, "hidden_size": 32, "num_attention_heads": 4,
            "intermediate_size": 48, **changes}


def noisy_pair(config: dict, seed: int = 0):
    """(transformers model, rvos model) with the same seeded random weights, eval mode. Noise
    on every parameter, so that biases and LayerNorms are not at their trivial init."""
    torch.manual_seed(seed)
    ref = reference_model(config).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    ours = RobertaModel(config).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def padded_batch(vocab: int, lengths: list[int], pad: int = 1, seed: int = 0):
    """input_ids / attention_mask [B, max(lengths)]: <s> ... </s> then padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (len(lengths), max(lengths)), generator=g)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, 0], ids[i, n - 1], mask[i, :n] = 0, 2, 1
        ids[i, n:] = pad
    return ids, mask


def assert_same_outputs(ref, ours, ids, mask, atol=1e-5):
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask)
        hidden, pooled = ours(ids, mask)
    torch.testing.assert_close(hidden, want.last_hidden_state, atol=atol, rtol=0)
    torch.testing.assert_close(pooled, want.pooler_output, atol=atol, rtol=0)


# ------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("name, config", [("built-in", BUILTIN_TEXT),
                                          ("roberta-base", ROBERTA_BASE)])
def test_state_dict_has_the_keys_and_shapes_of_transformers(name, config):
    """Same names, shapes and order: checkpoints saved from transformers load unchanged, and
    rvos's own safetensors still load in transformers. Built on the meta device (no memory)."""
    with torch.device("meta"):
        ref, ours = reference_model(config), RobertaModel(config)
    assert list(layout(ours).items()) == list(layout(ref).items())


def test_config_defaults_are_those_of_transformers():
    """A config.json missing a key means the same here as in transformers."""
    import transformers

    theirs = transformers.RobertaConfig().to_dict()
    ours = RobertaConfig().to_dict()
    assert ours == {k: theirs[k] for k in ours}


def test_seeded_initialisation_is_that_of_transformers():
    """BERT's init drawn in the same order: a seeded built-in training run starts from the
    weights it started from when the encoder was transformers'."""
    torch.manual_seed(0)
    want = reference_model(tiny_config()).state_dict()
    torch.manual_seed(0)
    got = RobertaModel(tiny_config()).state_dict()
    for key, value in want.items():
        assert torch.equal(got[key], value), key


def test_builtin_weights_load_strictly():
    from safetensors.torch import load_file

    state = load_file(ROOT / "rvos/weights/builtin/model.safetensors")
    text = {k.removeprefix("text_encoder."): v for k, v in state.items()
            if k.startswith("text_encoder.")}
    RobertaModel(BUILTIN_TEXT).load_state_dict(text, strict=True)


# ------------------------------------------------------------------------------- function
def test_position_ids_count_real_tokens_from_pad_plus_one():
    ids = torch.tensor([[0, 9, 9, 2, 1, 1], [0, 9, 9, 9, 9, 2]])
    assert roberta_position_ids(ids, 1).tolist() == [[2, 3, 4, 5, 1, 1], [2, 3, 4, 5, 6, 7]]


def test_outputs_equal_transformers_on_random_weights_with_padding():
    ref, ours = noisy_pair(tiny_config())
    ids, mask = padded_batch(300, [7, 3, 5, 7])
    assert_same_outputs(ref, ours, ids, mask)
    # No padding at all (the mask is skipped), and a single caption.
    assert_same_outputs(ref, ours, ids[:1], mask[:1])
    assert_same_outputs(ref, ours, ids[1:2, :3], mask[1:2, :3])


def test_gradients_equal_transformers():
    """The built-in model trains its text encoder: the backward pass must agree too."""
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ref, ours = noisy_pair(config, seed=1)
    ids, mask = padded_batch(300, [6, 4])
    want = ref(input_ids=ids, attention_mask=mask)
    (want.last_hidden_state.square().sum() + want.pooler_output.sum()).backward()
    hidden, pooled = ours(ids, mask)
    (hidden.square().sum() + pooled.sum()).backward()
    grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, atol=1e-4, rtol=1e-4, msg=name)


def test_parity_text_encoder_equals_transformers(parity_dir):
    """The fixture's 1-layer RoBERTa (hidden 768) with its checkpoint weights and tokenizer."""
    case = parity_dir / "referformer_r50"
    state, _ = read_checkpoint(case / "checkpoint.pth")
    text = {k.removeprefix("text_encoder."): v.float() for k, v in state.items()
            if k.startswith("text_encoder.") and k not in IGNORED_KEYS}
    config = json.loads((case / "text_encoder" / "config.json").read_text())
    ref = reference_model(config).eval()
    ref.load_state_dict(text, strict=True)
    ours = RobertaModel(config).eval()
    ours.load_state_dict(text, strict=True)
    caption = torch.load(case / "inputs.pt", weights_only=True)["caption"]
    tokens = TextTokenizer.from_pretrained(case / "text_encoder")(
        [caption, *CAPTIONS], padding="longest", return_tensors="pt")
    assert tokens["attention_mask"].eq(0).any(), "the batch must have padding"
    assert_same_outputs(ref, ours, tokens["input_ids"], tokens["attention_mask"])


# ------------------------------------------------------------------------------- refusals
def test_a_caption_longer_than_the_position_table_is_a_clear_error():
    model = RobertaModel(tiny_config(max_position_embeddings=10)).eval()
    ids, mask = padded_batch(300, [9])
    with pytest.raises(ValueError, match="caption of 9 tokens is longer than the 8"):
        model(ids, mask)
    model(ids[:, :8].clone(), mask[:, :8])  # 8 fit


@pytest.mark.parametrize("change, message", [
    ({"hidden_act": "mish"}, "unsupported hidden_act 'mish'"),
    ({"is_decoder": True}, "decoder"),
    ({"position_embedding_type": "relative_key"}, "relative_key"),
    ({"num_attention_heads": 5}, "not a multiple"),
])
def test_configs_that_would_compute_another_function_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        RobertaConfig.from_dict(tiny_config(**change))


# ------------------------------------------------------------------------------- start-up
def test_the_builtin_model_runs_without_importing_transformers():
    """What `rvos predict` does with the built-in model (load it, tokenise, segment a clip)
    never imports transformers (seconds of start-up)."""
    code = (
        "import sys, numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "import rvos.predictor.predictor, rvos.cli.main\n"
        "rvos.cli.main.build_parser(only='predict')\n"
        "from rvos.zoo.loader import load_model\n"
        "model = load_model('builtin')\n"
        "frames = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)\n"
        "result = rvos.predictor.predictor.Predictor(model).predict(frames, 'the red circle')\n"
        "assert result.num_frames == 2\n"
        "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
