"""Which words matter (`rvos.predictor.words`, its chart `rvos.viz.words`, the app's
``/word_importance``), with the real built-in model on the example clips.

On examples/shapes_00002.mp4 the built-in model finds "the red square" (mean score 0.67);
leaving out "red" moves its masks entirely (1 − IoU ≈ 1.0) while leaving out "the" barely moves
them (≈ 0.004), as measured when this test was written: the assertion keeps a wide margin.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_app import EXAMPLES, start_app

from rvos import load_model
from rvos.errors import PredictorError
from rvos.predictor.predictor import Predictor, group_words
from rvos.predictor.words import swap_for, variants_of, word_importance
from rvos.result.rle import decode_rle
from rvos.viz.words import plot_word_importance, word_change_frame

CLIP = EXAMPLES / "shapes_00002.mp4"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.set_num_threads(1)
    return Predictor(load_model("builtin"))


def _pooled_iou(a, b) -> float:
    inter = union = 0
    for ra, rb in zip(a.rle, b.rle, strict=True):
        ma, mb = decode_rle(ra, a.size), decode_rle(rb, b.size)
        inter += int((ma & mb).sum())
        union += int((ma | mb).sum())
    return 1.0 if union == 0 else inter / union


# ------------------------------------------------------------------------------ sentences

def test_left_out_sentences_follow_the_app_word_grouping(predictor):
    tok = predictor.model.tokenizer
    text = "the red square, moving left"
    words, _ = group_words(tok, text)
    variants = variants_of(tok, text)
    assert [v.word for v in variants] == words
    assert [v.text for v in variants] == ["red square, moving left", "the square, moving left",
                                          "the red moving left", "the red square, left",
                                          "the red square, moving"]
    assert all(v.kind == "left out" and v.replacement is None for v in variants)


def test_chinese_words_are_left_out_without_spaces_added(predictor):
    tok = predictor.model.tokenizer
    variants = variants_of(tok, "红色的方块")
    assert [v.word for v in variants] == ["红", "色", "的", "方", "块"]
    assert variants[0].text == "色的方块"


def test_swaps_replace_colour_and_noun_words_with_their_kind(predictor):
    variants = variants_of(predictor.model.tokenizer, "The Red squares and a dog.", swap=True)
    swaps = [(v.word, v.replacement, v.text) for v in variants if v.kind == "swapped"]
    assert swaps == [("Red", "Blue", "The Blue squares and a dog."),
                     ("squares", "triangles", "The Red triangles and a dog."),
                     ("dog.", "cat.", "The Red squares and a cat.")]
    assert swap_for("the") is None and swap_for("gray") == "red"


# ------------------------------------------------------------------------------ the answer

def test_the_colour_word_matters_more_than_the_article(predictor):
    wi = word_importance(predictor, CLIP, "the red square")
    change = {v.word: d for v, d in zip(wi.variants, wi.iou_change, strict=True)}
    assert wi.words == ["the", "red", "square"]
    assert change["red"] > 0.5 > 0.2 > change["the"]
    assert change["red"] > change["the"] + 0.5
    assert all(0.0 <= d <= 1.0 for d in wi.iou_change)
    score = {v.word: d for v, d in zip(wi.variants, wi.score_change, strict=True)}
    full = float(wi.full.chosen_scores.mean())
    for v, r in zip(wi.variants, wi.results, strict=True):
        assert score[v.word] == pytest.approx(float(r.chosen_scores.mean()) - full)


def test_batched_variants_equal_separate_full_runs(predictor):
    """Each variant decoded in a batch from shared features answers as a full run of the
    variant sentence does (same chosen query, same masks, scores within float tolerance).
    A window of 10 frames with overlap 4 on the 16-frame clip makes the query link run too.
    The masks compared are the network's, before a presence threshold (the module's docstring),
    so the full runs are at presence threshold 0."""
    windowed = Predictor(predictor.model, window=10, overlap=4, presence_threshold=0.0)
    wi = word_importance(windowed, CLIP, "the red square", swap=True, chunk=2)
    assert len(wi.windows) == 2
    alone = windowed.predict(CLIP, [wi.text] + [v.text for v in wi.variants])
    for got, want in zip([wi.full, *wi.results], alone, strict=True):
        assert got.text == want.text
        np.testing.assert_array_equal(got.chosen_query, want.chosen_query)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
        assert _pooled_iou(got, want) > 0.99


def test_json_and_errors(predictor):
    wi = word_importance(predictor, CLIP, "the red square", max_frames=4)
    doc = wi.to_json()
    assert doc["frames"] == 4 and doc["expression"] == "the red square"
    assert [w["word"] for w in doc["words"]] == ["the", "red", "square"]
    assert {"iou_change", "score_change", "variant"} <= set(doc["words"][0])
    assert doc["swaps"] == []
    with pytest.raises(PredictorError, match="one expression"):
        word_importance(predictor, CLIP, "   ")
    one = word_importance(predictor, CLIP, "square", max_frames=2)  # nothing left to run
    assert one.variants[0].text == "" and one.results == [None]
    assert math.isnan(one.iou_change[0]) and math.isnan(one.score_change[0])
    assert one.to_json()["words"][0]["iou_change"] is None


# ------------------------------------------------------------------------------ drawings

@pytest.mark.parametrize("labels, iou, score", [
    ([], [], []),
    (["red"], [0.0], [0.0]),
    (["the", "red → blue"], [math.nan, 2.0], [None, -3.0]),
    (["红色的方块" * 20, "x" * 300, "🙂"], [0.5, 0.1, 1.0], [0.3, -0.2, math.inf]),
])
def test_chart_draws_for_any_input(labels, iou, score):
    image = plot_word_importance(labels, iou, score, selected=0 if labels else None,
                                 title="a title " * 40)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[1] == 640
    assert image.std() > 0  # something drawn
    if len(labels) == 2:  # clipped bars: drawn within the image, not past it
        assert image.shape[0] < 200


def test_chart_marks_the_selected_row_and_frame_view_shows_both_masks():
    a = plot_word_importance(["the", "red"], [0.1, 0.9], [0.0, -0.3], selected=0)
    b = plot_word_importance(["the", "red"], [0.1, 0.9], [0.0, -0.3], selected=1)
    assert a.shape == b.shape and not np.array_equal(a, b)
    frame = np.full((64, 96, 3), 40, np.uint8)
    full = np.zeros((64, 96), bool)
    full[5:20, 5:20] = True
    changed = np.zeros_like(full)
    changed[30:60, 50:90] = True
    view = word_change_frame(frame, full, changed, "without “red”: the square")
    assert view.shape[1] == 96 and view.shape[0] > 64
    assert not np.array_equal(view[40, 70], frame[40, 70])  # the changed mask is drawn
    assert not np.array_equal(view[10, 10], view[40, 70])  # in another colour than the full


# ------------------------------------------------------------------------------ the API

@pytest.fixture(scope="module")
def app(tmp_path_factory):
    yield from start_app(tmp_path_factory.mktemp("app"), "--threads", "1")


@pytest.mark.slow
def test_api_word_importance(app):
    from gradio_client import Client, handle_file

    client = Client(app.url, verbose=False)
    doc = client.predict(handle_file(str(CLIP)), "the red square", api_name="/word_importance")
    assert doc["expression"] == "the red square" and doc["model"] == "builtin"
    change = {w["word"]: w["iou_change"] for w in doc["words"]}
    assert list(change) == ["the", "red", "square"]
    assert change["red"] > change["the"] + 0.5
    swapped = client.predict(handle_file(str(CLIP)), "the red square", swap=True,
                             api_name="/word_importance")
    assert [(s["word"], s["replacement"]) for s in swapped["swaps"]] == [
        ("red", "blue"), ("square", "triangle")]
    with pytest.raises(Exception, match="one expression at a time"):
        client.predict(handle_file(str(CLIP)), "the red square\nthe dog",
                       api_name="/word_importance")
    with pytest.raises(Exception, match="at most 32 per request"):
        client.predict(handle_file(str(CLIP)), "the red square " * 11,
                       api_name="/word_importance")
    # The app still serves after both refusals.
    again = client.predict(handle_file(str(CLIP)), "red square", max_frames=2,
                           api_name="/word_importance")
    assert again["frames"] == 2 and len(again["words"]) == 2


def test_the_app_view_draws_every_answer_and_escapes_the_text(predictor):
    """The section's view of a one-word expression (its only change is n/a) and of a sentence
    with Markdown in it: the chart, the frame with the masks, a summary showing the text as
    typed; the expression box's rules."""
    import itertools

    from rvos.app.inputs import AppInputError
    from rvos.app.session import FrameStore
    from rvos.app.words import WordView, pick_expression
    from rvos.media.video import iter_frames

    frames = FrameStore.from_frames(itertools.islice(iter_frames(CLIP), 3))
    for text in ("square", "the *red* [square](http://x)"):
        view = WordView(word_importance(predictor, CLIP, text, max_frames=3, swap=True), frames,
                        "builtin")
        assert view.choices()[0][0].startswith("without ")
        for k in range(len(view.answer.variants)):
            chart, image = view.render_chart(k), view.render_frame(k, 2)
            assert chart.dtype == np.uint8 and image.shape[1] == 512  # the 256-px clip, x2
        summary = view.summary()
        assert "builtin" in summary
    assert "\\*red\\* \\[square\\]\\(http\\://x\\)" in summary  # shown as typed
    assert pick_expression("", "the dog\nthe cat") == "the dog"
    assert pick_expression("  the   red square ", "the dog") == "the red square"
    with pytest.raises(AppInputError, match="one expression at a time"):
        pick_expression("a\nb", None)
    with pytest.raises(AppInputError, match="no expression"):
        pick_expression("", "")
