"""Train the built-in ReferFormer on synthetic referring clips drawn fresh from
rvos.data.synth_scene.

The losses, matcher and queries are the paper's (`rvos.training.losses`); what differs is the
schedule,
chosen for a from-scratch model that must train in minutes to hours, not days:

* every step draws new clips (``make_clip("train", index, seed)``, index = step * batch + i),
  so there is no epoch, no overfitting to guard against, and a resumed run sees exactly the
  clips the uninterrupted run would have seen;
* every expression of a clip is trained at once: the backbone runs once per clip and the
  decoder once per expression, and the expressions of one clip refer to *different* objects of
  the same frames, which is the signal that teaches the model to read the sentence;
* AdamW with one learning rate for everything (nothing is pre-trained), linear warm-up then
  cosine decay, gradient clipping at a norm of 1.0 (the paper's 0.1 with lr 1e-4 is made
  for fine-tuning pre-trained weights; here it slowed learning down, see the README).

``python -m rvos train --out runs/builtin`` writes ``log.jsonl`` (loss curve, validation J&F),
``checkpoint.pt`` (resumable: ``--resume runs/builtin/checkpoint.pt``), ``tokenizer/`` and, with
``--export DIR``, the final model as a ``save_pretrained`` folder.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from rvos.data.synth import make_clip
from rvos.data.synth_language import sample_expression_texts, vocabulary
from rvos.eval.evaluate import clip_to_video, evaluate_videos
from rvos.modeling import ReferFormer, ReferFormerConfig, VisualFeatures, build_referformer
from rvos.modeling.box_ops import box_xyxy_to_cxcywh
from rvos.modeling.processing import normalize
from rvos.training.losses import LossWeights, ReferringCriterion
from rvos.zoo.builtin import builtin_config, load_tokenizer, train_tokenizer, with_overrides
from rvos.zoo.checkpoint import load_pretrained, save_pretrained
from rvos.zoo.training_checkpoint import (
    load_training_checkpoint,
    read_training_state,
    save_training_checkpoint,
)

__all__ = [
    "TrainClips",
    "TrainConfig",
    "collate",
    "fit_total_steps",
    "learning_rate",
    "make_tokenizer",
    "train",
]


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run (all stored in the checkpoint)."""

    out: str
    steps: int = 20000
    batch_size: int = 8
    lr: float = 4e-4
    weight_decay: float = 5e-4
    warmup: int = 300
    min_lr_ratio: float = 0.02
    clip_grad: float = 1.0
    frames: int = 8
    size: int = 128
    seed: int = 0
    device: str = "auto"
    workers: int = -1
    log_every: int = 20
    val_every: int = 1000
    val_clips: int = 40
    ckpt_every: int = 500
    max_minutes: float | None = None
    jpeg_prob: float = 0.5
    export: str | None = None
    resume: str | None = None
    init: str | None = None  # model folder or checkpoint.pt to start from (fresh optimizer)
    cls_weight: float = 2.0  # λ_cls; the paper's 2 (matching costs keep the paper's weights)
    model_overrides: str | None = None  # JSON of builtin_config overrides (tests, experiments)
    # Comma-separated parameter-name prefixes; when set, every other parameter is frozen (and
    # frozen batch norms keep their running statistics).
    train_only: str | None = None
    # Share of clips that get an expression referring to nothing, and (drawn independently)
    # the share whose one object leaves the frame (`generate_clip(no_target=, leaving=)`).
    no_target: float = 0.0


# --------------------------------------------------------------------------------------- data
class TrainClips(torch.utils.data.Dataset):
    """Training examples: ``dataset[i]`` renders train clip ``i`` and all its expressions.

    Returns a dict: ``frames`` float ``[T,3,S,S]`` (ImageNet-normalised), ``captions`` (K
    strings), ``masks`` bool ``[K,T,S,S]``, ``boxes`` ``[K,T,4]`` (normalised cxcywh),
    ``valid`` bool ``[K,T]`` (the object is visible).
    """

    def __init__(
        self, frames: int, size: int, seed: int, jpeg_prob: float = 0.5, no_target: float = 0.0
    ) -> None:
        self.frames, self.size, self.seed, self.jpeg_prob = frames, size, seed, jpeg_prob
        self.no_target = no_target

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> dict:
        presence = {}
        if self.no_target > 0:  # its own stream: without the option the clips stay the same
            draw = np.random.default_rng([self.seed, int(index), 8]).random(2)
            presence = {"no_target": int(draw[0] < self.no_target),
                        "leaving": bool(draw[1] < self.no_target)}
        clip = make_clip(
            "train", int(index), self.seed, num_frames=self.frames, size=(self.size, self.size),
            **presence,
        )
        frames = clip.frames
        rng = np.random.default_rng([self.seed, int(index), 7])
        if rng.random() < self.jpeg_prob:
            # Evaluation splits are stored as JPEG and user videos are compressed: train on
            # both clean and re-encoded frames.
            quality = int(rng.integers(60, 96))
            frames = np.stack([_jpeg(f, quality) for f in frames])
        # [K, T, H, W]; a no-target expression's masks are empty (valid nowhere).
        masks = torch.from_numpy(np.stack([clip.target_masks(e) for e in clip.expressions]))
        h, w = frames.shape[1:3]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        raw = np.stack([clip.target_boxes(e) for e in clip.expressions])
        boxes = box_xyxy_to_cxcywh(torch.from_numpy(raw).float() / scale)
        return {
            "frames": normalize(frames),
            "captions": [e.text for e in clip.expressions],
            "categories": [e.category for e in clip.expressions],
            "masks": masks,
            "boxes": boxes,
            "valid": masks.flatten(2).any(-1),
        }


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] if ok else frame


