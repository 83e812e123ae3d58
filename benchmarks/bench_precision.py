"""How far the faster precisions (`rvos.modeling.precision`) move the answers from fp32, and how
fast.

Two measurements, each mode against fp32 in the same run:

1. The shared parity clip (``../shared/parity/referformer_r50``: the released ResNet-50
   architecture, the official checkpoint format, a real clip): the largest mask-logit
   difference over every query and frame, the chosen query, and the IoU of the final masks
   (the original inference procedure) against fp32's; and the time of the forward pass.
2. The built-in model on the synthetic ``test`` split (100 clips, written on the fly with
   ``rvos synth`` unless ``--split`` points at one): J&F per category, and its change.

    python benchmarks/bench_precision.py                       # bf16 and int8 on a CPU
    python benchmarks/bench_precision.py --precision bf16 --skip-builtin
    python benchmarks/bench_precision.py --device cuda --precision bf16 fp16
    python benchmarks/bench_precision.py --precision int8 int8-dynamic   # new vs old int8

``int8`` is calibrated the way a user's model is (the example clips, stored under the weights'
digest; the built-in model's calibration ships beside its weights); ``--calibrate-on parity``
calibrates the parity model on the parity clip itself instead (the clip it is then judged on).

The released weights themselves cannot be fetched here, so these are the figures a faster mode
is judged by; it is not the default.
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


def parity_dir() -> Path:
    env = os.environ.get("RVOS_PARITY_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "parity"


# ------------------------------------------------------------------------------ parity clip
def parity_clip(precisions: list[str], device: str, repeats: int,
                calibrate_on: str = "examples") -> dict:
    import torch

    from rvos.modeling.precision import prepare_model
    from rvos.modeling.processing import run_original
    from rvos.zoo.checkpoint import load_official

    case = parity_dir() / "referformer_r50"
    if not (case / "checkpoint.pth").is_file():
        return {"skipped": f"parity fixture not found at {case}; set RVOS_PARITY_DIR"}
    inputs = torch.load(case / "inputs.pt", weights_only=True)
    frames = inputs["frames_uint8"].numpy()
    caption = inputs["caption"]

    def load(precision: str):
        model = load_official(case / "checkpoint.pth", text_encoder=case / "text_encoder",
                              device=device)
        if precision == "int8" and calibrate_on == "parity":
            from rvos.modeling.processing import preprocess
            from rvos.modeling.quantize import quantize_static

            clip = preprocess(frames, 360).to(device)
            model.int8_calibration = quantize_static(model.eval(), [(clip, caption)],
                                                     store=False)
            model.precision = "int8"
            return model
        return prepare_model(model.eval(), precision)

    models = {"fp32": load("fp32")}
    for precision in precisions:
        models[precision] = load(precision)
    runs = {name: run_original(model, frames, caption) for name, model in models.items()}
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):  # alternating, so that the machine's load hits every mode alike
        for name, model in models.items():
            start = time.perf_counter()
            run_original(model, frames, caption)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - start)
    ref = runs["fp32"]
    fp32_s = statistics.median(seconds["fp32"])
    report = {"frames": int(frames.shape[0]), "input_size": list(ref["pred_masks"].shape[-2:]),
              "fp32_seconds": fp32_s, "calibrate_on": calibrate_on, "modes": {}}
    for precision in precisions:
        got = runs[precision]
        a, b = ref["masks"].bool(), got["masks"].bool()
        report["modes"][precision] = {
            "mask_logit_max_abs_diff": float((got["pred_masks"].float()
                                              - ref["pred_masks"].float()).abs().max()),
            "mask_logit_max_abs": float(ref["pred_masks"].abs().max()),
            "score_logit_max_abs_diff": float((got["pred_logits"].float()
                                               - ref["pred_logits"].float()).abs().max()),
            "same_query": int(got["best_query"]) == int(ref["best_query"]),
            "final_mask_iou": float((a & b).sum() / max(int((a | b).sum()), 1)),
            "final_mask_pixels_equal": float((a == b).float().mean()),
            "seconds": statistics.median(seconds[precision]),
            "speedup": fp32_s / statistics.median(seconds[precision]),
            "int8_calibration": getattr(models[precision], "int8_calibration", None),
        }
    return report


# ------------------------------------------------------------------------------ built-in
def builtin_split(precisions: list[str], device: str, split: Path | None,
                  count: int = 100) -> dict:
    from rvos.data.synth_split import read_synth_split
    from rvos.eval.evaluate import evaluate_videos, input_short_side
    from rvos.modeling.precision import prepare_model
    from rvos.zoo.loader import load_model

    if split is None:
        split = Path(tempfile.mkdtemp(prefix="rvos-test-split-"))
        subprocess.run([sys.executable, "-m", "rvos", "synth", "--split", "test", "--count",
                        str(count), "--out", str(split), "--overwrite"], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
    videos = read_synth_split(split)
    report = {"split": str(split), "modes": {}}
    for precision in ["fp32", *precisions]:
        model = prepare_model(load_model("builtin", device=device), precision)
        start = time.perf_counter()
        summary = evaluate_videos(model, videos, input_short_side(model)).summary()
        report["modes"][precision] = {"seconds": time.perf_counter() - start,
                                      "scores": summary,
                                      "int8_calibration": getattr(model, "int8_calibration",
                                                                  None)}
    return report


# ------------------------------------------------------------------------------ driver
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", nargs="+", default=None,
                        help="modes to compare with fp32 (default: bf16 int8 on a CPU, "
                             "bf16 fp16 on CUDA)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes on the parity clip")
    parser.add_argument("--split", type=Path, default=None,
                        help="a synthetic test split folder (default: written on the fly)")
    parser.add_argument("--count", type=int, default=100,
                        help="clips of the synthetic split written on the fly")
    parser.add_argument("--calibrate-on", choices=("examples", "parity"), default="examples",
                        help="int8 on the parity clip: calibrated on the example clips (as a "
                             "user's model) or on the parity clip itself")
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument("--skip-builtin", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    precisions = args.precision or (["bf16", "fp16"] if cuda else ["bf16", "int8"])
    from rvos.modeling.cpu_features import cpu_features  # after argument parsing, as the others

    cpu = cpu_features()  # the figures hold for this CPU (and its ISA caps) only
    results: dict = {"device": args.device, "cpu": cpu.as_dict()}
    print(cpu.header())

    if not args.skip_parity:
        r = results["parity"] = parity_clip(precisions, args.device, args.repeats,
                                            args.calibrate_on)
        print("Parity clip (released R50 architecture, official checkpoint format):")
        if "skipped" in r:
            print(f"  skipped: {r['skipped']}")
        else:
            print(f"  {r['frames']} frames at {r['input_size'][0] * 4}×{r['input_size'][1] * 4}"
                  f", fp32 {r['fp32_seconds']:.2f} s per clip (median of {args.repeats})")
            print(f"  int8 calibrated on: {args.calibrate_on}")
            print(f"  {'mode':<12} {'mask logit Δ':>13} {'score logit Δ':>14} {'query':>6} "
                  f"{'mask IoU':>9} {'pixels =':>9} {'speed-up':>9}")
            for name, m in r["modes"].items():
                print(f"  {name:<12} {m['mask_logit_max_abs_diff']:>13.3g} "
                      f"{m['score_logit_max_abs_diff']:>14.3g} "
                      f"{'same' if m['same_query'] else 'OTHER':>6} "
                      f"{100 * m['final_mask_iou']:>8.2f}% "
                      f"{100 * m['final_mask_pixels_equal']:>8.3f}% {m['speedup']:>8.2f}×")
            print(f"  (mask logits reach {r['modes'][precisions[0]]['mask_logit_max_abs']:.0f} "
                  "in magnitude)")

    if not args.skip_builtin:
        r = results["builtin"] = builtin_split(precisions, args.device, args.split, args.count)
        print("Built-in model, synthetic test split (J&F %):")
        categories = [c for c in r["modes"]["fp32"]["scores"] if c != "overall"] + ["overall"]
        print(f"  {'mode':<12} " + " ".join(f"{c:>11}" for c in categories)
              + f" {'time s':>7}")
        fp32 = r["modes"]["fp32"]["scores"]
        for name, m in r["modes"].items():
            cells = []
            for c in categories:
                value = m["scores"][c]["J&F"]
                delta = "" if name == "fp32" else f" {value - fp32[c]['J&F']:+.1f}"
                cells.append(f"{value:.1f}{delta}")
            print(f"  {name:<12} " + " ".join(f"{c:>11}" for c in cells)
                  + f" {m['seconds']:>7.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
