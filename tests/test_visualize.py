"""rvos.viz.draw: drawing functions on plain arrays."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from rvos.media.labels import davis_palette
from rvos.viz import decoder, explorer
from rvos.viz.colors import HIGHLIGHT, layer_colors, palette, query_colors
from rvos.viz.decoder import draw_decoder, query_mask_grid
from rvos.viz.draw import caption_strip, compose_overlay_frame, notice, overlay_masks
from rvos.viz.explorer import attention_grid, draw_attention, draw_queries, plot_scores
from rvos.viz.figures import figure_layout, paper_figure, side_by_side


@pytest.fixture
def frame() -> np.ndarray:
    """A textured 120x160 frame (so 'unchanged' is a real check)."""
    rng = np.random.default_rng(0)
    return rng.integers(40, 200, size=(120, 160, 3), dtype=np.uint8)


def _near(image: np.ndarray, color: tuple[int, int, int], tol: int = 25) -> np.ndarray:
    """bool [H, W]: pixels within ``tol`` of ``color`` in every channel."""
    return (np.abs(image.astype(int) - np.asarray(color)) <= tol).all(axis=-1)


# ---------------------------------------------------------------------------------------------
# colours


def test_palette_is_the_davis_palette() -> None:
    pal = davis_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert tuple(pal[0]) == (0, 0, 0)
    assert palette(4) == [(128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128)]
    assert tuple(pal[9]) == (191, 0, 0) and tuple(pal[21]) == (128, 64, 128)
    assert tuple(pal[22]) == (22, 22, 22) and tuple(pal[255]) == (255, 255, 255)
    assert len(set(palette(21))) == 21
    assert palette(0) == []
    with pytest.raises(ValueError, match="0..255"):
        palette(256)


def test_query_colors_are_distinct_and_cycle() -> None:
    cols = query_colors(12)
    assert len(set(cols[:10])) == 10 and cols[10] == cols[0]
    assert HIGHLIGHT not in cols


# ---------------------------------------------------------------------------------------------
# masks and captions


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_fill_changes_inside_only(frame: np.ndarray, alpha: float) -> None:
    mask = np.zeros(frame.shape[:2], bool)
    mask[30:70, 50:120] = True
    mask[40:50, 60:70] = False  # a hole stays untouched too
    out = overlay_masks(frame, [mask], colors=[(255, 0, 0)], alpha=alpha, contour=False)
    assert out.shape == frame.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~mask], frame[~mask])
    expected = np.rint((1 - alpha) * frame[mask].astype(float) + alpha * np.array([255, 0, 0]))
    np.testing.assert_array_equal(out[mask], expected.astype(np.uint8))
    assert frame is not out and not np.shares_memory(frame, out)


def test_contour_is_drawn_in_the_mask_colour(frame: np.ndarray) -> None:
    mask = np.zeros(frame.shape[:2], bool)
    mask[30:70, 50:120] = True
    color = palette(1)[0]
    out = overlay_masks(frame, np.stack([mask]), alpha=0.3)  # array [K, H, W], default colours
    assert tuple(out[30, 80]) == color and tuple(out[50, 50]) == color  # boundary pixels
    assert tuple(out[50, 80]) != color  # interior is a translucent fill, not solid


def test_no_masks_returns_a_copy(frame: np.ndarray) -> None:
    np.testing.assert_array_equal(overlay_masks(frame, []), frame)
    np.testing.assert_array_equal(compose_overlay_frame(frame, [], []), frame)


def test_overlay_rejects_mismatched_masks(frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="shape"):
        overlay_masks(frame, [np.zeros((10, 10), bool)])
    with pytest.raises(ValueError, match="uint8"):
        overlay_masks(frame.astype(np.float32), [])
    with pytest.raises(ValueError, match="colours"):
        overlay_masks(frame, [np.ones(frame.shape[:2], bool)] * 2, colors=[(1, 2, 3)])


def test_caption_strip_draws_each_caption_in_its_colour() -> None:
    cols = [(200, 0, 0), (0, 0, 200)]
    one = caption_strip(320, ["a dog"], cols[:1])
    two = caption_strip(320, ["a dog", "the red car"], cols)
    assert one.dtype == np.uint8 and one.shape[1] == two.shape[1] == 320
    assert two.shape[0] > one.shape[0] > 0
    half = two.shape[0] // 2
    assert _near(two[:half], cols[0], 10).sum() > 30 and _near(two[half:], cols[1], 10).sum() > 30
    assert _near(two[:half], cols[1], 10).sum() == 0
    assert caption_strip(320, []).shape == (0, 320, 3)


def test_long_caption_is_truncated_inside_the_strip() -> None:
    strip = caption_strip(200, ["the man in a red jacket walking a small dog " * 5], [(0, 0, 200)])
    ink = _near(strip, (0, 0, 200), 60).any(axis=0)
    assert ink[: 200 // 2].any()
    assert not ink[-3:].any()  # text stops before the edge (cut with an ellipsis)


def test_compose_overlay_frame_stacks_overlay_and_captions(frame: np.ndarray) -> None:
    mask = np.zeros(frame.shape[:2], bool)
    mask[10:40, 10:40] = True
    out = compose_overlay_frame(frame, [mask], ["a cat"])
    strip = caption_strip(frame.shape[1], ["a cat"])
    assert out.shape == (frame.shape[0] + strip.shape[0], frame.shape[1], 3)
    np.testing.assert_array_equal(out[: frame.shape[0]], overlay_masks(frame, [mask]))
    np.testing.assert_array_equal(out[frame.shape[0] :], strip)
    top = compose_overlay_frame(frame, [mask], ["a cat"], position="top")
    np.testing.assert_array_equal(top[: strip.shape[0]], strip)
    with pytest.raises(ValueError, match="captions"):
        compose_overlay_frame(frame, [mask], [])


# ---------------------------------------------------------------------------------------------
# queries


def test_chosen_box_is_highlighted(frame: np.ndarray) -> None:
    boxes = np.array([[10, 20, 60, 90], [90, 20, 150, 90]], float)
    scores = np.array([0.9, 0.3])
    out = draw_queries(frame, boxes, scores, chosen=0)
    assert out.shape == frame.shape and out.dtype == np.uint8
    # The chosen box edge shows the highlight; the other box edge shows its own query colour.
    left_edge, right_edge = out[40:80, 5:16], out[40:80, 85:96]
    assert _near(left_edge, HIGHLIGHT, 0).sum() > 20
    assert _near(right_edge, HIGHLIGHT, 0).sum() == 0
    assert _near(right_edge, query_colors(2)[1], 0).sum() > 20
    swapped = draw_queries(frame, boxes, scores, chosen=1)
    assert _near(swapped[40:80, 85:96], HIGHLIGHT, 0).sum() > 20
    assert not np.array_equal(out, swapped)


def test_reference_and_sampling_points(frame: np.ndarray) -> None:
    boxes = np.array([[10, 10, 150, 110]], float)
    out = draw_queries(frame, boxes, np.array([0.5]), chosen=None, ref_points=np.array([[80, 60]]))
    assert tuple(out[60, 80]) == query_colors(1)[0]
    pts = np.array([[[40.0, 40.0], [120.0, 80.0]]])
    weights = np.array([[1.0, 0.05]])
    dots = draw_queries(frame, boxes, np.array([0.5]), None, sampling_points=pts,
                        sampling_weights=weights)
    changed = (dots != draw_queries(frame, boxes, np.array([0.5]), None)).any(axis=-1)
    strong, weak = changed[30:51, 30:51].sum(), changed[70:91, 110:131].sum()
    assert strong > weak > 0  # bigger, more opaque dot for the larger weight


def test_zero_queries(frame: np.ndarray) -> None:
    out = draw_queries(frame, np.zeros((0, 4)), np.zeros(0), chosen=None,
                       ref_points=np.zeros((0, 2)))
    np.testing.assert_array_equal(out, frame)


def test_draw_queries_validates_shapes(frame: np.ndarray) -> None:
    boxes = np.array([[10, 10, 50, 50]], float)
    with pytest.raises(ValueError, match="scores"):
        draw_queries(frame, boxes, np.zeros(2), 0)
    with pytest.raises(ValueError, match="chosen"):
        draw_queries(frame, boxes, np.zeros(1), 3)
    with pytest.raises(ValueError, match="ref_points"):
        draw_queries(frame, boxes, np.zeros(1), 0, ref_points=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="sampling_weights"):
        draw_queries(frame, boxes, np.zeros(1), 0, sampling_points=np.zeros((1, 4, 2)),
                     sampling_weights=np.zeros((1, 3)))


# ---------------------------------------------------------------------------------------------
# attention


def test_heat_map_hot_spot_lands_where_the_heat_is() -> None:
    gray = np.full((96, 128, 3), 128, np.uint8)
    heat = np.zeros((12, 16), np.float32)
    heat[3, 12] = 5.0  # cell centre in frame pixels: (3.5 * 8, 12.5 * 8) = (28, 100)
    out = draw_attention(gray, heat)
    assert out.shape == gray.shape and out.dtype == np.uint8
    redness = out[..., 0].astype(int) - out[..., 2].astype(int)  # JET: hot = red, cold = blue
    y, x = np.unravel_index(np.argmax(redness), redness.shape)
    assert abs(y - 28) <= 4 and abs(x - 100) <= 4
    assert redness[90, 5] < 0  # far away: cold


def test_constant_heat_is_uniform() -> None:
    gray = np.full((40, 60, 3), 100, np.uint8)
    out = draw_attention(gray, np.full((5, 7), 3.0))
    assert (out == out[0, 0]).all()
    with pytest.raises(ValueError, match="2-D"):
        draw_attention(gray, np.zeros(5))


def test_attention_grid_layout(frame: np.ndarray) -> None:
    heats = [np.random.default_rng(i).random((8, 8)) for i in range(5)]
    grid = attention_grid(frame, heats, ["the", "red", "car", "on", "left"], cols=3,
                          tile_width=80)
    tile_h = 60  # 120 * 80 / 160
    assert grid.dtype == np.uint8 and grid.shape[1] == 3 * 80 + 2 * 2
    label_h = (grid.shape[0] - 2) // 2 - tile_h
    assert label_h > 0 and grid.shape[0] == 2 * (label_h + tile_h) + 2
    assert (grid[-tile_h:, -80:] == 255).all()  # sixth cell empty
    np.testing.assert_array_equal(
        grid[label_h : label_h + tile_h, :80],
        draw_attention(cv2.resize(frame, (80, 60), interpolation=cv2.INTER_AREA), heats[0]),
    )
    with pytest.raises(ValueError, match="labels"):
        attention_grid(frame, heats, ["x"])
    with pytest.raises(ValueError, match="empty"):
        attention_grid(frame, [], [])


# ---------------------------------------------------------------------------------------------
# score plot


def _line_pixels(img: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    mask = _near(img, color, 20)
    mask[:22] = False  # ignore the legend in the top margin
    return np.argwhere(mask)


def test_plot_lines_follow_each_query() -> None:
    scores = np.zeros((20, 2))
    scores[:, 0], scores[:, 1] = 0.2, 0.8
    img = plot_scores(scores, chosen=None, size=(320, 200))
    assert img.shape == (200, 320, 3) and img.dtype == np.uint8
    c0, c1 = query_colors(2)
    p0, p1 = _line_pixels(img, c0), _line_pixels(img, c1)
    assert len(p0) > 100 and len(p1) > 100
    assert p1[:, 0].mean() < p0[:, 0].mean() - 50  # higher score is drawn higher up


def test_chosen_query_is_thicker() -> None:
    t = np.linspace(0, 1, 30)
    scores = np.stack([0.3 + 0.1 * np.sin(6 * t), 0.7 + 0.1 * np.sin(6 * t)], axis=1)
    c0, c1 = query_colors(2)
    img = plot_scores(scores, chosen=1)
    assert len(_line_pixels(img, c1)) > 1.8 * len(_line_pixels(img, c0))
    img = plot_scores(scores, chosen=0)
    assert len(_line_pixels(img, c0)) > 1.8 * len(_line_pixels(img, c1))


def test_current_frame_marker_moves() -> None:
    scores = np.full((11, 1), 0.5)
    base = plot_scores(scores, chosen=0)
    cols_a = np.nonzero((plot_scores(scores, 0, current_frame=2) != base).any(axis=(0, 2)))[0]
    cols_b = np.nonzero((plot_scores(scores, 0, current_frame=8) != base).any(axis=(0, 2)))[0]
    assert 0 < len(cols_a) <= 3 and 0 < len(cols_b) <= 3
    assert cols_b.mean() - cols_a.mean() > 200  # 6 of 10 steps of a ~590-pixel axis


def test_plot_edge_cases() -> None:
    for scores in (np.zeros((0, 5)), np.zeros((10, 0)), np.full((1, 3), 0.5)):
        img = plot_scores(scores, chosen=None)
        assert img.shape == (240, 640, 3)
    single = plot_scores(np.array([[0.1, 0.9]]), chosen=1)
    assert len(_line_pixels(single, query_colors(2)[1])) > 0
    with pytest.raises(ValueError, match="chosen"):
        plot_scores(np.zeros((3, 2)), chosen=2)
    with pytest.raises(ValueError, match="2-D"):
        plot_scores(np.zeros(3), chosen=None)


# ---------------------------------------------------------------------------------------------
# the decoder, layer by layer


def _layers() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two queries, three layers: query 0 moves right and shrinks onto (100..140, 40..80);
    query 1 stays put in the lower left."""
    boxes = np.array([
        [[20, 20, 100, 100], [70, 30, 130, 90], [100, 40, 140, 80]],
        [[10, 70, 50, 110], [10, 70, 50, 110], [12, 72, 48, 108]],
    ], float)
    scores = np.array([[0.2, 0.5, 0.9], [0.4, 0.3, 0.1]])
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2
    refs = np.concatenate([np.array([[[40, 30]], [[30, 60]]], float), centres[:, :-1]], axis=1)
    return boxes, scores, refs


