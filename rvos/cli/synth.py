"""``rvos synth``: write a synthetic referring-video split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rvos.data.synth import SPLITS, generate_clip
from rvos.data.synth_scene import MAX_OBJECTS
from rvos.data.synth_split import write_split

__all__ = ["add_cli_arguments", "run_cli"]


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="val",
        help="val and test use fixed seeds (1 and 2); train uses --seed",
    )
    parser.add_argument("--count", type=int, default=100, help="number of clips (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="train seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(128, 128),
        metavar=("H", "W"),
        help="frame height and width (default 128 128)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="write into a folder that already holds a split"
    )
    parser.add_argument(
        "--layout",
        choices=("rvos", "ytvos", "davis", "mevis"),
        default="rvos",
        help="rvos: the folder `rvos eval` reads (default); ytvos / davis: the "
        "official Ref-YouTube-VOS / Ref-DAVIS17 layout that `rvos dataset` "
        "reads, val written as valid (see rvos.data.synth_layouts); mevis: "
        "the MeViS layout with mask_dict.json and expressions about two "
        "or three objects, val written as valid_u (rvos.data.synth_mevis)",
    )
    parser.add_argument(
        "--per-object",
        type=int,
        default=None,
        metavar="K",
        help="K expressions for every describable object (davis default 4, one "
        "per annotator) instead of the clip's own 2-4",
    )
    parser.add_argument(
        "--no-target",
        action="store_true",
        help="every clip also gets an expression that refers to nothing in it (category "
        "no-target, empty masks) and one object that leaves or enters the frame (empty masks "
        "where it is out of view); the clips differ from the split's usual ones",
    )
    parser.add_argument(
        "--objects",
        type=int,
        default=None,
        metavar="N",
        help=f"objects per clip, 1..{MAX_OBJECTS} (default: random)",
    )


def run_cli(args: argparse.Namespace) -> int:
    out = Path(args.out)
    clip_kwargs = {"num_frames": args.frames, "size": tuple(args.size), "num_objects": args.objects}
    try:
        if args.count < 1:
            raise ValueError(f"--count must be >= 1, got {args.count}")
        if args.per_object is not None and args.per_object < 1:
            raise ValueError(f"--per-object must be >= 1, got {args.per_object}")
        if args.no_target and (args.layout != "rvos" or args.per_object is not None):
            raise ValueError("--no-target writes the rvos layout with each clip's own "
                             "expressions (no --layout other than rvos, no --per-object)")
        if args.no_target:
            clip_kwargs.update(no_target=1, leaving=True)
        if args.layout == "rvos":
            meta = out / "expressions.json"
        elif args.layout == "mevis":
            # lazy: only the MeViS layout needs its writer (and cv2)
            from rvos.data.synth_mevis import MEVIS_SPLIT_FOLDERS, write_mevis_split

            meta = out / MEVIS_SPLIT_FOLDERS[args.split] / "meta_expressions.json"
        else:
            # lazy: only the official layouts need their writer (and cv2)
            from rvos.data.synth_layouts import SPLIT_FOLDERS, meta_path

            meta = meta_path(out, SPLIT_FOLDERS[args.split])
        if meta.exists() and not args.overwrite:
            raise ValueError(f"{out} already holds a split; pick another --out or --overwrite")
        # Validate the clip settings before writing anything.
        generate_clip(0, **clip_kwargs)
        if args.layout == "rvos":
            write_split(
                out, args.split, args.count, args.seed, per_object=args.per_object, **clip_kwargs
            )
        elif args.layout == "mevis":
            write_mevis_split(
                out, args.split, args.count, args.seed, per_object=args.per_object, **clip_kwargs
            )
        else:
            # lazy: only the official layouts need their writer (and cv2)
            from rvos.data.synth_layouts import write_official_split

            write_official_split(
                out,
                args.layout,
                args.split,
                args.count,
                args.seed,
                per_object=args.per_object,
                **clip_kwargs,
            )
    except (ValueError, OSError) as exc:
        print(f"rvos synth: error: {exc}", file=sys.stderr)
        return 2
    n_expr = sum(len(v["expressions"]) for v in json.loads(meta.read_text())["videos"].values())
    print(
        f"wrote {args.count} {args.split} clips ({n_expr} expressions) to {out}"
        + ("" if args.layout == "rvos" else f" in the {args.layout} layout ({meta})")
    )
    return 0
