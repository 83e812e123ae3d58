"""Fetch an official ReferFormer checkpoint into the rvos cache (mirrors first, resumable,
verified, one transfer per file however many ask for it).

Files go to `cache_dir()`: ``--cache-dir``, else ``$RVOS_CACHE``, else
``$XDG_CACHE_HOME/rvos``, else ``~/.cache/rvos``. A download streams into ``<file>.part``;
running the command again after an interruption resumes it with an HTTP ``Range`` request
(a server that ignores ``Range`` makes it start over). When the registry knows the file's size
or sha256 the finished file is checked; a file that fails the check is corrupt beyond repair by
resuming, so its ``.part`` is deleted and the error says so. Only a verified file is renamed to
its final name (atomically), so a file under the final name is always complete.

Sources, in order: each mirror of ``$RVOS_MIRROR`` (``URL/<the registry's file name>``; several
URLs may be given, separated by commas or spaces), then the registry's own links. A source that
does not serve the file (HTTP error, unreachable host, a web page instead of the bytes, a corrupt
file) hands over to the next one; a transfer cut in the middle does not (the same source resumes
it next time, so bytes from two servers are never spliced without a reason to).

Google Drive answers large files with a "can't scan for viruses" page first; the form (or
confirm token) on that page is followed. Its other pages, "too many users have viewed or
downloaded this file recently" (the download quota) and "you need access", are recognised and
reported in one line with the link and the path to save a hand-made download under.

One transfer per file: a lock file beside the destination (``<file>.lock``, ``flock``) makes a
second thread or process that asks for the same file wait for the first one's transfer, reporting
its progress, instead of starting another. ``$RVOS_OFFLINE=1`` (or ``offline=True``) forbids
any transfer.

Only the standard library is used (``urllib``): the one thing it lacks, a retrying session, is not
worth a dependency here, and ``requests`` is not among rvos's requirements.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from html.parser import HTMLParser
from http.client import HTTPException, HTTPResponse, IncompleteRead
from http.cookiejar import CookieJar
from pathlib import Path
from typing import BinaryIO

from rvos.errors import RvosError
from rvos.paths import cache_dir

__all__ = [
    "MIRROR_ENV",
    "OFFLINE_ENV",
    "DownloadError",
    "IntegrityError",
    "OfflineError",
    "OfflineModeError",
    "STALL_ENV",
    "ProgressCallback",
    "TransferInterrupted",
    "cache_dir",
    "direct_url",
    "download",
    "download_file",
    "fetch",
    "mirror_urls",
    "offline_mode",
    "sha256_of",
    "stall_timeout",
]


try:  # POSIX: a lock that also holds between processes (an app and a CLI sharing a cache)
    import fcntl
except ImportError:  # Windows: threads of one process still share a transfer
    fcntl = None  # type: ignore[assignment]


MIRROR_ENV = "RVOS_MIRROR"


OFFLINE_ENV = "RVOS_OFFLINE"


# on_progress(bytes_done, total_bytes_or_None), called at most 5 times a second and at the end.
ProgressCallback = Callable[[int, "int | None"], None]


STALL_ENV = "RVOS_DOWNLOAD_STALL_S"


DEFAULT_TIMEOUT = 15.0  # seconds without any byte before giving up on a source


_CHUNK = 1 << 20


_USER_AGENT = "rvos-download/0.1 (python urllib)"


_MAX_HTML = 2 << 20  # a confirmation page is small; a larger web page is not one


class DownloadError(RvosError, RuntimeError):
    """A download that could not complete; the message says what to do.

    ``reason`` is the message's first part, what went wrong, without the instructions (the
    error of several failed sources is built from their reasons). It names no local path and
    gives no advice to whoever runs the machine, so an app may show it to a visitor and log the
    whole message (``str(err)``, with the path to save a hand-made download under)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class OfflineError(DownloadError):
    """The server could not be reached (no network, DNS failure, refused, timed out)."""