def test_decoder_view_draws_each_querys_path_and_legend(frame: np.ndarray) -> None:
    boxes, scores, refs = _layers()
    out = draw_decoder(frame, boxes, scores, refs, chosen=0, min_width=160)
    assert out.shape[1] == 160 and out.shape[0] > 120  # the frame, then a legend
    picture = out[:120]
    # The chosen query's last box is highlighted; the path passes through its layer centres.
    assert _near(picture[38:43, 100:141], HIGHLIGHT, 0).sum() > 10
    c0 = query_colors(2)[0]
    assert _near(picture[55:66, 55:106], c0, 10).sum() > 10  # start (40, 30) -> (100, 60)
    # The legend lists every query's score after each layer.
    legend = out[120:]
    assert _near(legend, c0, 0).sum() > 20 and _near(legend, query_colors(2)[1], 0).sum() > 20


def test_decoder_view_of_one_query_shows_each_layers_box(frame: np.ndarray) -> None:
    boxes, scores, refs = _layers()
    one = draw_decoder(frame, boxes, scores, refs, chosen=0, focus=0, min_width=160)
    every = draw_decoder(frame, boxes, scores, refs, chosen=0, min_width=160)
    assert not np.array_equal(one, every)
    colours = layer_colors(3)
    assert len(set(colours)) == 3 and HIGHLIGHT not in colours
    # Layer 1's box (20..100) is drawn in layer 1's colour, only in the focused view.
    edge = one[50:90, 18:23]
    assert _near(edge, colours[0], 10).sum() > 20
    assert _near(every[50:90, 18:23], colours[0], 10).sum() == 0
    big = draw_decoder(frame, boxes, scores, refs, chosen=None, focus=1)  # default 640 wide
    assert big.shape[1] == 640
    with pytest.raises(ValueError, match="focus"):
        draw_decoder(frame, boxes, scores, refs, chosen=0, focus=2)
    with pytest.raises(ValueError, match="layer_scores"):
        draw_decoder(frame, boxes, scores[:, :2], refs, chosen=0)


