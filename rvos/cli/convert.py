"""``rvos convert``: write a checkpoint as a self-contained folder for the Hub."""

from __future__ import annotations

import argparse
import sys

from rvos.zoo import download as dl
from rvos.zoo import registry
from rvos.zoo.convert import ConvertError, convert
from rvos.zoo.registry import UnknownModelError

__all__ = ["add_cli_arguments", "run_cli"]


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m rvos convert``."""
    parser.add_argument(
        "source",
        metavar="NAME_OR_PTH",
        help="a registry name (`python -m rvos models`) or an official .pth file",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    parser.add_argument(
        "--text-encoder",
        default=None,
        metavar="NAME_OR_DIR",
        help="official checkpoints: RoBERTa configuration and tokenizer to "
        "bundle (default roberta-base)",
    )
    parser.add_argument(
        "--repo-id",
        default=None,
        metavar="OWNER/REPO",
        help="the Hub repository it is for (used in the model card's examples)",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="download cache (default: $RVOS_CACHE or ~/.cache/rvos)"
    )
    parser.add_argument(
        "--offline", action="store_true", default=None, help="never download (also $RVOS_OFFLINE=1)"
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    parser.add_argument("--quiet", action="store_true", help="no download progress")


def run_cli(args: argparse.Namespace) -> int:
    """Convert; print the folder on stdout and how to upload it, or one error line."""
    # lazy: `rvos --help`, `models` and `download` start without torch
    from rvos.zoo.checkpoint import CheckpointError

    errors = (
        ConvertError,
        UnknownModelError,
        registry.ModelFileMissingError,
        dl.DownloadError,
        CheckpointError,
        OSError,
    )
    try:
        out = convert(
            args.source,
            args.out,
            text_encoder=args.text_encoder,
            repo_id=args.repo_id,
            cache_dir=args.cache_dir,
            offline=args.offline,
            overwrite=args.force,
            progress=not args.quiet,
        )
    except errors as err:
        message = err.for_cli() if hasattr(err, "for_cli") else err  # CLI advice, not Python's
        print(f"rvos convert: error: {message}", file=sys.stderr)
        return 2
    repo = args.repo_id or "OWNER/REPO"
    print(
        f"wrote {out}: model.safetensors, config.json, tokenizer/, README.md. Upload it with "
        f"`hf upload {repo} {out} .`, then use --model hf://{repo}",
        file=sys.stderr,
    )
    print(out)
    return 0
