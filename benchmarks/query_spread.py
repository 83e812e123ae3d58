"""Where a model's queries land: do the non-chosen queries crowd around the referred object?

The paper's figure shows all of ReferFormer's queries around the referred object (they all start
from the sentence feature). This measures it for the built-in model on synthetic test clips,
whose ground-truth boxes are known: for every expression and every frame where the referred
object is visible, each query's box against the object's box.

    python benchmarks/query_spread.py [--clips 30] [--json out.json]

Prints, over all (expression, frame) pairs: the share of chosen-query boxes and of the other
queries' boxes that overlap the referred object at all (IoU > 0) and well (IoU >= 0.5), and
the mean number of other queries per frame that overlap it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos import load_model
from rvos.data.synth import make_clip
from rvos.predictor import Predictor


def iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of ``boxes`` ``[Q, 4]`` (x0, y0, x1, y1) with one ``box`` ``[4]``."""
    x0 = np.maximum(boxes[:, 0], box[0])
    y0 = np.maximum(boxes[:, 1], box[1])
    x1 = np.minimum(boxes[:, 2], box[2])
    y1 = np.minimum(boxes[:, 3], box[3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + (box[2] - box[0]) * (box[3] - box[1]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=30, help="test clips (default 30)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    model = load_model("builtin", device="cpu")
    predictor = Predictor(model, device="cpu")
    chosen_any = chosen_good = other_any = other_good = 0
    pairs = others = 0
    for index in range(args.clips):
        clip = make_clip("test", index)
        texts = [e.text for e in clip.expressions]
        result = predictor.predict(clip.frames, texts)
        for expression, found in zip(clip.expressions, result, strict=True):
            truth = clip.boxes[expression.object_index]  # [T, 4], zero where hidden
            for t in range(found.num_frames):
                if not (truth[t, 2] > truth[t, 0] and truth[t, 3] > truth[t, 1]):
                    continue
                overlap = iou(found.boxes[t], truth[t])
                q = int(found.chosen_query[t])
                rest = np.delete(overlap, q)
                pairs += 1
                others += rest.size
                chosen_any += overlap[q] > 0
                chosen_good += overlap[q] >= 0.5
                other_any += int((rest > 0).sum())
                other_good += int((rest >= 0.5).sum())
    figures = {
        "clips": args.clips,
        "expression_frames": pairs,
        "chosen_overlaps": chosen_any / pairs,
        "chosen_iou_0.5": chosen_good / pairs,
        "others_overlap": other_any / others,
        "others_iou_0.5": other_good / others,
        "others_overlapping_per_frame": other_any / pairs,
        "others_per_frame": others / pairs,
    }
    for key, value in figures.items():
        print(f"{key:>30}: {value:.3f}" if isinstance(value, float) else f"{key:>30}: {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
