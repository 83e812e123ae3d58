"""The decoder, layer by layer (each query's path through the decoder layers and its boxes), and
every query's mask as small multiples.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw

from rvos.viz.colors import HIGHLIGHT, Color, layer_colors, query_colors
from rvos.viz.draw import (
    _STRIP_BG,
    _TEXT_DARK,
    _check_frame,
    _label,
    _legend,
    _limit,
    _pt,
    _Rect,
    _thickness,
    overlay_masks,
)
from rvos.viz.text import _count, _default_font_size, _fit_text, _font

__all__ = ["draw_decoder", "query_mask_grid"]


def _check_layers(layer_boxes: np.ndarray, layer_scores: np.ndarray, layer_refs: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.asarray(layer_boxes, dtype=np.float64)
    if boxes.ndim != 3 or boxes.shape[2] != 4 or boxes.shape[1] < 1:
        raise ValueError(f"layer_boxes must have shape [Q, L, 4] (x0, y0, x1, y1), got "
                         f"{boxes.shape}")
    scores = np.asarray(layer_scores, dtype=np.float64)
    refs = np.asarray(layer_refs, dtype=np.float64)
    if scores.shape != boxes.shape[:2]:
        raise ValueError(f"layer_scores must have shape [Q, L] = {boxes.shape[:2]}, got "
                         f"{scores.shape}")
    if refs.shape != (*boxes.shape[:2], 2):
        raise ValueError(f"layer_refs must have shape [Q, L, 2] = {(*boxes.shape[:2], 2)}, got "
                         f"{refs.shape}")
    return boxes, scores, refs


def _path_points(boxes: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """``[L + 1, 2]``: the reference point each layer started from, then the last box's
    centre."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf: a NaN point, skipped
        last = (boxes[-1, :2] + boxes[-1, 2:]) / 2
    return np.concatenate([refs, last[None]], axis=0)


