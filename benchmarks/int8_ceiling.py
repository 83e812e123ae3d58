"""How fast can int8 make the whole pass? The products' share of fp32's, and the bound it sets.

Profiles one fp32 and one int8 forward pass of the released R50 architecture (random weights,
as `bench_referformer.py` builds it; 360×640, T = 5) with `torch.profiler` and splits each
pass's self CPU time into three parts:

* the products int8 replaces (fp32: ``aten::addmm`` / ``aten::mm`` / ``aten::mkldnn_convolution``
  less those int8 keeps; int8: oneDNN's ``onednn::qlinear_pointwise`` / ``qconv2d_pointwise``);
* the products int8 keeps in fp32 (its own run's ``addmm`` / ``mm`` / ``mkldnn_convolution``:
  sampling offsets, attention weights, output and input projections, text, heads);
* everything else (attention, norms, sums, copies, sampling, the int8 conversions).

It prints the int8 products' speed-up over the fp32 products they replace, the whole pass's
speed-up, the bound on the whole pass if *every* product (the kept ones too) ran at that
speed-up and everything else cost what it does in fp32, and the products' speed-up that a 2×
whole pass would need. Profiling adds a little to each operation (most to the small ones), so
read the shares, not the seconds.

    python benchmarks/int8_ceiling.py --threads 2
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/int8_ceiling.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

FP32_PRODUCTS = ("aten::addmm", "aten::mm", "aten::mkldnn_convolution")
INT8_PRODUCTS = ("onednn::qlinear_pointwise", "onednn::qconv2d_pointwise")


def profile_pass(precision: str, frames: int, repeats: int) -> list[dict[str, float]]:
    """Self CPU seconds per operator name of ``repeats`` profiled passes (after two warm-ups)."""
    import torch
    from bench_referformer import CAPTION, build_model
    from torch.profiler import ProfilerActivity, profile

    model = build_model("cpu", precision)
    clip = torch.randn(frames, 3, 360, 640, generator=torch.Generator().manual_seed(0))
    runs = []
    with torch.inference_mode():
        model(clip, [CAPTION])
        model(clip, [CAPTION])
        for _ in range(repeats):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                model(clip, [CAPTION])
            runs.append({e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()})
    return runs


def split(ops: dict[str, float]) -> dict[str, float]:
    """{"int8 products", "fp32 products", "rest", "total"} seconds of one pass."""
    int8 = sum(ops.get(k, 0.0) for k in INT8_PRODUCTS)
    fp32 = sum(ops.get(k, 0.0) for k in FP32_PRODUCTS)
    total = sum(ops.values())
    return {"int8 products": int8, "fp32 products": fp32, "rest": total - int8 - fp32,
            "total": total}


def bound(fp32: dict[str, float], int8: dict[str, float]) -> dict[str, float]:
    replaced_fp32 = fp32["fp32 products"] - int8["fp32 products"]
    product_speedup = replaced_fp32 / int8["int8 products"]
    products = fp32["fp32 products"]
    best = fp32["total"] / (products / product_speedup + fp32["rest"])
    half = fp32["total"] / 2 - fp32["rest"]
    return {
        "products_share_of_fp32": products / fp32["total"],
        "replaced_share_of_fp32": replaced_fp32 / fp32["total"],
        "int8_product_speedup": product_speedup,
        "rest_fp32_s": fp32["rest"], "rest_int8_s": int8["rest"],
        "whole_pass_speedup": fp32["total"] / int8["total"],
        "bound_all_products_at_that_speedup": best,
        "product_speedup_needed_for_2x": products / half if half > 0 else float("inf"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="profiled passes per mode")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    from rvos.modeling.cpu_features import cpu_features

    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = cpu_features()
    print(cpu.header())
    parts = {p: [split(ops) for ops in profile_pass(p, args.frames, args.repeats)]
             for p in ("fp32", "int8")}
    median = {p: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
              for p, runs in parts.items()}
    result = bound(median["fp32"], median["int8"])
    print(f"R50 at 360×640, T = {args.frames}, {torch.get_num_threads()} threads; self CPU "
          f"seconds per pass, median of {args.repeats} profiled passes")
    for p, m in median.items():
        print(f"  {p:5s} int8 products {m['int8 products']:.2f}  fp32 products "
              f"{m['fp32 products']:.2f}  rest {m['rest']:.2f}  total {m['total']:.2f}")
    print(f"  products are {result['products_share_of_fp32']:.0%} of the fp32 pass; int8 "
          f"replaces {result['replaced_share_of_fp32']:.0%} of it, "
          f"{result['int8_product_speedup']:.2f}× faster")
    print(f"  whole pass: {result['whole_pass_speedup']:.2f}× fp32; with every product at "
          f"{result['int8_product_speedup']:.2f}× and the rest as in fp32: at most "
          f"{result['bound_all_products_at_that_speedup']:.2f}×")
    print(f"  a 2× whole pass needs every product "
          f"{result['product_speedup_needed_for_2x']:.2f}× faster than fp32")
    if args.json:
        report = {"cpu": cpu.as_dict(), "frames": args.frames, "threads": torch.get_num_threads(),
                  "passes": parts, "median": median, **result}
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
