"""Segment: the page's run button and /segment, re-thresholding a stored result, and the
slides and GIF exported from it."""

from __future__ import annotations

import contextlib

import gradio as gr

from rvos.app.handlers.base import (
    DEFAULT_MODEL,
    DEVICE,
    MAX_FRAMES,
    Handlers,
    error_text,
    to_gr_error,
)
from rvos.app.inputs import RUN_ERRORS, RunSettings
from rvos.app.runs import prepare_run, progress_text
from rvos.app.session import Session
from rvos.app.zerogpu import on_gpu, run_duration


class SegmentHandlers(Handlers):
    """`segment` (the API's /segment) and `segment_page` (the Segment button)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.segment_steps = on_gpu(self._segment_steps, self._segment_duration)

    def _segment_duration(self, model, video, expressions, settings):
        """Seconds to ask ZeroGPU for `_segment_steps` (`rvos.app.zerogpu.run_duration`)."""
        return run_duration(self.models, self.limits, model, video,
                            len((expressions or "").splitlines()), settings)

    def _segment_steps(self, model, video, expressions, settings):
        """The model's part of `segment` (on ZeroGPU inside ``spaces.GPU``): ``(fraction, text,
        None)`` per window, then ``(1.0, text, Session)``."""
        run = prepare_run(self.models, model, video, expressions, settings, self.limits,
                          self.work_dir)
        result = None
        with contextlib.closing(run.steps()) as steps:
            for step in steps:
                if step.result is not None:
                    result = step.result
                else:
                    yield step.fraction, progress_text(step), None
        try:
            yield 1.0, "finishing the overlay video and masks", None
        except GeneratorExit:  # stopped now: the outputs written so far go
            run.discard()
            raise
        yield 1.0, "done", run.finish(result)

    def segment(self, video: str | None, expressions: str, model: str = DEFAULT_MODEL,
                threshold: float = 0.5, window: int = 36, fps: float = 0.0,
                max_frames: int = MAX_FRAMES, short_side: int = 0, device: str = DEVICE,
                precision: str = "fp32", previous: Session | None = None,
                presence_threshold: float | None = None, objects: str = "best",
                progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's injection idiom)
        """Segment what each expression (one per line, at most 4) refers to in the video.
        precision: fp32 (default), a mode faster on this machine (bf16 / int8 where the CPU
            runs them natively, bf16 / fp16 on a GPU), or auto (the fastest).
        presence_threshold: 0 to 1; frames where the chosen query's score is below it get an
            empty mask ("not found"); None: the model's own (0 unless its config names one).
        objects: best (the paper's one query per expression) or all (every object the
            expression refers to, each kept apart in result.json).
        Returns the overlay video, the masks (zip of PNGs), result.json and a summary."""
        settings = RunSettings(threshold, window, fps, max_frames, short_side, device,
                               precision, presence_threshold, objects)
        place = self.models.slot.place()
        progress(0.0, desc="checking the input and loading the model")
        try:
            # A model that is not here downloads before this run takes the one-run slot.
            for text in self._before_the_slot(place, [model], video, expressions, settings,
                                              progress):
                yield gr.skip(), gr.skip(), gr.skip(), text, gr.skip()
            session = None
            # Stop cancels this generator; closing the steps then ends the model and ffmpeg.
            with contextlib.closing(self.segment_steps(model, video, expressions,
                                                       settings)) as steps:
                for fraction, text, done in steps:
                    progress(fraction, desc=text)
                    if done is not None:
                        session = done
                    else:
                        yield gr.skip(), gr.skip(), gr.skip(), text, gr.skip()
            self._recorded(model, settings, session.result)
        except RUN_ERRORS as err:
            raise to_gr_error(err) from None
        finally:
            place.release()
        if previous is not None:  # (a State input: hidden from the API)
            previous.close()
        yield (str(session.paths["overlay"]), str(session.paths["masks_zip"]),
               str(session.paths["result"]), session.summary(), session)

    def segment_page(self, video, expressions, model=DEFAULT_MODEL, threshold=0.5, window=36,
                     fps=0.0, max_frames=MAX_FRAMES, short_side=0, device=DEVICE,
                     precision="fp32", previous=None, presence_threshold=None, objects="best",
                     progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's idiom)
        """`segment` for the page: a failure shows in the status line (until the next action)
        instead of failing the event, which would leave a textless "Error" badge on every
        output. The last value says whether a new result came (the explorer then fills)."""
        keep = (gr.skip(),) * 5
        yield *keep, "", False
        try:
            with contextlib.closing(self.segment(video, expressions, model, threshold, window,
                                                 fps, max_frames, short_side, device, precision,
                                                 previous, presence_threshold, objects,
                                                 progress=progress)) as steps:
                for values in steps:
                    yield *values, "", isinstance(values[4], Session)
        except Exception as err:
            yield *keep, error_text(err), False


def rethreshold(session: Session | None, threshold: float, presence: float):
    if session is None:
        return (gr.skip(),) * 5 + ("",)
    try:
        session = session.rethreshold(float(threshold), float(presence))
    except Exception as err:
        return (gr.skip(),) * 5 + (error_text(err),)
    return (str(session.paths["overlay"]), str(session.paths["masks_zip"]),
            str(session.paths["result"]), session.summary(), session, "")


def export_slides(session: Session | None, columns: float):
    """figure.png and figure.pdf of the current result, for the download buttons (the GIF
    has its own button: it takes far longer)."""
    if session is None:
        return (gr.skip(), gr.skip(), "Segment a video first: the slides are drawn from "
                                      "its result.")
    try:
        paths = session.export_slides(columns)
    except Exception as err:
        return gr.skip(), gr.skip(), error_text(err)
    return (*(gr.DownloadButton(value=str(paths[k]), interactive=True)
              for k in ("figure_png", "figure_pdf")), "")


def export_gif(session: Session | None):
    """overlay.gif of the current result, for its download button."""
    if session is None:
        return gr.skip(), "Segment a video first: the GIF is drawn from its result."
    try:
        path = session.export_gif()
    except Exception as err:
        return gr.skip(), error_text(err)
    return gr.DownloadButton(value=str(path), interactive=True), ""
