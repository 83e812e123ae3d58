"""The same clip and expressions through two models side by side, or through one model next
to another system's masks (a zip, `rvos.app.masks_zip`, in place of model B)."""

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

from rvos.app.inputs import AppInputError, Limits, RunSettings
from rvos.app.masks_zip import MaskSet, MasksZip
from rvos.app.models import ModelCache
from rvos.app.runs import Run, prepare_run, progress_text
from rvos.app.session import FrameStore, _expression_choices, _fit, _index, _safe_name
from rvos.app.text import escape_markdown, plural
from rvos.eval.metrics import jaccard
from rvos.media.video import VideoWriter
from rvos.result import exports
from rvos.result.video_result import VideoResult
from rvos.result.writer import write_outputs
from rvos.viz.colors import palette
from rvos.viz.curves import plot_curves

__all__ = ["CompareRun", "Comparison", "prepare_compare"]


MASKS_PREFIX = "masks: "  # model B's key when B is a masks zip: "masks: <zip name>"


def _titles(keys: tuple[str, str]) -> tuple[str, str]:
    """The two panels' titles: ``"A: <model>"``, ``"B: <model>"``."""
    return f"A: {keys[0]}", f"B: {keys[1]}"


def _pooled_iou(a, b) -> float | None:
    """Intersection over union of two expressions' answers (``union_masks``: with several
    objects their union) pooled over all frames (None when neither has any object pixel)."""
    inter = union = 0
    for ma, mb in zip(a.union_masks(), b.union_masks(), strict=True):
        inter += int(np.count_nonzero(ma & mb))
        union += int(np.count_nonzero(ma | mb))
    return inter / union if union else None


@dataclass
class Comparison:
    """The same clip and expressions through two models (the app's Compare view).

    Attributes:
        results: the `VideoResult` of model A and of model B (the same object twice when the
            same model was asked for twice: it ran once), or, for B, the `MaskSet` of another
            system's masks.
        keys: the two models' menu keys (B's is ``"masks: <zip name>"`` for masks).
        frames: the processed frames (`FrameStore`), shared by both.
        out_dir: the folder of the written files.
        paths: ``overlay_a``, ``overlay_b`` (each model's overlay.mp4), ``result_a``,
            ``result_b`` (their result.json) and ``side_by_side`` (both overlays in one video).
        notes: remarks for the summary.
    """

    results: tuple[VideoResult, VideoResult | MaskSet]
    keys: tuple[str, str]
    frames: FrameStore
    out_dir: Path
    paths: dict[str, Path]
    notes: list[str] = field(default_factory=list)
    _agreement: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        return self.results[0].num_frames

    @property
    def titles(self) -> tuple[str, str]:
        return _titles(self.keys)

    @property
    def b_is_masks(self) -> bool:
        """Whether B is another system's masks (no scores) rather than a model."""
        return isinstance(self.results[1], MaskSet)

    def agreement(self) -> np.ndarray:
        """float64 ``[K, T]``: per expression and frame, the IoU of A's and B's answers
        (``union_masks``: with several objects their union; 1 where both are empty, as DAVIS's
        J counts it)."""
        if self._agreement is None:
            a, b = self.results
            self._agreement = np.array([
                [float(jaccard(ma, mb)[0]) for ma, mb in zip(ea.union_masks(),
                                                             eb.union_masks(), strict=True)]
                for ea, eb in zip(a, b, strict=True)])
        return self._agreement

    def _several_objects(self) -> bool:
        return any(getattr(e, "extra_objects", None) for r in self.results for e in r)

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
        if isinstance(result, MaskSet):  # no scores: when A and B agree, frame by frame
            iou = self.agreement()
            labels = [f"expression {k + 1}" for k in range(len(iou))]
            return plot_curves(list(iou), palette(len(iou)), labels,
                               current_frame=self._frame(frame), size=(640, 240),
                               y_label="IoU", title="A-B IoU per frame")
        k = _index(expression, len(result))
        return result.render_scores(k, self._frame(frame))

    def summary(self) -> str:
        """Markdown: the two runs and, per expression, each model's score and where they
        agree."""
        a, b = self.results
        ta, tb = (escape_markdown(t) for t in self.titles)
        # The same model twice ran once: one time, said once.
        if self.b_is_masks:
            times = f"A {a.timings['total_s']:.1f} s, B read from the zip"
        elif a is b:
            times = (f"run once in {a.timings['total_s']:.1f} s (the same model twice: shown "
                     "twice)")
        else:
            times = f"A {a.timings['total_s']:.1f} s, B {b.timings['total_s']:.1f} s"
        lines = [f"**{ta}** vs **{tb}** · {plural(self.num_frames, 'frame')} · {times}", "",
                 "Score: the chosen query's mean score"
                 + (" (masks from a zip have none)" if self.b_is_masks else "")
                 + "; IoU: how much the two masks overlap, pooled over all frames"
                 + (" (with several objects per expression, each side's objects together)"
                    if self._several_objects() else "") + ".", "",
                 "| expression | A score | B score | A–B IoU |",
                 "| --- | --- | --- | --- |"]
        for ea, eb in zip(a, b, strict=True):
            iou = _pooled_iou(ea, eb)
            score_b = "–" if self.b_is_masks else f"{float(eb.chosen_scores.mean()):.2f}"
            lines.append(f"| {escape_markdown(ea.text)} | {float(ea.chosen_scores.mean()):.2f} | "
                         f"{score_b} | "
                         f"{'no object in either' if iou is None else f'{iou:.2f}'} |")
        for note in self.notes:
            lines += ["", note]  # the app's own words
        return "\n".join(lines)


