"""`rvos predict` on a 360p clip: marginal frames per second (and seconds per frame).

Runs the whole command — start-up, decoding, the model, the overlay, the mask PNGs, the zip and
result.json — on two lengths of the same 640×360 clip (the shipped Big Buck Bunny example,
looped), alternating, and reports

* marginal frames/s = (long - short frames) / (long - short seconds): what every further frame
  costs, writing included, start-up excluded;
* the short run's wall time, which is mostly start-up;
* the same for the model alone (`Predictor.predict` without writing), for comparison.

The built-in model by default; ``--checkpoint`` (and ``--text-encoder``) runs another, e.g. the
released R50 architecture in the parity fixtures' official-format file. ``--before DIR`` also
runs the command of another rvos checkout (e.g. a ``git worktree`` of an earlier commit),
alternating with this one, so that a change is measured before and after on one machine in one
run; the model-only figures are this checkout's.

    python benchmarks/bench_predict_cli.py                 # 30 and 264 frames, 3 repeats
    python benchmarks/bench_predict_cli.py --repeats 5 --threads 1
    git worktree add /tmp/before dc3fcc2^1                 # before chunked windows
    python benchmarks/bench_predict_cli.py --frames 5 36 --threads 2 \
        --checkpoint ../shared/parity/referformer_r50/checkpoint.pth \
        --text-encoder ../shared/parity/referformer_r50/text_encoder --before /tmp/before
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


def run_cli(clip: Path, out: Path, threads: int | None, model_args: list[str],
            repo: Path = ROOT) -> float:
    """Wall seconds of ``rvos predict`` from the checkout ``repo`` (its own code, not an
    installed rvos)."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(repo)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rvos", "predict", str(clip), "--text", TEXT,
                    "--out", str(out), "--quiet", "--offline", *model_args], check=True,
                   cwd=repo, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def model_only(clips: tuple[Path, Path], repeats: int, checkpoint: Path | None,
               text_encoder: Path | None) -> dict:
    """Seconds of `Predictor.predict` (no writing) on both clips, in this process."""
    from rvos.predictor.predictor import Predictor
    from rvos.zoo.loader import load_model_from

    model, name = load_model_from(checkpoint=checkpoint, text_encoder=text_encoder)
    predictor = Predictor(model, model_name=name)
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
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a model file or folder (default: the built-in model)")
    parser.add_argument("--text-encoder", type=Path, default=None,
                        help="with an official checkpoint: its RoBERTa folder")
    parser.add_argument("--before", type=Path, default=None, metavar="DIR",
                        help="another rvos checkout whose command also runs, alternating")
    args = parser.parse_args(argv)
    model_args = []
    if args.checkpoint:
        model_args += ["--checkpoint", str(args.checkpoint.resolve())]
    if args.text_encoder:
        model_args += ["--text-encoder", str(args.text_encoder.resolve())]
    repos = {"this": ROOT} | ({"before": args.before.resolve()} if args.before else {})
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    short_n, long_n = args.frames
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips = make_clips(folder, short_n, long_n)
        for repo in repos.values():
            run_cli(clips[0], folder / "warm", args.threads, model_args, repo)  # page cache
        cli = {key: {"short": [], "long": []} for key in repos}
        for r in range(args.repeats):
            for key, repo in repos.items():
                for name, clip in zip(("short", "long"), clips, strict=True):
                    cli[key][name].append(run_cli(clip, folder / f"{key}{name}{r}",
                                                  args.threads, model_args, repo))
        model = model_only(clips, args.repeats, args.checkpoint, args.text_encoder)

    def marginal(seconds: dict[str, list[float]]) -> float:
        return (long_n - short_n) / (statistics.median(seconds["long"])
                                     - statistics.median(seconds["short"]))

    from rvos.modeling.cpu_features import cpu_features

    short_frame_s = statistics.median(model["short"]) / short_n
    report = {
        "clip": f"{CLIP.name} looped, 640x360", "frames": [short_n, long_n],
        "model": str(args.checkpoint) if args.checkpoint else "builtin",
        "cpu": cpu_features().as_dict(),
        "threads": args.threads, "cli_seconds": cli["this"], "model_seconds": model,
        "cli_marginal_fps": marginal(cli["this"]), "model_marginal_fps": marginal(model),
        "cli_short_run_s": statistics.median(cli["this"]["short"]),
        "model_short_clip_s_per_frame": short_frame_s,
    }
    if args.before:
        report["before"] = {"checkout": str(args.before), "cli_seconds": cli["before"],
                            "cli_marginal_fps": marginal(cli["before"])}
    print(cpu_features().header())
    print(f"rvos predict, {report['model']}, 640×360 ({CLIP.name} looped), "
          f"{args.threads or 'default'} threads, median of {args.repeats}")
    for key in repos:
        seconds, fps = cli[key], marginal(cli[key])
        print(f"  whole command ({key}): {short_n} frames "
              f"{statistics.median(seconds['short']):.2f} s, {long_n} frames "
              f"{statistics.median(seconds['long']):.2f} s -> marginal {fps:.2f} frames/s, "
              f"{1 / fps:.3f} s/frame ({1 / fps / short_frame_s:.2f}x a frame of the "
              f"{short_n}-frame model pass; writing included, start-up excluded)")
    print(f"  model only:     {short_n} frames {statistics.median(model['short']):.2f} s "
          f"({short_frame_s:.3f} s/frame), {long_n} frames "
          f"{statistics.median(model['long']):.2f} s -> marginal "
          f"{report['model_marginal_fps']:.2f} frames/s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
