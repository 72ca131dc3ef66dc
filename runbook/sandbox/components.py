"""What each sandbox component is: its command, environment, URL, readiness check, and
whether the supervisor restarts it when it dies (api, worker, web do, as the hosting
platform does; postgres, redis, s3, mail stay down until restarted).

The target variables (``env()``) and the services' environments are built here from the
same secrets and ports, so they cannot disagree.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runbook.sandbox.credentials import Secrets
from runbook.sandbox.layout import COMPONENTS
from runbook.sandbox.postgres import APP_DATABASE, APP_ROLE, dsn

LOOPBACK = "127.0.0.1"
S3_BUCKET = "legacyvideo-uploads"
S3_REGION = "us-east-1"
FROM_EMAIL = "noreply@legacyvideo.test"
MAIL_VERIFIED_DOMAINS = "legacyvideo.test"
#: Queues the worker consumes; it is ready when it has registered on both.
WORKER_QUEUES: tuple[str, ...] = ("email", "release-process")

#: Caller variables never passed to a service: each service gets exactly the contract's.
_SCRUBBED_PREFIXES = ("AWS_", "PG", "REDIS", "S3_", "RESEND_", "RUNBOOK_", "MAIL_")
_SCRUBBED = frozenset(
    {
        "API_URL", "WEB_URL", "DATABASE_URL", "FROM_EMAIL", "ADMIN_TOKEN", "API_SECRET",
        "PLATFORM", "HOST", "PORT", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP",
    }
)


def package_root() -> Path:
    """The directory holding the ``runbook`` package (put on the services' PYTHONPATH)."""
    return Path(__file__).resolve().parents[2]


def target_variables(secrets: Secrets, ports: Mapping[str, int], home: Path) -> dict[str, str]:
    """The runbook's target variables for this sandbox (``runbook sandbox env``)."""
    variables = {
        "API_URL": f"http://{LOOPBACK}:{ports['api']}",
        "WEB_URL": f"http://{LOOPBACK}:{ports['web']}",
        "DATABASE_URL": dsn(ports["postgres"], APP_ROLE, secrets.db_password, APP_DATABASE),
        "REDIS_URL": f"redis://:{secrets.redis_password}@{LOOPBACK}:{ports['redis']}/0",
        "S3_BUCKET": S3_BUCKET,
        "S3_REGION": S3_REGION,
        "S3_ENDPOINT_URL": f"http://{LOOPBACK}:{ports['s3']}",
        "AWS_ACCESS_KEY_ID": secrets.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": secrets.aws_secret_access_key,
        "RESEND_API_KEY": secrets.resend_api_key,
        "RESEND_API_URL": f"http://{LOOPBACK}:{ports['mail']}",
        "FROM_EMAIL": FROM_EMAIL,
        "ADMIN_TOKEN": secrets.admin_token,
        "API_SECRET": secrets.api_secret,
        "PLATFORM": "sandbox",
        "RUNBOOK_ENVIRONMENT": "sandbox",
        "RUNBOOK_HOME": str(home),
    }
    if not secrets.admin_token:
        del variables["ADMIN_TOKEN"]
    return variables


#: Which target variables each service receives (docs/sandbox-contract.md).
SERVICE_VARIABLES: dict[str, tuple[str, ...]] = {
    "api": (
        "DATABASE_URL", "REDIS_URL", "API_SECRET", "S3_BUCKET", "S3_REGION", "S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "WEB_URL",
    ),
    "worker": (
        "DATABASE_URL", "REDIS_URL", "API_SECRET", "API_URL", "RESEND_API_KEY", "RESEND_API_URL",
        "FROM_EMAIL",
    ),
    "web": ("API_URL",),
    "mail": ("RESEND_API_KEY", "RESEND_API_URL", "FROM_EMAIL"),
    "s3": (
        "S3_BUCKET", "S3_REGION", "S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
        "WEB_URL",
    ),
}
#: Services that listen (get HOST and PORT).
LISTENING_SERVICES = frozenset({"api", "web", "mail", "s3"})
#: LegacyVideo's own processes: on a platform each is a container with its own CPU.
APP_SERVICES = frozenset({"api", "web", "worker"})


def base_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without anything that could point a service elsewhere."""
    source = os.environ if environ is None else environ
    return {
        k: v for k, v in source.items()
        if k not in _SCRUBBED and not k.startswith(_SCRUBBED_PREFIXES)
    }


def service_environment(
    name: str,
    targets: Mapping[str, str],
    ports: Mapping[str, int],
    overrides: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of service ``name``: the contract's variables, then ``overrides``
    (a ``None`` value removes the variable: "start the api with a variable missing")."""
    env = base_environment(environ)
    root = str(package_root())
    env["PYTHONPATH"] = root
    env["PYTHONUNBUFFERED"] = "1"
    env["TZ"] = "UTC"
    if name in LISTENING_SERVICES:
        env["HOST"] = LOOPBACK
        env["PORT"] = str(ports[name])
    for variable in SERVICE_VARIABLES.get(name, ()):
        if variable in targets:
            env[variable] = targets[variable]
    if name == "mail":
        env["MAIL_VERIFIED_DOMAINS"] = MAIL_VERIFIED_DOMAINS
    for variable, value in (overrides or {}).items():
        if value is None:
            env.pop(variable, None)
        else:
            env[variable] = value
    return env


def stored_variables(path: Path) -> dict[str, dict[str, str | None]]:
    """The services' stored variables (``service -> {name: value}``; a ``None`` value: the
    variable is removed from the service's environment). ``{}`` when none are stored or
    the file cannot be read (a component must still start)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict):
        return {}
    return {str(service): {str(k): (None if v is None else str(v)) for k, v in values.items()}
            for service, values in document.items() if isinstance(values, dict)}


def service_argv(name: str) -> list[str]:
    """``python -m runbook.sandbox.services.<name>`` with this interpreter."""
    return [sys.executable, "-m", f"runbook.sandbox.services.{name}"]


# -- readiness --------------------------------------------------------------------------


def http_get(port: int, path: str, headers: Mapping[str, str] | None = None,
             timeout: float = 1.0) -> tuple[int, bytes]:
    """``GET http://127.0.0.1:port/path``; returns (status, body). Raises ``OSError``."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.read(65536)
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from None
    finally:
        conn.close()


def api_ready(port: int) -> bool:
    """``GET /health`` answers 200 ``{"status": "ok"}``."""
    try:
        status, body = http_get(port, "/health")
        return status == 200 and json.loads(body).get("status") == "ok"
    except (OSError, ValueError, AttributeError):
        return False


def web_ready(port: int) -> bool:
    """``GET /`` answers 200."""
    try:
        return http_get(port, "/")[0] == 200
    except OSError:
        return False


def mail_ready(port: int, api_key: str) -> bool:
    """``GET /domains`` with the Resend key answers 200."""
    try:
        return http_get(port, "/domains", {"Authorization": f"Bearer {api_key}"})[0] == 200
    except OSError:
        return False


def s3_ready(port: int, bucket: str) -> bool:
    """The bucket exists with versioning enabled (``GET /<bucket>?versioning``)."""
    try:
        status, body = http_get(port, f"/{bucket}?versioning")
    except OSError:
        return False
    return status == 200 and b"<Status>Enabled</Status>" in body


def redis_client(port: int, password: str, timeout: float = 1.0):  # type: ignore[no-untyped-def]
    """A redis-py client for the sandbox's Redis with finite timeouts and no retries
    (redis-py 6+ retries 3 times with backoff by default: 3.5 s against a closed port)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host=LOOPBACK, port=port, password=password, socket_timeout=timeout,
        socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
    )


def redis_ready(port: int, password: str) -> bool:
    """``AUTH`` + ``PING`` answers ``PONG``."""
    import redis

    client = redis_client(port, password)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def worker_ready(port: int, password: str) -> bool:
    """A BullMQ worker is registered on every queue (``CLIENT LIST`` names ``bull:<queue>``,
    as BullMQ's ``getWorkers`` finds them)."""
    import redis

    client = redis_client(port, password)
    try:
        names = {str(c.get("name", "")) for c in client.client_list()}
    except redis.RedisError:
        return False
    finally:
        client.close()
    return all(
        any(n == f"bull:{q}" or n.startswith(f"bull:{q}:w:") for n in names)
        for q in WORKER_QUEUES
    )


@dataclass(frozen=True)
class ComponentSpec:
    """Static facts about one component."""

    name: str
    auto_restart: bool
    stop_signal: int
    stop_grace_s: float
    depends_on: tuple[str, ...]
    #: How long a start may take before it counts as failed.
    start_timeout_s: float = 60.0


SPECS: dict[str, ComponentSpec] = {
    "postgres": ComponentSpec("postgres", False, signal.SIGINT, 20.0, ()),
    "redis": ComponentSpec("redis", False, signal.SIGTERM, 10.0, ()),
    "s3": ComponentSpec("s3", False, signal.SIGTERM, 5.0, ()),
    "mail": ComponentSpec("mail", False, signal.SIGTERM, 5.0, ()),
    "web": ComponentSpec("web", True, signal.SIGTERM, 5.0, ()),
    "api": ComponentSpec("api", True, signal.SIGTERM, 5.0, ("postgres", "redis")),
    "worker": ComponentSpec("worker", True, signal.SIGTERM, 5.0, ("postgres", "redis")),
}
assert tuple(SPECS) == COMPONENTS


def component_url(name: str, ports: Mapping[str, int]) -> str | None:
    """Where a component answers, without credentials (``None`` for the worker)."""
    if name not in ports:
        return None
    port = ports[name]
    if name == "postgres":
        return f"postgresql://{LOOPBACK}:{port}/{APP_DATABASE}"
    if name == "redis":
        return f"redis://{LOOPBACK}:{port}/0"
    return f"http://{LOOPBACK}:{port}"


ReadyCheck = Callable[[], bool]
