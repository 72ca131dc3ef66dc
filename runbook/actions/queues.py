"""Common Operations > Queue Management, the BullMQ way, on canary jobs only.

The runbook's three commands, and what this module does instead or shows about them:

* View Queue Status (``KEYS bull:*``, ``LLEN bull:email:failed``): ``status`` reads BullMQ's
  own counts cross-checked with ``TYPE`` + ``LLEN``/``ZCARD`` (``probes.queues.counts``);
  ``failed`` is a sorted set, so the runbook's ``LLEN`` answers WRONGTYPE.
* Clear Failed Jobs (``DEL bull:email:failed``): ``clear_failed`` removes failed jobs the
  BullMQ way (``Job.remove`` by id, or ``Queue.clean(0, limit, "failed")`` on a canary
  queue); ``runbook_del_failed`` runs the runbook's ``DEL`` on a canary queue and counts the
  job hashes it leaves behind, which nothing references any more (then removes them).
* Retry Failed Jobs ("restart worker, will retry failed jobs automatically"):
  ``retry_failed`` retries them the BullMQ way (``Job.retry``/``Queue.retryJobs``);
  ``restart_does_not_retry`` records that a worker restart leaves them failed.

Safety on a shared target: jobs are made by ``fail_canary_jobs`` with ids starting
``runbook-canary-`` and attempts 1, on LegacyVideo's queues as jobs the real worker rejects
without side effects (a ``send-email`` without recipients, a ``process-release`` without a
release id), or on a canary queue ``runbook-canary-<hex>`` served by a worker this module
runs itself (``canary_queue``). Only canary jobs are removed or retried on a real queue;
whole-set operations (``Queue.clean``, ``Queue.retryJobs``, ``DEL``) run on canary queues
only, and refuse (``SafetyGateError``) anything else. Everything made is removed
afterwards, also on failure; what stays is the entries in the queue's capped event stream
(``bull:<queue>:events``) that mention canary job ids.

Every Redis call has a bounded connect and command time and no retries
(``probes.queues.async_client``); every wait is bounded by the caller's ``within_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from bullmq import Queue, Worker
from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from runbook.config import Target
from runbook.defects import RETRY_CLAIM
from runbook.errors import OperationFailed, SafetyGateError
from runbook.probes import describe_error
from runbook.probes import queues as probes
from runbook.redact import Redactor
from runbook.results import (
    Activity,
    ProbeResult,
    Record,
    Stopwatch,
    TimedResult,
    Timing,
    failure,
    utcnow,
)
from runbook.timeouts import Timeouts
from runbook.wait import wait_until_async

T = TypeVar("T")

#: Canary queue names and canary job ids both start with this.
CANARY_PREFIX = probes.CANARY_ID_PREFIX
#: The job name used on canary queues (their worker is ours and fails it on purpose).
CANARY_FAIL_JOB = "runbook-canary-fail"
#: Jobs LegacyVideo's worker rejects at once (``UnrecoverableError``) without calling
#: Resend or the API: the job's real name with data lacking what the handler needs.
REJECTED_JOBS: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    "email": ("send-email", {"runbook": "canary: no recipients, rejected on purpose"}),
    "release-process": ("process-release",
                        {"runbook": "canary: no releaseId, rejected on purpose"}),
}
RUNBOOK_RETRY_CLAIM = RETRY_CLAIM
#: Keys BullMQ keeps per queue (not per job): never taken for job hashes.
QUEUE_KEYS: frozenset[str] = frozenset({
    "meta", "id", "events", "marker", "stalled", "stalled-check", "limiter", "pc", "de",
    "repeat", "metrics", "wait", "active", "paused", "failed", "completed", "delayed",
    "prioritized", "waiting-children",
})
#: Per-job keys beside the job hash (``bull:<queue>:<id>:<suffix>``).
JOB_SUBKEYS: tuple[str, ...] = ("logs", "lock", "dependencies", "processed", "failed",
                                "unsuccessful")
_POLL_S = 0.05
_OUTPUT_LIMIT = 4000

CanaryMode = Literal["fail", "fail-once"]


class QueueOperationFailed(OperationFailed):
    """A queue action did not do what BullMQ promises; ``activities`` holds what was done
    (the cleanup included)."""

    component_name = "queues"
    advice = (
        "Troubleshooting > Worker Not Processing Jobs: check the worker is running"
        " (railway status --service worker) and its logs",
        "check the Redis connection (redis-cli -u $REDIS_URL ping)",
    )


# -- records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSnapshot(Record):
    """One job as BullMQ reports it: state, attempts, its timestamps (ms since the epoch,
    0 when unset) and the worker's failure reason (redacted)."""

    id: str
    state: str
    attempts_made: int = 0
    attempts_started: int = 0
    processed_on: int = 0
    finished_on: int = 0
    failed_reason: str = ""
    exists: bool = True


@dataclass(frozen=True)
class QueueRecord(TimedResult):
    """Common shape of the records below: the queue, timing, calls made, problems."""

    queue: str
    timing: Timing
    activities: tuple[Activity, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True)
class FailedJobs(QueueRecord):
    """Canary jobs the worker failed: ``ids``, their snapshots (all ``failed``), BullMQ's
    failed count and ``ZCARD`` before and after, and how long the worker took."""

    job_name: str
    ids: tuple[str, ...]
    jobs: tuple[JobSnapshot, ...]
    failed_before: int
    failed_after: int
    zcard_after: int
    time_to_fail_s: float


