"""Per-frame curves in [0, 1] (J and F of an evaluation, two systems' agreement), one line per
expression in the expression's colour. OpenCV only, as `rvos.viz.explorer.plot_scores`."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from rvos.viz.colors import Color

__all__ = ["plot_curves"]


_AXIS: Color = (90, 90, 90)


def plot_curves(series: Sequence[np.ndarray], colors: Sequence[Color], labels: Sequence[str],
                *, current_frame: int | None = None, size: tuple[int, int] = (640, 200),
                y_label: str = "", title: str = "", x_start: int = 1) -> np.ndarray:
    """One line per series over the frames, the y axis 0..1, the x axis the frame (counted
    from ``x_start``: 1, as the score plots of `rvos.viz.explorer.plot_scores` count).

    Arguments:
        series: K arrays of T values in [0, 1] (clipped; NaN leaves a gap). T may be 0.
        colors / labels: one per series (labels in the legend; ASCII).
        current_frame: a vertical cursor at this frame, or None.
        size: ``(W, H)``; at least (160, 100).
        y_label / title: the axis's name (left) and a title above the legend.

    Returns:
        ``uint8 [H, W, 3]`` on white.
    """
    if not len(series) == len(colors) == len(labels):
        raise ValueError(f"need one colour and label per series, got {len(series)}, "
                         f"{len(colors)} and {len(labels)}")
    width, height = int(size[0]), int(size[1])
    if width < 160 or height < 100:
        raise ValueError(f"size must be at least (160, 100), got {size}")
    values = [np.asarray(s, dtype=np.float64).ravel() for s in series]
    num_t = max((v.size for v in values), default=0)
    img = np.full((height, width, 3), 255, np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    (_, text_h), _ = cv2.getTextSize("0", font, scale, 1)
    left, right, top, bottom = 44 + (26 if y_label else 0), 12, 26, 22 + text_h
    x_end, y_end = width - right, height - bottom
    inset = 6
    plot_w, plot_h = x_end - left - 2 * inset, y_end - top

    def to_x(t: float) -> int:
        return left + inset + round(plot_w * (t / (num_t - 1) if num_t > 1 else 0.5))

    def to_y(v: float) -> int:
        return top + round(plot_h * (1.0 - v))

    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = to_y(v)
        cv2.line(img, (left, y), (x_end, y), (228, 228, 228), 1)
        if v in (0.0, 0.5, 1.0):
            (tw, th), _ = cv2.getTextSize(f"{v:g}", font, scale, 1)
            cv2.putText(img, f"{v:g}", (left - tw - 5, y + th // 2), font, scale, _AXIS, 1,
                        cv2.LINE_AA)
    if y_label:
        cv2.putText(img, y_label[:4], (4, (top + y_end) // 2 + text_h // 2), font, scale + 0.1,
                    _AXIS, 1, cv2.LINE_AA)
    for t in sorted({round(v) for v in np.linspace(0, num_t - 1, min(num_t, 8))}):
        x = to_x(t)
        cv2.line(img, (x, y_end), (x, y_end + 3), _AXIS, 1)
        tick = str(t + x_start)
        (tw, th), _ = cv2.getTextSize(tick, font, scale, 1)
        cv2.putText(img, tick, (x - tw // 2, y_end + 6 + th), font, scale, _AXIS, 1,
                    cv2.LINE_AA)
    cv2.line(img, (left, top), (left, y_end), _AXIS, 1)
    cv2.line(img, (left, y_end), (x_end, y_end), _AXIS, 1)
    if current_frame is not None and num_t > 0:
        x = to_x(float(np.clip(current_frame, 0, num_t - 1)))
        cv2.line(img, (x, top), (x, y_end), (40, 40, 40), 2)

    for v, color in zip(values, colors, strict=True):
        color = tuple(int(c) for c in color)
        points = [(to_x(t), to_y(float(np.clip(x, 0, 1)))) if np.isfinite(x) else None
                  for t, x in enumerate(v)]
        run: list[tuple[int, int]] = []
        for p in [*points, None]:  # polylines over each run of finite values
            if p is not None:
                run.append(p)
                continue
            if len(run) == 1:
                cv2.circle(img, run[0], 3, color, -1, cv2.LINE_AA)
            elif run:
                cv2.polylines(img, [np.array(run, np.int32).reshape(-1, 1, 2)], False, color,
                              2, cv2.LINE_AA)
            run = []
        if 1 < len(v) <= 24:  # few frames: mark each one
            for p in points:
                if p is not None:
                    cv2.circle(img, p, 3, color, -1, cv2.LINE_AA)

    x = left + 4
    if title:
        cv2.putText(img, title, (x, top // 2 + text_h // 2), font, scale, _TEXT, 1, cv2.LINE_AA)
        x += cv2.getTextSize(title, font, scale, 1)[0][0] + 14
    for label, color in zip(labels, colors, strict=True):
        (tw, th), _ = cv2.getTextSize(label, font, scale, 1)
        if x + 18 + tw > width:
            break
        color = tuple(int(c) for c in color)
        cv2.line(img, (x, top // 2), (x + 14, top // 2), color, 3)
        cv2.putText(img, label, (x + 18, top // 2 + th // 2), font, scale, color, 1, cv2.LINE_AA)
        x += 18 + tw + 12
    return img


_TEXT: Color = (30, 30, 30)
