"""``rvos dataset``: predict and score Ref-YouTube-VOS / Ref-DAVIS17 / MeViS splits, and compare
two prediction sets of one split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rvos.data.layouts import (
    FORMATS,
    DatasetError,
)
from rvos.errors import RvosError
from rvos.eval.benchmark import _predict
from rvos.eval.compare import CompareError, compare_predictions, format_agreement, write_csv
from rvos.eval.dataset_scores import evaluate_predictions
from rvos.eval.distributed import ProcessGroup, Workers
from rvos.modeling.precision import AUTO, PRECISIONS

__all__ = ["add_cli_arguments", "run_cli"]

COMPARE_HELP = """Compare two prediction sets of the same split, mask by mask (ytvos, mevis:
<video>/<exp_id>/<frame>.png; davis: anno_<a>/<video>/<frame>.png).

A pixel is "object" where its PNG value is > 0. Per mask (one frame of one expression or
annotator): IoU of the two object masks (1 when both are empty) and the share of identical
pixels. Per video: the mean IoU of its masks and identical pixels over all its pixels.
The last line, `agreement: v`, is the mean IoU over every compared mask of the split
(4 decimals; 1.0 only when every mask agrees). Both sets must hold the same
masks: a video or frame missing from either is an error that names a few
(--pred-videos-only lets the reference hold more videos)."""


def _run_predict(args: argparse.Namespace) -> int:
    try:
        workers = Workers.from_env()
    except ValueError as exc:
        print(f"rvos dataset predict: error: {exc}", file=sys.stderr)
        return 2
    rank = f"[rank {workers.rank}] " if workers.distributed else ""
    try:
        for opt, low in (("max_videos", 1), ("short_side", 8), ("window", 0), ("overlap", 0)):
            value = getattr(args, opt)
            if value is not None and value < low:
                raise DatasetError(f"--{opt.replace('_', '-')} must be >= {low}, got {value}")
        with ProcessGroup(workers) as group:
            return _predict(args, workers, group)
    except (RvosError, ValueError, OSError) as exc:  # bad input, or the user's own files
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"rvos dataset predict: error: {rank}{msg}", file=sys.stderr)
        return 2


def _run_eval(args: argparse.Namespace) -> int:
    try:
        rows = evaluate_predictions(
            args.root, args.split, args.format, args.pred, args.gt, progress=not args.quiet
        )
    except (DatasetError, OSError, ValueError) as exc:
        print(f"rvos dataset eval: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{'':<8} {'J&F':>6} {'J':>6} {'F':>6} {'J-Rec':>6} {'J-Dec':>6} {'F-Rec':>6} {'F-Dec':>6}"
    )
    for name, r in rows.items():
        values = [
            r[c]
            for c in ("J&F-Mean", "J-Mean", "F-Mean", "J-Recall", "J-Decay", "F-Recall", "F-Decay")
        ]
        print(f"{name:<8} " + " ".join(f"{100 * v:>6.1f}" for v in values))
    final = rows["mean" if args.format == "davis" else "all"]["J&F-Mean"]  # ytvos, mevis: all
    print(f"J&F: {100 * final:.1f}")
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    try:
        result = compare_predictions(
            args.pred, args.reference, pred_videos_only=args.pred_videos_only
        )
        pred = Path(args.pred)
        csv_path = write_csv(
            result,
            args.csv
            or (pred / "compare.csv" if pred.is_dir() else pred.with_suffix(".compare.csv")),
        )
    except CompareError as exc:
        print(f"rvos dataset compare: error: {exc}", file=sys.stderr)
        return 2
    width = max(8, *(len(v.video) for v in result.videos))
    print(f"{'video':<{width}} {'frames':>7} {'mean IoU':>9} {'identical':>10}")
    for v in result.videos:
        print(f"{v.video:<{width}} {v.frames:>7} {v.mean_iou:>9.4f} {v.identical_share:>10.4f}")
    print(
        f"{'overall':<{width}} {len(result.frames):>7} {result.agreement:>9.4f} "
        f"{result.identical_share:>10.4f}"
    )
    worst_videos, worst_frames = result.worst_videos(), result.worst_frames()
    if worst_frames:
        print("videos that differ most:")
        for v in worst_videos:
            print(f"  {v.video}  mean IoU {v.mean_iou:.4f}  identical {v.identical_share:.4f}")
        print("frames that differ most:")
        for f in worst_frames:
            print(f"  {f.key}  IoU {f.iou:.4f}  identical {f.identical_share:.4f}")
    else:
        print(f"all {len(result.frames)} masks are identical")
    print(f"wrote {csv_path}")
    print(f"agreement: {format_agreement(result.agreement)}")
    return 0


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser(
        "predict",
        help="predict a split of Ref-YouTube-VOS, Ref-DAVIS17 or MeViS",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help="dataset folder (the official layout)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        required=True,
        help="ytvos: Ref-YouTube-VOS; davis: Ref-DAVIS17; mevis: MeViS (--split valid_u|valid)",
    )
    p.add_argument("--split", default="valid", help="split folder name (default valid)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="registry name or hf://OWNER/REPO (`rvos models`; fetched on first use, once per "
        "machine; default builtin)",
    )
    which.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH",
        help="an official .pth, an rvos model folder or a `rvos train` checkpoint.pt",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        default=None,
        help="never download a model (also $RVOS_OFFLINE=1)",
    )
    p.add_argument(
        "--text-encoder",
        default=None,
        metavar="NAME_OR_DIR",
        help="official checkpoints: RoBERTa weights and tokenizer (default roberta-base)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="cpu, cuda (the GPU of each local rank) or cuda:N (default: cuda when available)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=None,
        help="frames per model call: 0 = the whole video (ytvos default, as the "
        "original); davis default 36 (the original's clips)",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="frames shared by consecutive windows (ytvos default 8 when a window "
        "is set; davis default 0, independent clips as the original)",
    )
    p.add_argument(
        "--short-side",
        type=int,
        default=None,
        help="resize frames to this short side (default: the model's; 360 for the released models)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=(*PRECISIONS, AUTO),
        help="fp32 (default, the original's and the one to reproduce published numbers), or a "
        "faster mode: bf16, fp16 (CUDA), int8 (CPU), or auto (this machine's fastest); a mode "
        "slower than fp32 on this CPU is refused; see rvos.modeling.precision",
    )
    p.add_argument(
        "--objects",
        default="best",
        choices=("best", "all"),
        help="ytvos / mevis: best (default, the paper's): one query per expression; all: the "
        "union of every query that scores at least half the best's and is not a duplicate "
        "(for expressions about several objects, e.g. MeViS's)",
    )
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume", action="store_true", help="skip the videos already complete in DIR"
    )
    again.add_argument(
        "--overwrite", action="store_true", help="delete the predictions already in DIR first"
    )
    p.add_argument(
        "--max-videos", type=int, default=None, help="predict only the first N videos (by name)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", help="score predictions (DAVIS-2017 measures)")
    e.add_argument("root", metavar="ROOT", help="dataset folder (the official layout)")
    e.add_argument("--format", choices=FORMATS, required=True)
    e.add_argument("--split", default="valid", help="split folder name (default valid)")
    e.add_argument(
        "--pred", required=True, metavar="DIR", help="the --out folder of `rvos dataset predict`"
    )
    e.add_argument(
        "--gt",
        default=None,
        metavar="DIR",
        help="ground-truth label PNGs <video>/<frame>.png (default "
        "ROOT/<split>/Annotations; e.g. DAVIS/Annotations_unsupervised/480p); mevis: the "
        "mask_dict.json (default ROOT/<split>/mask_dict.json)",
    )
    e.add_argument("--quiet", action="store_true", help="no progress bar")

    c = sub.add_parser(
        "compare",
        help="compare two prediction sets of one split (a reproduction and the authors' zip)",
        description=COMPARE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument(
        "--pred",
        required=True,
        metavar="DIR",
        help="the --out folder of `rvos dataset predict` (or its split folder, or a zip)",
    )
    c.add_argument(
        "--reference",
        required=True,
        metavar="DIR_OR_ZIP",
        help="the other set: a prediction folder or a submission zip (video folders at its "
        "root or under one top folder such as Annotations/)",
    )
    c.add_argument(
        "--pred-videos-only",
        action="store_true",
        help="compare only the videos --pred holds (a reproduction of part of a split, e.g. "
        "--max-videos); the reference may hold more",
    )
    c.add_argument(
        "--csv",
        default=None,
        metavar="PATH",
        help="per-video CSV: video, frames, mean_iou, identical_share (default DIR/compare.csv)",
    )


def run_cli(args: argparse.Namespace) -> int:
    if args.action == "predict":
        return _run_predict(args)
    if args.action == "compare":
        return _run_compare(args)
    return _run_eval(args)
