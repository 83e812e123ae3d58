"""``rvos train --data ROOT --format ytvos|davis|mevis``: train (fine-tune) any architecture rvos
builds on an official-layout split, in one process or under torchrun.

* the model comes from ``--init``: a released checkpoint (registry name or ``.pth``), an rvos
  model folder, a training ``checkpoint.pt`` or ``builtin``;
* the recipe (`rvos.training.recipe`) is the paper's for the released architectures and the
  built-in model's own otherwise; every value can be overridden on the command line;
* W processes of B clips, accumulating A micro-batches, make the update one process would make
  with W*B*A clips: the losses are normalised by the number of target boxes of the whole
  global batch (all-reduced before the backward passes), DDP averages the gradients;
* on a GPU the forward runs under bf16 autocast (the losses in fp32); on a CPU in fp32;
* ``checkpoint.pt`` holds the model, the optimizer, the torch / numpy / python RNG states and
  the position in the data, so ``--resume`` continues the very same run (bit for bit on a CPU
  with the same number of processes);
* rank 0 writes ``log.jsonl`` (a ``loss`` per logged step), prints a progress line per logged
  step (loss, clips/s, time left) and, with ``--export DIR``, the model folder
  ``rvos predict --model DIR`` loads.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from rvos.modeling import ReferFormer, ReferFormerConfig, build_referformer
from rvos.training import distributed as tdist
from rvos.training.datasets import ClipBatches, OfficialClips, collate_clips
from rvos.training.losses import LossWeights, ReferringCriterion
from rvos.training.recipe import Recipe, learning_rate_factor, param_groups, recipe_for
from rvos.training.train import _Log, freeze_all_but, set_train_mode
from rvos.zoo.builtin import load_tokenizer, with_overrides
from rvos.zoo.checkpoint import save_pretrained
from rvos.zoo.loader import load_model
from rvos.zoo.training_checkpoint import read_training_state, save_training_checkpoint

__all__ = ["DatasetTrainConfig", "build_recipe", "load_init_model", "train_on_dataset"]

TERMS = ("loss", "loss_cls", "loss_bbox", "loss_giou", "loss_dice", "loss_mask")


@dataclass
class DatasetTrainConfig:
    """A dataset training run; None means "the recipe's value"."""

    out: str
    data: str
    format: str
    split: str = "train"
    init: str = "builtin"
    text_encoder: str | None = None
    recipe: str = "auto"
    steps: int | None = None
    epochs: int | None = None
    lr_drop: list[int] | None = None
    lr: float | None = None
    lr_backbone: float | None = None
    weight_decay: float | None = None
    clip_grad: float | None = None
    warmup: int | None = None
    batch_size: int | None = None
    frames: int | None = None
    size: int | None = None
    max_size: int | None = None
    augment: bool = True
    accumulate: int = 1
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    workers: int = -1
    log_every: int = 20
    ckpt_every: int = 500
    resume: str | None = None
    export: str | None = None
    model_overrides: str | None = None
    train_only: str | None = None
    cls_weight: float = 2.0
    keep_checkpoints: bool = False  # also keep checkpoint-<step>.pt at every --ckpt-every


def load_init_model(init: str, text_encoder: str | None = None) -> ReferFormer:
    """The starting weights: ``builtin``, a registry name, a model folder, an official ``.pth``
    or a training ``checkpoint.pt`` (`rvos.zoo.loader.load_model`, never downloading when the
    file is missing)."""
    kwargs = {"text_encoder": text_encoder} if text_encoder else {}
    return load_model(init, progress=False, **kwargs)


def build_recipe(cfg: DatasetTrainConfig, backbone: str) -> Recipe:
    """The recipe for ``backbone`` with the run's command-line overrides applied."""
    r = recipe_for(backbone, cfg.recipe)
    for name in (
        "lr",
        "lr_backbone",
        "weight_decay",
        "clip_grad",
        "warmup",
        "batch_size",
        "frames",
        "epochs",
        "lr_drop",
        "max_size",
    ):
        value = getattr(cfg, name)
        if value is not None:
            setattr(r, name, value)
    if cfg.size is not None:
        r.scales, r.eval_short_side = [cfg.size], cfg.size
    if not cfg.augment:
        r.flip_prob, r.crop_prob, r.photometric, r.scales = 0.0, 0.0, False, r.scales[:1]
    return r


