"""Presence in the app (issue 23), in a real browser and through the API.

The page: Segment an example clip, then move the presence threshold in Advanced settings to 1
and back: the summary says on how many frames the object was found and the scores timeline
shades the frames not found, without running the model again. The API: /segment takes
``presence_threshold`` and ``objects`` as its last parameters; calls without them keep
working.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_app import start_app, two_expression_example
from test_browser import _digest, _failure, _give_clip, _launch, _open, _wait_new_src, need_browser

from rvos.predictor.presence import folder_presence_threshold
from rvos.zoo.registry import BUILTIN_DIR

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    yield from start_app(tmp_path_factory.mktemp("app"), "--threads", "1")


def _summary_has(page, text: str, timeout_ms: int = 60_000) -> str:
    page.wait_for_function("(t) => document.querySelector('#summary')?.innerText.includes(t)",
                           arg=text, timeout=timeout_ms)
    return page.inner_text("#summary")


def _set_presence(page, value: float) -> None:
    """Type ``value`` into the presence slider's number box and leave it (Gradio's "release")."""
    box = page.locator("#presence input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def test_moving_the_presence_threshold_changes_the_summary_and_the_timeline(app, tmp_path):
    sync_playwright = need_browser()

    video, expressions = two_expression_example()
    with sync_playwright() as p:
        browser = _launch(p)
        page = _open(browser, app.url)
        try:
            page.get_by_text("Advanced", exact=True).click()
            box = page.locator("#presence input[type=number]")
            box.wait_for(state="visible", timeout=10_000)
            # The slider starts at the model's own value (0 unless its config.json names one).
            assert float(box.input_value()) == folder_presence_threshold(BUILTIN_DIR)
            _set_presence(page, 0)
            _give_clip(page, video, "\n".join(expressions))
            page.click("#run")
            everywhere = _summary_has(page, "found on 16 of 16 frames")
            assert "presence threshold 0" in everywhere
            timeline = _wait_new_src(page, "scores", None, 60_000)

            # Nothing reaches 1: every frame "not found", for both expressions.
            _set_presence(page, 1)
            nowhere = _summary_has(page, "found on 0 of 16 frames (presence ≥ 1)")
            assert nowhere.count("found on 0 of 16 frames") == len(expressions)
            assert "presence threshold 1" in nowhere
            shaded = _wait_new_src(page, "scores", timeline)
            assert _digest(page, shaded) != _digest(page, timeline)

            # Back to 0: every frame found again, the timeline as it was.
            _set_presence(page, 0)
            _summary_has(page, "found on 16 of 16 frames")
            again = _wait_new_src(page, "scores", shaded)
            assert _digest(page, again) == _digest(page, timeline)
        except Exception as exc:
            raise _failure(page, app, tmp_path, exc) from exc
        finally:
            browser.close()


def test_segment_api_takes_presence_threshold_and_objects_last(app):
    from gradio_client import Client, handle_file

    client = Client(app.url, verbose=False)
    video, expressions = two_expression_example()
    clip = handle_file(str(video))
    params = [p["parameter_name"] for p in
              client.view_api(print_info=False, return_format="dict")["named_endpoints"]
              ["/segment"]["parameters"]]
    assert params[-2:] == ["presence_threshold", "objects"]
    assert params[:10] == ["video", "expressions", "model", "threshold", "window", "fps",
                           "max_frames", "short_side", "device", "precision"]
    _, _, result_json, summary = client.predict(clip, expressions[0], api_name="/segment")
    doc = json.loads(Path(result_json).read_text())
    assert doc["settings"]["presence_threshold"] == folder_presence_threshold(BUILTIN_DIR)
    _, _, result_json, summary = client.predict(video=clip, expressions=expressions[0],
                                                presence_threshold=1.0, api_name="/segment")
    doc = json.loads(Path(result_json).read_text())
    assert doc["settings"]["presence_threshold"] == 1.0
    assert not any(f["found"] or f["mask_area"] for f in doc["expressions"][0]["frames"])
    assert "found on 0 of 16 frames" in summary
    # objects="all": each object kept apart in result.json (object 0 the chosen query).
    _, _, result_json, summary = client.predict(video=clip, expressions=expressions[0],
                                                objects="all", api_name="/segment")
    doc = json.loads(Path(result_json).read_text())
    assert doc["settings"]["objects"] == "all"
    objects = doc["expressions"][0]["objects"]
    assert [f["query"] for f in objects[0]["frames"]] == [
        f["chosen_query"] for f in doc["expressions"][0]["frames"]]


def test_the_objects_control_reaches_the_run(app, tmp_path):
    """"Every object the expression refers to" in Advanced settings: the run's result.json (the
    page's download) records objects="all" and keeps the objects apart; the summary names the
    objects when there are several."""
    sync_playwright = need_browser()

    video, expressions = two_expression_example()
    with sync_playwright() as p:
        browser = _launch(p)
        page = _open(browser, app.url)
        try:
            page.get_by_text("Advanced", exact=True).click()
            page.get_by_label("every object the expression refers to").check()
            _give_clip(page, video, "\n".join(expressions))
            page.click("#run")
            summary = _summary_has(page, "found on")
            page.wait_for_function("() => document.querySelector('#json a[download]')?.href"
                                   "?.startsWith('http')", timeout=30_000)
            href = page.evaluate("() => document.querySelector('#json a[download]').href")
            doc = json.loads(page.request.get(href).body())
            assert doc["settings"]["objects"] == "all"
            counts = [len(e["objects"]) for e in doc["expressions"]]
            assert all(c >= 1 for c in counts)
            for c in counts:
                assert (f"{c} objects, each in its own colour" in summary) == (c > 1)
        except Exception as exc:
            raise _failure(page, app, tmp_path, exc) from exc
        finally:
            browser.close()
