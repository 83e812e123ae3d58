"""The same clip and expressions through two models, side by side."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rvos.app.inputs import Limits, RunSettings
from rvos.app.models import ModelCache
from rvos.app.runs import Run, prepare_run, progress_text
from rvos.app.session import FrameStore, _expression_choices, _fit, _index, _safe_name
from rvos.app.text import escape_markdown, plural
from rvos.result import exports
from rvos.result.video_result import VideoResult
from rvos.result.writer import write_outputs

__all__ = ["CompareRun", "Comparison", "prepare_compare"]


def _titles(keys: tuple[str, str]) -> tuple[str, str]:
    """The two panels' titles: ``"A: <model>"``, ``"B: <model>"``."""
    return f"A: {keys[0]}", f"B: {keys[1]}"


def _pooled_iou(a, b) -> float | None:
    """Intersection over union of two expressions' masks pooled over all frames (None when
    neither has any object pixel)."""
    inter = union = 0
    for ma, mb in zip(a.masks(), b.masks(), strict=True):
        inter += int(np.count_nonzero(ma & mb))
        union += int(np.count_nonzero(ma | mb))
    return inter / union if union else None


@dataclass
class Comparison:
    """The same clip and expressions through two models (the app's Compare view).

    Attributes:
        results: the `VideoResult` of model A and of model B (the same object twice when the
            same model was asked for twice: it ran once).
        keys: the two models' menu keys.
        frames: the processed frames (`FrameStore`), shared by both.
        out_dir: the folder of the written files.
        paths: ``overlay_a``, ``overlay_b`` (each model's overlay.mp4), ``result_a``,
            ``result_b`` (their result.json) and ``side_by_side`` (both overlays in one video).
        notes: remarks for the summary.
    """

    results: tuple[VideoResult, VideoResult]
    keys: tuple[str, str]
    frames: FrameStore
    out_dir: Path
    paths: dict[str, Path]
    notes: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return self.results[0].num_frames

    @property
    def titles(self) -> tuple[str, str]:
        return _titles(self.keys)

    def close(self) -> None:
        shutil.rmtree(self.out_dir, ignore_errors=True)

    def expression_choices(self) -> list[tuple[str, str]]:
        return _expression_choices(self.results[0])

    def _frame(self, frame: int | float | None) -> int:
        return _index(frame, self.num_frames)

    def render_frame(self, frame: int) -> np.ndarray:
        """uint8 image: frame ``frame`` with model A's masks next to model B's."""
        t = self._frame(frame)
        return _fit(exports.compare_frame(self.results, self.titles, t, self.frames.frame(t)))

    def render_scores(self, which: int, expression: int, frame: int) -> np.ndarray:
        """uint8 ``[240, 640, 3]``: model ``which``'s (0: A, 1: B) query scores over time for
        ``expression``, cursor at ``frame``."""
        result = self.results[1 if which else 0]
        k = _index(expression, len(result))
        return result.render_scores(k, self._frame(frame))

    def summary(self) -> str:
        """Markdown: the two runs and, per expression, each model's score and where they
        agree."""
        a, b = self.results
        ta, tb = (escape_markdown(t) for t in self.titles)
        # The same model twice ran once: one time, said once.
        times = (f"run once in {a.timings['total_s']:.1f} s (the same model twice: shown "
                 "twice)" if a is b else
                 f"A {a.timings['total_s']:.1f} s, B {b.timings['total_s']:.1f} s")
        lines = [f"**{ta}** vs **{tb}** · {plural(self.num_frames, 'frame')} · {times}", "",
                 "Score: the chosen query's mean score; IoU: how much the two models' masks "
                 "overlap, pooled over all frames.", "",
                 "| expression | A score | B score | A–B IoU |",
                 "| --- | --- | --- | --- |"]
        for ea, eb in zip(a, b, strict=True):
            iou = _pooled_iou(ea, eb)
            lines.append(f"| {escape_markdown(ea.text)} | {float(ea.chosen_scores.mean()):.2f} | "
                         f"{float(eb.chosen_scores.mean()):.2f} | "
                         f"{'no object in either' if iou is None else f'{iou:.2f}'} |")
        for note in self.notes:
            lines += ["", note]  # the app's own words
        return "\n".join(lines)


