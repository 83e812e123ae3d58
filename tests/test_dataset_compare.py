"""`rvos dataset compare`: two prediction sets of one split, mask by mask — a 1-process and a
2-process prediction agree exactly, a submission zip reads like its folder, an altered mask is
found and scored as counted by hand, and a missing mask is one clear error."""

from __future__ import annotations

import csv
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_dataset import predict, predict_argv, synth, torchrun_rvos

from rvos.cli.main import main
from rvos.media.labels import read_label_png, write_label_png

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny Ref-YouTube-VOS split predicted by one process and by two under torchrun."""
    base = tmp_path_factory.mktemp("compare")
    root = synth(base / "ref-ytvos", "ytvos", "--count", "2", "--frames", "3")
    single, double = base / "single", base / "double"
    assert predict(root, "ytvos", single) == 0
    torchrun_rvos(predict_argv(root, "ytvos", double), base)
    return {"single": single, "double": double}


def compare(pred: Path, reference: Path, *args: str) -> int:
    return main(["dataset", "compare", "--pred", str(pred), "--reference", str(reference), *args])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def masks(split: Path) -> dict[str, Path]:
    """Every mask of a split folder by its key ``<video>/<exp_id>/<frame>.png``."""
    return {p.relative_to(split).as_posix(): p for p in sorted(split.rglob("*.png"))}


def test_a_one_process_and_a_two_process_prediction_agree_exactly(runs, capsys):
    assert compare(runs["double"], runs["single"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "agreement: 1.0"
    assert any(line.startswith("all ") and "identical" in line for line in lines)
    rows = read_csv(runs["double"] / "compare.csv")
    keys = masks(runs["single"] / "valid")
    assert [r["video"] for r in rows] == ["val_00000", "val_00001"]
    for r in rows:
        assert int(r["frames"]) == sum(k.startswith(r["video"] + "/") for k in keys)
        assert float(r["mean_iou"]) == 1.0 and float(r["identical_share"]) == 1.0


def test_a_submission_zip_reads_like_its_folder(runs, tmp_path, capsys):
    # The zip `dataset predict` writes (Annotations/<video>/...) and one with the video folders
    # at its root, like the MeViS server's and some of the authors' published zips.
    at_root = tmp_path / "at_root.zip"
    with zipfile.ZipFile(at_root, "w") as zf:
        for key, path in masks(runs["single"] / "valid").items():
            zf.write(path, key)
    for reference in (runs["single"] / "submission.zip", at_root):
        csv_path = tmp_path / f"{reference.stem}.csv"
        assert compare(runs["double"], reference, "--csv", str(csv_path)) == 0
        assert capsys.readouterr().out.strip().splitlines()[-1] == "agreement: 1.0"
        assert [r["video"] for r in read_csv(csv_path)] == ["val_00000", "val_00001"]


def test_an_altered_mask_is_listed_first_and_scored_as_counted_by_hand(runs, tmp_path, capsys):
    ref = tmp_path / "ref"
    shutil.copytree(runs["single"] / "valid", ref / "valid")
    keys = masks(ref / "valid")
    size = 64 * 64
    # Frame A of val_00001 keeps only the top half of its object, saved as 0/1 labels (a pixel
    # is "object" where the value is > 0, so 0/1 and 0/255 masks of one object agree).
    key_a = next(
        k
        for k in keys
        if k.startswith("val_00001/")
        and (read_label_png(keys[k])[:32] > 0).any()
        and (read_label_png(keys[k])[32:] > 0).any()
    )
    a = read_label_png(keys[key_a]) > 0
    kept = a.copy()
    kept[32:] = False
    write_label_png(keys[key_a], kept.astype(np.uint8))
    n_a, n_kept = int(a.sum()), int(kept.sum())
    # Frame B of val_00000 gets one more object pixel.
    key_b = next(k for k in keys if k.startswith("val_00000/"))
    b = read_label_png(keys[key_b])
    n_b = int((b > 0).sum())
    y, x = map(int, np.argwhere(b == 0)[0])
    b[y, x] = 255
    write_label_png(keys[key_b], b)

    csv_path = tmp_path / "out.csv"
    assert compare(runs["double"], ref, "--csv", str(csv_path)) == 0
    out = capsys.readouterr().out.strip().splitlines()

    iou_a = n_kept / n_a
    iou_b = n_b / (n_b + 1) if n_b else 0.0
    frames = {v: sum(k.startswith(v + "/") for k in keys) for v in ("val_00000", "val_00001")}
    expected = {
        "val_00000": (1 - (1 - iou_b) / frames["val_00000"], 1 - 1 / (frames["val_00000"] * size)),
        "val_00001": (
            1 - (1 - iou_a) / frames["val_00001"],
            1 - (n_a - n_kept) / (frames["val_00001"] * size),
        ),
    }
    rows = {r["video"]: r for r in read_csv(csv_path)}
    for video, (mean_iou, identical) in expected.items():
        assert int(rows[video]["frames"]) == frames[video]
        assert float(rows[video]["mean_iou"]) == pytest.approx(mean_iou, abs=1e-6)
        assert float(rows[video]["identical_share"]) == pytest.approx(identical, abs=1e-6)
    assert expected["val_00001"][0] < expected["val_00000"][0]  # A is the worse change

    videos_at = out.index("videos that differ most:")
    frames_at = out.index("frames that differ most:")
    assert out[videos_at + 1].split()[0] == "val_00001"
    assert out[frames_at + 1].split()[0] == key_a
    assert out[frames_at + 2].split()[0] == key_b
    agreement = ((1 - iou_a) + (1 - iou_b)) / len(keys)
    assert out[-1].startswith("agreement: 0.")
    assert float(out[-1].split()[-1]) == pytest.approx(1 - agreement, abs=1e-4)


def test_missing_masks_are_one_clear_error(runs, tmp_path, capsys):
    ref = tmp_path / "ref"
    shutil.copytree(runs["single"] / "valid", ref)
    key = sorted(masks(ref))[1]
    (ref / key).unlink()
    assert compare(runs["double"], ref) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rvos dataset compare: error: 1 mask of ")
    assert err[0].endswith(f"are missing from {ref}: {key}")

    # A whole video missing is named as a video, whichever side lacks it.
    shutil.rmtree(ref / "val_00001")
    assert compare(ref, runs["double"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 video of" in err[0] and err[0].endswith(": val_00001")

    # ... unless the prediction is a part of the split: then only its videos are compared.
    assert compare(ref, runs["double"], "--pred-videos-only", "--csv", str(tmp_path / "c.csv")) == 2
    assert "1 mask of " in capsys.readouterr().err  # val_00000 still misses a frame
    shutil.copy(runs["double"] / "valid" / key, ref / key)
    assert compare(ref, runs["double"], "--pred-videos-only", "--csv", str(tmp_path / "c.csv")) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "agreement: 1.0"
    assert [r["video"] for r in read_csv(tmp_path / "c.csv")] == [key.split("/")[0]]


def test_an_unreadable_mask_is_named(runs, tmp_path, capsys):
    ref = tmp_path / "ref"
    shutil.copytree(runs["single"] / "valid", ref)
    key = sorted(masks(ref))[-1]
    (ref / key).write_bytes(b"not a png")
    assert compare(runs["double"], ref) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rvos dataset compare: error: {key} of {ref}: cannot identify image file"]
