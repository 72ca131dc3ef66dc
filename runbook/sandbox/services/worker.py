"""The LegacyVideo worker: BullMQ workers on the ``email`` and ``release-process`` queues.

Jobs (see ``docs/sandbox-contract.md``):

- ``process-release`` ``{"releaseId"}``: calls the API's internal endpoint with a service
  token signed with this worker's ``API_SECRET``, then enqueues ``send-email``.
- ``send-email`` ``{"to","subject","html"}``: posts to ``RESEND_API_URL/emails`` with
  ``RESEND_API_KEY`` from ``FROM_EMAIL``.
- ``canary`` on either queue: completes with ``{"pong": true, "queue": <name>}``.

A 4xx answer fails the job at once (``UnrecoverableError``: retrying cannot help); other
errors are retried as the job's ``attempts`` allow. One log line per completed or failed
job. SIGTERM/SIGINT closes the workers, letting running jobs finish for up to 4 s.

``python -m runbook.sandbox.services.worker``."""

from __future__ import annotations

import asyncio
import html
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from bullmq import Queue, UnrecoverableError, Worker
from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from runbook.sandbox.services.common import (
    ConfigError,
    one_line_error,
    require,
    setup_logging,
)
from runbook.sandbox.services.tokens import issue_service_token

log = logging.getLogger("legacyvideo.worker")

EMAIL_QUEUE = "email"
RELEASE_QUEUE = "release-process"
WORKER_NAME = "legacyvideo-worker"
#: A job that runs longer fails (below BullMQ's 30 s lock, so the lock never lapses).
JOB_TIMEOUT_S = 25.0
#: How long SIGTERM waits for running jobs before the worker exits anyway.
SHUTDOWN_GRACE_S = 4.0
#: Retries of the e-mail jobs this worker enqueues (4xx answers are not retried).
EMAIL_JOB_OPTIONS: dict[str, Any] = {
    "attempts": 3,
    "backoff": {"type": "exponential", "delay": 1000},
}

