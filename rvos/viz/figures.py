"""Paper figures and side-by-side panels."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw

from rvos.viz.colors import _colors_for
from rvos.viz.draw import _STRIP_BG, _TEXT_DARK, _check_frame, _resize_to, overlay_masks
from rvos.viz.text import _fit_text, _font

__all__ = ["figure_layout", "paper_figure", "side_by_side"]


def paper_figure(
    frames: Sequence[np.ndarray],
    masks: Sequence[Sequence[np.ndarray]],
    captions: Sequence[str],
    colors: Sequence[Sequence[int]] | None = None,
    column_labels: Sequence[str] | None = None,
    *,
    width: int = 2000,
    alpha: float = 0.5,
) -> np.ndarray:
    """A paper-style qualitative figure: one row per expression, one column per frame.

    Each row is captioned above with its sentence (a swatch and the text in the expression's
    colour) and shows, on every column's frame, that expression's mask in its colour. Frames
    and masks are scaled to the tile size before the overlay, so outlines stay sharp at print
    resolution.

    Arguments:
        frames: N frames ``uint8 [H, W, 3]`` of one size (the columns).
        masks: K rows of N bool masks ``[H, W]``: ``masks[k][j]`` is expression k on frame j.
        captions: K sentences.
        colors: K colours; default :func:`palette` ``(K)``.
        column_labels: N labels above the columns (e.g. the frame times), or ``None``.
        width: image width in pixels (at 300 dpi, 2000 px print 17 cm wide).
        alpha: mask fill opacity.

    Returns:
        ``uint8 [H', width, 3]`` on white: margins, the column labels, then per row a caption
        line and N tiles separated by white gaps (see `figure_layout` for the numbers).
    """
    if not frames:
        raise ValueError("frames is empty; pass at least one frame")
    frames = [_check_frame(f) for f in frames]
    h0, w0 = frames[0].shape[:2]
    if any(f.shape[:2] != (h0, w0) for f in frames):
        raise ValueError("all frames must have the same size")
    if len(masks) != len(captions) or not captions:
        raise ValueError(f"need one row of masks per caption (and at least one), got "
                         f"{len(masks)} rows and {len(captions)} captions")
    n = len(frames)
    if any(len(row) != n for row in masks):
        raise ValueError(f"every row needs {n} masks, one per frame")
    if column_labels is not None and len(column_labels) != n:
        raise ValueError(f"got {len(column_labels)} column labels for {n} frames")
    cols = _colors_for(len(captions), colors)
    lay = figure_layout(width, n, len(captions), (h0, w0), column_labels is not None)
    image = Image.new("RGB", (width, lay["height"]), (255, 255, 255))
    font, small = _font(lay["caption_size"]), _font(lay["label_size"])
    if column_labels is not None:
        for j, label in enumerate(column_labels):
            x = lay["left"][j] + lay["tile_w"] / 2
            small.draw(image, (x, lay["margin"] + lay["label_h"] / 2),
                       _fit_text(str(label), small, lay["tile_w"]), (90, 90, 90), "mm")
    tw, th = lay["tile_w"], lay["tile_h"]
    small_frames = [_resize_to(f, tw, th) for f in frames]
    canvas = np.asarray(image).copy()
    for k, (caption, color) in enumerate(zip(captions, cols, strict=True)):
        cap_top, tile_top = lay["caption_top"][k], lay["tile_top"][k]
        strip = Image.new("RGB", (width - 2 * lay["margin"], lay["caption_h"]), (255, 255, 255))
        sd = ImageDraw.Draw(strip)
        size = lay["caption_size"]
        sd.rectangle([0, (lay["caption_h"] - size) // 2, size - 1,
                      (lay["caption_h"] - size) // 2 + size - 1], fill=color)
        font.draw(strip, (size * 1.5, lay["caption_h"] / 2),
                  _fit_text(f"“{caption}”", font, strip.width - size * 1.5), color, "lm")
        canvas[cap_top : cap_top + lay["caption_h"], lay["margin"] : width - lay["margin"]] = (
            np.asarray(strip))
        for j in range(n):
            m = np.asarray(masks[k][j])
            if m.shape != (h0, w0):
                raise ValueError(f"mask [{k}][{j}] has shape {m.shape}, the frames {(h0, w0)}")
            small_mask = cv2.resize(m.astype(np.float32), (tw, th),
                                    interpolation=cv2.INTER_LINEAR) >= 0.5
            tile = overlay_masks(small_frames[j], [small_mask], colors=[color], alpha=alpha)
            x = lay["left"][j]
            canvas[tile_top : tile_top + th, x : x + tw] = tile
    return canvas


def figure_layout(width: int, columns: int, rows: int, frame_size: tuple[int, int],
                  column_labels: bool = True) -> dict:
    """Where :func:`paper_figure` puts things: ``tile_w``/``tile_h``, the x of each column's
    tile (``left``; a frame more than twice as tall as wide is centred in its column), the y
    of each row's caption (``caption_top``) and tiles (``tile_top``), ``margin``, ``gap``,
    font sizes and the total ``height``."""
    if columns < 1 or rows < 1:
        raise ValueError(f"need at least one row and one column, got {rows}×{columns}")
    margin, gap = max(8, round(width * 0.015)), max(4, round(width * 0.006))
    tile_w = (width - 2 * margin - (columns - 1) * gap) // columns
    if tile_w < 16:
        raise ValueError(f"width {width} is too small for {columns} columns")
    h0, w0 = frame_size
    column_w = tile_w
    tile_h = max(1, round(tile_w * h0 / w0))
    if tile_h > 2 * column_w:  # a very tall frame: at most twice as tall as its column is wide,
        tile_h = 2 * column_w  # centred in the column (a 4000×1 clip would make a 9 GB image)
        tile_w = max(1, round(tile_h * w0 / h0))
    caption_size = max(14, round(width / 60))
    label_size = max(12, round(caption_size * 0.75))
    label_h = label_size + gap if column_labels else 0
    caption_h = round(caption_size * 1.6)
    left = [margin + j * (column_w + gap) + (column_w - tile_w) // 2 for j in range(columns)]
    caption_top, tile_top = [], []
    y = margin + label_h
    for _ in range(rows):
        caption_top.append(y)
        tile_top.append(y + caption_h)
        y += caption_h + tile_h + 2 * gap
    return {"tile_w": tile_w, "tile_h": tile_h, "left": left, "caption_top": caption_top,
            "tile_top": tile_top, "margin": margin, "gap": gap, "caption_size": caption_size,
            "label_size": label_size, "label_h": label_h, "caption_h": caption_h,
            "height": y - 2 * gap + margin}


def side_by_side(panels: Sequence[np.ndarray], titles: Sequence[str], *, gap: int = 8
                 ) -> np.ndarray:
    """Panels next to each other, each under its title, scaled to the first one's height.

    Arguments:
        panels: ``uint8 [H_i, W_i, 3]`` images (e.g. the same frame from two models).
        titles: one title per panel (e.g. "A: builtin").
        gap: white pixels between panels.

    Returns:
        ``uint8 [title_h + H_0, sum W_i' + gaps, 3]`` with even width and height (so it can be
        encoded as yuv420p video without padding).
    """
    if not panels or len(panels) != len(titles):
        raise ValueError(f"need one title per panel, got {len(panels)} panels and "
                         f"{len(titles)} titles")
    panels = [_check_frame(p, "panel") for p in panels]
    h = panels[0].shape[0]
    scaled = [_resize_to(p, max(1, round(p.shape[1] * h / p.shape[0])), h) for p in panels]
    size = int(np.clip(round(h / 18), 12, 28))
    font = _font(size)
    title_h = size + 10
    parts = []
    for i, (panel, title) in enumerate(zip(scaled, titles, strict=True)):
        strip = Image.new("RGB", (panel.shape[1], title_h), _STRIP_BG)
        font.draw(strip, (6, title_h / 2), _fit_text(str(title), font, panel.shape[1] - 12),
                  _TEXT_DARK, "lm")
        parts.append(np.concatenate([np.asarray(strip), panel], axis=0))
        if i < len(scaled) - 1:
            parts.append(np.full((h + title_h, gap, 3), 255, np.uint8))
    image = np.concatenate(parts, axis=1)
    even_h, even_w = image.shape[0] + image.shape[0] % 2, image.shape[1] + image.shape[1] % 2
    if (even_h, even_w) != image.shape[:2]:
        padded = np.full((even_h, even_w, 3), 255, np.uint8)
        padded[: image.shape[0], : image.shape[1]] = image
        image = padded
    return image
