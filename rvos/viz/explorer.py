"""The frame explorer's diagrams: every query's box, word attention with its colour scale, scores
over time.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from rvos.viz.colors import HIGHLIGHT, query_colors
from rvos.viz.draw import (
    _TEXT_DARK,
    _blend_dot,
    _check_frame,
    _label,
    _legend,
    _limit,
    _pt,
    _Rect,
    _thickness,
)
from rvos.viz.text import _fit_text, _font

__all__ = [
    "attention_grid",
    "attention_view",
    "colorbar",
    "draw_attention",
    "draw_queries",
    "plot_scores",
]


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
        scores: ``[Q]`` in [0, 1]; box ``i`` is labelled ``"q{i + 1} {score:.2f}"`` (queries
            counted from 1); labels that would cover each other are moved apart.
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
    limit = _limit(out)
    cols = query_colors(num_q)
    order = [q for q in range(num_q) if q != chosen] + ([chosen] if chosen is not None else [])

    if sampling_points is not None and sampling_weights is not None:
        for q in order:
            w = sampling_weights[q]
            w = np.where(np.isfinite(w), w, 0.0).clip(min=0)
            w_max = w.max() if w.size and w.max() > 0 else 1.0
            # Faint dots first so strong ones stay on top.
            for n in np.argsort(w, kind="stable"):
                p = sampling_points[q, n]
                if not np.all(np.isfinite(p)):
                    continue
                rel = w[n] / w_max
                _blend_dot(out, _pt(p[0], p[1], limit), 1 + round(2 * t * rel), cols[q],
                           0.25 + 0.7 * rel)

    for q in order:
        box = boxes[q]
        if not np.all(np.isfinite(box)):
            continue
        p0, p1 = _pt(box[0], box[1], limit), _pt(box[2], box[3], limit)
        if q == chosen:
            cv2.rectangle(out, p0, p1, HIGHLIGHT, 3 * t + 2)
            cv2.rectangle(out, p0, p1, cols[q], t + 1)
        else:
            cv2.rectangle(out, p0, p1, cols[q], t)

    if ref_points is not None:
        for q in order:
            p = ref_points[q]
            if not np.all(np.isfinite(p)):
                continue
            center = _pt(p[0], p[1], limit)
            r = 2 * t + 1 + (t if q == chosen else 0)
            cv2.circle(out, center, r + 1, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(out, center, r, cols[q], -1, cv2.LINE_AA)

    # Labels last, the chosen query's first: it keeps its place above its box, and a label
    # that would cover one placed before it moves down (or right) until it covers none.
    label_scale = 0.35 + 0.15 * t
    placed: list[_Rect] = []
    for q in reversed(order):
        box = boxes[q]
        if not np.all(np.isfinite(box)):
            continue
        x0, y0 = _pt(box[0], box[1], limit)
        text = f"q{q + 1} {scores[q]:.2f}"
        if q == chosen:
            _label(out, text, x0, y0 - 2 * t, HIGHLIGHT, _TEXT_DARK, label_scale * 1.2, placed)
        else:
            _label(out, text, x0, y0 - t, cols[q], (255, 255, 255), label_scale, placed)
    return out


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
    heat = np.asarray(heat, dtype=np.float64)  # float64: max - min of float32 never overflows
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
    up = cv2.resize(norm.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
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
        font.draw(strip, (3, label_h / 2), _fit_text(str(label), font, tw - 6), _TEXT_DARK)
        grid[y : y + label_h, x : x + tw] = np.asarray(strip)
        grid[y + label_h : y + cell_h, x : x + tw] = draw_attention(small, heat, alpha=alpha)
    return grid


def colorbar(
    width: int,
    low: float | str,
    high: float | str,
    label: str = "",
    *,
    colormap: int = cv2.COLORMAP_JET,
    font_size: int | None = None,
) -> np.ndarray:
    """A horizontal colour scale: ``low`` at its left end, the colour map's ramp, ``high`` at
    its right end, ``label`` (what the colours measure) above it.

    Arguments:
        width: strip width in pixels (at least 1; a narrow strip cuts its texts with "…").
        low, high: the values (formatted with 3 significant digits) or words at the two ends.
        label: a line above the ramp, or "" for none.
        colormap: the OpenCV colormap the picture used.
        font_size: pixel size; default scales with ``width`` (12..20).

    Returns:
        ``uint8 [h, width, 3]`` on white.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    size = font_size or int(np.clip(round(width / 40), 12, 20))
    font = _font(size)
    pad = max(3, size // 3)

    def text_of(v: float | str) -> str:
        return v if isinstance(v, str) else f"{float(v):.3g}"

    lo, hi = text_of(low), text_of(high)
    label_h = size + pad if label else 0
    bar_h = size + 2 * pad
    image = Image.new("RGB", (width, pad + label_h + bar_h), (255, 255, 255))
    if label:
        font.draw(image, (pad, pad + size / 2), _fit_text(label, font, width - 2 * pad),
                  _TEXT_DARK, "lm")
    y = pad + label_h + bar_h / 2
    side = min(max(font.getlength(lo), font.getlength(hi)), width / 4)  # room for each end
    x0, x1 = round(pad + side + pad), round(width - pad - side - pad)
    font.draw(image, (pad, y), _fit_text(lo, font, side), _TEXT_DARK, "lm")
    font.draw(image, (width - pad, y), _fit_text(hi, font, side), _TEXT_DARK, "rm")
    out = np.asarray(image, dtype=np.uint8).copy()
    if x1 > x0:
        ramp = np.linspace(0, 255, x1 - x0).round().astype(np.uint8).reshape(1, -1)
        colored = cv2.cvtColor(cv2.applyColorMap(ramp, colormap), cv2.COLOR_BGR2RGB)
        top = pad + label_h + pad
        out[top : top + size, x0:x1] = colored
    return out


def attention_view(
    image: np.ndarray,
    title: str,
    low: float | str,
    high: float | str,
    label: str = "attention weight",
    *,
    min_width: int = 320,
    colormap: int = cv2.COLORMAP_JET,
) -> np.ndarray:
    """An attention picture (from :func:`draw_attention` or :func:`attention_grid`) with a
    title line above it (what it shows: which word, level, head) and a colour scale below it
    (:func:`colorbar`). The title is drawn as plain text, wrapped; user text in it stays text.

    Arguments:
        image: ``uint8 [H, W, 3]``.
        title: e.g. ``word “dog” · level early fusion, 1/8 · mean of heads``.
        low, high: the values (or words) at the ends of the colour scale.
        label: what the colours measure.
        min_width: a narrower picture is centred on a white strip this wide, so that the title
            and the scale stay readable.

    Returns:
        ``uint8 [h_title + H + h_bar, max(W, min_width), 3]``.
    """
    image = _check_frame(image, "image")
    h, w = image.shape[:2]
    width = max(w, int(min_width), 1)
    size = int(np.clip(round(width / 40), 14, 24))
    head = _legend(width, [[(title, None)]], size)
    body = np.full((h, width, 3), 255, np.uint8)
    body[:, (width - w) // 2 : (width - w) // 2 + w] = image
    bar = colorbar(width, low, high, label, colormap=colormap, font_size=size)
    return np.concatenate([head, body, bar], axis=0)


def plot_scores(
    scores: np.ndarray,
    chosen: int | None,
    current_frame: int | None = None,
    size: tuple[int, int] = (640, 240),
    *,
    x_start: int = 0,
    x_label: str | None = None,
    y_label: str | None = "score",
    found: np.ndarray | None = None,
    presence_threshold: float | None = None,
    presence: np.ndarray | None = None,
) -> np.ndarray:
    """Each query's score over time as a line plot (OpenCV only, no matplotlib).

    Arguments:
        scores: ``[T, Q]`` in [0, 1] (values are clipped, NaN drawn as 0); T or Q may be 0
            (empty axes).
        chosen: the selected query, drawn thicker and marked with "*" in the legend; or ``None``.
        current_frame: draw a vertical cursor at this index (0-based), or ``None``. The data
            sit a few pixels inside the axes, so the cursor stays visible on the first and the
            last index.
        size: ``(W, H)`` of the image.
        x_start: the number the x axis starts at (tick labels are ``x_start + index``; 1 to
            count frames or decoder layers from 1, as people do).
        x_label: the x axis title, written under the tick labels (e.g. "frame").
        y_label: the y axis title, written upright along the axis.
        found: bool ``[T]``: frames where the object was found; the others are shaded red
            and counted in the legend ("not found: n"). None: no presence marks.
        presence_threshold: drawn as a dashed line when above 0.
        presence: ``[T]`` in [0, 1]: a presence head's probabilities (what the threshold
            applies to when the model has one), drawn as a black line labelled "presence";
            None: the chosen query's score is the presence, and no line is added.

    Returns:
        ``uint8 [H, W, 3]``: white background, y axis 0..1, x axis the index, legend q1..qQ
        (queries counted from 1) in :func:`query_colors`.
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
    (_, text_h), _ = cv2.getTextSize("0", font, fscale, 1)
    left = 38 + (text_h + 6 if y_label else 0)
    right, top = 12, 24
    bottom = 24 + (text_h + 6 if x_label else 0)
    x_end, y_end = width - right, height - bottom
    inset = 8  # data stay this far inside the axes, so a cursor never hides in an axis line
    plot_w, plot_h = x_end - left - 2 * inset, y_end - top

    def to_x(t: float) -> int:
        return left + inset + round(plot_w * (t / (num_t - 1) if num_t > 1 else 0.5))

    def to_y(s: float) -> int:
        return top + round(plot_h * (1.0 - s))

    absent = 0
    if found is not None and num_t > 0:
        found = np.asarray(found, dtype=bool).reshape(-1)[:num_t]
        absent = int((~found).sum())
        half = plot_w / (2 * max(num_t - 1, 1))  # each frame owns the span to its neighbours
        for t in np.flatnonzero(~found):
            x0 = max(left + 1, round(to_x(t) - half))
            x1 = min(x_end - 1, round(to_x(t) + half))
            img[top:y_end, x0 : x1 + 1] = _NOT_FOUND_SHADE
    for s in (0.0, 0.25, 0.5, 0.75, 1.0):  # grid and y ticks
        y = to_y(s)
        cv2.line(img, (left, y), (x_end, y), (228, 228, 228), 1)
        if s in (0.0, 0.5, 1.0):
            label = f"{s:g}"
            (tw, th), _ = cv2.getTextSize(label, font, fscale, 1)
            cv2.putText(img, label, (left - tw - 5, y + th // 2), font, fscale, axis_color, 1,
                        cv2.LINE_AA)
    if presence_threshold is not None and 0 < presence_threshold <= 1:
        y = to_y(float(np.clip(presence_threshold, 0.0, 1.0)))
        for x in range(left, x_end, 8):  # dashed
            cv2.line(img, (x, y), (min(x + 4, x_end), y), _NOT_FOUND_LINE, 1)
    if num_t > 0:  # x ticks at up to 6 indices
        for t in sorted({round(v) for v in np.linspace(0, num_t - 1, min(num_t, 6))}):
            x = to_x(t)
            tick = str(t + x_start)
            cv2.line(img, (x, y_end), (x, y_end + 3), axis_color, 1)
            (tw, th), _ = cv2.getTextSize(tick, font, fscale, 1)
            cv2.putText(img, tick, (x - tw // 2, y_end + 5 + th), font, fscale, axis_color, 1,
                        cv2.LINE_AA)
    if x_label:
        (tw, th), _ = cv2.getTextSize(x_label, font, fscale, 1)
        cv2.putText(img, x_label, ((left + x_end - tw) // 2, height - 6), font, fscale,
                    axis_color, 1, cv2.LINE_AA)
    if y_label:
        (tw, th), base = cv2.getTextSize(y_label, font, fscale, 1)
        patch = np.full((th + base + 2, tw + 2, 3), 255, np.uint8)
        cv2.putText(patch, y_label, (1, th + 1), font, fscale, axis_color, 1, cv2.LINE_AA)
        patch = np.rot90(patch)  # reads bottom to top, as a y axis title does
        y0 = max(0, (top + y_end - patch.shape[0]) // 2)
        ph, pw = min(patch.shape[0], height - y0), min(patch.shape[1], left - 2)
        img[y0 : y0 + ph, 2 : 2 + pw] = patch[:ph, :pw]
    cv2.line(img, (left, top), (left, y_end), axis_color, 1)
    cv2.line(img, (left, y_end), (x_end, y_end), axis_color, 1)

    if current_frame is not None and num_t > 0:
        x = to_x(float(np.clip(current_frame, 0, num_t - 1)))
        cv2.line(img, (x, top), (x, y_end), (40, 40, 40), 1)
        cv2.line(img, (x + 1, top), (x + 1, y_end), (40, 40, 40), 1)

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
            if num_t <= 12:  # few points (e.g. decoder layers): mark each one
                for p in pts:
                    cv2.circle(img, (int(p[0]), int(p[1])), thick + 1, cols[q], -1, cv2.LINE_AA)
    if presence is not None and num_t > 0:
        pv = np.clip(np.nan_to_num(np.asarray(presence, np.float64).reshape(-1)[:num_t],
                                   nan=0.0), 0.0, 1.0)
        pts = np.array([[to_x(t), to_y(v)] for t, v in enumerate(pv)], np.int32)
        if len(pts) == 1:
            cv2.circle(img, tuple(int(v) for v in pts[0]), 4, _PRESENCE_LINE, -1)
        else:
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, _PRESENCE_LINE, 2, cv2.LINE_AA)

    x = left + 4  # legend along the top margin
    for q in range(num_q):
        label = f"q{q + 1}*" if q == chosen else f"q{q + 1}"
        (tw, th), _ = cv2.getTextSize(label, font, fscale, 1)
        if x + 18 + tw > width:
            break
        cv2.line(img, (x, top // 2), (x + 14, top // 2), cols[q], 3 if q == chosen else 2)
        cv2.putText(img, label, (x + 18, top // 2 + th // 2), font, fscale, cols[q], 1,
                    cv2.LINE_AA)
        x += 18 + tw + 12
    if presence is not None:
        (tw, th), _ = cv2.getTextSize("presence", font, fscale, 1)
        if x + 18 + tw <= width:
            cv2.line(img, (x, top // 2), (x + 14, top // 2), _PRESENCE_LINE, 2)
            cv2.putText(img, "presence", (x + 18, top // 2 + th // 2), font, fscale,
                        _PRESENCE_LINE, 1, cv2.LINE_AA)
            x += 18 + tw + 12
    if absent:  # at the right end of the legend line
        label = f"not found: {absent}"
        (tw, th), _ = cv2.getTextSize(label, font, fscale, 1)
        x0 = max(x, width - right - tw - 18)
        if x0 + 18 + tw <= width:
            cv2.rectangle(img, (x0, top // 2 - 5), (x0 + 12, top // 2 + 5), _NOT_FOUND_SHADE, -1)
            cv2.rectangle(img, (x0, top // 2 - 5), (x0 + 12, top // 2 + 5), _NOT_FOUND_LINE, 1)
            cv2.putText(img, label, (x0 + 16, top // 2 + th // 2), font, fscale,
                        _NOT_FOUND_LINE, 1, cv2.LINE_AA)
    return img


# Frames where the object was not found: a light red band; the presence threshold: dark red.
_NOT_FOUND_SHADE = (255, 222, 222)
_NOT_FOUND_LINE = (190, 40, 40)
_PRESENCE_LINE = (20, 20, 20)
