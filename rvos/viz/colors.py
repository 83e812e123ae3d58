"""Colours: per expression (the DAVIS palette), per query, per decoder layer."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from rvos.media.labels import _davis_palette

__all__ = ["Color", "layer_colors", "object_color", "palette", "query_colors"]


Color = tuple[int, int, int]


# Colour that marks the chosen query (its box gets a halo of it).
HIGHLIGHT: Color = (255, 221, 0)


# A qualitative 10-colour cycle (the well-known "tab10" values) for queries.
_QUERY_COLORS: tuple[Color, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)


def palette(n: int) -> list[Color]:
    """Colours of ``n`` expressions/objects: DAVIS palette entries 1..n (so they match the masks).

    Raises:
        ValueError: ``n`` is negative or more than 255 (the palette's size).
    """
    if not 0 <= n <= 255:
        raise ValueError(f"palette supports 0..255 colours, got n={n}")
    return [tuple(int(v) for v in rgb) for rgb in _davis_palette()[1 : n + 1]]  # type: ignore[misc]


def object_color(expression: int, obj: int, num_expressions: int) -> Color:
    """Colour of object ``obj`` of ``expression`` (``objects="all"``): object 0, the paper's
    answer, keeps the expression's own colour (a one-object result is drawn as before); the
    others take the palette entries after every expression's first one."""
    index = (expression + obj * max(num_expressions, 1)) % 255
    return palette(index + 1)[index]


def query_colors(n: int) -> list[Color]:
    """Colours of query indices ``0..n-1`` (labelled q1..qn; a 10-colour cycle)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [_QUERY_COLORS[i % len(_QUERY_COLORS)] for i in range(n)]


def layer_colors(n: int) -> list[Color]:
    """Colours of decoder layers ``1..n``: the viridis ramp from dark violet (first layer) to
    light green (last), stopping short of its yellow end, which marks the chosen query."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    levels = np.rint(np.linspace(10, 200, n) if n > 1 else np.array([200.0])).astype(np.uint8)
    bgr = cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_VIRIDIS).reshape(-1, 3)
    return [(int(c[2]), int(c[1]), int(c[0])) for c in bgr]


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