def _draw_path(image: np.ndarray, points: np.ndarray, color: Color, t: int,
               dot_colors: Sequence[Color] | None) -> None:
    """A polyline with arrowheads from ``points[0]`` to ``points[-1]``: a ring at the start,
    then one dot per later point (in ``dot_colors[i]``, default ``color``)."""
    limit = _limit(image)
    pts = [_pt(p[0], p[1], limit) for p in points if np.all(np.isfinite(p))]
    if not pts:
        return
    for a, b in itertools.pairwise(pts):
        length = float(np.hypot(b[0] - a[0], b[1] - a[1]))
        if length < 1:
            continue
        # Arrowheads of one size on every segment long enough to show one; on the short moves
        # of late layers a head would hide the dots.
        # A segment without a head is a plain line: OpenCV 4.14+ asserts tipLength > 0.
        head = 4 * t + 4
        for c, width in (((255, 255, 255), t + 2), (color, t)):
            if length > 3 * head:
                cv2.arrowedLine(image, a, b, c, width, cv2.LINE_AA, tipLength=head / length)
            else:
                cv2.line(image, a, b, c, width, cv2.LINE_AA)
    r = 2 * t + 2
    cv2.circle(image, pts[0], r + 1, (255, 255, 255), -1, cv2.LINE_AA)
    cv2.circle(image, pts[0], r, color, max(1, t), cv2.LINE_AA)
    for i, p in enumerate(pts[1:]):
        c = color if dot_colors is None else dot_colors[i]
        cv2.circle(image, p, 2 * t + 1, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(image, p, 2 * t, c, -1, cv2.LINE_AA)


def draw_decoder(
    frame: np.ndarray,
    layer_boxes: np.ndarray,
    layer_scores: np.ndarray,
    layer_refs: np.ndarray,
    chosen: int | None,
    focus: int | None = None,
    *,
    min_width: int = 640,
) -> np.ndarray:
    """The decoder's iterative box refinement on one frame, with a legend strip below.

    Each decoder layer starts every query from a reference point and returns a refined box; the
    next layer starts from that box's centre. So a query's way through the decoder is a path:
    its first reference point (a ring), then the centre of its box after each layer (dots in
    :func:`layer_colors`), with arrowheads in the direction of travel.

    Arguments:
        frame: ``uint8 [H, W, 3]``.
        layer_boxes: ``[Q, L, 4]`` each query's box ``(x0, y0, x1, y1)`` in pixels after each of
            the L decoder layers.
        layer_scores: ``[Q, L]`` each query's score after each layer.
        layer_refs: ``[Q, L, 2]`` the reference point ``(x, y)`` each layer started from.
        chosen: the query the prediction chose (highlighted), or ``None``.
        focus: ``None`` draws every query's path and last box, the legend giving each query's
            score after every layer; a query index draws that query's box after every layer
            (each in its layer's colour) over the faint paths of the others, the legend giving
            each layer's colour and score.
        min_width: a frame whose long side is shorter is scaled up so that its long side is
            this long, so markers and text stay legible on small clips.

    Returns:
        ``uint8``: the frame (scaled as above to ``[H', W']`` and washed out a little, so thin
        coloured lines stand out on any footage) and a legend, below it (``[H' + h, W', 3]``)
        when the frame is landscape or square, beside it (``[max(H', h), W' + w, 3]``) when it
        is portrait: under a tall frame the legend would be a narrow column, and the whole
        picture shrunk to fit a page's height. Queries are labelled from 1 (q1, q2, …).
    """
    frame = _check_frame(frame)
    boxes, scores, refs = _check_layers(layer_boxes, layer_scores, layer_refs)
    num_q, num_layers = scores.shape
    if chosen is not None and not 0 <= chosen < num_q:
        raise ValueError(f"chosen must be a query index in [0, {num_q}) or None, got {chosen}")
    if focus is not None and not 0 <= focus < num_q:
        raise ValueError(f"focus must be a query index in [0, {num_q}) or None, got {focus}")
    height, width = frame.shape[:2]
    # Scale by the long side, so a portrait frame is not blown up to a huge height.
    scale = max(1.0, min_width / max(width, height))
    if scale > 1:
        frame = cv2.resize(frame, (round(width * scale), round(height * scale)),
                           interpolation=cv2.INTER_LINEAR)
        boxes, refs = boxes * scale, refs * scale
    out = np.rint(0.7 * frame.astype(np.float32) + 0.3 * 255).astype(np.uint8)
    height, width = out.shape[:2]
    t = _thickness(height, width)
    limit = _limit(out)
    qcols, lcols = query_colors(num_q), layer_colors(num_layers)
    order = [q for q in range(num_q) if q not in (chosen, focus)]
    order += [q for q in (chosen, focus) if q is not None and q not in order]
    order = list(dict.fromkeys(order))
    label_scale = 0.35 + 0.15 * t
    placed: list[_Rect] = []

    if focus is None:
        for q in order:
            _draw_path(out, _path_points(boxes[q], refs[q]), qcols[q], t, lcols)
        for q in order:
            box = boxes[q, -1]
            if not np.all(np.isfinite(box)):
                continue
            p0, p1 = _pt(box[0], box[1], limit), _pt(box[2], box[3], limit)
            if q == chosen:
                cv2.rectangle(out, p0, p1, HIGHLIGHT, 3 * t + 2)
            cv2.rectangle(out, p0, p1, qcols[q], t + (q == chosen))
        for q in reversed(order):  # labels last, the chosen query's first (see draw_queries)
            box = boxes[q, -1]
            if not np.all(np.isfinite(box)):
                continue
            x0, y0 = _pt(box[0], box[1], limit)
            bg, fg = (HIGHLIGHT, _TEXT_DARK) if q == chosen else (qcols[q], (255, 255, 255))
            _label(out, f"q{q + 1} {scores[q, -1]:.2f}", x0, y0 - t, bg, fg, label_scale,
                   placed)
        lines = [[(f"Each query's path through the {_count(num_layers, 'decoder layer')} "
                   "(ring: start, dots: box centre after each layer); score after layer 1, 2, …:",
                   None)]]
        for q in range(num_q):
            trail = " → ".join(f"{s:.2f}" for s in scores[q])
            mark = " (chosen)" if q == chosen else ""
            lines.append([(f"q{q + 1}{mark}: {trail}", qcols[q])])
    else:
        faint = out.copy()
        for q in order:
            if q != focus:
                _draw_path(faint, _path_points(boxes[q], refs[q]), qcols[q], t, None)
        out = np.rint(0.35 * faint + 0.65 * out).astype(np.uint8)
        # The last layer's box first and thick, earlier layers thin on top of it: late layers
        # often move a box by a few pixels, and each must stay visible.
        for layer in reversed(range(num_layers)):
            box = boxes[focus, layer]
            if not np.all(np.isfinite(box)):
                continue
            p0, p1 = _pt(box[0], box[1], limit), _pt(box[2], box[3], limit)
            last = layer == num_layers - 1
            if last and focus == chosen:
                cv2.rectangle(out, p0, p1, HIGHLIGHT, 4 * t + 2)
            cv2.rectangle(out, p0, p1, lcols[layer], 2 * t if last else t)
        _draw_path(out, _path_points(boxes[focus], refs[focus]), qcols[focus], t, lcols)
        # Layer numbers above each box's corner, moved aside where they would hide each other.
        for layer in range(num_layers):
            box = boxes[focus, layer]
            if np.all(np.isfinite(box)):
                x0, y0 = _pt(box[0], box[1], limit)
                _label(out, str(layer + 1), x0, y0 - t, lcols[layer], (255, 255, 255),
                       label_scale, placed)
        mark = " (chosen)" if focus == chosen else ""
        lines = [[(f"q{focus + 1}{mark}: its box after each decoder layer (the ring is its "
                   "learned start point; dot k: box centre after layer k). Score:", None)],
                 [(f"layer {k + 1}: {scores[focus, k]:.2f}", lcols[k])
                  for k in range(num_layers)]]
    # Larger than a caption strip's text: the legend is read on a slide, next to the frame.
    if height <= width:  # landscape: the legend below, as wide as the frame
        legend = _legend(width, lines, max(20, _default_font_size(width)))
        return np.concatenate([out, legend], axis=0)
    # Portrait: below a tall frame the legend would be squeezed into a narrow column and the
    # whole picture shrunk to fit the page's height; beside the frame it keeps its size.
    size = max(20, int(np.clip(round(height / 40), 12, 32)))
    legend = _legend(max(width, 16 * size), lines, size)
    image = np.full((max(height, legend.shape[0]), width + legend.shape[1], 3), _STRIP_BG,
                    np.uint8)
    image[:height, :width] = out
    image[: legend.shape[0], width:] = legend
    return image


def query_mask_grid(
    frame: np.ndarray,
    masks: np.ndarray,
    scores: np.ndarray,
    chosen: int | None,
    cols: int | None = None,
    *,
    alpha: float = 0.55,
) -> np.ndarray:
    """Small multiples: every query's mask on the same frame, each tile titled (below it) with
    the query's number (from 1) and score; the chosen query's tile framed in yellow and titled
    "chosen".

    Every query carries its own dynamic mask kernels, so every query has a mask, not only the
    chosen one; side by side they show what the other hypotheses were.

    Arguments:
        frame: ``uint8 [h, w, 3]``, already at the tile size.
        masks: bool ``[Q, h, w]``, query q's mask at the tile size.
        scores: ``[Q]`` the queries' scores on this frame.
        chosen: the chosen query, or ``None``.
        cols: tiles per row (default ``min(Q, 5)``).
        alpha: mask fill opacity.

    Returns:
        ``uint8`` image on white: rows of tiles, each the framed frame over a title line,
        6-pixel gaps.
    """
    frame = _check_frame(frame)
    masks = np.asarray(masks, dtype=bool)
    h, w = frame.shape[:2]
    if masks.ndim != 3 or masks.shape[1:] != (h, w) or masks.shape[0] < 1:
        raise ValueError(f"masks must be bool [Q, h, w] with (h, w) = {(h, w)} (the frame's), "
                         f"got {masks.shape}")
    num_q = masks.shape[0]
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape != (num_q,):
        raise ValueError(f"scores must have shape [Q] = [{num_q}], got {scores.shape}")
    if chosen is not None and not 0 <= chosen < num_q:
        raise ValueError(f"chosen must be a query index in [0, {num_q}) or None, got {chosen}")
    ncols = min(num_q, 5) if cols is None else max(1, min(int(cols), num_q))
    nrows = -(-num_q // ncols)
    size = int(np.clip(round(w / 14), 12, 24))
    font = _font(size)
    title_h, gap, border = size + 8, 6, 3
    # A cell is the framed tile with its title line below it: above, the title of the top-right
    # tile would sit under the toolbar a page shows over an image's top-right corner. A narrow
    # frame is centred in a cell wide enough for its title.
    cell_h, cell_w = h + 2 * border + title_h, max(w + 2 * border, 6 * size)
    grid = np.full((nrows * cell_h + (nrows - 1) * gap, ncols * cell_w + (ncols - 1) * gap, 3),
                   255, np.uint8)
    qcols = query_colors(num_q)
    for q in range(num_q):
        r, c = divmod(q, ncols)
        y, x = r * (cell_h + gap), c * (cell_w + gap)
        is_chosen = q == chosen
        tile = overlay_masks(frame, masks[q : q + 1], colors=[qcols[q]], alpha=alpha)
        edge = HIGHLIGHT if is_chosen else (255, 255, 255)
        tx = x + (cell_w - w - 2 * border) // 2
        grid[y : y + h + 2 * border, tx : tx + w + 2 * border] = edge
        grid[y + border : y + border + h, tx + border : tx + border + w] = tile
        title = Image.new("RGB", (cell_w, title_h), HIGHLIGHT if is_chosen else (255, 255, 255))
        draw = ImageDraw.Draw(title)
        draw.rectangle([border, 4, border + size - 1, 3 + size], fill=qcols[q])
        text = f"q{q + 1}  {scores[q]:.2f}" + ("  chosen" if is_chosen else "")
        font.draw(title, (border + size + 6, title_h / 2),
                  _fit_text(text, font, cell_w - size - 12), _TEXT_DARK, "lm")
        grid[y + h + 2 * border : y + cell_h, x : x + cell_w] = np.asarray(title)
    return grid
