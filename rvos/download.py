"""Download an official ReferFormer checkpoint into the rvos cache (resumable, verified).

Files go to `cache_dir()`: ``--cache-dir``, else ``$RVOS_CACHE``, else
``$XDG_CACHE_HOME/rvos``, else ``~/.cache/rvos``. A download streams into ``<file>.part``;
running the command again after an interruption resumes it with an HTTP ``Range`` request
(a server that ignores ``Range`` makes it start over). When the registry knows the file's size
or sha256 the finished file is checked; a file that fails the check is corrupt beyond repair by
resuming, so its ``.part`` is deleted and the error says so. Only a verified file is renamed to
its final name (atomically), so a file under the final name is always complete.

Google Drive answers large files with a "can't scan for viruses" page first; the form (or
confirm token) on that page is followed once, best effort. When the network is unreachable the
error says which URL to fetch by hand and the full path to save it under.

Only the standard library is used (``urllib``): the one thing it lacks, a retrying session, is not
worth a dependency here, and ``requests`` is not among rvos's requirements.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from http.client import HTTPException, HTTPResponse, IncompleteRead
from http.cookiejar import CookieJar
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "DownloadError",
    "IntegrityError",
    "OfflineError",
    "add_cli_arguments",
    "cache_dir",
    "direct_url",
    "download",
    "download_file",
    "run_cli",
    "sha256_of",
]

DEFAULT_TIMEOUT = 30.0  # seconds without any byte before giving up on a connection
_CHUNK = 1 << 20
_USER_AGENT = "rvos-download/0.1 (python urllib)"
_MAX_HTML = 2 << 20  # a confirmation page is small; a larger web page is not one


class DownloadError(RuntimeError):
    """A download that could not complete; the message says what to do."""


class OfflineError(DownloadError):
    """The server could not be reached (no network, DNS failure, refused, timed out)."""


class IntegrityError(DownloadError):
    """The downloaded bytes do not match the known size or sha256."""


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The download cache: `override`, ``$RVOS_CACHE``, ``$XDG_CACHE_HOME/rvos`` or
    ``~/.cache/rvos``, in that order. The folder is not created here."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("RVOS_CACHE"):
        return Path(os.environ["RVOS_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "rvos"
    return Path.home() / ".cache" / "rvos"


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


# ----------------------------------------------------------------------------- progress


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


class _Progress:
    """One self-overwriting line on stderr, redrawn at most 5 times a second."""

    def __init__(self, label: str, total: int | None, done: int, enabled: bool) -> None:
        self.label, self.total, self.done, self.enabled = label, total, done, enabled
        self.start_done, self.t0, self.last = done, time.monotonic(), 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self.last >= 0.2:
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = (self.done - self.start_done) / max(now - self.t0, 1e-6)
        if self.total:
            frac = f" ({100 * self.done / self.total:.0f}%)"
            text = f"{_mib(self.done)} / {_mib(self.total)}{frac}"
        else:
            text = _mib(self.done)
        sys.stderr.write(f"\r{self.label}: {text}, {_mib(rate)}/s   ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()


# ----------------------------------------------------------------------------- HTTP


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


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", err)
    if isinstance(reason, socket.gaierror):
        return "DNS lookup failed; is this machine offline?"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "timed out"
    return getattr(reason, "strerror", None) or str(reason)


def _manual(manual_url: str, dest: Path) -> str:
    return f"download {manual_url} by hand and save it as {dest}"


def _open(url: str, offset: int, timeout: float, manual_url: str, dest: Path) -> HTTPResponse:
    """GET `url` from byte `offset`, following at most two download-confirmation pages."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    for _ in range(3):
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
            raise DownloadError(
                f"{host} answered HTTP {err.code} {err.reason} for {url}; "
                + _manual(manual_url, dest)
            ) from err
        except (urllib.error.URLError, OSError, HTTPException) as err:
            raise OfflineError(
                f"cannot reach {host} ({_reason(err)}); " + _manual(manual_url, dest)
            ) from err
        if response.headers.get_content_type() != "text/html":
            return response
        page = response.read(_MAX_HTML)
        response.close()
        next_url = _confirm_url(page, response.url, jar)
        if next_url is None:
            break
        url = next_url
    raise DownloadError(
        f"{host} sent a web page instead of the file (Google Drive does this when a file's "
        "download quota is exhausted or it wants a browser); " + _manual(manual_url, dest)
    )


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", value or "")
    return int(match.group(1)) if match else None


