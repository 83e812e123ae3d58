"""Where does the built-in model lose the motion of an object? Linear probes along its path.

For every expression of a clip, the features at the referred object's pixels are averaged
(mask-weighted, over all frames) at each stage of ReferFormer's visual path:

* ``backbone``: the (2+1)-D backbone's output (the only part before the FPN that looks
  across frames), strides 4-32;
* ``projected``: after the 1x1 input projection and its GroupNorm (strides 8-32);
* ``fused``: after the early vision-language fusion, which gates the features by the sentence;
* ``memory``: the deformable encoder's output, which is all the decoder (and so the class
  score that picks the query) ever reads.

A multinomial logistic regression per stage is fitted on train clips to predict the object's
motion (12 classes: still, 8 directions, growing, shrinking, bouncing) and scored on val clips,
once on all expressions and once on motion expressions only (the fusion depends on the
sentence). Val clips played backwards keep their forward labels, so a probe that reads the
direction of motion must drop there. Pooling over frames and a linear probe give a lower
bound on what a stage carries, not an upper one.

    PYTHONPATH=. python benchmarks/motion_probe.py [--model-dir DIR] [--train 1200] [--val 150]
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rvos.data.synth import make_clip
from rvos.modeling.processing import normalize
from rvos.zoo.checkpoint import load_pretrained

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SEED = 123  # train clips the shipped model never saw (it trained on seeds 0, 5 and 6)


class Tap:
    """Keeps the projected, fused and encoded features of the last `decode` call."""

    def __init__(self, model) -> None:
        self.projected: dict[int, torch.Tensor] = {}
        self.fused: list[torch.Tensor] = []
        self.memory: list[torch.Tensor] = []
        for level, proj in enumerate(model.input_proj):
            proj.register_forward_hook(
                lambda m, i, o, level=level: self.projected.__setitem__(level, o))
        model.transformer.register_forward_pre_hook(
            lambda m, args: setattr(self, "fused", list(args[0])))
        model.transformer.register_forward_hook(
            lambda m, args, out: setattr(self, "memory", list(out.memory)))


def _pool(feature: torch.Tensor, masks: np.ndarray) -> torch.Tensor | None:
    """Mask-weighted mean of ``feature`` [T, C, h, w] over the object ``masks`` [T, H, W]."""
    weight = F.adaptive_avg_pool2d(torch.from_numpy(masks).float()[:, None], feature.shape[-2:])
    total = weight.sum()
    if float(total) < 1e-3:
        return None
    return (feature * weight).sum((0, 2, 3)) / total


def _per_expression(x: torch.Tensor, k: int, num_exprs: int, t: int) -> torch.Tensor:
    # Features computed once per video ([T, ...]) or once per expression ([K*T, ...]).
    return x if x.shape[0] == t else x.view(num_exprs, t, *x.shape[1:])[k]


@torch.inference_mode()
def collect(model, tap: Tap, split: str, seed: int, count: int, reverse: bool = False):
    """Pooled features per stage ``{name: [N, C]}``, motion labels and categories."""
    feats: dict[str, list[torch.Tensor]] = collections.defaultdict(list)
    labels, categories = [], []
    for i in range(count):
        clip = make_clip(split, i, seed, num_frames=8, size=(128, 128))
        frames, masks = clip.frames, clip.masks
        if reverse:
            frames, masks = frames[::-1].copy(), masks[:, ::-1].copy()
        visual = model.encode_video(normalize(frames)[None])
        exprs = clip.expressions
        model.decode(visual, [e.text for e in exprs])
        t = frames.shape[0]
        for k, expr in enumerate(exprs):
            stages = {f"backbone s{4 << lvl}": visual.features[lvl] for lvl in range(4)}
            for lvl in range(3):  # strides 8, 16, 32 (the fourth level is made from stride 32)
                stride = 8 << lvl
                stages[f"projected s{stride}"] = tap.projected[lvl]
                stages[f"fused s{stride}"] = tap.fused[lvl]
                stages[f"memory s{stride}"] = tap.memory[lvl]
            pooled = {name: _pool(_per_expression(x, k, len(exprs), t),
                                  masks[expr.object_index])
                      for name, x in stages.items()}
            if any(p is None for p in pooled.values()):
                continue  # the object is hidden in every frame
            for name, p in pooled.items():
                feats[name].append(p)
            labels.append(clip.objects[expr.object_index].motion)
            categories.append(expr.category)
    return {name: torch.stack(v) for name, v in feats.items()}, labels, categories


def probe_accuracy(x_train, y_train, x_test, y_test, steps: int = 800) -> float:
    """Fit a standardised multinomial logistic regression; its accuracy on the test set."""
    torch.manual_seed(0)
    classes = sorted(set(y_train))
    index = {c: i for i, c in enumerate(classes)}
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = (x_train - mean) / std, (x_test - mean) / std
    target = torch.tensor([index[c] for c in y_train])
    head = torch.nn.Linear(a.shape[1], len(classes))
    opt = torch.optim.Adam(head.parameters(), 1e-2, weight_decay=1e-3)
    for _ in range(steps):
        loss = F.cross_entropy(head(a), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = head(b).argmax(1)
    return float(np.mean([classes[int(p)] == y for p, y in zip(pred, y_test, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=str(ROOT / "rvos" / "weights" / "builtin"))
    parser.add_argument("--train", type=int, default=1200, help="train clips to fit the probes")
    parser.add_argument("--val", type=int, default=150, help="val clips to score them")
    args = parser.parse_args()
    torch.set_num_threads(min(4, torch.get_num_threads()))
    model = load_pretrained(args.model_dir).eval()
    tap = Tap(model)
    x_tr, y_tr, c_tr = collect(model, tap, "train", TRAIN_SEED, args.train)
    x_va, y_va, c_va = collect(model, tap, "val", 0, args.val)
    x_rv, y_rv, _ = collect(model, tap, "val", 0, args.val, reverse=True)
    m_tr = [i for i, c in enumerate(c_tr) if c == "motion"]
    m_va = [i for i, c in enumerate(c_va) if c == "motion"]
    majority = max(collections.Counter(y_va).values()) / len(y_va)
    print(f"{len(y_tr)} train / {len(y_va)} val expressions ({len(m_tr)} / {len(m_va)} about "
          f"motion); the most common motion is {100 * majority:.0f} % of val")
    print("| stage | all expressions | same, clips reversed | motion expressions |")
    print("| --- | --- | --- | --- |")
    for name in x_tr:
        every = probe_accuracy(x_tr[name], y_tr, x_va[name], y_va)
        reversed_ = probe_accuracy(x_tr[name], y_tr, x_rv[name], y_rv)
        motion = probe_accuracy(x_tr[name][m_tr], [y_tr[i] for i in m_tr],
                                x_va[name][m_va], [y_va[i] for i in m_va])
        print(f"| {name} | {100 * every:.0f} % | {100 * reversed_:.0f} % | {100 * motion:.0f} % |")


if __name__ == "__main__":
    main()
