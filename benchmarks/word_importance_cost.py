"""What "Which words matter" costs next to one full run, in the same process.

For an N-word expression, `rvos.predictor.words.word_importance` decodes the full sentence and
its N left-out variants from one backbone pass per window. This times it against one
`Predictor.predict` of the full sentence on the same clip (the model run a Segment does, without
writing files), alternating the two, and reports medians over ``--repeats``:

* ``ratio`` = word importance / one full run;
* ``ratio_vs_separate`` = word importance / (N + 1) full runs, what running every sentence
  separately would cost;
* ``per_word_full_runs`` = (word importance − one full run) / N / one full run: each extra word
  in units of a full run.

    python benchmarks/word_importance_cost.py                 # built-in model, both clips
    python benchmarks/word_importance_cost.py --repeats 7 --threads 2
    python benchmarks/word_importance_cost.py --model ytvos-r50 --clip examples/bigbuckbunny.mp4

Writes benchmarks/results/cpu_word_importance.json (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (clip, expression, frames): the synthetic example the built-in model knows, and 48 frames of
# the real example (two windows of 36 with the default overlap of 8).
CASES = (
    ("examples/shapes_00002.mp4", "the small red square on the left", None),
    ("examples/bigbuckbunny.mp4", "the big white rabbit in the middle", 48),
)


def measure(predictor, clip: Path, text: str, frames: int | None, repeats: int) -> dict:
    from rvos.predictor.words import word_importance

    # Warm-up (kernel selection, allocations, the page cache), not timed.
    predictor.predict(clip, [text], max_frames=frames)
    word_importance(predictor, clip, text, max_frames=frames)
    full_s, words_s = [], []
    n = 0
    for _ in range(repeats):
        start = time.perf_counter()
        result = predictor.predict(clip, [text], max_frames=frames)
        full_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        wi = word_importance(predictor, clip, text, max_frames=frames)
        words_s.append(time.perf_counter() - start)
        n = len(wi.variants)
    full, words = statistics.median(full_s), statistics.median(words_s)
    backbone_s, decode_s = _split(predictor, clip, text, frames)
    return {
        "clip": clip.name, "expression": text, "words": n, "frames": result.num_frames,
        "input_size": result.settings["input_size"], "windows": len(result.windows),
        "full_run_s": full_s, "word_importance_s": words_s,
        "full_run_median_s": full, "word_importance_median_s": words,
        "ratio": words / full, "ratio_vs_separate": words / ((n + 1) * full),
        "per_word_full_runs": (words - full) / max(n, 1) / full,
        "first_window_backbone_s": backbone_s, "first_window_decode_s": decode_s,
        "backbone_share": backbone_s / (backbone_s + decode_s),
    }


def _split(predictor, clip: Path, text: str, frames: int | None) -> tuple[float, float]:
    """Seconds of the backbone and of one sentence's decoding on the first window (the best of
    three): what word importance shares, and what each word costs."""
    import numpy as np
    import torch

    from rvos.media.video import iter_frames
    from rvos.modeling.processing import normalize, resize_frames

    window = []
    for frame in iter_frames(clip):
        window.append(frame)
        if len(window) == min(predictor.window, frames or predictor.window):
            break
    batch = normalize(resize_frames(np.stack(window), predictor.short_side))
    batch = batch.to(predictor.device)
    best = (float("inf"), float("inf"))
    model = predictor.model
    with torch.inference_mode():
        for _ in range(3):
            start = time.perf_counter()
            features = model.encode_video(batch)
            middle = time.perf_counter()
            model.decode(features, [text])
            end = time.perf_counter()
            best = min(best, (middle - start, end - middle), key=sum)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="builtin")
    p.add_argument("--clip", help="one clip instead of the built-in cases")
    p.add_argument("--text", default="the big white rabbit in the middle")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"
                                        / "cpu_word_importance.json"))
    args = p.parse_args(argv)
    from rvos.modeling.cpu_features import cpu_features  # the figures hold for this CPU

    print(cpu_features().header())

    import torch

    from rvos import load_model
    from rvos.predictor.predictor import Predictor

    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor(load_model(args.model, device=args.device), device=args.device)
    cases = ([(args.clip, args.text, args.max_frames)] if args.clip else CASES)
    rows = []
    for clip, text, frames in cases:
        row = measure(predictor, ROOT / clip, text, frames, args.repeats)
        rows.append(row)
        print(f"{row['clip']}: {row['frames']} frames at {row['input_size']}, "
              f"{row['words']} words: word importance {row['word_importance_median_s']:.2f} s, "
              f"one full run {row['full_run_median_s']:.2f} s -> {row['ratio']:.2f}x a full "
              f"run ({row['ratio_vs_separate']:.2f}x of {row['words'] + 1} separate runs; "
              f"{row['per_word_full_runs']:.2f} full runs per extra word; the backbone is "
              f"{100 * row['backbone_share']:.0f}% of the model)", flush=True)
    doc = {"model": args.model, "device": args.device, "threads": torch.get_num_threads(),
           "repeats": args.repeats, "machine": platform.processor() or platform.machine(),
           "cpu": cpu_features().as_dict(), "cases": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
