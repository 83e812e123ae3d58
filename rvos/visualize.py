"""Drawing for rvos results: mask overlays, captions, query boxes, the decoder's layer-by-layer
refinement, every query's mask, attention maps, score plots, and the slide figures (a paper-style
grid of frames, two panels side by side).

Everything here takes and returns plain numpy arrays (``uint8 [H, W, 3]`` RGB frames) and never
runs a model: the predictor's result object calls these functions with what it stored.

Colours: expression ``k`` (0-based) is drawn in ``palette(n)[k]``, which is DAVIS palette entry
``k + 1``, the colour of object ``k + 1`` in the palette PNG masks of :mod:`rvos.video`. Queries
``q1..qQ`` (labelled from 1, as people count; index ``q - 1`` in arrays) have their own colours
(:func:`query_colors`), shared by :func:`draw_queries`, :func:`draw_decoder`,
:func:`query_mask_grid` and :func:`plot_scores`. Decoder layers have a
sequential ramp (:func:`layer_colors`), dark for the first layer, light for the last.
"""

from __future__ import annotations

import functools
import itertools
import math
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "Color",
    "attention_grid",
    "attention_view",
    "caption_strip",
    "colorbar",
    "compose_overlay_frame",
    "davis_palette",
    "draw_attention",
    "draw_decoder",
    "draw_queries",
    "figure_layout",
    "layer_colors",
    "notice",
    "overlay_masks",
    "palette",
    "paper_figure",
    "plot_scores",
    "query_colors",
    "query_mask_grid",
    "side_by_side",
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

# Fonts tried in order for each character (see `_TextFont`): DejaVu for Latin, Greek, Cyrillic,
# Arabic and Hebrew; Noto Sans CJK (Debian: fonts-noto-cjk; the .ttc's Simplified Chinese face)
# for Chinese, Japanese and Korean; Noto Color Emoji (fonts-noto-color-emoji) for emoji. Each
# entry: (path, face index in a collection).
_TEXT_FONTS: tuple[tuple[str, int], ...] = (
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 0),
    ("/usr/share/fonts/dejavu/DejaVuSans.ttf", 0),
    ("/usr/share/fonts/TTF/DejaVuSans.ttf", 0),
    ("/Library/Fonts/Arial Unicode.ttf", 0),
    ("C:/Windows/Fonts/arial.ttf", 0),
)
_CJK_FONTS: tuple[tuple[str, int], ...] = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf", 0),
    ("/System/Library/Fonts/PingFang.ttc", 0),
    ("C:/Windows/Fonts/msyh.ttc", 0),
)
_EMOJI_FONTS: tuple[tuple[str, int], ...] = (
    ("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf", 0),
    ("/usr/share/fonts/noto/NotoColorEmoji.ttf", 0),
    ("/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf", 0),
)
# Noto Color Emoji is a bitmap font with one strike: FreeType loads it at 109 px only, so its
# glyphs are drawn at that size and scaled to the text's.
_EMOJI_STRIKE = 109


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


def _open_font(path: str, index: int, size: int) -> ImageFont.FreeTypeFont | None:
    if not Path(path).is_file():
        return None
    try:
        return ImageFont.truetype(path, size, index=index)
    except (OSError, ValueError):
        return None


@functools.cache
def _font_chain() -> tuple[tuple[str, int, bool], ...]:
    """The fonts of the fallback chain found on this machine, ``(path, index, is_emoji)``: the
    first text font, the first CJK font and the first emoji font that load."""
    chain = []
    for group, emoji in ((_TEXT_FONTS, False), (_CJK_FONTS, False), (_EMOJI_FONTS, True)):
        for path, index in group:
            if _open_font(path, index, _EMOJI_STRIKE if emoji else 16) is not None:
                chain.append((path, index, emoji))
                break
    return tuple(chain)


# An unassigned code point: every font draws it with its missing-glyph box (.notdef).
_MISSING = "\U0010fffe"


