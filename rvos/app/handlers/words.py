"""Which words matter: one expression run again without each word (or with a colour or object
word swapped), for the section's button and /word_importance, and its views."""

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
from rvos.app.session import safe_view
from rvos.app.words import WordView, pick_expression, prepare_words
from rvos.app.words import to_json as words_json
from rvos.app.zerogpu import on_gpu, run_duration


class WordsHandlers(Handlers):
    """`word_importance` (the API's /word_importance) and `words_page` (the section's
    button)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.words_steps = on_gpu(self._words_steps, self._words_duration)

    def _words_duration(self, model, video, expression, settings, swap):
        """Seconds to ask ZeroGPU for `_words_steps`: the sentence, and each word's variants."""
        return run_duration(self.models, self.limits, model, video,
                            1 + 2 * len(expression.split()), settings)

    def _words_steps(self, model, video, expression, settings, swap):
        """The model's part of word importance (on ZeroGPU inside ``spaces.GPU``):
        ``(fraction, text, None)`` per window, then ``(1.0, text, WordView)``."""
        run = prepare_words(self.models, model, video, expression, settings, self.limits, swap)
        with contextlib.closing(run.steps()) as steps:
            for fraction, text in steps:
                yield fraction, text, run.view

    def _words(self, video, expression, model, settings, swap, progress):
        """Check, download, wait for the one-run slot, run: yields a status text per step,
        then the `WordView`."""
        place = self.models.slot.place()
        progress(0.0, desc="checking the input and loading the model")
        try:
            for text in self._before_the_slot(place, [model], video, expression, settings,
                                              progress):
                yield text
            view = None
            with contextlib.closing(self.words_steps(model, video, expression, settings,
                                                     bool(swap))) as steps:
                for fraction, text, done in steps:
                    progress(fraction, desc=text)
                    view = done or view
                    if done is None:
                        yield text
        finally:
            place.release()
        yield view

    def word_importance(self, video: str | None, expression: str, model: str = DEFAULT_MODEL,
                        threshold: float = 0.5, window: int = 36, fps: float = 0.0,
                        max_frames: int = MAX_FRAMES, short_side: int = 0,
                        device: str = DEVICE, precision: str = "fp32", swap: bool = False,
                        progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's idiom)
        """How much each word of one expression changes the answer: the expression run again
        without each word (and, with swap, with each colour or noun word replaced by another of
        its kind). Returns JSON: {expression, model, frames, score, words: [{word, index,
        variant, iou_change, score_change}], swaps: [...], seconds, windows}; iou_change is 1 -
        IoU with the full sentence's masks over the clip, score_change the variant's mean
        chosen-query score minus the full sentence's."""
        settings = RunSettings(threshold, window, fps, max_frames, short_side, device,
                               precision)
        try:
            text = pick_expression(expression, None)
            for step in self._words(video, text, model, settings, swap, progress):
                if isinstance(step, WordView):
                    return words_json(step)
        except RUN_ERRORS as err:
            raise to_gr_error(err) from None
        raise gr.Error("the word importance run ended without a result", print_exception=False)

    def words_page(self, video, expressions, expression, model=DEFAULT_MODEL, threshold=0.5,
                   window=36, fps=0.0, max_frames=MAX_FRAMES, short_side=0,
                   device=DEVICE, precision="fp32", swap=False,
                   progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's idiom)
        """The section's button: the chart, the word menu, the frame slider and view, the
        summary; a failure shows in the section's status line."""
        keep = (gr.skip(),) * 6
        yield "", *keep
        settings = RunSettings(threshold, window, fps, max_frames, short_side, device,
                               precision)
        view = None
        try:
            text = pick_expression(expression, expressions)
            for step in self._words(video, text, model, settings, swap, progress):
                if isinstance(step, WordView):
                    view = step
                else:
                    yield step, *keep
        except Exception as err:
            yield error_text(err), *keep
            return
        if view is None:
            return
        last = view.num_frames - 1
        first = "0" if view.answer.variants else None
        yield ("", safe_view("Word importance", view.render_chart, first),
               gr.Radio(choices=view.choices(), value=first),
               gr.Slider(minimum=0, maximum=max(last, 1), value=0, step=1,
                         interactive=last > 0),
               safe_view("Changed mask", view.render_frame, first, 0), view.summary(), view)


def words_views(view, variant, frame):
    if view is None:
        return gr.skip(), gr.skip()
    return (safe_view("Word importance", view.render_chart, variant),
            safe_view("Changed mask", view.render_frame, variant, frame))
