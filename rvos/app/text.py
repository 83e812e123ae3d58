"""What the page shows as text: Markdown/HTML escaping of what visitors typed, messages without
server paths, counts in words.
"""

from __future__ import annotations

import logging
import re

__all__ = ["escape_markdown", "plural", "public_message"]


log = logging.getLogger("rvos.app")


# Characters that Markdown or HTML give a meaning: each is shown as itself after escaping.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()!#|~])")


# What GFM turns into a link without any markup: "scheme://" and "www.".
_AUTOLINK = re.compile(r"(?i)(://|\bwww\.)")


_LINE_START = re.compile(r"^(\d*)([.)\-+])")


_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}


# An absolute path (POSIX or Windows) inside a message: a visitor sees only its last part.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.\\])(?:[A-Za-z]:\\|/)"  # not inside a URL
                            r"(?:[^\s'\"/\\:,;()]+[/\\])+([^\s'\"/\\:,;()]*)")


def escape_markdown(text: object) -> str:
    """``text`` for a Markdown component, shown literally: HTML tags and entities, links,
    images, emphasis, code, headings, list markers and table pipes all stay characters.

    HTML's ``& < > "`` become entities (a backslash does not stop every HTML parser), the
    punctuation that Markdown reads (``\\ ` * _ [ ] ( ) ! # | ~``) gets a backslash, as do
    the autolinks ``://`` and ``www.`` and a leading list marker (CommonMark shows each as the
    character), and line breaks become spaces (a line of its own could start a heading or end
    a table row)."""
    one_line = " ".join(str(text).split())
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", one_line)
    escaped = _AUTOLINK.sub(lambda m: "\\://" if m.group(1) == "://" else m.group(1)[:3] + "\\.",
                           escaped)
    # At the start of a line, "1." / "1)" / "-" / "+" would make a list (or a rule).
    escaped = _LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)
    return "".join(_HTML_ENTITIES.get(c, c) for c in escaped)


def public_message(error: BaseException | str) -> str:
    """What a visitor may read of ``error``: its message with every absolute path cut to its
    last part (an upload's name, not the server's folders). The log keeps the full message."""
    text = error if isinstance(error, str) else (getattr(error, "message", None) or str(error))
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "(a folder)", str(text))


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 frame"``, ``"2 frames"``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
