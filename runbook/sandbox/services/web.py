"""The web front page, standing in for LegacyVideo's Vercel deployment: ``GET /`` (and
``HEAD /``) answer the static page titled "LegacyVideo"; every other path is 404.

``python -m runbook.sandbox.services.web`` serves on ``HOST``/``PORT``. It also plays the
page's visitors (``Visitors``): while someone has LegacyVideo open, their browser asks the
API who is signed in, so the sandbox's API has users' traffic of its own, which the runbook's
alerts on error rate and response time measure (its own requests are labelled apart)."""

from __future__ import annotations

import http.client
import logging
import os
import threading
import time
from collections.abc import Mapping
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


#: One visitor's page load every this many seconds (``VISITOR_INTERVAL_S``; 0: none).
VISITOR_INTERVAL_S = 2.0
VISITOR_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) LegacyVideo-sandbox-visitor/1.0"


class Visitors:
    """The front page's visitors, one every ``interval_s``: each one's browser asks the API
    ``GET /api/auth/me`` (anonymous: 401, so nobody is signed in) as the page does on load.
    That request opens a database connection in the API, so a lost database shows in the
    visitors' error rate as it would for real users. Failures are the API's to count; the
    visitors only log how many of theirs went unanswered, once a minute at most."""

    def __init__(self, api_url: str, interval_s: float = VISITOR_INTERVAL_S) -> None:
        parts = urlsplit(api_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.interval_s = interval_s
        self.stopped = threading.Event()
        self.visits = 0
        self.unanswered = 0

    def visit(self) -> int | None:
        """One page load's API call; its status, or ``None`` when the API did not answer."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            conn.request("GET", "/api/auth/me", headers={
                "User-Agent": VISITOR_USER_AGENT, "Accept": "application/json"})
            response = conn.getresponse()
            response.read(65536)
            return response.status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def run(self) -> None:
        last_note = time.monotonic()
        while not self.stopped.wait(self.interval_s):
            self.visits += 1
            if self.visit() is None:
                self.unanswered += 1
            if self.unanswered and time.monotonic() - last_note >= 60:
                log.warning("visitors: %d of %d page loads got no answer from the API",
                            self.unanswered, self.visits)
                last_note, self.visits, self.unanswered = time.monotonic(), 0, 0

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="visitors", daemon=True)
        thread.start()
        return thread


def start_visitors(env: Mapping[str, str]) -> Visitors | None:
    """Start the visitors when ``API_URL`` is set and ``VISITOR_INTERVAL_S`` is not 0."""
    api_url = env.get("API_URL", "").strip()
    try:
        interval = float(env.get("VISITOR_INTERVAL_S", "") or VISITOR_INTERVAL_S)
    except ValueError:
        interval = VISITOR_INTERVAL_S
    if not api_url or interval <= 0:
        return None
    visitors = Visitors(api_url, interval)
    visitors.start()
    log.info("visitors: one page load every %gs calls the API", interval)
    return visitors


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
    server = create_server(host, port)
    start_visitors(os.environ)
    serve_until_signalled(server, log, "web front page")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