def collate(items: list[dict]) -> dict:
    """Stack B clips; flatten their expressions into P (video, caption) pairs.

    Returns ``frames`` ``[B,T,3,S,S]``, ``video_index`` int64 ``[P]``, ``captions`` (P),
    ``targets`` (P dicts of masks/boxes/valid), ``categories`` (P).
    """
    video_index, captions, targets, categories = [], [], [], []
    for b, item in enumerate(items):
        for k, caption in enumerate(item["captions"]):
            video_index.append(b)
            captions.append(caption)
            categories.append(item["categories"][k])
            targets.append(
                {"masks": item["masks"][k], "boxes": item["boxes"][k], "valid": item["valid"][k]}
            )
    return {
        "frames": torch.stack([item["frames"] for item in items]),
        "video_index": torch.tensor(video_index, dtype=torch.int64),
        "captions": captions,
        "targets": targets,
        "categories": categories,
    }


def _index_sampler(start: int, count: int):
    return range(start, start + count)


def select_videos(visual: VisualFeatures, video_index: Tensor) -> VisualFeatures:
    """Backbone features of B videos → features of P (video, caption) pairs (video_index [P]).

    The backbone runs once per clip; each expression gets a view of its clip's features
    (index_select keeps the graph, so gradients from every expression reach the backbone).
    """
    t = visual.num_frames
    idx = (video_index[:, None] * t + torch.arange(t, device=video_index.device)).flatten()

    def pick(xs: list[Tensor]) -> list[Tensor]:
        return [x.index_select(0, idx.to(x.device)) for x in xs]

    return VisualFeatures(
        pick(visual.features),
        pick(visual.masks),
        pick(visual.pos),
        int(video_index.numel()),
        t,
        visual.image_size,
    )


