"""``python -m rvos predict VIDEO --text "a dog" --out DIR``: the command line of
`rvos.predictor.predictor`.

This module imports neither torch nor the model: it checks what a person typed (the video
with `rvos.media.probe.check_video_file`, the expressions, ``--out``) in a fraction of a second
and only then hands over to `rvos.cli.predict_run.run_predict_cli`, which loads torch and the model.
A bad video therefore fails at once instead of after seconds of imports.

Outputs are written under temporary names and renamed when complete. ``--out`` may be reused:
a run first removes what an earlier run wrote there (`rvos.result.writer.OUTPUT_NAMES`; other
files are left alone), so the folder never mixes two videos' files; a run that is interrupted
(Ctrl-C, SIGTERM) or fails removes its own outputs.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from rvos.errors import RvosError
from rvos.media.probe import VideoError, check_video_file

__all__ = ["PRECISION_CHOICES", "add_cli_arguments", "check_out_dir", "run_cli"]


# `rvos.modeling.precision.PRECISIONS` and `AUTO`, spelled out so that --help needs no torch (a
# test compares them).
PRECISION_CHOICES = ("fp32", "bf16", "fp16", "int8", "auto")


# `rvos.predictor.objects.OBJECTS_CHOICES`, spelled out for the same reason.
OBJECTS_CHOICES = ("best", "all")


class CliError(RvosError, ValueError):
    """A bad argument, said in one line."""


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m rvos predict``."""
    parser.add_argument("video", help="input video file (MP4, MOV, WebM, AVI, GIF, ...: any "
                                      "video ffmpeg reads)")
    parser.add_argument("--text", action="append", default=[], metavar="TEXT",
                        help="a referring expression; repeat for several objects")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder for overlay.mp4, masks/, masks.zip, result.json "
                             "(created; the outputs of an earlier run there are replaced)")
    parser.add_argument("--model", default=None, metavar="NAME",
                        help="registered model name (see `python -m rvos models`; official "
                             "ones download on first use), hf://OWNER/REPO, or a model folder "
                             "(default: builtin)")
    parser.add_argument("--checkpoint", default=None, metavar="PATH",
                        help="weights: a save_pretrained folder, or an official .pth file")
    parser.add_argument("--text-encoder", default=None, metavar="NAME_OR_DIR",
                        help="official checkpoints: RoBERTa weights and tokenizer "
                             "(default roberta-base)")
    parser.add_argument("--window", type=int, default=None,
                        help="frames per model call (default 36)")
    parser.add_argument("--overlap", type=int, default=None,
                        help="frames shared by consecutive windows (default 8, at most half "
                             "the window)")
    parser.add_argument("--fps", type=float, default=None,
                        help="processing frame rate (default: every frame)")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="process at most this many frames")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="mask probability threshold (default 0.5)")
    parser.add_argument("--presence-threshold", type=float, default=None, metavar="P",
                        help="frames whose presence (the chosen query's score, or the "
                             "model's presence head where it has one) is below P (0 to 1) get "
                             "an empty mask and count as 'not found' (default: the model's "
                             "own, from its config.json; else 0: a mask on every frame, as in "
                             "the paper)")
    parser.add_argument("--objects", default="best", choices=OBJECTS_CHOICES,
                        help="best (default): the paper's answer, one object per expression; "
                             "all: every object the expression refers to (each query scoring "
                             "at least half the best's and not a duplicate of a better one), "
                             "kept apart in result.json and coloured apart in the overlay")
    parser.add_argument("--short-side", type=int, default=None,
                        help="resize frames to this short side for the model (default: what "
                             "the model was trained at; 360 for the released models)")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu or cuda (default: cuda if available)")
    parser.add_argument("--precision", default="fp32", choices=PRECISION_CHOICES,
                        help="fp32 (default, checked against the original), or a faster opt-in "
                             "mode: bf16 (CPUs with AMX/AVX-512 BF16, GPUs), fp16 (GPUs), int8 "
                             "(CPUs with AVX2/VNNI/ARM dot product), or auto (the fastest on "
                             "this machine); a mode slower than fp32 on this CPU is refused; "
                             "see the README for how far each moves the masks")
    parser.add_argument("--offline", action="store_true", default=None,
                        help="never download a model (also $RVOS_OFFLINE=1)")
    parser.add_argument("--figure", action="store_true",
                        help="also write figure.png and figure.pdf: a paper-style grid, one row "
                             "per expression, evenly spaced frames as columns")
    parser.add_argument("--figure-frames", type=int, default=5, metavar="N",
                        help="columns (frames) of --figure (default 5)")
    parser.add_argument("--gif", action="store_true",
                        help="also write overlay.gif (at most 10 MB) for slides that cannot "
                             "play MP4")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_out_dir(out: str) -> Path:
    """The output folder, created; `CliError` when it cannot be (a file of that name, a file
    on the way, no permission)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise CliError(f"--out {out!r} is a file, not a folder: give a folder (it is created "
                       "if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CliError(f"--out {out!r}: cannot create the folder ({err.strerror})") from None
    return path


def _check_texts(texts: list[str]) -> list[str]:
    if not texts:
        raise CliError('no expression: add --text "the object to segment" '
                       "(repeat --text for several objects)")
    for i, text in enumerate(texts, start=1):
        if not text.strip():
            raise CliError(f"expression {i} (--text number {i}) is empty; describe the object "
                           "in words")
    return [" ".join(t.split()) for t in texts]


def run_cli(args: argparse.Namespace) -> int:
    """``python -m rvos predict``: returns the exit code (0 ok, 2 bad input; an interruption
    propagates as KeyboardInterrupt after the outputs are removed)."""
    try:
        texts = _check_texts(list(args.text))
        if not Path(args.video).exists():
            raise CliError(f"video not found: {args.video!r}")
        if args.max_frames is not None and args.max_frames < 1:
            raise CliError(f"--max-frames must be >= 1, got {args.max_frames}")
        if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
            raise CliError(f"--fps must be a positive number, got {args.fps}")
        presence = getattr(args, "presence_threshold", None)
        if presence is not None and not (math.isfinite(presence) and 0 <= presence <= 1):
            raise CliError(f"--presence-threshold must be between 0 and 1, got {presence}")
        check_video_file(args.video)  # before torch is imported: a bad file fails fast
        out = check_out_dir(args.out)
    except (CliError, VideoError) as err:
        print(f"rvos predict: error: {err}", file=sys.stderr)
        return 2

    # lazy: the checks above run in a fraction of a second, before torch and the model load
    from rvos.cli.predict_run import run_predict_cli

    return run_predict_cli(args, texts, out)
