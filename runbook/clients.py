"""Client factories: the only places network clients are built, each with finite timeouts
(HTTP, PostgreSQL, Redis and BullMQ's asyncio Redis, S3), and ``describe_error``, the
one-line, secret-free description of their failures.

Every HTTP request the runbook makes says who it is: ``User-Agent: legacyvideo-runbook/...``.
The target labels those requests (``synthetic="true"`` on its request counters), so the
alerts on error rate and response time count its users' traffic, never the runbook's own.
"""

from __future__ import annotations

import functools
import ssl
import threading
from typing import Any

import httpx
import psycopg
import redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.driver_info import DriverInfo
from redis.retry import Retry

from runbook.config import Target
from runbook.errors import ConfigError
from runbook.pg import open_connection, parse_dsn
from runbook.timeouts import Timeouts

#: What the runbook's HTTP requests start their User-Agent with; the target must label the
#: requests whose User-Agent starts with it (README, "What the target must expose").
USER_AGENT_PREFIX = "legacyvideo-runbook"
USER_AGENT = f"{USER_AGENT_PREFIX}/0.1 (synthetic check; +docs/RUNBOOK.md)"
#: The Redis client name of the runbook's own connections (never mistaken for a worker).
REDIS_CLIENT_NAME = "legacyvideo-runbook"
S3Client = Any  # boto3's client classes are generated at run time


def http_client(timeouts: Timeouts, *, base_url: str = "", headers: dict[str, str] | None = None
                ) -> httpx.Client:
    """An httpx client whose connect, read, write and pool waits are all bounded, sending
    the runbook's ``User-Agent`` (``headers`` may add others, not replace it)."""
    return httpx.Client(
        base_url=base_url,
        headers={**(headers or {}), "User-Agent": USER_AGENT},
        timeout=httpx.Timeout(
            connect=timeouts.connect, read=timeouts.read, write=timeouts.read,
            pool=timeouts.connect,
        ),
        follow_redirects=False,
        trust_env=False,
        verify=_tls_context(),
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS context every HTTP client verifies with, built once per process: httpx
    otherwise builds one per client, loading the CA bundle each time (about 40 ms of CPU,
    seventeen times in a synthetic run). The same verification as httpx's default:
    certifi's bundle, hostname checked; an ``SSLContext`` is safe to share between
    clients and threads."""
    return httpx.create_ssl_context(trust_env=False)


def describe_error(exc: BaseException) -> str:
    """A one-line, secret-free description of a network failure."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.ReadTimeout):
        return "connected, but no answer before the read timeout"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.HTTPError):
        return f"{type(exc).__name__}: {exc}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def postgres(dsn: str, timeouts: Timeouts, *, read_only: bool = True) -> psycopg.Connection[Any]:
    """A PostgreSQL session on ``dsn`` (a DATABASE_URL, Prisma's parameters dropped) with
    bounded connect and statement times (``timeouts.read``), read-only unless asked,
    autocommit. Raises ``psycopg.Error`` as psycopg does."""
    return open_connection(parse_dsn(dsn), connect_timeout_s=timeouts.connect,
                           statement_timeout_s=timeouts.read, read_only=read_only)


def redis_client(url: str, timeouts: Timeouts) -> redis.Redis:
    """A Redis client with bounded connect and socket timeouts and no retries (redis-py
    has no timeout by default, and redis-py 8 retries three times with backoff)."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=timeouts.connect, socket_timeout=timeouts.read,
        retry=Retry(NoBackoff(), 0), retry_on_timeout=False, decode_responses=True,
        client_name="legacyvideo-runbook", driver_info=_driver(),
    )


def async_redis_client(url: str, timeouts: Timeouts) -> AsyncRedis:
    """A ``redis.asyncio`` client with bounded connect and command times and no retries.

    ``decode_responses`` is on, as BullMQ's own clients have it."""
    return AsyncRedis.from_url(
        url,
        socket_connect_timeout=timeouts.connect,
        socket_timeout=timeouts.read,
        retry=AsyncRetry(NoBackoff(), 0),
        retry_on_error=[],
        decode_responses=True,
        client_name=REDIS_CLIENT_NAME,
        driver_info=_driver(),
    )


@functools.cache
def _driver() -> DriverInfo:
    """What the clients tell Redis of themselves (``CLIENT SETINFO``: redis-py and its
    version), read once: redis-py reads its version from its installed metadata for every
    client it builds without it (a file read and parsed, about half a millisecond)."""
    return DriverInfo()


def s3_client(target: Target, timeouts: Timeouts) -> S3Client:
    """A boto3 S3 client for ``target``: SigV4, path-style, bounded connect and read, one
    attempt (no retries). ``S3_ENDPOINT_URL`` when set; the target's ``AWS_*`` credentials
    when set, else boto3's default chain."""
    key_id = target.aws_access_key_id.get_secret_value() if target.aws_access_key_id else None
    secret = (target.aws_secret_access_key.get_secret_value()
              if target.aws_secret_access_key else None)
    if bool(key_id) != bool(secret):
        given, missing = (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if key_id
                          else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"))
        raise ConfigError(f"target {target.name!r} sets {given} but not {missing}; set both,"
                          " or neither to use boto3's default credential chain")
    return _client(key_id or None, secret or None, target.s3_region or None,
                   target.s3_endpoint_url or None, timeouts.connect, timeouts.read)


@functools.cache
def _session() -> Any:
    """The process's one boto3 session: its loader reads each service model once (100-200 ms
    of CPU per session, seconds on a loaded machine), however many clients are built.
    Credentials and region are the client's, never the session's."""
    import boto3  # boto3 and botocore load only where S3 is used

    return boto3.session.Session()


_BUILDING = threading.Lock()  # a session builds one client at a time


def warm() -> None:
    """Build now what a process builds once, on first use: the TLS context, httpx's
    transport (an HTTP client thrown away: httpx imports httpcore only when the first client
    is built), the boto3 session with S3's models loaded (a client thrown away, no request
    made, no credential looked up) and the Redis clients' driver information. For a process
    that forks runs (the resident pytest of ``runbook watch``): every run it forks inherits
    them instead of building them again (about 40, 20, 140 and 1 ms of CPU a run). Starts no
    thread."""
    http_client(Timeouts()).close()
    _driver()
    with _BUILDING:
        _session().client("s3", region_name="us-east-1", aws_access_key_id="warm-up",
                          aws_secret_access_key="warm-up")


@functools.lru_cache(maxsize=8)
def _client(key_id: str | None, secret: str | None, region: str | None, endpoint: str | None,
            connect_s: float, read_s: float) -> S3Client:
    """One client per credentials, endpoint and timeouts, for the process, all from one
    session (its models loaded once); the clients are thread-safe."""
    from botocore.config import Config
    from botocore.handlers import add_expect_header

    with _BUILDING:
        s3 = _session().client(
            "s3",
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=connect_s,
                read_timeout=read_s,
                retries={"total_max_attempts": 1, "mode": "standard"},
                user_agent_extra="legacyvideo-runbook",
            ),
        )
    # ``Expect: 100-continue`` waits a fixed second for the interim answer before sending a
    # body: pointless for canary-sized bodies, and it would outlast short read timeouts.
    s3.meta.events.unregister("before-call.s3", add_expect_header)
    return s3
