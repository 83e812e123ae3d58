"""The page's events: which callback of `rvos.app.handlers` each component's event runs, with
which inputs and outputs, API name, visibility and concurrency. `wire` adds them in the order
Gradio numbers them, which the page's config and the API keep.

The API's endpoints are /segment, /compare, /evaluate and /word_importance (each a hidden
button's event, failing as API errors do); the page's own buttons run the ``*_page``
callbacks, which show errors as text under the button."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from rvos.app.handlers.base import try_or
from rvos.app.handlers.compare import CompareHandlers, compare_explore, compare_views
from rvos.app.handlers.evaluate import EvaluateHandlers, evaluate_page, evaluation_curves
from rvos.app.handlers.explorer import (
    attention,
    change_expression,
    decoder,
    explore,
    mask_views,
    preview,
    queries,
    views,
)
from rvos.app.handlers.menus import MenuHandlers
from rvos.app.handlers.segment import SegmentHandlers, export_gif, export_slides, rethreshold
from rvos.app.handlers.words import WordsHandlers, words_views
from rvos.app.inputs import Limits
from rvos.app.models import ModelCache, RunSlot

# Events that run a model wait for the one-run slot inside the handler (after any download, so
# a download never holds up another visitor's run): Gradio lets them all in, up to IN_FLIGHT.
RUNS = {"concurrency_limit": RunSlot.IN_FLIGHT, "concurrency_id": "runs"}
# Events that redraw a view from the stored result.
RENDER = {"api_visibility": "private", "show_progress": "hidden",
          "trigger_mode": "always_last", "concurrency_limit": 4}


def wire(demo: gr.Blocks, ui: SimpleNamespace, models: ModelCache, limits: Limits,
         device: str, work_dir: Path) -> None:
    """Every event of the page, ``ui`` holding its components by name (app.py's layout); the
    callbacks are this demo's (its models, limits, device and work folder)."""
    segmenter = SegmentHandlers(models, limits, device, work_dir)
    menus = MenuHandlers(models, limits, device, work_dir)
    run_event = _wire_segment(ui, segmenter)
    _wire_views(ui)
    _wire_menus(demo, ui, menus, models, run_event)
    _wire_compare(ui, CompareHandlers(models, limits, device, work_dir), menus)
    _wire_evaluate(ui, EvaluateHandlers(segmenter))
    _wire_words(ui, WordsHandlers(models, limits, device, work_dir))


def _wire_segment(ui: SimpleNamespace, segmenter: SegmentHandlers) -> gr.events.Dependency:
    """/segment, the Segment and Stop buttons, re-thresholding, the upload's preview; returns
    the Segment button's event."""
    outputs = [ui.video_out, ui.masks_zip, ui.result_json, ui.summary, ui.session]
    explorer = [ui.frame, ui.expression, ui.word, ui.level, ui.head, ui.decoder_query,
                ui.queries_img, ui.attention_img, ui.scores_img, ui.decoder_img,
                ui.layers_img, ui.qmasks_img]
    segment_in = [ui.video_in, ui.text, ui.model, ui.threshold, ui.window, ui.fps,
                  ui.max_frames, ui.short_side, ui.device_in, ui.precision, ui.session]
    ui.api_segment_btn.click(segmenter.segment, [*segment_in, ui.api_presence, ui.objects],
                             outputs, api_name="segment", **RUNS)
    run_event = ui.run_btn.click(
        segmenter.segment_page, [*segment_in, ui.presence, ui.objects],
        [*outputs, ui.status_md, ui.fresh], api_visibility="private", **RUNS)
    run_event.success(explore, [ui.session, ui.fresh], explorer, api_visibility="private")
    ui.stop_btn.click(lambda: ("Stopped. Press **Segment** to run again.", ""), None,
                      [ui.summary, ui.status_md], cancels=[run_event], api_visibility="private")
    gr.on([ui.threshold.release, ui.presence.release],
          rethreshold, [ui.session, ui.threshold, ui.presence], [*outputs, ui.status_md],
          api_visibility="private", concurrency_limit=1, concurrency_id="model"
          ).success(mask_views,
                    [ui.session, ui.expression, ui.frame, ui.sampling, ui.decoder_query],
                    [ui.queries_img, ui.decoder_img, ui.qmasks_img, ui.scores_img],
                    api_visibility="private")
    ui.video_in.change(preview, ui.video_in, ui.video_preview, api_visibility="private",
                       show_progress="hidden", trigger_mode="always_last")
    return run_event


def _wire_views(ui: SimpleNamespace) -> None:
    """The explorer's controls redraw its views; the slides' and GIF's exports."""
    views_out = [ui.queries_img, ui.attention_img, ui.scores_img, ui.decoder_img,
                 ui.layers_img, ui.qmasks_img]
    ui.frame.input(views, [ui.session, ui.expression, ui.frame, ui.word, ui.level, ui.head,
                           ui.sampling, ui.decoder_query], views_out, **RENDER)
    ui.expression.input(change_expression,
                        [ui.session, ui.expression, ui.frame, ui.level, ui.head, ui.sampling,
                         ui.decoder_query], [ui.word, *views_out], **RENDER)
    gr.on([ui.word.input, ui.level.input, ui.head.input], attention,
          [ui.session, ui.expression, ui.frame, ui.word, ui.level, ui.head], ui.attention_img,
          **RENDER)
    ui.sampling.input(queries, [ui.session, ui.expression, ui.frame, ui.sampling],
                      ui.queries_img, **RENDER)
    ui.decoder_query.input(decoder, [ui.session, ui.expression, ui.frame, ui.decoder_query],
                           ui.decoder_img, **RENDER)
    ui.export_btn.click(export_slides, [ui.session, ui.columns],
                        [ui.png_btn, ui.pdf_btn, ui.slides_status], api_visibility="private",
                        concurrency_limit=2)
    ui.gif_make_btn.click(export_gif, ui.session, [ui.gif_btn, ui.slides_status],
                          api_visibility="private", concurrency_limit=2)


def _wire_menus(demo: gr.Blocks, ui: SimpleNamespace, menus: MenuHandlers, models: ModelCache,
                run_event: gr.events.Dependency) -> None:
    """The run-time estimate and its fit buttons; the model menus' downloads, notes and
    labels; the presence slider following the model."""
    # Choosing a model that is not here downloads it; no concurrency limit, so that a long
    # download holds up no other visitor (sessions choosing the same model share it).
    all_menus = [ui.model, ui.model_a, ui.model_b]
    choice = {"api_visibility": "private", "show_progress": "hidden",
              "concurrency_limit": None}
    # The run-time estimate follows every input it depends on (its own queue: measuring a
    # new model's speed must not wait behind someone's run).
    estimate_in = [ui.video_in, ui.text, ui.model, ui.window, ui.fps, ui.max_frames,
                   ui.short_side, ui.device_in, ui.precision]
    estimate_out = [ui.estimate_md, ui.fit_fps_btn, ui.fit_frames_btn, ui.fits]
    guess = {"api_visibility": "private", "show_progress": "hidden",
             "trigger_mode": "always_last", "concurrency_limit": 1,
             "concurrency_id": "estimate"}
    gr.on([ui.video_in.change, ui.text.change, ui.window.release, ui.fps.change,
           ui.max_frames.change, ui.short_side.release, ui.device_in.change,
           ui.precision.change], menus.estimate, estimate_in, estimate_out, **guess)
    ui.fit_fps_btn.click(lambda f: f[0], ui.fits, ui.fps, api_visibility="private")
    ui.fit_frames_btn.click(lambda f: f[1], ui.fits, ui.max_frames, api_visibility="private")
    ui.model.input(menus.choose, ui.model, [ui.model_note, *all_menus], **choice).then(
        menus.estimate, estimate_in, estimate_out, **guess)
    # The presence slider follows the model: each model's own threshold.
    ui.model.input(lambda m: try_or(gr.skip(), models.presence_threshold, m), ui.model,
                   ui.presence, api_visibility="private", show_progress="hidden")
    ui.model_a.input(menus.choose_a, ui.model_a, [ui.compare_note, *all_menus], **choice)
    ui.model_b.input(menus.choose_b, ui.model_b, [ui.compare_note, *all_menus], **choice)
    # Labels say which models are on this machine: refreshed for every visitor, and after a
    # run that may have downloaded one.
    demo.load(menus.menu_updates, None, all_menus, api_visibility="private",
              show_progress="hidden")
    run_event.success(menus.menu_updates, None, all_menus, api_visibility="private",
                      show_progress="hidden")


def _wire_compare(ui: SimpleNamespace, comparer: CompareHandlers, menus: MenuHandlers) -> None:
    """/compare, the Compare button, and the comparison's views."""
    # New parameters last: /compare's earlier ones keep their places (State is not one).
    compare_in = [ui.video_in, ui.text, ui.model_a, ui.model_b, ui.threshold, ui.window,
                  ui.fps, ui.max_frames, ui.short_side, ui.device_in, ui.precision,
                  ui.comparison, ui.masks_b_in]
    compare_out = [ui.overlay_a, ui.overlay_b, ui.result_a, ui.result_b, ui.side_video,
                   ui.compare_summary, ui.comparison]
    ui.api_compare_btn.click(comparer.compare, [*compare_in, ui.api_presence, ui.objects],
                             compare_out, api_name="compare", **RUNS)
    compare_event = ui.compare_btn.click(
        comparer.compare_page, [*compare_in, ui.presence, ui.objects],
        [*compare_out, ui.compare_status, ui.compare_fresh],
        api_visibility="private", **RUNS)
    compare_event.success(compare_explore, [ui.comparison, ui.compare_fresh],
                          [ui.compare_frame, ui.compare_expr, ui.compare_img, ui.scores_a,
                           ui.scores_b], api_visibility="private")
    compare_event.success(menus.menu_updates, None, [ui.model, ui.model_a, ui.model_b],
                          api_visibility="private", show_progress="hidden")
    ui.stop_btn.click(None, None, None, cancels=[compare_event], api_visibility="private")
    gr.on([ui.compare_frame.input, ui.compare_expr.input], compare_views,
          [ui.comparison, ui.compare_frame, ui.compare_expr],
          [ui.compare_img, ui.scores_a, ui.scores_b], **RENDER)


def _wire_evaluate(ui: SimpleNamespace, evaluator: EvaluateHandlers) -> None:
    """Evaluate: the page scores the result it shows; /evaluate runs the model first."""
    api_evaluate_btn = gr.Button(visible=False)
    api_evaluate_btn.click(
        evaluator.evaluate, [ui.video_in, ui.text, ui.truth_in, ui.model, ui.threshold,
                             ui.window, ui.fps, ui.max_frames, ui.short_side, ui.device_in,
                             ui.precision, ui.api_presence, ui.objects],
        [ui.scores_json, ui.scores_csv], api_name="evaluate", **RUNS)
    ui.evaluate_btn.click(evaluate_page, [ui.session, ui.truth_in, ui.frame],
                          [ui.evaluate_summary, ui.curves_img, ui.worst_img, ui.scores_json,
                           ui.scores_csv, ui.evaluate_status, ui.evaluation],
                          api_visibility="private", concurrency_limit=2)
    # The curves' cursor follows the explorer's frame slider: moved by hand, or put back
    # to the first frame by a new result (change, not input, sees both).
    ui.frame.change(evaluation_curves, [ui.evaluation, ui.frame], ui.curves_img, **RENDER)


def _wire_words(ui: SimpleNamespace, words: WordsHandlers) -> None:
    """/word_importance, the section's button, and its views."""
    words_settings = [ui.model, ui.threshold, ui.window, ui.fps, ui.max_frames, ui.short_side,
                      ui.device_in, ui.precision, ui.words_swap]
    ui.api_words_btn.click(words.word_importance, [ui.video_in, ui.words_text, *words_settings],
                           ui.words_json_out, api_name="word_importance", **RUNS)
    words_event = ui.words_btn.click(
        words.words_page, [ui.video_in, ui.text, ui.words_text, *words_settings],
        [ui.words_status, ui.words_chart, ui.words_word, ui.words_frame, ui.words_img,
         ui.words_summary, ui.words_state], api_visibility="private", **RUNS)
    ui.stop_btn.click(None, None, None, cancels=[words_event], api_visibility="private")
    gr.on([ui.words_word.input, ui.words_frame.input], words_views,
          [ui.words_state, ui.words_word, ui.words_frame], [ui.words_chart, ui.words_img],
          **RENDER)
