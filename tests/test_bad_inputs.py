"""The bad-input matrix (issue 20): what `rvos predict` and the app's ``/segment`` API say to
files that are not videos, odd but valid videos, odd expressions, limits, busy and vanishing
clients.

Everything goes through the two outside doors only: ``python -m rvos predict`` in a subprocess
and gradio_client against one ``python app.py`` per module. No rvos import, so this file outlives
any restructuring of the package. Inputs are made at test time (tests/badmedia.py).

What every refusal must look like:
- CLI: exit code not 0; no traceback; the last line of stderr is one line that names the
  essential fact (the table's phrases, any of them, case-insensitive); it does not say
  "Upload" (there is nothing to upload) or "expression 0" (people count from 1). The video is
  given as a path relative to the working folder, so a message that names the user's own file
  still holds no absolute temp path.
- API: gradio_client raises AppError whose message is that one specific line, with no server
  path (the app's temp folders live under this module's own folder, so they are recognisable)
  and no operator advice ("--max-duration", "start the app", ...); the app then still serves a
  valid request.

Both doors run on the CPU, each process capped at a few GB of address space: a video that
makes rvos allocate without bound fails fast instead of taking the machine down.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import badmedia
import pytest

pytestmark = pytest.mark.slow  # starts the app once and rvos predict ~30 times

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BUILTIN = ROOT / "rvos" / "weights" / "builtin"
STARTUP_TIMEOUT_S = 120
CLI_TIMEOUT_S = 120
APP_MEMORY_CAP = 8 << 30  # bytes of address space for the app
CLI_MEMORY_CAP = 6 << 30  # ... and for each rvos predict
# The app's limits for this module: small, so that the files that break them stay small.
MAX_DURATION_S = 6  # bigbuckbunny (5.3 s) passes, an 8-s clip does not
MAX_UPLOAD_MB = 1

# A valid request: the first example and its first expression (examples/examples.json).
_EXAMPLE = json.loads((EXAMPLES / "examples.json").read_text())["synthetic"][0]
VALID_VIDEO = EXAMPLES / _EXAMPLE["video"]
VALID_TEXT = _EXAMPLE["expressions"][0]

# What a visitor of the app must never be told: advice for whoever runs the app, tracebacks.
NOT_FOR_VISITORS = (
    "--max-duration",
    "--max-upload",
    "--max-frames",
    "start the app",
    "app.py",
    "text_encoder=",
    ".cache/rvos",
    "Traceback",
)


# ------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Refused:
    """A bad input and the phrases (any one) its message must contain."""

    name: str  # a badmedia.MAKERS name
    says: tuple[str, ...]


REFUSED_FILES = [
    Refused("empty.mp4", ("empty", "0 bytes")),
    Refused("notes.mp4", ("not a video",)),
    Refused("random.mp4", ("not a video",)),
    Refused(
        "truncated_no_index.mp4", ("not a video", "truncated", "damaged", "broken", "incomplete")
    ),
    Refused("sine.m4a", ("no video stream", "audio only", "only audio", "audio-only")),
    Refused("sine.mp3", ("no video stream", "audio only", "only audio", "audio-only")),
    Refused("subtitles.mkv", ("no video stream", "subtitle")),
    # A still image is not a video: one set of formats for every door (the page refuses it).
    Refused("image.png", ("image",)),
    Refused("image.jpg", ("image",)),
]

# Accepted: a video, however odd. (name, frames the overlay must have; None: see the test)
ACCEPTED_FILES = [
    ("animated.gif", 6),  # a GIF is a video
    ("clip.avi", 8),
    ("one_pixel.mp4", 8),
    ("two_frames.mp4", 2),
    # bigbuckbunny's first half: its index is at the front, so the first 45 frames decode;
    # what decodes is what is segmented.
    ("truncated.mp4", None),
]

TOO_LONG_TEXT = "the red circle " * 334  # 5000 characters, ~1000 tokens
HTML_TEXTS = ["<img src=x>", "![t](http://127.0.0.1:9/track.png)", '"><iframe src=x>']
UNICODE_TEXTS = ["红色的圆圈", "the 🐶 on the left"]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """The folder where the inputs are made (each once, on first use)."""
    return tmp_path_factory.mktemp("media")


def make(media: Path, name: str) -> Path:
    return badmedia.make(name, media)


def model_args() -> list[str]:
    """The built-in model (or $RVOS_APP_TEST_CHECKPOINT, as tests/test_app.py); skips when it
    is not trained yet."""
    override = os.environ.get("RVOS_APP_TEST_CHECKPOINT")
    if override:
        return ["--model", "builtin", "--checkpoint", override]
    if not (BUILTIN / "config.json").is_file():
        pytest.skip(f"the built-in model is not trained yet ({BUILTIN}/config.json is missing)")
    return []


# Runs argv[2:] with its address space capped at argv[1] bytes (exec keeps the limit). Not
# preexec_fn: this process holds gradio_client threads, and forking them is unsafe.
_CAPPED = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_AS, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"
)


def capped(limit: int, argv: list[str]) -> list[str]:
    """``argv`` run with at most ``limit`` bytes of address space."""
    return [sys.executable, "-c", _CAPPED, str(limit), *argv]


def child_env(**extra: str) -> dict[str, str]:
    """The test environment (offline: tests/conftest.py) plus this checkout on the path."""
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        lines = [line for line in self.err.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def predict(
    video: str | Path, *texts: str, out: str | Path = "out", cwd: Path, extra: tuple[str, ...] = ()
) -> CliRun:
    """``python -m rvos predict VIDEO --text T... --out OUT`` run in ``cwd`` on the CPU."""
    argv = [sys.executable, "-m", "rvos", "predict", str(video), *model_args()]
    for t in texts:
        argv += ["--text", t]
    argv += ["--out", str(out), "--device", "cpu", "--quiet", *extra]
    done = subprocess.run(
        capped(CLI_MEMORY_CAP, argv),
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    return CliRun(done.returncode, done.stdout, done.stderr)


@dataclass
class RunningApp:
    url: str
    process: subprocess.Popen
    log: Path
    tmp: Path  # the app's $TMPDIR: Gradio's uploads and rvos's work folder are under it

    def work_folders(self) -> set[Path]:
        """Every folder under the app's temp folder but Gradio's own (uploads and the copies
        of outputs it serves): rvos's work folder and its runs."""
        gradio = self.tmp / "gradio"
        return {p for p in self.tmp.rglob("*") if p.is_dir() and not p.is_relative_to(gradio)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[RunningApp]:
    """One ``python app.py`` for the module, with small limits and its own temp folder."""
    folder = tmp_path_factory.mktemp("app")
    tmp = folder / "tmp"
    tmp.mkdir()
    port = _free_port()
    log = folder / "app.log"
    cmd = [
        sys.executable,
        str(ROOT / "app.py"),
        "--port",
        str(port),
        "--device",
        "cpu",
        "--max-duration",
        str(MAX_DURATION_S),
        "--max-upload-mb",
        str(MAX_UPLOAD_MB),
        *model_args(),
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            capped(APP_MEMORY_CAP, cmd),
            cwd=ROOT,
            env=child_env(TMPDIR=str(tmp), GRADIO_TEMP_DIR=str(tmp / "gradio")),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    started = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() - started > STARTUP_TIMEOUT_S:
                pytest.fail(
                    f"app.py did not serve {url} in {STARTUP_TIMEOUT_S} s:\n{log.read_text()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.25)
        yield RunningApp(url, proc, log, tmp)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app.url, verbose=False)


# ------------------------------------------------------------------------------ checks


def assert_cli_refused(run: CliRun, says: tuple[str, ...]) -> str:
    """The CLI refused in one clear line naming one of ``says``; returns that line."""
    line = run.last_line
    assert run.code != 0, f"accepted (exit 0); stdout: {run.out[-500:]}"
    assert "Traceback" not in run.err, run.err[-3000:]
    assert any(s.lower() in line.lower() for s in says), f"{line!r} names none of {says}"
    assert "/tmp/" not in line, line
    assert "upload" not in line.lower(), f"a command line has nothing to upload: {line!r}"
    assert "expression 0" not in line, f"people count from 1: {line!r}"
    return line


def assert_api_message(message: str, says: tuple[str, ...], app: RunningApp) -> None:
    """An AppError's message: one specific line for a visitor."""
    assert message.strip(), "an empty error message"
    assert "\n" not in message.strip(), message
    assert any(s.lower() in message.lower() for s in says), f"{message!r} names none of {says}"
    assert str(app.tmp) not in message and "/tmp/" not in message, f"a server path: {message!r}"
    for words in NOT_FOR_VISITORS:
        assert words not in message, f"{words!r} told to a visitor: {message!r}"


def api_error(client, **kwargs) -> str:
    """The message of the AppError that ``/segment`` (or ``api_name``) raises."""
    from gradio_client.exceptions import AppError

    kwargs.setdefault("api_name", "/segment")
    with pytest.raises(AppError) as err:
        client.predict(**kwargs)
    return str(err.value)


def assert_still_serves(client) -> None:
    """A valid request still gets a full answer."""
    from gradio_client import handle_file

    overlay, *_ = client.predict(
        video=handle_file(str(VALID_VIDEO)),
        expressions=VALID_TEXT,
        max_frames=4,
        api_name="/segment",
    )
    assert badmedia.count_frames(overlay) == 4


def segment(client, video: Path, text: str, **kwargs):
    from gradio_client import handle_file

    return client.predict(
        video=handle_file(str(video)), expressions=text, api_name="/segment", **kwargs
    )


# ----------------------------------------------------------------- files that are refused


@pytest.mark.parametrize("case", REFUSED_FILES, ids=lambda c: c.name)
def test_cli_refuses_what_is_not_a_video(case: Refused, media: Path):
    make(media, case.name)
    run = predict(case.name, VALID_TEXT, cwd=media, out=f"out-{case.name}")
    assert_cli_refused(run, case.says)
    assert not (media / f"out-{case.name}" / "overlay.mp4").exists()


@pytest.mark.parametrize("case", REFUSED_FILES, ids=lambda c: c.name)
def test_api_refuses_what_is_not_a_video(case: Refused, media: Path, client, app):
    from gradio_client import handle_file

    path = make(media, case.name)
    message = api_error(client, video=handle_file(str(path)), expressions=VALID_TEXT)
    assert_api_message(message, case.says, app)
    assert_still_serves(client)


def test_cli_says_a_missing_path_does_not_exist(tmp_path):
    run = predict("no_such_video.mp4", VALID_TEXT, cwd=tmp_path)
    line = assert_cli_refused(run, ("does not exist", "not found", "no such file"))
    assert "no_such_video.mp4" in line


def test_cli_says_a_folder_is_not_a_video_file(tmp_path):
    (tmp_path / "clips").mkdir()
    run = predict("clips", VALID_TEXT, cwd=tmp_path)
    assert_cli_refused(run, ("directory", "folder", "not a file"))


def test_cli_says_an_out_that_is_a_file_is_a_file(tmp_path):
    (tmp_path / "results").write_text("keep me")
    run = predict(VALID_VIDEO, VALID_TEXT, cwd=tmp_path, out="results")
    line = assert_cli_refused(run, ("is a file", "not a folder", "not a directory"))
    assert "Errno" not in line, line
    assert (tmp_path / "results").read_text() == "keep me"


# -------------------------------------------------------------- odd videos that are accepted


@pytest.mark.parametrize(("name", "frames"), ACCEPTED_FILES)
def test_cli_accepts_odd_videos(name: str, frames: int | None, media: Path):
    source = make(media, name)
    frames = badmedia.count_frames(source) if frames is None else frames
    run = predict(name, VALID_TEXT, cwd=media, out=f"ok-{name}")
    assert run.code == 0, run.err[-3000:]
    assert badmedia.count_frames(media / f"ok-{name}" / "overlay.mp4") == frames


@pytest.mark.parametrize(("name", "frames"), ACCEPTED_FILES)
def test_api_accepts_odd_videos(name: str, frames: int | None, media: Path, client):
    source = make(media, name)
    frames = badmedia.count_frames(source) if frames is None else frames
    overlay, masks_zip, result_json, summary = segment(client, source, VALID_TEXT)
    assert badmedia.count_frames(overlay) == frames
    with zipfile.ZipFile(masks_zip) as z:
        assert len([n for n in z.namelist() if n.endswith(".png")]) == frames
    assert len(json.loads(Path(result_json).read_text())["expressions"][0]["frames"]) == frames


def test_api_result_json_names_no_server_path(media: Path, client, app):
    """What a visitor downloads does not tell where the server keeps their upload."""
    _, _, result_json, summary = segment(client, make(media, "two_frames.mp4"), VALID_TEXT)
    for text in (Path(result_json).read_text(), summary):
        assert str(app.tmp) not in text and "/tmp/" not in text, f"a server path: {text[:300]}"


def test_variable_frame_rate_keeps_its_timing_cli(media: Path):
    """15 fps then 30 fps, 2.0 s: the overlay lasts as long, within one frame (1/15 s)."""
    name = "vfr_15_then_30.mp4"
    source = make(media, name)
    run = predict(name, VALID_TEXT, cwd=media, out="ok-vfr")
    assert run.code == 0, run.err[-3000:]
    want = badmedia.duration_s(source)
    got = badmedia.duration_s(media / "ok-vfr" / "overlay.mp4")
    assert abs(got - want) <= 1 / 15 + 1e-3, f"overlay {got} s, source {want} s"


def test_variable_frame_rate_keeps_its_timing_api(media: Path, client):
    source = make(media, "vfr_15_then_30.mp4")
    overlay, *_ = segment(client, source, VALID_TEXT)
    want, got = badmedia.duration_s(source), badmedia.duration_s(overlay)
    assert abs(got - want) <= 1 / 15 + 1e-3, f"overlay {got} s, source {want} s"


# --------------------------------------------------------------------------- expressions


@pytest.mark.parametrize("texts", [(), ("   ",), ("\t \t",)], ids=["none", "spaces", "tabs"])
def test_cli_refuses_no_expression(texts, tmp_path):
    run = predict(VALID_VIDEO, *texts, cwd=tmp_path)
    assert_cli_refused(run, ("no expression", "empty"))


@pytest.mark.parametrize("text", ["", "   \n \t \n"], ids=["empty", "whitespace"])
def test_api_refuses_no_expression(text, client, app):
    from gradio_client import handle_file

    message = api_error(client, video=handle_file(str(VALID_VIDEO)), expressions=text)
    assert_api_message(message, ("no expression",), app)


def test_api_refuses_more_than_four_expressions(client, app):
    from gradio_client import handle_file

    message = api_error(
        client, video=handle_file(str(VALID_VIDEO)), expressions="\n".join([VALID_TEXT] * 5)
    )
    assert_api_message(message, ("at most 4",), app)
    assert_still_serves(client)


def test_cli_refuses_an_overlong_expression(tmp_path):
    run = predict(VALID_VIDEO, TOO_LONG_TEXT, cwd=tmp_path)
    line = assert_cli_refused(run, ("too long", "longer than", "shorten"))
    assert len(line) < 300, "the message quotes the whole expression"


def test_api_refuses_an_overlong_expression(client, app):
    from gradio_client import handle_file

    message = api_error(client, video=handle_file(str(VALID_VIDEO)), expressions=TOO_LONG_TEXT)
    assert_api_message(message, ("too long", "longer than", "shorten"), app)
    assert len(message) < 300, "the message quotes the whole expression"
    assert_still_serves(client)


def _rendered(markdown_text: str) -> tuple[str, str]:
    """(HTML, visible text) of Markdown as a CommonMark renderer that allows raw HTML (as
    Gradio's Markdown does before sanitising) draws it."""
    import html

    from markdown_it import MarkdownIt

    page = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown_text)
    return page, html.unescape(re.sub(r"<[^>]+>", "", page))


def _component_type(client, label: str) -> str:
    for c in client.config["components"]:
        if c.get("props", {}).get("label") == label:
            return c["type"]
    raise AssertionError(f"no component labelled {label!r}")


def assert_shown_as_text(client, shown: str, label: str, texts: list[str]) -> None:
    """``shown`` (the value of the output labelled ``label``) shows each of ``texts`` as
    literal text: no markup from them (an image, an iframe) once the component draws it."""
    kind = _component_type(client, label)
    if kind in ("markdown", "html", "dataframe"):
        page, visible = _rendered(shown)
        assert "<img" not in page and "<iframe" not in page, page
        for t in texts:
            assert t in visible, f"{t!r} is not shown as text in {visible!r}"
    else:
        for t in texts:
            assert t in shown


def test_markup_in_expressions_is_text_cli(tmp_path):
    run = predict(VALID_VIDEO, *HTML_TEXTS, cwd=tmp_path, extra=("--max-frames", "4"))
    assert run.code == 0, run.err[-3000:]
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert [e["text"] for e in doc["expressions"]] == HTML_TEXTS


def test_markup_in_expressions_is_text_api(client):
    overlay, _, result_json, summary = segment(
        client, VALID_VIDEO, "\n".join(HTML_TEXTS), max_frames=4
    )
    doc = json.loads(Path(result_json).read_text())
    assert [e["text"] for e in doc["expressions"]] == HTML_TEXTS
    assert_shown_as_text(client, summary, "Summary", HTML_TEXTS)


def test_markup_in_expressions_is_text_in_compare(client):
    from gradio_client import handle_file

    *_, summary = client.predict(
        video=handle_file(str(VALID_VIDEO)),
        expressions="\n".join(HTML_TEXTS),
        model_a="builtin",
        model_b="builtin",
        max_frames=4,
        api_name="/compare",
    )
    page, visible = _rendered(summary)
    assert "<img" not in page and "<iframe" not in page, page
    for t in HTML_TEXTS:
        assert t in visible, f"{t!r} is not shown as text in {visible!r}"


def test_chinese_and_emoji_expressions_are_accepted_cli(tmp_path):
    run = predict(VALID_VIDEO, *UNICODE_TEXTS, cwd=tmp_path, extra=("--max-frames", "4"))
    assert run.code == 0, run.err[-3000:]
    doc = json.loads((tmp_path / "out" / "result.json").read_text(encoding="utf-8"))
    assert [e["text"] for e in doc["expressions"]] == UNICODE_TEXTS


def test_chinese_and_emoji_expressions_are_accepted_api(client):
    _, _, result_json, summary = segment(
        client, VALID_VIDEO, "\n".join(UNICODE_TEXTS), max_frames=4
    )
    doc = json.loads(Path(result_json).read_text(encoding="utf-8"))
    assert [e["text"] for e in doc["expressions"]] == UNICODE_TEXTS
    assert_shown_as_text(client, summary, "Summary", UNICODE_TEXTS)


# -------------------------------------------------------------------------------- limits


def test_length_limit_applies_to_the_frames_processed(media: Path, client, app):
    """8 s at 8 fps against a 6-s limit: the limit is on the work, not the file. The clip is
    processed up to the limit (6 s of frames), the summary says so and what the visitor can
    change in the page, with no operator advice; fewer frames or a lower processing rate run
    the requested work."""
    long_clip = badmedia.long_clip(media / "eight_seconds.mp4", 8)

    overlay, *rest = segment(client, long_clip, VALID_TEXT)
    assert badmedia.count_frames(overlay) == MAX_DURATION_S * 8
    summary = next(r for r in rest if isinstance(r, str) and "processed" in r)
    line = next(x for x in summary.splitlines() if "processed" in x)
    assert_api_message(line, (f"first {MAX_DURATION_S * 8} of 64 frames",), app)
    assert re.search(r"fps|frame rate", line, re.I), f"does not say what to change: {line!r}"
    overlay, *_ = segment(client, long_clip, VALID_TEXT, max_frames=16)
    assert badmedia.count_frames(overlay) == 16
    overlay, *_ = segment(client, long_clip, VALID_TEXT, fps=2)
    assert badmedia.count_frames(overlay) == 16


def _names_the_upload_limit(message: str) -> bool:
    """Whether ``message`` states the upload limit, in MB or in bytes."""
    return bool(
        re.search(rf"\b{MAX_UPLOAD_MB}\s*MB\b", message, re.I)
        or str(MAX_UPLOAD_MB * 2**20) in message
        or str(MAX_UPLOAD_MB * 10**6) in message
    )


def test_upload_over_the_limit_is_refused_naming_the_limit(media: Path, client, app):
    """A 2-MB file against a 1-MB limit: gradio_client refuses before sending it, and the
    server refuses it too when a client sends it anyway (HTTP 413); both name the limit."""
    import httpx
    from gradio_client import handle_file

    big = badmedia.big_file(media / "two_mb.mp4", 2 * MAX_UPLOAD_MB)
    with pytest.raises(ValueError) as err:  # gradio_client's own check
        client.predict(video=handle_file(str(big)), expressions=VALID_TEXT, api_name="/segment")
    assert _names_the_upload_limit(str(err.value)), str(err.value)

    with open(big, "rb") as f:
        response = httpx.post(client.upload_url, files=[("files", (big.name, f))], timeout=60)
    assert response.status_code == 413, (response.status_code, response.text[:500])
    message = response.text
    assert _names_the_upload_limit(message), message
    assert "\n" not in message.strip() and "Traceback" not in message, message
    assert str(app.tmp) not in message and "/tmp/" not in message, message
    assert "--max-upload" not in message, message
    assert_still_serves(client)


# ------------------------------------------------------------------ many and vanishing clients


def test_five_concurrent_requests_all_finish_or_hear_busy(app):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    outcomes: list[object] = [None] * 5

    def visit(i: int) -> None:
        try:
            c = Client(app.url, verbose=False)
            overlay, *_ = c.predict(
                video=handle_file(str(VALID_VIDEO)),
                expressions=VALID_TEXT,
                max_frames=8,
                api_name="/segment",
            )
            outcomes[i] = badmedia.count_frames(overlay)
        except AppError as err:
            outcomes[i] = err
        except Exception as err:
            outcomes[i] = err

    threads = [threading.Thread(target=visit, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a request never ended"
    for outcome in outcomes:
        if isinstance(outcome, int):
            assert outcome == 8
        else:
            assert isinstance(outcome, AppError), repr(outcome)
            assert re.search(r"busy|queue|try again", str(outcome), re.I), str(outcome)
    assert any(isinstance(o, int) for o in outcomes), outcomes
    assert_still_serves(Client(app.url, verbose=False))


def test_a_client_that_leaves_mid_run_leaves_nothing_behind(media: Path, app):
    """A run cancelled by its client mid-way: the app removes what the run had written (any
    new folder under its temp folder outside Gradio's own cache) and serves the next visitor."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    # 6 s at 30 fps (the app's limit here): 180 frames in windows of 8, several seconds of
    # work, so the client leaves while the run is still going
    long_run = badmedia.clip(media / "busy.mp4", w=320, h=240, frames=180, fps=30)
    before = app.work_folders()
    leaver = Client(app.url, verbose=False)
    job = leaver.submit(
        video=handle_file(str(long_run)),
        expressions=VALID_TEXT,
        window=8,
        api_name="/segment",
    )
    running = (Status.PROCESSING, Status.PROGRESS, Status.ITERATING)
    deadline = time.monotonic() + 60
    while job.status().code not in running and not job.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # under way: the model runs and the outputs are being written
    assert not job.done(), "the run ended before the client could leave; use a longer clip"
    # a run that finished first keeps its outputs (they are its session's): this must cancel
    assert job.cancel(), "the run ended before the client could leave; use a longer clip"
    leaver.close()
    deadline = time.monotonic() + 30
    while (app.work_folders() - before) and time.monotonic() < deadline:
        time.sleep(0.25)
    left = app.work_folders() - before
    assert not left, f"the cancelled run left {sorted(str(p) for p in left)}"
    assert app.process.poll() is None
    assert_still_serves(Client(app.url, verbose=False))


# ------------------------------------------------------- extreme shapes (last: may be slow)

EXTREME = ["wide_4000x2.mp4", "tall_2x4000.mp4"]
EXTREME_SAYS = ("aspect", "too narrow", "too thin", "too wide", "too tall", "too small", "4000")


@pytest.mark.parametrize("name", EXTREME)
def test_cli_handles_extreme_shapes(name: str, media: Path):
    """4000×2 or 2×4000: processed (bounded memory) or refused in one line naming the
    problem; never a crash."""
    source = make(media, name)
    run = predict(name, VALID_TEXT, cwd=media, out=f"ok-{name}")
    if run.code == 0:
        overlay = media / f"ok-{name}" / "overlay.mp4"
        assert badmedia.count_frames(overlay) == badmedia.count_frames(source)
    else:
        assert_cli_refused(run, EXTREME_SAYS)


@pytest.mark.parametrize("name", EXTREME)
def test_api_handles_extreme_shapes(name: str, media: Path, client, app):
    from gradio_client.exceptions import AppError

    source = make(media, name)
    try:
        overlay, *_ = segment(client, source, VALID_TEXT)
    except AppError as err:
        assert_api_message(str(err), EXTREME_SAYS, app)
    else:
        assert badmedia.count_frames(overlay) == badmedia.count_frames(source)
    assert_still_serves(client)
