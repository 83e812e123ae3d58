"""rvos.zoo.download against a real HTTP server on 127.0.0.1 (tests/fileserver.py, with Range)."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fileserver import FileServer, serve_as_hub

from rvos.cli.download import add_cli_arguments, run_cli
from rvos.zoo.download import (
    STALL_ENV,
    DownloadError,
    IntegrityError,
    OfflineError,
    TransferInterrupted,
    cache_dir,
    direct_url,
    download,
    download_file,
    stall_timeout,
)
from rvos.zoo.loader import resolve_local
from rvos.zoo.registry import get_model_info

# 3 MiB + a bit: several 1 MiB chunks, not a multiple of the chunk size.
PAYLOAD = hashlib.sha256(b"rvos").digest() * (3 * 2**15 + 17)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    srv = FileServer()
    srv.add_file("/model.pth", PAYLOAD)
    yield srv
    srv.close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_verifies_sha256_and_leaves_no_part(server, tmp_path):
    dest = tmp_path / "cache" / "model.pth"
    path = download_file(
        server.url + "/model.pth", dest, size=len(PAYLOAD), sha256=PAYLOAD_SHA, progress=False
    )
    assert path == dest
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "cache" / "model.pth.part").exists()
    assert [e["range"] for e in server.log] == [None]


def test_resume_requests_only_the_missing_bytes(server, tmp_path):
    dest = tmp_path / "model.pth"
    have = 1_234_567
    (tmp_path / "model.pth.part").write_bytes(PAYLOAD[:have])
    download_file(server.url + "/model.pth", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.log == [
        {"path": "/model.pth", "range": f"bytes={have}-", "sent": len(PAYLOAD) - have}
    ]


def test_interrupted_download_keeps_part_and_resumes(server, tmp_path):
    dest = tmp_path / "model.pth"
    server.cut_after = 1_000_000
    with pytest.raises(OfflineError, match="try again: it resumes where it stopped"):
        download_file(server.url + "/model.pth", dest, sha256=PAYLOAD_SHA, progress=False)
    part = tmp_path / "model.pth.part"
    assert part.stat().st_size == 1_000_000 and not dest.exists()

    server.cut_after = None
    download_file(server.url + "/model.pth", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.log[-1]["range"] == "bytes=1000000-"
    assert server.log[-1]["sent"] == len(PAYLOAD) - 1_000_000


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.honour_range = False
    dest = tmp_path / "model.pth"
    # A stale .part whose bytes are wrong: appending to it would corrupt the file.
    (tmp_path / "model.pth.part").write_bytes(b"\0" * 5000)
    download_file(server.url + "/model.pth", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.log[0]["range"] == "bytes=5000-" and server.log[0]["sent"] == len(PAYLOAD)


def test_complete_part_is_verified_without_transfer(server, tmp_path):
    dest = tmp_path / "model.pth"
    (tmp_path / "model.pth.part").write_bytes(PAYLOAD)
    download_file(server.url + "/model.pth", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [e["sent"] for e in server.log] == [0]  # one 416 answer, no body


def test_sha256_mismatch_deletes_part_and_writes_no_file(server, tmp_path):
    dest = tmp_path / "model.pth"
    wrong = "0" * 64
    with pytest.raises(IntegrityError, match=f"expected {wrong}") as err:
        download_file(server.url + "/model.pth", dest, sha256=wrong, progress=False)
    assert PAYLOAD_SHA in str(err.value)
    assert not dest.exists()
    assert not (tmp_path / "model.pth.part").exists()


def test_size_mismatch_is_an_integrity_error(server, tmp_path):
    dest = tmp_path / "model.pth"
    with pytest.raises(IntegrityError, match=f"expected {len(PAYLOAD) + 1}"):
        download_file(server.url + "/model.pth", dest, size=len(PAYLOAD) + 1, progress=False)
    assert not dest.exists()


def test_existing_corrupt_file_is_reported_not_overwritten(server, tmp_path):
    dest = tmp_path / "model.pth"
    dest.write_bytes(b"not a checkpoint")
    with pytest.raises(IntegrityError, match="already exists"):
        download_file(server.url + "/model.pth", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == b"not a checkpoint" and server.log == []


def test_unreachable_server_names_url_and_destination(closed_port, tmp_path):
    url = f"http://127.0.0.1:{closed_port}/model.pth"
    dest = tmp_path / "deep" / "model.pth"
    with pytest.raises(OfflineError) as err:
        download_file(url, dest, progress=False, timeout=5)
    message = str(err.value)
    assert "connection refused" in message
    assert f"download {url} by hand and save it as {dest}" in message


@pytest.mark.parametrize("where", ["answer", "body"])
def test_a_source_that_sends_nothing_fails_after_the_stall_time(
    server, tmp_path, monkeypatch, where
):
    """A server that accepts and never answers, and one that stops mid-file, both fail once
    they have sent nothing for $RVOS_DOWNLOAD_STALL_S seconds (15 by default), saying so."""
    monkeypatch.setenv(STALL_ENV, "1.5")
    server.stall, server.stall_after = where, 1_000_000
    dest = tmp_path / "model.pth"
    started = time.monotonic()
    with pytest.raises(OfflineError) as err:
        download_file(server.url + "/model.pth", dest, progress=False)
    assert 1.4 < time.monotonic() - started < 10
    reason = err.value.reason
    assert "sent no data for 1.5 s" in reason
    if where == "answer":
        assert "did not answer" in reason
    else:
        assert isinstance(err.value, TransferInterrupted) and "after 1.0 MiB" in reason
        assert (tmp_path / "model.pth.part").stat().st_size == 1_000_000


def test_the_stall_time_defaults_to_15_s(monkeypatch):
    monkeypatch.delenv(STALL_ENV, raising=False)
    assert stall_timeout() == 15
    monkeypatch.setenv(STALL_ENV, "4")
    assert stall_timeout() == 4 and stall_timeout(2) == 2


def test_reasons_name_no_local_path_for_an_app_to_show(server, tmp_path):
    """`reason` is what an app shows a visitor; the full message (with the cache path to save a
    hand-made download under) is for the log and the command line."""
    dest = tmp_path / "model.pth"
    dest.write_bytes(b"not the file")
    with pytest.raises(IntegrityError) as err:
        download_file(server.url + "/model.pth", dest, sha256=PAYLOAD_SHA, progress=False)
    assert str(tmp_path) in str(err.value) and str(tmp_path) not in err.value.reason
    with pytest.raises(DownloadError) as err:
        download_file(server.url + "/nothing.pth", tmp_path / "n.pth", progress=False)
    assert str(tmp_path) in str(err.value) and str(tmp_path) not in err.value.reason


def test_dns_failure_reads_as_offline(tmp_path):
    # ".invalid" never resolves (RFC 6761), so this is a DNS failure without any network.
    url = "http://rvos-test.invalid/model.pth"
    dest = tmp_path / "model.pth"
    with pytest.raises(OfflineError, match="DNS lookup failed") as err:
        download_file(url, dest, progress=False, timeout=5)
    assert f"download {url} by hand and save it as {dest}" in str(err.value)


def test_http_404_is_a_download_error_with_instructions(server, tmp_path):
    dest = tmp_path / "model.pth"
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        download_file(server.url + "/missing.pth", dest, progress=False)
    assert str(dest) in str(err.value)


def test_confirmation_page_form_is_followed(server, tmp_path):
    # The shape of Google Drive's "can't scan this file for viruses" page: a GET form with
    # hidden inputs that lead to the real download.
    server.pages["/uc"] = (
        '<html><body><form id="download-form" action="/download" method="get">'
        '<input type="submit" value="Download anyway">'
        '<input type="hidden" name="id" value="abc"><input type="hidden" name="confirm" '
        'value="t"><input type="hidden" name="uuid" value="u-1"></form></body></html>'
    )
    server.files["/download"] = PAYLOAD
    dest = tmp_path / "model.pth"
    download_file(server.url + "/uc?export=download&id=abc", dest, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [e["path"] for e in server.log] == [
        "/uc?export=download&id=abc",
        "/download?id=abc&confirm=t&uuid=u-1",
    ]


def test_web_page_instead_of_file_is_explained(server, tmp_path):
    server.pages["/quota"] = "<html><body>Too many users have viewed this file.</body></html>"
    dest = tmp_path / "model.pth"
    with pytest.raises(DownloadError, match="web page instead of the file"):
        download_file(server.url + "/quota", dest, progress=False)
    assert not dest.exists()


def test_drive_sharing_links_become_direct_links():
    url = get_model_info("ytvos-r50").url
    assert direct_url(url) == (
        "https://drive.google.com/uc?export=download&id=1TBykzTRiOEbpM2YEYnDICyqjwkvlD2cR"
    )
    assert direct_url("https://drive.google.com/open?id=XYZ") == (
        "https://drive.google.com/uc?export=download&id=XYZ"
    )
    assert direct_url("http://127.0.0.1:9/a.pth") == "http://127.0.0.1:9/a.pth"


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("RVOS_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == Path.home() / ".cache" / "rvos"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "rvos"
    monkeypatch.setenv("RVOS_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_download_by_name_lands_where_the_registry_looks(server, tmp_path):
    assert resolve_local("ytvos-r50", tmp_path) is None
    path = download(
        "ytvos-r50",
        cache_dir=tmp_path,
        url=server.url + "/model.pth",
        progress=False,
        offline=False,
    )
    assert path == tmp_path / "referformer_ytvos_r50.pth"
    assert resolve_local("ytvos-r50", tmp_path) == path


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_offline_prints_one_line_and_returns_nonzero(
    closed_port, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("RVOS_OFFLINE", "0")
    url = f"http://127.0.0.1:{closed_port}/x.pth"
    code = run_cli(_cli("ytvos-r50", "--cache-dir", str(tmp_path), "--url", url, "--quiet"))
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: cannot reach 127.0.0.1")
    assert str(tmp_path / "referformer_ytvos_r50.pth") in err


def test_cli_unknown_name(capsys):
    assert run_cli(_cli("ytvos-r5", "--quiet")) == 2
    assert "did you mean ytvos-r50" in capsys.readouterr().err


def test_cli_prints_the_downloaded_path(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RVOS_OFFLINE", "0")
    code = run_cli(
        _cli("ytvos-r101", "--cache-dir", str(tmp_path), "--url", server.url + "/model.pth")
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert out.strip() == str(tmp_path / "referformer_ytvos_r101.pth")
    assert "MiB" in err  # the progress line


@pytest.mark.skipif(importlib.util.find_spec("rvos.cli.main") is None,
                    reason="rvos.cli.main not present")
def test_python_m_rvos_download_offline_has_no_traceback(closed_port, tmp_path):
    env = {**os.environ, "RVOS_CACHE": str(tmp_path), "RVOS_OFFLINE": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "rvos", "download", "ytvos-r50", "--quiet",
         "--url", f"http://127.0.0.1:{closed_port}/x.pth"],
        check=False, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert str(tmp_path / "referformer_ytvos_r50.pth") in proc.stderr


# ------------------------------------------------------------- the text encoder (roberta-base)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A Hugging Face endpoint on 127.0.0.1, an empty Hub cache, online, no remembered failure."""
    srv = FileServer()
    serve_as_hub(srv, monkeypatch, tmp_path)
    yield srv
    srv.close()