def test_query_mask_grid_has_a_tile_per_query_and_marks_the_chosen(frame: np.ndarray) -> None:
    masks = np.zeros((3, *frame.shape[:2]), bool)
    masks[0, 10:40, 10:40] = True
    masks[2, 60:100, 80:150] = True
    grid = query_mask_grid(frame, masks, np.array([0.1, 0.2, 0.9]), chosen=2)
    cols = query_colors(3)
    tile_w = frame.shape[1] + 6  # a 3-pixel border each side
    assert grid.shape[1] == 3 * tile_w + 2 * 6
    tiles = [grid[:, i * (tile_w + 6):(i + 1) * (tile_w + 6) - 6] for i in range(3)]
    assert _near(tiles[0], cols[0], 0).sum() > 50 and _near(tiles[1], cols[1], 0).sum() < 250
    assert _near(tiles[2], HIGHLIGHT, 0).sum() > 500 and _near(tiles[0], HIGHLIGHT, 0).sum() == 0
    two_rows = query_mask_grid(frame, masks, np.zeros(3), chosen=None, cols=2)
    assert two_rows.shape[0] > grid.shape[0] and two_rows.shape[1] < grid.shape[1]
    with pytest.raises(ValueError, match="masks"):
        query_mask_grid(frame, masks[:, :10], np.zeros(3), None)


