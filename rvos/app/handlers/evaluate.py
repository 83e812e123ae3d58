"""Evaluate: scores against uploaded ground truth, of the result the page shows (the Evaluate
button) or of a new run (/evaluate), and the curves' cursor."""

from __future__ import annotations

import contextlib
import tempfile

import gradio as gr

from rvos.app.evaluate import Evaluation, clip_frames, evaluate_result, read_truth, write_scores
from rvos.app.handlers.base import (
    DEFAULT_MODEL,
    DEVICE,
    MAX_FRAMES,
    Handlers,
    error_text,
    to_gr_error,
)
from rvos.app.handlers.segment import SegmentHandlers
from rvos.app.inputs import RUN_ERRORS, RunSettings
from rvos.app.session import Session, safe_view


class EvaluateHandlers(Handlers):
    """`evaluate` (the API's /evaluate): Segment's run, then its scores."""

    def __init__(self, segmenter: SegmentHandlers) -> None:
        super().__init__(segmenter.models, segmenter.limits, segmenter.device,
                         segmenter.work_dir)
        self.segment = segmenter.segment

    def evaluate(self, video: str | None, expressions: str, ground_truth: str | None,
                 model: str = DEFAULT_MODEL, threshold: float = 0.5, window: int = 36,
                 fps: float = 0.0, max_frames: int = MAX_FRAMES, short_side: int = 0,
                 device: str = DEVICE, precision: str = "fp32",
                 presence_threshold: float | None = None, objects: str = "best",
                 progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's idiom)
        """Segment the video as /segment does, then score the masks against ground_truth (a
        zip of per-frame PNG masks, one folder per expression or one label value per
        expression: README, The app) with the DAVIS J and F. presence_threshold and objects
        as for /segment (with objects=all each expression's objects are scored together).
        Returns the scores as JSON (overall, per expression, per frame, the worst frames; in
        percent) and the same numbers as a CSV file."""
        try:  # the zip and its fit to the clip are checked before the model runs
            truth = read_truth(ground_truth, expressions or "",
                               *clip_frames(video, RunSettings(
                                   threshold, window, fps, max_frames, short_side, device,
                                   precision), self.limits))
        except RUN_ERRORS as err:
            raise to_gr_error(err) from None
        session = None
        # A client that leaves closes this generator; closing the run's ends the model.
        with contextlib.closing(self.segment(video, expressions, model, threshold, window,
                                             fps, max_frames, short_side, device, precision,
                                             None, presence_threshold, objects,
                                             progress=progress)) as steps:
            for values in steps:
                if isinstance(values[4], Session):
                    session = values[4]
                else:
                    yield gr.skip(), gr.skip()
        try:
            scored = evaluate_result(session.exported, truth, model=session.exported.model_name
                                     or "", threshold=session.threshold)
            paths = write_scores(scored, tempfile.mkdtemp(prefix="evaluate-",
                                                          dir=self.work_dir))
        finally:
            session.close()  # its overlay and masks are not returned
        yield scored.to_json(), str(paths["csv"])


def evaluate_page(session: Session | None, ground_truth: str | None, frame: float = 0):
    """The current result (as shown: its threshold included) scored against the uploaded
    ground truth: summary, curves (the cursor at the explorer's ``frame``), worst frames,
    JSON, CSV, status line, and the scores kept for the cursor (`evaluation_curves`)."""
    keep = (gr.skip(),) * 5
    if session is None:
        return *keep, ("Segment the clip first: the evaluation scores the result shown "
                       "above."), gr.skip()
    try:
        result = session.exported
        truth = read_truth(ground_truth, [e.text for e in result], result.num_frames,
                           result.source.size)
        scored = evaluate_result(result, truth, model=result.model_name or "",
                                 threshold=session.threshold)
        paths = write_scores(scored, tempfile.mkdtemp(prefix="evaluate-",
                                                      dir=session.out_dir))
    except Exception as err:
        return *keep, error_text(err), gr.skip()
    return (scored.summary(), evaluation_curves(scored, frame),
            safe_view("Worst frames", scored.render_worst, result, truth, session.frames),
            scored.to_json(), str(paths["csv"]), "", scored)


def evaluation_curves(scored: Evaluation | None, frame: float | None):
    """The J and F curves with the cursor at the explorer's ``frame``, from the scores
    kept in the page's state (no model run, no scoring)."""
    if scored is None:
        return gr.skip()
    return safe_view("J and F per frame", scored.render_curves, frame)
