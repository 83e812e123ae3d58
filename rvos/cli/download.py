"""``rvos download``: download an official checkpoint into the cache."""

from __future__ import annotations

import argparse
import sys

from rvos.zoo.download import DEFAULT_TIMEOUT, STALL_ENV, DownloadError, download

__all__ = ["add_cli_arguments", "run_cli"]


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m rvos download``."""
    parser.add_argument("name", help="model name (see `python -m rvos models`)")
    parser.add_argument(
        "--cache-dir", default=None, help="where to put it (default: $RVOS_CACHE or ~/.cache/rvos)"
    )
    parser.add_argument(
        "--url",
        default=None,
        help="download from this URL only (default: the mirrors of "
        "$RVOS_MIRROR, then the registry's link)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"seconds a source may send nothing before it is abandoned (default: ${STALL_ENV} "
        f"or {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def run_cli(args: argparse.Namespace) -> int:
    """Download one model; print its path on stdout, or one error line on stderr."""
    # lazy: `rvos --help`, `models` and `download` start without torch
    from rvos.zoo.registry import UnknownModelError, get_model_info

    try:
        info = get_model_info(args.name)
        path = download(
            args.name,
            cache_dir=args.cache_dir,
            url=args.url,
            progress=not args.quiet,
            timeout=args.timeout,
        )
    except (UnknownModelError, DownloadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, UnknownModelError) else 1
    if info.kind == "builtin":
        print(f"the built-in model ships with rvos; nothing to download ({path})", file=sys.stderr)
    print(path)
    return 0
