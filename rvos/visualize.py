"""Drawing for rvos results: mask overlays, captions, query boxes, attention maps, score plots.

Everything here takes and returns plain numpy arrays (``uint8 [H, W, 3]`` RGB frames) and never
runs a model: the predictor's result object calls these functions with what it stored.

Colours: expression ``k`` (0-based) is drawn in ``palette(n)[k]``, which is DAVIS palette entry
``k + 1``, the colour of object ``k + 1`` in the palette PNG masks of :mod:`rvos.video`. Queries
``q0..q(Q-1)`` have their own colours (:func:`query_colors`), shared by :func:`draw_queries` and
:func:`plot_scores`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "Color",
    "attention_grid",
    "caption_strip",
    "compose_overlay_frame",
    "davis_palette",
    "draw_attention",
    "draw_queries",
    "overlay_masks",
    "palette",
    "plot_scores",
    "query_colors",
]

Color = tuple[int, int, int]

# Colour that marks the chosen query (its box gets a halo of it).
HIGHLIGHT: Color = (255, 221, 0)
_STRIP_BG: Color = (245, 245, 245)  # light, so the darker DAVIS colours stay readable as text
_TEXT_DARK: Color = (20, 20, 20)

# A qualitative 10-colour cycle (the well-known "tab10" values) for queries.
_QUERY_COLORS: tuple[Color, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)

_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:/Windows/Fonts/arial.ttf",
)


# --------------------------------------------------------------------------------------------
# Colours


@functools.cache
def _davis_palette() -> np.ndarray:
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        # PASCAL VOC bit-interleaved colour map: bit j of channel c comes from bit 3*j + c of i.
        c, rgb = i, [0, 0, 0]
        for j in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - j)
            c >>= 3
        pal[i] = rgb
    # The DAVIS palette file differs from VOC in two ways: 191 instead of 192 in its first 22
    # entries, and a gray ramp (i, i, i) from entry 22 on.
    pal[:22][pal[:22] == 192] = 191
    pal[22:] = np.arange(22, 256, dtype=np.uint8)[:, None]
    return pal


def davis_palette() -> np.ndarray:
    """The DAVIS mask palette: ``uint8 [256, 3]`` RGB, entry 0 black (background)."""
    return _davis_palette().copy()


def palette(n: int) -> list[Color]:
    """Colours of ``n`` expressions/objects: DAVIS palette entries 1..n (so they match the masks).

    Raises:
        ValueError: ``n`` is negative or more than 255 (the palette's size).
    """
    if not 0 <= n <= 255:
        raise ValueError(f"palette supports 0..255 colours, got n={n}")
    return [tuple(int(v) for v in rgb) for rgb in _davis_palette()[1 : n + 1]]  # type: ignore[misc]


def query_colors(n: int) -> list[Color]:
    """Colours of queries ``q0..q(n-1)`` (a 10-colour cycle)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [_QUERY_COLORS[i % len(_QUERY_COLORS)] for i in range(n)]


# --------------------------------------------------------------------------------------------
# Checks and text helpers


def _check_frame(frame: np.ndarray, name: str = "frame") -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"{name} must be uint8 [H, W, 3] RGB, got dtype {frame.dtype} shape {frame.shape}"
        )
    return frame


def _check_color(color: Sequence[int]) -> Color:
    if len(color) != 3:
        raise ValueError(f"a colour must be an (r, g, b) triple, got {color!r}")
    r, g, b = (int(v) for v in color)
    if not all(0 <= v <= 255 for v in (r, g, b)):
        raise ValueError(f"colour components must be in 0..255, got {color!r}")
    return (r, g, b)


def _colors_for(n: int, colors: Sequence[Sequence[int]] | None) -> list[Color]:
    if colors is None:
        return palette(n)
    if len(colors) < n:
        raise ValueError(f"need {n} colours, got {len(colors)}")
    return [_check_color(c) for c in colors[:n]]


def _thickness(height: int, width: int) -> int:
    """Line width that stays visible from thumbnails to 4K."""
    return max(1, round(min(height, width) / 240))


@functools.cache
def _font(size: int) -> _Font:
    # DejaVu covers accented Latin, Greek and Cyrillic; PIL's built-in font is the fallback so
    # rendering never fails on a machine without system fonts.
    for candidate in _FONT_CANDIDATES:
        if Path(candidate).is_file():
            try:
                return ImageFont.truetype(candidate, size)
            except OSError:
                continue
    return ImageFont.load_default(size=size)


_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _fit_text(text: str, font: _Font, max_width: float) -> str:
    """``text`` on one line, cut with "…" so that it is at most ``max_width`` pixels wide."""
    text = " ".join(text.split())  # newlines/tabs would break the one-line layout
    if font.getlength(text) <= max_width:
        return text
    lo, hi = 0, len(text)  # largest prefix length that fits together with the ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(text[:mid].rstrip() + "…") <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "…" if lo > 0 else ("…" if font.getlength("…") <= max_width else "")


