"""Time and peak memory of `rvos.predictor.predictor.Predictor` on long 720p videos.

Streams a synthetic 1280×720 video (two coloured shapes moving over a textured background,
generated frame by frame, never held whole) through the built-in model for each requested
length, each length in a fresh process so that its peak RSS is its own. What it shows: memory is
flat in video length (one window of frames at a time, masks stored as run-length encodings),
time is linear.

    python benchmarks/bench_predictor.py                     # 1, 5, 10 minutes at 30 fps
    python benchmarks/bench_predictor.py --minutes 1 --fps 5 --window 12 --device cuda

Uses the shipped built-in model (rvos/weights/builtin); without it, a randomly initialised
model of the same architecture (same cost; the masks are then meaningless), and says so.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXPRESSIONS = ["the red square moving right", "the blue circle"]


def synthetic_720p(num_frames: int, seed: int = 0) -> Iterator[np.ndarray]:
    """uint8 [720, 1280, 3] frames: a red square and a blue disc moving over noise texture."""
    rng = np.random.default_rng(seed)
    background = rng.integers(60, 140, size=(720, 1280, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:160, :160]
    disc = (yy - 80) ** 2 + (xx - 80) ** 2 <= 75**2
    for t in range(num_frames):
        frame = background.copy()
        x = int(40 + (t * 7) % 1100)
        frame[280:420, x:x + 140] = (220, 30, 30)
        cx = int(560 + 400 * np.sin(t / 40))
        cy = int(300 + 200 * np.cos(t / 55))
        region = frame[cy:cy + 160, cx:cx + 160]
        region[disc[: region.shape[0], : region.shape[1]]] = (30, 60, 220)
        yield frame


def load_builtin(device: str):
    """(model, note): the shipped built-in model, or a random one of its architecture."""
    from rvos.zoo.loader import load_model
    from rvos.zoo.registry import ModelFileMissingError

    try:
        return load_model("builtin", device=device), "built-in (shipped weights)"
    except ModelFileMissingError:
        from rvos.zoo.builtin import build_builtin_model, train_tokenizer

        folder = Path(tempfile.mkdtemp(prefix="rvos-bench-tok-"))
        tokenizer = train_tokenizer(EXPRESSIONS * 50 + ["the green triangle on the left"] * 50,
                                    folder)
        model = build_builtin_model(tokenizer).to(device).eval()
        model.metadata = {"input_short_side": 128}
        return model, "built-in architecture, RANDOM weights (rvos/weights/builtin missing)"


def run_one(minutes: float, fps: float, window: int, device: str,
            short_side: int | None) -> dict:
    """Predict on ``minutes`` of synthetic video in this process; return figures."""
    import torch

    from rvos.predictor.predictor import Predictor

    torch.manual_seed(0)
    model, note = load_builtin(device)
    num_frames = round(minutes * 60 * fps)
    predictor = Predictor(model, window=window, short_side="auto" if short_side is None
                          else short_side, model_name="builtin")
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss_before = _peak_rss_mib()
    started = time.perf_counter()
    result = predictor.predict(synthetic_720p(num_frames), EXPRESSIONS, fps=fps)
    elapsed = time.perf_counter() - started
    figures = {
        "minutes": minutes,
        "frames": result.num_frames,
        "fps": fps,
        "window": window,
        "overlap": predictor.overlap,
        "short_side": predictor.short_side,
        "device": device,
        "model": note,
        "seconds": round(elapsed, 1),
        "frames_per_second": round(result.num_frames / elapsed, 1),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "rss_after_model_load_mib": round(rss_before, 1),
        "result_mib": round(sum(e.nbytes() for e in result) / 2**20, 2),
        "mask_area_mean": float(np.mean(result[0].mask_areas)),
    }
    if device.startswith("cuda"):
        figures["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return figures


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 10])
    parser.add_argument("--fps", type=float, default=30.0,
                        help="frames per second of the synthetic video (all are processed)")
    parser.add_argument("--window", type=int, default=12)
    parser.add_argument("--short-side", type=int, default=None,
                        help="model input short side (default: the model's own, 128)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    args = parser.parse_args(argv)
    if not (args.one or args.json):
        from rvos.modeling.cpu_features import cpu_features  # the figures hold for this CPU

        print(cpu_features().header())
    if args.one:  # child process: one length
        figures = run_one(args.minutes[0], args.fps, args.window, args.device, args.short_side)
        print(json.dumps(figures))
        return 0
    rows = []
    for minutes in args.minutes:
        cmd = [sys.executable, __file__, "--one", "--minutes", str(minutes), "--fps",
               str(args.fps), "--window", str(args.window), "--device", args.device]
        if args.short_side is not None:
            cmd += ["--short-side", str(args.short_side)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            if len(rows) == 1:
                print(f"model: {row['model']}; 1280x720 input, {row['fps']:g} fps, window "
                      f"{row['window']} (overlap {row['overlap']}), short side "
                      f"{row['short_side']}, {len(EXPRESSIONS)} expressions, {row['device']}")
                print(f"{'minutes':>7} {'frames':>7} {'time s':>8} {'frames/s':>8} "
                      f"{'peak RSS MiB':>12} {'result MiB':>10}"
                      + (f" {'peak CUDA MiB':>13}" if "peak_cuda_mib" in row else ""))
            print(f"{row['minutes']:>7g} {row['frames']:>7} {row['seconds']:>8} "
                  f"{row['frames_per_second']:>8} {row['peak_rss_mib']:>12} "
                  f"{row['result_mib']:>10}"
                  + (f" {row['peak_cuda_mib']:>13}" if "peak_cuda_mib" in row else ""),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
