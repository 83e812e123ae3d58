"""``rvos train``: train the built-in ReferFormer on synthetic referring videos (the default), or
with ``--data ROOT --format ytvos|davis|mevis`` train any architecture on an official-layout split
(`rvos.training.loop`), in one process or under ``torchrun ... -m rvos train``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rvos.data.layouts import FORMATS
from rvos.training.train import TrainConfig, train

__all__ = ["add_cli_arguments", "run_cli"]


# ------------------------------------------------------------------------------------- CLI
def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig(out="")
    a = parser.add_argument
    a("--out", required=True, help="run folder: log.jsonl, checkpoint.pt, tokenizer/")
    a(
        "--steps",
        type=int,
        default=None,
        help=f"optimizer steps (synthetic default {d.steps}; datasets: the recipe's epochs)",
    )
    a(
        "--batch-size",
        type=int,
        default=None,
        help=f"clips per step and process (synthetic {d.batch_size}; paper recipe 1)",
    )
    a("--lr", type=float, default=None, help=f"peak learning rate (synthetic {d.lr}; paper 1e-4)")
    a("--weight-decay", type=float, default=None, help=f"AdamW weight decay ({d.weight_decay})")
    a("--warmup", type=int, default=None, help=f"warm-up steps ({d.warmup}; cosine schedule)")
    a(
        "--clip-grad",
        type=float,
        default=None,
        help=f"max grad norm (synthetic {d.clip_grad}; paper 0.1)",
    )
    a("--frames", type=int, default=None, help=f"frames per clip (synthetic {d.frames}; paper 5)")
    a(
        "--size",
        type=int,
        default=None,
        help=f"frame size / short side in pixels (synthetic {d.size}; paper: multi-scale "
        "288..512, this fixes one)",
    )
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
    a(
        "--init",
        default=None,
        metavar="NAME_OR_PATH",
        help="start from these weights: a model folder or checkpoint.pt; with --data also a "
        "registry name (ytvos-r50, builtin) or a released .pth (default builtin)",
    )
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
    add_dataset_arguments(parser)


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training on Ref-YouTube-VOS / Ref-DAVIS17 / MeViS (--data)")
    a = g.add_argument
    a("--data", default=None, metavar="ROOT", help="root of an official-layout dataset")
    a("--format", choices=FORMATS, default=None, help="its layout (needed with --data)")
    a("--split", default="train", help="the split to train on (default train)")
    a(
        "--text-encoder",
        default=None,
        metavar="NAME_OR_DIR",
        help="RoBERTa config + tokenizer for a released .pth --init (default roberta-base)",
    )
    a(
        "--recipe",
        choices=("auto", "paper", "builtin"),
        default="auto",
        help="auto: the paper's recipe for the released architectures, the built-in model's own "
        "otherwise",
    )
    a("--epochs", type=int, default=None, help="epochs, when --steps is not given (paper 6)")
    a(
        "--lr-drop",
        type=int,
        nargs="+",
        default=None,
        metavar="EPOCH",
        help="epochs at which the learning rate drops x0.1 (paper 3 5)",
    )
    a("--lr-backbone", type=float, default=None, help="backbone learning rate (paper 5e-5)")
    a("--max-size", type=int, default=None, help="longest frame side (paper 640)")
    a(
        "--no-augment",
        action="store_true",
        help="no flip, photometric jitter, crop or multi-scale (exact comparisons)",
    )
    a(
        "--accumulate",
        type=int,
        default=1,
        metavar="N",
        help="micro-batches per optimizer step (gradient accumulation)",
    )
    a(
        "--keep-checkpoints",
        action="store_true",
        help="also keep checkpoint-<step>.pt at every --ckpt-every (any can be --resume'd)",
    )
    a(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="auto: bf16 autocast on a GPU, fp32 on a CPU",
    )


def run_dataset_cli(args: argparse.Namespace) -> int:
    # lazy: synthetic training does not need the dataset modules
    from rvos.errors import RvosError
    from rvos.training.loop import DatasetTrainConfig, train_on_dataset

    try:
        if args.format is None:
            raise ValueError("--data needs --format ytvos, davis or mevis")
        if args.accumulate < 1:
            raise ValueError(f"--accumulate must be >= 1, got {args.accumulate}")
        for name in ("steps", "batch_size", "frames", "epochs"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if args.size is not None and args.size < 32:
            raise ValueError(f"--size must be >= 32, got {args.size}")
        if args.resume and not Path(args.resume).is_file():
            raise ValueError(f"--resume {args.resume}: no such file")
        cfg = DatasetTrainConfig(
            out=args.out,
            data=args.data,
            format=args.format,
            split=args.split,
            init=args.init or "builtin",
            text_encoder=args.text_encoder,
            recipe=args.recipe,
            steps=args.steps,
            epochs=args.epochs,
            lr_drop=args.lr_drop,
            lr=args.lr,
            lr_backbone=args.lr_backbone,
            weight_decay=args.weight_decay,
            clip_grad=args.clip_grad,
            warmup=args.warmup,
            batch_size=args.batch_size,
            frames=args.frames,
            size=args.size,
            max_size=args.max_size,
            augment=not args.no_augment,
            accumulate=args.accumulate,
            seed=args.seed,
            device=args.device,
            precision=args.precision,
            workers=args.workers,
            log_every=args.log_every,
            ckpt_every=args.ckpt_every,
            resume=args.resume,
            export=args.export,
            model_overrides=args.model_overrides,
            train_only=args.train_only,
            cls_weight=args.cls_weight,
            keep_checkpoints=args.keep_checkpoints,
        )
        train_on_dataset(cfg)
    except (ValueError, RvosError, OSError) as exc:
        print(f"rvos train: error: {exc}", file=sys.stderr)
        return 2
    return 0


def run_cli(args: argparse.Namespace) -> int:
    if args.data is not None:
        return run_dataset_cli(args)
    if "RANK" in os.environ and os.environ.get("WORLD_SIZE", "1") != "1":
        print(
            "rvos train: error: under torchrun, train on a dataset (--data ROOT --format "
            "ytvos|davis|mevis); synthetic training runs in one process",
            file=sys.stderr,
        )
        return 2
    d = TrainConfig(out="")
    pick = lambda value, default: default if value is None else value  # noqa: E731
    cfg = TrainConfig(
        out=args.out,
        steps=pick(args.steps, d.steps),
        batch_size=pick(args.batch_size, d.batch_size),
        lr=pick(args.lr, d.lr),
        weight_decay=pick(args.weight_decay, d.weight_decay),
        warmup=pick(args.warmup, d.warmup),
        clip_grad=pick(args.clip_grad, d.clip_grad),
        frames=pick(args.frames, d.frames),
        size=pick(args.size, d.size),
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
    if args.format is not None or args.accumulate != 1 or args.keep_checkpoints:
        print("rvos train: error: --format, --accumulate and --keep-checkpoints go with --data",
              file=sys.stderr)
        return 2
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
