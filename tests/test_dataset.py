"""`rvos dataset predict|eval` on synthetic splits in the official Ref-YouTube-VOS and Ref-DAVIS17
layouts, with the built-in model: sharding with torchrun, resume after a kill, scores that agree
with `rvos eval`, and one clear error naming the video for every bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rvos.cli.main import main
from rvos.data.layouts import PredictionFolder, read_frames, read_split
from rvos.eval.distributed import Workers, split_work

REPO = Path(__file__).resolve().parents[1]
# The synthetic frames are 64 px: predict at that size (the built-in model was trained at 128).
SIDE = "64"

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def synth(out: Path, layout: str, *args: str) -> Path:
    assert (
        main(
            [
                "synth",
                "--layout",
                layout,
                "--split",
                "val",
                "--out",
                str(out),
                "--size",
                "64",
                "64",
                *args,
            ]
        )
        == 0
    )
    return out


def predict_argv(root: Path, fmt: str, out: Path) -> list[str]:
    """``rvos dataset predict`` on a synthetic split, as every test here runs it."""
    return ["dataset", "predict", "--format", fmt, str(root), "--split", "valid", "--out",
            str(out), "--device", "cpu", "--short-side", SIDE]


def predict(root: Path, fmt: str, out: Path, *args: str) -> int:
    return main([*predict_argv(root, fmt, out), "--quiet", *args])


def rvos_eval(split: Path, json_path: Path) -> dict:
    """``rvos eval`` of a split in rvos's own layout: its per-expression records."""
    assert main(["eval", str(split), "--short-side", SIDE, "--json", str(json_path)]) == 0
    return json.loads(json_path.read_text())


def evaluate(root: Path, fmt: str, pred: Path, *args: str) -> int:
    return main(["dataset", "eval", "--format", fmt, str(root), "--pred", str(pred), *args])


