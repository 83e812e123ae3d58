"""Slide exports (rvos.result.exports): the paper-style figure as PNG and PDF, the GIF, two models
side
by side. The figure is checked by its pixels: bands of tiles, one per expression, each cut into
one tile per chosen frame, every tile in its expression's colour and showing its own frame."""

from __future__ import annotations

import re
import zlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from test_app import BUILTIN, two_expression_example

from rvos.media.probe import probe
from rvos.media.video import read_video
from rvos.predictor.predictor import Predictor
from rvos.result import exports
from rvos.viz.colors import palette
from rvos.viz.draw import caption_strip
from rvos.viz.figures import paper_figure
from rvos.zoo.loader import load_model

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def clip():
    """The two-expression example clip (16 frames of 256×256 at 8 fps) and the built-in model's
    result on it (real weights: both expressions have a mask on every frame)."""
    if not (BUILTIN / "config.json").is_file():
        pytest.skip(f"the built-in model is not trained yet ({BUILTIN})")
    video, expressions = two_expression_example()
    frames, _ = read_video(video)
    result = Predictor(load_model("builtin")).predict(str(video), expressions)
    assert all((e.mask_areas > 0).all() for e in result)
    return frames, result


def test_figure_columns_are_evenly_spaced_from_first_to_last_frame():
    assert exports.figure_frames(16, 5) == [0, 4, 8, 11, 15]
    assert exports.figure_frames(100, 3) == [0, 50, 99]
    assert exports.figure_frames(3, 5) == [0, 1, 2]  # a short clip shows every frame
    assert exports.figure_frames(9, 1) == [4]
    with pytest.raises(exports.ExportError, match="at least one column"):
        exports.figure_frames(9, 0)


