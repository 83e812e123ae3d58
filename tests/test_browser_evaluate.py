"""Evaluate and Compare-with-masks in a real browser (headless Chromium, Playwright): segment
an example, download the page's own masks.zip, upload it as ground truth and see J&F 100 with
the curves and the worst frames; upload an eroded copy and see the score drop; a broken zip
shows its one-line message; then give the eroded copy to Compare as B and see the agreement
table and B's timeline. With RVOS_UPDATE_SCREENSHOT=1 it also saves the evaluation as
docs/evaluate_view.png (the README shows it).
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_app import ROOT, two_expression_example
from test_app_evaluate import _eroded
from test_browser import (
    _badges,
    _failure,
    _give_clip,
    _launch,
    _open,
    _region,
    _src,
    _wait_new_src,
    browser_app,
)

pytestmark = pytest.mark.browser

WAIT_MS = 60_000  # generous: the machine's two cores are shared


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    yield from browser_app(tmp_path_factory)



def _upload(page, elem_id: str, path: Path) -> None:
    """Put ``path`` into the file input ``elem_id`` (clearing what it held); done when its
    download link points at the server and names the file."""
    clear = page.locator(f"#{elem_id} button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
        page.wait_for_selector(f"#{elem_id} input[type=file]", state="attached")
    page.set_input_files(f"#{elem_id} input[type=file]", str(path))
    page.wait_for_function(
        f"""(name) => [...document.querySelectorAll('#{elem_id} a[download]')].some(
               a => a.href.startsWith('http') && a.getAttribute('download') === name)""",
        arg=path.name, timeout=WAIT_MS)


def _image(page, url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.request.get(url).body())).convert("RGB"))


def _wait_text(page, elem_id: str, pattern: str, timeout_ms: int = WAIT_MS) -> str:
    page.wait_for_function(
        f"(p) => new RegExp(p).test(document.querySelector('#{elem_id}')?.innerText ?? '')",
        arg=pattern, timeout=timeout_ms)
    return page.inner_text(f"#{elem_id}")


def test_evaluate_upload_and_compare_with_masks(app, tmp_path):
    from playwright.sync_api import sync_playwright

    video, expressions = two_expression_example()
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = _open(browser, app.url)
            # Evaluate before any run: the page says what to do first.
            page.click("#evaluate_run")
            assert "Segment the clip first" in _wait_text(page, "estatus", "Segment")

            _give_clip(page, video, "\n".join(expressions))
            page.click("#run")
            page.wait_for_function(
                "() => document.querySelector('#zip a[download]')?.href?.startsWith('http')",
                timeout=90_000)
            href = page.evaluate("() => document.querySelector('#zip a[download]').href")
            truth = tmp_path / "masks.zip"
            truth.write_bytes(page.request.get(href).body())
            eroded = _eroded(truth, tmp_path / "eroded_truth.zip")

            # The page's own masks as ground truth: a perfect score, with its curves and
            # worst frames drawn.
            _upload(page, "truth", truth)
            page.click("#evaluate_run")
            text = _wait_text(page, "esummary", r"J&F 100\.0")
            assert expressions[0] in text and "against masks.zip" in text
            curves = _wait_new_src(page, "jf_curves", None, WAIT_MS)
            worst = _wait_new_src(page, "worst", None, WAIT_MS)
            assert page.evaluate("() => document.querySelector('#worst img').naturalHeight") \
                >= 3 * 360
            page.wait_for_function("() => [...document.querySelectorAll('#scores_csv a')]"
                                   ".some(a => a.getAttribute('download') === 'scores.csv')",
                                   timeout=WAIT_MS)

            # Eroded truth: the score drops and the curves change.
            _upload(page, "truth", eroded)
            page.click("#evaluate_run")
            text = _wait_text(page, "esummary", r"against eroded_truth\.zip")
            score = float(re.search(r"J&F (\d+\.\d)", text).group(1))
            assert score < 95
            assert _wait_new_src(page, "jf_curves", curves, WAIT_MS) != curves
            _wait_new_src(page, "worst", worst, WAIT_MS)
            page.locator("#evaluate").scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            shot = tmp_path / "evaluate_view.png"
            page.screenshot(path=str(shot), full_page=True,
                            clip=_region(page, "#evaluate", "#worst"))

            # A broken zip: one line under the button, the scores stay, no error badges.
            broken = tmp_path / "broken.zip"
            broken.write_text("not a zip")
            _upload(page, "truth", broken)
            page.click("#evaluate_run")
            status = _wait_text(page, "estatus", "broken.zip is not a zip file")
            assert len(status.strip().splitlines()) == 1 and "/tmp" not in status
            assert "eroded_truth.zip" in page.inner_text("#esummary")
            assert not _badges(page), _badges(page)

            # The explorer's frame slider moves the curves' cursor (from the kept scores: the
            # summary stays as it is), and only the cursor: the two pictures differ in a few
            # columns, the old cursor's and the new one's.
            at_first = _src(page, "jf_curves")
            page.locator("#frame input[type=range]").fill("9")
            at_ninth = _wait_new_src(page, "jf_curves", at_first, WAIT_MS)
            before, after = (_image(page, url) for url in (at_first, at_ninth))
            assert before.shape == after.shape
            # The page gets lossy WebP: count, per column, the pixels that changed a lot.
            changed = (np.abs(before.astype(int) - after.astype(int)) > 100).any(axis=2)
            per_column = changed.sum(axis=0)
            lines = np.nonzero(per_column > before.shape[0] // 3)[0]
            assert lines.size and lines.max() - lines.min() > 100, per_column
            bands = np.split(lines, np.nonzero(np.diff(lines) > 1)[0] + 1)
            assert len(bands) == 2 and all(b.size <= 4 for b in bands), lines
            far = np.ones(per_column.size, bool)
            for band in bands:
                far[max(band.min() - 4, 0):band.max() + 5] = False
            assert per_column[far].max() <= 3, np.nonzero(per_column * far)[0]
            assert "eroded_truth.zip" in page.inner_text("#esummary")

            # Compare: the eroded masks as another system's answer in place of model B.
            _upload(page, "masks_b", eroded)
            page.click("#compare_run")
            summary = _wait_text(page, "csummary", "B: masks: eroded_truth.zip", 90_000)
            assert "B read from the zip" in summary
            rows = page.evaluate("() => [...document.querySelectorAll('#csummary tr')].map("
                                 "r => [...r.querySelectorAll('td')].map(c => c.innerText))")
            rows = [r for r in rows if r]
            assert [r[0] for r in rows] == expressions
            assert all(r[2] == "–" and 0.3 < float(r[3]) < 1 for r in rows)
            _wait_new_src(page, "cview", None, WAIT_MS)
            timeline = _wait_new_src(page, "cscores_b", None, WAIT_MS)
            assert "A–B IoU per frame" in page.inner_text("#cscores_b")  # not query scores
            page.wait_for_function("() => document.querySelector('#cvideo video')?.src"
                                   "?.startsWith('http')", timeout=WAIT_MS)
            page.locator("#cframe input[type=range]").fill("9")
            assert _wait_new_src(page, "cscores_b", timeout_ms=WAIT_MS, old=timeline) \
                != timeline
            assert _src(page, "cscores_a")
            assert not _badges(page), _badges(page)
        except Exception as exc:
            raise _failure(page, app, tmp_path, exc) from exc
        finally:
            browser.close()
    assert shot.stat().st_size > 30_000
    if os.environ.get("RVOS_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, ROOT / "docs" / shot.name)
