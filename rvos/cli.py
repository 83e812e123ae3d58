"""``python -m rvos`` / ``rvos``: one entry point, one subcommand per job.

Each subcommand lives in the module that does the work; the module exposes
``add_cli_arguments(parser)`` and ``run_cli(args) -> int`` and its docstring's first line is the
command's help. Modules are imported only when their command runs (``--help`` of a single
command imports just that module).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("rvos.predictor", "segment the objects that sentences refer to in a video"),
    "models": ("rvos.zoo", "list the built-in model and the official checkpoints"),
    "download": ("rvos.download", "download an official checkpoint into the cache"),
    "convert": ("rvos.convert", "write a checkpoint as a self-contained folder for the Hub"),
    "synth": ("rvos.synth", "write a synthetic referring-video split (DAVIS-style folder)"),
    "train": ("rvos.train", "train the built-in ReferFormer on synthetic referring videos"),
    "eval": ("rvos.evaluate", "evaluate a model on a DAVIS-style folder (J, F, J&F)"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    from rvos import __version__

    parser = argparse.ArgumentParser(
        prog="rvos",
        description="ReferFormer referring video object segmentation: predict, models, "
                    "download, convert, synth, train, eval. `rvos COMMAND --help` for each.")
    parser.add_argument("--version", action="version", version=f"rvos {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            importlib.import_module(module_name).add_cli_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    only = command if command in COMMANDS else None
    # Without a known command only the top-level help is needed: import nothing heavy.
    parser = build_parser(only=only if only else "")
    args = parser.parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run_cli(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
