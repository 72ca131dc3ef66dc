"""A Resend-compatible stand-in: ``POST /emails``, ``GET /emails``, ``GET /emails/{id}``,
``GET /domains`` (all with ``Authorization: Bearer RESEND_API_KEY``) and an
unauthenticated ``GET /health``.

Errors take Resend's shape ``{"statusCode","message","name"}``: 401 ``missing_api_key``
without a key, 401 ``validation_error`` ("API key is invalid") with a wrong one, 403
``validation_error`` when the sender's domain is not in ``MAIL_VERIFIED_DOMAINS``, 422
``missing_required_field``. Accepted mail is kept in memory and, when ``MAIL_STORE`` names
a file, appended to it as JSON lines (and read back at start).

``python -m runbook.sandbox.services.mail`` serves on ``HOST``/``PORT``."""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from email.utils import parseaddr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from runbook.sandbox.services.common import (
    ConfigError,
    listen_address,
    one_line_error,
    serve_until_signalled,
    setup_logging,
    utc_now_iso,
)

log = logging.getLogger("legacyvideo.mail")

MAX_BODY_BYTES = 1_000_000
_DOMAIN_NAMESPACE = uuid.UUID("6f1c3f6e-0d7b-4d0e-9a52-0c4a1f2b3c4d")


class MailStore:
    """Accepted e-mails, newest last; thread-safe; optionally mirrored to a JSONL file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._emails: dict[str, dict[str, Any]] = {}
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("id"), str):
                    self._emails[record["id"]] = record

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._emails[record["id"]] = record
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record, separators=(",", ":")) + "\n")

    def get(self, email_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._emails.get(email_id)

    def latest(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(reversed(list(self._emails.values())))[:limit]


class MailServer(ThreadingHTTPServer):
    """The HTTP server, carrying the key, the verified domains and the store."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], api_key: str, domains: Iterable[str], store: MailStore
    ) -> None:
        super().__init__(address, MailHandler)
        self.api_key = api_key
        self.domains = sorted({d.strip().lower() for d in domains if d.strip()})
        self.store = store
        self.created_at = utc_now_iso()


def _error(status: int, name: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"statusCode": status, "message": message, "name": name}


