"""How close the app's run-time estimate comes to the run: estimate / actual for every example
and for a 3-s 4K clip (Big Buck Bunny scaled to 3840×2160, made here with the bundled ffmpeg).

Each clip is estimated the way a visitor's first Segment is: with a fresh `SpeedBook` (the
model's speed and the cost of reading and writing video measured then, nothing learnt from an
earlier run), then run as the app runs it (`prepare_run`, every step, `finish`), timed from
start to the finished outputs. A second estimate, refined by that run, is printed too.

    python benchmarks/bench_estimate.py [--model builtin] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_4k_clip(folder: Path, seconds: float = 3.0) -> Path:
    import imageio_ffmpeg

    out = folder / "bigbuckbunny_4k.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i",
                    str(ROOT / "examples" / "bigbuckbunny.mp4"), "-t", str(seconds), "-vf",
                    "scale=3840:2160", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt",
                    "yuv420p", str(out)], check=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="*", help="clip file names to run (default: all)")
    args = parser.parse_args()
    from rvos.modeling.cpu_features import cpu_features  # the figures hold for this CPU

    print(cpu_features().header())

    import torch

    from rvos.app.inputs import Limits, RunSettings
    from rvos.app.models import ModelCache, model_choices
    from rvos.app.runs import estimate_run, prepare_run
    from rvos.predictor.estimate import SpeedBook, format_seconds

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-estimate-"))
    clips = sorted((ROOT / "examples").glob("*.mp4")) + [make_4k_clip(work)]
    if args.only:
        clips = [c for c in clips if c.name in args.only]
    models = ModelCache(model_choices(args.model))
    limits = Limits(max_duration_s=600, max_frames=10_000)
    settings = RunSettings(max_frames=limits.max_frames, device=args.device)
    expressions = "the main object"
    print(f"{'clip':<24} {'size':>10} {'frames':>6} {'estimate':>9} {'actual':>8} "
          f"{'ratio':>6} {'refined':>8} {'ratio':>6}   (model + reading/writing)")
    ratios = []
    for clip in clips:
        models.get(args.model, args.device)  # loading is not part of a run
        models.speeds = SpeedBook()  # a first estimate, as on a fresh instance
        est = estimate_run(models, args.model, str(clip), expressions, settings, limits)
        started = time.perf_counter()
        run = prepare_run(models, args.model, str(clip), expressions, settings, limits,
                              work)
        *_, last = run.steps()
        run.finish(last.result)
        actual = time.perf_counter() - started
        again = estimate_run(models, args.model, str(clip), expressions, settings, limits)
        h, w = est.source_size
        ratio = est.seconds / actual
        ratios.append(ratio)
        print(f"{clip.name:<24} {w:>4}×{h:<5} {est.frames:>6} {est.seconds:>8.1f}s "
              f"{actual:>7.1f}s {ratio:>6.2f} {again.seconds:>7.1f}s "
              f"{again.seconds / actual:>6.2f}   ({format_seconds(est.model_s)} + "
              f"{format_seconds(est.io_s)})", flush=True)
    worst = max(ratios, key=lambda r: max(r, 1 / r))
    print(f"worst first-estimate ratio: {worst:.2f} (target: within ×1.5)")
    return 0 if 1 / 1.5 <= worst <= 1.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