def test_paper_figure_lays_out_rows_and_columns(frame: np.ndarray) -> None:
    masks = [[np.zeros(frame.shape[:2], bool)] * 4, [np.ones(frame.shape[:2], bool)] * 4]
    image = paper_figure([frame] * 4, masks, ["a dog", "the cat"], width=1200,
                         column_labels=["0", "1", "2", "3"])
    lay = figure_layout(1200, 4, 2, frame.shape[:2])
    assert image.shape == (lay["height"], 1200, 3)
    tile = image[lay["tile_top"][1]:lay["tile_top"][1] + lay["tile_h"],
                 lay["left"][2]:lay["left"][2] + lay["tile_w"]]
    assert _near(tile, palette(2)[1], 0).sum() > 100  # row 2's outline in its colour
    gap = image[lay["tile_top"][0]:lay["tile_top"][0] + lay["tile_h"],
                lay["left"][1] - lay["gap"]:lay["left"][1]]
    assert (gap == 255).all()
    with pytest.raises(ValueError, match="one row of masks per caption"):
        paper_figure([frame], [masks[0][:1]], ["a", "b"])


def test_side_by_side_titles_panels_and_even_size(frame: np.ndarray) -> None:
    both = side_by_side([frame, frame[:, :81]], ["A", "B"])
    assert both.shape[0] % 2 == 0 and both.shape[1] % 2 == 0
    assert both.shape[1] >= 160 + 8 + 81
    with pytest.raises(ValueError, match="one title per panel"):
        side_by_side([frame], ["A", "B"])


