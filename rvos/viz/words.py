"""Which words matter, drawn: a bar chart of how much each word changes the answer, and the
changed mask next to the full sentence's on one frame.

Everything takes plain numbers and arrays (`rvos.predictor.words.WordImportance` holds them)
and draws for any input: no word, one word, NaN (shown as "n/a", no bar), values outside their
range (clipped), words of any length or script (cut with "…", drawn with the CJK / emoji fonts
of `rvos.viz.text`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from rvos.viz.colors import Color
from rvos.viz.draw import _check_frame, notice, overlay_masks
from rvos.viz.text import _fit_text, _font

__all__ = ["FULL_COLOR", "VARIANT_COLOR", "plot_word_importance", "word_change_frame"]


IOU_COLOR: Color = (214, 39, 40)  # mask change
SCORE_UP: Color = (44, 160, 44)  # the variant scores higher than the full sentence
SCORE_DOWN: Color = (31, 119, 180)  # lower
SELECTED_BG: Color = (255, 244, 190)
FULL_COLOR: Color = (255, 221, 0)  # the full sentence's mask
VARIANT_COLOR: Color = (230, 30, 200)  # the changed sentence's mask
_TEXT: Color = (20, 20, 20)
_AXIS: Color = (120, 120, 120)
_GRID: Color = (228, 228, 228)


def _value(x: object) -> float:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return v


def plot_word_importance(labels: Sequence[str], iou_change: Sequence[float],
                         score_change: Sequence[float], *, selected: int | None = None,
                         width: int = 640, title: str | None = None) -> np.ndarray:
    """One row per changed sentence: its label, a bar of the mask change (1 − IoU with the full
    sentence's masks over the clip, 0..1) and a bar of the score change (−1..1, centred).

    Arguments:
        labels: one per row, e.g. ``"red"`` (left out) or ``"red → blue"`` (swapped).
        iou_change, score_change: one number per row; NaN or None draws "n/a" and no bar.
        selected: the row shown on the frame view, highlighted (None: none).
        width: image width in pixels (at least 240).
        title: a line above the chart (e.g. the expression), cut to fit.
    Returns:
        ``uint8 [H, width, 3]``; H grows with the number of rows.
    """
    n = len(labels)
    if len(iou_change) != n or len(score_change) != n:
        raise ValueError(f"need one value per label: {n} labels, {len(iou_change)} IoU "
                         f"changes, {len(score_change)} score changes")
    width = int(width)
    if width < 240:
        raise ValueError(f"width must be at least 240, got {width}")
    if n == 0:
        return notice(width, "No words to weigh: the expression has no word.")
    size = 14
    font, small = _font(size), _font(12)
    row_h, pad = size + 12, 8
    head = pad + (size + 8 if title else 0) + (size + 8)
    height = head + n * row_h + 2 * pad
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    label_w = round(width * 0.28)
    gap = 12
    bars = width - label_w - 3 * gap - pad
    iou_x0 = label_w + gap
    iou_w = bars // 2
    score_x0 = iou_x0 + iou_w + gap
    score_w = width - pad - score_x0
    score_mid = score_x0 + score_w // 2
    y = pad
    if title:
        font.draw(image, (pad, y + size / 2), _fit_text(title, font, width - 2 * pad), _TEXT)
        y += size + 8
    small.draw(image, (iou_x0, y + size / 2),
               _fit_text("mask change (1 − IoU)", small, iou_w), _TEXT)
    small.draw(image, (score_x0, y + size / 2),
               _fit_text("score change (−1 … +1)", small, score_w), _TEXT)
    top = head
    bottom = top + n * row_h
    for x in (iou_x0, iou_x0 + iou_w // 2, iou_x0 + iou_w):
        draw.line([x, top, x, bottom], fill=_GRID)
    for x in (score_x0, score_x0 + score_w):
        draw.line([x, top, x, bottom], fill=_GRID)
    draw.line([score_mid, top, score_mid, bottom], fill=_AXIS)
    for i in range(n):
        ry = top + i * row_h
        mid = ry + row_h / 2
        if selected is not None and i == selected:
            draw.rectangle([0, ry, width - 1, ry + row_h - 1], fill=SELECTED_BG)
        font.draw(image, (pad, mid), _fit_text(str(labels[i]), font, label_w - pad), _TEXT)
        bar_top, bar_bottom = ry + 4, ry + row_h - 5
        iou = _value(iou_change[i])
        if math.isfinite(iou):
            v = min(max(iou, 0.0), 1.0)
            if v > 0:
                draw.rectangle([iou_x0, bar_top, iou_x0 + max(1, round(v * iou_w)), bar_bottom],
                               fill=IOU_COLOR)
            _value_text(image, small, f"{iou:.2f}", iou_x0, iou_w, v, mid)
        else:
            small.draw(image, (iou_x0 + 4, mid), "n/a", _AXIS)
        score = _value(score_change[i])
        if math.isfinite(score):
            v = min(max(score, -1.0), 1.0)
            end = score_mid + round(v * score_w / 2)
            if end != score_mid:
                draw.rectangle([min(score_mid, end), bar_top, max(score_mid, end), bar_bottom],
                               fill=SCORE_UP if v > 0 else SCORE_DOWN)
            text = f"{score:+.2f}"
            if v >= 0:
                small.draw(image, (score_x0 + 2, mid), text, _TEXT, "lm")
            else:
                small.draw(image, (score_x0 + score_w - 2, mid), text, _TEXT, "rm")
        else:
            small.draw(image, (score_mid + 4, mid), "n/a", _AXIS)
    return np.asarray(image, dtype=np.uint8).copy()


def _value_text(image: Image.Image, font, text: str, x0: int, w: int, v: float,
                mid: float) -> None:
    """The number beside its bar, or inside it near the end when the bar is long."""
    end = x0 + round(v * w)
    if font.getlength(text) + 6 <= x0 + w - end:
        font.draw(image, (end + 4, mid), text, _TEXT, "lm")
    else:
        font.draw(image, (end - 4, mid), text, (255, 255, 255), "rm")


def word_change_frame(frame: np.ndarray, full: np.ndarray, changed: np.ndarray,
                      caption: str | None = None) -> np.ndarray:
    """``frame`` with the full sentence's mask (yellow, `FULL_COLOR`) and the changed sentence's
    (magenta, `VARIANT_COLOR`) over it, and a one-line caption strip under it.

    Arguments:
        frame: uint8 ``[H, W, 3]``.
        full, changed: bool ``[H, W]`` masks.
        caption: e.g. ``"without 'red': the square"``, cut to fit.
    Returns:
        uint8 ``[H + h, W, 3]``.
    """
    frame = _check_frame(frame)
    image = overlay_masks(frame, [full, changed], [FULL_COLOR, VARIANT_COLOR], alpha=0.45)
    legend = [("full sentence", FULL_COLOR), ("changed sentence", VARIANT_COLOR)]
    w = frame.shape[1]
    size = int(np.clip(round(w / 40), 11, 24))
    font = _font(size)
    pad = max(3, size // 3)
    lines = 2 if caption else 1
    strip = Image.new("RGB", (w, pad + lines * (size + pad)), (245, 245, 245))
    draw = ImageDraw.Draw(strip)
    x = pad
    for text, color in legend:
        if x + size >= w:
            break
        draw.rectangle([x, pad, x + size - 1, pad + size - 1], fill=color)
        x += size + pad
        fitted = _fit_text(text, font, w - x - pad)
        font.draw(strip, (x, pad + size / 2), fitted, _TEXT)
        x += round(font.getlength(fitted)) + 2 * pad
    if caption:
        y = pad + size + pad
        font.draw(strip, (pad, y + size / 2), _fit_text(caption, font, w - 2 * pad), _TEXT)
    return np.concatenate([image, np.asarray(strip, dtype=np.uint8)], axis=0)
