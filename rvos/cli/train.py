"""``rvos train``: train the built-in ReferFormer on synthetic referring videos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rvos.training.train import TrainConfig, train

__all__ = ["add_cli_arguments", "run_cli"]


# ------------------------------------------------------------------------------------- CLI
def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig(out="")
    a = parser.add_argument
    a("--out", required=True, help="run folder: log.jsonl, checkpoint.pt, tokenizer/")
    a("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    a("--batch-size", type=int, default=d.batch_size, help=f"clips per step ({d.batch_size})")
    a("--lr", type=float, default=d.lr, help=f"peak learning rate ({d.lr})")
    a("--weight-decay", type=float, default=d.weight_decay)
    a("--warmup", type=int, default=d.warmup, help=f"warm-up steps ({d.warmup})")
    a("--clip-grad", type=float, default=d.clip_grad, help=f"max grad norm ({d.clip_grad})")
    a("--frames", type=int, default=d.frames, help=f"frames per clip ({d.frames})")
    a("--size", type=int, default=d.size, help=f"frame size in pixels ({d.size})")
    a("--seed", type=int, default=d.seed)
    a("--device", default=d.device, help="auto (CUDA when present), cpu or cuda")
    a("--workers", type=int, default=d.workers, help="data workers (-1: pick for the device)")
    a("--log-every", type=int, default=d.log_every)
    a("--val-every", type=int, default=d.val_every, help="steps between val J&F (0: never)")
    a("--val-clips", type=int, default=d.val_clips)
    a("--ckpt-every", type=int, default=d.ckpt_every)
    a(
        "--max-minutes",
        type=float,
        default=None,
        help="fit the number of steps into this wall time (measured after 30 steps)",
    )
    a("--resume", default=None, help="continue from this checkpoint.pt")
    a("--init", default=None, help="start from these weights (model folder or checkpoint.pt)")
    a("--cls-weight", type=float, default=d.cls_weight, help="class loss weight λ_cls (2)")
    a("--export", default=None, help="write the final model here (e.g. rvos/weights/builtin)")
    a("--model-overrides", default=None, help="JSON of builtin_config overrides")
    a(
        "--no-target",
        type=float,
        default=d.no_target,
        metavar="P",
        help="share of clips (0..1) that get an expression referring to nothing, and "
        "(independently) of clips whose one object leaves the frame (default 0)",
    )
    a(
        "--train-only",
        default=None,
        help="comma-separated parameter-name prefixes to train (e.g. "
        "transformer.decoder,class_embed); everything else is frozen",
    )


def run_cli(args: argparse.Namespace) -> int:
    cfg = TrainConfig(
        out=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        clip_grad=args.clip_grad,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        device=args.device,
        workers=args.workers,
        log_every=args.log_every,
        val_every=args.val_every,
        val_clips=args.val_clips,
        ckpt_every=args.ckpt_every,
        max_minutes=args.max_minutes,
        resume=args.resume,
        init=args.init,
        cls_weight=args.cls_weight,
        export=args.export,
        model_overrides=args.model_overrides,
        train_only=args.train_only,
        no_target=args.no_target,
    )
    try:
        if cfg.steps < 1 or cfg.batch_size < 1 or cfg.frames < 2 or cfg.size < 32:
            raise ValueError("need --steps >= 1, --batch-size >= 1, --frames >= 2, --size >= 32")
        if not 0 <= cfg.no_target <= 1:
            raise ValueError(f"--no-target must be in 0..1, got {cfg.no_target}")
        if cfg.resume and not Path(cfg.resume).is_file():
            raise ValueError(f"--resume {cfg.resume}: no such file")
        if cfg.init and not (
            Path(cfg.init).is_file() or (Path(cfg.init) / "config.json").is_file()
        ):
            raise ValueError(f"--init {cfg.init}: neither a checkpoint nor a model folder")
        train(cfg)
    except ValueError as exc:
        print(f"rvos train: error: {exc}", file=sys.stderr)
        return 2
    return 0
