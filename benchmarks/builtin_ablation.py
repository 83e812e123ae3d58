"""Where do the built-in model's errors come from? J&F per category under three procedures.

* ``original``: the paper's inference (all frames at once, the query with the best mean score).
* ``frames reversed``: the clip played backwards (outputs put back in order before scoring).
  Every frame and every frame-to-frame difference is the same, only the direction of time is
  flipped: "moving up" now moves down, "growing" shrinks. A model that reads motion from the
  (2+1)-D backbone's temporal reach must fail motion expressions here; the other categories
  should not move. (Feeding frames one at a time instead would also change the backbone's
  input statistics — zero padding in time — and hurt every category.)
* ``best query (oracle)``: the query whose masks match the truth best — what a perfect choice
  among the five queries would score, i.e. how much is lost to choosing, not to segmenting.

It also prints how often the chosen mask covers the referred object rather than another one.

    PYTHONPATH=. python benchmarks/builtin_ablation.py [--model-dir DIR] [--split test]
                                                       [--count 100]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from rvos.data.synth import make_clip
from rvos.eval.evaluate import EvalResult
from rvos.eval.metrics import f_measure, jaccard
from rvos.modeling.processing import postprocess_masks, preprocess, select_query

PROCEDURES = ("original", "frames reversed", "best query (oracle)")


def _decode(model, x: torch.Tensor, texts: list[str]) -> dict:
    # One backbone pass; decode shares it among the expressions.
    return model.decode(model.encode_video(x), texts)


@torch.inference_mode()
def ablate(model, split: str, count: int) -> tuple[dict[str, EvalResult], float]:
    """EvalResults per procedure, and the share of expressions whose chosen mask overlaps the
    referred object more than any other object."""
    side = int(getattr(model, "metadata", {}).get("input_short_side", 128))
    results = {name: EvalResult() for name in PROCEDURES}
    right = []
    for i in range(count):
        clip = make_clip(split, i)
        texts = [e.text for e in clip.expressions]
        x = preprocess(clip.frames, side)
        whole = _decode(model, x, texts)
        backwards = _decode(model, x.flip(0), texts)  # x: [T, 3, H, W]
        reversed_ = {key: backwards[key].flip(1) for key in ("pred_logits", "pred_masks")}
        size = clip.frames.shape[1:3]
        for b, e in enumerate(clip.expressions):
            gt = clip.masks[e.object_index]

            def masks(out: dict, query: int, b: int = b, size=size) -> np.ndarray:
                return postprocess_masks(out["pred_masks"][b, :, query], size).numpy()

            chosen = masks(whole, select_query(whole["pred_logits"][b]))
            by_query = [masks(whole, q) for q in range(whole["pred_masks"].shape[2])]
            oracle = max(by_query, key=lambda m: float(jaccard(gt, m).mean()))
            flipped = masks(reversed_, select_query(reversed_["pred_logits"][b]))
            for name, pred in zip(PROCEDURES, (chosen, flipped, oracle), strict=True):
                results[name].records.append({
                    "video": clip.name, "expr_id": str(b), "text": e.text,
                    "category": e.category, "J": float(jaccard(gt, pred).mean()),
                    "F": float(f_measure(gt, pred).mean())})
            overlap = [float(jaccard(m, chosen).mean()) for m in clip.masks]
            right.append(int(np.argmax(overlap)) == e.object_index)
    return results, float(np.mean(right))


def main() -> None:
    from rvos.zoo.checkpoint import load_pretrained
    from rvos.zoo.registry import BUILTIN_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=BUILTIN_DIR)
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    model = load_pretrained(args.model_dir).eval()
    results, right = ablate(model, args.split, args.count)
    summaries = {name: r.summary() for name, r in results.items()}
    categories = sorted(k for k in summaries["original"] if k != "overall") + ["overall"]
    print(f"J&F on {args.count} {args.split} clips")
    print("| procedure | " + " | ".join(categories) + " |")
    print("| --- |" + " --- |" * len(categories))
    for name, s in summaries.items():
        print(f"| {name} | " + " | ".join(f"{s[c]['J&F']:.1f}" for c in categories) + " |")
    print(f"the chosen mask is on the referred object in {100 * right:.0f} % of expressions")


if __name__ == "__main__":
    main()
