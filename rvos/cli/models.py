"""``rvos models``: list the built-in model and the official checkpoints."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rvos.zoo import registry
from rvos.zoo.loader import Availability, _size, availability
from rvos.zoo.registry import (
    ModelInfo,
    list_models,
)

__all__ = ["add_cli_arguments", "run_cli"]


def _score_text(info: ModelInfo) -> str:
    return "-" if not info.scores else str(info.scores[0])


def _as_json(info: ModelInfo, here: Availability) -> dict[str, Any]:
    return {
        "name": info.name,
        "backbone": info.backbone,
        "training_data": info.training_data,
        "kind": info.kind,
        "supported": info.supported,
        "scores": [
            {"benchmark": s.benchmark, "metric": s.metric, "value": s.value} for s in info.scores
        ],
        "urls": list(info.urls),
        "filename": info.filename,
        "size_bytes": info.size_bytes,
        "sha256": info.sha256,
        "local_path": str(here.local) if here.local else None,
        "partial_bytes": here.partial_bytes,
        "notes": info.notes,
    }


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m rvos models``."""
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the registry as JSON")
    fmt.add_argument("--markdown", action="store_true", help="print the README's model table")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="download cache to check (default: $RVOS_CACHE or ~/.cache/rvos)",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Print the registry as an aligned table, JSON or markdown."""
    models = list_models()
    if getattr(args, "markdown", False):
        print(registry.markdown_table(models))
        return 0
    cache = getattr(args, "cache_dir", None)
    here = {m.name: availability(m.name, cache) for m in models}
    if getattr(args, "json", False):
        print(json.dumps([_as_json(m, here[m.name]) for m in models], indent=2))
        return 0
    header = ("name", "backbone", "training data", "score", "size", "local", "loads")
    rows = [
        (
            m.name,
            m.backbone,
            m.training_data,
            _score_text(m),
            _size(here[m.name].size_bytes) if here[m.name].size_bytes else "?",
            "yes" if here[m.name].local else ("part" if here[m.name].partial_bytes else "no"),
            "yes" if m.supported else "not yet",
        )
        for m in models
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    print(
        "\nOfficial models download on first use (or now: `python -m rvos download NAME`); "
        f"scores as published by the authors ({registry.OFFICIAL_README}).",
        file=sys.stderr,
    )
    return 0
