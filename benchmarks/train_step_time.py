"""Time per training step of `rvos train --data` on this machine, for the built-in model and the
ResNet-50 ReferFormer (the released architecture, from ../shared/parity's checkpoint).

Writes a small synthetic Ref-YouTube-VOS-layout split, trains a few steps of each architecture
in one process (batch 1, the paper's 5-frame clips, no augmentation so every step does the same
work) and prints the median seconds per step over the steps after the first (start-up).
The machine may be shared: medians of few steps, so read them as an order of magnitude.

    python benchmarks/train_step_time.py [--steps 4] [--sizes 128] [--device cpu]

At the paper's test-time short side (``--sizes 360``, 640 px wide) a ResNet-50 step takes
minutes on a 2-core CPU: ask for it knowingly.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rvos.cli.main import main  # noqa: E402

PARITY = REPO.parent / "shared" / "parity" / "referformer_r50"


def step_times(log: Path) -> list[float]:
    records = [json.loads(x) for x in log.read_text().splitlines()]
    times = [r["time"] for r in records if "loss" in r]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def run(root: Path, out: Path, init: list[str], size: int, steps: int, device: str) -> float:
    argv = ["train", "--data", str(root), "--format", "ytvos", "--out", str(out), "--size",
            str(size), "--frames", "5", "--batch-size", "1", "--steps", str(steps),
            "--log-every", "1", "--no-augment", "--workers", "0", "--device", device,
            "--warmup", "1", *init]  # fmt: skip
    if main(argv) != 0:
        raise SystemExit(f"training failed: {' '.join(argv)}")
    return statistics.median(step_times(out / "log.jsonl"))


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from rvos.modeling.cpu_features import cpu_features  # the figures hold for this CPU

    print(cpu_features().header())
    archs = {"builtin": ["--init", "builtin"]}
    if (PARITY / "checkpoint.pth").is_file():
        archs["resnet50"] = ["--init", str(PARITY / "checkpoint.pth"), "--text-encoder",
                             str(PARITY / "text_encoder")]  # fmt: skip
    else:
        print(f"(no {PARITY}: the ResNet-50 architecture is skipped)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = []
        for size in args.sizes:
            root = tmp / f"ytvos{size}"
            w = size * 16 // 9
            assert main(["synth", "--layout", "ytvos", "--split", "train", "--count", "2",
                         "--frames", "8", "--size", str(size), str(w), "--out",
                         str(root)]) == 0  # fmt: skip
            for name, init in archs.items():
                t0 = time.time()
                sec = run(root, tmp / f"{name}{size}", init, size, args.steps, args.device)
                rows.append((name, size, sec, time.time() - t0))
    print(f"\n{'architecture':<12} {'short side':>10} {'s/step':>8}  (1 clip of 5 frames, "
          f"{args.device}, median of {args.steps - 1} steps)")
    for name, size, sec, _ in rows:
        print(f"{name:<12} {size:>10} {sec:>8.2f}")


if __name__ == "__main__":
    main_bench()
