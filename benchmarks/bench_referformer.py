"""ReferFormer-R50 per frame, per stage, as a multiple of a plain ResNet-50 trunk run alongside.

The network is the released one (ResNet-50, hidden 256, 4+4 layers, roberta-base text encoder)
with random weights and a small byte-level BPE tokenizer trained on the spot: the cost of a
forward pass does not depend on the values. The machines this runs on are shared and noisy, so
every figure that matters is a *ratio*: each repeat times the yardstick — a plain fp32 NCHW
ResNet-50 trunk (`PlainResNet50` below: `nn.BatchNorm2d`, no fusion, nothing of rvos) on the same
frames — and then the model, back to back, and the report gives the median over repeats of
model time per frame / trunk time per frame.

    python benchmarks/bench_referformer.py                        # T = 36 (rvos predict's window)
    python benchmarks/bench_referformer.py --frames 5 36 --precision fp32 bf16 int8
    python benchmarks/bench_referformer.py --device cuda --json benchmarks/results/gpu.json
    python benchmarks/bench_referformer.py --frames 5 --precision fp32 int8 int8-dynamic \
        --threads 2 --rounds 3        # int8 (new, static) vs int8 (old, dynamic), interleaved

``int8-dynamic`` is the earlier int8 (dynamically quantised linear layers only), kept for this
comparison; ``int8`` is static int8 across the network (`rvos.modeling.quantize`), calibrated on
the example clips the first time (stored in the rvos cache under the weights' digest; the
child reports whether it calibrated or read the stored ranges).

Reference points (issue 14, this 2-core machine): the original implementation's whole forward
pass costs 5.6× the trunk per frame; "twice the original's throughput" is therefore ≤ 2.8×.

Each (precision, frames) configuration runs in a fresh process so that its peak memory is its
own: on a CPU the peak resident set over the timed passes (``VmHWM`` after resetting it through
``/proc/self/clear_refs``), on CUDA ``torch.cuda.max_memory_allocated``. Time is the wall clock of
``model(frames, [caption])`` under ``torch.inference_mode`` (text encoding included,
preprocessing excluded) after a warm-up pass at the full size. Stages are timed with forward
hooks (the sum of the stages is the forward pass, less the glue between them).

On CUDA the masks of every precision are compared with fp32 (share of identical pixels of
``pred_masks > 0``) on the same clip.
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
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CAPTION = "a man in a black shirt riding a bicycle"
CORPUS = [CAPTION, "the red ball on the left", "a dog running on the grass",
          "the person walking to the right", "a white car parked next to the tree"] * 20
MIB = 1 << 20
# The stages of the per-stage table, in pipeline order: (name, module paths inside ReferFormer).
# The FPN's self-attention over the window's frames runs between the two chunked passes, outside
# its block's forward (`rvos.modeling.fpn`), so it is listed apart.
STAGES = [
    ("backbone", ["backbone"]),
    ("position", ["position_embedding"]),
    ("text", ["text_encoder", "resizer"]),
    ("projections", [f"input_proj.{i}" for i in range(4)]),
    ("early fusion", ["fusion_module"]),
    ("encoder", ["transformer.encoder"]),
    ("decoder", ["transformer.decoder"]),
    ("FPN stride 32", ["pixel_decoder.adapter_4", "pixel_decoder.cross_attn_4",
                       "pixel_decoder.cross_attn_4.self_attn",
                       "pixel_decoder.layer_4"]),
    ("FPN stride 16", ["pixel_decoder.adapter_3", "pixel_decoder.cross_attn_3",
                       "pixel_decoder.cross_attn_3.self_attn",
                       "pixel_decoder.layer_3"]),
    ("FPN stride 8", ["pixel_decoder.adapter_2", "pixel_decoder.cross_attn_2",
                      "pixel_decoder.cross_attn_2.self_attn",
                      "pixel_decoder.layer_2"]),
    ("FPN stride 4", ["pixel_decoder.adapter_1", "pixel_decoder.cross_attn_1",
                      "pixel_decoder.cross_attn_1.self_attn",
                      "pixel_decoder.layer_1", "pixel_decoder.mask_features"]),
    ("mask head", []),  # a function, timed by wrapping it
]


# ------------------------------------------------------------------------------ yardstick
def plain_resnet50():
    """ResNet-50 (v1.5) trunk in its plainest form: NCHW fp32, eval-mode ``nn.BatchNorm2d``
    after every convolution. Written here, not taken from rvos, so that the yardstick does not
    get faster when rvos does."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, width: int, stride: int) -> None:
            super().__init__()
            cout = 4 * width
            self.body = nn.Sequential(
                nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
                nn.ReLU(), nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return (self.body(x) + self.skip(x)).relu()

    class Trunk(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                      nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            stages, cin = [], 64
            for depth, width, stride in ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)):
                blocks = []
                for i in range(depth):
                    blocks.append(Block(cin, width, stride if i == 0 else 1))
                    cin = 4 * width
                stages.append(nn.Sequential(*blocks))
            self.stages = nn.ModuleList(stages)

        def forward(self, x):
            x = self.stem(x)
            out = []
            for stage in self.stages:
                x = stage(x)
                out.append(x)
            return out

    return Trunk().eval()


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
    return float("nan") if kib is None else kib / 1024


