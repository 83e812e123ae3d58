"""Evaluate in the demo: a run's masks scored against uploaded ground truth (a masks zip,
`rvos.app.masks_zip`), with the DAVIS J and F of `rvos.eval.metrics` per frame and per
expression, the curves, the worst frames, and the numbers as JSON and CSV.

Per expression J and F are the means over the frames and J&F their average (the DAVIS
definitions, as `rvos evaluate` computes them); the clip's J, F and J&F are the means over the
expressions. In the JSON and the CSV frames are counted from 0, as result.json and the mask
files count them; the pictures count them from 1, as the page's other plots do.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rvos.app.inputs import Limits, RunSettings, check_video, check_work, parse_expressions
from rvos.app.masks_zip import MaskSet, MasksZip
from rvos.app.text import escape_markdown, plural
from rvos.eval.metrics import f_measure, jaccard
from rvos.viz.colors import palette
from rvos.viz.curves import plot_curves
from rvos.viz.draw import overlay_masks
from rvos.viz.figures import side_by_side

__all__ = [
    "WORST_FRAMES",
    "Evaluation",
    "clip_frames",
    "evaluate_result",
    "read_truth",
    "write_scores",
]


WORST_FRAMES = 3


MIN_PANEL_HEIGHT = 360  # small clips (the 256-pixel examples) are drawn larger, so titles fit


def _at_least(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h >= height:
        return image
    return cv2.resize(image, (round(w * height / h), height), interpolation=cv2.INTER_LINEAR)


def clip_frames(video: str | None, settings: RunSettings, limits: Limits) -> tuple[int, tuple]:
    """(processed frames, (H, W)) a run of ``video`` with ``settings`` will have, without
    running it (the frame count `rvos.app.runs.Run` computes), so that masks can be checked
    before a model runs. Raises `AppInputError`."""
    settings = settings.checked(limits)
    info = check_video(video, limits)
    settings = check_work(info, settings, limits)
    return min(info.sampled_num_frames(settings.fps), settings.max_frames), (info.height,
                                                                             info.width)


def read_truth(zip_path: str | None, expressions: str | Sequence[str], num_frames: int,
               size: tuple[int, int]) -> MaskSet:
    """The ground-truth masks of each expression from the zip at ``zip_path`` (checked against
    the clip's ``num_frames`` and ``size``). Raises `MasksZipError`."""
    texts = parse_expressions(expressions) if isinstance(expressions, str) else list(expressions)
    return MasksZip.open(zip_path, "ground truth").read(texts, num_frames, size)


@dataclass
class Evaluation:
    """A result scored against ground truth.

    Attributes:
        texts: the expressions.
        j / f: float64 ``[K, T]`` per-frame J and F (in [0, 1]).
        model: the scored model's name; truth: the ground-truth zip's name.
        threshold: the mask threshold of the scored masks.
    """

    texts: list[str]
    j: np.ndarray
    f: np.ndarray
    model: str
    truth: str
    threshold: float

    @property
    def num_frames(self) -> int:
        return int(self.j.shape[1])

    def per_expression(self) -> list[dict[str, float]]:
        """Per expression ``{"J", "F", "J&F"}`` in percent."""
        out = []
        for j, f in zip(self.j, self.f, strict=True):
            mj, mf = 100 * float(j.mean()), 100 * float(f.mean())
            out.append({"J": mj, "F": mf, "J&F": (mj + mf) / 2})
        return out

    def overall(self) -> dict[str, float]:
        """The clip's ``{"J", "F", "J&F"}`` in percent: means over the expressions."""
        rows = self.per_expression()
        mj = float(np.mean([r["J"] for r in rows]))
        mf = float(np.mean([r["F"] for r in rows]))
        return {"J": mj, "F": mf, "J&F": (mj + mf) / 2}

    def worst(self, n: int = WORST_FRAMES) -> list[tuple[int, int]]:
        """The ``n`` (expression, frame) pairs with the lowest per-frame (J + F) / 2 over all
        expressions, worst first (ties: the earlier expression and frame)."""
        score = (self.j + self.f) / 2
        order = np.argsort(score.ravel(), kind="stable")[:n]
        return [tuple(int(i) for i in np.unravel_index(o, score.shape)) for o in order]

    def to_json(self) -> dict[str, Any]:
        """The numbers (percent, two decimals): overall, per expression, and per frame."""
        def r(x: float) -> float:
            return round(float(x), 2)

        return {
            "model": self.model, "ground_truth": self.truth, "threshold": self.threshold,
            "num_frames": self.num_frames,
            "overall": {k: r(v) for k, v in self.overall().items()},
            "expressions": [
                {"index": k, "text": text, **{m: r(v) for m, v in row.items()},
                 "frames": [{"frame": t, "J": r(100 * j), "F": r(100 * f)}
                            for t, (j, f) in enumerate(zip(self.j[k], self.f[k], strict=True))]}
                for k, (text, row) in enumerate(zip(self.texts, self.per_expression(),
                                                    strict=True))],
            "worst_frames": [{"expression": k, "frame": t,
                              "J": r(100 * self.j[k, t]), "F": r(100 * self.f[k, t])}
                             for k, t in self.worst()],
        }

    def to_csv(self) -> str:
        """One row per expression and frame (``frame`` 0, 1, ...), then one per expression
        with ``frame`` "all" (its means), then the clip's ("all", "all"); percent."""
        buffer = io.StringIO()
        out = csv.writer(buffer, lineterminator="\n")
        out.writerow(["expression", "text", "frame", "J", "F", "J&F"])
        for k, text in enumerate(self.texts):
            for t in range(self.num_frames):
                j, f = 100 * self.j[k, t], 100 * self.f[k, t]
                out.writerow([k, text, t, f"{j:.2f}", f"{f:.2f}", f"{(j + f) / 2:.2f}"])
        for k, (text, row) in enumerate(zip(self.texts, self.per_expression(), strict=True)):
            out.writerow([k, text, "all", *(f"{row[m]:.2f}" for m in ("J", "F", "J&F"))])
        total = self.overall()
        out.writerow(["all", "", "all", *(f"{total[m]:.2f}" for m in ("J", "F", "J&F"))])
        return buffer.getvalue()

    def summary(self) -> str:
        """Markdown: the clip's J&F and a table per expression (the texts escaped)."""
        total = self.overall()
        lines = [f"**J&F {total['J&F']:.1f}** (J {total['J']:.1f}, F {total['F']:.1f}) · "
                 f"{escape_markdown(self.model)} against {escape_markdown(self.truth)} · "
                 f"{plural(self.num_frames, 'frame')} · threshold {self.threshold:g}", "",
                 "| expression | J | F | J&F |", "| --- | --- | --- | --- |"]
        for k, (text, row) in enumerate(zip(self.texts, self.per_expression(), strict=True)):
            lines.append(f"| {k + 1}: {escape_markdown(text)} | {row['J']:.1f} | "
                         f"{row['F']:.1f} | {row['J&F']:.1f} |")
        return "\n".join(lines)

    def render_curves(self, frame: float | None = None, width: int = 960) -> np.ndarray:
        """uint8 image: per-frame J (top) and F (bottom), one line per expression in its
        colour, and a vertical cursor at ``frame`` (counted from 0, as the explorer's slider;
        rounded to a whole frame and held to the clip's first and last; None: no cursor).
        Drawn from the stored scores alone, so moving the cursor costs no scoring."""
        colors = palette(len(self.texts))
        labels = [f"expression {k + 1}" for k in range(len(self.texts))]
        if frame is not None:
            frame = min(max(round(float(frame)), 0), max(self.num_frames - 1, 0))
        panels = [plot_curves(list(values), colors, labels, current_frame=frame,
                              size=(width, 200), y_label=name, title=f"{name} per frame")
                  for name, values in (("J", self.j), ("F", self.f))]
        return np.concatenate(panels, axis=0)

    def render_worst(self, prediction: Any, truth: MaskSet, frames: Any,
                     n: int = WORST_FRAMES) -> np.ndarray:
        """uint8 image: the ``n`` worst frames, one row each: the prediction's mask (titled
        with the frame, counted from 1, and the expression) next to the truth's (titled with the
        frame's J and F). ``prediction`` draws as a `VideoResult` (``[k].mask(t)``), ``frames``
        gives frame t (``frames.frame(t)``, e.g. a `FrameStore`)."""
        colors = palette(len(self.texts))
        rows = []
        for k, t in self.worst(n):
            image = frames.frame(t)
            panels = [_at_least(overlay_masks(image, [masks[k].mask(t)], colors=[colors[k]]),
                                MIN_PANEL_HEIGHT) for masks in (prediction, truth)]
            # Short titles: a 256-pixel clip's panel holds about 30 characters.
            titles = [f"frame {t + 1}, expression {k + 1}",
                      f"truth · J {100 * self.j[k, t]:.0f}, F {100 * self.f[k, t]:.0f}"]
            rows.append(side_by_side(panels, titles))
        width = max(r.shape[1] for r in rows)
        padded = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                  for r in rows]
        return np.concatenate(padded, axis=0)