def _rng_state() -> dict:
    # numpy's global generator: rvos draws from its own, but user code or libraries may not.
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002
    return {
        "python_rng": random.getstate(),
        "numpy_rng": {
            "key": np_state["state"]["key"].tolist(),
            "pos": np_state["state"]["pos"],
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        },
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python_rng"])
    n = state["numpy_rng"]
    numpy_state = {
        "bit_generator": "MT19937",
        "has_gauss": n["has_gauss"],
        "gauss": n["gauss"],
        "state": {"key": np.asarray(n["key"], dtype=np.uint32), "pos": n["pos"]},
    }
    np.random.set_state(numpy_state)  # noqa: NPY002
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])


def _to_float(outputs):
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: _to_float(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_to_float(v) for v in outputs)
    return outputs


def _num_boxes(batch: dict) -> int:
    return int(sum(int(t["valid"].sum()) for t in batch["targets"]))


def train_on_dataset(cfg: DatasetTrainConfig) -> dict:
    """Run (or resume) a dataset training run; returns the last logged record (rank 0)."""
    workers, device = tdist.setup(cfg.device)
    try:
        return _train(cfg, workers, device)
    finally:
        tdist.teardown()


def _train(cfg: DatasetTrainConfig, workers, device: torch.device) -> dict:
    out = Path(cfg.out)
    main = workers.is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
    # Each rank its own random stream (dropout), as the original seeds seed + rank.
    torch.manual_seed(cfg.seed + workers.rank)
    random.seed(cfg.seed + workers.rank)
    np.random.seed(cfg.seed + workers.rank)  # noqa: NPY002
    resume = read_training_state(cfg.resume) if cfg.resume else None
    overrides = json.loads(cfg.model_overrides) if cfg.model_overrides else {}
    if resume is not None:
        tokenizer = load_tokenizer(Path(cfg.resume).parent / "tokenizer")
        model = build_referformer(ReferFormerConfig.from_dict(resume["model_config"]), tokenizer)
        model.load_state_dict(resume["model"])
    else:
        init = load_init_model(cfg.init, cfg.text_encoder)
        config = with_overrides(init.config, **overrides) if overrides else init.config
        model = build_referformer(copy.deepcopy(config), init.tokenizer)
        try:
            model.load_state_dict(init.state_dict())
        except RuntimeError as exc:
            raise ValueError(
                f"--model-overrides {cfg.model_overrides} do not fit the --init "
                f"weights {cfg.init}: {exc}"
            ) from None
        del init
    recipe = build_recipe(cfg, model.config.backbone)
    if resume is not None:  # the run's own recipe, whatever the command line says now
        recipe = Recipe(**resume["recipe"])
    if main and not (out / "tokenizer" / "tokenizer.json").is_file():
        model.tokenizer.save_pretrained(str(out / "tokenizer"))
    model.config.freeze_text_encoder = recipe.freeze_text_encoder
    if recipe.freeze_text_encoder:
        model.text_encoder.requires_grad_(False)
    if cfg.train_only:
        freeze_all_but(model, cfg.train_only)
    model = model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model, recipe), lr=recipe.lr)
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])

    dataset = OfficialClips(
        cfg.data,
        cfg.format,
        cfg.split,
        frames=recipe.frames,
        scales=recipe.scales,
        max_size=recipe.max_size,
        crop_prob=recipe.crop_prob,
        flip_prob=recipe.flip_prob,
        photometric=recipe.photometric,
        seed=cfg.seed,
    )
    A = max(1, cfg.accumulate)
    B = recipe.batch_size
    start_step = int(resume["step"]) if resume is not None else 0
    sampler = ClipBatches(
        len(dataset),
        B,
        workers.world_size,
        workers.rank,
        cfg.seed,
        recipe.scales,
        start=start_step * A,
    )
    steps_per_epoch = max(1, sampler.batches_per_epoch // A)
    extended = None
    if resume is not None:
        total = int(resume["total_steps"])
        if cfg.steps is not None and cfg.steps != total:
            # --steps on --resume sets a new end: a run may be extended (or cut short) at any
            # step it has not yet passed.
            if cfg.steps <= start_step:
                raise ValueError(
                    f"--steps {cfg.steps}: the checkpoint is already at step {start_step}; "
                    f"give more steps to extend the run (it was to end at {total})"
                )
            extended, total = total, cfg.steps
    elif cfg.steps is not None:
        total = cfg.steps
    else:
        total = recipe.epochs * steps_per_epoch
    if resume is None:
        # A warm-up longer than a tenth of a short run would never reach the peak rate.
        recipe.warmup = min(recipe.warmup, max(1, total // 10))
    n_workers = (
        cfg.workers
        if cfg.workers >= 0
        else (
            min(8, max(1, (torch.get_num_threads() // tdist.local_world_size()) - 1))
            if device.type == "cuda"
            else 0
        )
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_clips,
        num_workers=n_workers,
        pin_memory=device.type == "cuda",
        # its own generator: creating the iterator leaves the global RNG alone
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    use_bf16 = device.type == "cuda" and cfg.precision in ("auto", "bf16")
    if cfg.precision == "bf16" and device.type != "cuda":
        raise ValueError("--precision bf16 needs a GPU; on a CPU training runs in fp32")
    criterion = ReferringCriterion(weights=LossWeights(cls=cfg.cls_weight))
    step_module = tdist.wrap(model, workers, device)
    if resume is not None:
        states = resume.get("rng_per_rank") or [resume]
        _set_rng_state(states[workers.rank % len(states)])

    log = _Log(out / "log.jsonl", append=resume is not None) if main else None
    if main:
        log.write(
            {
                "event": "start",
                "step": start_step,
                "total_steps": total,
                "world_size": workers.world_size,
                "device": str(device),
                "clips": len(dataset),
                "steps_per_epoch": steps_per_epoch,
                "config": dict(vars(cfg)),
                "recipe": recipe.to_dict(),
                "model_config": model.config.to_dict(),
            }
        )
        print(
            f"training {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters "
            f"({recipe.name} recipe) on {workers.world_size} x {device.type}, {len(dataset)} "
            f"clips of {recipe.frames} frames, {B} x {A} per process and step, steps "
            f"{start_step}..{total} ({steps_per_epoch} per epoch)",
            file=sys.stderr,
        )
        if extended is not None:
            how = ("the learning rate drops at the same epochs"
                   if recipe.schedule == "step" else
                   "the cosine schedule is stretched to the new end from here on")
            print(f"note: the run now ends at step {total} instead of {extended}; {how}",
                  file=sys.stderr)
        if resume is not None and int(resume.get("world_size", 1)) != workers.world_size:
            print(
                f"note: the run was started on {resume.get('world_size')} processes; the "
                "data order differs from there on",
                file=sys.stderr,
            )
    set_train_mode(model)
    elapsed_before = float(resume.get("elapsed", 0.0)) if resume is not None else 0.0
    t0, running, n_running, record = time.time(), torch.zeros(len(TERMS)), 0, {}
    step, batches = start_step, iter(loader)
    while step < total:
        factor = learning_rate_factor(step, total, steps_per_epoch, recipe)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        micro = [next(batches) for _ in range(A)]
        # Normalise by the target boxes of the whole global batch (all ranks, all micro-batches)
        nb_local = torch.tensor([float(sum(_num_boxes(b) for b in micro))])
        nb_global = max(1.0, float(tdist.all_reduce_sum(nb_local)))
        terms = torch.zeros(len(TERMS))
        optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(micro):
            sync = i == A - 1 or not workers.distributed
            ctx = step_module.no_sync() if not sync else contextlib.nullcontext()
            with ctx:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                    outputs = step_module(
                        batch["frames"].to(device, non_blocking=True),
                        batch["video_index"].to(device),
                        batch["captions"],
                    )
                losses = criterion(_to_float(outputs), batch["targets"])
                # The criterion divided by this micro-batch's boxes (at least 1); rescale to
                # the global count, times W because DDP averages over the ranks.
                scale = max(1.0, float(_num_boxes(batch))) / nb_global
                (losses["loss"] * scale * workers.world_size).backward()
            terms += torch.stack([losses[k].detach().float().cpu() for k in TERMS]) * scale
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad)
        optimizer.step()
        step += 1
        running += tdist.all_reduce_sum(terms)
        n_running += 1
        if step % cfg.log_every == 0 or step == total:
            elapsed = time.time() - t0
            rate = (step - start_step) * B * A * workers.world_size / max(elapsed, 1e-9)
            record = {
                "step": step,
                "epoch": (step - 1) // steps_per_epoch,
                "lr": recipe.lr * factor,
                "time": elapsed_before + elapsed,
                **{k: float(v) / n_running for k, v in zip(TERMS, running, strict=True)},
                "grad_norm": float(grad_norm),
                "clips_per_s": rate,
            }
            running, n_running = torch.zeros(len(TERMS)), 0
            if main:
                log.write(record)
                left = (total - step) * elapsed / max(1, step - start_step)
                print(
                    f"[{step}/{total}] epoch {record['epoch']} loss {record['loss']:.3f} "
                    f"(dice {record['loss_dice']:.3f} giou {record['loss_giou']:.3f}) "
                    f"lr {record['lr']:.1e} {rate:.2f} clips/s, {left / 60:.1f} min left",
                    file=sys.stderr,
                    flush=True,
                )
        if step % cfg.ckpt_every == 0 or step == total:
            # Every rank's RNG state (dropout draws differ per rank), gathered on rank 0.
            rng = tdist.gather_objects(_rng_state())
        if main and (step % cfg.ckpt_every == 0 or step == total):
            save_training_checkpoint(
                out / "checkpoint.pt",
                model=model,
                optimizer=optimizer,
                train_config={**vars(cfg), "size": recipe.eval_short_side},
                step=step,
                total_steps=total,
                elapsed=elapsed_before + time.time() - t0,
                recipe=recipe.to_dict(),
                world_size=workers.world_size,
                micro_batch=step * A,
                rng_per_rank=rng,
                **rng[0],
            )
            if cfg.keep_checkpoints:
                shutil.copyfile(out / "checkpoint.pt", out / f"checkpoint-{step}.pt")
    if main:
        log.write({"event": "end", "step": step, "time": elapsed_before + time.time() - t0})
        log.close()
        if cfg.export:
            export(model, cfg.export, cfg, recipe, step)
    return record


def export(
    model: ReferFormer, folder: str, cfg: DatasetTrainConfig, recipe: Recipe, step: int
) -> Path:
    """A CPU copy of the model as a ``save_pretrained`` folder, with how it was trained."""
    model = copy.deepcopy(model).cpu().eval()
    meta = {
        "input_short_side": recipe.eval_short_side,
        "training": {
            "steps": step,
            "data": f"{cfg.format}:{cfg.data} ({cfg.split})",
            "init": cfg.init,
            "recipe": recipe.to_dict(),
            "seed": cfg.seed,
            "accumulate": cfg.accumulate,
        },
    }
    return save_pretrained(model, folder, **meta)
