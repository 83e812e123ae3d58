"""`/evaluate` and `/compare` with ``masks_b`` through gradio_client on a running
``python app.py`` (the built-in model): the masks.zip that `/segment` hands back is the ground
truth (J&F 100) or another system's answer, and, eroded, scores lower; bad zips get their
one-line message and the app keeps serving.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_app import start_app, two_expression_example

from rvos.app.text import escape_markdown
from rvos.media.probe import probe


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    yield from start_app(tmp_path_factory.mktemp("app"), "--threads", "1")


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app.url, verbose=False)


@pytest.fixture(scope="module")
def segmented(client):
    """(video, expressions, masks.zip) from /segment."""
    from gradio_client import handle_file

    video, expressions = two_expression_example()
    _, masks_zip, _, _ = client.predict(video=handle_file(str(video)),
                                        expressions="\n".join(expressions),
                                        api_name="/segment")
    return video, expressions, Path(masks_zip)


def _eroded(masks_zip: Path, out: Path) -> Path:
    """The zip with every mask eroded by 3 pixels (same names, 0/255 greyscale)."""
    import cv2

    with zipfile.ZipFile(masks_zip) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            mask = np.array(Image.open(io.BytesIO(src.read(name)))) > 0
            small = cv2.erode(mask.astype(np.uint8) * 255, np.ones((7, 7), np.uint8))
            buffer = io.BytesIO()
            Image.fromarray(small).save(buffer, format="PNG")
            dst.writestr(name, buffer.getvalue())
    return out


def _error_of(client, **kwargs) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        client.predict(**kwargs)
    return str(err.value)


def test_evaluate_api_scores_the_run_against_the_ground_truth(client, segmented, tmp_path):
    from gradio_client import handle_file

    video, expressions, masks_zip = segmented
    clip = handle_file(str(video))
    scores, scores_csv = client.predict(video=clip, expressions="\n".join(expressions),
                                        ground_truth=handle_file(str(masks_zip)),
                                        api_name="/evaluate")
    assert scores["overall"] == {"J": 100.0, "F": 100.0, "J&F": 100.0}
    assert [e["text"] for e in scores["expressions"]] == expressions
    assert all(len(e["frames"]) == 16 for e in scores["expressions"])
    assert scores["model"] == "builtin" and scores["ground_truth"] == "masks.zip"
    rows = list(csv.DictReader(io.StringIO(Path(scores_csv).read_text())))
    assert len(rows) == 2 * 16 + 3 and rows[-1]["J&F"] == "100.00"

    eroded = _eroded(masks_zip, tmp_path / "truth.zip")
    lower, lower_csv = client.predict(video=clip, expressions="\n".join(expressions),
                                      ground_truth=handle_file(str(eroded)),
                                      api_name="/evaluate")
    assert lower["overall"]["J&F"] < 95
    worst = lower["worst_frames"][0]
    frames = lower["expressions"][worst["expression"]]["frames"]
    assert worst["J"] + worst["F"] == min(f["J"] + f["F"] for f in frames)
    # The CSV holds the same numbers as the JSON.
    rows = list(csv.DictReader(io.StringIO(Path(lower_csv).read_text())))
    assert float(rows[-1]["J&F"]) == pytest.approx(lower["overall"]["J&F"], abs=0.01)
    assert float(rows[3]["J"]) == pytest.approx(lower["expressions"][0]["frames"][3]["J"],
                                                abs=0.01)

    # Settings as in /segment: 5 frames processed, so the 16-frame truth does not fit; the
    # zip is checked before the model runs.
    message = _error_of(client, video=clip, expressions="\n".join(expressions),
                        ground_truth=handle_file(str(masks_zip)), max_frames=5,
                        api_name="/evaluate")
    assert "16 PNG masks, the clip 5 processed frames" in message
    junk = tmp_path / "truth.zip"
    junk.write_text("no zip")
    assert "truth.zip is not a zip file" in _error_of(
        client, video=clip, expressions=expressions[0], ground_truth=handle_file(str(junk)),
        api_name="/evaluate")
    assert "no ground truth zip" in _error_of(client, video=clip, expressions=expressions[0],
                                              ground_truth=None, api_name="/evaluate")


def test_compare_api_takes_another_systems_masks_as_b(client, segmented, tmp_path):
    from gradio_client import handle_file

    video, expressions, masks_zip = segmented
    # masks_b is the last parameter: the earlier ones keep their places.
    info = client.view_api(print_info=False, return_format="dict")
    names = [p["parameter_name"] for p in info["named_endpoints"]["/compare"]["parameters"]]
    assert names[:4] == ["video", "expressions", "model_a", "model_b"]
    assert names[-1] == "masks_b"

    eroded = _eroded(masks_zip, tmp_path / "sam2_masks.zip")
    overlay_a, overlay_b, result_a, result_b, side_by_side, summary = client.predict(
        video=handle_file(str(video)), expressions="\n".join(expressions),
        masks_b=handle_file(str(eroded)), api_name="/compare")
    assert result_b is None and Path(result_a).is_file()
    for path in (overlay_a, overlay_b, side_by_side):
        assert probe(path).num_frames == 16
    assert escape_markdown("B: masks: sam2_masks.zip") in summary
    iou = [line.rsplit("|", 2)[-2].strip() for line in summary.splitlines()
           if line.startswith("| " + escape_markdown(expressions[0]))]
    assert iou and 0.3 < float(iou[0]) < 1.0

    three = tmp_path / "three.zip"
    with zipfile.ZipFile(masks_zip) as src, zipfile.ZipFile(three, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
            if name.startswith("1/"):
                dst.writestr("2/" + name[2:], src.read(name))
    message = _error_of(client, video=handle_file(str(video)),
                        expressions="\n".join(expressions), masks_b=handle_file(str(three)),
                        api_name="/compare")
    assert "3 mask folders (0, 1, 2), one per expression, but there are 2" in message
    # The app is still there, and a comparison of two models still works as before.
    *_, summary = client.predict(video=handle_file(str(video)), expressions=expressions[0],
                                 model_a="builtin", model_b="builtin", api_name="/compare")
    assert "B: builtin" in summary