@functools.cache
def _probe(path: str, index: int, emoji: bool) -> ImageFont.FreeTypeFont | None:
    return _open_font(path, index, _EMOJI_STRIKE if emoji else 24)


@functools.lru_cache(maxsize=1 << 16)
def _covers(path: str, index: int, emoji: bool, ch: str) -> bool:
    """Whether the font has a glyph of ``ch``: it draws it unlike its missing-glyph box (Pillow
    has no cmap lookup)."""
    font = _probe(path, index, emoji)
    if font is None:
        return False
    try:
        if emoji:  # a colour bitmap font: a missing glyph has no ink at all
            x0, y0, x1, y1 = font.getbbox(ch)
            return x1 > x0 and y1 > y0

        def key(c: str) -> tuple:
            return font.getlength(c), font.getbbox(c), bytes(font.getmask(c))

        return key(ch) != key(_MISSING)
    except Exception:  # a glyph FreeType cannot render counts as missing
        return False


def _joins_previous(ch: str) -> bool:
    """Characters drawn with the font of the character before them: combining marks, the
    zero-width joiner, variation selectors, emoji skin tones, keycap and tag characters (so
    that an emoji sequence or an accented letter stays one run, shaped as one glyph)."""
    cp = ord(ch)
    return (cp in (0x200C, 0x200D, 0xFE0E, 0xFE0F, 0x20E3) or 0x1F3FB <= cp <= 0x1F3FF
            or 0xE0020 <= cp <= 0xE007F or unicodedata.category(ch) in ("Mn", "Me", "Mc"))


def _clean_text(text: str) -> str:
    """``text`` as one drawable line: whitespace runs as one space, control characters and
    unpaired surrogates dropped."""
    text = text.encode("utf-8", "ignore").decode("utf-8")
    text = "".join(c for c in text if c.isspace() or unicodedata.category(c) != "Cc")
    return " ".join(text.split())


