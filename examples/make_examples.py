"""Write the app's synthetic example clips and keep the expressions the built-in model gets right.

    python examples/make_examples.py [--checkpoint DIR] [--count 5] [--frames 16] [--size 256]
                                     [--fps 8] [--min-j 0.7] [--search 40] [--no-verify]

Clips come from the fixed ``test`` split of `rvos.data.synth_scene` (never trained on), rendered at
``--size`` (twice the built-in model's 128 px training size, so the browser shows them at a
readable size; the predictor scales them down to the model's size). Each clip is written as
an H.264 mp4, then read back from that file (what the app does) and segmented by the model with
all of the clip's expressions; an expression is kept when its mean J (IoU with the true mask
over the frames) is at least ``--min-j``. The script picks ``--count`` clips: one with two
correct expressions first (the two-expression example), then clips whose kept expressions add
categories not yet shown (appearance, position, motion, comparison).

Writes ``examples/<clip>.mp4`` and ``examples/examples.json``. The ``real`` entries of the
JSON (real footage for the official checkpoints, written by ``make_real_example.py``) are kept
as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from rvos.data.synth import make_clip  # noqa: E402
from rvos.data.synth_language import CATEGORIES  # noqa: E402
from rvos.data.synth_scene import Clip  # noqa: E402
from rvos.eval.metrics import jaccard  # noqa: E402
from rvos.media.video import write_video  # noqa: E402
from rvos.zoo.builtin import INPUT_SHORT_SIDE  # noqa: E402

# The real-footage entry is examples/make_real_example.py's; it is kept as that script wrote it.
REAL: list[dict] = []


def score_clip(predictor, path: Path, clip: Clip) -> list[float]:
    """Mean J of every expression of ``clip``, predicted from the mp4 at ``path``."""
    result = predictor.predict(path, [e.text for e in clip.expressions])
    scores = []
    for e, pred in zip(clip.expressions, result, strict=True):
        masks = np.stack(list(pred.masks()))
        scores.append(float(jaccard(clip.masks[e.object_index], masks).mean()))
    return scores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None,
                   help="model folder (default: the built-in model rvos/weights/builtin)")
    p.add_argument("--count", type=int, default=5, help="clips to keep (default 5)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    p.add_argument("--size", type=int, default=2 * INPUT_SHORT_SIDE,
                   help=f"frame size in pixels (default {2 * INPUT_SHORT_SIDE})")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of the mp4 (default 8)")
    p.add_argument("--min-j", type=float, default=0.7,
                   help="keep expressions with at least this mean J (default 0.7)")
    p.add_argument("--search", type=int, default=40, help="test clips to try (default 40)")
    p.add_argument("--no-verify", action="store_true",
                   help="keep the generator's expressions without running a model")
    args = p.parse_args(argv)

    predictor = None
    if not args.no_verify:
        from rvos.predictor.predictor import Predictor
        from rvos.zoo.loader import load_model

        model = load_model("builtin", checkpoint=args.checkpoint)
        predictor = Predictor(model, model_name="builtin")

    chosen: list[dict] = []
    shown: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.search):
            if len(chosen) >= args.count:
                break
            clip = make_clip("test", index, num_frames=args.frames,
                                   size=(args.size, args.size))
            path = Path(tmp) / f"{clip.name}.mp4"
            write_video(path, clip.frames, args.fps)
            scores = (score_clip(predictor, path, clip) if predictor is not None
                      else [1.0] * len(clip.expressions))
            kept = [(e, s) for e, s in zip(clip.expressions, scores, strict=True)
                    if s >= args.min_j]
            print(f"{clip.name}: " + "; ".join(f"{e.text!r} J={s:.2f}" for e, s in
                                               zip(clip.expressions, scores, strict=True)))
            # Distinct objects only: two expressions of one object show nothing new.
            by_object: dict[int, tuple] = {}
            for e, s in kept:
                if e.object_index not in by_object or s > by_object[e.object_index][1]:
                    by_object[e.object_index] = (e, s)
            kept = sorted(by_object.values(), key=lambda es: -es[1])
            if not kept:
                continue
            need_pair = not any(len(c["expressions"]) >= 2 for c in chosen)
            if need_pair and len(kept) < 2:
                continue
            picked = kept[:2] if need_pair else [
                max(kept, key=lambda es: (es[0].category not in shown, es[1]))]
            unshown = set(CATEGORIES) - shown
            if not need_pair and unshown and picked[0][0].category in shown and (
                    len(chosen) < args.count - 1):
                continue  # prefer a clip that shows a new kind of expression
            name = f"shapes_{clip.name.split('_')[1]}.mp4"
            write_video(HERE / name, clip.frames, args.fps)
            shown.update(e.category for e, _ in picked)
            chosen.append({
                "video": name,
                "expressions": [e.text for e, _ in picked],
                "categories": [e.category for e, _ in picked],
                "mean_j": [round(s, 3) for _, s in picked] if predictor is not None else None,
                "clip": clip.name,
            })
            print(f"  -> {name}: {chosen[-1]['expressions']}")
    if len(chosen) < args.count:
        print(f"only {len(chosen)} clips qualified; raise --search or lower --min-j",
              file=sys.stderr)
    spec_path = HERE / "examples.json"
    real = json.loads(spec_path.read_text()).get("real", REAL) if spec_path.exists() else REAL
    doc = {
        "about": "Examples of app.py; written by examples/make_examples.py (see there).",
        "settings": {"split": "test", "frames": args.frames, "size": args.size,
                     "fps": args.fps, "min_j": None if args.no_verify else args.min_j},
        "synthetic": chosen,
        "real": real,
    }
    spec_path.write_text(json.dumps(doc, indent=1) + "\n")
    for old in HERE.glob("shapes_*.mp4"):
        if old.name not in {c["video"] for c in chosen}:
            old.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