@dataclass(frozen=True)
class Cleared(QueueRecord):
    """Failed jobs removed the BullMQ way (``method``): ``removed_ids``, the failed counts
    before and after, and what was left: ``orphans`` (job hashes no state references) and
    ``keys_left`` (keys still naming a removed job)."""

    method: str
    removed_ids: tuple[str, ...]
    failed_before: int
    failed_after: int
    orphans: int
    keys_left: tuple[str, ...]

    @property
    def leaves_no_key(self) -> bool:
        """No key names a removed job any more."""
        return not self.keys_left


@dataclass(frozen=True)
class DelDemonstration(QueueRecord):
    """The runbook's ``DEL bull:<queue>:failed`` on a canary queue with ``jobs`` failed jobs.

    Before: BullMQ's failed count, ``ZCARD`` and the runbook's ``LLEN`` reply (WRONGTYPE).
    After the DEL: BullMQ's failed count (0), the job hashes left that nothing references
    (``orphan_ids``, ``orphans``, their ``orphan_bytes`` by ``MEMORY USAGE`` when allowed), the
    state BullMQ gives them (``unknown``) and whether ``getJob`` still reads them. Then the
    orphans are removed (``orphans_removed``) and the canary queue deleted (``keys_left``)."""

    command: str
    stands_for: str
    jobs: int
    failed_before: int
    zcard_before: int
    llen_reply: str
    del_reply: int
    failed_after_del: int
    orphans: int
    orphan_ids: tuple[str, ...]
    orphan_bytes: int | None
    states_after_del: Mapping[str, str]
    still_readable: int
    orphans_removed: int
    keys_left: tuple[str, ...]

    def orphans_left(self, count: int) -> bool:
        """The DEL left BullMQ counting no failed job, and ``count`` job hashes behind."""
        return self.failed_after_del == 0 and self.orphans == count

    @property
    def leaves_no_key(self) -> bool:
        """Once cleaned, no key of the canary queue is left."""
        return not self.keys_left


@dataclass(frozen=True)
class Retried(QueueRecord):
    """Failed jobs retried the BullMQ way (``method``): snapshots ``before`` and ``after``,
    which jobs left the failed set (``left_failed``: moved out, or re-run by a worker), the
    ``outcomes`` (``completed``, ``failed again``, ``waiting``, ...) and how long until all
    had left (``time_to_leave_s``)."""

    method: str
    ids: tuple[str, ...]
    before: tuple[JobSnapshot, ...]
    after: tuple[JobSnapshot, ...]
    left_failed: tuple[str, ...]
    outcomes: Mapping[str, str]
    failed_before: int
    failed_after: int
    time_to_leave_s: float | None

    @property
    def every_job_left_failed(self) -> bool:
        """Every retried job left the failed set."""
        return set(self.left_failed) == set(self.ids)


@dataclass(frozen=True)
class RestartLeavesFailed(QueueRecord):
    """What a worker restart did to failed jobs (the runbook says it retries them).

    ``before``/``after``: the jobs' snapshots; ``failed_before``/``failed_after``: BullMQ's
    failed count; ``restart``: the platform's activity; ``worker_after``: a canary round trip
    after the restart (the restarted worker does process jobs); ``observed_s``: how long the
    jobs were watched after it. ``reprocessed``: jobs a worker ran again (the runbook's claim
    holds only if there are any); ``still_failed``: jobs still failed at the end."""

    ids: tuple[str, ...]
    before: tuple[JobSnapshot, ...]
    after: tuple[JobSnapshot, ...]
    failed_before: int
    failed_after: int
    restart: Activity
    worker_after: ProbeResult
    observed_s: float
    reprocessed: tuple[str, ...]
    still_failed: tuple[str, ...]
    runbook_claim: str = RUNBOOK_RETRY_CLAIM
    evidence_properties = ("runbook_claim_holds",)

    @property
    def runbook_claim_holds(self) -> bool:
        """True only if the restart made a worker run a failed job again."""
        return bool(self.reprocessed)

    @property
    def runbook_claim_refuted(self) -> bool:
        """The restart retried nothing: every failed job is still failed."""
        return not self.runbook_claim_holds and set(self.still_failed) == set(self.ids)


@dataclass(frozen=True)
class CanaryQueue:
    """A canary queue served by a worker this module runs: ``mode`` ``fail`` fails every
    job, ``fail-once`` fails a job's first attempt and completes the next."""

    name: str
    mode: CanaryMode
    started_at: datetime = field(default_factory=utcnow)


# -- helpers -----------------------------------------------------------------------------



def is_canary_queue(queue: str) -> bool:
    """True for queue names ``canary_queue`` makes."""
    return queue.startswith(CANARY_PREFIX)


def is_canary_job(job_id: str) -> bool:
    """True for job ids this module (or the probes' canary) makes."""
    return job_id.startswith(CANARY_PREFIX)


def _activity(name: str, command: Sequence[str], watch: Stopwatch, redact: Redactor, *,
              ok: bool = True, output: Any = "", error: str = "") -> Activity:
    text = output if isinstance(output, str) else json.dumps(output, default=str)
    return Activity(name=name, command=tuple(redact(c) for c in command),
                    timing=watch.timing(), output=redact(text)[:_OUTPUT_LIMIT],
                    error="" if ok else failure(name, redact(error)))


