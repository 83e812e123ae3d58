"""What a frame of `rvos predict`'s default window costs, against a 5-frame forward pass.

`rvos predict` runs the model on windows of `DEFAULT_WINDOW` frames (36), encoding the window
once (`ReferFormer.encode_video`) and decoding each expression (`ReferFormer.decode`). Issue 24
measured that a frame of such a window cost 1.4× a frame of a 5-frame pass on a 2-core AVX2
EPYC: every stage ran on the whole window at once, its activations gigabytes that no cache
holds. `ReferFormer.chunk_frames` now runs the per-frame stages a few frames at a time.

In one process, on the released R50 architecture (random weights: the cost does not depend on
the values; `bench_referformer.build_model`) at 360×640, one caption, each repeat times, back to
back:

* ``short``: `encode_video` + `decode` on the first 5 frames, the whole clip at once
  (``chunk_frames=None``: the code before chunking);
* ``window``: the same on the whole window, for every ``--chunk`` setting (``none`` = before).

and reports, as medians over repeats, ms per frame of each pass, the window's *marginal* cost
per frame ``(window - short) / (W - 5)`` (what every further frame costs), and each ratio to the
short pass's per-frame cost in the same repeat (the figure that is robust to a shared, noisy
machine). Peak RSS is the resident-set high-water mark of each pass (Linux; reset before it).

    python benchmarks/bench_window.py --threads 2                 # before (none) and after (4)
    python benchmarks/bench_window.py --chunk none 2 4 8 --repeats 5
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/bench_window.py  # ~AVX2
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

SHORT = 5


def _chunk(value: str) -> int | None:
    return None if value.lower() == "none" else int(value)


def _label(chunk: int | None) -> str:
    return "whole window (before)" if chunk is None else f"chunks of {chunk} (after)"


def machine_name(cpu) -> str:
    """A file-name slug for this CPU, with its ISA caps (e.g. ``amd-epyc``,
    ``intel-xeon-platinum-8480_avx2-cap``)."""
    words = re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*$", " ", cpu.model.lower())
    slug = "-".join(re.findall(r"[a-z0-9]+", words)[:5]) or "cpu"
    cap = cpu.onednn_cap or cpu.aten_cap
    return f"{slug}_{cap}-cap" if cap else slug


def run(window: int, chunks: list[int | None], repeats: int, size: tuple[int, int]) -> dict:
    import torch
    from bench_referformer import CAPTION, build_model, peak_rss_mib, reset_peak_rss

    model = build_model("cpu")
    clip = torch.randn(window, 3, *size, generator=torch.Generator().manual_seed(0))

    def timed(frames, chunk: int | None) -> tuple[float, float, float]:
        model.chunk_frames = chunk
        reset_peak_rss()
        start, cpu_start = time.perf_counter(), time.process_time()
        model.decode(model.encode_video(frames), [CAPTION])
        return (time.perf_counter() - start, time.process_time() - cpu_start, peak_rss_mib())

    result = {"window": window, "short": SHORT, "size": list(size),
              "threads": torch.get_num_threads(), "chunks": [str(c) for c in chunks],
              "short_s": [], "short_cpu_s": [], "short_peak_mib": [],
              "window_s": {str(c): [] for c in chunks},
              "window_cpu_s": {str(c): [] for c in chunks},
              "window_peak_mib": {str(c): [] for c in chunks}}
    with torch.inference_mode():
        # Warm-up (oneDNN primitives, allocator, lazy imports): the short clip, and the chunks'
        # sizes (a window pass each would cost minutes on a small CPU).
        timed(clip[:SHORT], None)
        for size in sorted({c for c in chunks if c is not None and c != SHORT}):
            timed(clip[:size], None)
        for _ in range(repeats):
            seconds, cpu, peak = timed(clip[:SHORT], None)
            result["short_s"].append(seconds)
            result["short_cpu_s"].append(cpu)
            result["short_peak_mib"].append(peak)
            for chunk in chunks:
                seconds, cpu, peak = timed(clip, chunk)
                result["window_s"][str(chunk)].append(seconds)
                result["window_cpu_s"][str(chunk)].append(cpu)
                result["window_peak_mib"][str(chunk)].append(peak)
            print(f"  repeat: short {1000 * result['short_s'][-1] / SHORT:.0f} ms/frame; "
                  + "; ".join(f"{c}: {1000 * result['window_s'][str(c)][-1] / window:.0f}"
                              for c in chunks), flush=True)
    return result


def summarise(r: dict) -> dict:
    w, s = r["window"], r["short"]
    short = r["short_s"]
    rows = {}
    for chunk, times in r["window_s"].items():
        rows[chunk] = {
            "ms_per_frame": 1000 * statistics.median(times) / w,
            "marginal_ms_per_frame": 1000 * statistics.median(
                (t - t5) / (w - s) for t, t5 in zip(times, short, strict=True)),
            "per_frame_ratio_to_short": statistics.median(
                (t / w) / (t5 / s) for t, t5 in zip(times, short, strict=True)),
            "marginal_ratio_to_short": statistics.median(
                ((t - t5) / (w - s)) / (t5 / s) for t, t5 in zip(times, short, strict=True)),
            # CPU time of this process (both threads): less sensitive than the wall clock to
            # other jobs taking the cores, more to threads spinning while they wait.
            "cpu_per_frame_ratio_to_short": statistics.median(
                (t / w) / (t5 / s) for t, t5 in zip(r["window_cpu_s"][chunk], r["short_cpu_s"],
                                                   strict=True)),
            "peak_rss_mib": statistics.median(r["window_peak_mib"][chunk]),
        }
    return {"short_ms_per_frame": 1000 * statistics.median(short) / s,
            "short_peak_rss_mib": statistics.median(r["short_peak_mib"]), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    from rvos.predictor.windows import DEFAULT_WINDOW

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--chunk", type=_chunk, nargs="+", default=None,
                        help="chunk_frames settings; 'none' = the whole window at once "
                             "(default: none and rvos's default)")
    parser.add_argument("--size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None,
                        help="default: benchmarks/results/cpu_window_<machine>.json")
    args = parser.parse_args(argv)

    import torch

    from rvos.modeling.cpu_features import cpu_features
    from rvos.modeling.referformer import DEFAULT_CHUNK_FRAMES

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.window <= SHORT:
        parser.error(f"--window must exceed {SHORT}")
    chunks = args.chunk or [None, DEFAULT_CHUNK_FRAMES]
    cpu = cpu_features()
    print(cpu.header())
    if cpu.onednn_cap or cpu.aten_cap:
        print("(ISA capped by the environment: an approximation of a CPU without the "
              "capped-off extensions, not such a CPU)")
    print(f"ReferFormer-R50 (released architecture, random weights), {args.size[0]}×"
          f"{args.size[1]}, fp32, one caption, {torch.get_num_threads()} thread(s); "
          f"encode_video + decode; median of {args.repeats} repeats", flush=True)
    r = run(args.window, chunks, args.repeats, tuple(args.size))
    r.update(summarise(r))
    r["cpu"] = cpu.as_dict()
    print(f"\n{SHORT}-frame pass (whole clip): {r['short_ms_per_frame']:.0f} ms/frame, "
          f"peak RSS {r['short_peak_rss_mib']:.0f} MiB")
    print(f"{args.window}-frame window        ms/frame  ×{SHORT}-frame  marginal ms/frame  "
          f"×{SHORT}-frame  CPU time ×{SHORT}-frame  peak RSS MiB")
    for chunk in chunks:
        row = r["rows"][str(chunk)]
        print(f"  {_label(chunk):<24} {row['ms_per_frame']:8.0f} "
              f"{row['per_frame_ratio_to_short']:9.2f} {row['marginal_ms_per_frame']:18.0f} "
              f"{row['marginal_ratio_to_short']:9.2f} "
              f"{row['cpu_per_frame_ratio_to_short']:18.2f} {row['peak_rss_mib']:13.0f}")
    out = args.json or ROOT / "benchmarks" / "results" / f"cpu_window_{machine_name(cpu)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