class TransferInterrupted(OfflineError):
    """The connection broke in the middle of the file; the ``.part`` is kept for resuming."""


class IntegrityError(DownloadError):
    """The downloaded bytes do not match the known size or sha256."""


class OfflineModeError(DownloadError):
    """A transfer was needed but offline mode (``$RVOS_OFFLINE`` / ``offline=True``) forbids it."""


def stall_timeout(timeout: float | None = None) -> float:
    """Seconds a source may send nothing before it counts as dead: `timeout` when given, else
    ``$RVOS_DOWNLOAD_STALL_S``, else 15. It bounds the wait for the server's answer and every
    gap in the middle of a file alike (a socket timeout applies to each read)."""
    if timeout is not None:
        return float(timeout)
    try:
        value = float(os.environ.get(STALL_ENV, "") or DEFAULT_TIMEOUT)
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


def offline_mode(offline: bool | None = None) -> bool:
    """``offline`` when given, else whether ``$RVOS_OFFLINE`` is set to a true value (anything
    but empty, ``0``, ``false``, ``no``, ``off``)."""
    if offline is not None:
        return bool(offline)
    value = os.environ.get(OFFLINE_ENV, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def mirror_urls(filename: str, mirror: str | None = None) -> list[str]:
    """``<mirror>/<filename>`` for each mirror in `mirror` (default ``$RVOS_MIRROR``; several
    separated by commas or white space), in order."""
    spec = os.environ.get(MIRROR_ENV, "") if mirror is None else mirror
    bases = [b for b in re.split(r"[\s,]+", spec) if b]
    return [f"{b.rstrip('/')}/{urllib.parse.quote(filename)}" for b in bases]


_cache_root = cache_dir  # for functions whose `cache_dir` parameter hides the function


def direct_url(url: str) -> str:
    """Turn a Google Drive sharing link (``/file/d/ID/view``, ``open?id=ID``) into the
    ``uc?export=download&id=ID`` form that serves the bytes; other URLs are returned as they are.
    """
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("drive.google.com", "docs.google.com"):
        return url
    match = re.match(r"/file/d/([\w-]+)", parsed.path)
    file_id = match.group(1) if match else urllib.parse.parse_qs(parsed.query).get("id", [None])[0]
    if not file_id:
        return url
    return f"https://drive.google.com/uc?export=download&id={file_id}"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def progress_text(done: int, total: int | None) -> str:
    """``"45.2 MiB / 108.3 MiB (42%)"``, or ``"45.2 MiB"`` when the total is unknown."""
    if total:
        return f"{_mib(done)} / {_mib(total)} ({100 * done / total:.0f}%)"
    return _mib(done)


class _Progress:
    """Progress of one transfer, reported three ways: on a terminal one self-overwriting line
    (redrawn at most 5 times a second); in a log (a Space's, a container's) a plain line at each
    tenth of the file, or every 30 s when its size is unknown, since carriage returns would pile
    up into one endless line there; and ``on_progress(done, total)`` at most 5 times a second, for
    a caller that shows it elsewhere (the app's page)."""

    def __init__(
        self,
        label: str,
        total: int | None,
        done: int,
        enabled: bool,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.label, self.total, self.done, self.enabled = label, total, done, enabled
        self.on_progress = on_progress
        self.tty = enabled and sys.stderr.isatty()
        self.start_done, self.t0, self.last = done, time.monotonic(), 0.0
        self.logged_step, self.logged_at = self._step(), self.t0

    def _step(self) -> int:
        return int(10 * self.done / self.total) if self.total else 0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)
        if self.tty:
            self._draw(now, "\r", "   ")
        elif self.enabled and (
            self._step() > self.logged_step or (not self.total and now - self.logged_at >= 30)
        ):
            self.logged_step, self.logged_at = self._step(), now
            self._draw(now, "", "\n")

    def _draw(self, now: float, start: str, end: str) -> None:
        rate = (self.done - self.start_done) / max(now - self.t0, 1e-6)
        text = progress_text(self.done, self.total)
        sys.stderr.write(f"{start}{self.label}: {text}, {_mib(rate)}/s{end}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)
        if self.enabled:
            self._draw(time.monotonic(), "\r" if self.tty else "", "\n")


class _RangeNotSatisfiable(Exception):
    """HTTP 416: the .part is already as long as (or longer than) the file."""


class _ConfirmPageParser(HTMLParser):
    """Collect the forms of a page (action + hidden inputs) and every link."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: list[str] = []
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
            self._in_form = True
        elif tag == "input" and self._in_form and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def _confirm_url(page: bytes, page_url: str, jar: CookieJar) -> str | None:
    """The URL that a download-confirmation page (Google Drive's virus-scan warning) points to,
    or None if the page is not one."""
    parser = _ConfirmPageParser()
    parser.feed(page.decode("utf-8", "replace"))
    for action, fields in parser.forms:
        if "confirm" in fields:
            query = urllib.parse.urlencode(fields)
            return urllib.parse.urljoin(page_url, action) + "?" + query
    for href in parser.links:
        if "confirm=" in href and "download" in href:
            return urllib.parse.urljoin(page_url, href)
    for cookie in jar:  # the pre-2023 Drive scheme: a download_warning_* cookie holds the token
        if cookie.name.startswith("download_warning"):
            sep = "&" if "?" in page_url else "?"
            return f"{page_url}{sep}confirm={urllib.parse.quote(cookie.value or '')}"
    return None


def _reason(err: BaseException, timeout: float | None = None) -> str:
    reason = getattr(err, "reason", err)
    if isinstance(reason, socket.gaierror):
        return "DNS lookup failed; is this machine offline?"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return f"it sent no data for {timeout:g} s" if timeout else "timed out"
    return getattr(reason, "strerror", None) or str(reason)


def _manual(manual_url: str, dest: Path) -> str:
    return f"download {manual_url} by hand and save it as {dest}"


def _fail(cls: type[DownloadError], reason: str, manual_url: str, dest: Path) -> DownloadError:
    return cls(f"{reason}; " + _manual(manual_url, dest), reason)


# What Google Drive's pages say (2022-2025 wordings), and what each means for a download.
_DRIVE_QUOTA = re.compile(r"too many users have viewed|quota (?:has been )?exceeded", re.I)


_DRIVE_VIRUS = re.compile(
    r"can(?:'|&#39;|\u2019|&rsquo;)?t scan this file for viruses|"
    r"virus scan warning",
    re.I,
)


_DRIVE_ACCESS = re.compile(r"you need access|request access|you need permission", re.I)


def _page_reason(page: bytes, host: str) -> str:
    """Why a web page came instead of the file, in words (one line)."""
    text = page.decode("utf-8", "replace")
    if _DRIVE_QUOTA.search(text):
        return (
            f"{host} sent a web page instead of the file: Google Drive's download quota for "
            'it is used up ("too many users have viewed or downloaded this file recently"; '
            "it resets within about 24 hours); set RVOS_MIRROR=URL to a copy of it"
        )
    if _DRIVE_VIRUS.search(text):
        return (
            f"{host} sent a web page instead of the file: Google Drive's \"can't scan this "
            'file for viruses" confirmation, in a form rvos could not follow'
        )
    if _DRIVE_ACCESS.search(text):
        return (
            f"{host} sent a web page instead of the file: Google Drive asks to sign in or "
            "to request access (the file is not shared publicly, or no longer)"
        )
    return (
        f"{host} sent a web page instead of the file (Google Drive does this when a file's "
        "download quota is exhausted or it wants a browser)"
    )


def _open(url: str, offset: int, timeout: float, manual_url: str, dest: Path) -> HTTPResponse:
    """GET `url` from byte `offset`, following at most two download-confirmation pages."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    for attempt in range(3):
        headers = {"User-Agent": _USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(url, headers=headers)
        host = urllib.parse.urlparse(url).netloc or url
        try:
            response = opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as err:
            if err.code == 416 and offset:
                raise _RangeNotSatisfiable from err
            raise _fail(
                DownloadError,
                f"{host} answered HTTP {err.code} {err.reason} for {url}",
                manual_url,
                dest,
            ) from err
        except (urllib.error.URLError, OSError, HTTPException) as err:
            if isinstance(getattr(err, "reason", err), TimeoutError):
                why = f"{host} did not answer ({_reason(err, timeout)})"
            else:
                why = f"cannot reach {host} ({_reason(err, timeout)})"
            raise _fail(OfflineError, why, manual_url, dest) from err
        if response.headers.get_content_type() != "text/html":
            return response
        page = response.read(_MAX_HTML)
        response.close()
        next_url = _confirm_url(page, response.url, jar)
        if next_url is None or attempt == 2:
            raise _fail(DownloadError, _page_reason(page, host), manual_url, dest)
        url = next_url
    raise AssertionError("unreachable")


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", value or "")
    return int(match.group(1)) if match else None


def _stream(response: HTTPResponse, out: BinaryIO, progress: _Progress) -> int:
    received = 0
    # read1: whatever has arrived, so bytes received before a stall are kept in the .part
    while block := response.read1(_CHUNK):
        out.write(block)
        received += len(block)
        progress.update(len(block))
    return received


def _check(path: Path, size: int | None, sha256: str | None) -> str | None:
    """None when `path` matches the known size and digest, else what is wrong."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"it has {actual_size} bytes, expected {size}"
    if sha256 is not None:
        actual = sha256_of(path)
        if actual.lower() != sha256.lower():
            return f"its sha256 is {actual}, expected {sha256}"
    return None


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    size: int | None = None,
    sha256: str | None = None,
    manual_url: str | None = None,
    progress: bool = True,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """Fetch `url` to `dest` through ``dest + ".part"``, resuming a previous partial download.

    This is one transfer from one source, not shared: `fetch` adds the sources and the lock.

    Arguments:
        url: http(s) URL; Google Drive sharing links are converted with `direct_url`.
        dest: final path; its folder is created.
        size, sha256: what the finished file must be, when known.
        manual_url: the link to show in error messages (default: `url`).
        progress: report progress on stderr.
        timeout: seconds of silence before a connection counts as dead.
        on_progress: called with (bytes done, total bytes or None) as the transfer goes.

    Returns the final path. Raises `OfflineError` (unreachable: keeps the .part),
    `TransferInterrupted` (cut mid-file: keeps the .part), `IntegrityError` (wrong size/sha256:
    deletes the .part) or `DownloadError`.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    manual_url = manual_url or url
    timeout = stall_timeout(timeout)
    if dest.exists():
        problem = _check(dest, size, sha256)
        if problem is None:
            return dest
        raise IntegrityError(
            f"{dest} already exists but {problem}; delete it and run again",
            f"the copy of {dest.name} already on this machine is corrupt ({problem})",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fetch_url = direct_url(url)

    for _attempt in range(2):  # a second pass only after a .part had to be thrown away
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset > size:
            part.unlink()
            offset = 0
        try:
            response = _open(fetch_url, offset, timeout, manual_url, dest)
        except _RangeNotSatisfiable:
            # The .part is at least as long as the file. Either it is complete, or the server's
            # file changed under us; the check below decides.
            response = None
        if response is not None:
            with response:
                start = _content_range_start(response.headers.get("Content-Range"))
                if offset and response.status == 206 and start != offset:
                    part.unlink()  # the server resumed from elsewhere: trust nothing
                    continue
                if response.status != 206:
                    offset = 0  # the server ignored Range and sends the whole file
                length = response.headers.get("Content-Length")
                total = offset + int(length) if length is not None else size
                bar = _Progress(dest.name, total, offset, progress, on_progress)
                try:
                    with open(part, "ab" if offset else "wb") as out:
                        received = _stream(response, out, bar)
                except (OSError, IncompleteRead) as err:
                    bar.close()
                    reason = (
                        f"download interrupted after {_mib(part.stat().st_size)} "
                        f"({_reason(err, timeout)}); try again: it resumes where it stopped"
                    )
                    raise TransferInterrupted(
                        f"{reason}, or " + _manual(manual_url, dest), reason
                    ) from err
                bar.close()
            if length is not None and received < int(length):
                reason = (
                    f"the server closed the connection after {_mib(offset + received)} of "
                    f"{_mib(total or 0)}; try again: it resumes where it stopped"
                )
                raise TransferInterrupted(reason, reason)
        elif not part.exists():
            continue
        problem = _check(part, size, sha256)
        if problem is None:
            os.replace(part, dest)  # atomic: the final name only ever holds a verified file
            return dest
        part.unlink()  # a wrong byte anywhere cannot be repaired by resuming
        if response is None:
            continue  # the stale .part is gone; download afresh
        raise IntegrityError(
            f"the file downloaded from {manual_url} is corrupt: {problem}. The partial file was "
            f"deleted; run the command again, or " + _manual(manual_url, dest),
            f"the file from {urllib.parse.urlparse(url).netloc or url} is corrupt: {problem}",
        )
    raise _fail(DownloadError, f"could not download {manual_url}", manual_url, dest)


_THREAD_LOCKS: dict[Path, threading.Lock] = {}


_THREAD_LOCKS_GUARD = threading.Lock()


class _TransferLock:
    """Exclusive right to transfer `dest`, held by one thread of one process at a time.

    On POSIX it is an ``flock`` on ``<dest>.lock`` (two ``open`` calls are two independent locks,
    so this also separates threads of one process); elsewhere a lock per path in this process.
    While waiting, ``on_wait(bytes in the .part, total)`` reports the holder's progress: the
    holder publishes the total in the lock file once it knows it. The lock file stays behind:
    deleting it could let a third party lock a fresh file while a waiter holds the old one.
    """

    def __init__(
        self,
        dest: Path,
        on_wait: Callable[[int, int | None], None] | None = None,
        poll_s: float = 0.25,
    ) -> None:
        self.dest, self.on_wait, self.poll_s = dest, on_wait, poll_s
        self.path = dest.with_name(dest.name + ".lock")
        self.part = dest.with_name(dest.name + ".part")
        self.waited = False
        self._published: int | None = None
        self._fd: int | None = None
        self._thread_lock: threading.Lock | None = None

    def _try(self) -> bool:
        if fcntl is None:
            with _THREAD_LOCKS_GUARD:
                lock = _THREAD_LOCKS.setdefault(self.dest.resolve(), threading.Lock())
            if lock.acquire(blocking=False):
                self._thread_lock = lock
                return True
            return False
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def published_total(self) -> int | None:
        try:
            return int(json.loads(self.path.read_text() or "{}").get("total") or 0) or None
        except (OSError, ValueError, AttributeError):
            return None  # not written yet, or caught half-written

    def publish(self, total: int | None) -> None:
        if self._fd is not None and total and total != self._published:
            self._published = total  # once: a waiter reading mid-rewrite would see nothing
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps({"total": total, "pid": os.getpid()}).encode(), 0)

    def __enter__(self) -> _TransferLock:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while not self._try():
                self.waited = True
                if self.on_wait is not None:
                    done = self.part.stat().st_size if self.part.exists() else 0
                    self.on_wait(done, self.published_total())
                time.sleep(self.poll_s)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread_lock is not None:
            self._thread_lock.release()
            self._thread_lock = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def fetch(
    urls: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    size: int | None = None,
    sha256: str | None = None,
    manual_url: str | None = None,
    progress: bool = True,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """`dest`, fetched from the first of `urls` that serves it, unless it is already there.

    Shared: while another thread or process is fetching `dest`, this call waits for that
    transfer (reporting its progress to `on_progress`) instead of starting a second one, and
    returns the file it finished. A source that fails hands over to the next (see the module
    docstring); a transfer cut mid-file raises `TransferInterrupted` at once.

    Arguments are those of `download_file`; `manual_url` (default: the last URL, the registry's
    link when mirrors come first) is the link error messages tell a person to fetch by hand.
    """
    if not urls:
        raise ValueError("fetch needs at least one URL")
    dest = Path(dest)
    manual_url = manual_url or urls[-1]
    common = {"size": size, "sha256": sha256, "manual_url": manual_url, "timeout": timeout}
    if dest.exists():  # verified (or refused) without a lock: a final name is always complete
        return download_file(urls[0], dest, progress=False, **common)
    with _TransferLock(dest, on_progress) as lock:
        if dest.exists():  # the transfer this call waited for has finished it
            path = download_file(urls[0], dest, progress=False, **common)
            if on_progress is not None:
                on_progress(path.stat().st_size, path.stat().st_size)
            if progress:
                sys.stderr.write(f"{dest.name}: fetched by another download meanwhile\n")
            return path
        if lock.waited and progress:
            sys.stderr.write(f"{dest.name}: the other download stopped; this one takes over\n")

        def report(done: int, total: int | None) -> None:
            lock.publish(total)
            if on_progress is not None:
                on_progress(done, total)

        failures: list[tuple[str, DownloadError]] = []
        for url in urls:
            try:
                return download_file(url, dest, progress=progress, on_progress=report, **common)
            except TransferInterrupted:
                raise
            except DownloadError as err:
                failures.append((url, err))
    if len(failures) == 1:
        raise failures[0][1]
    reasons = "; ".join(f"{urllib.parse.urlparse(u).netloc or u}: {e.reason}" for u, e in failures)
    cls = OfflineError if all(isinstance(e, OfflineError) for _, e in failures) else DownloadError
    raise cls(
        f"no source served {dest.name} ({reasons}); " + _manual(manual_url, dest),
        f"no source served {dest.name} ({reasons})",
    )


def download(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    url: str | None = None,
    mirror: str | None = None,
    offline: bool | None = None,
    progress: bool = True,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """Fetch registered model `name` into the cache (unless it is there) and return its path.

    Sources: `url` alone when given; else the mirrors (`mirror`, default ``$RVOS_MIRROR``) and
    then the registry's links. Size and sha256 are checked when the registry knows them. The
    built-in model ships with the package and is returned as is. `offline` (default
    ``$RVOS_OFFLINE``) forbids a transfer: a missing file raises `OfflineModeError`.
    """
    # lazy: `rvos --help`, `models` and `download` start without torch
    from rvos.zoo.registry import BUILTIN_DIR, get_model_info

    info = get_model_info(name)
    if info.kind == "builtin":
        return BUILTIN_DIR
    if not info.filename:
        raise DownloadError(f"the registry has no file name for {name!r}")  # (no path: safe)
    dest = _cache_root(cache_dir) / info.filename
    sources = [url] if url else [*mirror_urls(info.filename, mirror), *info.urls]
    if not sources:
        raise DownloadError(f"the registry has no download link for {name!r}; pass --url URL")
    manual_url = url or info.url or sources[-1]
    if not dest.exists() and offline_mode(offline):
        reason = f"{name} is not on this machine and offline mode is on, so nothing is downloaded"
        raise OfflineModeError(
            f"{name} is not on this machine and offline mode is on "
            f"({OFFLINE_ENV}=1 or --offline) so nothing is downloaded; "
            + _manual(manual_url, dest),
            reason,
        )
    return fetch(
        sources,
        dest,
        size=info.size_bytes,
        sha256=info.sha256,
        manual_url=manual_url,
        progress=progress,
        timeout=timeout,
        on_progress=on_progress,
    )
