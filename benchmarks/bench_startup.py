"""Start-up of `rvos predict` with the built-in model: how long until the first frame is done.

Each run is a fresh Python process (imports are what is measured, so nothing may be cached in
the process), timed from the moment it is launched:

* **import**: interpreter start + ``import rvos.predictor`` (torch, numpy, video I/O);
* **model load**: ``rvos.load_model("builtin")`` with the imports it triggers
  (the network, the tokenizer — and, before rvos had its own RoBERTa, ``transformers``);
* **first window**: `Predictor.iter_predict` up to its first `Progress`, i.e. the clip decoded,
  preprocessed and segmented (with the CLI's default window of 36 frames, a clip of 16 frames is
  one window) — the end of this stage is the time to the first processed frame;
* **CLI end to end**: ``python -m rvos predict CLIP --text ... --out DIR`` as a user runs it,
  writing overlay, masks and result.json.

The figures are medians over ``--repeats`` runs. ``--compare PATH`` times another checkout (an
export of an older commit, say) in the same run, alternating with this one run by run, so that
load on a shared machine falls on both alike::

    python benchmarks/bench_startup.py
    git archive main | tar -x -C /tmp/rvos-main
    python benchmarks/bench_startup.py --compare /tmp/rvos-main --repeats 7 --json out.json
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
VIDEO = ROOT / "examples" / "shapes_00001.mp4"
TEXT = "the square that is not moving"
STAGES = ("import", "model load", "first window")

# Runs in the child, with the checkout under test first on sys.path. Prints one JSON line:
# wall-clock stamps (time.time(), comparable with the parent's launch stamp) after each stage
# and whether transformers had been imported by then.
CHILD = r"""
import json, sys, time
stamps = {"python": time.time()}
seen = {}
import rvos.predictor  # old flat checkouts and the package layout alike
stamps["import"] = time.time(); seen["import"] = "transformers" in sys.modules
from rvos import load_model
model = load_model("builtin", device="cpu")
stamps["model load"] = time.time(); seen["model load"] = "transformers" in sys.modules
predictor = rvos.predictor.Predictor(model, device="cpu")
progress = next(iter(predictor.iter_predict(sys.argv[1], [sys.argv[2]])))
stamps["first window"] = time.time(); seen["first window"] = "transformers" in sys.modules
print(json.dumps({"stamps": stamps, "transformers": seen, "frames": progress.frames_done,
                  "rvos": rvos.predictor.__file__}))
"""


def _env(checkout: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(checkout), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    return env


def staged_run(checkout: Path, video: Path, text: str) -> dict:
    """One fresh process: seconds from launch to the end of each stage."""
    with tempfile.TemporaryDirectory() as cwd:  # so that only PYTHONPATH decides which rvos
        launched = time.time()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(video), text],
            cwd=cwd,
            env=_env(checkout),
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{checkout}: the timed child failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(out["rvos"]).resolve().is_relative_to(checkout.resolve()):
        raise RuntimeError(f"the child imported rvos from {out['rvos']}, not from {checkout}")
    stamps = out["stamps"]
    ends = {stage: stamps[stage] - launched for stage in STAGES}
    return {
        "ends": ends,
        "python": stamps["python"] - launched,
        "transformers": out["transformers"],
        "frames": out["frames"],
    }


def cli_run(checkout: Path, video: Path, text: str) -> float:
    """Wall seconds of one ``python -m rvos predict`` (outputs written to a temporary dir)."""
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "rvos",
                "predict",
                str(video),
                "--text",
                text,
                "--out",
                str(Path(cwd) / "out"),
                "--quiet",
            ],
            cwd=cwd,
            env=_env(checkout),
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{checkout}: rvos predict failed:\n{done.stderr[-3000:]}")
    return wall


def summarise(runs: list[dict], cli: list[float]) -> dict:
    """Medians: of each stage's own duration (per-run differences; "import" includes the
    interpreter start, also shown alone) and of the time to the first processed frame."""
    durations = {"python start": statistics.median(r["python"] for r in runs)}
    for i, stage in enumerate(STAGES):
        durations[stage] = statistics.median(
            r["ends"][stage] - (r["ends"][STAGES[i - 1]] if i else 0.0) for r in runs
        )
    return {
        "runs": len(runs),
        "first_frame_s": statistics.median(r["ends"]["first window"] for r in runs),
        "stage_s": durations,
        "first_frame_all_s": sorted(r["ends"]["first window"] for r in runs),
        "cli_end_to_end_s": statistics.median(cli) if cli else None,
        "frames_in_first_window": runs[0]["frames"],
        "transformers_imported": {s: any(r["transformers"][s] for r in runs) for s in STAGES},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        metavar="CHECKOUT",
        help="another rvos checkout to time alongside",
    )
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI runs")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from rvos.modeling.cpu_features import cpu_features  # the figures hold for this CPU

    print(cpu_features().header())

    checkouts = [ROOT, *args.compare]
    runs: dict[Path, list[dict]] = {c: [] for c in checkouts}
    cli: dict[Path, list[float]] = {c: [] for c in checkouts}
    for i in range(args.repeats):
        order = checkouts if i % 2 == 0 else checkouts[::-1]
        for checkout in order:
            runs[checkout].append(staged_run(checkout, args.video, args.text))
            if not args.no_cli:
                cli[checkout].append(cli_run(checkout, args.video, args.text))
        print(
            f"repeat {i + 1}/{args.repeats}: "
            + ", ".join(
                f"{c.name or c}: {runs[c][-1]['ends']['first window']:.2f} s" for c in checkouts
            ),
            file=sys.stderr,
        )

    results = {str(c): summarise(runs[c], cli[c]) for c in checkouts}
    header = (
        f"{'checkout':<28}"
        + "".join(f"{s:>14}" for s in ("python start", *STAGES))
        + (f"{'first frame':>13}{'CLI total':>11}  transformers")
    )
    print(
        f"rvos predict start-up, built-in model, {args.video.name} "
        f"({results[str(ROOT)]['frames_in_first_window']} frames), CPU, "
        f"median of {args.repeats} fresh processes (seconds)"
    )
    print(header)
    for c in checkouts:
        r = results[str(c)]
        cells = "".join(f"{r['stage_s'][s]:>14.2f}" for s in ("python start", *STAGES))
        cli_text = "-" if r["cli_end_to_end_s"] is None else f"{r['cli_end_to_end_s']:.2f}"
        imported = "imported" if any(r["transformers_imported"].values()) else "not imported"
        print(f"{str(c)[-28:]:<28}{cells}{r['first_frame_s']:>13.2f}{cli_text:>11}  {imported}")
    if args.compare:
        base = results[str(ROOT)]["first_frame_s"]
        for c in args.compare:
            print(
                f"first frame: {results[str(c)]['first_frame_s'] / base:.2f}× faster here "
                f"than in {c}"
            )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"video": str(args.video), "text": args.text,
                        "cpu": cpu_features().as_dict(), "results": results}, indent=2)
            + "\n"
        )


if __name__ == "__main__":
    main()
