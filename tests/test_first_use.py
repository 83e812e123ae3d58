"""Official models download on first use: ``rvos predict --model``, ``load_model`` and the app
fetch a missing checkpoint into the cache, from the mirrors of ``RVOS_MIRROR`` first, then the
registry's links, with progress, resume and one transfer however many sessions ask.

Every source is a real HTTP server on 127.0.0.1 (tests/fileserver.py), never the network: the
mirror holds the parity checkpoint (the official format) under the registry's file name, and
the tests that reach a registry link first point that link at the same server, answering with
Google Drive's own pages.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import threading
from pathlib import Path

import pytest
from fileserver import DRIVE_CONFIRM_PAGE, DRIVE_QUOTA_PAGE, FileServer, serve_as_hub
from test_app import ROOT, start_app

from rvos.app.inputs import AppInputError
from rvos.app.models import ModelCache, model_choices
from rvos.cli.predict import add_cli_arguments, run_cli
from rvos.media.probe import probe
from rvos.zoo import download as dl
from rvos.zoo import loader as zoo
from rvos.zoo import registry

REAL_CLIP = ROOT / "examples" / "bigbuckbunny.mp4"  # real footage that ships with the app
R50 = registry.get_model_info("ytvos-r50")
FILE = f"/{R50.filename}"
PAYLOAD = hashlib.sha256(b"first use").digest() * (3 * 2**15 + 5)  # 3 MiB + a bit

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def parity_checkpoint(parity_dir: Path) -> Path:
    path = parity_dir / "referformer_r50" / "checkpoint.pth"
    if not path.is_file():
        pytest.skip(f"no parity checkpoint at {path}")
    return path


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


@pytest.fixture
def online(monkeypatch, tmp_path) -> Path:
    """Downloads allowed (conftest starts offline), into an empty cache; returns the cache."""
    monkeypatch.setenv("RVOS_OFFLINE", "0")
    monkeypatch.setenv("RVOS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def registry_link_on(server: FileServer, monkeypatch, name: str = "ytvos-r50") -> str:
    """Point `name`'s registry link at `server` (a Drive-like path), so no test reaches Drive."""
    link = f"{server.url}/file/d/abc/view"
    info = registry.get_model_info(name)
    monkeypatch.setitem(registry.MODELS, name, dataclasses.replace(info, urls=(link,)))
    return link


def predict(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="rvos predict")
    add_cli_arguments(parser)
    return run_cli(parser.parse_args(list(argv)))


# ------------------------------------------------------------------------- command line


def test_predict_fetches_ytvos_r50_from_the_mirror_then_runs(
        server, online, monkeypatch, parity_checkpoint, parity_dir, tmp_path, capsys):
    server.add_file(FILE, parity_checkpoint)
    monkeypatch.setenv("RVOS_MIRROR", server.url)
    out = tmp_path / "out"
    code = predict(str(REAL_CLIP), "--model", "ytvos-r50", "--text", "the big grey rabbit",
                   "--text-encoder", str(parity_dir / "referformer_r50" / "text_encoder"),
                   "--max-frames", "2", "--short-side", "96", "--out", str(out))
    err = capsys.readouterr().err
    assert code == 0, err
    assert [e["range"] for e in server.requests_for(FILE)] == [None]  # one transfer
    assert (online / R50.filename).read_bytes() == parity_checkpoint.read_bytes()
    assert not list(online.glob("*.part"))
    assert f"{R50.filename}: " in err and "MiB" in err  # the progress lines
    doc = json.loads((out / "result.json").read_text())
    assert doc["model"] == "ytvos-r50" and doc["source"]["num_frames"] == 2
    assert probe(out / "overlay.mp4").num_frames == 2


@pytest.mark.parametrize("how", ["RVOS_OFFLINE=1", "--offline"])
def test_offline_predict_says_in_one_line_what_to_fetch(server, online, monkeypatch, capsys,
                                                        how):
    server.add_file(FILE, PAYLOAD)
    monkeypatch.setenv("RVOS_MIRROR", server.url)
    flags = []
    if how == "--offline":
        flags = ["--offline"]
    else:
        monkeypatch.setenv("RVOS_OFFLINE", "1")
    code = predict(str(REAL_CLIP), "--model", "ytvos-r50", "--text", "a rabbit", "--out",
                   str(online.parent / "out"), *flags)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "python -m rvos download ytvos-r50" in err and R50.url in err
    assert str(online / R50.filename) in err and "offline mode" in err
    assert server.log == []


# ------------------------------------------------------------------------ sources