class CompareRun:
    """Two `Run` s of the same clip and expressions (one when both models are the same, or
    when B is a `MaskSet`): iterate `steps`, then call `finish`. Made by `prepare_compare`."""

    def __init__(self, runs: list[Run], keys: tuple[str, str], work_dir: Path,
                 masks_b: MaskSet | None = None) -> None:
        self.runs, self.keys, self.work_dir = runs, keys, work_dir
        self.masks_b = masks_b
        self.results: list[VideoResult] = []

    def steps(self) -> Iterator[tuple[float | None, str]]:
        """``(fraction done, what is running)`` after every window of either model. Closing the
        iterator early stops the model and the video reader."""
        n = len(self.runs)
        self.results = []
        for i, (run, key) in enumerate(zip(self.runs, self.keys, strict=False)):
            label = "AB"[i] if n > 1 or self.masks_b is not None else "A = B"
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
        results = (self.results[0], self.results[-1] if self.masks_b is None else self.masks_b)
        if isinstance(results[1], MaskSet):
            results[1].source = results[0].source
            if results[1].size != results[0].source.size or (
                    results[1].num_frames != results[0].num_frames):
                raise AppInputError(f"{results[1].name} has masks for "
                                    f"{plural(results[1].num_frames, 'frame')}, the clip gave "
                                    f"{plural(results[0].num_frames, 'frame')} of another "
                                    "size or count")
        out = Path(tempfile.mkdtemp(prefix="compare-", dir=self.work_dir))
        video = self.runs[0].video
        paths: dict[str, Path] = {}
        frames = FrameStore.from_result(results[0], video)
        for side, key, result in zip("ab", self.keys, results, strict=True):
            if isinstance(result, MaskSet):  # no result.json: nothing was predicted
                paths["overlay_b"] = _write_overlay(result, frames, out / f"B_{_safe_name(key)}"
                                                    ".mp4")
                continue
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
        paths["side_by_side"] = exports.write_side_by_side(
            results, _titles(self.keys), out / "side_by_side.mp4", frames)
        notes = self.runs[0].notes(results[0])
        return Comparison(results, self.keys, frames, out, paths, notes)


def _write_overlay(masks: MaskSet, frames: FrameStore, path: Path) -> Path:
    """``masks`` drawn over the clip's frames as an H.264 video (model B's overlay)."""
    with VideoWriter(path, masks.source.frame_rate) as writer:
        for t in range(masks.num_frames):
            writer.write(masks.render_overlay(t, frames.frame(t)))
    return path


def prepare_compare(models: ModelCache, model_a: str | None, model_b: str | None,
                    video: str | None, expressions: str | None, settings: RunSettings,
                    limits: Limits, work_dir: str | Path, *,
                    on_download: Callable[[Any], None] | None = None,
                    masks_b: str | Path | None = None) -> CompareRun:
    """Check every input and build the run(s) of the same clip and expressions through
    ``model_a`` and ``model_b`` (the same model twice runs once), or, with ``masks_b`` (the
    path of a zip of another system's masks for this clip), through ``model_a`` only, B being
    those masks (``model_b`` is then not used): their layout, frame count and size are checked
    before any model runs. A model whose weights are not here yet is downloaded first, as in
    `prepare_run`. Raises `AppInputError`."""
    if masks_b:
        masks = MasksZip.open(masks_b, "masks")  # a bad zip fails before the model loads
        key_a = models.choice(model_a).key
        run = prepare_run(models, key_a, video, expressions, settings, limits, work_dir,
                          on_download=on_download, details=False)
        mask_set = masks.read(run.expressions, run.num_frames, (run.info.height,
                                                                run.info.width))
        return CompareRun([run], (key_a, MASKS_PREFIX + masks.name), Path(work_dir), mask_set)
    key_a, key_b = models.choice(model_a).key, models.choice(model_b).key
    runs = [prepare_run(models, key_a, video, expressions, settings, limits, work_dir,
                        on_download=on_download, details=False)]
    if key_b != key_a:
        runs.append(prepare_run(models, key_b, video, expressions, settings, limits, work_dir,
                                on_download=on_download, details=False))
    return CompareRun(runs, (key_a, key_b), Path(work_dir))