def test_layer_score_plot_counts_layers_from_one() -> None:
    scores = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])  # [L, Q]
    from_zero = plot_scores(scores, chosen=0)
    from_one = plot_scores(scores, chosen=0, x_start=1, x_label="decoder layer")
    assert not np.array_equal(from_zero, from_one)
    assert notice(300, "nothing kept " * 10).shape[1] == 300


# ---------------------------------------------------------------------------------------------
# text beyond Latin: fonts and words


def _font_file(kind: int) -> tuple | None:
    """The chain's font of one kind found here (0: text, 1: CJK, 2: emoji), or None."""
    from rvos.viz.text import _CJK_FONTS, _EMOJI_FONTS, _TEXT_FONTS, _font_chain

    groups = (_TEXT_FONTS, _CJK_FONTS, _EMOJI_FONTS)
    found = [f for f in _font_chain() if f[:2] in groups[kind]]
    return found[0] if found else None


def _ink(strip: np.ndarray) -> np.ndarray:
    """The text part of a one-line caption strip (right of its swatch)."""
    return strip[:, strip.shape[0] + 4 :]


def test_chinese_draws_as_glyphs_not_missing_boxes() -> None:
    if _font_file(1) is None:
        pytest.skip("no CJK font here: apt-get install fonts-noto-cjk (packages.txt)")
    color = [(20, 20, 20)]
    left, right, cat = (_ink(caption_strip(320, [t], color)) for t in ("左", "右", "猫"))
    missing = _ink(caption_strip(320, ["\U0010fffe"], color))  # no font has it: .notdef
    assert (left < 128).sum() > 20  # ink
    assert not np.array_equal(left, right) and not np.array_equal(left, cat)
    for glyph in (left, right, cat):
        assert not np.array_equal(glyph, missing)
    # Mixed with Latin on one line, each character still gets its glyph.
    mixed = _ink(caption_strip(320, ["the 左 dog"], color))
    assert not np.array_equal(mixed, _ink(caption_strip(320, ["the \U0010fffe dog"], color)))


