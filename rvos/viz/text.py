"""Text in drawings: a chain of fonts (Latin, CJK, emoji) drawn character by character, and fitting
text to a width.
"""

from __future__ import annotations

import functools
import math
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rvos.viz.colors import Color

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