def peak_rss_mib() -> float:
    """Peak resident set of this process (the kernel's own counter; ``ru_maxrss`` elsewhere)."""
    kib = _proc_status_kib("VmHWM")
    if kib is not None:
        return kib / 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


# ------------------------------------------------------------------------------ one run
def build_model(device: str, precision: str = "fp32"):
    """The released R50 architecture with random weights, prepared for ``precision``."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    from rvos.modeling import ReferFormerConfig, build_referformer

    try:
        from rvos.modeling.precision import prepare_model
    except ImportError:  # a checkout from before precision modes, for "before" figures
        if precision != "fp32":
            raise
        def prepare_model(model, precision):
            return model

    with tempfile.TemporaryDirectory() as folder:
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(CORPUS, vocab_size=300, min_frequency=2, show_progress=False,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        bpe.save_model(folder)
        tokenizer = RobertaTokenizerFast.from_pretrained(folder)
    torch.manual_seed(0)
    model = build_referformer(ReferFormerConfig(backbone="resnet50"), tokenizer).eval()
    return prepare_model(model.to(device), precision)


class StageTimer:
    """Wall time of each of `STAGES` over the forward passes run while it is active."""

    def __init__(self, model, sync) -> None:
        import rvos.modeling.referformer as referformer

        self.totals: dict[str, float] = defaultdict(float)
        self._handles = []
        self._sync = sync
        self._module = referformer
        self._dynamic_masks = referformer.dynamic_masks
        modules = dict(model.named_modules())
        for stage, paths in STAGES:
            for path in paths:
                self._hook(stage, modules[path])

        def timed_masks(*args, **kwargs):
            sync()
            start = time.perf_counter()
            out = self._dynamic_masks(*args, **kwargs)
            sync()
            self.totals["mask head"] += time.perf_counter() - start
            return out

        referformer.dynamic_masks = timed_masks

    def _hook(self, stage: str, module) -> None:
        def before(mod, args):
            self._sync()
            mod._bench_start = time.perf_counter()

        def after(mod, args, out):
            self._sync()
            self.totals[stage] += time.perf_counter() - mod._bench_start

        self._handles.append(module.register_forward_pre_hook(before))
        self._handles.append(module.register_forward_hook(after))

    def take(self) -> dict[str, float]:
        totals, self.totals = dict(self.totals), defaultdict(float)
        return totals

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._module.dynamic_masks = self._dynamic_masks


def run_one(frames: int, height: int, width: int, device: str, precision: str,
            repeats: int) -> dict:
    import torch

    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    prepare_start = time.perf_counter()
    model = build_model(device, precision)
    prepare_s = time.perf_counter() - prepare_start
    trunk = plain_resnet50().to(device)
    clip = torch.randn(frames, 3, height, width, generator=torch.Generator().manual_seed(0))
    clip = clip.to(device)
    timer = StageTimer(model, sync)
    result: dict = {
        "device": torch.cuda.get_device_name() if cuda else "cpu", "precision": precision,
        "frames": frames, "size": [height, width], "threads": torch.get_num_threads(),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "trunk_s": [], "model_s": [], "ratio": [], "cpu_ratio": [], "stages_s": [],
        "build_s": prepare_s, "int8_calibration": getattr(model, "int8_calibration", None),
    }
    with torch.inference_mode():
        # Warm-up at the full size: kernels, allocator, oneDNN primitives, lazy imports.
        trunk(clip)
        out = model(clip, [CAPTION])
        timer.take()
        sync()
        result["resident_mib"] = current_rss_mib()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        result["peak_rss_is_forward_only"] = reset_peak_rss()
        for _ in range(repeats):
            sync()
            start, cpu_start = time.perf_counter(), time.process_time()
            trunk(clip)
            sync()
            trunk_s = time.perf_counter() - start
            trunk_cpu = time.process_time() - cpu_start
            start, cpu_start = time.perf_counter(), time.process_time()
            out = model(clip, [CAPTION])
            sync()
            model_s = time.perf_counter() - start
            model_cpu = time.process_time() - cpu_start
            result["trunk_s"].append(trunk_s)
            result["model_s"].append(model_s)
            result["ratio"].append(model_s / trunk_s)
            result["cpu_ratio"].append(model_cpu / trunk_cpu)
            result["stages_s"].append(timer.take())
    timer.close()
    assert out["pred_masks"].shape[:3] == (1, frames, model.config.num_queries)
    result["peak_rss_mib"] = peak_rss_mib()
    if cuda:
        result["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / MIB
        result["cuda_peak_reserved_mib"] = torch.cuda.max_memory_reserved() / MIB
        result["masks"] = (out["pred_masks"][0] > 0).cpu()  # popped by the parent's child call
    return result


def summarise(r: dict) -> dict:
    """Medians over repeats: ms per frame of the trunk, the model and each stage, and ratios."""
    t = r["frames"]
    trunk = statistics.median(r["trunk_s"]) / t
    stages = {name: statistics.median(s.get(name, 0.0) for s in r["stages_s"]) / t
              for name, _ in STAGES}
    return {
        "trunk_ms_per_frame": 1000 * trunk,
        "model_ms_per_frame": 1000 * statistics.median(r["model_s"]) / t,
        "ratio_to_trunk": statistics.median(r["ratio"]),
        "cpu_ratio_to_trunk": statistics.median(r["cpu_ratio"]),
        "stage_ms_per_frame": {k: 1000 * v for k, v in stages.items()},
        "stage_ratio_to_trunk": {k: v / trunk for k, v in stages.items()},
    }


# ------------------------------------------------------------------------------ driver
def _child(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_one(args.frames[0], *args.size, args.device, args.precision[0], args.repeats)
    masks = result.pop("masks", None)
    if masks is not None and args.masks_out:
        torch.save(masks, args.masks_out)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _mask_agreement(a: Path, b: Path) -> float:
    import torch

    x, y = torch.load(a), torch.load(b)
    return float((x == y).float().mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[36])
    parser.add_argument("--size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--precision", nargs="+", default=None,
                        help="fp32, bf16, fp16, int8, int8-dynamic (the earlier int8, for "
                             "comparison) (default: fp32 on CPU; fp32 bf16 fp16 on CUDA)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (median)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every configuration this many times, alternating (fresh "
                             "processes), and pool their repeats: a shared machine's load then "
                             "hits every mode alike")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--masks-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)

    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = device.startswith("cuda")
    precisions = args.precision or (["fp32", "bf16", "fp16"] if cuda else ["fp32"])
    from rvos.modeling.cpu_features import cpu_features  # the parent process needs rvos only here

    cpu = cpu_features()  # the figures hold for this CPU (and its ISA caps) only
    print(cpu.header())
    print(f"ReferFormer-R50 (released architecture, random weights), {args.size[0]}×"
          f"{args.size[1]}, one caption, {device}; median of {args.repeats} repeats; "
          f"'×trunk' = time per frame / a plain fp32 NCHW ResNet-50 trunk's, same run")
    results, scratch = [], Path(tempfile.mkdtemp(prefix="rvos-bench-"))
    pooled: dict[tuple[int, str], dict] = {}
    for frames, _round, precision in (
            (f, r, p) for f in args.frames for r in range(args.rounds) for p in precisions):
        masks_out = scratch / f"masks-{precision}-{frames}.pt"
        cmd = [sys.executable, __file__, "--child", "--frames", str(frames), "--size",
               *map(str, args.size), "--device", device, "--precision", precision,
               "--repeats", str(args.repeats), "--masks-out", str(masks_out)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            print(f"{precision} T={frames}: failed (exit {proc.returncode}): {tail}")
            continue
        r = json.loads(lines[-1][len("RESULT "):])
        key = (frames, precision)
        if key in pooled:  # a later round: pool its repeats with the earlier ones'
            for field in ("trunk_s", "model_s", "ratio", "cpu_ratio", "stages_s"):
                pooled[key][field] += r[field]
            pooled[key]["rounds"] += 1
            continue
        r["rounds"] = 1
        r["cpu"] = cpu.as_dict()
        reference = scratch / f"masks-fp32-{frames}.pt"
        if cuda and precision != "fp32" and reference.exists() and masks_out.exists():
            r["masks_identical_to_fp32"] = _mask_agreement(reference, masks_out)
        pooled[key] = r
        results.append(r)
        print(f"{precision} T={frames}: {statistics.median(r['ratio']):.2f}× trunk "
              f"(round 1 of {args.rounds})", flush=True)
        if args.json:  # as it goes: a long run cut short keeps what it measured
            _write_json(args.json, results)
    for r in results:
        r.update(summarise(r))
        _print_result(r, cuda)
    for frames in args.frames:
        _print_comparison([r for r in results if r["frames"] == frames])
    if args.json:
        _write_json(args.json, results)
    return 0 if len(results) == len(precisions) * len(args.frames) else 1


LABELS = {"int8": "int8 (new)", "int8-dynamic": "int8 (old)"}


def _write_json(path: Path, results: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def _print_comparison(rows: list[dict]) -> None:
    """Every precision side by side: per stage ×trunk, and the whole pass's speed-up over fp32
    (the ratio of the ×trunk figures: each measured against the trunk in its own process)."""
    if len(rows) < 2:
        return
    names = [LABELS.get(r["precision"], r["precision"]) for r in rows]
    print(f"\nT = {rows[0]['frames']}: ×trunk per stage (median over "
          f"{sum(len(r['ratio']) for r in rows) // len(rows)} repeats each)")
    print(f"  {'stage':<14} " + " ".join(f"{n:>12}" for n in names))
    for name, _ in STAGES:
        print(f"  {name:<14} " + " ".join(f"{r['stage_ratio_to_trunk'][name]:12.2f}"
                                          for r in rows))
    print(f"  {'whole pass':<14} " + " ".join(f"{r['ratio_to_trunk']:12.2f}" for r in rows))
    fp32 = next((r for r in rows if r["precision"] == "fp32"), None)
    if fp32 is not None:
        print(f"  {'vs fp32':<14} " + " ".join(
            f"{fp32['ratio_to_trunk'] / r['ratio_to_trunk']:11.2f}×" for r in rows))


def _print_result(r: dict, cuda: bool) -> None:
    t = r["frames"]
    memory = (f"CUDA peak {r['cuda_peak_allocated_mib']:.0f} MiB" if cuda else
              f"peak RSS {r['peak_rss_mib']:.0f} MiB (model {r['resident_mib']:.0f})")
    print(f"\n{r['precision']}, T = {t}, {r['threads']} thread(s): "
          f"{r['model_ms_per_frame']:.0f} ms/frame = {r['ratio_to_trunk']:.2f}× trunk "
          f"(trunk {r['trunk_ms_per_frame']:.0f} ms/frame; ratios per repeat "
          f"{', '.join(f'{x:.2f}' for x in r['ratio'])}; CPU time "
          f"{r['cpu_ratio_to_trunk']:.2f}× trunk); {memory}"
          + (f"; masks {100 * r['masks_identical_to_fp32']:.2f} % identical to fp32"
             if "masks_identical_to_fp32" in r else ""))
    print(f"  {'stage':<14} {'ms/frame':>9} {'×trunk':>7}")
    for name, _ in STAGES:
        print(f"  {name:<14} {r['stage_ms_per_frame'][name]:9.0f} "
              f"{r['stage_ratio_to_trunk'][name]:7.2f}")
    print(f"  {'whole pass':<14} {r['model_ms_per_frame']:9.0f} {r['ratio_to_trunk']:7.2f}",
          flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
