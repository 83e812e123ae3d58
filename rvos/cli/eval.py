"""``rvos eval``: evaluate a model on a DAVIS-style folder (J, F, J&F)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from rvos.data.synth_split import read_synth_split
from rvos.errors import RvosError
from rvos.eval.evaluate import evaluate_videos, input_short_side
from rvos.zoo.loader import load_model_from

__all__ = ["add_cli_arguments", "run_cli"]


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", help="a split folder written by `python -m rvos synth`")
    parser.add_argument("--model", default="builtin", help="registry name (default: builtin)")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="model folder (save_pretrained), training checkpoint (.pt) or released .pth",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument(
        "--short-side",
        type=int,
        default=None,
        help="resize frames to this short side (default: what the model was trained at)",
    )
    parser.add_argument("--max-videos", type=int, default=None, help="score only the first N")
    parser.add_argument("--json", default=None, help="also write per-expression scores here")


def run_cli(args: argparse.Namespace) -> int:
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        videos = read_synth_split(args.data_dir)
        if args.max_videos is not None:
            videos = videos[: args.max_videos]
        if not any(v.expressions for v in videos):
            raise ValueError(f"{args.data_dir} holds no expressions to score")
        model, _ = load_model_from(args.model if args.checkpoint is None else None,
                                   args.checkpoint, device=device, progress=False)
    except (RvosError, ValueError, OSError) as exc:  # bad input, or the user's own files
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        msg = exc.for_cli() if hasattr(exc, "for_cli") else msg  # CLI advice, not Python's
        print(f"rvos eval: error: {msg}", file=sys.stderr)
        return 2
    short_side = args.short_side if args.short_side is not None else input_short_side(model)
    start = time.time()
    result = evaluate_videos(model.eval(), videos, short_side, progress=True)
    elapsed = time.time() - start
    n_expr = len(result.records)
    print(
        f"{len(videos)} videos, {n_expr} expressions, short side {short_side}, "
        f"{elapsed:.0f} s on {device}"
    )
    print(result.table())
    if args.json:
        out = Path(args.json)
        if out.parent != Path(""):
            os.makedirs(out.parent, exist_ok=True)
        out.write_text(
            json.dumps({"summary": result.summary(), "records": result.records}, indent=1)
        )
    print(f"J&F: {result.summary()['overall']['J&F']:.1f}")
    return 0