def _stream(response: HTTPResponse, out: BinaryIO, progress: _Progress) -> int:
    received = 0
    while block := response.read(_CHUNK):
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
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Fetch `url` to `dest` through ``dest + ".part"``, resuming a previous partial download.

    Arguments:
        url: http(s) URL; Google Drive sharing links are converted with `direct_url`.
        dest: final path; its folder is created.
        size, sha256: what the finished file must be, when known.
        manual_url: the link to show in error messages (default: `url`).
        progress: draw a progress line on stderr.
        timeout: seconds of silence before a connection counts as dead.

    Returns the final path. Raises `OfflineError` (unreachable: keeps the .part),
    `IntegrityError` (wrong size/sha256: deletes the .part) or `DownloadError`.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    manual_url = manual_url or url
    if dest.exists():
        problem = _check(dest, size, sha256)
        if problem is None:
            return dest
        raise IntegrityError(f"{dest} already exists but {problem}; delete it and run again")
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
                bar = _Progress(dest.name, total, offset, progress)
                try:
                    with open(part, "ab" if offset else "wb") as out:
                        received = _stream(response, out, bar)
                except (OSError, IncompleteRead) as err:
                    bar.close()
                    raise OfflineError(
                        f"download interrupted after {_mib(part.stat().st_size)} "
                        f"({_reason(err)}); run the same command again to resume, or "
                        + _manual(manual_url, dest)
                    ) from err
                bar.close()
            if length is not None and received < int(length):
                raise OfflineError(
                    f"the server closed the connection after {_mib(offset + received)} of "
                    f"{_mib(total or 0)}; run the same command again to resume"
                )
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
            f"deleted; run the command again, or " + _manual(manual_url, dest)
        )
    raise DownloadError(f"could not download {manual_url}; " + _manual(manual_url, dest))


def download(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    url: str | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Fetch registered model `name` into the cache and return its path.

    `url` replaces the registry's link (a mirror); size and sha256 are still checked when the
    registry knows them. The built-in model ships with the package and is returned as is.
    """
    from rvos.registry import BUILTIN_DIR, get_model_info

    info = get_model_info(name)
    if info.kind == "builtin":
        return BUILTIN_DIR
    source = url or info.url
    if not source or not info.filename:
        raise DownloadError(f"the registry has no download link for {name!r}; pass --url URL")
    dest = _cache_root(cache_dir) / info.filename
    return download_file(
        source,
        dest,
        size=info.size_bytes,
        sha256=info.sha256,
        manual_url=source,
        progress=progress,
        timeout=timeout,
    )


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m rvos download``."""
    parser.add_argument("name", help="model name (see `python -m rvos models`)")
    parser.add_argument(
        "--cache-dir", default=None, help="where to put it (default: $RVOS_CACHE or ~/.cache/rvos)"
    )
    parser.add_argument("--url", default=None, help="download from this URL instead (a mirror)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds before a stalled connection is abandoned",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def run_cli(args: argparse.Namespace) -> int:
    """Download one model; print its path on stdout, or one error line on stderr."""
    from rvos.registry import UnknownModelError, get_model_info

    try:
        info = get_model_info(args.name)
        path = download(
            args.name,
            cache_dir=args.cache_dir,
            url=args.url,
            progress=not args.quiet,
            timeout=args.timeout,
        )
    except (UnknownModelError, DownloadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, UnknownModelError) else 1
    if info.kind == "builtin":
        print(f"the built-in model ships with rvos; nothing to download ({path})", file=sys.stderr)
    print(path)
    return 0