def evaluate_result(prediction: Any, truth: MaskSet, *, model: str = "",
                    threshold: float = 0.5) -> Evaluation:
    """Score ``prediction`` (a `VideoResult`, or anything whose ``[k].union_masks()`` gives
    bool ``[H, W]`` masks: with several objects per expression their union, as MeViS scores)
    against ``truth``, expression by expression and frame by frame."""
    if len(prediction) != len(truth):
        raise ValueError(f"{len(prediction)} predicted expressions, {len(truth)} true")
    j_rows, f_rows = [], []
    for k in range(len(truth)):
        j, f = [], []
        # Frame by frame: a long HD clip's masks would not fit in memory all at once.
        for pred, true in zip(prediction[k].union_masks(), truth[k].masks(), strict=True):
            j.append(float(jaccard(true, pred)[0]))
            f.append(float(f_measure(true, pred)[0]))
        j_rows.append(j)
        f_rows.append(f)
    return Evaluation([t.text for t in truth], np.array(j_rows), np.array(f_rows), model,
                      truth.name, float(threshold))


def write_scores(evaluation: Evaluation, folder: str | Path) -> dict[str, Path]:
    """Write ``scores.json`` (`Evaluation.to_json`) and ``scores.csv`` (`Evaluation.to_csv`)
    into ``folder`` (created); returns their paths as ``json`` and ``csv``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "scores.json", "csv": out / "scores.csv"}
    paths["json"].write_text(json.dumps(evaluation.to_json(), ensure_ascii=False, indent=1))
    paths["csv"].write_text(evaluation.to_csv(), encoding="utf-8")
    return paths