@pytest.mark.parametrize("how", ["stall", "missing"])
def test_an_unreachable_text_encoder_fails_within_10_s_and_is_remembered(hub, how):
    from rvos.zoo.checkpoint import load_text_side
    from rvos.zoo.hub import TextEncoderError

    if how == "stall":
        hub.stall = "answer"  # accepts, never answers
    else:
        hub.close()  # nothing listens any more: connection refused
    started = time.monotonic()
    with pytest.raises(TextEncoderError) as first:
        load_text_side("roberta-base")
    assert time.monotonic() - started < 10
    message = str(first.value)
    assert "offline" not in message  # offline mode is off: it must not say so
    assert ("sent nothing" if how == "stall" else "could not be reached") in message
    again = time.monotonic()
    with pytest.raises(TextEncoderError) as second:
        load_text_side("roberta-base")
    assert time.monotonic() - again < 0.5  # remembered: no second wait within the minute
    assert str(second.value) == message
    assert len(hub.requests_for("/roberta-base/resolve/main/vocab.json")) <= 1


def test_text_encoder_advice_is_per_door(hub):
    """Python users get the keyword, command-line users the option, an app visitor only what
    went wrong; the folder the advice names is what the advised command writes."""
    from rvos.zoo.hub import TextEncoderError

    err = TextEncoderError("roberta-base", "the Hub sent nothing")
    assert "text_encoder='text_encoder'" in str(err) and "--text-encoder" not in str(err)
    assert "--text-encoder text_encoder" in err.for_cli() and "text_encoder='" not in (
        err.for_cli()
    )
    assert err.reason == "the Hub sent nothing"
    assert ".save_pretrained('text_encoder')" in str(err)
    assert "vocab.json and merges.txt" in str(err) and "config.json may" in str(err)