class CompareRun:
    """Two `Run` s of the same clip and expressions (one when both models are the same):
    iterate `steps`, then call `finish`. Made by `prepare_compare`."""

    def __init__(self, runs: list[Run], keys: tuple[str, str], work_dir: Path) -> None:
        self.runs, self.keys, self.work_dir = runs, keys, work_dir
        self.results: list[VideoResult] = []

    def steps(self) -> Iterator[tuple[float | None, str]]:
        """``(fraction done, what is running)`` after every window of either model. Closing the
        iterator early stops the model and the video reader."""
        n = len(self.runs)
        self.results = []
        for i, (run, key) in enumerate(zip(self.runs, self.keys, strict=False)):
            label = "AB"[i] if n > 1 else "A = B"
            with contextlib.closing(run.steps()) as steps:
                for step in steps:
                    part = step.fraction
                    fraction = None if part is None else (i + part) / n
                    yield fraction, f"model {label} ({key}): {progress_text(step)}"
                    if step.result is not None:
                        self.results.append(step.result)

    def finish(self) -> Comparison:
        """Write each model's overlay.mp4 and result.json and the side-by-side video into a
        new folder of ``work_dir``."""
        if len(self.results) != len(self.runs):
            raise RuntimeError("finish() before steps() ran to the end")
        for run, result in zip(self.runs, self.results, strict=True):
            if run.on_finish is not None:
                run.on_finish(result)
        results = (self.results[0], self.results[-1])
        out = Path(tempfile.mkdtemp(prefix="compare-", dir=self.work_dir))
        video = self.runs[0].video
        paths: dict[str, Path] = {}
        for side, key, result in zip("ab", self.keys, results, strict=True):
            name = f"{side.upper()}_{_safe_name(key)}"
            written = write_outputs(result, out / side, video_path=video, masks=False)
            overlay = written["overlay"].rename(out / f"{name}.mp4")
            doc = json.loads(written["result"].read_text())
            doc["outputs"] = {"overlay": overlay.name}
            written["result"].unlink()
            (out / side).rmdir()
            paths[f"overlay_{side}"] = overlay
            paths[f"result_{side}"] = out / f"{name}.json"
            paths[f"result_{side}"].write_text(json.dumps(doc, separators=(",", ":")))
        frames = FrameStore.from_result(results[0], video)
        paths["side_by_side"] = exports.write_side_by_side(
            results, _titles(self.keys), out / "side_by_side.mp4", frames)
        notes = self.runs[0].notes(results[0])
        return Comparison(results, self.keys, frames, out, paths, notes)


def prepare_compare(models: ModelCache, model_a: str | None, model_b: str | None,
                    video: str | None, expressions: str | None, settings: RunSettings,
                    limits: Limits, work_dir: str | Path, *,
                    on_download: Callable[[Any], None] | None = None) -> CompareRun:
    """Check every input and build the run(s) of the same clip and expressions through
    ``model_a`` and ``model_b`` (the same model twice runs once). A model whose weights are not
    here yet is downloaded first, as in `prepare_run`. Raises `AppInputError`."""
    key_a, key_b = models.choice(model_a).key, models.choice(model_b).key
    runs = [prepare_run(models, key_a, video, expressions, settings, limits, work_dir,
                        on_download=on_download, details=False)]
    if key_b != key_a:
        runs.append(prepare_run(models, key_b, video, expressions, settings, limits, work_dir,
                                on_download=on_download, details=False))
    return CompareRun(runs, (key_a, key_b), Path(work_dir))
