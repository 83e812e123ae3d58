"""What the page says: a visitor's text shown as text (rendered by a real CommonMark+GFM-table
parser), messages without server paths or operator advice, counts for people, and one set of
limits for the page's controls and the server's checks."""

from __future__ import annotations

import ast

import markdown_it
import pytest
from test_app import ROOT

from rvos.app.inputs import (
    SHORT_SIDE_RANGE,
    SHORT_SIDE_STEP,
    WINDOW_RANGE,
    AppInputError,
    Limits,
    RunSettings,
    check_video,
)
from rvos.app.text import escape_markdown, plural, public_message

PAYLOADS = [
    "<img src=x>",
    "![t](http://127.0.0.1:9/track.png)",
    '"><iframe src=about:blank>',
    "[click](javascript:alert(1))",
    "**bold** _it_ `code` ~~gone~~ # heading | pipe \\ slash & amp;",
    "see http://example.com and www.example.com",
    "<script>alert(1)</script>",
    "1. not a list",
    "- nor this",
    "2) nor that",
    "&lt;img src=x&gt;",
]


def _html(markdown: str) -> str:
    return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def _text_of(html: str) -> str:
    import html as h
    import re

    return h.unescape(re.sub(r"<[^>]+>", "", html)).strip()


@pytest.mark.parametrize("text", PAYLOADS)
def test_escaped_text_renders_as_itself_and_nothing_else(text):
    escaped = escape_markdown(text)
    for where in (escaped, f"1. *{escaped}*: score 0.5", f"| {escaped} | 0.5 |"):
        html = _html(where if not where.startswith("|") else f"| a | b |\n| --- | --- |\n{where}")
        assert "<img" not in html and "<iframe" not in html and "<script" not in html
        assert "<a " not in html and "<code" not in html and "<h1" not in html
        assert "<strong" not in html and "<s>" not in html and "<del" not in html
    assert _text_of(_html(escaped)) == text


def test_messages_name_files_not_server_folders():
    message = public_message("cannot read '/tmp/gradio/3f9a/clip name.avi': moov atom")
    assert message == "cannot read 'clip name.avi': moov atom"
    assert public_message("save it as /root/.cache/rvos/r50.pth") == "save it as r50.pth"
    assert public_message(r"open C:\Users\me\v.mp4") == "open v.mp4"
    # URLs, fractions and endpoint names are not paths.
    kept = "from http://mirror.local/files/a.pth at 1/8 scale via /segment"
    assert public_message(kept) == kept


def test_unreadable_video_says_why_without_the_folder(tmp_path):
    junk = tmp_path / "holiday.avi"
    junk.write_bytes(b"RIFF not really")
    with pytest.raises(AppInputError) as err:
        check_video(str(junk), Limits())
    assert "holiday.avi" in str(err.value) and str(tmp_path) not in str(err.value)


def test_counts_read_as_english():
    assert plural(1, "frame") == "1 frame" and plural(2, "frame") == "2 frames"
    assert plural(0, "window") == "0 windows"


def test_the_pages_controls_offer_exactly_what_the_server_accepts():
    """The window and short-side sliders are built from the limits the checks enforce."""
    tree = ast.parse((ROOT / "app.py").read_text())
    sliders = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and getattr(node.value.func, "attr", "") == "Slider":
            sliders[node.targets[0].id] = ast.unparse(node.value)
    assert "WINDOW_RANGE" in sliders["window"]
    assert "SHORT_SIDE_RANGE[1]" in sliders["short_side"]
    lo, hi = WINDOW_RANGE
    checked = RunSettings(window=hi, short_side=SHORT_SIDE_RANGE[1]).checked(
        Limits())
    assert checked.window == hi and checked.short_side == SHORT_SIDE_RANGE[1]
    for bad in ({"window": lo - 1}, {"window": hi + 1},
                {"short_side": SHORT_SIDE_RANGE[1] + SHORT_SIDE_STEP}):
        with pytest.raises(AppInputError):
            RunSettings(**bad).checked(Limits())


def test_the_frame_limit_follows_the_source_rate():
    limits = Limits(max_duration_s=120, max_frames=300)
    assert limits.frame_limit(25) == 300  # 120 s at 25 fps is 3000: --max-frames binds
    assert Limits(max_duration_s=5, max_frames=300).frame_limit(6) == 30
    assert Limits(max_duration_s=0.1, max_frames=300).frame_limit(1) == 1