def test_offline_text_encoder_says_offline(hub, monkeypatch):
    from rvos.zoo.hub import TextEncoderError, text_encoder_folder

    with pytest.raises(TextEncoderError, match="offline mode is on"):
        text_encoder_folder("roberta-base", offline=True)
    assert hub.log == []


def test_a_tokenizer_saved_without_config_loads(tmp_path):
    """What the advised command writes (tokenizer files, no config.json) is enough."""
    from rvos.modeling.tokenizer import TextTokenizer
    from rvos.zoo.checkpoint import load_text_side

    src = _parity_text_encoder()
    folder = tmp_path / "text_encoder"
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (folder / name).write_bytes((src / name).read_bytes())
    config, tokenizer = load_text_side(folder)
    assert config is None and isinstance(tokenizer, TextTokenizer)
    assert tokenizer(["a dog"])["input_ids"][0][0] == 0  # <s>


def test_the_text_encoder_is_fetched_from_the_hub_once(hub, tmp_path):
    from rvos.zoo.checkpoint import load_text_side

    src = _parity_text_encoder()
    for name in ("vocab.json", "merges.txt", "config.json"):
        hub.add_file(f"/roberta-base/resolve/main/{name}", src / name)
    config, tokenizer = load_text_side("roberta-base")
    assert config is not None and config["hidden_size"] > 0
    expected, _ = load_text_side(src)
    assert config["hidden_size"] == expected["hidden_size"]
    assert (
        tokenizer(["the rabbit"])["input_ids"]
        == load_text_side(src)[1](["the rabbit"])["input_ids"]
    )
    before = len(hub.log)
    load_text_side("roberta-base")  # the second time: from the folder, no request
    assert len(hub.log) == before


def _parity_text_encoder() -> Path:
    from conftest import parity_root

    src = parity_root() / "referformer_r50" / "text_encoder"
    if not (src / "vocab.json").is_file():
        pytest.skip(f"no parity text encoder at {src}")
    return src