def _run(target: Target, timeouts: Timeouts, queue: str,
         work: Callable[[Queue, Redis], Awaitable[T]]) -> T:
    """Run ``work(queue, client)`` on the target's Redis (``probes.queues.run_async``)."""
    return probes.run_async(target.require("REDIS_URL"), timeouts, queue, work)


async def _failed_count(bull: Queue) -> int:
    return int((await bull.getJobCounts("failed")).get("failed", 0))


async def _snapshot(bull: Queue, job_id: str, redact: Redactor) -> JobSnapshot:
    state = str(await bull.getJobState(job_id))
    job = await bull.getJob(job_id)
    if job is None:
        return JobSnapshot(job_id, state, exists=False)
    return JobSnapshot(
        id=job_id,
        state=state,
        attempts_made=int(job.attemptsMade or 0),
        attempts_started=int(job.attemptsStarted or 0),
        processed_on=int(job.processedOn or 0),
        finished_on=int(job.finishedOn or 0),
        failed_reason=redact(str(job.failedReason or "")),
    )


async def _snapshots(bull: Queue, ids: Sequence[str], redact: Redactor
                     ) -> tuple[JobSnapshot, ...]:
    return tuple([await _snapshot(bull, i, redact) for i in ids])


def _job_keys(queue: str, job_id: str) -> list[str]:
    base = probes.key(queue, job_id)
    return [base, *(f"{base}:{suffix}" for suffix in JOB_SUBKEYS)]


async def _keys_naming(connection: Redis, queue: str, ids: Sequence[str]) -> list[str]:
    """The keys that still exist for ``ids`` (job hash and per-job keys), by ``EXISTS``."""
    candidates = [k for job_id in ids for k in _job_keys(queue, job_id)]
    if not candidates:
        return []
    async with connection.pipeline(transaction=False) as pipe:
        for name in candidates:
            pipe.exists(name)
        found = await pipe.execute()
    return [name for name, hit in zip(candidates, found, strict=True) if hit]


async def _queue_keys(connection: Redis, queue: str, budget_s: float) -> list[str]:
    """Every key of ``queue`` by ``SCAN`` (canary queues only: a uniquely named queue)."""
    keys: list[str] = []
    async with asyncio.timeout(budget_s):
        async for name in connection.scan_iter(match=f"{probes.PREFIX}:{queue}:*", count=1000):
            keys.append(str(name))
    return sorted(keys)


async def _orphans(connection: Redis, queue: str, budget_s: float) -> list[str]:
    """Ids of the job hashes of ``queue`` that no state list or set references."""
    prefix = f"{probes.PREFIX}:{queue}:"
    keys = await _queue_keys(connection, queue, budget_s)
    candidates = [k[len(prefix):] for k in keys
                  if ":" not in k[len(prefix):] and k[len(prefix):] not in QUEUE_KEYS]
    if not candidates:
        return []
    async with connection.pipeline(transaction=False) as pipe:
        for job_id in candidates:
            pipe.type(probes.key(queue, job_id))
        types = await pipe.execute()
    hashes = [j for j, kind in zip(candidates, types, strict=True) if str(kind) == "hash"]
    referenced: set[str] = set()
    async with connection.pipeline(transaction=False) as pipe:
        for state in probes.LIST_STATES:
            pipe.lrange(probes.key(queue, state), 0, -1)
        for state in (*probes.SET_STATES, "waiting-children"):
            pipe.zrange(probes.key(queue, state), 0, -1)
        for members in await pipe.execute():
            referenced.update(str(m) for m in members)
    return sorted(j for j in hashes if j not in referenced)


def _require_canary_ids(queue: str, ids: Sequence[str]) -> None:
    foreign = [i for i in ids if not is_canary_job(i)]
    if foreign and not is_canary_queue(queue):
        raise SafetyGateError(
            f"refusing to touch jobs that are not runbook canaries on queue {queue!r}:"
            f" {', '.join(foreign[:5])}; only ids starting {CANARY_PREFIX!r} are ours")


def _require_canary_queue(queue: str, what: str) -> None:
    if not is_canary_queue(queue):
        raise SafetyGateError(
            f"refusing {what} on queue {queue!r}: it acts on every job of the queue, not only"
            f" ours; it runs on canary queues ({CANARY_PREFIX}...) only; pass the canary"
            " job ids instead")


# -- status ------------------------------------------------------------------------------


def status(target: Target, timeouts: Timeouts, queue: str) -> ProbeResult:
    """View Queue Status: BullMQ's job counts by state, cross-checked with ``TYPE`` +
    ``LLEN``/``ZCARD`` (see ``runbook.probes.queues.counts``)."""
    return probes.counts(target, timeouts, queue)


# -- a canary queue with our own worker --------------------------------------------------


