"""DAVIS-2017 conventions for Ref-DAVIS17: indexed PNGs, the per-annotator merge, and the
unsupervised-task scores with the tables the DAVIS-2017 toolkit writes.

Written from the benchmark's definitions (Pont-Tuset et al., "The 2017 DAVIS Challenge on Video
Object Segmentation", and the toolkit's documented behaviour); J and F per frame come from
`rvos.eval.metrics`, the same functions ``rvos eval`` uses.

* **Label maps.** One PNG per frame, each pixel the id of the object it belongs to (0 is
  background, 255 "void" in ground truth), stored as an indexed ("P") PNG with the PASCAL VOC
  colour map, as the DAVIS annotations are.
* **Merge** (ReferFormer's Ref-DAVIS17 procedure): an annotator's expressions give one
  probability map per object; a pixel keeps an object only where its probability is at least
  0.5, background counts as probability 0.1, and the pixel takes the arg-max (the first object
  on an exact tie).
* **Unsupervised task.** Every predicted id is a proposal. The number of ground-truth objects
  is the largest id in the first ground-truth frame; missing proposals count as empty masks,
  more than 20 are refused. J and F are computed for every (proposal, object) pair on every
  frame with void pixels removed from both masks; proposals are assigned to objects one-to-one
  (Hungarian) to maximise the mean of (mean J + mean F) / 2. Each object then contributes its
  matched per-frame J and F, summarised as mean, recall (fraction of frames scoring > 0.5) and
  decay (mean over the first quarter of the frames minus mean over the last quarter, quarters
  as the toolkit cuts them: 5 edges ``round(k (T - 1) / 4)``, k = 0..4, each quarter including
  both its edges). Global values are means over all objects of all sequences, and J&F-Mean is
  (J-Mean + F-Mean) / 2.

Two deliberate differences from the toolkit, neither changing a global number: per-object rows
are named after the ground-truth object a proposal was matched to (the toolkit names them by the
order of the matched proposals, so its rows can be swapped when proposal and object ids
disagree); decay stays defined beyond 255 frames (the toolkit stores the quarter edges in uint8).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rvos.eval.metrics import f_measure, jaccard
from rvos.media.labels import read_label_png

__all__ = [
    "BACKGROUND_PROBABILITY",
    "GLOBAL_COLUMNS",
    "MAX_PROPOSALS",
    "VOID_LABEL",
    "DavisScores",
    "ObjectScores",
    "decay_quarters",
    "merge_probabilities",
    "score_folder",
    "score_sequence",
    "score_statistics",
    "write_tables",
]


VOID_LABEL = 255


BACKGROUND_PROBABILITY = 0.1


OBJECT_THRESHOLD = 0.5


MAX_PROPOSALS = 20


GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


# ReferFormer's evaluation script writes five decimals (the toolkit's own script three).
FLOAT_FORMAT = "{:.5f}"


def merge_probabilities(probs) -> np.ndarray:
    """One annotator's objects → one label map, ReferFormer's Ref-DAVIS17 rule.

    Arguments:
        probs: float ``[O, ..., H, W]`` probability of each of O objects (object o gets id
            o + 1); a numpy array, or a torch tensor (merged on its device).
    Returns:
        uint8 ``[..., H, W]``: 0 where no object reaches 0.5, else the id of the most probable
        (the lower id on an exact tie).
    """
    if probs.shape[0] > 254:
        raise ValueError(f"{probs.shape[0]} objects do not fit in a uint8 label map")
    # The arg-max over [background, objects...] written as a running maximum: one pass per
    # object instead of a reduction across a stacked axis (20x faster on a CPU); a strict ">"
    # keeps the earlier object on a tie, as argmax's first-maximum rule does.
    if isinstance(probs, np.ndarray):
        probs = probs.astype(np.float32, copy=False)
        best = np.full(probs.shape[1:], BACKGROUND_PROBABILITY, dtype=np.float32)
        labels = np.zeros(probs.shape[1:], dtype=np.uint8)
        for o, p in enumerate(probs):
            wins = (p >= OBJECT_THRESHOLD) & (p > best)
            labels[wins] = o + 1
            best = np.where(wins, p, best)
        return labels

    probs = probs.float()
    best = torch.full(probs.shape[1:], BACKGROUND_PROBABILITY, device=probs.device)
    labels = torch.zeros(probs.shape[1:], dtype=torch.uint8, device=probs.device)
    for o, p in enumerate(probs):
        wins = (p >= OBJECT_THRESHOLD) & (p > best)
        labels[wins] = o + 1
        best = torch.where(wins, p, best)
    return labels.cpu().numpy()


def decay_quarters(num_frames: int) -> list[tuple[int, int]]:
    """The toolkit's four quarters of ``num_frames`` frames as inclusive (first, last) pairs."""
    if num_frames < 1:
        raise ValueError(f"need at least one frame, got {num_frames}")
    # Round half up, as the toolkit's round(x + 1e-10) does; quarters share their edges.
    edges = [math.floor(k * (num_frames - 1) / 4 + 0.5) for k in range(5)]
    return [(edges[i], edges[i + 1]) for i in range(4)]