def _bands(mask_1d: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the runs of True."""
    padded = np.concatenate([[False], mask_1d, [False]]).astype(np.int8)
    change = np.flatnonzero(np.diff(padded))
    return list(zip(change[::2], change[1::2], strict=True))


def _near(image: np.ndarray, color, tol: int = 0) -> np.ndarray:
    return (np.abs(image.astype(int) - np.asarray(color)) <= tol).all(-1)


@pytest.mark.parametrize("columns", [5, 3])
def test_figure_is_a_grid_of_expressions_by_frames(clip, tmp_path, columns):
    frames, result = clip
    paths = exports.write_figure(result, tmp_path, frames, columns=columns)
    image = np.asarray(Image.open(paths["figure_png"]).convert("RGB"))
    assert image.shape[1] == exports.FIGURE_WIDTH >= 1200
    # Tile rows are the pixel rows that are mostly not the white page.
    ink = (image < 250).any(-1)
    rows = _bands(ink.mean(1) > 0.8)
    assert len(rows) == len(result) == 2
    indices = exports.figure_frames(result.num_frames, columns)
    colours = palette(len(result))
    for k, (top, bottom) in enumerate(rows):
        tiles = _bands(ink[(top + bottom) // 2])
        assert len(tiles) == columns
        for j, (left, right) in enumerate(tiles):
            tile = image[top:bottom, left:right]
            # Each tile carries its own expression's mask outline, not the other one's.
            assert _near(tile, colours[k]).sum() > 20
            assert _near(tile, colours[1 - k]).sum() == 0
            # ... on its own frame: the nearest source frame is the column's.
            errors = [np.abs(cv2.resize(f, tile.shape[1::-1], interpolation=cv2.INTER_AREA)
                             .astype(int) - tile).mean() for f in frames]
            assert int(np.argmin(errors)) == indices[j]
        # The caption above the band is the sentence, drawn in the expression's colour.
        caption = image[max(0, top - 80):top]
        assert _near(caption, colours[k], 40).sum() > 200


def test_figure_pdf_is_the_png_at_300_dpi(clip, tmp_path):
    frames, result = clip
    paths = exports.write_figure(result, tmp_path, frames)
    png = np.asarray(Image.open(paths["figure_png"]).convert("RGB"))
    pdf = paths["figure_pdf"].read_bytes()
    assert pdf.startswith(b"%PDF")
    h, w = png.shape[:2]
    box = [float(v) for v in re.search(rb"/MediaBox \[ *([\d. ]+)\]", pdf).group(1).split()]
    assert box[2:] == pytest.approx([w * 72 / 300, h * 72 / 300], abs=0.01)
    stream = re.search(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S).group(1)
    if b"/FlateDecode" in pdf:
        stream = zlib.decompress(stream)
    page = cv2.cvtColor(cv2.imdecode(np.frombuffer(stream, np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)
    assert page.shape == png.shape
    assert np.abs(page.astype(int) - png).mean() < 2  # a high-quality JPEG of the same image


def _gif(path) -> tuple[int, list[int], tuple[int, int]]:
    with Image.open(path) as gif:
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
        return gif.n_frames, durations, gif.size


def test_gif_has_every_frame_at_the_video_pace(clip, tmp_path):
    frames, result = clip
    path = exports.write_gif(result, tmp_path / "overlay.gif", frames)
    count, durations, size = _gif(path)
    assert count == result.num_frames == 16
    assert sum(durations) == pytest.approx(1000 * 16 / result.source.fps, abs=10)  # 2 s
    assert set(durations) <= {120, 130}  # 8 fps in the GIF's 10 ms steps
    assert path.stat().st_size <= exports.GIF_MAX_MB * 1e6
    strip = caption_strip(256, [e.text for e in result])
    assert size == (256, 256 + strip.shape[0])  # the frame and the expressions below it


def test_gif_over_its_budget_drops_frames_then_shrinks(clip, tmp_path):
    frames, result = clip
    full = exports.write_gif(result, tmp_path / "full.gif", frames).stat().st_size
    path = exports.write_gif(result, tmp_path / "small.gif", frames, max_mb=full * 0.6 / 1e6)
    count, durations, _ = _gif(path)
    assert path.stat().st_size <= full * 0.6
    assert count in (8, 4)  # every second or fourth frame ...
    assert sum(durations) == pytest.approx(2000, abs=20)  # ... each shown longer
    with pytest.raises(exports.ExportError, match="cannot fit"):
        exports.write_gif(result, tmp_path / "tiny.gif", frames, max_mb=0.001)


def test_side_by_side_video_shows_both_models_on_every_frame(clip, tmp_path):
    frames, result = clip
    other = Predictor(load_model("builtin"), threshold=0.9).predict(
        frames, [e.text for e in result], fps=result.source.fps)
    titles = ["A: builtin", "B: builtin at 0.9"]
    path = exports.write_side_by_side([result, other], titles, tmp_path / "ab.mp4", frames)
    info = probe(path)
    assert info.num_frames == result.num_frames and info.codec == "h264"
    still = exports.compare_frame([result, other], titles, 3, frames[3])
    assert (info.width, info.height) == still.shape[1::-1]
    assert still.shape[0] % 2 == 0 and still.shape[1] % 2 == 0
    left, right = still[:, :256], still[:, 264:520]
    assert not np.array_equal(left, right)  # a higher threshold, smaller masks
    same = exports.compare_frame([result, result], titles, 3, frames[3])
    top = same.shape[0] - 256 - caption_strip(520, [e.text for e in result]).shape[0]
    np.testing.assert_array_equal(same[top:top + 256, :256], same[top:top + 256, 264:520])
    with pytest.raises(ValueError, match="same frames"):
        exports.write_side_by_side([result, _first_frames(other)], titles, tmp_path / "x.mp4",
                                   frames)


def _first_frames(result):
    """``result`` cut to its first 4 frames (not the same frames as the full clip)."""
    import dataclasses

    exprs = [dataclasses.replace(e, rle=e.rle[:4]) for e in result]
    return dataclasses.replace(result, expressions=exprs,
                               source=dataclasses.replace(result.source, num_frames=4))


def test_exports_never_run_the_model(clip, tmp_path, monkeypatch):
    frames, result = clip
    monkeypatch.setattr(torch.nn.Module, "__call__", lambda *a, **k: pytest.fail("model ran"))
    exports.write_figure(result, tmp_path, frames, columns=2)
    exports.write_gif(result, tmp_path / "o.gif", frames)


def test_figure_columns_count_frames_from_one(clip, monkeypatch):
    frames, result = clip
    seen = {}
    real = paper_figure

    def spy(*args, **kwargs):
        seen["labels"] = kwargs["column_labels"]
        return real(*args, **kwargs)

    monkeypatch.setattr(exports, "paper_figure", spy)
    exports.render_figure(result, frames, columns=3, width=1200)
    last = result.num_frames
    assert seen["labels"][0] == "frame 1 · 0.00 s"  # as people count, not "frame 0"
    assert seen["labels"][-1].startswith(f"frame {last} · ")