# ------------------------------------------------------------------------------- schedule
def learning_rate(step: int, total: int, base: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``base * min_ratio``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def fit_total_steps(
    step: int,
    mark: tuple[int, float],
    now: float,
    start: float,
    budget_s: float,
    total: int,
    reserve_s: float = 30.0,
) -> int:
    """Number of steps that ends the run within ``budget_s`` seconds of ``start``.

    The speed is measured from ``mark = (step, time)`` to ``(step, now)``; ``reserve_s`` is kept
    for the final validation and export. Never more than ``total``, never less than step + 1.
    """
    if step <= mark[0]:
        return total
    sec_per_step = (now - mark[1]) / (step - mark[0])
    left = budget_s - (now - start) - reserve_s
    return min(total, max(step + 1, step + int(left / max(sec_per_step, 1e-9))))


# ------------------------------------------------------------------------------- helpers
def make_tokenizer(folder: str | os.PathLike, seed: int = 0):
    """Train (or load, if ``folder`` holds one) the built-in tokenizer.

    Trained on 20 000 generator expressions plus the generator's vocabulary, so every word the
    generator can say is a whole token.
    """
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        return load_tokenizer(folder)
    texts = sample_expression_texts(20000, seed=seed) + vocabulary() * 5
    return train_tokenizer(texts, folder, vocab_size=1000)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device")
    return torch.device(name)


def _default_workers(device: torch.device) -> int:
    cpus = os.cpu_count() or 1
    if device.type == "cuda":
        return max(1, min(14, cpus - 2))
    # On a small CPU box the model needs the cores; one worker overlaps clip rendering.
    return 1 if cpus > 1 else 0


def freeze_all_but(model: nn.Module, prefixes: str) -> None:
    """Train only the parameters whose names start with one of the comma-separated
    ``prefixes`` (e.g. ``transformer.decoder,class_embed``); `set_train_mode` then keeps the
    frozen batch norms' running statistics too."""
    wanted = tuple(p.strip() for p in prefixes.split(",") if p.strip())
    # Every name of a tied parameter counts (the decoder's box heads are also the model's).
    named = list(model.named_parameters(remove_duplicate=False))

    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    unknown = [w for w in wanted if not any(under(n, w) for n, _ in named)]
    if not wanted or unknown:
        raise ValueError(f"--train-only {prefixes!r}: no parameters under {unknown or wanted}; "
                         f"top-level modules: {sorted({n.split('.')[0] for n, _ in named})}")
    trained = {id(p) for n, p in named if any(under(n, w) for w in wanted)}
    for _, p in named:
        p.requires_grad_(id(p) in trained)


def set_train_mode(model: nn.Module) -> None:
    """``model.train()``, except batch norms whose parameters are frozen (`freeze_all_but`):
    they stay in eval mode, so their running statistics do not move either."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in m.parameters()):
            m.eval()


class _Log:
    def __init__(self, path: Path, append: bool) -> None:
        self.file = open(path, "a" if append else "w")  # noqa: SIM115 - closed by close()

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


# ----------------------------------------------------------------------------------- train
def train(cfg: TrainConfig) -> dict:
    """Run (or resume) a training run; returns the last validation summary (or {})."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = _resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        # No cudnn.benchmark: the decoder side sees a new batch shape (number of expressions)
        # nearly every step, and each new shape would be benchmarked again.

    init_model = None
    if cfg.init and not cfg.resume:
        # Start from trained weights (e.g. a GPU run's export) with a fresh optimizer and
        # schedule; the model's own tokenizer is kept.

        if Path(cfg.init).is_file():
            init_model = load_training_checkpoint(cfg.init)
        else:
            init_model = load_pretrained(cfg.init)
        if not (out / "tokenizer" / "tokenizer.json").is_file():
            init_model.tokenizer.save_pretrained(str(out / "tokenizer"))
    tokenizer = make_tokenizer(out / "tokenizer", seed=cfg.seed)
    overrides = json.loads(cfg.model_overrides) if cfg.model_overrides else {}
    start_step, total_steps = 0, cfg.steps
    resume_state = None
    if cfg.resume:
        resume_state = read_training_state(cfg.resume)
        model_config = ReferFormerConfig.from_dict(resume_state["model_config"])
        start_step = int(resume_state["step"])
    elif init_model is not None:
        # Overrides that keep every parameter's shape (a norm's group count, say) apply to the
        # initial weights too.
        model_config = with_overrides(init_model.config, **overrides)
    else:
        model_config = builtin_config(len(tokenizer), **overrides)
    model = build_referformer(model_config, tokenizer)
    if init_model is not None:
        try:
            model.load_state_dict(init_model.state_dict())
        except RuntimeError as exc:
            raise ValueError(f"--model-overrides {cfg.model_overrides} do not fit the --init "
                             f"weights {cfg.init}: {exc}") from None
    model = model.to(device)
    if cfg.train_only:
        freeze_all_but(model, cfg.train_only)
    criterion = ReferringCriterion(weights=LossWeights(cls=cfg.cls_weight))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() <= 1 or name.endswith(".bias") else decay).append(p)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        torch.set_rng_state(resume_state["torch_rng"])

    num_params = sum(p.numel() for p in model.parameters())
    workers = cfg.workers if cfg.workers >= 0 else _default_workers(device)
    dataset = TrainClips(cfg.frames, cfg.size, cfg.seed, cfg.jpeg_prob, cfg.no_target)
    remaining = max(0, total_steps - start_step)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=_index_sampler(start_step * cfg.batch_size, remaining * cfg.batch_size),
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
    )
    log = _Log(out / "log.jsonl", append=resume_state is not None)
    log.write(
        {
            "event": "start",
            "step": start_step,
            "total_steps": total_steps,
            "params": num_params,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "workers": workers,
            "config": dict(vars(cfg)),
            "model_config": model_config.to_dict(),
        }
    )
    print(
        f"training {num_params / 1e6:.2f} M parameters on {device} from step {start_step} "
        f"to {total_steps} (batch {cfg.batch_size} clips of {cfg.frames}x{cfg.size}px)",
        file=sys.stderr,
    )
    val_videos = None
    last_val: dict = {}
    t0 = time.time()
    t_rate: tuple[int, float] | None = None  # (step, time) the speed is measured from
    elapsed_before = float(resume_state.get("elapsed", 0.0)) if resume_state else 0.0
    running: dict[str, float] = {}
    n_running = 0
    step = start_step
    set_train_mode(model)
    for batch in loader:
        if step >= total_steps:
            break
        lr = learning_rate(step, total_steps, cfg.lr, cfg.warmup, cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        frames = batch["frames"].to(device, non_blocking=True)
        visual = model.encode_video(frames)
        visual = select_videos(visual, batch["video_index"].to(device))
        outputs = model.decode(visual, batch["captions"])
        losses = criterion(outputs, batch["targets"])
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        optimizer.step()
        step += 1

        for k in ("loss", "loss_cls", "loss_bbox", "loss_giou", "loss_dice", "loss_mask"):
            running[k] = running.get(k, 0.0) + losses[k].item()
        running["grad_norm"] = running.get("grad_norm", 0.0) + float(grad_norm)
        n_running += 1

        if cfg.max_minutes is not None and step - start_step >= 20 and step % 10 == 0:
            # Fit the run into its time budget from the speed measured since step 20 (after
            # start-up); the cosine schedule follows the new total.
            now = time.time()
            # Re-fitted every 10 steps, up or down (at most --steps): on a shared machine the
            # speed changes with the load.
            if t_rate is None:
                t_rate = (step, now)
            else:
                fitted = fit_total_steps(step, t_rate, now, t0, cfg.max_minutes * 60, cfg.steps)
                if fitted != total_steps:
                    total_steps = fitted
                    log.write({"event": "fit_budget", "step": step, "total_steps": total_steps})
        if step % cfg.log_every == 0 or step == total_steps:
            elapsed = time.time() - t0
            record = {"step": step, "lr": lr, "time": elapsed_before + elapsed}
            record.update({k: v / n_running for k, v in running.items()})
            record["clips_per_s"] = (step - start_step) * cfg.batch_size / max(elapsed, 1e-9)
            log.write(record)
            print(
                f"step {step}/{total_steps} loss {record['loss']:.3f} "
                f"(dice {record['loss_dice']:.3f} giou {record['loss_giou']:.3f} "
                f"cls {record['loss_cls']:.3f}) lr {lr:.2e} {record['clips_per_s']:.1f} clips/s",
                file=sys.stderr,
            )
            running, n_running = {}, 0
        if cfg.val_every > 0 and (step % cfg.val_every == 0 or step == total_steps):
            if val_videos is None:
                val_videos = [
                    clip_to_video(make_clip("val", i, num_frames=8, size=(cfg.size, cfg.size)))
                    for i in range(cfg.val_clips)
                ]
            last_val = validate(model, val_videos, cfg.size)
            log.write({"event": "val", "step": step, **_flat(last_val)})
            print(f"step {step}: val J&F {last_val['overall']['J&F']:.1f}", file=sys.stderr)
        if step % cfg.ckpt_every == 0 or step == total_steps:
            save_training_checkpoint(
                out / "checkpoint.pt",
                model=model,
                optimizer=optimizer,
                train_config=vars(cfg),
                step=step,
                total_steps=total_steps,
                elapsed=elapsed_before + time.time() - t0,
            )
            if cfg.export:
                # Kept current, so that an interrupted run still leaves a usable model.
                export(model, cfg.export, cfg, step, last_val)
    log.write({"event": "end", "step": step, "time": elapsed_before + time.time() - t0})
    log.close()
    if cfg.export:
        export(model, cfg.export, cfg, step, last_val)
    return last_val


def validate(model: ReferFormer, videos: list, size: int) -> dict:
    """Val J&F (percent) with the original inference procedure; restores train mode."""
    was_training = model.training
    model.eval()
    try:
        return evaluate_videos(model, videos, short_side=size).summary()
    finally:
        if was_training:
            set_train_mode(model)


def _flat(summary: dict) -> dict:
    out = {}
    for name, v in summary.items():
        for k in ("J", "F", "J&F"):
            out[f"{name}/{k}"] = round(v[k], 2)
    return out


def export(model: ReferFormer, folder: str, cfg: TrainConfig, step: int, val: dict) -> Path:
    """Write (a CPU copy of) the model as a ``save_pretrained`` folder with how it was made."""
    model = copy.deepcopy(model).cpu().eval()
    meta = {
        "input_short_side": cfg.size,
        "training": {
            "steps": step,
            "batch_size": cfg.batch_size,
            "frames": cfg.frames,
            "size": cfg.size,
            "lr": cfg.lr,
            "seed": cfg.seed,
            "init": cfg.init,
            "cls_weight": cfg.cls_weight,
            "data": "rvos.data.synth_scene train split, drawn fresh each step",
        },
    }
    if cfg.train_only:
        meta["training"]["train_only"] = cfg.train_only
    if cfg.no_target:
        meta["training"]["no_target"] = cfg.no_target
    if val:
        meta["val"] = {k: {m: round(x, 2) for m, x in v.items()} for k, v in val.items()}
    return save_pretrained(model, folder, **meta)