def score_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame J or F, as the DAVIS toolkit defines
    them: recall is the fraction of frames scoring more than 0.5; decay the mean of the first
    quarter of the frames minus that of the last (`decay_quarters`)."""
    values = np.asarray(per_frame, dtype=np.float64).ravel()
    (a0, a1), _, _, (d0, d1) = decay_quarters(values.size)
    mean = float(values.mean())
    recall = float((values > 0.5).mean())
    decay = float(values[a0 : a1 + 1].mean() - values[d0 : d1 + 1].mean())
    return mean, recall, decay


@dataclass
class ObjectScores:
    """Per-frame J and F (float64 ``[T]``) of ground-truth object ``object_id`` of a sequence
    (for Ref-YouTube-VOS, where every expression is scored, the expression id)."""

    sequence: str
    object_id: int | str
    j: np.ndarray
    f: np.ndarray

    @property
    def name(self) -> str:
        """``<sequence>_<object id>``, the toolkit's per-sequence row name."""
        return f"{self.sequence}_{self.object_id}"


def _separate(labels: np.ndarray, count: int) -> np.ndarray:
    """uint8 [T, H, W] ids → bool [count, T, H, W], object i+1 in slot i."""
    ids = np.arange(1, count + 1, dtype=np.uint8)[:, None, None, None]
    return labels[None] == ids


def score_sequence(
    name: str, gt: np.ndarray, pred: np.ndarray, max_proposals: int = MAX_PROPOSALS
) -> list[ObjectScores]:
    """Unsupervised-task scores of one sequence.

    Arguments:
        gt: uint8 ``[T, H, W]`` ground-truth ids (255 = void).
        pred: uint8 ``[T, H, W]`` predicted ids (proposals 1..max).
    Returns:
        one `ObjectScores` per ground-truth object (ids 1..max id of the first frame).
    """
    # lazy: scipy is needed only for training's matching
    from scipy.optimize import linear_sum_assignment

    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(
            f"sequence {name}: predictions are {pred.shape[1:]} over "
            f"{pred.shape[0]} frames, the ground truth {gt.shape[1:]} over "
            f"{gt.shape[0]}"
        )
    void = gt == VOID_LABEL
    first = gt[0][~void[0]]
    n_gt = int(first.max()) if first.size else 0
    n_pred = int(pred.max()) if pred.size else 0
    if n_pred > max_proposals:
        raise ValueError(
            f"sequence {name}: the predictions hold object id {n_pred}; at most "
            f"{max_proposals} proposals are allowed"
        )
    if n_gt == 0:
        return []
    keep = ~void
    gts = _separate(np.where(void, 0, gt).astype(np.uint8), n_gt) & keep
    preds = _separate(pred, max(n_pred, n_gt)) & keep  # missing proposals: empty masks
    t = gt.shape[0]
    j = np.zeros((len(preds), n_gt, t))
    f = np.zeros((len(preds), n_gt, t))
    for p, pm in enumerate(preds):
        for g, gm in enumerate(gts):
            j[p, g] = jaccard(gm, pm)
            f[p, g] = f_measure(gm, pm)
    rows, cols = linear_sum_assignment(-(j.mean(2) + f.mean(2)) / 2)
    by_object = {int(g): int(p) for p, g in zip(rows, cols, strict=True)}
    return [ObjectScores(name, g + 1, j[by_object[g], g], f[by_object[g], g]) for g in range(n_gt)]