class _WorkerThread:
    """A BullMQ ``Worker`` on ``queue`` in its own thread and event loop, with bounded
    socket times and no connection retries; its processor fails jobs on purpose."""

    def __init__(self, target: Target, timeouts: Timeouts, queue: str, mode: CanaryMode
                 ) -> None:
        self.target = target.describe()
        self.url = target.require("REDIS_URL")
        self.timeouts = timeouts
        self.queue = queue
        self.mode = mode
        self.failed_once: set[str] = set()
        self.processed = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name=f"worker-{queue}", daemon=True)

    async def _process(self, job: Any, _token: str) -> dict[str, Any]:
        self.processed += 1
        job_id = str(job.id)
        if self.mode == "fail" or job_id not in self.failed_once:
            self.failed_once.add(job_id)
            raise RuntimeError("runbook canary: failed on purpose")
        return {"canary": True, "attempt": int(job.attemptsMade or 0) + 1}

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = dict(parse_url(self.url))
        # Longer than the worker's longest blocking wait (BZPOPMIN of at most 10 s).
        options.update(socket_connect_timeout=self.timeouts.connect,
                       socket_timeout=max(self.timeouts.read, 12.0))
        return options

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        worker = Worker(self.queue, self._process, {
            "connection": self._options(), "prefix": probes.PREFIX, "autorun": False,
            "name": probes.CLIENT_NAME, "drainDelay": 1, "concurrency": 4,
        })
        for conn in (worker.redisConnection, worker.blockingRedisConnection):
            if conn is not None:  # BullMQ's default: 20 retries with backoff, minutes
                conn.conn.set_retry(Retry(NoBackoff(), 0))
        running = asyncio.ensure_future(worker.run())
        self._ready.set()
        await self._stop.wait()
        closing = asyncio.ensure_future(worker.close(force=True))
        await asyncio.wait({closing, running}, timeout=self.timeouts.connect + self.timeouts.read)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()
            if not any(not t.done() for t in asyncio.all_tasks(loop)):
                loop.close()

    def start(self) -> None:
        """Start the worker; raises ``QueueOperationFailed`` when it cannot."""
        self._thread.start()
        if not self._ready.wait(self.timeouts.connect + self.timeouts.read) or self._error:
            reason = describe_error(self._error) if self._error else "did not start in time"
            raise QueueOperationFailed(self.target, f"the canary worker on {self.queue}: {reason}",
                                       "a worker serving the canary queue")

    def stop(self) -> bool:
        """Close the worker; True when its thread ended within the bounded wait."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(2 * (self.timeouts.connect + self.timeouts.read))
        return not self._thread.is_alive()


@contextlib.contextmanager
def canary_queue(target: Target, timeouts: Timeouts, mode: CanaryMode = "fail",
                 on_removed: Callable[[Cleared], None] | None = None
                 ) -> Iterator[CanaryQueue]:
    """A fresh queue ``runbook-canary-<hex>`` served by a worker of our own (``mode``),
    for showing whole-set commands on a real failed set without touching real queues.

    Afterwards, also on failure: the worker is closed, the queue obliterated and any key
    left deleted; ``on_removed`` receives that record. Raises ``QueueOperationFailed`` when
    keys of the canary queue remain (the block's own error, if any, wins)."""
    name = f"{CANARY_PREFIX}{uuid.uuid4().hex[:12]}"
    worker = _WorkerThread(target, timeouts, name, mode)
    failure: BaseException | None = None
    try:
        worker.start()
        yield CanaryQueue(name, mode)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        stopped = worker.stop()
        try:
            removal = delete_canary_queue(target, timeouts, name)
            if not stopped:
                removal = Cleared(**{**removal.__dict__, "problems": (
                    *removal.problems, "the canary worker did not stop in time")})
            if on_removed is not None:
                on_removed(removal)
            if removal.keys_left:
                raise QueueOperationFailed(
                    target.describe(), f"keys of the canary queue remain: {removal.keys_left}",
                    "no key of the canary queue left", removal.activities)
        except Exception as exc:
            if failure is None:
                raise
            failure.add_note(f"removing the canary queue {name} also failed: {exc}")


def delete_canary_queue(target: Target, timeouts: Timeouts, queue: str) -> Cleared:
    """Obliterate a canary queue (BullMQ's ``Queue.obliterate(force=True)``), delete any key
    left, and list what still exists (``keys_left``, empty when clean). Raises
    ``SafetyGateError`` for a queue that is not a canary queue."""
    _require_canary_queue(queue, "deleting the whole queue")
    redact = Redactor(target.secret_values())
    watch = Stopwatch()

    async def work(bull: Queue, connection: Redis) -> Cleared:
        calls: list[Activity] = []
        problems: list[str] = []
        step = Stopwatch()
        budget = timeouts.connect + 2 * timeouts.read
        before = await _queue_keys(connection, queue, budget)
        try:
            async with asyncio.timeout(budget):
                await bull.obliterate(force=True)
            calls.append(_activity("obliterate the canary queue",
                                   ("BullMQ", "Queue.obliterate", queue, "force=True"), step,
                                   redact, output={"keys_before": len(before)}))
        except Exception as exc:
            calls.append(_activity("obliterate the canary queue",
                                   ("BullMQ", "Queue.obliterate", queue, "force=True"), step,
                                   redact, ok=False, error=describe_error(exc)))
        step = Stopwatch()
        rest = await _queue_keys(connection, queue, budget)
        if rest:
            await connection.delete(*rest)
        left = await _queue_keys(connection, queue, budget)
        calls.append(_activity("delete what obliterate left", ("redis-cli", "DEL", "..."),
                               step, redact, ok=not left,
                               output={"deleted": rest, "left": left}))
        if left:
            problems.append(f"{len(left)} key(s) of {queue} remain")
        return Cleared(queue=queue, timing=watch.timing(), activities=tuple(calls),
                       problems=tuple(problems), method="Queue.obliterate(force=True)",
                       removed_ids=(), failed_before=0, failed_after=0, orphans=0,
                       keys_left=tuple(left))

    return _run(target, timeouts, queue, work)


# -- failed canary jobs ------------------------------------------------------------------


def _job_for(queue: str) -> tuple[str, Mapping[str, Any]]:
    if is_canary_queue(queue):
        return CANARY_FAIL_JOB, {"runbook": "canary: failed on purpose by our own worker"}
    if queue in REJECTED_JOBS:
        return REJECTED_JOBS[queue]
    raise SafetyGateError(
        f"no job is known that the worker of {queue!r} rejects without side effects; use"
        f" one of {', '.join(REJECTED_JOBS)} or a canary queue")


def fail_canary_jobs(target: Target, timeouts: Timeouts, queue: str, n: int, *,
                     within_s: float = 15.0) -> FailedJobs:
    """Add ``n`` canary jobs (attempts 1) the queue's worker fails, and wait at most
    ``within_s`` until all are ``failed``.

    Records their snapshots (the worker's failure reason included), BullMQ's failed count
    and ``ZCARD`` before and after, and how long the worker took. When they do not all fail
    in time the jobs are removed and ``QueueOperationFailed`` is raised naming their states;
    ``SafetyGateError`` for a queue whose rejected job is unknown."""
    if n < 1:
        raise ValueError("n must be at least 1")
    name, data = _job_for(queue)
    batch = uuid.uuid4().hex[:12]
    ids = tuple(f"{CANARY_PREFIX}{batch}-{i}" for i in range(1, n + 1))
    redact = Redactor(target.secret_values())
    watch = Stopwatch()

    async def work(bull: Queue, connection: Redis) -> FailedJobs:
        calls: list[Activity] = []
        failed_before = await _failed_count(bull)
        step = Stopwatch()
        added: list[str] = []
        try:
            for job_id in ids:
                await bull.add(name, dict(data), {"jobId": job_id, "attempts": 1})
                added.append(job_id)
            calls.append(_activity(f"add {n} canary jobs the worker rejects",
                                   ("BullMQ", "Queue.add", name, "attempts=1", *ids), step,
                                   redact, output={"queue": queue, "data": dict(data)}))
            step = Stopwatch()

            async def job_states() -> dict[str, str]:
                return {i: str(await bull.getJobState(i)) for i in ids}

            async with asyncio.timeout(within_s):  # also cuts a call that hangs
                failing = await wait_until_async(
                    job_states, timeout=within_s, interval=_POLL_S,
                    accept=lambda states: all(s == "failed" for s in states.values()),
                    errors=())
            if not failing.ok:
                raise TimeoutError
            waited = step.seconds
            jobs = await _snapshots(bull, ids, redact)
            calls.append(_activity("wait until the worker fails them",
                                   ("BullMQ", "Queue.getJobState", *ids), step, redact,
                                   output={j.id: j.failed_reason for j in jobs}))
            failed_after = await _failed_count(bull)
            zcard = int(await connection.zcard(probes.key(queue, "failed")))
        except BaseException as exc:
            seen = {i: str(await bull.getJobState(i)) for i in added} if added else {}
            cleanup = await _remove(bull, connection, queue, added, redact)
            calls.extend(cleanup.activities)
            if isinstance(exc, TimeoutError):
                raise QueueOperationFailed(
                    target.describe(), f"after {within_s:g} s the canary jobs were {seen}",
                    f"the worker fails {n} canary jobs on {queue} within {within_s:g} s",
                    tuple(calls)) from None
            raise
        return FailedJobs(
            queue=queue, timing=watch.timing(), activities=tuple(calls), problems=(),
            job_name=name, ids=ids, jobs=jobs, failed_before=failed_before,
            failed_after=failed_after, zcard_after=zcard, time_to_fail_s=waited,
        )

    return _run(target, timeouts, queue, work)


async def _remove(bull: Queue, connection: Redis, queue: str, ids: Sequence[str],
                  redact: Redactor) -> Cleared:
    """``Queue.remove`` each id (an active one is locked: retried for a few seconds), then
    list the keys still naming them."""
    step = Stopwatch()
    removed: list[str] = []
    errors: list[str] = []
    for job_id in ids:

        async def gone(job_id: str = job_id) -> bool:
            return bool(await bull.remove(job_id)
                        or not await connection.exists(probes.key(queue, job_id)))

        try:
            async with asyncio.timeout(5.0):  # also cuts a call that hangs
                waited = await wait_until_async(gone, timeout=5.0, interval=0.1, errors=())
            if not waited.ok:
                raise TimeoutError
            removed.append(job_id)
        except Exception as exc:
            errors.append(f"{job_id}: {describe_error(exc)}")
    left = await _keys_naming(connection, queue, ids)
    problems = tuple(errors) + ((f"keys left: {', '.join(left)}",) if left else ())
    call = _activity("remove the canary jobs", ("BullMQ", "Queue.remove", *ids), step, redact,
                     ok=not problems, output={"removed": removed, "keys_left": left},
                     error="; ".join(problems))
    return Cleared(queue=queue, timing=step.timing(), activities=(call,), problems=problems,
                   method="Queue.remove", removed_ids=tuple(removed), failed_before=0,
                   failed_after=0, orphans=0, keys_left=tuple(left))


def remove_jobs(target: Target, timeouts: Timeouts, queue: str, ids: Sequence[str]
                ) -> Cleared:
    """Remove canary jobs by id, whatever their state (``Queue.remove``), and verify no key
    names them any more (``keys_left``). Raises ``SafetyGateError`` for an id that is not a
    canary's on a real queue."""
    _require_canary_ids(queue, ids)
    redact = Redactor(target.secret_values())

    async def work(bull: Queue, connection: Redis) -> Cleared:
        return await _remove(bull, connection, queue, ids, redact)

    return _run(target, timeouts, queue, work)


@contextlib.contextmanager
def failed_canary_jobs(target: Target, timeouts: Timeouts, queue: str, n: int, *,
                       within_s: float = 15.0,
                       on_removed: Callable[[Cleared], None] | None = None
                       ) -> Iterator[FailedJobs]:
    """``fail_canary_jobs``, yield them, and always remove them afterwards (whatever state
    they are in by then). Raises ``QueueOperationFailed`` when keys naming them remain."""
    failed = fail_canary_jobs(target, timeouts, queue, n, within_s=within_s)
    error: BaseException | None = None
    try:
        yield failed
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            removal = remove_jobs(target, timeouts, queue, failed.ids)
            if on_removed is not None:
                on_removed(removal)
            if removal.keys_left:
                raise QueueOperationFailed(
                    target.describe(), f"keys naming canary jobs remain: {removal.keys_left}",
                    "every canary job removed", removal.activities)
        except Exception as exc:
            if error is None:
                raise
            error.add_note(f"removing the canary jobs on {queue} also failed: {exc}")


# -- clear -------------------------------------------------------------------------------


def clear_failed(target: Target, timeouts: Timeouts, queue: str, *,
                 only_ids: Sequence[str] | None = None, limit: int = 1000) -> Cleared:
    """Clear Failed Jobs the BullMQ way: ``Queue.remove`` for each of ``only_ids`` that is
    failed, or, on a canary queue only, ``Queue.clean(0, limit, "failed")``.

    Records the removed ids, BullMQ's failed count before and after, the keys still naming
    a removed job and (on a canary queue) the orphaned job hashes: both should be none.
    Raises ``SafetyGateError`` for a whole-set clean of a real queue or a non-canary id."""
    if only_ids is None:
        _require_canary_queue(queue, "Queue.clean(0, limit, 'failed')")
    else:
        _require_canary_ids(queue, only_ids)
    redact = Redactor(target.secret_values())
    watch = Stopwatch()

    async def work(bull: Queue, connection: Redis) -> Cleared:
        calls: list[Activity] = []
        problems: list[str] = []
        failed_before = await _failed_count(bull)
        step = Stopwatch()
        if only_ids is None:
            method = f"Queue.clean(0, {limit}, 'failed')"
            removed = [str(i) for i in await bull.clean(0, limit, "failed")]
            calls.append(_activity("clean the failed set", ("BullMQ", "Queue.clean", "0",
                                   str(limit), "failed"), step, redact,
                                   output={"removed": removed}))
        else:
            method = "Queue.remove (failed canary jobs by id)"
            states = {i: str(await bull.getJobState(i)) for i in only_ids}
            not_failed = {i: s for i, s in states.items() if s != "failed"}
            if not_failed:
                problems.append(f"not failed, left alone: {not_failed}")
            removal = await _remove(bull, connection, queue,
                                    [i for i in only_ids if i not in not_failed], redact)
            removed = list(removal.removed_ids)
            calls.extend(removal.activities)
            problems.extend(removal.problems)
        failed_after = await _failed_count(bull)
        left = await _keys_naming(connection, queue, removed)
        orphans = (await _orphans(connection, queue, timeouts.connect + 2 * timeouts.read)
                   if is_canary_queue(queue) else [])
        if left:
            problems.append(f"keys still naming removed jobs: {', '.join(left)}")
        if orphans:
            problems.append(f"{len(orphans)} orphaned job hash(es): {', '.join(orphans)}")
        return Cleared(queue=queue, timing=watch.timing(), activities=tuple(calls),
                       problems=tuple(dict.fromkeys(problems)), method=method,
                       removed_ids=tuple(removed), failed_before=failed_before,
                       failed_after=failed_after, orphans=len(orphans), keys_left=tuple(left))

    return _run(target, timeouts, queue, work)


def runbook_del_failed(target: Target, timeouts: Timeouts, queue: str = "email", *,
                       jobs: int = 3, within_s: float = 15.0) -> DelDemonstration:
    """Show what the runbook's Clear Failed Jobs command, ``DEL bull:<queue>:failed``, does,
    without touching ``queue``: the same command runs on a fresh canary queue holding
    ``jobs`` real failed jobs (failed by a worker of our own), and what it leaves is
    measured: job hashes that nothing references any more and BullMQ no longer counts.

    Then removes those orphans and the canary queue (also on failure); ``keys_left`` lists
    anything of it still there. ``stands_for`` is the command as typed for ``queue``."""
    redact = Redactor(target.secret_values())
    watch = Stopwatch()
    removals: list[Cleared] = []
    with canary_queue(target, timeouts, "fail", on_removed=removals.append) as canary:
        name = canary.name
        made = fail_canary_jobs(target, timeouts, name, jobs, within_s=within_s)
        failed_key = probes.key(name, "failed")

        async def work(bull: Queue, connection: Redis) -> DelDemonstration:
            calls: list[Activity] = list(made.activities)
            problems: list[str] = []
            failed_before = await _failed_count(bull)
            zcard_before = int(await connection.zcard(failed_key))
            step = Stopwatch()
            try:
                llen: str = str(await connection.llen(failed_key))
            except ResponseError as exc:
                llen = str(exc)
            calls.append(_activity("the runbook's View Queue Status", ("redis-cli", "LLEN",
                                   failed_key), step, redact, ok=False, output=llen,
                                   error=llen if llen.startswith("WRONGTYPE") else ""))
            step = Stopwatch()
            deleted = int(await connection.delete(failed_key))
            calls.append(_activity("the runbook's Clear Failed Jobs", ("redis-cli", "DEL",
                                   failed_key), step, redact, output=str(deleted)))
            failed_after = await _failed_count(bull)
            step = Stopwatch()
            orphan_ids = await _orphans(connection, name, timeouts.connect + 2 * timeouts.read)
            states = {i: str(await bull.getJobState(i)) for i in made.ids}
            readable = sum([await bull.getJob(i) is not None for i in made.ids])
            size: int | None = 0
            try:
                for job_id in orphan_ids:
                    size = (size or 0) + int(
                        await connection.memory_usage(probes.key(name, job_id)) or 0)
            except ResponseError:  # MEMORY USAGE disabled on some managed Redis
                size = None
            calls.append(_activity("find what the DEL left", ("redis-cli", "SCAN", "0",
                                   "MATCH", f"bull:{name}:*"), step, redact,
                                   output={"orphans": orphan_ids, "states": states}))
            cleanup = await _remove(bull, connection, name, orphan_ids, redact)
            calls.extend(cleanup.activities)
            if not llen.startswith("WRONGTYPE"):
                problems.append(f"LLEN on the failed set answered {llen!r}, not WRONGTYPE")
            if zcard_before != jobs or failed_before != jobs:
                problems.append(f"before the DEL BullMQ counted {failed_before} failed and"
                                f" ZCARD {zcard_before}, expected {jobs}")
            problems.extend(cleanup.problems)
            return DelDemonstration(
                queue=name, timing=watch.timing(), activities=tuple(calls),
                problems=tuple(problems), command=f"DEL {failed_key}",
                stands_for=f"DEL {probes.key(queue, 'failed')}", jobs=jobs,
                failed_before=failed_before,
                zcard_before=zcard_before, llen_reply=llen, del_reply=deleted,
                failed_after_del=failed_after, orphans=len(orphan_ids),
                orphan_ids=tuple(orphan_ids), orphan_bytes=size, states_after_del=states,
                still_readable=readable, orphans_removed=len(cleanup.removed_ids),
                keys_left=(),
            )

        try:
            record = _run(target, timeouts, name, work)
        except BaseException:
            remove_jobs(target, timeouts, name, made.ids)
            raise
    queue_removal = removals[0] if removals else None
    left = queue_removal.keys_left if queue_removal else ("the canary queue was not removed",)
    return DelDemonstration(**{
        **record.__dict__,
        "timing": watch.timing(),
        "activities": (*record.activities,
                       *(queue_removal.activities if queue_removal else ())),
        "keys_left": left,
        "problems": (*record.problems, *(queue_removal.problems if queue_removal else ())),
    })


# -- retry -------------------------------------------------------------------------------


def _left_failed(before: JobSnapshot, now: JobSnapshot) -> bool:
    """Moved out of the failed set, or run again since (and failed again)."""
    return (now.state != "failed" or now.attempts_started > before.attempts_started
            or now.finished_on != before.finished_on)


def _outcome(before: JobSnapshot, now: JobSnapshot) -> str:
    if not now.exists:
        return "gone"
    if now.state == "failed":
        return "failed again" if _left_failed(before, now) else "still failed"
    return now.state


def retry_failed(target: Target, timeouts: Timeouts, queue: str,
                 ids: Sequence[str] | None = None, *, within_s: float = 15.0) -> Retried:
    """Retry Failed Jobs the BullMQ way: ``Job.retry("failed")`` for each of ``ids``, or,
    on a canary queue only, ``Queue.retryJobs({"state": "failed"})``; then wait at most
    ``within_s`` until each has left the failed set and been run again to an end.

    Records snapshots before and after, the outcome per job (``completed`` when the retry
    succeeded; ``failed again`` when a worker ran it again and it failed again, as a job
    the worker rejects does) and the time until all had left. Raises ``SafetyGateError``
    for a whole-queue retry of a real queue or a non-canary id."""
    if ids is None:
        _require_canary_queue(queue, "Queue.retryJobs")
    else:
        _require_canary_ids(queue, ids)
    redact = Redactor(target.secret_values())
    watch = Stopwatch()

    async def work(bull: Queue, connection: Redis) -> Retried:
        calls: list[Activity] = []
        problems: list[str] = []
        job_ids = (list(ids) if ids is not None
                   else [str(j.id) for j in await bull.getFailed(0, -1)])
        before = await _snapshots(bull, job_ids, redact)
        failed_before = await _failed_count(bull)
        not_failed = [s.id for s in before if s.state != "failed"]
        if not_failed:
            problems.append(f"not in the failed set before the retry: {', '.join(not_failed)}")
        step = Stopwatch()
        if ids is None:
            method = "Queue.retryJobs({'state': 'failed'})"
            await bull.retryJobs({"state": "failed"})
            command: tuple[str, ...] = ("BullMQ", "Queue.retryJobs", "state=failed")
        else:
            method = "Job.retry('failed')"
            for snap in before:
                if snap.state != "failed":
                    continue
                job = await bull.getJob(snap.id)
                if job is not None:
                    await job.retry("failed")
            command = ("BullMQ", "Job.retry", "failed", *job_ids)
        calls.append(_activity("retry the failed jobs", command, step, redact,
                               output={"jobs": job_ids}))
        step = Stopwatch()
        earlier = {s.id: s for s in before}
        left_at: float | None = None

        async def settled() -> bool:
            """Whether every job left the failed set and has run again (or is gone)."""
            nonlocal left_at
            now = await _snapshots(bull, job_ids, redact)
            gone = [s for s in now if _left_failed(earlier[s.id], s)]
            if left_at is None and len(gone) == len(now):
                left_at = step.seconds
            return left_at is not None and all(
                s.state in ("completed", "failed", "unknown") for s in now)

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):  # also cuts a call that hangs
                await wait_until_async(settled, timeout=within_s, interval=_POLL_S, errors=())
        after = await _snapshots(bull, job_ids, redact)
        outcomes = {s.id: _outcome(earlier[s.id], s) for s in after}
        left = tuple(s.id for s in after if _left_failed(earlier[s.id], s))
        calls.append(_activity("wait until they leave the failed set",
                               ("BullMQ", "Queue.getJobState", *job_ids), step, redact,
                               output=outcomes))
        stuck = [i for i in job_ids if i not in left]
        if stuck:
            problems.append(f"still failed, never run again after {within_s:g} s:"
                            f" {', '.join(stuck)}")
        return Retried(
            queue=queue, timing=watch.timing(), activities=tuple(calls),
            problems=tuple(problems), method=method, ids=tuple(job_ids), before=before,
            after=after, left_failed=left, outcomes=outcomes, failed_before=failed_before,
            failed_after=await _failed_count(bull), time_to_leave_s=left_at,
        )

    return _run(target, timeouts, queue, work)


