"""Training: data contract, schedule, a tiny model that learns, and a run that resumes and
exports a loadable model."""

import json

import pytest
import torch

from rvos.training.losses import ReferringCriterion
from rvos.training.train import (
    TrainClips,
    TrainConfig,
    collate,
    fit_total_steps,
    learning_rate,
    make_tokenizer,
    select_videos,
    train,
)
from rvos.zoo.builtin import SPECIAL_TOKENS, build_builtin_model, builtin_config
from rvos.zoo.training_checkpoint import load_training_checkpoint


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    make_tokenizer(folder)
    return folder


def test_train_clips_follow_the_target_contract():
    item = TrainClips(frames=3, size=64, seed=0)[5]
    k = len(item["captions"])
    assert k >= 1 and item["frames"].shape == (3, 3, 64, 64)
    assert item["frames"].dtype == torch.float32
    assert item["masks"].shape == (k, 3, 64, 64) and item["masks"].dtype == torch.bool
    assert item["boxes"].shape == (k, 3, 4) and item["valid"].shape == (k, 3)
    # Boxes are normalised cxcywh around the mask where the object is visible.
    for m, b, v in zip(item["masks"], item["boxes"], item["valid"], strict=True):
        t = int(v.nonzero()[0])
        ys, xs = m[t].nonzero(as_tuple=True)
        assert b[t, 0].item() == pytest.approx((xs.min() + xs.max() + 1).item() / 2 / 64)
        assert b[t, 2].item() == pytest.approx((xs.max() + 1 - xs.min()).item() / 64)
    # Same index, same example: runs are reproducible and resumable.
    again = TrainClips(frames=3, size=64, seed=0)[5]
    assert again["captions"] == item["captions"] and torch.equal(again["frames"], item["frames"])
    assert TrainClips(frames=3, size=64, seed=1)[5]["captions"] != item["captions"] or not (
        torch.equal(TrainClips(frames=3, size=64, seed=1)[5]["frames"], item["frames"])
    )


def test_collate_flattens_expressions_and_select_videos_repeats_features(
        tokenizer_dir, tiny_builtin):
    ds = TrainClips(frames=2, size=64, seed=0)
    items = [ds[0], ds[1]]
    batch = collate(items)
    k0, k1 = len(items[0]["captions"]), len(items[1]["captions"])
    assert batch["frames"].shape == (2, 2, 3, 64, 64)
    assert batch["video_index"].tolist() == [0] * k0 + [1] * k1
    assert len(batch["targets"]) == len(batch["captions"]) == k0 + k1
    model = build_builtin_model(make_tokenizer(tokenizer_dir), **tiny_builtin()).eval()
    with torch.no_grad():
        visual = model.encode_video(batch["frames"])
        picked = select_videos(visual, batch["video_index"])
    assert picked.num_videos == k0 + k1 and picked.num_frames == 2
    last = (k0 + k1 - 1) * 2
    assert torch.equal(picked.features[0][last : last + 2], visual.features[0][2:4])


