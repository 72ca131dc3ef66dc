"""A real HTTP receiver on loopback that records every request: a Slack webhook and a
Pushgateway stand-in for the alert and watch tests."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runbook.config import TARGET_VARIABLES

#: The environment without a target's variables or the runbook's webhook and Pushgateway
#: ones, so a test decides where everything goes.
CLEAN = {k: v for k, v in os.environ.items()
         if k not in (*TARGET_VARIABLES, "PLATFORM", "RUNBOOK_ENVIRONMENT", "RUNBOOK_HOME")
         and not k.startswith(("RUNBOOK_WEBHOOK_URL", "RUNBOOK_PUSHGATEWAY_URL"))}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    content_type: str
    body: bytes
    authorization: str = ""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class Receiver:
    """``ThreadingHTTPServer`` on 127.0.0.1 in a thread; ``status`` answers every request
    (200 by default). Use as a context manager."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(Request(
                        self.command, self.path, self.headers.get("Content-Type", ""), body,
                        self.headers.get("Authorization", "")))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = _record
            do_PUT = _record

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def seen(self, method: str, path_start: str = "") -> list[Request]:
        with self._lock:
            return [r for r in self.requests
                    if r.method == method and r.path.startswith(path_start)]
