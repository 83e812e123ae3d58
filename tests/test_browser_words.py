"""Which words matter, in a real browser (headless Chromium via Playwright): upload a clip,
type an expression, press "Which words matter", and check that the bar chart and the changed
mask appear, that choosing another word and another frame redraws the view, that the words
typed are shown as text, and that a bad request leaves a one-line message.
"""

from __future__ import annotations

import pytest
from test_app import EXAMPLES
from test_browser import (
    _badges,
    _digest,
    _failure,
    _give_clip,
    _launch,
    _open,
    _src,
    _wait_new_src,
    browser_app,
)

pytestmark = pytest.mark.browser

CLIP = EXAMPLES / "shapes_00002.mp4"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    yield from browser_app(tmp_path_factory)


def test_word_importance_drives_the_page(app, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = _open(browser, app.url)
            # The Expressions box holds the sentence; the section's own box is left empty, so
            # it weighs the first expression above.
            _give_clip(page, CLIP, "the red square\nthe green star")
            page.locator("#wi_run").scroll_into_view_if_needed()
            page.click("#wi_run")
            chart = _wait_new_src(page, "wi_chart", None, timeout_ms=120_000)
            view = _wait_new_src(page, "wi_view", None)
            summary = page.inner_text("#wi_summary")
            assert "the red square" in summary and "Leaving out" in summary
            words = page.locator("#wi_word label")
            assert [words.nth(i).inner_text().strip() for i in range(words.count())] == [
                "without the", "without red", "without square"]
            assert not _badges(page), _badges(page)

            # Another word: the chart's highlight and the changed mask move with it.
            words.nth(1).click()
            chart_red = _wait_new_src(page, "wi_chart", chart)
            view_red = _wait_new_src(page, "wi_view", view)
            assert _digest(page, chart_red) != _digest(page, chart)
            assert _digest(page, view_red) != _digest(page, view)

            # Another frame: the view follows the slider, the chart stays.
            slider = page.locator("#wi_frame input[type=range]")
            last = int(slider.get_attribute("max"))
            assert last == 15  # 16 frames
            slider.fill(str(last))
            view_last = _wait_new_src(page, "wi_view", view_red)
            assert _digest(page, view_last) != _digest(page, view_red)
            assert _src(page, "wi_chart") == chart_red

            # Swaps as well, on a sentence typed in the section's own box: Markdown in it is
            # shown as typed, and the menu offers the swapped sentences after the left-outs.
            page.fill("#wi_text textarea", "the *red* square")
            page.check("#wi_swap input[type=checkbox]")
            page.click("#wi_run")
            page.wait_for_function(
                "() => [...document.querySelectorAll('#wi_word label')].some("
                "l => l.innerText.includes('→'))", timeout=120_000)
            assert "the *red* square" in page.inner_text("#wi_summary")
            emphasised = page.locator("#wi_summary em").all_inner_texts()
            assert "red" not in emphasised and "the *red* square" in emphasised

            # Two lines in the section's box: a one-line message, the page keeps serving.
            page.fill("#wi_text textarea", "the red square\nthe dog")
            page.click("#wi_run")
            page.wait_for_function("() => document.querySelector('#wi_status')?.innerText"
                                   ".includes('one expression at a time')", timeout=30_000)
            status = page.inner_text("#wi_status").strip()
            assert "\n" not in status and "/" not in status
        except Exception as exc:
            raise _failure(page, app, tmp_path, exc) from exc
        finally:
            browser.close()
