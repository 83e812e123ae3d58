"""``python -m rvos`` / ``rvos``: one entry point, one subcommand per job.

Each subcommand lives in the module that does the work (``predict`` in the torch-free
`rvos.cli.predict`, which checks the video before `rvos.predictor.predictor` loads torch); the
module
exposes ``add_cli_arguments(parser)`` and ``run_cli(args) -> int``. Modules are imported only
when their command runs (``--help`` of a single command imports just that module).

Ctrl-C and SIGTERM end a command with one line and exit code 130 / 143; SIGTERM is raised as a
`KeyboardInterrupt` (`Terminated`) so that both run the same clean-up (``rvos predict`` removes
its unfinished outputs).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading

COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("rvos.cli.predict", "segment the objects that sentences refer to in a video"),
    "models": ("rvos.cli.models", "list the built-in model and the official checkpoints"),
    "download": ("rvos.cli.download", "download an official checkpoint into the cache"),
    "convert": ("rvos.cli.convert", "write a checkpoint as a self-contained folder for the Hub"),
    "synth": ("rvos.cli.synth", "write a synthetic referring-video split (DAVIS, "
              "Ref-YouTube-VOS or MeViS layout)"),
    "train": ("rvos.cli.train", "train the built-in model on synthetic videos, or any model on "
              "Ref-YouTube-VOS / Ref-DAVIS17 / MeViS (torchrun spreads it)"),
    "eval": ("rvos.cli.eval", "evaluate a model on a DAVIS-style folder (J, F, J&F)"),
    "dataset": ("rvos.cli.dataset", "Ref-YouTube-VOS / Ref-DAVIS17 / MeViS: predict a split "
                "(torchrun shards it), score it, compare two prediction sets"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    # lazy: `rvos --help`, `models` and `download` start without torch
    from rvos import __version__

    parser = argparse.ArgumentParser(
        prog="rvos",
        description="ReferFormer referring video object segmentation: predict, models, "
                    "download, convert, synth, train, eval, dataset. `rvos COMMAND --help` for "
                    "each.")
    parser.add_argument("--version", action="version", version=f"rvos {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            importlib.import_module(module_name).add_cli_arguments(p)
    return parser


def passive_openmp() -> None:
    """Let torch's idle OpenMP threads sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``),
    unless the environment already chooses; effective only before torch is first imported.

    rvos runs its own threads beside torch's (decoding the next window, writing the outputs),
    and shared CPUs (a Space, a laptop) run other programs. With the default policy a thread
    that finished its share of an operation spins while waiting for one that was descheduled:
    measured on 2 busy cores, the built-in model fell from 23 frames/s on one thread to 7 on
    two; with this policy, 20. On an idle machine `rvos predict` gains 10 % from it (our own
    threads get the cycles), the model alone loses some of the 47 frames/s it reaches there.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``), raised like Ctrl-C so that the same clean-up runs:
    a command removes what it had not finished writing."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    passive_openmp()
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGTERM, _raise_terminated)
    command = next((a for a in argv if not a.startswith("-")), None)
    only = command if command in COMMANDS else None
    # Without a known command only the top-level help is needed: import nothing heavy.
    parser = build_parser(only=only if only else "")
    args = parser.parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run_cli(args) or 0)
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(f"rvos {args.command}: {'terminated' if terminated else 'interrupted'}; "
              "unfinished outputs were removed", file=sys.stderr)
        return 143 if terminated else 130


if __name__ == "__main__":
    sys.exit(main())