class _TextFont:
    """Text of one pixel size drawn with a chain of fonts, character by character: each
    character in the first font that has a glyph for it (emoji prefer the emoji font), so one
    caption can mix Latin, Chinese and emoji. Without any system font, Pillow's built-in font
    draws everything (and nothing fails)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.fonts: list[tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, bool, tuple]] = []
        for path, index, emoji in _font_chain():
            font = _open_font(path, index, _EMOJI_STRIKE if emoji else size)
            if font is not None:
                self.fonts.append((font, emoji, (path, index, emoji)))
        if not self.fonts:
            self.fonts.append((ImageFont.load_default(size=size), False, ()))
        # A colour emoji is drawn at its one strike size, then scaled to about the text's height.
        self.emoji_scale = size / (_EMOJI_STRIKE * 1.17)

    def _has(self, k: int, ch: str) -> bool:
        key = self.fonts[k][2]
        return bool(key) and _covers(*key, ch)

    def runs(self, text: str) -> list[tuple[int, str]]:
        """``text`` cut into ``(font number, piece)`` runs."""
        emoji_at = [k for k, (_, emoji, _) in enumerate(self.fonts) if emoji]
        runs: list[tuple[int, list[str]]] = []
        for i, ch in enumerate(text):
            current = runs[-1][0] if runs else 0
            if ch.isspace():
                k = current if self._has(current, ch) else 0
            elif _joins_previous(ch) and runs:
                k = current
            else:
                order = list(range(len(self.fonts)))
                nxt = text[i + 1] if i + 1 < len(text) else ""
                if 0x1F000 <= ord(ch) <= 0x1FAFF or nxt == "\ufe0f":
                    order = emoji_at + [k for k in order if k not in emoji_at]
                k = next((k for k in order if self._has(k, ch)), 0)
            if runs and runs[-1][0] == k:
                runs[-1][1].append(ch)
            else:
                runs.append((k, [ch]))
        return [(k, "".join(chars)) for k, chars in runs]

    def _run_length(self, k: int, piece: str) -> float:
        font, emoji, _ = self.fonts[k]
        try:
            length = float(font.getlength(piece))
        except Exception:  # e.g. Pillow's bitmap font and a character outside Latin-1
            length = float(font.getlength("?" * len(piece)))
        return length * self.emoji_scale if emoji else length

    def getlength(self, text: str) -> float:
        """Width of ``text`` in pixels."""
        return sum(self._run_length(k, piece) for k, piece in self.runs(text))

    def draw(self, image: Image.Image, xy: tuple[float, float], text: str, fill: Color,
             anchor: str = "lm") -> None:
        """Draw ``text`` at ``xy`` on ``image`` (RGB). ``anchor``: horizontal ``l``/``m``/``r``
        then vertical ``m`` (middle) or ``a`` (top), as in Pillow."""
        text = _clean_text(text)
        if not text:
            return
        runs = self.runs(text)
        lengths = [self._run_length(k, piece) for k, piece in runs]
        x = xy[0] - {"l": 0.0, "m": sum(lengths) / 2, "r": sum(lengths)}[anchor[0]]
        vertical = anchor[1]
        draw = ImageDraw.Draw(image)
        for (k, piece), length in zip(runs, lengths, strict=True):
            font, emoji, _ = self.fonts[k]
            if emoji:
                self._draw_emoji(image, font, x, xy[1], piece, length, vertical)
            else:
                try:
                    draw.text((x, xy[1]), piece, fill=fill, font=font, anchor="l" + vertical)
                except Exception:
                    draw.text((x, xy[1]), "?" * len(piece), fill=fill, font=font,
                              anchor="l" + vertical)
            x += length

    def _draw_emoji(self, image: Image.Image, font: ImageFont.FreeTypeFont, x: float, y: float,
                    piece: str, length: float, vertical: str) -> None:
        ascent, descent = font.getmetrics()
        big_w = max(1, math.ceil(font.getlength(piece)))
        big = Image.new("RGBA", (big_w, ascent + descent), (0, 0, 0, 0))
        ImageDraw.Draw(big).text((0, 0), piece, font=font, embedded_color=True, anchor="la")
        w, h = max(1, round(length)), max(1, round((ascent + descent) * self.emoji_scale))
        small = big.resize((w, h), Image.Resampling.LANCZOS)
        top = y - h / 2 if vertical == "m" else y
        image.paste(small, (round(x), round(top)), small)


@functools.cache
def _font(size: int) -> _TextFont:
    return _TextFont(max(1, int(size)))


_Font = _TextFont


def _fit_text(text: str, font: _Font, max_width: float) -> str:
    """``text`` on one line, cut with "…" so that it is at most ``max_width`` pixels wide."""
    text = _clean_text(text)  # newlines/tabs would break the one-line layout
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


def _count(n: int, noun: str) -> str:
    """``"1 frame"``, ``"2 frames"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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


# --------------------------------------------------------------------------------------------
# Score plot


def plot_scores(
    scores: np.ndarray,
    chosen: int | None,
    current_frame: int | None = None,
    size: tuple[int, int] = (640, 240),
    *,
    x_start: int = 0,
    x_label: str | None = None,
    y_label: str | None = "score",
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

    for s in (0.0, 0.25, 0.5, 0.75, 1.0):  # grid and y ticks
        y = to_y(s)
        cv2.line(img, (left, y), (x_end, y), (228, 228, 228), 1)
        if s in (0.0, 0.5, 1.0):
            label = f"{s:g}"
            (tw, th), _ = cv2.getTextSize(label, font, fscale, 1)
            cv2.putText(img, label, (left - tw - 5, y + th // 2), font, fscale, axis_color, 1,
                        cv2.LINE_AA)
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
    return img


# --------------------------------------------------------------------------------------------
# The decoder, layer by layer


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


# --------------------------------------------------------------------------------------------
# Slide figures


def _resize_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    shrink = width < image.shape[1]
    return cv2.resize(image, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


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
