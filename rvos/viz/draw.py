"""Drawing for rvos results: mask overlays, captions, query boxes, the decoder's layer-by-layer
refinement, every query's mask, attention maps, score plots, and the slide figures (a paper-style
grid of frames, two panels side by side).

Everything here takes and returns plain numpy arrays (``uint8 [H, W, 3]`` RGB frames) and never
runs a model: the predictor's result object calls these functions with what it stored.

Colours: expression ``k`` (0-based) is drawn in ``palette(n)[k]``, which is DAVIS palette entry
``k + 1``, the colour of object ``k + 1`` in the palette PNG masks of :mod:`rvos.media.video`.
Queries
``q1..qQ`` (labelled from 1, as people count; index ``q - 1`` in arrays) have their own colours
(:func:`query_colors`), shared by :func:`draw_queries`, :func:`draw_decoder`,
:func:`query_mask_grid` and :func:`plot_scores`. Decoder layers have a
sequential ramp (:func:`layer_colors`), dark for the first layer, light for the last.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw

from rvos.viz.colors import Color, _colors_for
from rvos.viz.text import _default_font_size, _fit_text, _font

__all__ = ["caption_strip", "compose_overlay_frame", "notice", "overlay_masks"]


_STRIP_BG: Color = (245, 245, 245)  # light, so the darker DAVIS colours stay readable as text


_TEXT_DARK: Color = (20, 20, 20)


def _check_frame(frame: np.ndarray, name: str = "frame") -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"{name} must be uint8 [H, W, 3] RGB, got dtype {frame.dtype} shape {frame.shape}"
        )
    return frame


def _thickness(height: int, width: int) -> int:
    """Line width that stays visible from thumbnails to 4K."""
    return max(1, round(min(height, width) / 240))


def _as_mask_list(
    masks: Sequence[np.ndarray] | np.ndarray, height: int, width: int
) -> list[np.ndarray]:
    out = []
    for i, mask in enumerate(masks):
        m = np.asarray(mask)
        if m.shape != (height, width):
            raise ValueError(f"mask {i} has shape {m.shape}; expected the frame's (H, W) = "
                             f"{(height, width)}")
        out.append(m.astype(bool, copy=False))
    return out


def overlay_masks(
    frame: np.ndarray,
    masks: Sequence[np.ndarray] | np.ndarray,
    colors: Sequence[Sequence[int]] | None = None,
    alpha: float = 0.5,
    contour: bool = True,
) -> np.ndarray:
    """Translucent fill (and outline) of each mask over a frame.

    Arguments:
        frame: ``uint8 [H, W, 3]`` RGB.
        masks: K masks ``bool [H, W]`` (a list, or an array ``[K, H, W]``); K may be 0. Later masks
            are blended over earlier ones where they overlap.
        colors: K ``(r, g, b)`` colours; default :func:`palette` ``(K)``.
        alpha: fill opacity in [0, 1]; pixels outside every mask are left exactly unchanged.
        contour: also draw each mask's outline, fully opaque, in its colour.

    Returns:
        ``uint8 [H, W, 3]``, a new array.
    """
    frame = _check_frame(frame)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    height, width = frame.shape[:2]
    mask_list = _as_mask_list(masks, height, width)
    cols = _colors_for(len(mask_list), colors)
    result = frame.copy()
    for mask, color in zip(mask_list, cols, strict=True):
        if not mask.any():
            continue
        # Blend only inside the mask's bounding box: masks are usually small, frames up to 4K.
        rows, cols_ = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols_[0], cols_[-1] + 1))
        # A per-channel lookup table gives the exactly rounded blend and is far faster on large
        # frames than float arithmetic; cv2.copyTo needs contiguous arrays, hence the copy back.
        lut = np.rint((1.0 - alpha) * np.arange(256.0)[:, None] + alpha * np.asarray(color))
        roi = np.ascontiguousarray(result[box])
        blended = cv2.LUT(roi, np.clip(lut, 0, 255).astype(np.uint8).reshape(256, 1, 3))
        cv2.copyTo(blended, mask[box].astype(np.uint8), roi)
        result[box] = roi
    if contour:
        t = _thickness(height, width)
        for mask, color in zip(mask_list, cols, strict=True):
            if mask.any():
                contours, _ = cv2.findContours(
                    mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
                )
                cv2.drawContours(result, contours, -1, color, t)
    return result


def caption_strip(
    width: int,
    captions: Sequence[str],
    colors: Sequence[Sequence[int]] | None = None,
    *,
    font_size: int | None = None,
) -> np.ndarray:
    """A light strip with one line per caption: a colour swatch then the text in that colour.

    Text too wide for ``width`` is cut with "…".

    Arguments:
        width: strip width in pixels (the frame width).
        captions: K strings; K may be 0 (gives a ``[0, width, 3]`` array).
        colors: K colours; default :func:`palette` ``(K)``.
        font_size: pixel size; default scales with ``width`` (12..32).

    Returns:
        ``uint8 [h, width, 3]`` with ``h = pad + K * (font_size + pad)``.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    cols = _colors_for(len(captions), colors)
    if not captions:
        return np.zeros((0, width, 3), dtype=np.uint8)
    size = font_size or _default_font_size(width)
    font = _font(size)
    pad = max(3, size // 3)
    line_h = size + pad
    height = pad + len(captions) * line_h
    image = Image.new("RGB", (width, height), _STRIP_BG)
    draw = ImageDraw.Draw(image)
    text_x = pad + size + pad
    for i, (caption, color) in enumerate(zip(captions, cols, strict=True)):
        top = pad + i * line_h
        draw.rectangle([pad, top, pad + size - 1, top + size - 1], fill=color)
        text = _fit_text(str(caption), font, width - text_x - pad)
        # anchor "lm": vertically centred on the swatch, whatever the font's ascent.
        font.draw(image, (text_x, top + size / 2), text, color, "lm")
    return np.asarray(image, dtype=np.uint8).copy()


def compose_overlay_frame(
    frame: np.ndarray,
    masks: Sequence[np.ndarray] | np.ndarray,
    captions: Sequence[str],
    colors: Sequence[Sequence[int]] | None = None,
    *,
    alpha: float = 0.5,
    position: str = "bottom",
) -> np.ndarray:
    """Mask overlay with the caption strip stacked below (or above) the frame.

    Arguments:
        frame: ``uint8 [H, W, 3]``.
        masks: K masks ``bool [H, W]``, mask k for ``captions[k]``.
        captions: K expressions.
        colors: K colours; default :func:`palette` ``(K)``.
        alpha: fill opacity.
        position: ``"bottom"`` or ``"top"``.

    Returns:
        ``uint8 [H + h, W, 3]`` where ``h`` is the height of :func:`caption_strip`.
    """
    if position not in ("bottom", "top"):
        raise ValueError(f"position must be 'bottom' or 'top', got {position!r}")
    frame = _check_frame(frame)
    if len(captions) != len(masks):
        raise ValueError(f"got {len(masks)} masks but {len(captions)} captions; need one each")
    cols = _colors_for(len(captions), colors)
    overlay = overlay_masks(frame, masks, cols, alpha=alpha)
    strip = caption_strip(frame.shape[1], captions, cols)
    parts = [overlay, strip] if position == "bottom" else [strip, overlay]
    return np.concatenate(parts, axis=0)


def _blend_dot(image: np.ndarray, center: tuple[float, float], radius: int, color: Color,
               alpha: float) -> None:
    """Alpha-blend a filled disc in place, touching only its bounding box."""
    height, width = image.shape[:2]
    cx, cy = round(center[0]), round(center[1])
    x0, x1 = max(cx - radius, 0), min(cx + radius + 1, width)
    y0, y1 = max(cy - radius, 0), min(cy + radius + 1, height)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius * radius
    roi = image[y0:y1, x0:x1]
    roi[disc] = np.rint((1 - alpha) * roi[disc] + alpha * np.asarray(color)).astype(np.uint8)


def _pt(x: float, y: float, limit: float) -> tuple[int, int]:
    """An OpenCV point: rounded, and clamped to ±``limit`` (drawing far outside the image is
    clipped anyway; a box at 1e30 would overflow OpenCV's int coordinates)."""
    return (round(min(max(float(x), -limit), limit)), round(min(max(float(y), -limit), limit)))


def _limit(image: np.ndarray) -> float:
    return 4.0 * max(image.shape[:2]) + 64.0


_Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def _free_spot(x: int, y: int, w: int, h: int, width: int, height: int,
               placed: Sequence[_Rect]) -> tuple[int, int]:
    """Top-left corner near (x, y) for a ``w``×``h`` rectangle inside the image that overlaps no
    rectangle in ``placed``: the spot itself, else one a row or more below (or above), else one
    a column to the right. Falls back to (x, y) when the image has no free spot."""
    def inside(cx: int, cy: int) -> tuple[int, int]:
        return (int(np.clip(cx, 0, max(width - w, 0))), int(np.clip(cy, 0, max(height - h, 0))))

    def free(cx: int, cy: int) -> bool:
        return all(cx >= r[2] or cx + w <= r[0] or cy >= r[3] or cy + h <= r[1] for r in placed)

    x, y = inside(x, y)
    for dx in range(4):
        for k in (0, 1, 2, 3, -1, 4, 5, -2, 6, 7, 8):
            cx, cy = inside(x + dx * (w + 1), y + k * (h + 1))
            if free(cx, cy):
                return cx, cy
    return x, y


def _label(
    image: np.ndarray, text: str, x: int, y: int, bg: Color, fg: Color, scale: float,
    placed: list[_Rect] | None = None,
) -> None:
    """Text on a filled box whose bottom-left corner is at (x, y), kept inside the image. With
    ``placed`` (the rectangles of labels drawn before), the box moves down (or right) until it
    covers none of them, and its rectangle is added to the list."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    thick = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    height, width = image.shape[:2]
    w, h = tw + 4, th + base + 2
    limit = _limit(image)
    x, top = (round(min(max(float(v), -limit), limit)) for v in (x, y - h))
    x, top = _free_spot(x, top, w, h, width, height, placed or [])
    if placed is not None:
        placed.append((x, top, x + w, top + h))
    cv2.rectangle(image, (x, top), (x + w, top + h), bg, -1)
    cv2.putText(image, text, (x + 2, top + h - base), font, scale, fg, thick, cv2.LINE_AA)


def _legend(width: int, lines: Sequence[Sequence[tuple[str, Color | None]]], font_size: int
            ) -> np.ndarray:
    """A light strip of text lines; each line is a list of (text, swatch colour or None)
    cells laid left to right and wrapped when the width runs out. A cell without a swatch is
    prose: it wraps between words."""
    font = _font(font_size)
    pad = max(3, font_size // 3)
    space = round(font.getlength(" "))
    line_h = font_size + pad
    placed: list[tuple[int, int, str, Color | None]] = []  # (x, row, text, swatch)
    row = 0
    for line in lines:
        x = pad
        for text, swatch in line:
            if swatch is None:
                pieces = [(word, None, space) for word in text.split()]
            else:
                pieces = [(text, swatch, 3 * pad)]
            for piece, sw, after in pieces:
                cell = (font_size + pad if sw is not None else 0) + font.getlength(piece)
                if x > pad and x + cell > width - pad:
                    row, x = row + 1, pad
                placed.append((x, row, piece, sw))
                x += round(cell) + after
        row += 1
    image = Image.new("RGB", (width, pad + row * line_h), _STRIP_BG)
    draw = ImageDraw.Draw(image)
    for x, r, text, swatch in placed:
        top = pad + r * line_h
        if swatch is not None:
            draw.rectangle([x, top, x + font_size - 1, top + font_size - 1], fill=swatch)
            x += font_size + pad
        fitted = _fit_text(text, font, width - x - pad)
        font.draw(image, (x, top + font_size / 2), fitted, _TEXT_DARK, "lm")
    return np.asarray(image, dtype=np.uint8).copy()


def notice(width: int, text: str, *, font_size: int = 18) -> np.ndarray:
    """uint8 ``[h, width, 3]``: ``text`` wrapped on a light strip, for a view with nothing to
    draw (e.g. data a run did not keep)."""
    if width < 40:
        raise ValueError(f"width must be at least 40, got {width}")
    return _legend(width, [[(text, None)]], font_size)


def _resize_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    shrink = width < image.shape[1]
    return cv2.resize(image, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
