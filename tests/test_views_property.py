"""A view never fails: every drawing, over generated results (Hypothesis).

Results are built through the real result types (`ExpressionResult`, `VideoResult`), with what
a model can give and what a video can be: zero-length and one-pixel paths, boxes of zero size or
outside the frame, equal reference points, empty and full masks, NaN/inf scores and boxes,
1×1, 1×4000, 4000×1 and portrait frames, one frame, one query, words that are long, non-Latin,
emoji, or absent; every frame found, some, or none (presence); one object per expression or
several (objects="all"). Each drawing must return a uint8 RGB image of the expected shape.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rvos.result import exports
from rvos.result.objects import ObjectTrack
from rvos.result.records import AttentionMaps, SamplingPoints, SourceInfo, WindowChoice
from rvos.result.rle import encode_rle, quantize_logits
from rvos.result.threshold import with_threshold
from rvos.result.video_result import ExpressionResult, VideoResult
from rvos.result.writer import _overlay
from rvos.viz.colors import palette
from rvos.viz.decoder import draw_decoder, query_mask_grid
from rvos.viz.draw import caption_strip, compose_overlay_frame, overlay_masks
from rvos.viz.explorer import (
    attention_grid,
    attention_view,
    colorbar,
    draw_attention,
    draw_queries,
    plot_scores,
)
from rvos.viz.figures import paper_figure, side_by_side

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -1e9, 1e9, 1e30]
WORDS = ["dog", "左边的狗", "سيارة", "🚗", "👨‍👩‍👧", "x" * 300, "naïve", "猫。", "a\tb"]
TEXTS = [
    "a dog",
    "左边的狗在跑",
    "سيارة حمراء تتحرك",
    "the 🚗 car 👍🏽",
    "w" * 500,
    "ok",
    "<b>not html</b>",
    "line\nbreak",
]
SIZES = [(1, 1), (1, 4000), (4000, 1), (64, 36), (36, 64), (2, 3), (1920, 1080)]


def _image(image: np.ndarray) -> np.ndarray:
    """Assert an RGB uint8 image with at least one pixel; return it."""
    assert isinstance(image, np.ndarray)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] >= 1 and image.shape[1] >= 1
    return image


@st.composite
def coords(draw, extent: int) -> float:
    """A coordinate: inside, on the edge, outside (negative, past the end) or not finite."""
    return draw(
        st.one_of(
            st.sampled_from(SPECIAL),
            st.floats(-0.5, 1.5).map(lambda v: v * extent),
            st.sampled_from([0.0, float(extent), extent - 1.0, 0.5]),
        )
    )


@st.composite
def scores_of(draw, shape: tuple[int, ...]) -> np.ndarray:
    kind = draw(st.sampled_from(["random", "special", "equal"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values = rng.random(shape)
    if kind == "special" and values.size:
        values.flat[rng.integers(0, values.size, size=max(1, values.size // 2))] = draw(
            st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 2.0])
        )
    elif kind == "equal":
        values[:] = draw(st.sampled_from([0.0, 0.5, 1.0]))
    return values.astype(np.float32)


@st.composite
def masks_of(draw, count: int, height: int, width: int) -> np.ndarray:
    kind = draw(st.sampled_from(["empty", "full", "pixel", "random"]))
    masks = np.zeros((count, height, width), bool)
    if kind == "full":
        masks[:] = True
    elif kind == "pixel":
        masks[:, height // 2, width // 2] = True
    elif kind == "random":
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        masks = rng.random((count, height, width)) < 0.3
    return masks


@st.composite
def boxes_of(draw, count: int, height: int, width: int) -> np.ndarray:
    """``[count, 4]`` boxes: ordinary, zero-size (a point), inverted, outside, not finite."""
    out = np.zeros((count, 4), np.float64)
    for i in range(count):
        x0, y0 = draw(coords(width)), draw(coords(height))
        kind = draw(st.sampled_from(["box", "point", "any"]))
        if kind == "point":
            x1, y1 = x0, y0
        elif kind == "box":
            x1 = x0 + draw(st.floats(0, 2)) * width if math.isfinite(x0) else x0
            y1 = y0 + draw(st.floats(0, 2)) * height if math.isfinite(y0) else y0
        else:
            x1, y1 = draw(coords(width)), draw(coords(height))
        out[i] = (x0, y0, x1, y1)
    return out


@st.composite
def results(draw, *, attention: bool = True):
    """``(VideoResult, frames uint8 [T, H, W, 3])`` with one or two expressions."""
    height, width = draw(
        st.one_of(st.sampled_from(SIZES), st.tuples(st.integers(1, 48), st.integers(1, 48)))
    )
    num_t = draw(st.integers(1, 3))
    num_q = draw(st.integers(1, 4))
    num_l = draw(st.integers(1, 3))
    num_e = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    frames = rng.integers(0, 256, size=(num_t, height, width, 3), dtype=np.uint8)
    low_h, low_w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    expressions = []
    for _ in range(num_e):
        words = draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=3))
        text = " ".join(words) if words and draw(st.booleans()) else draw(st.sampled_from(TEXTS))
        layer_scores = draw(scores_of((num_t, num_q, num_l)))
        layer_boxes = np.stack(
            [
                np.stack([draw(boxes_of(num_l, height, width)) for _ in range(num_q)])
                for _ in range(num_t)
            ]
        ).astype(np.float32)
        if draw(st.booleans()):  # every layer the same box: zero-length paths
            layer_boxes[:] = layer_boxes[:, :, :1]
        init = np.array(
            [[draw(coords(width)), draw(coords(height))] for _ in range(num_q)], np.float32
        )
        if draw(st.booleans()):  # equal reference points
            init[:] = init[:1]
        chosen = np.array([draw(st.integers(0, num_q - 1)) for _ in range(num_t)], np.int64)
        masks = draw(masks_of(num_t, height, width))
        boxes = layer_boxes[:, :, -1]
        with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf: a NaN centre
            centres = (boxes[..., :2] + boxes[..., 2:]) / 2
        att = None
        if attention:
            heads = draw(st.sampled_from([0, 2]))
            maps = []
            for stride in (1, 2):
                shape = (
                    num_t,
                    len(words),
                    *([heads] if heads else []),
                    max(1, low_h // stride),
                    max(1, low_w // stride),
                )
                m = rng.random(shape)
                if draw(st.booleans()) and m.size:
                    m.flat[0] = draw(st.sampled_from([math.nan, math.inf, 0.0]))
                maps.append(m.astype(np.float16))
            att = AttentionMaps(
                words=list(words), levels=["fusion/8", "fpn/16"], maps=maps, num_heads=heads
            )
        points = np.stack(
            [
                [
                    [[draw(coords(width)), draw(coords(height))] for _ in range(3)]
                    for _ in range(num_q)
                ]
                for _ in range(num_t)
            ]
        ).astype(np.float32)
        weights = draw(scores_of((num_t, num_q, 3)))
        extra = []
        for _ in range(draw(st.integers(0, 2))):  # objects="all": further objects
            query = np.array([draw(st.integers(-1, num_q - 1)) for _ in range(num_t)], np.int64)
            obj_masks = draw(masks_of(num_t, height, width)) & (query >= 0)[:, None, None]
            extra.append(ObjectTrack(query=query, rle=[encode_rle(m) for m in obj_masks],
                                     mask_areas=obj_masks.reshape(num_t, -1).sum(1)))
        logits = rng.normal(0, 4, size=(num_t, num_q, low_h, low_w)).astype(np.float32)
        if draw(st.booleans()):
            logits[:] = draw(st.sampled_from([-8.0, 8.0]))  # every query empty, or full
        expressions.append(
            ExpressionResult(
                text=text,
                words=list(words),
                size=(height, width),
                threshold=0.5,
                chosen_query=chosen,
                window_index=np.zeros(num_t, np.int32),
                scores=layer_scores[..., -1],
                boxes=boxes,
                reference_points=centres,
                layer_boxes=layer_boxes,
                layer_scores=layer_scores,
                initial_reference_points=init,
                mask_areas=masks.reshape(num_t, -1).sum(1).astype(np.int64),
                windows=[WindowChoice(0, 0, num_t, int(chosen[0]), "score")],
                rle=[encode_rle(m) for m in masks],
                attention=att,
                sampling=SamplingPoints(
                    points, weights, np.zeros(3, np.int64), np.zeros(3, np.int64)
                ),
                query_logits=quantize_logits(logits),
                lowres_shape=(low_h, low_w),
                extra_objects=extra,
            )
        )
    fps = draw(st.sampled_from([1.0, 25.0, 120.0]))
    source = SourceInfo(
        path=None,
        width=width,
        height=height,
        fps=fps,
        frame_rate=Fraction(fps).limit_denominator(1001),
        num_frames=num_t,
        source_fps=fps,
    )
    result = VideoResult(expressions, source, "builtin", {"threshold": 0.5}, [(0, num_t)], {})
    # Presence: none (every frame found), some frames not found, or none found at all.
    presence = draw(st.sampled_from([None, 0.5, "none found"]))
    if presence == "none found":
        low = [dataclasses.replace(e, scores=np.zeros_like(e.scores)) for e in result]
        result = with_threshold(dataclasses.replace(result, expressions=low), None, 1.0)
        assert not any(e.found.any() or e.mask_areas.any() for e in result)
    elif presence is not None:
        result = with_threshold(result, None, presence)
    return result, frames


# --------------------------------------------------------------------------- result views


@SETTINGS
@given(results(), st.data())
def test_queries_overlay_and_scores_views(case, data) -> None:
    result, frames = case
    height, width = result.source.size
    for k, e in enumerate(result):
        t = data.draw(st.integers(0, result.num_frames - 1))
        frame = frames[t]
        overlay = _image(result.render_overlay(t, frame))
        assert overlay.shape == (height, width, 3)
        for sampling in (False, True):
            assert _image(result.render_queries(k, t, overlay, sampling=sampling)).shape == (
                height,
                width,
                3,
            )
        assert _image(result.render_scores(k, t)).shape == (240, 640, 3)
        assert _image(result.render_scores(k)).shape == (240, 640, 3)
        labels = e.frame_mask(t)  # the mask PNG: bool, or one label per object
        assert labels.shape == (height, width) and int(labels.max()) <= e.num_objects
        np.testing.assert_array_equal(labels > 0, e.union_mask(t))
        assert _image(_overlay(frame, [x.frame_mask(t) for x in result],
                               palette(len(result)))).shape == (height, width, 3)
        strip_h = caption_strip(width, [x.text for x in result]).shape[0]
        composed = compose_overlay_frame(
            frame, [x.mask(t) for x in result], [x.text for x in result]
        )
        assert _image(composed).shape == (height + strip_h, width, 3)
        assert e.num_frames == result.num_frames


@SETTINGS
@given(results(attention=False), st.data())
def test_decoder_layer_scores_and_query_mask_views(case, data) -> None:
    result, frames = case
    height, width = result.source.size
    num_q = result[0].scores.shape[1]
    for k in range(len(result)):
        t = data.draw(st.integers(0, result.num_frames - 1))
        for query in [None, *range(num_q)]:
            image = _image(result.render_decoder(k, t, frames[t], query=query))
            # The frame (scaled so its long side is at least 640) is in the picture whole.
            scale = max(1.0, 640 / max(height, width))
            assert image.shape[0] >= round(height * scale)
            assert image.shape[1] >= round(width * scale)
        assert _image(result.render_layer_scores(k, t)).shape == (240, 640, 3)
        grid = _image(result.render_query_masks(k, t, frames[t]))
        assert grid.shape[1] >= min(num_q, 5) * 7  # one framed tile per query in a row
        assert grid.size < 50e6  # a tall clip's tiles stay small


@SETTINGS
@given(results(), st.data())
def test_attention_views(case, data) -> None:
    result, frames = case
    width = result.source.width
    for k, e in enumerate(result):
        t = data.draw(st.integers(0, result.num_frames - 1))
        heads = [None, *range(e.attention.num_heads)]
        level = data.draw(st.sampled_from([0, 1, "fusion/8", "fpn/16"]))
        head = data.draw(st.sampled_from(heads))
        image = _image(result.render_attention(k, t, frames[t], word="all", level=level, head=head))
        assert image.shape[1] >= 320
        for w in range(len(e.words)):
            one = _image(result.render_attention(k, t, frames[t], word=w, level=level, head=head))
            assert one.shape[1] == max(width, 320)
            assert one.shape[0] > result.source.height  # title and colour scale around it


@SETTINGS
@given(results(attention=False), st.integers(1, 6))
def test_figure_gif_and_compare(case, columns) -> None:
    result, frames = case
    height, width = result.source.size
    figure = _image(exports.render_figure(result, frames, columns=columns, width=1200))
    assert figure.shape[1] == 1200 and figure.size < 60e6
    with tempfile.TemporaryDirectory() as tmp:
        path = exports.write_gif(result, Path(tmp) / "overlay.gif", frames)
        with Image.open(path) as gif:
            gif_w, gif_h = gif.size
            assert gif_w == min(width, exports.GIF_MAX_WIDTH) or gif_w <= width
            assert gif_h >= 1
    for t in range(result.num_frames):
        pair = _image(
            exports.compare_frame([result, result], ["A: builtin", "B: 模型 🚀"], t, frames[t])
        )
        assert pair.shape[0] % 2 == 0 and pair.shape[1] % 2 == 0
        assert pair.shape[1] >= 2 * min(width, 640)


# ------------------------------------------------------------------ the drawing functions


@st.composite
def frames_(draw) -> np.ndarray:
    height, width = draw(
        st.one_of(st.sampled_from(SIZES), st.tuples(st.integers(1, 64), st.integers(1, 64)))
    )
    seed = draw(st.integers(0, 2**16))
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@SETTINGS
@given(frames_(), st.integers(0, 4), st.data())
def test_draw_queries_and_decoder_on_any_boxes(frame, num_q, data) -> None:
    height, width = frame.shape[:2]
    boxes = data.draw(boxes_of(num_q, height, width))
    scores = data.draw(scores_of((num_q,)))
    chosen = data.draw(st.one_of(st.none(), st.integers(0, num_q - 1))) if num_q else None
    refs = np.array(
        [[data.draw(coords(width)), data.draw(coords(height))] for _ in range(num_q)]
    ).reshape(num_q, 2)
    out = draw_queries(
        frame,
        boxes,
        scores,
        chosen,
        ref_points=refs,
        sampling_points=refs[:, None],
        sampling_weights=scores[:, None],
    )
    assert _image(out).shape == frame.shape
    if num_q:
        num_l = data.draw(st.integers(1, 3))
        layer_boxes = np.repeat(boxes[:, None], num_l, axis=1)
        layer_refs = np.repeat(refs[:, None], num_l, axis=1)
        layer_scores = np.repeat(scores[:, None], num_l, axis=1)
        focus = data.draw(st.one_of(st.none(), st.integers(0, num_q - 1)))
        _image(draw_decoder(frame, layer_boxes, layer_scores, layer_refs, chosen, focus))


@SETTINGS
@given(frames_(), st.data())
def test_attention_drawing_on_any_heat(frame, data) -> None:
    h, w = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    heat = data.draw(scores_of((h, w))).astype(np.float64)
    if data.draw(st.booleans()):
        heat[0, 0] = data.draw(st.sampled_from([math.nan, math.inf, -math.inf, 3e38, -3e38]))
    assert _image(draw_attention(frame, heat)).shape == frame.shape
    labels = data.draw(st.lists(st.sampled_from(WORDS + [""]), min_size=1, max_size=5))
    grid = _image(attention_grid(frame, [heat] * len(labels), labels))
    view = attention_view(
        grid,
        "word “" + labels[0] + "” · level 1/8 · head 1",
        float(np.nanmin(heat)),
        float(np.nanmax(heat)),
    )
    assert _image(view).shape[1] == max(grid.shape[1], 320)
    assert (
        _image(
            colorbar(data.draw(st.integers(1, 700)), math.nan, "high", "attention")
        ).shape[2]
        == 3
    )


@SETTINGS
@given(st.integers(0, 30), st.integers(0, 12), st.data())
def test_score_plot_of_any_scores(num_t, num_q, data) -> None:
    scores = data.draw(scores_of((num_t, num_q)))
    chosen = data.draw(st.one_of(st.none(), st.integers(0, num_q - 1))) if num_q else None
    current = data.draw(st.one_of(st.none(), st.integers(-3, num_t + 3)))
    size = (data.draw(st.integers(120, 800)), data.draw(st.integers(80, 400)))
    image = plot_scores(scores, chosen, current, size, x_start=1, x_label="frame")
    assert _image(image).shape == (size[1], size[0], 3)


@SETTINGS
@given(frames_(), st.integers(1, 7), st.data())
def test_query_mask_grid_figure_and_side_by_side(frame, num_q, data) -> None:
    height, width = frame.shape[:2]
    masks = data.draw(masks_of(num_q, height, width))
    scores = data.draw(scores_of((num_q,)))
    chosen = data.draw(st.one_of(st.none(), st.integers(0, num_q - 1)))
    _image(query_mask_grid(frame, masks, scores, chosen))
    captions = data.draw(st.lists(st.sampled_from(TEXTS + WORDS), min_size=1, max_size=3))
    columns = data.draw(st.integers(1, 4))
    rows = [[masks[i % num_q]] * columns for i in range(len(captions))]
    figure = paper_figure(
        [frame] * columns,
        rows,
        captions,
        width=1200,
        column_labels=[f"frame {j + 1}" for j in range(columns)],
    )
    assert _image(figure).shape[1] == 1200
    panels = [frame, data.draw(frames_())]
    both = _image(
        side_by_side(
            panels, data.draw(st.lists(st.sampled_from(TEXTS), min_size=2, max_size=2))
        )
    )
    assert both.shape[0] % 2 == 0 and both.shape[1] % 2 == 0
    strip = caption_strip(width, captions)
    assert _image(strip).shape[1] == width
    overlay = overlay_masks(frame, masks)
    assert _image(overlay).shape == frame.shape


@pytest.mark.parametrize("size", [(1, 1), (1, 4000), (4000, 1), (1920, 1080)])
def test_extreme_frames_keep_their_size_in_the_overlay(size) -> None:
    frame = np.zeros((*size, 3), np.uint8)
    mask = np.ones(size, bool)
    out = compose_overlay_frame(frame, [mask], ["左边的狗 🚗"])
    assert out.shape[1] == size[1] and out.shape[0] > size[0]
