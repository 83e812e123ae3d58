"""Where a model's queries land: do the non-chosen queries crowd around the referred object?

The paper's figure shows all of ReferFormer's queries around the referred object (they all start
from the sentence feature). This measures it for the built-in model on synthetic test clips,
whose ground-truth boxes are known: for every expression and every frame where the referred
object is visible, each query's box against the object's box.

    python benchmarks/query_spread.py [--clips 30] [--json out.json]

Prints, over all (expression, frame) pairs: the share of chosen-query boxes and of the other
queries' boxes that overlap the referred object at all (IoU > 0) and well (IoU >= 0.5), and
the mean number of other queries per frame that overlap it.

    python benchmarks/query_spread.py --r50-parity [--json out.json]

does the same for the released-format ResNet-50 ReferFormer of the parity fixtures
(``../shared/parity/referformer_r50``, or ``$RVOS_PARITY_DIR``): its checkpoint, loaded as a
released file is, run by the `Predictor` on the parity clip with its expression. That clip has
no ground-truth box, so each frame's other queries are measured against the chosen query's box:
the share that overlap it (IoU > 0), their mean IoU with it, and the mean distance of their
box centres from its centre in its widths. The parity weights are seeded noise (the original
initialisation plus noise), not trained: the figures describe an *untrained* network in the
released format, not what a released checkpoint does. Without the fixtures it says so and
exits without measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos import load_model
from rvos.data.synth import make_clip
from rvos.predictor import Predictor
from rvos.zoo.checkpoint import load_official


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


ROOT = Path(__file__).resolve().parents[1]
R50_NOTE = (
    "The parity checkpoint's weights are seeded noise (the original initialisation plus "
    "noise), not trained: these figures describe an untrained network in the released "
    "format, not the behaviour of a released checkpoint. The parity clip has no "
    "ground-truth box, so each frame's other queries are measured against the chosen "
    "query's box."
)


def parity_case() -> Path:
    """The released-format R50 parity case: ``$RVOS_PARITY_DIR`` or ``../shared/parity``
    next to the repository (as the tests find it), then ``referformer_r50``."""
    env = os.environ.get("RVOS_PARITY_DIR")
    root = Path(env).expanduser() if env else ROOT.parent / "shared" / "parity"
    return root / "referformer_r50"


def spread_around(boxes: np.ndarray, chosen: int) -> dict[str, float]:
    """The other queries' boxes (``boxes`` ``[Q, 4]``, x0, y0, x1, y1) against the chosen
    one's: the share overlapping it, their mean IoU with it, and the mean distance of their
    centres from its centre in its widths."""
    overlap = np.delete(iou(boxes, boxes[chosen]), chosen)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    width = max(float(boxes[chosen, 2] - boxes[chosen, 0]), 1e-9)
    distance = np.delete(np.linalg.norm(centres - centres[chosen], axis=1), chosen) / width
    return {
        "others_overlap": float((overlap > 0).mean()),
        "others_mean_iou": float(overlap.mean()),
        "others_mean_centre_distance_widths": float(distance.mean()),
    }


def r50_parity(out: Path | None) -> int:
    case = parity_case()
    needed = [case / name for name in ("checkpoint.pth", "inputs.pt", "text_encoder")]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        print(
            f"query_spread.py: skipped: the R50 parity fixtures are not here (missing "
            f"{', '.join(missing)}); they live in ../shared/parity next to the repository, "
            "or set RVOS_PARITY_DIR",
            file=sys.stderr,
        )
        return 0
    inputs = torch.load(case / "inputs.pt", weights_only=True)
    model = load_official(case / "checkpoint.pth", text_encoder=case / "text_encoder")
    frames = inputs["frames_uint8"].numpy()
    found = Predictor(model, device="cpu", model_name="parity R50").predict(
        frames, [inputs["caption"]]
    )[0]
    per_frame = []
    for t in range(found.num_frames):
        q = int(found.chosen_query[t])
        per_frame.append(
            {
                "frame": t,
                "chosen_query": q,
                "scores": [round(float(s), 4) for s in found.scores[t]],
                **spread_around(np.asarray(found.boxes[t], np.float64), q),
            }
        )
    keys = ("others_overlap", "others_mean_iou", "others_mean_centre_distance_widths")
    figures = {
        "model": "released-format ReferFormer ResNet-50 (parity checkpoint, "
        "../shared/parity/referformer_r50)",
        "note": R50_NOTE,
        "clip": str(inputs.get("source", "parity clip")),
        "expression": inputs["caption"],
        "frames": found.num_frames,
        "queries": int(np.asarray(found.boxes).shape[1]),
        "frame_size": [int(frames.shape[2]), int(frames.shape[1])],
        # What the original implementation chose on this clip (outputs.pt): the same query.
        "original_best_query": (
            int(torch.load(case / "outputs.pt", weights_only=True)["best_query"])
            if (case / "outputs.pt").is_file()
            else None
        ),
        **{key: float(np.mean([f[key] for f in per_frame])) for key in keys},
        "per_frame": per_frame,
    }
    for key, value in figures.items():
        if key not in ("per_frame", "note"):
            print(f"{key:>36}: {value:.3f}" if isinstance(value, float) else f"{key:>36}: {value}")
    print(R50_NOTE)
    if out is not None:
        out.write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=30, help="test clips (default 30)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--r50-parity",
        action="store_true",
        help="measure the released-format R50 of ../shared/parity on its clip "
        "(seeded-noise weights) instead of the built-in model",
    )
    args = parser.parse_args()
    if args.r50_parity:
        return r50_parity(args.json)

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