def test_learning_rate_warms_up_then_decays():
    lrs = [learning_rate(s, 100, 1e-3, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(1e-4, rel=0.05)


def test_a_tiny_model_lowers_its_loss_on_a_batch(tokenizer_dir, tiny_builtin):
    torch.manual_seed(0)
    model = build_builtin_model(make_tokenizer(tokenizer_dir), **tiny_builtin()).train()
    batch = collate([TrainClips(frames=2, size=64, seed=0, jpeg_prob=0)[i] for i in range(2)])
    criterion = ReferringCriterion()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(15):
        visual = select_videos(model.encode_video(batch["frames"]), batch["video_index"])
        loss = criterion(model.decode(visual, batch["captions"]), batch["targets"])["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.8 * losses[0], losses


def _run_dir(tmp_path, tokenizer_dir):
    """A run folder holding the built-in tokenizer (so runs skip training one)."""
    out = tmp_path / "run"
    (out / "tokenizer").mkdir(parents=True)
    for f in tokenizer_dir.iterdir():
        (out / "tokenizer" / f.name).write_bytes(f.read_bytes())
    return out


def test_train_resumes_and_exports_a_loadable_model(tmp_path, tokenizer_dir, tiny_builtin):
    from rvos.zoo.checkpoint import load_pretrained

    out = _run_dir(tmp_path, tokenizer_dir)
    common = {
        "out": str(out),
        "batch_size": 1,
        "frames": 2,
        "size": 64,
        "device": "cpu",
        "workers": 0,
        "log_every": 1,
        "val_every": 3,
        "val_clips": 1,
        "ckpt_every": 2,
        "warmup": 1,
        "model_overrides": json.dumps(tiny_builtin()),
    }
    train(TrainConfig(steps=2, **common))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2
    export_dir = tmp_path / "export"
    val = train(
        TrainConfig(steps=3, resume=str(out / "checkpoint.pt"), export=str(export_dir), **common)
    )
    assert set(val) >= {"overall"} and 0 <= val["overall"]["J&F"] <= 100
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == [1, 2, 3]  # the resumed run continued at step 3
    assert any(r.get("event") == "val" for r in records)

    model = load_pretrained(export_dir)
    assert model.metadata["input_short_side"] == 64
    assert model.config.hidden_dim == 32 and model.tokenizer is not None
    ckpt_model = load_training_checkpoint(out / "checkpoint.pt")
    for (k, a), b in zip(model.state_dict().items(), ckpt_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_train_only_changes_just_the_named_parameters(tmp_path, tokenizer_dir, tiny_builtin):
    """A query-side fine-tune: the decoder's class head moves, the backbone (weights and batch
    norm statistics) does not."""
    out = _run_dir(tmp_path, tokenizer_dir)
    common = {
        "out": str(out), "batch_size": 2, "frames": 2, "size": 64, "device": "cpu",
        "workers": 0, "val_every": 0, "ckpt_every": 2, "warmup": 1, "lr": 1e-2,
        "model_overrides": json.dumps(tiny_builtin()),
    }
    train(TrainConfig(steps=1, **common))
    before = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    train(TrainConfig(steps=3, init=str(out / "checkpoint.pt"),
                      train_only="class_embed,transformer.decoder", **common))
    after = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "nothing was trained"
    # bbox_embed is the decoder's own (tied for iterative box refinement), so it moves too.
    trained = ("class_embed.", "transformer.decoder.", "bbox_embed.")
    assert all(k.startswith(trained) for k in changed), changed
    assert any(k.startswith("class_embed.") for k in changed)
    # Running statistics of the (frozen) backbone's batch norms are untouched.
    assert not any(k.startswith("backbone.") for k in changed)

    with pytest.raises(ValueError, match="no parameters under"):
        train(TrainConfig(steps=1, train_only="decoder", **common))


def test_init_takes_overrides_that_keep_the_shapes(tmp_path, tokenizer_dir, tiny_builtin):
    """``--init W --model-overrides`` changes e.g. a norm's group count for the fine-tune, and
    refuses an override that would not fit the weights, with a clear message."""
    out = _run_dir(tmp_path, tokenizer_dir)
    common = {"out": str(out), "batch_size": 1, "frames": 2, "size": 64, "device": "cpu",
              "workers": 0, "val_every": 0, "warmup": 1}
    train(TrainConfig(steps=1, model_overrides=json.dumps(tiny_builtin()), **common))
    first = out / "first.pt"
    (out / "checkpoint.pt").rename(first)
    assert load_training_checkpoint(first).config.proj_norm_groups == 32

    train(TrainConfig(steps=1, init=str(first), model_overrides='{"proj_norm_groups": 8}',
                      **common))
    model = load_training_checkpoint(out / "checkpoint.pt")
    assert model.config.proj_norm_groups == 8
    assert model.config.hidden_dim == 32  # the rest is the init model's
    assert model.input_proj[0][1].num_groups == 8

    with pytest.raises(ValueError, match="do not fit the --init weights"):
        train(TrainConfig(steps=1, init=str(first), model_overrides='{"dim_feedforward": 48}',
                          **common))


def test_bad_resume_file_is_refused(tmp_path):
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.zeros(1)}, bogus)
    with pytest.raises(ValueError, match="not a checkpoint written by"):
        load_training_checkpoint(bogus)


def test_fit_total_steps_uses_the_measured_speed_and_never_raises_the_total():
    # 1 s per step measured between steps 20 and 30; 100 s budget, 40 s used, 30 s reserve.
    assert fit_total_steps(30, (20, 30.0), now=40.0, start=0.0, budget_s=100, total=1000) == 60
    assert fit_total_steps(30, (20, 30.0), now=40.0, start=0.0, budget_s=1e6, total=1000) == 1000
    # Out of time already: stop after the next step.
    assert fit_total_steps(30, (20, 30.0), now=95.0, start=0.0, budget_s=100, total=1000) == 31
    assert fit_total_steps(20, (20, 30.0), now=40.0, start=0.0, budget_s=100, total=500) == 500


def test_builtin_tokenizer_normalises_case_and_spacing_and_keeps_unknown_words(tokenizer_dir):
    tok = make_tokenizer(tokenizer_dir)
    assert [tok.convert_ids_to_tokens(i) for i in range(5)] == SPECIAL_TOKENS
    a = tok("The  Red circle")["input_ids"]
    b = tok("the red circle")["input_ids"]
    assert a == b and a[0] == tok.bos_token_id and a[-1] == tok.eos_token_id
    # Every generator word is one token (plus the leading-space marker).
    assert len(b) == 2 + 3
    # A word the generator never says still tokenizes (byte-level), without <unk>.
    ids = tok("a zebra galloping")["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) > 5
    batch = tok(["red", "the big blue star"], padding="longest", return_tensors="pt")
    assert batch["input_ids"][0, -1].item() == tok.pad_token_id == 1


def test_builtin_config_is_small_and_rejects_unknown_fields(tokenizer_dir):
    tok = make_tokenizer(tokenizer_dir)
    cfg = builtin_config(len(tok))
    assert cfg.backbone == "small3d" and cfg.hidden_dim == 64 and cfg.num_queries == 5
    assert not cfg.freeze_text_encoder and cfg.text["vocab_size"] == len(tok)
    model = build_builtin_model(tok)
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < n < 6_000_000  # a few million: <= 25 MB as float32
    with pytest.raises(ValueError, match="unknown ReferFormerConfig field"):
        builtin_config(len(tok), hiden_dim=3)