def outputs(out: Path) -> dict[str, bytes]:
    """Every prediction PNG and the zip, by path relative to ``out``."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.suffix in (".png", ".zip") and ".partial" not in p.parts
    }


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def torchrun_rvos(argv: list[str], cwd: Path) -> dict[int, str]:
    """``torchrun --nproc-per-node 2 -m rvos ARGV`` on gloo: each rank's stderr, by rank (the
    run fails the test with all of them)."""
    logs = cwd / "torchrun-logs"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "--log-dir", str(logs), "--redirects", "3", "-m", "rvos", *argv],
        capture_output=True, text=True, env=env(), cwd=cwd, timeout=600,
    )  # fmt: skip
    rank_logs = {int(p.parent.name): p.read_text() for p in logs.rglob("stderr.log")}
    assert proc.returncode == 0, proc.stderr + "".join(rank_logs.values())
    return rank_logs


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory) -> Path:
    return synth(
        tmp_path_factory.mktemp("davis") / "ref-davis", "davis", "--count", "3", "--frames", "5"
    )


@pytest.fixture(scope="module")
def ytvos_root(tmp_path_factory) -> Path:
    return synth(
        tmp_path_factory.mktemp("ytvos") / "ref-ytvos", "ytvos", "--count", "3", "--frames", "5"
    )


@pytest.fixture(scope="module")
def single_runs(davis_root, ytvos_root, tmp_path_factory) -> dict[str, Path]:
    """One single-process run per layout, the reference for the other tests."""
    runs = {}
    for fmt, root in (("davis", davis_root), ("ytvos", ytvos_root)):
        out = tmp_path_factory.mktemp(f"single_{fmt}")
        assert predict(root, fmt, out) == 0
        runs[fmt] = out
    return runs


# ------------------------------------------------------------------------------ the layouts


def test_synth_writes_the_ref_davis17_layout_with_four_expressions_per_object(davis_root):
    meta = json.loads((davis_root / "meta_expressions/valid/meta_expressions.json").read_text())
    assert sorted(meta["videos"]) == ["val_00000", "val_00001", "val_00002"]
    for name, video in meta["videos"].items():
        assert video["frames"] == [f"{t:05d}" for t in range(5)]
        exprs = list(video["expressions"].items())
        assert [k for k, _ in exprs] == [str(i) for i in range(len(exprs))]
        assert len(exprs) % 4 == 0 and all(isinstance(e["exp"], str) for _, e in exprs)
        # Expression 4o + a is annotator a's description of object o + 1.
        assert [int(e["obj_id"]) for _, e in exprs] == [i // 4 + 1 for i in range(len(exprs))]
        for f in video["frames"]:
            assert Image.open(davis_root / "valid/JPEGImages" / name / f"{f}.jpg").size == (64, 64)
            labels = np.array(Image.open(davis_root / "valid/Annotations" / name / f"{f}.png"))
            assert set(np.unique(labels)) == set(range(len(exprs) // 4 + 1))


def test_synth_writes_the_ref_youtube_vos_layout_with_every_fifth_frame_named(ytvos_root):
    split = read_split(ytvos_root, "valid", "ytvos")
    assert [v.name for v in split.videos] == ["val_00000", "val_00001", "val_00002"]
    for v in split.videos:
        assert v.frames == ("00000", "00005", "00010", "00015", "00020")
        assert 2 <= len(v.expressions) <= 4
        # Annotated objects are numbered 1.. in clip order; each expression names its object.
        objects = {int(e.obj_id) for e in v.expressions}
        assert objects == set(range(1, len(objects) + 1))
        labels = np.array(Image.open(ytvos_root / "valid/Annotations" / v.name / "00000.png"))
        assert set(np.unique(labels)) == objects | {0}


# ---------------------------------------------------------------------------- predictions


def test_davis_predictions_are_one_palette_png_per_annotator_and_frame(davis_root, single_runs):
    out = single_runs["davis"]
    for video in read_split(davis_root, "valid", "davis").videos:
        objects = len(video.expressions) // 4
        for a in range(4):
            names = sorted(p.name for p in (out / "valid" / f"anno_{a}" / video.name).iterdir())
            assert names == [f"{f}.png" for f in video.frames]
            with Image.open(out / "valid" / f"anno_{a}" / video.name / names[0]) as im:
                assert im.mode == "P" and im.size == (64, 64)
                assert int(np.array(im).max()) <= objects
    record = json.loads((out / "predict-valid.json").read_text())
    assert record["model"] == "builtin" and record["settings"]["window"] == 36
    assert set(record["videos"]) == {"val_00000", "val_00001", "val_00002"}
    assert not list((out / ".partial").rglob("*.png"))


def test_ytvos_predictions_are_binary_masks_and_a_server_zip(ytvos_root, single_runs):
    out = single_runs["ytvos"]
    expected = []
    for video in read_split(ytvos_root, "valid", "ytvos").videos:
        for e in video.expressions:
            for f in video.frames:
                mask = np.array(Image.open(out / "valid" / video.name / e.exp_id / f"{f}.png"))
                assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
                expected.append(f"Annotations/{video.name}/{e.exp_id}/{f}.png")
    with zipfile.ZipFile(out / "submission.zip") as zf:
        assert zf.namelist() == sorted(expected)
        first = expected[0].replace("Annotations", "valid", 1)
        assert zf.read(expected[0]) == (out / first).read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["davis", "ytvos"])
def test_torchrun_two_processes_write_the_same_bytes_as_one(
    fmt, davis_root, ytvos_root, single_runs, tmp_path
):
    root = davis_root if fmt == "davis" else ytvos_root
    out = tmp_path / "out"
    rank_logs = torchrun_rvos(predict_argv(root, fmt, out), tmp_path)
    assert outputs(out) == outputs(single_runs[fmt])
    record = json.loads((out / "predict-valid.json").read_text())
    assert {v["rank"] for v in record["videos"].values()} == {0, 1}  # both ranks worked
    # One progress bar, on rank 0, that counted the videos of both ranks.
    assert "3/3" in rank_logs[0] and "predict valid" not in rank_logs[1]


@pytest.mark.slow
def test_resume_after_a_run_killed_mid_video_finishes_the_same_files(tmp_path, capsys):
    # Clips of 4 frames: three per video, so a video is in flight long enough to be caught.
    root = synth(tmp_path / "root", "davis", "--count", "2", "--frames", "12", "--objects", "1")
    reference = tmp_path / "reference"
    assert predict(root, "davis", reference, "--window", "4") == 0
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rvos",
            "dataset",
            "predict",
            "--format",
            "davis",
            str(root),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--short-side",
            SIDE,
            "--quiet",
            "--window",
            "4",
        ],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    partial = out / ".partial" / "valid"
    deadline = time.monotonic() + 300
    while not list(partial.glob("*/anno_0/*.png")):  # a video is half written
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    folder = PredictionFolder(out, "valid", "davis")
    in_flight = [p.name for p in partial.iterdir()]
    assert in_flight and not any(folder.is_complete(v) for v in in_flight)
    before = {v for v in ("val_00000", "val_00001") if folder.is_complete(v)}

    capsys.readouterr()
    assert predict(root, "davis", out, "--resume", "--window", "4") == 0
    assert capsys.readouterr().out.startswith(f"{2 - len(before)} videos")  # only the rest
    assert outputs(out) == outputs(reference)
    assert not list(partial.rglob("*.png"))


def test_resume_refuses_to_mix_settings(davis_root, tmp_path):
    out = tmp_path / "out"
    assert predict(davis_root, "davis", out, "--max-videos", "1") == 0
    assert predict(davis_root, "davis", out) == 2  # neither --resume nor --overwrite
    assert predict(davis_root, "davis", out, "--resume", "--window", "2") == 2
    assert predict(davis_root, "davis", out, "--overwrite", "--window", "2") == 0
    assert json.loads((out / "predict-valid.json").read_text())["settings"]["window"] == 2


def test_resume_continues_a_run_recorded_before_the_objects_setting(davis_root, tmp_path):
    """A run recorded before `--objects` existed was a "best" run: --resume continues it (and
    still refuses it for --objects all)."""
    out = tmp_path / "out"
    assert predict(davis_root, "davis", out, "--max-videos", "1") == 0
    record_path = out / "predict-valid.json"
    record = json.loads(record_path.read_text())
    del record["settings"]["objects"]
    record_path.write_text(json.dumps(record))
    assert predict(davis_root, "davis", out, "--resume") == 0
    assert json.loads(record_path.read_text())["settings"]["objects"] == "best"


def test_ytvos_windows_keep_the_object_like_the_predictor(tmp_path):
    from rvos.predictor.predictor import Predictor
    from rvos.zoo.loader import load_model

    root = synth(tmp_path / "root", "ytvos", "--count", "1", "--frames", "10")
    whole, cut, one = tmp_path / "whole", tmp_path / "cut", tmp_path / "one"
    assert predict(root, "ytvos", whole) == 0
    assert predict(root, "ytvos", one, "--window", "10") == 0  # a window covering the video
    assert predict(root, "ytvos", cut, "--window", "4", "--overlap", "2") == 0
    assert outputs(one) == outputs(whole)
    video = read_split(root, "valid", "ytvos").videos[0]
    predictor = Predictor(load_model("builtin"), window=4, overlap=2, short_side=int(SIDE))
    result = predictor.predict(read_frames(video), [e.text for e in video.expressions])
    for k, e in enumerate(video.expressions):
        for t, f in enumerate(video.frames):
            png = np.array(Image.open(cut / "valid" / video.name / e.exp_id / f"{f}.png")) > 0
            assert np.array_equal(png, result[k].mask(t)), (e.exp_id, f)


def test_ytvos_one_pass_and_davis_clips_give_the_original_procedures_answer(tmp_path):
    # The original, written out: a full forward per expression and clip, the best query by
    # mean score, logits resized to the frame, sigmoid; ytvos > 0.5, davis merged.
    from rvos.eval.davis import merge_probabilities
    from rvos.media.labels import read_label_png
    from rvos.modeling.processing import run_original
    from rvos.zoo.loader import load_model

    model = load_model("builtin")

    def probabilities(frames, text, clip):
        out = []
        for start in range(0, len(frames), clip):
            r = run_original(model, frames[start : start + clip], text, short_side=int(SIDE))
            logits = r["pred_masks"][:, r["best_query"]][None].float()
            up = torch.nn.functional.interpolate(
                logits, size=frames.shape[1:3], mode="bilinear", align_corners=False
            )
            out.append(up[0].sigmoid())
        return torch.cat(out)

    ytvos = synth(tmp_path / "ytvos", "ytvos", "--count", "1", "--frames", "6")
    assert predict(ytvos, "ytvos", tmp_path / "y") == 0
    video = read_split(ytvos, "valid", "ytvos").videos[0]
    frames = read_frames(video)
    for e in video.expressions:
        expected = probabilities(frames, e.text, len(frames)) > 0.5
        got = np.stack(
            [
                np.array(Image.open(tmp_path / "y/valid" / video.name / e.exp_id / f"{f}.png"))
                for f in video.frames
            ]
        )
        assert np.array_equal(got == 255, expected.numpy())

    davis = synth(tmp_path / "davis", "davis", "--count", "1", "--frames", "10", "--objects", "2")
    assert predict(davis, "davis", tmp_path / "d", "--window", "4") == 0  # clips 4 + 4 + 2
    video = read_split(davis, "valid", "davis").videos[0]
    frames = read_frames(video)
    probs = [probabilities(frames, e.text, 4) for e in video.expressions]
    objects = len(probs) // 4
    for a in range(4):
        expected = merge_probabilities(torch.stack([probs[4 * o + a] for o in range(objects)]))
        got = np.stack(
            [
                read_label_png(tmp_path / "d/valid" / f"anno_{a}" / video.name / f"{f}.png")
                for f in video.frames
            ]
        )
        assert np.array_equal(got, expected)


def test_ytvos_valid_leaves_out_the_videos_the_test_split_lists(ytvos_root, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(ytvos_root, root)
    test_meta = root / "meta_expressions/test/meta_expressions.json"
    test_meta.parent.mkdir(parents=True)
    test_meta.write_text(json.dumps({"videos": {"val_00001": {"expressions": {}, "frames": []}}}))
    assert predict(root, "ytvos", tmp_path / "out") == 0
    assert "1 videos of meta_expressions/valid are listed in the test split" in (
        capsys.readouterr().err
    )
    assert sorted(p.name for p in (tmp_path / "out/valid").iterdir()) == ["val_00000", "val_00002"]
    with zipfile.ZipFile(tmp_path / "out/submission.zip") as zf:
        assert not [n for n in zf.namelist() if "val_00001" in n]


# ------------------------------------------------------------------------------------ scores


def _csv(path: Path) -> list[dict[str, str]]:
    head, *rows = [line.split(",") for line in path.read_text().splitlines()]
    return [dict(zip(head, row, strict=True)) for row in rows]


def test_davis_eval_agrees_with_rvos_eval_on_the_same_masks(tmp_path):
    # One object per video: each annotator's merged map is that object's own mask, and the
    # Hungarian matching has one choice, so both commands score exactly the same masks.
    args = ("--count", "3", "--frames", "4", "--objects", "1")
    rvos_split = synth(tmp_path / "rvos", "rvos", *args, "--per-object", "4")
    davis = synth(tmp_path / "davis", "davis", *args)
    records = rvos_eval(rvos_split, tmp_path / "rvos.json")
    assert predict(davis, "davis", tmp_path / "pred") == 0
    assert evaluate(davis, "davis", tmp_path / "pred", "--quiet") == 0
    mean = _csv(tmp_path / "pred/valid/global_results-valid.csv")[0]
    overall = records["summary"]["overall"]
    assert float(mean["J-Mean"]) == pytest.approx(overall["J"] / 100, abs=1e-4)
    assert float(mean["F-Mean"]) == pytest.approx(overall["F"] / 100, abs=1e-4)
    assert float(mean["J&F-Mean"]) == pytest.approx(overall["J&F"] / 100, abs=1e-4)
    by_expr = {(r["video"], r["expr_id"]): r for r in records["records"]}
    for a in range(4):
        for row in _csv(tmp_path / f"pred/valid/anno_{a}/per-sequence_results-valid.csv"):
            video = row["Sequence"].rsplit("_", 1)[0]
            assert float(row["J-Mean"]) == pytest.approx(by_expr[video, str(a)]["J"], abs=1e-4)
            assert float(row["F-Mean"]) == pytest.approx(by_expr[video, str(a)]["F"], abs=1e-4)


def test_ytvos_eval_agrees_with_rvos_eval_on_the_same_masks(tmp_path, capsys):
    args = ("--count", "3", "--frames", "4")
    rvos_split = synth(tmp_path / "rvos", "rvos", *args)
    ytvos = synth(tmp_path / "ytvos", "ytvos", *args)
    records = rvos_eval(rvos_split, tmp_path / "rvos.json")
    assert predict(ytvos, "ytvos", tmp_path / "pred") == 0
    capsys.readouterr()
    assert evaluate(ytvos, "ytvos", tmp_path / "pred", "--quiet") == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"J&F: {records['summary']['overall']['J&F']:.1f}"
    rows = _csv(tmp_path / "pred/valid/per-sequence_results-valid.csv")
    assert len(rows) == len(records["records"])
    for r in records["records"]:
        row = next(x for x in rows if x["Sequence"] == f"{r['video']}_{r['expr_id']}")
        assert float(row["J-Mean"]) == pytest.approx(r["J"], abs=1e-4)
        assert float(row["F-Mean"]) == pytest.approx(r["F"], abs=1e-4)


def test_davis_eval_prints_every_annotator_and_ends_with_the_mean(davis_root, single_runs, capsys):
    pred = single_runs["davis"]
    assert evaluate(davis_root, "davis", pred, "--quiet") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:-1]}
    assert list(rows) == ["anno_0", "anno_1", "anno_2", "anno_3", "mean"]
    assert lines[-1] == f"J&F: {float(rows['mean'][0]):.1f}"
    per_annotator = [
        float(_csv(pred / f"valid/anno_{a}/global_results-valid.csv")[0]["J&F-Mean"])
        for a in range(4)
    ]
    mean = float(_csv(pred / "valid/global_results-valid.csv")[0]["J&F-Mean"])
    assert mean == pytest.approx(np.mean(per_annotator), abs=1e-5)
    # The ground truth of the valid split of Ref-YouTube-VOS is not public: say so.
    assert evaluate(davis_root, "davis", pred / "nothing", "--quiet") == 2
    assert "no anno_0 folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------ bad inputs


def _break_json(meta: Path) -> None:
    meta.write_text(meta.read_text()[:-20])


def _break_video_entry(meta: Path) -> None:
    doc = json.loads(meta.read_text())
    doc["videos"]["val_00001"]["frames"] = "00000"
    meta.write_text(json.dumps(doc))


def _five_expressions(meta: Path) -> None:
    doc = json.loads(meta.read_text())
    doc["videos"]["val_00001"]["expressions"]["99"] = {"exp": "one more"}
    meta.write_text(json.dumps(doc))


def _escape_the_folder(meta: Path) -> None:
    doc = json.loads(meta.read_text())
    doc["videos"]["val_00001"]["frames"][0] = "../../../etc/passwd"
    meta.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "breaker, message",
    [
        (_break_json, "meta_expressions.json is not valid JSON"),
        (_break_video_entry, "video 'val_00001': 'frames' must be a non-empty list"),
        (_five_expressions, "video 'val_00001': 13 expressions; Ref-DAVIS17 has 4 per object"),
        (_escape_the_folder, "video 'val_00001': frame name '../../../etc/passwd' is not a usable"),
    ],
)
def test_a_malformed_meta_file_is_one_clear_error(breaker, message, davis_root, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(davis_root, root)
    meta = root / "meta_expressions/valid/meta_expressions.json"
    if breaker is _five_expressions:
        n = len(json.loads(meta.read_text())["videos"]["val_00001"]["expressions"])
        message = message.replace("13", str(n + 1))
    breaker(meta)
    assert predict(root, "davis", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rvos dataset predict: error: ") and len(err.splitlines()) == 1
    assert message in err


def test_a_missing_frame_is_named_before_any_prediction(davis_root, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(davis_root, root)
    (root / "valid/JPEGImages/val_00002/00003.jpg").unlink()
    assert predict(root, "davis", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "video 'val_00002': frame '00003' is missing" in err
    assert not (tmp_path / "out").exists()


def test_an_unreadable_frame_is_named(ytvos_root, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(ytvos_root, root)
    (root / "valid/JPEGImages/val_00001/00010.jpg").write_bytes(b"not a jpeg")
    assert predict(root, "ytvos", tmp_path / "out") == 2
    assert "video 'val_00001': cannot read frame '00010'" in capsys.readouterr().err
    # The videos before it are complete and kept for --resume; no zip for a partial split.
    assert PredictionFolder(tmp_path / "out", "valid", "ytvos").is_complete("val_00000")
    assert not (tmp_path / "out/submission.zip").exists()


def test_an_unwritable_output_is_named(ytvos_root, tmp_path, capsys):
    out = tmp_path / "out"
    # The temporary folder of val_00001 cannot be created: a file is in its place.
    (out / ".partial" / "valid").mkdir(parents=True)
    (out / ".partial" / "valid" / "val_00001").write_text("in the way")
    assert predict(ytvos_root, "ytvos", out) == 2
    err = capsys.readouterr().err
    assert "video 'val_00001': cannot write" in err and "val_00001" in err.split("write")[1]
    # An --out that cannot be a folder at all.
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert predict(ytvos_root, "ytvos", blocker / "out") == 2
    assert f"cannot write predictions under {blocker / 'out'}" in capsys.readouterr().err


# ------------------------------------------------------------------------------- sharding


def test_split_work_balances_costs_and_is_the_same_on_every_rank():
    costs = [10, 1, 7, 3, 3, 2, 8]
    shares = split_work(costs, 3)
    assert sorted(i for s in shares for i in s) == list(range(7))
    loads = [sum(costs[i] for i in s) for s in shares]
    assert max(loads) - min(loads) <= max(costs) and max(loads) == 12
    assert shares == split_work(costs, 3)
    assert split_work(costs, 1) == [list(range(7))]
    assert split_work([], 2) == [[], []]


def test_workers_come_from_the_torchrun_environment():
    assert Workers.from_env({}) == Workers(0, 1, 0)
    w = Workers.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (w.rank, w.world_size, w.local_rank, w.is_main, w.distributed) == (3, 4, 1, False, True)
    with pytest.raises(ValueError, match="inconsistent"):
        Workers.from_env({"RANK": "4", "WORLD_SIZE": "4"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages of a CPU-only machine")
def test_rank_device_explains_a_missing_gpu():
    from rvos.eval.distributed import rank_device

    assert rank_device(Workers(), None).type == "cpu"
    assert rank_device(Workers(1, 2, 1), "cpu").type == "cpu"
    with pytest.raises(ValueError, match="no CUDA GPU is usable here; use --device cpu"):
        rank_device(Workers(), "cuda")


def test_precision_is_part_of_the_settings_and_checked_for_the_device(davis_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert predict(davis_root, "davis", out, "--max-videos", "1", "--precision", "fp16") == 2
    assert "fp16 needs a CUDA GPU" in capsys.readouterr().err
    assert predict(davis_root, "davis", out, "--max-videos", "1") == 0
    record = json.loads((out / "predict-valid.json").read_text())
    assert record["settings"]["precision"] == "fp32"
    assert predict(davis_root, "davis", out, "--resume", "--precision", "int8") == 2
    assert "other settings" in capsys.readouterr().err


def test_dataset_precision_follows_what_this_cpu_runs_fast(davis_root, tmp_path, capsys,
                                                           monkeypatch):
    """On a CPU without bfloat16 hardware (flags faked: AVX2 only) bf16 is refused saying why,
    and auto runs int8 and records the mode that ran, not "auto"."""
    monkeypatch.setenv("RVOS_CPU_FLAGS", "sse4_2 avx avx2 fma")
    out = tmp_path / "out"
    assert predict(davis_root, "davis", out, "--max-videos", "1", "--precision", "bf16") == 2
    assert "bf16 is slower than fp32 on this CPU" in capsys.readouterr().err
    assert predict(davis_root, "davis", out, "--max-videos", "1", "--precision", "auto") == 0
    record = json.loads((out / "predict-valid.json").read_text())
    assert record["settings"]["precision"] == "int8"