# -- the runbook's "restart retries failed jobs" -----------------------------------------


def restart_does_not_retry(target: Target, timeouts: Timeouts, queue: str,
                           ids: Sequence[str], restart: Callable[[], object], *,
                           service: str = "worker", observe_s: float = 3.0,
                           within_s: float = 15.0) -> RestartLeavesFailed:
    """What the runbook's Retry Failed Jobs ("restart worker, will retry failed jobs
    automatically") really does to the failed jobs ``ids``.

    Snapshots the jobs and BullMQ's failed count, calls ``restart`` (the platform's restart
    of ``service``; an ``Activity`` it returns is kept), proves the restarted worker
    processes jobs with a canary round trip (at most ``within_s``), watches the jobs for
    ``observe_s`` more, and snapshots again. A problem is recorded when a job was not failed
    before, when the worker does not process jobs after the restart, or when a job left the
    failed set (the runbook would then be right). Changes nothing itself."""
    redact = Redactor(target.secret_values())
    watch = Stopwatch()

    async def first(bull: Queue, _connection: Redis) -> tuple[tuple[JobSnapshot, ...], int]:
        return await _snapshots(bull, ids, redact), await _failed_count(bull)

    before, failed_before = _run(target, timeouts, queue, first)
    step = Stopwatch()
    try:
        answer = restart()
    except Exception as exc:
        answer = Activity(name=f"restart {service}", command=("restart", service),
                          timing=step.timing(), error=redact(describe_error(exc)))
    restarted = answer if isinstance(answer, Activity) else Activity(
        name=f"restart {service}", command=("restart", service), timing=step.timing())
    worker_after = probes.canary_round_trip(target, timeouts, queue, within_s)
    earlier = {s.id: s for s in before}

    async def watch_jobs(bull: Queue, _connection: Redis
                         ) -> tuple[tuple[JobSnapshot, ...], int, float, set[str]]:
        """Poll the jobs for ``observe_s``; a job seen out of the failed set even once
        counts as moved, though it may be back (failed again) at the end."""
        started = time.monotonic()
        moved: set[str] = set()

        async def look() -> set[str]:
            for snap in await _snapshots(bull, ids, redact):
                if _left_failed(earlier[snap.id], snap):
                    moved.add(snap.id)
            return moved

        # No value ends this wait early: the jobs are watched for the whole ``observe_s``.
        await wait_until_async(look, timeout=observe_s, interval=0.2, accept=lambda _: False,
                               describe=lambda m: f"{len(m)} moved", errors=())
        return (await _snapshots(bull, ids, redact), await _failed_count(bull),
                time.monotonic() - started, moved)

    after, failed_after, observed, moved = _run(target, timeouts, queue, watch_jobs)
    reprocessed = tuple(s.id for s in after
                        if s.id in moved or _left_failed(earlier[s.id], s))
    still_failed = tuple(s.id for s in after if s.state == "failed")
    problems: list[str] = []
    if not restarted.ok:
        problems.append(f"the restart of {service} failed: {restarted.error}")
    not_failed = [s.id for s in before if s.state != "failed"]
    if not_failed:
        problems.append(f"not failed before the restart: {', '.join(not_failed)}")
    if not worker_after.ok:
        problems.append(f"after the restart the worker did not process a canary job:"
                        f" {worker_after.problem}")
    if reprocessed:
        problems.append(f"jobs left the failed set after the restart: {', '.join(reprocessed)}")
    return RestartLeavesFailed(
        queue=queue, timing=watch.timing(), activities=(restarted,),
        problems=tuple(problems), ids=tuple(ids), before=before, after=after,
        failed_before=failed_before, failed_after=failed_after, restart=restarted,
        worker_after=worker_after, observed_s=round(observed, 3), reprocessed=reprocessed,
        still_failed=still_failed,
    )