class MailHandler(BaseHTTPRequestHandler):
    """One request; answers JSON and logs one line."""

    server: MailServer
    protocol_version = "HTTP/1.1"
    timeout = 10  # seconds a client may idle on a connection

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's access log: ``_respond`` logs instead."""

    def _respond(self, status: int, body: Mapping[str, Any], started: float) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:
            # An error may leave the request's body unread: never reuse this connection,
            # or the next request would be read from the middle of that body.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        log.info("request method=%s path=%s status=%d duration_ms=%.1f",
                 self.command, urlsplit(self.path).path, status,
                 (time.perf_counter() - started) * 1000)

    def _authorised(self) -> tuple[int, dict[str, Any]] | None:
        header = self.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return _error(401, "missing_api_key", "Missing API key in the authorization header. "
                          "Include the following header Authorization: Bearer YOUR_API_KEY "
                          "in the request.")
        if not hmac.compare_digest(key.strip().encode(), self.server.api_key.encode()):
            return _error(401, "validation_error", "API key is invalid")
        return None

    def _dispatch(self) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        if self.command == "GET" and path == "/health":
            return 200, {"status": "ok", "timestamp": utc_now_iso()}
        route = (self.command, path)
        known = {("POST", "/emails"), ("GET", "/emails"), ("GET", "/domains")}
        if route not in known and not (self.command == "GET" and path.startswith("/emails/")):
            return _error(404, "not_found", "The requested endpoint does not exist.")
        denied = self._authorised()
        if denied:
            return denied
        if route == ("POST", "/emails"):
            return self._send()
        if route == ("GET", "/emails"):
            query = parse_qs(parts.query)
            try:
                limit = max(1, min(int(query.get("limit", ["100"])[0]), 1000))
            except ValueError:
                return _error(422, "validation_error", "The `limit` must be an integer.")
            data = self.server.store.latest(limit)
            return 200, {"object": "list", "has_more": False, "data": data}
        if route == ("GET", "/domains"):
            return 200, {"object": "list", "has_more": False, "data": [
                {
                    "id": str(uuid.uuid5(_DOMAIN_NAMESPACE, name)),
                    "name": name,
                    "status": "verified",
                    "created_at": self.server.created_at,
                    "region": "us-east-1",
                    "capabilities": {"sending": "enabled", "receiving": "disabled"},
                }
                for name in self.server.domains
            ]}
        email_id = path.removeprefix("/emails/")
        record = self.server.store.get(email_id)
        if record is None:
            return _error(404, "not_found", "Email not found")
        return 200, record

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY_BYTES:
            raise ValueError("a JSON body of at most 1 MB is required")
        return json.loads(self.rfile.read(length))

    def _send(self) -> tuple[int, dict[str, Any]]:
        try:
            payload = self._read_json()
        except ValueError as exc:
            return _error(400, "validation_error", f"Invalid JSON body: {exc}")
        if not isinstance(payload, dict):
            return _error(400, "validation_error", "The body must be a JSON object.")
        for name in ("from", "to", "subject"):
            if not payload.get(name):
                return _error(422, "missing_required_field", f"Missing `{name}` field.")
        _, sender = parseaddr(str(payload["from"]))
        if "@" not in sender:
            return _error(422, "validation_error", "Invalid `from` field. The email address "
                          "needs to follow the `email@example.com` or "
                          "`Name <email@example.com>` format.")
        domain = sender.rsplit("@", 1)[1].lower()
        if domain not in self.server.domains:
            return _error(403, "validation_error", f"The {domain} domain is not verified. "
                          "Please, add and verify your domain on https://resend.com/domains")
        recipients = payload["to"] if isinstance(payload["to"], list) else [payload["to"]]
        to = [str(r) for r in recipients]
        record: dict[str, Any] = {
            "object": "email",
            "id": str(uuid.uuid4()),
            "from": str(payload["from"]),
            "to": to,
            "subject": str(payload["subject"]),
            "html": payload.get("html"),
            "text": payload.get("text"),
            "cc": payload.get("cc"),
            "bcc": payload.get("bcc"),
            "reply_to": payload.get("reply_to"),
            "created_at": utc_now_iso(),
            "last_event": "delivered",
        }
        self.server.store.add(record)
        log.info("email accepted id=%s to=%s subject=%r",
                 record["id"], ",".join(to), record["subject"])
        return 200, {"id": record["id"]}

    def _handle(self) -> None:
        started = time.perf_counter()
        try:
            status, body = self._dispatch()
        except Exception as exc:
            log.error("unhandled error on %s %s: %s", self.command, self.path, one_line_error(exc))
            status, body = _error(500, "application_error", "Internal Server Error")
        self._respond(status, body, started)

    do_GET = _handle
    do_POST = _handle
    do_HEAD = _handle


def create_server(
    host: str, port: int, api_key: str, domains: Iterable[str], store_path: Path | None = None
) -> MailServer:
    """A bound (not yet serving) mail stand-in; port 0 picks a free port."""
    return MailServer((host, port), api_key, domains, MailStore(store_path))


def main() -> int:
    """Serve until SIGTERM/SIGINT. Exit 2 on a configuration error."""
    setup_logging("mail")
    env = os.environ
    try:
        host, port = listen_address(env, 3025)
        api_key = env.get("RESEND_API_KEY", "")
        if not api_key:
            raise ConfigError("missing environment variable RESEND_API_KEY")
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    domains = (env.get("MAIL_VERIFIED_DOMAINS") or "").split(",")
    if not any(d.strip() for d in domains):
        from_email = env.get("FROM_EMAIL", "")
        domains = [parseaddr(from_email)[1].rpartition("@")[2]] if "@" in from_email else []
    store = Path(env["MAIL_STORE"]) if env.get("MAIL_STORE") else None
    server = create_server(host, port, api_key, domains, store)
    log.info("verified domains: %s", ", ".join(server.domains) or "none")
    serve_until_signalled(server, log, "mail stand-in")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