def test_emoji_draw_in_colour() -> None:
    if _font_file(2) is None:
        pytest.skip("no emoji font here: apt-get install fonts-noto-color-emoji (packages.txt)")
    gray = [(90, 90, 90)]
    car = _ink(caption_strip(320, ["a 🚗 car"], gray)).astype(int)
    saturation = car.max(axis=-1) - car.min(axis=-1)
    assert (saturation > 100).sum() > 20  # a colour emoji on gray text on a light strip
    plain = _ink(caption_strip(320, ["a car"], gray)).astype(int)
    assert ((plain.max(axis=-1) - plain.min(axis=-1)) > 100).sum() == 0


def test_text_draws_without_any_system_font(monkeypatch) -> None:
    from rvos.viz import text as viz_text
    from rvos.viz.text import _font, _font_chain

    monkeypatch.setattr(viz_text, "_TEXT_FONTS", ())
    monkeypatch.setattr(viz_text, "_CJK_FONTS", ())
    monkeypatch.setattr(viz_text, "_EMOJI_FONTS", ())
    _font_chain.cache_clear()
    _font.cache_clear()
    try:
        assert _font_chain() == ()
        strip = caption_strip(200, ["左边的狗 🚗 a dog", "سيارة"], [(200, 0, 0), (0, 0, 200)])
        assert strip.dtype == np.uint8 and strip.shape[1] == 200
        assert _near(strip, (200, 0, 0), 40).sum() > 30  # Pillow's built-in font still draws
    finally:
        _font_chain.cache_clear()
        _font.cache_clear()


@pytest.fixture(scope="module")
def builtin_tokenizer():
    """The built-in model's tokenizer, loaded as a model folder's tokenizer is."""
    from rvos.modeling.tokenizer import TextTokenizer
    from rvos.zoo.checkpoint import TOKENIZER_DIR
    from rvos.zoo.registry import BUILTIN_DIR

    return TextTokenizer.from_pretrained(Path(BUILTIN_DIR) / TOKENIZER_DIR)


