"""Compare: one clip through two models (or model A against another system's masks), for the
page's Compare button and /compare, and the comparison's views."""

from __future__ import annotations

import contextlib

import gradio as gr

from rvos.app.compare import Comparison, prepare_compare
from rvos.app.handlers.base import (
    DEFAULT_MODEL,
    DEVICE,
    MAX_FRAMES,
    Handlers,
    error_text,
    to_gr_error,
    try_or,
)
from rvos.app.inputs import RUN_ERRORS, RunSettings
from rvos.app.masks_zip import MasksZip
from rvos.app.session import safe_view
from rvos.app.zerogpu import max_seconds, on_gpu, run_duration
from rvos.result.video_result import VideoResult


class CompareHandlers(Handlers):
    """`compare` (the API's /compare) and `compare_page` (the Compare button)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.compare_steps = on_gpu(self._compare_steps, self._compare_duration)

    def _compare_duration(self, model_a, model_b, video, expressions, settings, masks_b=None):
        """Seconds to ask ZeroGPU for `_compare_steps`: both models' runs (one model's for
        masks, or for the same model twice)."""
        return min(max_seconds(), sum(
            run_duration(self.models, self.limits, m, video,
                         len((expressions or "").splitlines()), settings)
            for m in dict.fromkeys((model_a,) if masks_b else (model_a, model_b))))

    def _compare_steps(self, model_a, model_b, video, expressions, settings, masks_b=None):
        """The models' part of `compare` (on ZeroGPU inside ``spaces.GPU``): ``(fraction, text,
        None)`` per window, then ``(1.0, text, Comparison)``. With ``masks_b`` only model A
        runs."""
        run = prepare_compare(self.models, model_a, model_b, video, expressions, settings,
                              self.limits, self.work_dir, masks_b=masks_b)
        with contextlib.closing(run.steps()) as steps:
            for fraction, text in steps:
                yield fraction, text, None
        yield 1.0, "writing the overlays and the side-by-side video", None
        yield 1.0, "done", run.finish()

    def compare(self, video: str | None, expressions: str, model_a: str = DEFAULT_MODEL,
                model_b: str = DEFAULT_MODEL, threshold: float = 0.5, window: int = 36,
                fps: float = 0.0, max_frames: int = MAX_FRAMES, short_side: int = 0,
                device: str = DEVICE, precision: str = "fp32",
                previous: Comparison | None = None, masks_b: str | None = None,
                presence_threshold: float | None = None, objects: str = "best",
                progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's injection idiom)
        """The same video and expressions through model_a and model_b (the same model twice is
        allowed; a model that is not here yet is downloaded first, as for /segment).
        masks_b: optional zip of another system's per-frame mask PNGs for this clip, shown as
            B in place of model_b (README: The app, Evaluate and compare with masks).
        presence_threshold, objects: as for /segment (None: each model's own threshold;
            objects=all compares each side's union of objects).
        Returns each model's overlay video and result.json (none for masks), both overlays
        side by side in one video, and a summary."""
        settings = RunSettings(threshold, window, fps, max_frames, short_side, device,
                               precision, presence_threshold, objects)
        place = self.models.slot.place()
        progress(0.0, desc="checking the input and loading the models")
        try:
            # Models that are not here download before the one-run slot (as for segment).
            if masks_b:  # a bad zip fails before anything downloads or runs
                MasksZip.open(masks_b, "masks")
            keys = [model_a] if masks_b else [model_a, model_b]
            for text in self._before_the_slot(place, keys, video, expressions, settings,
                                              progress):
                yield (gr.skip(),) * 5 + (text, gr.skip())
            result = None
            with contextlib.closing(self.compare_steps(model_a, model_b, video, expressions,
                                                       settings, masks_b)) as steps:
                for fraction, text, done in steps:
                    progress(fraction, desc=text)
                    if done is not None:
                        result = done
                    else:
                        yield (gr.skip(),) * 5 + (text, gr.skip())
            for key, done in zip((model_a, model_b), result.results, strict=True):
                if isinstance(done, VideoResult):  # (another system's masks have no speed)
                    self._recorded(key, settings, done)
        except RUN_ERRORS as err:
            raise to_gr_error(err) from None
        finally:
            place.release()
        if previous is not None:  # (a State input: hidden from the API)
            previous.close()
        p = {k: str(v) for k, v in result.paths.items()}
        yield (p["overlay_a"], p["overlay_b"], p["result_a"], p.get("result_b"),
               p["side_by_side"], result.summary(), result)

    def compare_page(self, video, expressions, model_a=DEFAULT_MODEL, model_b=DEFAULT_MODEL,
                     threshold=0.5, window=36, fps=0.0, max_frames=MAX_FRAMES,
                     short_side=0, device=DEVICE, precision="fp32", previous=None,
                     masks_b=None, presence_threshold=None, objects="best",
                     progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's idiom)
        """`compare` for the page: a failure shows in Compare's status line (see
        `segment_page`); the last value says whether a new comparison came."""
        keep = (gr.skip(),) * 7
        yield *keep, "", False
        try:
            with contextlib.closing(self.compare(video, expressions, model_a, model_b,
                                                 threshold, window, fps, max_frames,
                                                 short_side, device, precision, previous,
                                                 masks_b, presence_threshold, objects,
                                                 progress=progress)) as steps:
                for values in steps:
                    yield *values, "", isinstance(values[6], Comparison)
        except Exception as err:
            yield *keep, error_text(err), False


def compare_explore(comparison: Comparison | None, fresh: bool = True):
    if comparison is None or not fresh:
        return (gr.skip(),) * 5
    last = comparison.num_frames - 1
    view, plot_a, plot_b = compare_views(comparison, 0, "0")
    return (gr.Slider(minimum=0, maximum=max(last, 1), value=0, step=1,
                      interactive=last > 0),
            try_or(gr.skip(), lambda: gr.Radio(choices=comparison.expression_choices(),
                                               value="0")),
            view, plot_a,
            # B's plot: its query scores, or for masks (no scores) A and B's agreement
            gr.Image(plot_b, label="B (masks): A–B IoU per frame" if comparison.b_is_masks
                     else "Model B: query scores over time"))


def compare_views(comparison, frame, expression):
    if comparison is None:
        return gr.skip(), gr.skip(), gr.skip()
    return (safe_view("A | B", comparison.render_frame, frame),
            safe_view("Model A's scores", comparison.render_scores, 0, expression, frame),
            safe_view("Model B's scores", comparison.render_scores, 1, expression, frame))