def test_mirror_first_then_the_registry_link_through_drives_confirm_page(server, online,
                                                                         monkeypatch):
    link = registry_link_on(server, monkeypatch)
    monkeypatch.setenv("RVOS_MIRROR", f"{server.url}/mirror")  # holds nothing: HTTP 404
    server.pages["/file/d/abc/view"] = DRIVE_CONFIRM_PAGE.format(
        name=R50.filename, action="/download", id="abc")
    server.add_file("/download", PAYLOAD)
    path = zoo.ensure_local("ytvos-r50", progress=False)
    assert path == online / R50.filename and path.read_bytes() == PAYLOAD
    assert [e["path"].split("?")[0] for e in server.log] == [
        f"/mirror{FILE}", "/file/d/abc/view", "/download"]
    assert "confirm=t" in server.log[-1]["path"]
    assert link == registry.get_model_info("ytvos-r50").url


def test_drive_quota_page_is_reported_in_one_line_with_the_link(server, online, monkeypatch):
    link = registry_link_on(server, monkeypatch)
    monkeypatch.setenv("RVOS_MIRROR", f"{server.url}/mirror")
    server.pages["/file/d/abc/view"] = DRIVE_QUOTA_PAGE
    with pytest.raises(dl.DownloadError) as err:
        zoo.ensure_local("ytvos-r50", progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert "too many users have viewed or downloaded this file recently" in message
    assert "HTTP 404" in message  # what the mirror said, too
    assert f"download {link} by hand and save it as {online / R50.filename}" in message
    assert not (online / R50.filename).exists()


def test_an_interrupted_transfer_resumes_from_the_same_mirror(server, online, monkeypatch):
    registry_link_on(server, monkeypatch)
    monkeypatch.setenv("RVOS_MIRROR", server.url)
    server.add_file(FILE, PAYLOAD)
    server.cut_after = 1_000_000
    with pytest.raises(dl.TransferInterrupted, match="try again: it resumes where it stopped"):
        zoo.ensure_local("ytvos-r50", progress=False)
    assert (online / f"{R50.filename}.part").stat().st_size == 1_000_000
    assert [e["path"] for e in server.log] == [FILE]  # the registry link was left alone

    server.cut_after = None
    assert zoo.ensure_local("ytvos-r50", progress=False).read_bytes() == PAYLOAD
    assert server.log[-1] == {"path": FILE, "range": "bytes=1000000-",
                              "sent": len(PAYLOAD) - 1_000_000}


# ---------------------------------------------------------------------------- the app


def test_two_sessions_choosing_the_same_missing_model_share_one_download(server, online,
                                                                          monkeypatch):
    registry_link_on(server, monkeypatch)
    monkeypatch.setenv("RVOS_MIRROR", server.url)
    server.add_file(FILE, PAYLOAD)
    server.rate = 2_000_000  # bytes/s: both sessions are still waiting when the second asks
    models = ModelCache(model_choices(offline=False), offline=False)
    assert "Downloads on first use" in models.note("ytvos-r50")
    assert "downloads on first use" in {k: v for v, k in models.menu()}["ytvos-r50"]
    seen: dict[str, list] = {}

    def session(name: str) -> None:
        seen[name] = list(models.fetch_steps("ytvos-r50", poll_s=0.1))

    sessions = [threading.Thread(target=session, args=(n,)) for n in ("a", "b")]
    for s in sessions:
        s.start()
    for s in sessions:
        s.join(timeout=60)
    assert len(server.requests_for(FILE)) == 1
    assert (online / R50.filename).read_bytes() == PAYLOAD
    for steps in seen.values():  # each session saw the download advance, then end
        assert any(0 < p.done < len(PAYLOAD) for p in steps)
        assert steps[-1].done == steps[-1].total == len(PAYLOAD)
        assert "downloading ytvos-r50" in steps[-1].text
    assert list(models.fetch_steps("ytvos-r50")) == []  # a third session: nothing to fetch
    assert "On this machine" in models.note("ytvos-r50")
    assert "on this machine" in {k: v for v, k in models.menu()}["ytvos-r50"]


def test_a_failed_download_is_a_clear_message_and_a_later_one_works(server, online,
                                                                     monkeypatch):
    link = registry_link_on(server, monkeypatch)  # serves nothing yet: HTTP 404
    models = ModelCache(model_choices(offline=False), offline=False)
    with pytest.raises(AppInputError) as err:
        list(models.fetch_steps("ytvos-r50"))
    assert str(err.value).startswith("could not download ytvos-r50: ")
    assert "HTTP 404" in str(err.value) and link in str(err.value)
    server.add_file("/file/d/abc/view", PAYLOAD)
    assert list(models.fetch_steps("ytvos-r50"))[-1].done == len(PAYLOAD)


def test_offline_menu_lists_only_the_models_on_this_machine(online, monkeypatch):
    (online).mkdir(parents=True)
    (online / R50.filename).write_bytes(b"x")
    keys = [c.key for c in model_choices(offline=True)]
    assert keys == ["builtin", "ytvos-r50"]
    everything = [c.key for c in model_choices(offline=False)]
    assert everything == [m.name for m in registry.list_models(supported_only=True)]
    with pytest.raises(AppInputError, match="python -m rvos download ytvos-r101"):
        model_choices("ytvos-r101", offline=True)
    hub = model_choices("hf://rvos-test/referformer-ytvos-r50@v1", offline=True)[0]
    assert (hub.key, hub.kind) == ("hf://rvos-test/referformer-ytvos-r50@v1", "hub")
    with pytest.raises(AppInputError, match="hf://OWNER/REPO"):
        model_choices("hf://just-a-name")


def test_app_fetches_its_model_before_serving_then_segments_and_compares(
        parity_checkpoint, parity_dir, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    mirror = FileServer()
    mirror.add_file(FILE, parity_checkpoint)
    joint = f"/{registry.get_model_info('ytvos-joint-r50').filename}"
    mirror.files[joint] = mirror.files[FILE]  # another ResNet-50 model, for the next choice
    cache = tmp_path / "cache"
    env = {"RVOS_MIRROR": mirror.url, "RVOS_CACHE": str(cache), "RVOS_OFFLINE": "0"}
    try:
        app = start_app(tmp_path, "--model", "ytvos-r50", "--threads", "1", "--text-encoder",
                        str(parity_dir / "referformer_r50" / "text_encoder"), env=env,
                        model_args=[])
        running = next(app)
        try:
            log = running.log.read_text()
            assert "downloading ytvos-r50 before serving" in log
            assert f"{R50.filename}: " in log and "(100%)" in log  # progress in the log
            assert len(mirror.requests_for(FILE)) == 1
            client = Client(running.url, verbose=False)
            clip = handle_file(str(REAL_CLIP))
            overlay, _, result_json, summary = client.predict(
                video=clip, expressions="the big grey rabbit", max_frames=2, short_side=96,
                api_name="/segment")
            assert probe(overlay).num_frames == 2
            assert json.loads(Path(result_json).read_text())["model"] == "ytvos-r50"

            # A model chosen later downloads then; a transfer cut short is a clear message,
            # the app keeps serving, and the next try resumes where it stopped.
            mirror.cut_after = 5_000_000
            with pytest.raises(AppError, match="could not download ytvos-joint-r50"):
                client.predict(video=clip, expressions="the rabbit", model="ytvos-joint-r50",
                               max_frames=1, short_side=96, api_name="/segment")
            mirror.cut_after = None
            # /compare fetches a model that is not here the same way: this try resumes.
            overlay_a, overlay_b, _, result_b, *_ = client.predict(
                video=clip, expressions="the rabbit", model_a="ytvos-r50",
                model_b="ytvos-joint-r50", max_frames=1, short_side=96, api_name="/compare")
            assert probe(overlay_a).num_frames == probe(overlay_b).num_frames == 1
            assert json.loads(Path(result_b).read_text())["model"] == "ytvos-joint-r50"
            assert [e["range"] for e in mirror.requests_for(joint)] == [None, "bytes=5000000-"]
            overlay, *_ = client.predict(video=clip, expressions="the rabbit",
                                         model="ytvos-joint-r50", max_frames=1, short_side=96,
                                         api_name="/segment")
            assert probe(overlay).num_frames == 1
            assert len(mirror.requests_for(joint)) == 2  # /segment found it here
        finally:
            app.close()
    finally:
        mirror.close()


# --------------------------------------------------------- roberta-base, by door


@pytest.fixture
def stalled_hub(monkeypatch, tmp_path):
    """A Hugging Face endpoint that accepts and never answers, an empty Hub cache, online."""
    srv = FileServer()
    srv.stall = "answer"
    serve_as_hub(srv, monkeypatch, tmp_path)
    yield srv
    srv.close()


def test_cli_without_roberta_base_names_the_cli_option(stalled_hub, parity_checkpoint, tmp_path,
                                                       capsys):
    import time

    started = time.monotonic()
    code = predict(str(REAL_CLIP), "--checkpoint", str(parity_checkpoint), "--text", "a rabbit",
                   "--max-frames", "1", "--out", str(tmp_path / "out"))
    assert time.monotonic() - started < 30  # the checkpoint's reading included; no retries
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--text-encoder text_encoder" in err and "text_encoder='" not in err
    assert "offline" not in err and "roberta-base" in err


def test_app_visitor_without_roberta_base_gets_no_operator_advice(stalled_hub,
                                                                   parity_checkpoint):
    models = ModelCache(model_choices("ytvos-r50", checkpoint=parity_checkpoint))
    with pytest.raises(AppInputError) as err:
        models.get("ytvos-r50")
    message = str(err.value)
    assert "roberta-base" in message and "Hugging Face Hub" in message
    for advice in ("text_encoder=", "--text-encoder", "python -c", "save_pretrained"):
        assert advice not in message