def test_chinese_expression_gives_a_word_per_character(builtin_tokenizer) -> None:
    from rvos.predictor.predictor import group_words

    ids = builtin_tokenizer("左边的狗在跑。")["input_ids"]
    words, groups = group_words(builtin_tokenizer, "左边的狗在跑。")
    assert words == ["左", "边", "的", "狗", "在", "跑。"]  # punctuation stays with its word
    assert sum(len(g) for g in groups) == len(ids) - 2  # every token but <s> and </s>
    assert all(len(g) >= 1 for g in groups) and sorted(sum(groups, [])) == sum(groups, [])
    words, _ = group_words(builtin_tokenizer, "the 红色car 🚗 moves")
    assert words == ["the", "红", "色", "car", "🚗", "moves"]
    words, _ = group_words(builtin_tokenizer, "にほんの猫")
    assert words == ["に", "ほ", "ん", "の", "猫"]
    # Latin, accented Latin and Arabic are split at whitespace as before.
    assert group_words(builtin_tokenizer, "a dog, running")[0] == ["a", "dog,", "running"]
    assert group_words(builtin_tokenizer, " café  naïve ")[0] == ["café", "naïve"]
    assert group_words(builtin_tokenizer, "سيارة حمراء")[0] == ["سيارة", "حمراء"]


# ---------------------------------------------------------------------------------------------
# drawings people read: labels apart, legends readable, scales and titles, counting from 1


