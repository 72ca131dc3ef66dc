"""The web front page, standing in for LegacyVideo's Vercel deployment: ``GET /`` (and
``HEAD /``) answer the static page titled "LegacyVideo"; every other path is 404.

``python -m runbook.sandbox.services.web`` serves on ``HOST``/``PORT``."""

from __future__ import annotations

import logging
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runbook.sandbox.services.common import (
    ConfigError,
    listen_address,
    serve_until_signalled,
    setup_logging,
)

log = logging.getLogger("legacyvideo.web")

INDEX = Path(__file__).with_name("static") / "index.html"
_NOT_FOUND = b"<!doctype html><title>404: NOT_FOUND</title><h1>404: NOT_FOUND</h1>\n"


class WebServer(ThreadingHTTPServer):
    """Serves one page, read once at start."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], page: bytes) -> None:
        super().__init__(address, WebHandler)
        self.page = page


class WebHandler(BaseHTTPRequestHandler):
    """``/`` or 404, one log line per request."""

    server: WebServer
    protocol_version = "HTTP/1.1"
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's access log: ``_serve`` logs instead."""

    def _serve(self) -> None:
        started = time.perf_counter()
        path = urlsplit(self.path).path
        status, body = (200, self.server.page) if path == "/" else (404, _NOT_FOUND)
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "public, max-age=0, must-revalidate")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        log.info("request method=%s path=%s status=%d duration_ms=%.1f",
                 self.command, path, status, (time.perf_counter() - started) * 1000)

    do_GET = _serve
    do_HEAD = _serve


def create_server(host: str, port: int, index: Path = INDEX) -> WebServer:
    """A bound (not yet serving) front page server; port 0 picks a free port."""
    return WebServer((host, port), index.read_bytes())


def main() -> int:
    """Serve until SIGTERM/SIGINT. Exit 2 on a configuration error."""
    setup_logging("web")
    try:
        host, port = listen_address(os.environ, 3000)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    serve_until_signalled(create_server(host, port), log, "web front page")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
