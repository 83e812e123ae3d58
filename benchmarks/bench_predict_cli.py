"""`rvos predict` with the built-in model on a 360p clip: marginal frames per second.

Runs the whole command — start-up, decoding, the model, the overlay, the mask PNGs, the zip and
result.json — on two lengths of the same 640×360 clip (the shipped Big Buck Bunny example,
looped), alternating, and reports

* marginal frames/s = (long - short frames) / (long - short seconds): what every further frame
  costs, writing included, start-up excluded;
* the short run's wall time, which is mostly start-up;
* the same for the model alone (`Predictor.predict` without writing), for comparison.

    python benchmarks/bench_predict_cli.py                 # 30 and 264 frames, 3 repeats
    python benchmarks/bench_predict_cli.py --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
CLIP = ROOT / "examples" / "bigbuckbunny.mp4"
TEXT = "the big rabbit"


def make_clips(folder: Path, short: int, long: int) -> tuple[Path, Path]:
    """The example looped to ``long`` frames, and its first ``short`` frames (both H.264)."""
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    clips = []
    for name, frames in (("short", short), ("long", long)):
        out = folder / f"{name}.mp4"
        subprocess.run([ffmpeg, "-v", "error", "-y", "-stream_loop", "-1", "-i", str(CLIP),
                        "-frames:v", str(frames), "-an", "-c:v", "libx264", "-preset",
                        "veryfast", "-pix_fmt", "yuv420p", str(out)], check=True)
        clips.append(out)
    return clips[0], clips[1]


def run_cli(clip: Path, out: Path, threads: int | None) -> float:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rvos", "predict", str(clip), "--text", TEXT,
                    "--out", str(out), "--quiet"], check=True, cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def model_only(clips: tuple[Path, Path], repeats: int) -> dict:
    """Seconds of `Predictor.predict` (no writing) on both clips, in this process."""
    from rvos.predictor.predictor import Predictor
    from rvos.zoo.loader import load_model

    predictor = Predictor(load_model("builtin"), model_name="builtin")
    predictor.predict(clips[0], TEXT)  # warm-up
    seconds: dict[str, list[float]] = {"short": [], "long": []}
    for _ in range(repeats):
        for name, clip in zip(("short", "long"), clips, strict=True):
            start = time.perf_counter()
            predictor.predict(clip, TEXT)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs=2, default=[30, 264],
                        metavar=("SHORT", "LONG"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    short_n, long_n = args.frames
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips = make_clips(folder, short_n, long_n)
        run_cli(clips[0], folder / "warm", args.threads)  # page cache, __pycache__
        cli: dict[str, list[float]] = {"short": [], "long": []}
        for r in range(args.repeats):
            for name, clip in zip(("short", "long"), clips, strict=True):
                cli[name].append(run_cli(clip, folder / f"{name}{r}", args.threads))
        model = model_only(clips, args.repeats)

    def marginal(seconds: dict[str, list[float]]) -> float:
        return (long_n - short_n) / (statistics.median(seconds["long"])
                                     - statistics.median(seconds["short"]))

    report = {
        "clip": f"{CLIP.name} looped, 640x360", "frames": [short_n, long_n],
        "threads": args.threads, "cli_seconds": cli, "model_seconds": model,
        "cli_marginal_fps": marginal(cli), "model_marginal_fps": marginal(model),
        "cli_short_run_s": statistics.median(cli["short"]),
    }
    print(f"rvos predict, built-in model, 640×360 ({CLIP.name} looped), "
          f"{args.threads or 'default'} threads, median of {args.repeats}")
    print(f"  whole command:  {short_n} frames {statistics.median(cli['short']):.2f} s, "
          f"{long_n} frames {statistics.median(cli['long']):.2f} s -> marginal "
          f"{report['cli_marginal_fps']:.1f} frames/s (writing included, start-up excluded)")
    print(f"  model only:     {short_n} frames {statistics.median(model['short']):.2f} s, "
          f"{long_n} frames {statistics.median(model['long']):.2f} s -> marginal "
          f"{report['model_marginal_fps']:.1f} frames/s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
