"""The model registry: its contents, look-ups, local resolution, loading errors and the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from rvos.cli import models as zoo
from rvos.zoo import registry
from rvos.zoo.loader import load_model, resolve_local
from rvos.zoo.registry import (
    MODELS,
    ModelFileMissingError,
    UnknownModelError,
    UnsupportedModelError,
    get_model_info,
    list_models,
)

ROOT = Path(__file__).resolve().parents[1]
PARITY = ROOT.parent / "shared" / "parity" / "referformer_r50"
OFFICIAL = [m for m in list_models() if m.kind == "official"]


def test_builtin_plus_every_released_model():
    # The official README lists 18 trained models: 8 Ref-YouTube-VOS, 6 joint, 4 A2D-Sentences.
    models = list_models()
    assert len(models) == len(MODELS) == 19
    assert models[0].name == "builtin" and models[0].kind == "builtin"
    assert len(OFFICIAL) == 18
    by_data = [m.training_data.split(" (")[0] for m in OFFICIAL]
    assert by_data.count("Ref-YouTube-VOS") == 8
    assert by_data.count("Ref-YouTube-VOS + RefCOCO/+/g") == 6
    assert by_data.count("A2D-Sentences") == 4


def test_official_entries_are_complete_and_distinct():
    assert len({m.filename for m in OFFICIAL}) == len(OFFICIAL)
    assert len({m.url for m in OFFICIAL}) == len(OFFICIAL)  # no two models share a file
    for m in OFFICIAL:
        assert m.url.startswith("https://drive.google.com/file/d/"), m.name
        assert m.filename.endswith(".pth")
        # Never invented: no size/sha256 has been published or measured yet.
        assert m.size_bytes is None and m.sha256 is None
        assert m.supported, m.name  # every official backbone is built by rvos


def test_headline_metric_matches_the_training_data():
    for m in OFFICIAL:
        if m.training_data.startswith("A2D"):
            assert m.metric == "A2D-Sentences mAP", m.name
        else:
            assert m.metric == "Ref-YouTube-VOS J&F", m.name
        assert 40 < m.score < 70


def test_published_j_and_f_agree_with_j_and_f_mean():
    # Guards transcription slips: J&F is the mean of J and F (to the published rounding).
    # The one exception is in the authors' own table, and the entry says so.
    for m in OFFICIAL:
        for bench in {s.benchmark for s in m.scores}:
            got = {s.metric: s.value for s in m.scores if s.benchmark == bench}
            if not {"J", "F", "J&F"} <= set(got):
                continue
            mean = (got["J"] + got["F"]) / 2
            if m.name == "ytvos-joint-video-swin-t":
                assert abs(mean - got["J&F"]) > 0.5 and "61.6" in m.notes
            else:
                assert abs(mean - got["J&F"]) <= 0.051, (m.name, bench)


def test_davis_and_jhmdb_scores_belong_to_the_reused_files():
    with_davis = {m.name for m in OFFICIAL if any(s.benchmark == "Ref-DAVIS17" for s in m.scores)}
    assert with_davis == {"ytvos-r50", "ytvos-swin-l", "ytvos-video-swin-b"}
    with_jhmdb = {
        m.name for m in OFFICIAL if any(s.benchmark == "JHMDB-Sentences" for s in m.scores)
    }
    assert with_jhmdb == {m.name for m in OFFICIAL if m.name.startswith("a2d-")}


def test_labels_for_menus():
    assert get_model_info("ytvos-r50").label == "ytvos-r50 - resnet50, Ref-YouTube-VOS J&F 55.6"
    assert get_model_info("builtin").label == "builtin - small3d, synthetic test split J&F 85.0"
    assert get_model_info("a2d-video-swin-b").label == (
        "a2d-video-swin-b - video_swin_b_p4w7, A2D-Sentences mAP 55.0")


def test_unknown_name_suggests_close_names():
    with pytest.raises(KeyError) as err:
        get_model_info("ytvos-r5")
    assert isinstance(err.value, UnknownModelError)
    assert "did you mean ytvos-r50" in str(err.value)
    assert "python -m rvos models" in str(err.value)
    with pytest.raises(UnknownModelError, match="unknown model 'zzz'"):
        get_model_info("zzz")


def test_resolve_local_finds_a_file_in_the_cache(tmp_path):
    assert resolve_local("ytvos-joint-r101", tmp_path) is None
    target = tmp_path / get_model_info("ytvos-joint-r101").filename
    target.write_bytes(b"x")
    assert resolve_local("ytvos-joint-r101", tmp_path) == target


def test_resolve_local_uses_rvos_cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("RVOS_CACHE", str(tmp_path))
    target = tmp_path / get_model_info("ytvos-r50").filename
    target.write_bytes(b"x")
    assert resolve_local("ytvos-r50") == target


def test_missing_official_file_offline_says_what_to_download_and_where(tmp_path):
    info = get_model_info("ytvos-r50")
    with pytest.raises(ModelFileMissingError) as err:
        load_model("ytvos-r50", cache_dir=tmp_path, offline=True)
    message = str(err.value)
    assert "python -m rvos download ytvos-r50" in message
    assert info.url in message
    assert str(tmp_path / info.filename) in message
    assert "offline mode" in message and "\n" not in message


def test_unsupported_backbone_is_refused_with_alternatives(tmp_path, monkeypatch):
    # Every listed model loads today; a future entry whose backbone is not built yet must be
    # refused by name, with the models that do load.
    future = dataclasses.replace(get_model_info("ytvos-swin-l"), name="ytvos-future",
                                 backbone="future_backbone", supported=False)
    monkeypatch.setitem(registry.MODELS, future.name, future)
    with pytest.raises(UnsupportedModelError, match="future_backbone") as err:
        load_model("ytvos-future", checkpoint=tmp_path / "any.pth")
    assert "ytvos-joint-r50" in str(err.value) and "ytvos-swin-l" in str(err.value)


def test_explicit_checkpoint_that_does_not_exist(tmp_path):
    with pytest.raises(ModelFileMissingError, match="does not exist"):
        load_model("ytvos-r50", checkpoint=tmp_path / "nope.pth")


@pytest.mark.skipif(not PARITY.is_dir(), reason=f"parity fixture not found at {PARITY}")
def test_load_official_checkpoint_by_path_in_eval_mode():
    # A real checkpoint in the official format (seeded weights, 1-layer text encoder).
    model = load_model(
        "ytvos-r50", checkpoint=PARITY / "checkpoint.pth", text_encoder=PARITY / "text_encoder"
    )
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) > 10_000_000


@pytest.mark.skipif(
    resolve_local("builtin") is None, reason="rvos/weights/builtin has not been trained yet"
)
def test_builtin_loads_from_package_data():
    model = load_model()
    assert not model.training


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    zoo.add_cli_arguments(parser)
    return zoo.run_cli(parser.parse_args(list(argv)))


def test_cli_table_marks_local_files(tmp_path, capsys):
    (tmp_path / get_model_info("ytvos-r101").filename).write_bytes(b"x" * 2**20)
    assert _run("--cache-dir", str(tmp_path)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + len(MODELS)
    assert lines[0].split()[:2] == ["name", "backbone"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["ytvos-r101"][-4:] == ["1.0", "MiB", "yes", "yes"]  # measured size, local, loads
    assert rows["ytvos-r50"][-2:] == ["no", "yes"]
    assert rows["ytvos-swin-l"][-3:] == ["?", "no", "yes"]


def test_cli_json_round_trips(tmp_path, capsys):
    assert _run("--json", "--cache-dir", str(tmp_path)) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == list(MODELS)
    r50 = data[1]
    assert r50["scores"][0] == {"benchmark": "Ref-YouTube-VOS", "metric": "J&F", "value": 55.6}
    assert r50["local_path"] is None and r50["sha256"] is None


def test_readme_model_table_is_generated_from_the_registry(capsys):
    assert _run("--markdown") == 0
    table = capsys.readouterr().out.strip()
    assert len(table.splitlines()) == 2 + len(MODELS)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert table in readme, "README is stale: paste `python -m rvos models --markdown` into it"


# The README is the registry's other consumer; these keep its front matter and its two
# commands honest (they live here because the registry's owner also owns the packaging).


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_starts_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = _bash_blocks(readme)
    assert blocks[:2] == [
        "pip install -r requirements.txt && python app.py",
        "pip install -r requirements-test.txt && python -m pytest -q",
    ]
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert blocks[1] in ci_lines


def test_space_front_matter_matches_requirements():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\n")
    front = dict(line.split(": ", 1) for line in readme.split("---\n")[1].strip().splitlines())
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py"
    pins = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            pins[req.name] = req
    # The Space installs the lock; its SDK version must be the one the lock pins.
    assert str(pins["gradio"].specifier) == f"=={front['sdk_version']}"


def test_requirements_are_locks_of_the_pyproject_ranges():
    """Both requirement files pin every package exactly (what CI tests is what a newcomer
    gets), the runtime pins agree between them, and each direct dependency's pin lies inside
    the range pyproject.toml declares."""
    import tomllib

    project = tomllib.load((ROOT / "pyproject.toml").open("rb"))["project"]
    ranges = [Requirement(r) for r in project["dependencies"]]
    test_ranges = [Requirement(r) for r in project["optional-dependencies"]["test"]]

    def pins(name):
        out = {}
        for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{name}: {line!r} is not an exact pin"
            out[req.name.lower().replace("_", "-")] = spec.version
        return out

    runtime, test = pins("requirements.txt"), pins("requirements-test.txt")
    assert {k: test[k] for k in runtime} == runtime
    for req in ranges:
        assert req.specifier.contains(runtime[req.name.lower().replace("_", "-")]), req
    for req in test_ranges:
        assert req.specifier.contains(test[req.name.lower().replace("_", "-")]), req


def test_listing_and_downloading_models_do_not_import_torch():
    """`rvos --help`, `rvos models`, `rvos download`, `rvos convert --help` and `rvos synth`
    start in a fraction of a second: nothing on their import path pulls in torch or
    transformers."""
    import subprocess
    import sys

    code = (
        "import sys, rvos, rvos.cli.main, rvos.zoo.registry, rvos.zoo.download\n"
        "import rvos.data.synth_scene, rvos.zoo.loader\n"
        "import rvos.zoo.hub, rvos.zoo.convert\n"
        "rvos.cli.main.build_parser(only='models')\n"
        "rvos.cli.main.build_parser(only='convert')\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert callable(rvos.load_pretrained)  # the public API still works, on first use\n"
        "assert 'torch' in sys.modules\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
