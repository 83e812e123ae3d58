"""Seconds per video of ``rvos dataset predict`` on splits shaped like the benchmarks' valid sets.

Writes a synthetic split in the official layout (`rvos.data.synth_layouts`) at the shape of a
typical
video of the dataset, runs ``rvos dataset predict`` on it in this process, and prints seconds per
video (median over videos, after ``--warmup`` videos that are not counted), split into the model
(frame reading, resizing and network) and writing the PNGs, from ``predict-<split>.json``; and
the CPU seconds per video, which other jobs on a shared machine disturb less than wall time.

Typical videos (defaults): Ref-YouTube-VOS valid has 202 videos and 834 expressions (4.1 per
video), frames 1280x720, every fifth frame of a few seconds kept; Ref-DAVIS17 valid has 30 videos of
about 67 frames at 854x480 and about two objects each, four expressions per object.

    python benchmarks/bench_dataset.py --format ytvos                     # built-in model
    python benchmarks/bench_dataset.py --format davis
    python benchmarks/bench_dataset.py --format ytvos --frames 12 \\
        --checkpoint ../shared/parity/referformer_r50/checkpoint.pth \\
        --text-encoder ../shared/parity/referformer_r50/text_encoder     # R50 architecture

The parity checkpoint has the released ResNet-50 architecture with seeded random weights and a
one-layer text encoder: its masks mean nothing, its time is the released model's (the text
encoder is a negligible part).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHAPES = {
    "ytvos": {"frames": 36, "size": (720, 1280), "objects": 2, "per_object": 2},
    "davis": {"frames": 67, "size": (480, 854), "objects": 2, "per_object": 4},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("ytvos", "davis"), required=True)
    parser.add_argument("--videos", type=int, default=3, help="videos timed")
    parser.add_argument("--warmup", type=int, default=1, help="untimed videos first (default 1)")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--objects", type=int, default=None)
    parser.add_argument("--per-object", type=int, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--text-encoder", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--keep", default=None, help="write the split and predictions here")
    args = parser.parse_args()
    from rvos.modeling.cpu_features import cpu_features  # the figures hold for this CPU

    print(cpu_features().header())

    import torch

    from rvos.cli.main import main as rvos_main
    from rvos.data.synth_layouts import write_official_split

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = dict(SHAPES[args.format])
    for key in ("frames", "objects", "per_object"):
        if getattr(args, key) is not None:
            shape[key] = getattr(args, key)
    if args.size is not None:
        shape["size"] = tuple(args.size)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_dataset_"))
    data, out = work / "data", work / "pred"
    started = time.perf_counter()
    write_official_split(
        data,
        args.format,
        "val",
        args.videos + args.warmup,
        0,
        per_object=shape["per_object"],
        num_frames=shape["frames"],
        size=shape["size"],
        num_objects=shape["objects"],
    )
    print(
        f"wrote {args.videos + args.warmup} videos of {shape['frames']} frames at "
        f"{shape['size'][1]}x{shape['size'][0]} in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    argv = [
        "dataset",
        "predict",
        "--format",
        args.format,
        str(data),
        "--split",
        "valid",
        "--out",
        str(out),
        "--device",
        args.device,
        "--overwrite",
    ]
    for opt in ("model", "checkpoint", "text_encoder"):
        if getattr(args, opt) is not None:
            argv += [f"--{opt.replace('_', '-')}", getattr(args, opt)]
    cpu = time.process_time()
    code = rvos_main(argv)
    cpu = time.process_time() - cpu  # every thread of this process, model load included
    if code:
        return code
    record = json.loads((out / "predict-valid.json").read_text())
    videos = sorted(record["videos"].items())[args.warmup :]
    total = [v["model_s"] + v["write_s"] for _, v in videos]
    model = [v["model_s"] for _, v in videos]
    write = [v["write_s"] for _, v in videos]
    exprs = [v["expressions"] for _, v in videos]
    load = os.getloadavg()[0]
    print(
        f"model {record['model']}, settings {record['settings']}, device {args.device}, "
        f"{torch.get_num_threads()} thread(s), load average {load:.1f}"
    )
    print(
        f"{len(videos)} videos x {shape['frames']} frames at {shape['size'][1]}x"
        f"{shape['size'][0]}, {statistics.mean(exprs):.1f} expressions per video"
    )
    print(
        f"seconds per video (median): {statistics.median(total):.2f} "
        f"(model {statistics.median(model):.2f}, PNG writing {statistics.median(write):.2f}); "
        f"CPU seconds per video (all videos, model load included): "
        f"{cpu / (args.videos + args.warmup):.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
