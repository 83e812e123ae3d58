"""`rvos train --data ROOT --format ytvos|davis|mevis`: training on official-layout splits (written
by `rvos synth --layout ...`, with ground truth), in one process and under torchrun with two gloo
ranks; the update two ranks make equals one process's; loss falls; runs resume bit for bit; the
exported model predicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_dataset import torchrun_rvos

from rvos.cli.main import main
from rvos.training.datasets import ClipBatches, OfficialClips, collate_clips, swap_left_right
from rvos.training.recipe import learning_rate_factor, paper_recipe, param_groups, recipe_for
from rvos.zoo.builtin import build_builtin_model
from rvos.zoo.checkpoint import load_pretrained, save_pretrained
from rvos.zoo.loader import load_model

REPO = Path(__file__).resolve().parents[1]
PARITY = REPO.parent / "shared" / "parity" / "referformer_r50"

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def synth_train(out: Path, layout: str, count: int = 3) -> Path:
    argv = ["synth", "--layout", layout, "--split", "train", "--out", str(out), "--count",
            str(count), "--frames", "6", "--size", "64", "64", "--seed", "3"]  # fmt: skip
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("splits")
    # One DAVIS-style clip: every object has four expressions there, so it is as big as three.
    counts = {"ytvos": 3, "davis": 1, "mevis": 3}
    return {fmt: synth_train(root / fmt, fmt, n) for fmt, n in counts.items()}


def tiny_folder(path: Path, tiny_builtin, **changes) -> Path:
    """A tiny built-in-architecture model (random weights, the built-in tokenizer) saved as a
    model folder, to ``--init`` from."""
    tokenizer = load_model("builtin").tokenizer
    torch.manual_seed(0)
    model = build_builtin_model(tokenizer, **tiny_builtin(**changes))
    save_pretrained(model, path, input_short_side=64)
    return path


def train_argv(root: Path, fmt: str, out: Path, *args: str) -> list[str]:
    return ["train", "--data", str(root), "--format", fmt, "--out", str(out), "--size", "64",
            "--device", "cpu", "--workers", "0", "--log-every", "1", *args]  # fmt: skip


def losses(out: Path) -> list[float]:
    lines = (out / "log.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if "loss" in r]


# ----------------------------------------------------------------------------- data and recipe


def test_flip_swaps_left_and_right_as_words():
    assert swap_left_right("the Left dog runs to the right") == "the Right dog runs to the left"
    assert swap_left_right("leftmost car, bright LEFT lamp") == "rightmost car, bright RIGHT lamp"
    assert swap_left_right("a cat turning rightward") == "a cat turning leftward"
    assert swap_left_right("a bright red copyright sign") == "a bright red copyright sign"


def test_two_ranks_of_b_clips_take_the_clips_one_process_takes_with_2b():
    for start in (0, 3):
        one = ClipBatches(13, 4, 1, 0, seed=5, scales=[64], start=start)
        ranks = [ClipBatches(13, 2, 2, r, seed=5, scales=[64], start=start) for r in (0, 1)]
        streams = [iter(one), *map(iter, ranks)]
        for _ in range(7):  # crosses epoch boundaries (3 micro-batches per epoch)
            a, r0, r1 = (next(s) for s in streams)
            assert sorted(a) == sorted(r0 + r1)
            assert len({e for _, e, _ in a}) == 1


def test_clips_follow_the_paper_sampling_and_the_target_contract(splits):
    ds = OfficialClips(splits["ytvos"], "ytvos", frames=5, scales=[48], flip_prob=0.0,
                       photometric=False)  # fmt: skip
    n_expr = sum(len(v.expressions) for v in ds.split.videos)
    assert len(ds) == n_expr * 2  # 6-frame videos: anchors 0 and 5
    item = ds[(0, 0, 48)]
    assert item["frames"].shape == (5, 3, 48, 48) and item["masks"].shape == (5, 48, 48)
    assert item["masks"].any()  # the referred object is visible in the clip
    assert ds[(0, 0, 48)]["caption"] == item["caption"]
    assert torch.equal(ds[(0, 0, 48)]["frames"], item["frames"])  # same key, same clip
    batch = collate_clips([item, ds[(1, 0, 48)]])
    t = batch["targets"][0]
    assert batch["frames"].shape == (2, 5, 3, 48, 48)
    assert t["valid"].tolist() == item["masks"].flatten(1).any(1).tolist()
    frame = int(t["valid"].nonzero()[0])
    ys, xs = item["masks"][frame].nonzero(as_tuple=True)
    assert t["boxes"][frame, 0].item() == pytest.approx((xs.min() + xs.max() + 1).item() / 96)

    # MeViS: an expression about several objects trains on the union of their masks.
    mevis = OfficialClips(splits["mevis"], "mevis", frames=3, scales=[64], flip_prob=0.0,
                          photometric=False)  # fmt: skip
    multi = [i for i, (v, e, _) in enumerate(mevis.items)
             if len(mevis.split.videos[v].expressions[e].anno_ids) > 1]  # fmt: skip
    assert multi
    v, e, _ = mevis.items[multi[0]]
    video = mevis.split.videos[v]
    union = mevis._masks(video, e, list(range(video.num_frames)), (64, 64))
    for anno in video.expressions[e].anno_ids:
        single = video.expressions[e].__class__("x", "x", None, ("0",), (anno,))
        part = mevis._masks(video.__class__(video.name, video.frames, (single,), video.image_dir),
                            0, list(range(video.num_frames)), (64, 64))  # fmt: skip
        assert (part <= union).all() and part.sum() < union.sum()


def test_paper_recipe_defaults_and_step_schedule():
    r = paper_recipe()
    assert recipe_for("resnet50").name == "paper" and recipe_for("small3d").name == "builtin"
    assert (r.lr, r.lr_backbone, r.weight_decay, r.clip_grad, r.frames) == (
        1e-4, 5e-5, 5e-4, 0.1, 5)
    assert r.freeze_text_encoder and r.epochs == 6 and r.lr_drop == [3, 5]
    factors = [learning_rate_factor(s, 60, 10, r) for s in (0, 29, 30, 49, 50, 59)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


# ------------------------------------------------------------------------------- training


def test_two_ranks_of_one_clip_make_the_update_of_one_rank_of_two(splits, tmp_path, tiny_builtin):
    """The gradient (AdamW's first moment after one step) and the weights after one step of
    `torchrun --nproc-per-node 2` with one clip per rank equal those of one process with two."""
    # Group norm: batch norm would see 2 clips in one process and 1 per rank. No gradient
    # clipping, so that the gradients' scale (the loss normalisation over ranks) is checked too.
    init = tiny_folder(tmp_path / "init", tiny_builtin, backbone_kwargs={"norm": "gn"})
    common = ["--init", str(init), "--steps", "1", "--frames", "3", "--no-augment", "--lr",
              "1e-3", "--warmup", "1", "--seed", "7", "--clip-grad", "1e9"]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(train_argv(splits["ytvos"], "ytvos", one, "--batch-size", "2", *common)) == 0
    torchrun_rvos(train_argv(splits["ytvos"], "ytvos", two, "--batch-size", "1", *common),
                  tmp_path)  # fmt: skip
    a = torch.load(one / "checkpoint.pt", weights_only=True)
    b = torch.load(two / "checkpoint.pt", weights_only=True)
    assert b["world_size"] == 2 and a["world_size"] == 1
    moments = [(s["exp_avg"], b["optimizer"]["state"][i]["exp_avg"])
               for i, s in a["optimizer"]["state"].items()]  # fmt: skip
    scale = max(float(m.abs().max()) for m, _ in moments)
    assert scale > 0
    for m_one, m_two in moments:
        torch.testing.assert_close(m_two, m_one, rtol=1e-3, atol=1e-5 * scale)
    # Adam divides each gradient by its own magnitude: where a gradient is ~0, float noise can
    # move a weight by up to 2 lr; where it stands clear of the noise the weights agree.
    init_model = load_pretrained(init)
    init_sd = init_model.state_dict()
    order = [p for g in param_groups(init_model, recipe_for("small3d")) for p in g["params"]]
    names = {id(p): n for n, p in init_model.named_parameters()}
    grads = {names[id(order[i])]: s["exp_avg"] / 0.1 for i, s in a["optimizer"]["state"].items()}
    moved, clear = 0, 0
    for k, w in a["model"].items():
        diff = (b["model"][k].double() - w.double()).abs()
        assert float(diff.max()) <= 2e-3 + 1e-6, k  # at most a sign flip: 2 lr
        if k in grads:
            solid = grads[k].abs() > 1e-4 * scale
            assert float((diff * solid).max()) <= 1e-6, k
            clear += int(solid.sum())
        moved += int(not torch.equal(w, init_sd[k]))
    assert clear > 10000
    assert moved > 10  # the step changed the weights
    # Same losses logged (the global mean over both ranks' clips).
    assert losses(two) == pytest.approx(losses(one), rel=1e-4)


def test_accumulating_two_micro_batches_makes_the_update_of_a_batch_of_two(
    splits, tmp_path, tiny_builtin
):
    init = tiny_folder(tmp_path / "init", tiny_builtin, backbone_kwargs={"norm": "gn"})
    common = ["--init", str(init), "--steps", "1", "--frames", "3", "--no-augment",
              "--clip-grad", "1e9"]  # fmt: skip
    batch, accumulated = tmp_path / "batch", tmp_path / "accumulated"
    assert main(train_argv(splits["mevis"], "mevis", batch, "--batch-size", "2", *common)) == 0
    argv = train_argv(splits["mevis"], "mevis", accumulated, "--batch-size", "1",
                      "--accumulate", "2", *common)  # fmt: skip
    assert main(argv) == 0
    a = torch.load(batch / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
    b = torch.load(accumulated / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
    scale = max(float(s["exp_avg"].abs().max()) for s in a.values())
    for i, s in a.items():
        torch.testing.assert_close(b[i]["exp_avg"], s["exp_avg"], rtol=1e-3, atol=1e-5 * scale)
    assert losses(accumulated) == pytest.approx(losses(batch), rel=1e-4)


@pytest.mark.parametrize("fmt", ["ytvos", "davis", "mevis"])
def test_loss_falls_on_a_tiny_split_with_the_builtin_model(splits, tmp_path, fmt):
    """Epochs of the same clips: the last complete epoch's mean loss is well below the first's."""
    out = tmp_path / "run"
    argv = train_argv(splits[fmt], fmt, out, "--init", "builtin", "--steps", "15", "--frames",
                      "3", "--batch-size", "8", "--lr", "1e-3", "--warmup", "1",
                      "--no-augment")  # fmt: skip
    assert main(argv) == 0
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    n, steps = records[0]["steps_per_epoch"], [r for r in records if "loss" in r]
    assert len(steps) == 15 and all(np.isfinite([r["loss"] for r in steps]))
    epochs = [[r["loss"] for r in steps[e * n:(e + 1) * n]] for e in range(15 // n)]
    assert len(epochs) >= 3
    assert np.mean(epochs[-1]) < 0.8 * np.mean(epochs[0]), epochs


def test_resume_continues_bit_for_bit(splits, tmp_path, tiny_builtin):
    """4 steps straight equal 2 steps, a new process resuming at step 2, and 2 more: weights,
    optimizer state and logged losses, with dropout and the paper's flip, photometric jitter
    and random crop on (one scale: the frames are 64 px)."""
    init = tiny_folder(tmp_path / "init", tiny_builtin, dropout=0.1)
    common = ["--init", str(init), "--recipe", "paper", "--frames", "3", "--batch-size", "2",
              "--lr", "1e-3", "--ckpt-every", "2", "--keep-checkpoints"]  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(train_argv(splits["davis"], "davis", straight, "--steps", "4", *common)) == 0
    argv = train_argv(splits["davis"], "davis", resumed, "--resume",
                      str(straight / "checkpoint-2.pt"), *common)  # fmt: skip
    assert main(argv) == 0
    a = torch.load(straight / "checkpoint-4.pt", weights_only=True)
    b = torch.load(resumed / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for k, w in a["model"].items():
        assert torch.equal(w, b["model"][k]), k
    for i, s in a["optimizer"]["state"].items():
        assert torch.equal(s["exp_avg_sq"], b["optimizer"]["state"][i]["exp_avg_sq"])
    assert losses(resumed) == losses(straight)[2:]


def test_steps_on_resume_extends_the_run(splits, tmp_path, tiny_builtin, capsys):
    """--steps on --resume sets a new end: a 4-step run resumed with --steps 6 ends where a
    6-step run ends (the paper's schedule drops the rate at fixed epochs, so the end does not
    change it), and a --steps the checkpoint has passed is refused in one line."""
    init = tiny_folder(tmp_path / "init", tiny_builtin)
    common = ["--init", str(init), "--recipe", "paper", "--frames", "3", "--batch-size", "2",
              "--lr", "1e-3"]  # fmt: skip
    short, long, extended = tmp_path / "short", tmp_path / "long", tmp_path / "extended"
    assert main(train_argv(splits["davis"], "davis", short, "--steps", "4", *common)) == 0
    assert main(train_argv(splits["davis"], "davis", long, "--steps", "6", *common)) == 0
    capsys.readouterr()
    argv = train_argv(splits["davis"], "davis", extended, "--resume",
                      str(short / "checkpoint.pt"), "--steps", "6", *common)  # fmt: skip
    assert main(argv) == 0
    assert "now ends at step 6 instead of 4" in capsys.readouterr().err
    a = torch.load(long / "checkpoint.pt", weights_only=True)
    b = torch.load(extended / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    for k, w in a["model"].items():
        assert torch.allclose(w, b["model"][k], rtol=1e-5, atol=1e-7), k
    assert losses(extended) == pytest.approx(losses(long)[4:], rel=1e-5)

    argv = train_argv(splits["davis"], "davis", tmp_path / "cut", "--resume",
                      str(short / "checkpoint.pt"), "--steps", "3", *common)  # fmt: skip
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--steps 3: the checkpoint is already at step 4; give more steps "
                            "to extend the run (it was to end at 4)"), err


def _predicts(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / f"pred_{model_dir.name}"
    video = REPO / "examples" / "shapes_00001.mp4"
    argv = ["predict", str(video), "--text", "the red circle", "--model", str(model_dir),
            "--out", str(out), "--device", "cpu", "--max-frames", "6", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert len(list((out / "masks").rglob("*.png"))) >= 6, result


def test_torchrun_trains_the_builtin_model_and_its_export_predicts(splits, tmp_path):
    out, export = tmp_path / "run", tmp_path / "exported"
    logs = torchrun_rvos(train_argv(splits["ytvos"], "ytvos", out, "--init", "builtin",
                                    "--steps", "2", "--frames", "3", "--batch-size", "1",
                                    "--export", str(export)), tmp_path)  # fmt: skip
    assert "clips/s" in logs[0] and "clips/s" not in logs[1]  # rank 0 reports
    assert len(losses(out)) == 2
    model = load_pretrained(export)
    assert model.metadata["input_short_side"] == 64
    assert model.metadata["training"]["recipe"]["name"] == "builtin"
    _predicts(export, tmp_path)


def test_torchrun_trains_from_a_released_checkpoint_and_its_export_predicts(splits, tmp_path):
    if not (PARITY / "checkpoint.pth").is_file():
        pytest.skip(f"no released-format checkpoint at {PARITY} (../shared/parity is absent)")
    out, export = tmp_path / "run", tmp_path / "exported"
    argv = train_argv(splits["ytvos"], "ytvos", out, "--init", str(PARITY / "checkpoint.pth"),
                      "--text-encoder", str(PARITY / "text_encoder"), "--steps", "1",
                      "--export", str(export))  # fmt: skip
    torchrun_rvos(argv, tmp_path)
    start = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert start["world_size"] == 2 and start["recipe"]["name"] == "paper"
    assert start["recipe"]["frames"] == 5 and start["recipe"]["lr_backbone"] == 5e-5
    model = load_pretrained(export)
    assert model.config.backbone == "resnet50" and model.config.freeze_text_encoder
    released = load_model(str(PARITY / "checkpoint.pth"), text_encoder=str(PARITY / "text_encoder"))
    trained, before = model.state_dict(), released.state_dict()
    # The text encoder is frozen (the paper's recipe); the rest moved.
    for k in before:
        if k.startswith("text_encoder."):
            assert torch.equal(trained[k], before[k]), k
    assert not torch.equal(trained["class_embed.0.weight"], before["class_embed.0.weight"])
    _predicts(export, tmp_path)


def test_bad_dataset_arguments_fail_with_one_line(splits, tmp_path, capsys, monkeypatch):
    assert main(["train", "--data", str(splits["ytvos"]), "--out", str(tmp_path)]) == 2
    assert "--data needs --format" in capsys.readouterr().err
    assert main(train_argv(tmp_path / "nowhere", "ytvos", tmp_path / "o", "--steps", "1")) == 2
    assert "meta_expressions.json not found" in capsys.readouterr().err
    argv = train_argv(splits["ytvos"], "ytvos", tmp_path / "o", "--init", "builtin",
                      "--batch-size", "500", "--steps", "1")  # fmt: skip
    assert main(argv) == 2
    assert "lower --batch-size" in capsys.readouterr().err
    argv = train_argv(splits["ytvos"], "ytvos", tmp_path / "o", "--precision", "bf16", "--steps",
                      "1")  # fmt: skip
    assert main(argv) == 2
    assert "--precision bf16 needs a GPU" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--out", str(tmp_path / "synthetic"), "--steps", "1"]) == 2
    assert "under torchrun, train on a dataset" in capsys.readouterr().err