Processor = Callable[[Any, str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class WorkerConfig:
    """What the worker reads from its environment. Secrets stay out of ``repr``."""

    redis_url: str = field(repr=False)
    api_secret: str = field(repr=False)
    api_url: str | None
    resend_api_key: str | None = field(repr=False)
    resend_api_url: str
    from_email: str | None
    concurrency: int = 4

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerConfig:
        """REDIS_URL and API_SECRET are required; a missing API_URL, RESEND_API_KEY or
        FROM_EMAIL is logged and fails the jobs that need it, as in production."""
        env = os.environ if env is None else env
        config = cls(
            redis_url=require(env, "REDIS_URL"),
            api_secret=require(env, "API_SECRET"),
            api_url=(env.get("API_URL") or "").rstrip("/") or None,
            resend_api_key=env.get("RESEND_API_KEY") or None,
            resend_api_url=(env.get("RESEND_API_URL") or "https://api.resend.com").rstrip("/"),
            from_email=env.get("FROM_EMAIL") or None,
        )
        for name, value in (("API_URL", config.api_url),
                            ("RESEND_API_KEY", config.resend_api_key),
                            ("FROM_EMAIL", config.from_email)):
            if not value:
                log.warning("%s is not set: the jobs that need it will fail", name)
        return config


def redis_options(url: str) -> dict[str, Any]:
    """Connection keyword arguments for BullMQ's own clients, with finite timeouts.

    BullMQ's ``RedisConnection`` builds ``redis.asyncio.Redis(**options)`` from a dict
    (a URL string would get redis-py's default: no socket timeout at all). The read timeout
    must exceed the worker's longest blocking BZPOPMIN (10 s)."""
    options: dict[str, Any] = dict(parse_url(url))
    options.update(
        socket_connect_timeout=5,
        socket_timeout=20,
        socket_keepalive=True,
        health_check_interval=30,
    )
    return options


def queue_client(url: str) -> Redis:
    """A client for enqueueing: 3 s connect, 5 s per command, one retry."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=3,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


def _error_text(response: httpx.Response) -> str:
    """The error message in a JSON error body (``error`` or Resend's ``message``)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    return response.reason_phrase or "error"


class Jobs:
    """The job processors, sharing one HTTP client and the ``email`` queue."""

    def __init__(self, config: WorkerConfig, http: httpx.AsyncClient, email_queue: Queue):
        self.config = config
        self.http = http
        self.email_queue = email_queue

    def processor(self, queue_name: str) -> Processor:
        """The processor of ``queue_name``: dispatches on the job name, under a deadline."""
        handlers: dict[str, Callable[[Any], Awaitable[dict[str, Any]]]] = (
            {"send-email": self.send_email}
            if queue_name == EMAIL_QUEUE
            else {"process-release": self.process_release}
        )

        async def process(job: Any, _token: str) -> dict[str, Any]:
            if job.name == "canary":
                return {"pong": True, "queue": queue_name}
            handler = handlers.get(job.name)
            if handler is None:
                raise UnrecoverableError(f"unknown job name {job.name!r} on queue {queue_name}")
            async with asyncio.timeout(JOB_TIMEOUT_S):
                return await handler(job)

        return process

    async def process_release(self, job: Any) -> dict[str, Any]:
        """Mark the release processed through the API, then enqueue its e-mail."""
        release_id = str((job.data or {}).get("releaseId") or "")
        if not release_id:
            raise UnrecoverableError("job data has no releaseId")
        if not self.config.api_url:
            raise UnrecoverableError("API_URL is not set")
        token = issue_service_token(self.config.api_secret, "worker")
        response = await self.http.post(
            f"{self.config.api_url}/api/internal/releases/{quote(release_id, safe='')}/processed",
            headers={"Authorization": f"Bearer {token}"},
        )
        if response.status_code >= 400:
            message = f"{_error_text(response)} (HTTP {response.status_code} from the API)"
            if response.status_code < 500:
                raise UnrecoverableError(message)
            raise RuntimeError(message)
        body = response.json()
        recipient = (body.get("user") or {}).get("email")
        if not recipient:
            raise UnrecoverableError(f"release {release_id} has no requester e-mail")
        title = (body.get("video") or {}).get("title") or "your video"
        name = (body.get("user") or {}).get("name") or "there"
        email_job = await self.email_queue.add(
            "send-email",
            {
                "to": recipient,
                "subject": f"Your release of {title} is ready",
                "html": (
                    f"<p>Hi {html.escape(name)},</p><p>Your release of "
                    f"<strong>{html.escape(title)}</strong> has been processed and is "
                    f"ready to share.</p><p>Release {html.escape(release_id)}</p>"
                ),
            },
            {**EMAIL_JOB_OPTIONS, "jobId": f"release-email-{release_id}"},
        )
        return {"releaseId": release_id, "status": body.get("status"),
                "emailJobId": str(email_job.id)}

    async def send_email(self, job: Any) -> dict[str, Any]:
        """Post the e-mail to Resend; return Resend's id."""
        data = job.data or {}
        recipients = data.get("to")
        if isinstance(recipients, str):
            recipients = [recipients]
        if not recipients or not data.get("subject"):
            raise UnrecoverableError("job data needs 'to' and 'subject'")
        headers = {}
        if self.config.resend_api_key:
            headers["Authorization"] = f"Bearer {self.config.resend_api_key}"
        payload = {
            "from": self.config.from_email or "",
            "to": recipients,
            "subject": data["subject"],
            "html": data.get("html") or "",
        }
        response = await self.http.post(
            f"{self.config.resend_api_url}/emails", json=payload, headers=headers
        )
        if response.status_code >= 300:
            message = f"Resend rejected the email: {_error_text(response)} " \
                      f"(HTTP {response.status_code})"
            if 400 <= response.status_code < 500:
                raise UnrecoverableError(message)
            raise RuntimeError(message)
        return {"id": response.json().get("id"), "to": recipients}


def _attach_logging(worker: Worker, queue_name: str) -> None:
    def elapsed_ms(job: Any) -> float:
        started = getattr(job, "processedOn", 0) or 0
        return max(0.0, time.time() * 1000 - started) if started else 0.0

    def completed(job: Any, _result: Any) -> None:
        log.info("job completed queue=%s name=%s id=%s attempt=%d duration_ms=%.0f",
                 queue_name, job.name, job.id, job.attemptsMade, elapsed_ms(job))

    def failed(job: Any, err: BaseException) -> None:
        attempts = int(job.opts.get("attempts") or 1)
        final = isinstance(err, UnrecoverableError) or job.attemptsMade >= attempts
        log.error("job failed queue=%s name=%s id=%s attempt=%d/%d%s reason=%s",
                  queue_name, job.name, job.id, job.attemptsMade, attempts,
                  "" if final else " (will retry)",
                  str(err) or type(err).__name__)

    def error(err: BaseException, _job: Any = None) -> None:
        log.error("worker error on queue %s: %s", queue_name, one_line_error(err))

    worker.on("completed", completed)
    worker.on("failed", failed)
    worker.on("error", error)


async def run(config: WorkerConfig, stop: asyncio.Event) -> bool:
    """Process jobs until ``stop`` is set, then close. True when the close was graceful."""
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0))
    email_queue = Queue(EMAIL_QUEUE, {"connection": queue_client(config.redis_url)})
    jobs = Jobs(config, http, email_queue)
    workers = []
    for name in (EMAIL_QUEUE, RELEASE_QUEUE):
        worker = Worker(name, jobs.processor(name), {
            "connection": redis_options(config.redis_url),
            "concurrency": config.concurrency,
            "name": WORKER_NAME,
        })
        _attach_logging(worker, name)
        workers.append(worker)
    log.info("worker ready on queues %s, %s (%r)", EMAIL_QUEUE, RELEASE_QUEUE, config)
    await stop.wait()
    log.info("closing workers (running jobs get %.0f s)", SHUTDOWN_GRACE_S)
    closing = [asyncio.ensure_future(w.close()) for w in workers]
    _, pending = await asyncio.wait(closing, timeout=SHUTDOWN_GRACE_S)
    graceful = not pending
    for resource in (email_queue.close(), http.aclose()):
        try:
            async with asyncio.timeout(3):
                await resource
        except Exception as exc:
            log.warning("closing a connection failed: %s", one_line_error(exc))
    return graceful


def main() -> int:
    """Run the worker until SIGTERM/SIGINT. Exit 2 on a configuration error."""
    setup_logging("worker")
    try:
        config = WorkerConfig.from_env()
    except ConfigError as exc:
        log.error("%s", exc)
        return 2

    async def serve() -> bool:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await run(config, stop)

    loop = asyncio.new_event_loop()
    graceful = loop.run_until_complete(serve())
    if graceful:
        log.info("worker stopped")
        loop.close()
        return 0
    # A job or a close still hangs after the grace period: BullMQ's close() shields
    # itself from cancellation, so leave without waiting (the job's lock lapses and
    # another worker's stalled-job check picks it up again).
    log.warning("worker stopped with jobs still running after %.0f s", SHUTDOWN_GRACE_S)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
