"""Plumbing shared by the sandbox services: one-line UTC log records with secrets masked,
environment reading, and a signal-aware loop for the stdlib HTTP servers."""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

#: Variables whose values never reach a log line.
SECRET_VARIABLES = (
    "API_SECRET",
    "ADMIN_TOKEN",
    "RESEND_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MASTER_ENCRYPTION_KEY",
)
#: Variables holding URLs whose password part is a secret.
URL_VARIABLES = ("DATABASE_URL", "REDIS_URL")

_LEVELS = {"WARNING": "WARN", "CRITICAL": "ERROR"}
# Presigned URLs are bearer credentials until they expire: mask their signature parts.
_PRESIGNED = re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"']+", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

#: Game-day chaos hook: ``RUNBOOK_CHAOS_CPU_HOG=1`` makes the API burn CPU from start-up
#: (here, not in the API's module, so a drill names it without importing the web framework).
CHAOS_CPU_HOG = "RUNBOOK_CHAOS_CPU_HOG"


class ConfigError(RuntimeError):
    """A required environment variable is missing or malformed."""


def utc_now_iso() -> str:
    """The current time as ISO-8601 UTC with milliseconds and a ``Z``."""
    return _iso(datetime.now(UTC))


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso(moment: datetime | None) -> str | None:
    """``moment`` as ISO-8601 UTC (naive values are taken as UTC), or None."""
    return None if moment is None else _iso(moment)


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for log lines and reprs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def secrets_from_env(env: Mapping[str, str]) -> list[str]:
    """The secret values in ``env``: secret variables and passwords inside URL variables."""
    found = [env[name] for name in SECRET_VARIABLES if env.get(name)]
    for name in URL_VARIABLES:
        value = env.get(name)
        if value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                found.append(password)
    return found


def one_line_error(exc: BaseException) -> str:
    """``Type: message (at file:line in function)`` on a single line."""
    text = " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    where = ""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if frames:
        last = frames[-1]
        where = f" (at {os.path.basename(last.filename)}:{last.lineno} in {last.name})"
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"


class LineFormatter(logging.Formatter):
    """``<ISO-8601 UTC> <LEVEL> <component>: <message>``, one line, secrets masked."""

    def __init__(self, component: str, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.component = component
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        """``text`` with every known secret, bearer token and presigned signature masked."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _BEARER.sub(r"\1***", text)
        return _PRESIGNED.sub(r"\1***", text)

    def format(self, record: logging.LogRecord) -> str:
        stamp = _iso(datetime.fromtimestamp(record.created, UTC))
        level = _LEVELS.get(record.levelname, record.levelname)
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message}: {one_line_error(record.exc_info[1])}"
        message = _ANSI.sub("", message)
        message = " | ".join(part for part in message.splitlines() if part.strip()) or message
        return f"{stamp} {level} {self.component}: {self.mask(message)}"


def setup_logging(component: str, env: Mapping[str, str] | None = None) -> None:
    """Send every log record of this process to stdout as one masked line.

    Used by the services' ``main()`` only; ``create_app`` and the library leave the
    logging configuration of their host alone."""
    env = os.environ if env is None else env
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LineFormatter(component, secrets_from_env(env)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # Chatty libraries: keep their warnings, drop their per-request lines.
    for noisy in ("httpx", "httpcore", "botocore", "boto3", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)


def require(env: Mapping[str, str], name: str) -> str:
    """The non-empty value of ``name`` in ``env``; raises ConfigError otherwise."""
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"missing environment variable {name}")
    return value


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    """``name`` as an int, ``default`` when unset; raises ConfigError when malformed."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def listen_address(env: Mapping[str, str], default_port: int) -> tuple[str, int]:
    """``(HOST, PORT)`` from ``env``; HOST defaults to 127.0.0.1."""
    return env.get("HOST", "").strip() or "127.0.0.1", env_int(env, "PORT", default_port)


def serve_until_signalled(server: ThreadingHTTPServer, log: logging.Logger, name: str) -> None:
    """Run ``server`` until SIGTERM or SIGINT, then close it and return."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.daemon = True
    thread.start()
    host, port = server.server_address[:2]
    log.info("%s listening on http://%s:%s", name, host, port)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    log.info("%s stopped", name)


#: Query parameters Prisma understands in a DATABASE_URL but libpq rejects.
_PRISMA_ONLY_PARAMS = frozenset(
    {"schema", "connection_limit", "pool_timeout", "pgbouncer", "statement_cache_size",
     "socket_timeout", "sslaccept"}
)


def libpq_url(database_url: str) -> str:
    """``database_url`` without the Prisma-only query parameters (``?schema=public`` ...)
    that libpq, and so psycopg, refuse."""
    parts = urlsplit(database_url)
    if not parts.query:
        return database_url
    kept = [
        pair for pair in parts.query.split("&")
        if pair and pair.split("=", 1)[0] not in _PRISMA_ONLY_PARAMS
    ]
    return urlunsplit(parts._replace(query="&".join(kept)))


def pg_options(database_url: str, *settings: str) -> str:
    """libpq ``options`` for ``database_url``: its own (e.g. ``-c search_path=...``) plus
    ``settings`` such as ``-c statement_timeout=10000``. Passing ``options=`` to psycopg
    replaces the URL's, so the two are merged here."""
    from psycopg.conninfo import conninfo_to_dict

    existing = str(conninfo_to_dict(libpq_url(database_url)).get("options") or "")
    return " ".join(part for part in (existing, *settings) if part)
