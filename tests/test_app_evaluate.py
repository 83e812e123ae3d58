"""`/evaluate` and `/compare` with ``masks_b`` through gradio_client on a running
``python app.py`` (the built-in model): the masks.zip that `/segment` hands back is the ground
truth (J&F 100) or another system's answer, and, eroded, scores lower; bad zips get their
one-line message and the app keeps serving.
"""

from __future__ import annotations

import csv
import io
import json
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

    # ... and /segment's presence threshold and objects setting, last: at threshold 1 no frame
    # is found, so the object-less truth frames (none here) are the only ones right.
    info = client.view_api(print_info=False, return_format="dict")
    names = [p["parameter_name"] for p in info["named_endpoints"]["/evaluate"]["parameters"]]
    assert names[-2:] == ["presence_threshold", "objects"]
    empty, _ = client.predict(video=clip, expressions="\n".join(expressions),
                              ground_truth=handle_file(str(masks_zip)), presence_threshold=1.0,
                              objects="all", api_name="/evaluate")
    assert empty["overall"]["J"] == 0.0


def test_compare_api_takes_another_systems_masks_as_b(client, segmented, tmp_path):
    from gradio_client import handle_file

    video, expressions, masks_zip = segmented
    # masks_b, then presence_threshold and objects come last: the earlier ones keep their places.
    info = client.view_api(print_info=False, return_format="dict")
    names = [p["parameter_name"] for p in info["named_endpoints"]["/compare"]["parameters"]]
    assert names[:4] == ["video", "expressions", "model_a", "model_b"]
    assert names[-3:] == ["masks_b", "presence_threshold", "objects"]

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
    # ... and takes /segment's presence threshold and objects setting.
    _, _, result_a, _, _, summary = client.predict(
        video=handle_file(str(video)), expressions=expressions[0], model_a="builtin",
        model_b="builtin", presence_threshold=1.0, objects="all", api_name="/compare")
    settings = json.loads(Path(result_a).read_text())["settings"]
    assert settings["objects"] == "all" and settings["presence_threshold"] == 1.0


# ------------------------------------------------ the curves' cursor (in process, no app)
def _zip_of(path: Path, masks: list[list[np.ndarray]]) -> Path:
    """``masks[k][t]`` as one folder of 0/255 PNGs per expression (``k/00000.png``)."""
    with zipfile.ZipFile(path, "w") as out:
        for k, track in enumerate(masks):
            for t, mask in enumerate(track):
                buffer = io.BytesIO()
                Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
                out.writestr(f"{k}/{t:05d}.png", buffer.getvalue())
    return path


def _scored(tmp_path: Path, truth: list[list[np.ndarray]], prediction: list[list[np.ndarray]]):
    """``prediction`` scored against ``truth``, both read back from zips as the page reads an
    upload."""
    from rvos.app.evaluate import evaluate_result, read_truth

    texts = [f"object {k}" for k in range(len(truth))]
    frames, size = len(truth[0]), truth[0][0].shape
    read = [read_truth(str(_zip_of(tmp_path / f"{name}.zip", masks)), texts, frames, size)
            for name, masks in (("truth", truth), ("prediction", prediction))]
    return evaluate_result(read[1], read[0], model="shifted")


def _synthetic_masks(num_frames: int) -> list[list[np.ndarray]]:
    """The true masks of two objects of synthetic test clip 1 (its first ``num_frames``)."""
    from rvos.data.synth import make_clip

    clip = make_clip("test", 1, num_frames=16, size=(256, 256))
    masks = np.asarray(clip.masks)
    return [list(masks[k, :num_frames]) for k in range(2)]


