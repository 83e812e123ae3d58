"""Scoring a predicted benchmark split (DAVIS toolkit conventions; Ref-YouTube-VOS with local ground
truth; MeViS against the union of each expression's objects, as its evaluation does).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from rvos.data.layouts import (
    DAVIS_ANNOTATORS,
    DatasetError,
    Split,
    read_split,
)
from rvos.data.mevis import expression_masks, mask_dict_path, mask_size, read_mask_dict
from rvos.eval.davis import DavisScores, ObjectScores, score_folder, write_tables
from rvos.eval.metrics import f_measure, jaccard
from rvos.media.labels import read_label_png

__all__ = ["evaluate_predictions"]


def _annotator_dirs(pred: Path, split: str) -> Path:
    for base in (pred / split, pred):
        if (base / "anno_0").is_dir():
            return base
    raise DatasetError(
        f"no anno_0 folder under {pred / split} or {pred}: --pred is the --out "
        "of `rvos dataset predict --format davis`"
    )


def evaluate_predictions(
    root: str | Path,
    split: str,
    fmt: str,
    pred: str | Path,
    gt: str | Path | None = None,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Score a prediction folder and write the result tables; see the module docstring.

    Returns ``{row: {column: value}}`` of the global measures (fractions in [0, 1]): davis rows
    ``anno_0`` .. ``anno_3`` and ``mean``; ytvos and mevis one row ``all``. For mevis ``gt`` is
    the ``mask_dict.json`` (default ``ROOT/<split>/mask_dict.json``).
    """
    split_info = read_split(root, split, fmt, check_frames=False)
    if fmt == "mevis":
        masks = read_mask_dict(gt if gt is not None else mask_dict_path(root, split), split)
        bar = _bar(progress, len(split_info.videos), split)
        try:
            scores = _score_mevis(split_info, masks, Path(pred) / split, _tick(bar))
        finally:
            if bar is not None:
                bar.close()
        write_tables(Path(pred) / split, split, scores.global_results(), scores.per_sequence())
        return {"all": scores.global_results()}
    gt_root = Path(gt) if gt is not None else Path(root) / split / "Annotations"
    if not gt_root.is_dir():
        raise DatasetError(f"ground truth {gt_root} not found (--gt points elsewhere)")
    names = [v.name for v in split_info.videos]
    pred = Path(pred)
    bar = None
    if progress:
        # lazy: the progress bar is the CLI's only
        from tqdm import tqdm

        total = len(names) * (DAVIS_ANNOTATORS if fmt == "davis" else 1)
        bar = tqdm(total=total, unit="video", desc=f"eval {split}", file=sys.stderr)
    tick = None if bar is None else (lambda _name: bar.update(1))
    try:
        if fmt == "ytvos":
            scores = _score_ytvos(split_info, gt_root, pred / split, tick)
            write_tables(pred / split, split, scores.global_results(), scores.per_sequence())
            return {"all": scores.global_results()}
        base = _annotator_dirs(pred, split)
        rows: dict[str, dict[str, float]] = {}
        per_seq: list[list[tuple[str, float, float]]] = []
        for a in range(DAVIS_ANNOTATORS):
            scores: DavisScores = score_folder(gt_root, base / f"anno_{a}", names, tick)
            rows[f"anno_{a}"] = scores.global_results()
            per_seq.append(scores.per_sequence())
            write_tables(base / f"anno_{a}", split, rows[f"anno_{a}"], per_seq[-1])
    finally:
        if bar is not None:
            bar.close()
    columns = list(rows["anno_0"])
    rows["mean"] = {
        c: float(np.mean([rows[f"anno_{a}"][c] for a in range(DAVIS_ANNOTATORS)])) for c in columns
    }
    mean_seq = [
        (
            name,
            float(np.mean([p[i][1] for p in per_seq])),
            float(np.mean([p[i][2] for p in per_seq])),
        )
        for i, (name, _, _) in enumerate(per_seq[0])
    ]
    write_tables(base, split, rows["mean"], mean_seq)
    return rows


def _bar(enabled: bool, total: int, split: str):
    if not enabled:
        return None
    # lazy: the progress bar is the CLI's only
    from tqdm import tqdm

    return tqdm(total=total, unit="video", desc=f"eval {split}", file=sys.stderr)


def _tick(bar):
    return None if bar is None else (lambda _name: bar.update(1))


def _read_prediction(pred_root: Path, video: str, exp_id: str, frames) -> np.ndarray:
    masks = []
    for f in frames:
        path = pred_root / video / exp_id / f"{f}.png"
        if not path.is_file():
            raise DatasetError(f"video {video!r}: prediction {path} is missing")
        masks.append(read_label_png(path) > 127)
    shapes = {m.shape for m in masks}
    if len(shapes) > 1:
        raise DatasetError(
            f"video {video!r}: expression {exp_id}: predicted frames differ in size: "
            f"{sorted(shapes)}"
        )
    return np.stack(masks)


def _score_mevis(split: Split, mask_dict: dict, pred_root: Path, tick) -> DavisScores:
    """Per expression: J and F per frame of its mask against the union of its objects' masks;
    `DavisScores` averages them per expression, then over expressions."""
    objects = []
    for video in split.videos:
        size = mask_size(video, mask_dict)
        for e in video.expressions:
            pred = _read_prediction(pred_root, video.name, e.exp_id, video.frames)
            if size is not None and pred.shape[1:] != size:
                raise DatasetError(
                    f"video {video.name!r}: expression {e.exp_id} predicted at "
                    f"{pred.shape[2]}x{pred.shape[1]}, ground truth {size[1]}x{size[0]}"
                )
            target = expression_masks(video, e, mask_dict, pred.shape[1:])
            objects.append(
                ObjectScores(video.name, e.exp_id, jaccard(target, pred), f_measure(target, pred))
            )
        if tick is not None:
            tick(video.name)
    return DavisScores(objects)


def _score_ytvos(split: Split, gt_root: Path, pred_root: Path, tick):
    """Per expression: J and F of its mask against its object's ground truth, every frame."""
    objects = []
    for video in split.videos:
        gts = np.stack([read_label_png(gt_root / video.name / f"{f}.png") for f in video.frames])
        for e in video.expressions:
            if e.obj_id is None:
                raise DatasetError(
                    f"video {video.name!r}: expression {e.exp_id} has no obj_id; "
                    f"{split.name} has no public ground truth: submit "
                    "submission.zip to the Ref-YouTube-VOS server instead"
                )
            masks = []
            for f in video.frames:
                path = pred_root / video.name / e.exp_id / f"{f}.png"
                if not path.is_file():
                    raise DatasetError(f"video {video.name!r}: prediction {path} is missing")
                masks.append(read_label_png(path) > 127)
            target = gts == int(e.obj_id)
            pred = np.stack(masks)
            if pred.shape != target.shape:
                raise DatasetError(
                    f"video {video.name!r}: expression {e.exp_id} predicted at "
                    f"{pred.shape[1:]}, ground truth {target.shape[1:]}"
                )
            objects.append(
                ObjectScores(video.name, e.exp_id, jaccard(target, pred), f_measure(target, pred))
            )
        if tick is not None:
            tick(video.name)
    return DavisScores(objects)