def test_query_labels_do_not_hide_each_other(frame: np.ndarray) -> None:
    boxes = np.array([[30, 40, 120, 100], [30, 40, 120, 100], [31, 41, 119, 99]], float)
    out = draw_queries(frame, boxes, np.array([0.2, 0.4, 0.6]), chosen=None)
    for color in query_colors(3):
        # Each label is a filled box of at least ~30x8 pixels in its query's colour; the box
        # lines under it are drawn over by the next query's.
        assert _near(out, color, 0).sum() > 150
    layers = np.repeat(boxes[:, None], 2, axis=1)
    refs = np.repeat(((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None], 2, axis=1)
    picture = draw_decoder(frame, layers, np.full((3, 2), 0.5), refs, None, min_width=160)[:120]
    for color in query_colors(3):
        assert _near(picture, color, 0).sum() > 150


def test_queries_are_counted_from_one(frame: np.ndarray, monkeypatch) -> None:
    from rvos.viz.draw import _label, _legend

    texts: list[str] = []
    real = _label
    monkeypatch.setattr(explorer, "_label", lambda image, text, *a, **k: (
        texts.append(text), real(image, text, *a, **k)))
    draw_queries(frame, np.array([[10, 10, 50, 50], [60, 10, 90, 50]], float),
                 np.array([0.25, 0.5]), chosen=1)
    assert sorted(texts) == ["q1 0.25", "q2 0.50"]
    lines: list[str] = []
    real_legend = _legend
    monkeypatch.setattr(decoder, "_legend", lambda width, rows, size: (
        lines.extend(text for row in rows for text, _ in row), real_legend(width, rows, size))[1])
    one_layer = np.array([[[10, 10, 50, 50]]], float)
    draw_decoder(frame, one_layer, np.array([[0.5]]), np.array([[[30.0, 30.0]]]), chosen=0)
    assert any("1 decoder layer " in line for line in lines)  # not "1 decoder layers"
    assert "q1 (chosen): 0.50" in lines


def test_portrait_decoder_keeps_its_legend_readable_beside_the_frame() -> None:
    tall = np.full((640, 360, 3), 120, np.uint8)
    boxes, scores, refs = _layers()
    out = draw_decoder(tall, boxes, scores, refs, chosen=0)
    assert out.shape[0] == 640  # the frame's height: not scaled to 640 wide (1138 tall)
    assert out.shape[1] > 360 + 300  # the legend to its right
    np.testing.assert_array_equal(out[:640, :360], draw_decoder(
        tall, boxes, scores, refs, chosen=0)[:640, :360])
    legend = out[:, 360:]
    text_rows = np.flatnonzero(_near(legend, (20, 20, 20), 40).any(axis=1))
    assert len(text_rows) > 0 and text_rows.max() < 640
    # Shown at most 960 px on its long side (the app's views), text stays over 12 px high: the
    # legend's font is at least 1/60 of the picture's long side.
    first_line = text_rows[text_rows < text_rows.min() + 40]
    assert (first_line.max() - first_line.min() + 1) / max(out.shape[:2]) > 1 / 80
    # A 4000x1 clip is not blown up to 640 pixels wide (2.5 million tall).
    thin = draw_decoder(np.zeros((4000, 1, 3), np.uint8), boxes, scores, refs, chosen=None)
    assert thin.shape[0] == 4000 and thin.size < 20e6


def test_chosen_tile_title_is_below_its_tile(frame: np.ndarray) -> None:
    masks = np.zeros((3, *frame.shape[:2]), bool)  # no fill: dark pixels are title text only
    grid = query_mask_grid(frame, masks, np.array([0.1, 0.2, 0.9]), chosen=2)
    text_rows = np.flatnonzero(_near(grid, (20, 20, 20), 10).any(axis=1))
    assert len(text_rows) > 0 and text_rows.min() > frame.shape[0]  # under the frames
    # The top-right corner, where a page's toolbar sits, is the chosen tile's frame.
    np.testing.assert_array_equal(grid[3:23, -23:-3], frame[:20, -20:])
    assert _near(grid[:3, -40:], HIGHLIGHT, 0).all()


def test_word_attention_has_a_title_and_a_colour_scale(frame: np.ndarray) -> None:
    from rvos.viz.explorer import attention_view, colorbar

    heat = np.random.default_rng(1).random((6, 8))
    picture = draw_attention(frame, heat)
    dog = attention_view(picture, "word “dog” · level early fusion, 1/8 · head 2", 0.01, 0.3)
    cat = attention_view(picture, "word “cat” · level early fusion, 1/8 · head 2", 0.01, 0.3)
    assert dog.shape[1] == 320 and dog.shape[0] > frame.shape[0]  # widened to 320 for text
    rows = np.flatnonzero((dog != cat).any(axis=(1, 2)))
    assert len(rows) > 0 and rows.max() < dog.shape[0] - frame.shape[0]  # the title differs
    top = np.flatnonzero((dog[:, :, 0] == 255).all(axis=1) == 0)[0]
    assert top < 40
    bar = dog[-40:]
    assert _near(bar, (0, 0, 140), 30).sum() > 10 and _near(bar, (140, 0, 0), 30).sum() > 10
    other_range = attention_view(picture, "word “dog” · level early fusion, 1/8 · head 2",
                                 0.01, 0.9)
    assert not np.array_equal(other_range[-40:], bar)  # the range is written on the scale
    assert colorbar(200, 0.0, 1.0).shape[1] == 200


def test_score_plot_has_axis_titles_and_a_cursor_on_the_first_and_last_frame() -> None:
    scores = np.full((11, 1), 0.5)
    base = plot_scores(scores, 0, x_start=1, x_label="frame")
    assert not np.array_equal(base, plot_scores(scores, 0, x_start=1))  # x title
    assert not np.array_equal(base, plot_scores(scores, 0, x_start=1, x_label="frame",
                                                y_label=None))  # y title
    gray = _near(base, (90, 90, 90), 0)
    axis_x = int(np.argmax(gray.sum(axis=0)))  # the y axis: the longest gray column
    right = int(np.flatnonzero(_near(base, (228, 228, 228), 0).any(axis=0)).max())
    for t in (0, 10):
        cols = np.flatnonzero((plot_scores(scores, 0, t, x_start=1, x_label="frame")
                               != base).any(axis=(0, 2)))
        assert 0 < len(cols) <= 3
        assert cols.min() > axis_x + 2 and cols.max() < right - 2  # inside the plot area
