"""A real HTTP file server on 127.0.0.1 for the download tests (never the network).

`FileServer` serves bytes by path, honours ``Range`` (or not), can cut a transfer short, slow it
down, or answer with an HTML page (Google Drive's confirmation and quota pages), and logs every
request, so a test can assert what was fetched, from where and from which byte.
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# The wording of Google Drive's pages, as they are served (2024-2025).
DRIVE_CONFIRM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>
</head><body><div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive
can't scan this file for viruses.</p><p class="uc-warning-subcaption">{name} (108M) is too large
for Google to scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button" value="Download
anyway"/><input type="hidden" name="id" value="{id}"><input type="hidden" name="export"
value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid"
value="0b6f5e4c-1d2e-4f3a-9b8c-7d6e5f4a3b2c"></form></div></div></body></html>"""

DRIVE_QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title>
</head><body><div class="uc-main"><div id="uc-text"><p class="uc-error-caption">Sorry, you can't
view or download this file at this time.</p><p class="uc-error-subcaption">Too many users have
viewed or downloaded this file recently. Please try accessing the file again later. If the file
you are trying to access is particularly large or is shared with many people, it may take up to
24 hours to be able to view or download the file. If you still can't access a file after 24 hours,
contact your domain administrator.</p></div></div></body></html>"""


class FileServer:
    """Serve ``files`` (path -> bytes) and ``pages`` (path -> HTML) on 127.0.0.1.

    Attributes a test may change between requests:
        honour_range: answer ``Range`` with 206 (else send the whole file with 200).
        cut_after: send only this many body bytes of the next transfers, then hang up.
        rate: bytes per second of a transfer (None: as fast as possible).
        stall: ``"answer"``: accept the connection and send nothing at all; ``"body"``: send the
            headers and the first ``stall_after`` body bytes, then nothing. Either holds the
            connection open (sending nothing) for ``stall_s`` seconds or until `close`.
        log: one dict per request: ``path``, ``range`` (the header or None), ``sent`` (bytes).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.pages: dict[str, str] = {}
        self.honour_range = True
        self.cut_after: int | None = None
        self.rate: float | None = None
        self.stall: str | None = None
        self.stall_after = 0
        self.stall_s = 120.0
        self.released = threading.Event()  # set by close(): stalled handlers let go
        self.log: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                entry = {"path": self.path, "range": self.headers.get("Range"), "sent": 0}
                server.log.append(entry)
                if server.stall == "answer":
                    server.released.wait(server.stall_s)
                    return
                if path in server.pages:
                    body = server.pages[path].encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and server.honour_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body = body[: server.cut_after]
                if server.stall == "body":
                    self.wfile.write(body[: server.stall_after])
                    self.wfile.flush()
                    entry["sent"] = min(len(body), server.stall_after)
                    server.released.wait(server.stall_s)
                    return
                step = 1 << 18
                try:
                    for i in range(0, len(body), step):
                        self.wfile.write(body[i : i + step])
                        entry["sent"] += len(body[i : i + step])
                        if server.rate:
                            time.sleep(step / server.rate)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up; the log says how far it got

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def add_file(self, path: str, source: bytes | Path) -> None:
        self.files[path] = source if isinstance(source, bytes) else Path(source).read_bytes()

    def requests_for(self, path: str) -> list[dict]:
        """The logged requests of `path` (query strings ignored)."""
        return [e for e in self.log if e["path"].split("?")[0] == path]

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_as_hub(server: FileServer, monkeypatch, tmp_path: Path) -> None:
    """Point the Hugging Face client and rvos at ``server`` as the Hub: an empty Hub cache,
    online, and no text-encoder failure remembered from an earlier test."""
    from huggingface_hub import constants

    from rvos.zoo import hub as rvos_hub

    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("RVOS_OFFLINE", "0")
    monkeypatch.setattr(rvos_hub, "_failures", {})
