"""The frame explorer: its controls for a new result and its views, each drawn from the stored
result (no model run) and each guarded (`rvos.app.session.safe_view`), and the upload's
preview."""

from __future__ import annotations

import gradio as gr

from rvos.app.handlers.base import try_or
from rvos.app.session import Session, first_frame, safe_view


def explore(session: Session | None, fresh: bool = True):
    """Explorer controls for a new result, and its views at frame 0 of expression 1. Each
    view and control is guarded: one that fails shows a notice (views) or stays as it was
    (controls), and every other one still fills."""
    if session is None or not fresh:
        return (gr.skip(),) * 12
    levels = try_or([], session.level_choices)
    level = levels[0][1] if levels else None
    heads = try_or([("mean of heads", "mean")], session.head_choices)
    last = session.num_frames - 1
    return (gr.Slider(minimum=0, maximum=max(last, 1), value=0, step=1,
                      interactive=last > 0),
            try_or(gr.skip(), lambda: gr.Radio(choices=session.expression_choices(),
                                               value="0")),
            try_or(gr.skip(), lambda: gr.Radio(choices=session.word_choices(0),
                                               value="all")),
            gr.Dropdown(choices=levels, value=level),
            gr.Dropdown(choices=heads, value="mean", interactive=len(heads) > 1),
            try_or(gr.skip(), lambda: gr.Radio(choices=session.decoder_query_choices(),
                                               value="all")),
            *views(session, 0, 0, "all", level, "mean", False, "all"))


def decoder_views(session, expression, frame, query):
    if session is None:
        return gr.skip(), gr.skip(), gr.skip()
    return (safe_view("Decoder", session.render_decoder, expression, frame, query),
            safe_view("Layer scores", session.render_layer_scores, expression, frame),
            safe_view("Every query's mask", session.render_query_masks, expression, frame))


def views(session, expression, frame, word, level, head, sampling, query):
    if session is None:
        return (gr.skip(),) * 6
    return (queries(session, expression, frame, sampling),
            attention(session, expression, frame, word, level, head),
            safe_view("Scores", session.render_scores, expression, frame),
            *decoder_views(session, expression, frame, query))


def change_expression(session, expression, frame, level, head, sampling, query):
    if session is None:
        return (gr.skip(),) * 7
    return (try_or(gr.skip(), lambda: gr.Radio(choices=session.word_choices(expression),
                                               value="all")),
            *views(session, expression, frame, "all", level, head, sampling, query))


def decoder(session, expression, frame, query):
    if session is None:
        return gr.skip()
    return safe_view("Decoder", session.render_decoder, expression, frame, query)


def mask_views(session, expression, frame, sampling, query):
    """The views that draw masks or presence, after a threshold changed."""
    if session is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return (queries(session, expression, frame, sampling),
            decoder(session, expression, frame, query),
            safe_view("Every query's mask", session.render_query_masks, expression, frame),
            safe_view("Scores", session.render_scores, expression, frame))


def attention(session, expression, frame, word, level, head):
    if session is None:
        return gr.skip()
    return safe_view("Word attention", session.render_attention, expression, frame, word,
                     level, head)


def queries(session, expression, frame, sampling):
    if session is None:
        return gr.skip()
    return safe_view("Queries", session.render_queries, expression, frame, sampling=sampling)


def preview(video: str | None):
    """The upload's first frame (any format the run reads; the browser need not play it)."""
    return first_frame(video)