def _default_font_size(width: int) -> int:
    return int(np.clip(round(width / 40), 12, 32))


# --------------------------------------------------------------------------------------------
# Mask overlays and captions


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
        draw.text((text_x, top + size / 2), text, fill=color, font=font, anchor="lm")
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


# --------------------------------------------------------------------------------------------
# Queries


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


def _label(
    image: np.ndarray, text: str, x: int, y: int, bg: Color, fg: Color, scale: float
) -> None:
    """Text on a filled box whose bottom-left corner is at (x, y), kept inside the image."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    thick = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    height, width = image.shape[:2]
    x = int(np.clip(x, 0, max(width - tw - 4, 0)))
    y = int(np.clip(y, th + base + 2, height))
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 4, y), bg, -1)
    cv2.putText(image, text, (x + 2, y - base), font, scale, fg, thick, cv2.LINE_AA)


def draw_queries(
    frame: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    chosen: int | None,
    ref_points: np.ndarray | None = None,
    sampling_points: np.ndarray | None = None,
    sampling_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Every query's box with its score; the chosen query highlighted.

    Arguments:
        frame: ``uint8 [H, W, 3]``.
        boxes: ``[Q, 4]`` boxes ``(x0, y0, x1, y1)`` in pixels; Q may be 0.
        scores: ``[Q]`` in [0, 1]; each box is labelled ``"q{i} {score:.2f}"``.
        chosen: index of the selected query (drawn last, thicker, with a yellow halo and a yellow
            label), or ``None``.
        ref_points: ``[Q, 2]`` reference points ``(x, y)`` in pixels, drawn as dots.
        sampling_points: ``[Q, N, 2]`` deformable-attention sampling locations ``(x, y)`` in
            pixels, drawn as small translucent dots in the query's colour.
        sampling_weights: ``[Q, N]`` attention weights; a dot's radius and opacity grow with its
            weight relative to the largest weight of that query. Default: all equal.

    Returns:
        ``uint8 [H, W, 3]``, a new array. Non-finite coordinates are skipped.
    """
    frame = _check_frame(frame)
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    elif boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [Q, 4] (x0, y0, x1, y1), got {boxes.shape}")
    num_q = boxes.shape[0]
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape != (num_q,):
        raise ValueError(f"scores must have shape [Q] = [{num_q}], got {scores.shape}")
    if chosen is not None and not (0 <= chosen < num_q):
        raise ValueError(f"chosen must be a query index in [0, {num_q}) or None, got {chosen}")
    if ref_points is not None:
        ref_points = np.asarray(ref_points, dtype=np.float64)
        if ref_points.shape != (num_q, 2):
            raise ValueError(f"ref_points must have shape [Q, 2] = [{num_q}, 2], "
                             f"got {ref_points.shape}")
    if sampling_points is not None:
        sampling_points = np.asarray(sampling_points, dtype=np.float64)
        if sampling_points.ndim != 3 or sampling_points.shape[0] != num_q or (
            sampling_points.shape[2] != 2
        ):
            raise ValueError(f"sampling_points must have shape [Q, N, 2] with Q = {num_q}, "
                             f"got {sampling_points.shape}")
        if sampling_weights is None:
            sampling_weights = np.ones(sampling_points.shape[:2])
        sampling_weights = np.asarray(sampling_weights, dtype=np.float64)
        if sampling_weights.shape != sampling_points.shape[:2]:
            raise ValueError(f"sampling_weights must have shape {sampling_points.shape[:2]}, "
                             f"got {sampling_weights.shape}")
    elif sampling_weights is not None:
        raise ValueError("sampling_weights given without sampling_points")

    out = frame.copy()
    height, width = out.shape[:2]
    t = _thickness(height, width)
    cols = query_colors(num_q)
    order = [q for q in range(num_q) if q != chosen] + ([chosen] if chosen is not None else [])

    if sampling_points is not None and sampling_weights is not None:
        for q in order:
            w = np.nan_to_num(sampling_weights[q], nan=0.0).clip(min=0)
            w_max = w.max() if w.size and w.max() > 0 else 1.0
            # Faint dots first so strong ones stay on top.
            for n in np.argsort(w, kind="stable"):
                p = sampling_points[q, n]
                if not np.all(np.isfinite(p)):
                    continue
                rel = w[n] / w_max
                _blend_dot(out, (p[0], p[1]), 1 + round(2 * t * rel), cols[q], 0.25 + 0.7 * rel)

    label_scale = 0.35 + 0.15 * t
    for q in order:
        box = boxes[q]
        if not np.all(np.isfinite(box)):
            continue
        x0, y0, x1, y1 = (round(v) for v in box)
        if q == chosen:
            cv2.rectangle(out, (x0, y0), (x1, y1), HIGHLIGHT, 3 * t + 2)
            cv2.rectangle(out, (x0, y0), (x1, y1), cols[q], t + 1)
            _label(out, f"q{q} {scores[q]:.2f}", x0, y0 - 2 * t, HIGHLIGHT, _TEXT_DARK,
                   label_scale * 1.2)
        else:
            cv2.rectangle(out, (x0, y0), (x1, y1), cols[q], t)
            _label(out, f"q{q} {scores[q]:.2f}", x0, y0 - t, cols[q], (255, 255, 255), label_scale)

    if ref_points is not None:
        for q in order:
            p = ref_points[q]
            if not np.all(np.isfinite(p)):
                continue
            center = (round(p[0]), round(p[1]))
            r = 2 * t + 1 + (t if q == chosen else 0)
            cv2.circle(out, center, r + 1, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(out, center, r, cols[q], -1, cv2.LINE_AA)
    return out


# --------------------------------------------------------------------------------------------
# Attention


def draw_attention(
    frame: np.ndarray,
    heat: np.ndarray,
    alpha: float = 0.55,
    colormap: int = cv2.COLORMAP_JET,
) -> np.ndarray:
    """Blend a heat map over a frame.

    Arguments:
        frame: ``uint8 [H, W, 3]``.
        heat: ``float [h, w]`` at any resolution; normalised to [0, 1] by its own min and max
            (a constant map is all zeros; NaN counts as the minimum) and upsampled bilinearly to
            the frame.
        alpha: opacity of the colour map.
        colormap: an OpenCV colormap id (``cv2.COLORMAP_*``).

    Returns:
        ``uint8 [H, W, 3]``: ``(1 - alpha) * frame + alpha * colormap(heat)``.
    """
    frame = _check_frame(frame)
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2 or heat.size == 0:
        raise ValueError(f"heat must be a non-empty 2-D [h, w] array, got shape {heat.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    finite = np.isfinite(heat)
    lo = float(heat[finite].min()) if finite.any() else 0.0
    hi = float(heat[finite].max()) if finite.any() else 0.0
    heat = np.where(finite, heat, lo)
    norm = (heat - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(heat)
    height, width = frame.shape[:2]
    up = cv2.resize(norm, (width, height), interpolation=cv2.INTER_LINEAR)
    levels = np.clip(np.rint(up * 255), 0, 255).astype(np.uint8)
    colored = cv2.cvtColor(cv2.applyColorMap(levels, colormap), cv2.COLOR_BGR2RGB)
    blended = (1 - alpha) * frame.astype(np.float32) + alpha * colored.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def attention_grid(
    frame: np.ndarray,
    heats: Sequence[np.ndarray],
    labels: Sequence[str],
    cols: int = 4,
    *,
    tile_width: int | None = None,
    alpha: float = 0.55,
) -> np.ndarray:
    """Tiles of :func:`draw_attention`, one per heat map, each under its label (e.g. a word).

    Arguments:
        frame: ``uint8 [H, W, 3]``.
        heats: M heat maps ``[h, w]`` (M >= 1).
        labels: M labels, shown above the tiles (cut with "…" if too long).
        cols: tiles per row.
        tile_width: width of one tile; default ``min(W, 320)`` so a many-word grid stays small.
        alpha: heat map opacity.

    Returns:
        ``uint8 [rows * (label_h + tile_h) + gaps, cols' * tile_width + gaps, 3]`` on white, with
        ``cols' = min(cols, M)``, 2-pixel gaps between tiles, empty cells white.
    """
    frame = _check_frame(frame)
    if len(heats) == 0:
        raise ValueError("heats is empty; pass at least one attention map")
    if len(labels) != len(heats):
        raise ValueError(f"got {len(heats)} heat maps but {len(labels)} labels")
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    height, width = frame.shape[:2]
    tw = tile_width or min(width, 320)
    th = max(1, round(height * tw / width))
    small = cv2.resize(frame, (tw, th), interpolation=cv2.INTER_AREA) if (tw, th) != (
        width, height) else frame
    size = int(np.clip(round(tw / 16), 11, 24))
    font = _font(size)
    label_h = size + 6
    gap = 2
    ncols = min(cols, len(heats))
    nrows = -(-len(heats) // ncols)
    cell_h = label_h + th
    grid = np.full(
        (nrows * cell_h + (nrows - 1) * gap, ncols * tw + (ncols - 1) * gap, 3), 255, np.uint8
    )
    for i, (heat, label) in enumerate(zip(heats, labels, strict=True)):
        r, c = divmod(i, ncols)
        y, x = r * (cell_h + gap), c * (tw + gap)
        strip = Image.new("RGB", (tw, label_h), (255, 255, 255))
        ImageDraw.Draw(strip).text(
            (3, label_h / 2), _fit_text(str(label), font, tw - 6), fill=_TEXT_DARK, font=font,
            anchor="lm",
        )
        grid[y : y + label_h, x : x + tw] = np.asarray(strip)
        grid[y + label_h : y + cell_h, x : x + tw] = draw_attention(small, heat, alpha=alpha)
    return grid


# --------------------------------------------------------------------------------------------
# Score plot


def plot_scores(
    scores: np.ndarray,
    chosen: int | None,
    current_frame: int | None = None,
    size: tuple[int, int] = (640, 240),
) -> np.ndarray:
    """Each query's score over time as a line plot (OpenCV only, no matplotlib).

    Arguments:
        scores: ``[T, Q]`` in [0, 1] (values are clipped); T or Q may be 0 (empty axes).
        chosen: the selected query, drawn thicker and marked with "*" in the legend; or ``None``.
        current_frame: draw a vertical marker at this frame index, or ``None``.
        size: ``(W, H)`` of the image.

    Returns:
        ``uint8 [H, W, 3]``: white background, y axis 0..1, x axis frame index, legend q0..q(Q-1)
        in :func:`query_colors`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D [T, Q] array, got shape {scores.shape}")
    num_t, num_q = scores.shape
    if chosen is not None and not (0 <= chosen < num_q):
        raise ValueError(f"chosen must be a query index in [0, {num_q}) or None, got {chosen}")
    width, height = int(size[0]), int(size[1])
    if width < 120 or height < 80:
        raise ValueError(f"size must be at least (120, 80), got {size}")
    img = np.full((height, width, 3), 255, np.uint8)
    font, fscale, axis_color = cv2.FONT_HERSHEY_SIMPLEX, 0.4, (90, 90, 90)
    left, right, top, bottom = 38, 12, 24, 24
    x_end, y_end = width - right, height - bottom
    plot_w, plot_h = x_end - left, y_end - top

    def to_x(t: float) -> int:
        return left + round(plot_w * (t / (num_t - 1) if num_t > 1 else 0.5))

    def to_y(s: float) -> int:
        return top + round(plot_h * (1.0 - s))

    for s in (0.0, 0.25, 0.5, 0.75, 1.0):  # grid and y ticks
        y = to_y(s)
        cv2.line(img, (left, y), (x_end, y), (228, 228, 228), 1)
        if s in (0.0, 0.5, 1.0):
            label = f"{s:g}"
            (tw, th), _ = cv2.getTextSize(label, font, fscale, 1)
            cv2.putText(img, label, (left - tw - 5, y + th // 2), font, fscale, axis_color, 1,
                        cv2.LINE_AA)
    if num_t > 0:  # x ticks at up to 6 frame indices
        for t in sorted({round(v) for v in np.linspace(0, num_t - 1, min(num_t, 6))}):
            x = to_x(t)
            cv2.line(img, (x, y_end), (x, y_end + 3), axis_color, 1)
            (tw, th), _ = cv2.getTextSize(str(t), font, fscale, 1)
            cv2.putText(img, str(t), (x - tw // 2, y_end + 5 + th), font, fscale, axis_color, 1,
                        cv2.LINE_AA)
    cv2.line(img, (left, top), (left, y_end), axis_color, 1)
    cv2.line(img, (left, y_end), (x_end, y_end), axis_color, 1)

    if current_frame is not None and num_t > 0:
        x = to_x(float(np.clip(current_frame, 0, num_t - 1)))
        cv2.line(img, (x, top), (x, y_end), (60, 60, 60), 1)

    cols = query_colors(num_q)
    vals = np.clip(np.nan_to_num(scores, nan=0.0), 0.0, 1.0)
    order = [q for q in range(num_q) if q != chosen] + ([chosen] if chosen is not None else [])
    for q in order:
        thick = 4 if q == chosen else 2
        pts = np.array([[to_x(t), to_y(vals[t, q])] for t in range(num_t)], np.int32)
        if num_t == 1:
            cv2.circle(img, tuple(int(v) for v in pts[0]), thick + 2, cols[q], -1)
        elif num_t > 1:
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, cols[q], thick, cv2.LINE_AA)

    x = left + 4  # legend along the top margin
    for q in range(num_q):
        label = f"q{q}*" if q == chosen else f"q{q}"
        (tw, th), _ = cv2.getTextSize(label, font, fscale, 1)
        if x + 18 + tw > width:
            break
        cv2.line(img, (x, top // 2), (x + 14, top // 2), cols[q], 3 if q == chosen else 2)
        cv2.putText(img, label, (x + 18, top // 2 + th // 2), font, fscale, cols[q], 1,
                    cv2.LINE_AA)
        x += 18 + tw + 12
    return img