@dataclass
class DavisScores:
    """Scores of one prediction folder (one annotator): every ground-truth object's per-frame
    J and F, in sequence order."""

    objects: list[ObjectScores]

    def global_results(self) -> dict[str, float]:
        """The toolkit's global measures (`GLOBAL_COLUMNS`), as fractions in [0, 1]."""
        if not self.objects:
            raise ValueError("no ground-truth object was scored")
        js = np.array([score_statistics(o.j) for o in self.objects])
        fs = np.array([score_statistics(o.f) for o in self.objects])
        jm, jr, jd = js.mean(0)
        fm, fr, fd = fs.mean(0)
        values = ((jm + fm) / 2, jm, jr, jd, fm, fr, fd)
        return {k: float(v) for k, v in zip(GLOBAL_COLUMNS, values, strict=True)}

    def per_sequence(self) -> list[tuple[str, float, float]]:
        """(``<sequence>_<object>``, J-Mean, F-Mean) per object."""
        return [(o.name, float(o.j.mean()), float(o.f.mean())) for o in self.objects]


def score_folder(
    gt_root: str | os.PathLike,
    pred_root: str | os.PathLike,
    sequences: Sequence[str],
    on_sequence: Callable[[str], None] | None = None,
) -> DavisScores:
    """Score ``pred_root/<sequence>/<frame>.png`` against ``gt_root/<sequence>/<frame>.png``.

    The frames are the ground truth's PNGs (sorted by name); a prediction must exist for each.
    """
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    objects: list[ObjectScores] = []
    for seq in sequences:
        frames = sorted((gt_root / seq).glob("*.png"))
        if not frames:
            raise FileNotFoundError(f"sequence {seq}: no ground-truth PNG in {gt_root / seq}")
        gt = np.stack([read_label_png(p) for p in frames])
        preds = []
        for p in frames:
            path = pred_root / seq / p.name
            if not path.is_file():
                raise FileNotFoundError(
                    f"sequence {seq}: prediction {path} is missing (one PNG "
                    "per ground-truth frame, named like it)"
                )
            preds.append(read_label_png(path))
        shapes = {m.shape for m in preds}
        if len(shapes) > 1:
            raise ValueError(
                f"sequence {seq}: the predicted frames differ in size: {sorted(shapes)}"
            )
        objects.extend(score_sequence(seq, gt, np.stack(preds)))
        if on_sequence is not None:
            on_sequence(seq)
    return DavisScores(objects)


def _csv(rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return FLOAT_FORMAT.format(v) if isinstance(v, float) else str(v)

    return "".join(",".join(cell(v) for v in row) + "\n" for row in rows)


def write_tables(
    folder: str | os.PathLike,
    split: str,
    global_results: dict[str, float],
    per_sequence: Sequence[tuple[str, float, float]],
) -> tuple[Path, Path]:
    """Write ``global_results-<split>.csv`` and ``per-sequence_results-<split>.csv`` into
    ``folder`` in the toolkit's layout. Returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    global_path = folder / f"global_results-{split}.csv"
    seq_path = folder / f"per-sequence_results-{split}.csv"
    global_path.write_text(_csv([GLOBAL_COLUMNS, [global_results[k] for k in GLOBAL_COLUMNS]]))
    seq_path.write_text(_csv([("Sequence", "J-Mean", "F-Mean"), *per_sequence]))
    return global_path, seq_path