def _cursor_columns(image: np.ndarray, plain: np.ndarray) -> list[np.ndarray]:
    """Per panel (J on top, F below): the columns where ``image`` differs from ``plain``,
    after checking that they differ on a vertical line (most of the plot's height)."""
    assert image.shape == plain.shape and image.shape[0] % 2 == 0
    half = image.shape[0] // 2
    out = []
    for top in (0, half):
        changed = (image[top:top + half] != plain[top:top + half]).any(axis=2)
        rows, columns = np.nonzero(changed)
        assert rows.size, "no cursor drawn"
        assert rows.max() - rows.min() > half // 2  # a line down the plot, not a dot
        out.append(np.unique(columns))
    return out


def _plot_span(plain: np.ndarray) -> tuple[int, int]:
    """The x of the first and of the last frame in the J panel, read off the drawn axes (in
    axis grey): the y axis is the column with the most of it, the x axis leaves the y axis's
    foot and ends past the last frame (curves at 0 may cover the rest of it); frames sit
    6 pixels inside the axes (plot_curves' inset)."""
    panel = plain[: plain.shape[0] // 2]
    grey = (panel == (90, 90, 90)).all(axis=2)
    y_axis = int(np.argmax(grey.sum(axis=0)))
    foot = int(np.nonzero(grey[:, y_axis])[0].max())
    return y_axis + 6, int(np.nonzero(grey[foot])[0].max()) - 6


def _assert_cursor_at(scored, frame, expected_x: float, plain: np.ndarray) -> None:
    for columns in _cursor_columns(scored.render_curves(frame), plain):
        # The 2-pixel line (and the curves' anti-aliasing over it), nowhere else.
        assert columns.min() >= expected_x - 3 and columns.max() <= expected_x + 3, \
            (frame, expected_x, columns)


def test_curves_cursor_marks_the_frame_and_changes_nothing_else(tmp_path):
    truth = _synthetic_masks(16)
    shifted = [[np.roll(m, 4, axis=1) for m in track] for track in truth]
    scored = _scored(tmp_path, truth, shifted)
    assert scored.j.shape == (2, 16) and 0.3 < scored.j.mean() < 1
    plain = scored.render_curves(None)
    first, last = _plot_span(plain)
    assert last - first > 500
    for frame in (0, 7, 15):
        _assert_cursor_at(scored, frame, first + (last - first) * frame / 15, plain)
    # The slider's values as they come (floats), or past the ends: the nearest frame.
    assert np.array_equal(scored.render_curves(7.0), scored.render_curves(7))
    assert np.array_equal(scored.render_curves(99), scored.render_curves(15))
    assert np.array_equal(scored.render_curves(-2), scored.render_curves(0))
    assert not np.array_equal(scored.render_curves(7), scored.render_curves(8))


def test_curves_cursor_on_a_one_frame_clip_and_on_all_empty_truth(tmp_path):
    # One frame: its point, and the cursor, sit in the middle of the plot.
    one = _scored(tmp_path, [t[:1] for t in _synthetic_masks(1)],
                  [[np.roll(m, 4, axis=0) for m in t[:1]] for t in _synthetic_masks(1)])
    assert one.num_frames == 1
    plain = one.render_curves(None)
    first, last = _plot_span(plain)
    for frame in (0, 3):
        _assert_cursor_at(one, frame, (first + last) / 2, plain)

    # Truth empty on every frame: a predicted object scores 0, no object scores 1; no NaN in
    # the numbers, the JSON or the picture.
    masks = _synthetic_masks(16)
    empty = [[np.zeros_like(m) for m in track] for track in masks]
    scored = _scored(tmp_path, empty, [masks[0], empty[1]])
    assert np.isfinite(scored.j).all() and np.isfinite(scored.f).all()
    assert (scored.j[0] == 0).all() and (scored.f[0] == 0).all()
    assert (scored.j[1] == 1).all() and (scored.f[1] == 1).all()
    json.dumps(scored.to_json(), allow_nan=False)
    plain = scored.render_curves(None)
    first, last = _plot_span(plain)
    for frame in (0, 8, 15):
        _assert_cursor_at(scored, frame, first + (last - first) * frame / 15, plain)
