"""Per-clip time and peak memory of ReferFormer with the released ResNet-50 architecture.

The network is the released one (ResNet-50, hidden 256, 4+4 layers, roberta-base text encoder)
with random weights and a small byte-level BPE tokenizer trained on the spot: the cost of a
forward pass does not depend on the values. Each configuration runs in a fresh process, so that
its peak memory is its own.

    python benchmarks/bench_referformer.py                   # T = 5 and 36 at 360×640
    python benchmarks/bench_referformer.py --frames 5 --threads 1
    python benchmarks/bench_referformer.py --device cuda     # fp32, fp16 and bf16

Time: wall-clock of ``model(frames, [caption])`` under ``torch.inference_mode`` (text encoding
included, preprocessing excluded), after one small warm-up pass; the best of ``--repeats``. On a
CPU the process's CPU time is shown too: on a shared machine it is the steadier figure.
Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the timed passes; on a CPU the
process's peak resident set during the timed passes (Linux: ``VmHWM`` after resetting it via
``/proc/self/clear_refs``; elsewhere psutil's ``peak_wset`` or ``ru_maxrss``, which then include
loading), next to the resident set of the loaded model before them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CAPTION = "a man in a black shirt riding a bicycle"
CORPUS = [CAPTION, "the red ball on the left", "a dog running on the grass",
          "the person walking to the right", "a white car parked next to the tree"] * 20
MIB = 1 << 20


# ------------------------------------------------------------------------------ memory
def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ≥ 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def current_rss_mib() -> float:
    kib = _proc_status_kib("VmRSS")
    if kib is not None:
        return kib / 1024
    try:
        import psutil

        return psutil.Process().memory_info().rss / MIB
    except ImportError:
        return float("nan")


def peak_rss_mib() -> float:
    """Peak resident set of this process. tracemalloc and ``ru_maxrss`` alone miss or lump
    torch's allocations, hence the kernel's own counter where there is one."""
    kib = _proc_status_kib("VmHWM")
    if kib is not None:
        return kib / 1024
    try:
        import psutil

        info = psutil.Process().memory_info()
        if hasattr(info, "peak_wset"):  # Windows
            return info.peak_wset / MIB
    except ImportError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


# ------------------------------------------------------------------------------ one run
def build_model(device: str, dtype_name: str):
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    from rvos.modeling import ReferFormerConfig, build_referformer

    with tempfile.TemporaryDirectory() as folder:
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(CORPUS, vocab_size=300, min_frequency=2, show_progress=False,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        bpe.save_model(folder)
        tokenizer = RobertaTokenizerFast.from_pretrained(folder)
    torch.manual_seed(0)
    model = build_referformer(ReferFormerConfig(backbone="resnet50"), tokenizer).eval()
    return model.to(device=device, dtype=getattr(torch, dtype_name))


def run_one(frames: int, height: int, width: int, device: str, dtype_name: str,
            repeats: int) -> dict:
    import torch

    model = build_model(device, dtype_name)
    dtype = getattr(torch, dtype_name)
    clip = torch.randn(frames, 3, height, width, generator=torch.Generator().manual_seed(0))
    clip = clip.to(device=device, dtype=dtype)
    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    with torch.inference_mode():
        model(clip[:1, :, :64, :64], [CAPTION])  # warm-up: kernels, allocator, lazy imports
        sync()
        resident = current_rss_mib()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        peak_reset = reset_peak_rss()
        seconds, cpu_seconds = [], []
        for _ in range(repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            out = model(clip, [CAPTION])
            sync()
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
    assert out["pred_masks"].shape[:3] == (1, frames, model.config.num_queries)
    result = {
        "device": device if not cuda else torch.cuda.get_device_name(),
        "dtype": dtype_name, "frames": frames, "size": [height, width],
        "threads": torch.get_num_threads(), "seconds": seconds, "cpu_seconds": cpu_seconds,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "resident_mib": resident, "peak_rss_mib": peak_rss_mib(),
        "peak_rss_is_forward_only": peak_reset,
    }
    if cuda:
        result["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / MIB
        result["cuda_peak_reserved_mib"] = torch.cuda.max_memory_reserved() / MIB
    return result


# ------------------------------------------------------------------------------ driver
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[5, 36])
    parser.add_argument("--size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--dtypes", nargs="+", default=None,
                        help="default: float32 on CPU; float32 float16 bfloat16 on CUDA")
    parser.add_argument("--repeats", type=int, default=None, help="default: 1 on CPU, 3 on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # one configuration, in its own process
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        result = run_one(args.frames[0], *args.size, args.device, args.dtypes[0], args.repeats)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = device.startswith("cuda")
    dtypes = args.dtypes or (["float32", "float16", "bfloat16"] if cuda else ["float32"])
    repeats = args.repeats or (3 if cuda else 1)

    print(f"ReferFormer-R50 (released architecture, random weights), {args.size[0]}×"
          f"{args.size[1]}, one caption, {device}")
    header = (f"{'dtype':>9} {'T':>3} {'s/clip':>8} {'ms/frame':>9} {'CPU s':>7} "
              f"{'peak MiB':>9} {'model MiB':>9}  note")
    print(header)
    results = []
    for dtype in dtypes:
        for frames in args.frames:
            cmd = [sys.executable, __file__, "--child", "--frames", str(frames), "--size",
                   *map(str, args.size), "--device", device, "--dtypes", dtype,
                   "--repeats", str(repeats)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                print(f"{dtype:>9} {frames:>3}  failed (exit {proc.returncode}): {tail}")
                continue
            r = json.loads(lines[-1][len("RESULT "):])
            results.append(r)
            best = min(r["seconds"])
            cpu_s = min(r["cpu_seconds"])
            if cuda:
                peak, model_mib = r["cuda_peak_allocated_mib"], float("nan")
                note = f"CUDA allocated; {r['device']}"
            else:
                peak, model_mib = r["peak_rss_mib"], r["resident_mib"]
                note = (f"RSS, {r['threads']} thread(s)" if r["peak_rss_is_forward_only"]
                        else "RSS incl. loading")
            print(f"{dtype:>9} {frames:>3} {best:8.2f} {1000 * best / frames:9.0f} {cpu_s:7.1f} "
                  f"{peak:9.0f} {model_mib:9.0f}  {note}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if len(results) == len(dtypes) * len(args.frames) else 1


if __name__ == "__main__":
    raise SystemExit(main())
