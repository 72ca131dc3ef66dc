"""The BullMQ queues ``email`` and ``release-process``: job counts, workers, a canary job.

BullMQ keeps ``wait``, ``active`` and ``paused`` as lists but ``failed``, ``completed``,
``delayed`` and ``prioritized`` as sorted sets, so the runbook's ``LLEN bull:email:failed``
fails with WRONGTYPE. Counts come from BullMQ's own ``getJobCounts`` and are checked against
type-aware commands (``LLEN`` on lists, ``ZCARD`` on sorted sets).

Every probe runs BullMQ's asyncio API under ``asyncio.run`` inside the probe body, on a
``redis.asyncio`` client built here with bounded timeouts and no retries: BullMQ given a URL
builds its own client with 20 exponential retries, which can hang for minutes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from bullmq import Queue
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runbook import reachability
from runbook.clients import REDIS_CLIENT_NAME
from runbook.clients import async_redis_client as async_client
from runbook.config import Target
from runbook.probes import Verdict, blocked, describe_error, run_probe
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts
from runbook.wait import wait_until_async

T = TypeVar("T")

#: LegacyVideo's queues.
QUEUES: tuple[str, ...] = ("email", "release-process")
#: BullMQ's key prefix.
PREFIX = "bull"
#: States BullMQ keeps in lists, and in sorted sets.
LIST_STATES: tuple[str, ...] = ("wait", "active", "paused")
SET_STATES: tuple[str, ...] = ("failed", "completed", "delayed", "prioritized")
STATES: tuple[str, ...] = (*LIST_STATES, *SET_STATES)
#: The name of the job the worker completes as a no-op (``{"pong": true, ...}``).
CANARY_JOB = "canary"
#: Canary job ids start with this, so a left-behind canary is recognisable.
CANARY_ID_PREFIX = "runbook-canary-"
#: How often the canary's state is read while waiting for it.
POLL_INTERVAL_S = 0.02
#: How often a canary no worker has taken yet looks for a worker waiting for jobs or
#: working one (``_no_worker_for``).
LOOK_INTERVAL_S = 0.1
#: The Redis client name of the runbook's own connections (never mistaken for a worker).
CLIENT_NAME = REDIS_CLIENT_NAME

# BullMQ's getJobCounts names the wait list "waiting" in its answer.
_BULLMQ_NAMES: dict[str, str] = {"wait": "waiting"}
_EXPECTED_TYPE: dict[str, str] = {
    **{state: "list" for state in LIST_STATES},
    **{state: "zset" for state in SET_STATES},
}


def open_queue(name: str, connection: Redis) -> Queue:
    """A BullMQ ``Queue`` on ``connection`` (closing the queue closes the connection)."""
    return Queue(name, {"connection": connection, "prefix": PREFIX})


def key(queue: str, state: str) -> str:
    """The Redis key BullMQ keeps ``state`` of ``queue`` in (``bull:email:failed``)."""
    return f"{PREFIX}:{queue}:{state}"


def run_async(
    url: str, timeouts: Timeouts, queue: str,
    work: Callable[[Queue, Redis], Awaitable[T]],
) -> T:
    """Run ``work(queue, client)`` in a fresh event loop; close the queue and client after."""

    async def main() -> T:
        connection = async_client(url, timeouts)
        bull = open_queue(queue, connection)
        try:
            return await work(bull, connection)
        finally:
            try:
                async with asyncio.timeout(timeouts.connect + timeouts.read):
                    await bull.close()
            except Exception:
                await connection.connection_pool.disconnect()

    return asyncio.run(main())


# -- counts ------------------------------------------------------------------------------


async def _bullmq_counts(bull: Queue) -> dict[str, int]:
    answer = await bull.getJobCounts(*(_BULLMQ_NAMES.get(s, s) for s in STATES))
    return {state: int(answer.get(_BULLMQ_NAMES.get(state, state), 0)) for state in STATES}


async def _raw_counts(connection: Redis, queue: str) -> tuple[dict[str, int], dict[str, str]]:
    """``TYPE`` of each state's key, then ``LLEN``/``ZCARD`` as the type says (0 if absent)."""
    async with connection.pipeline(transaction=False) as pipe:
        for state in STATES:
            pipe.type(key(queue, state))
        types = [str(t) for t in await pipe.execute()]
    kinds = dict(zip(STATES, types, strict=True))
    counts: dict[str, int] = {}
    async with connection.pipeline(transaction=True) as pipe:
        counted = []
        for state, kind in kinds.items():
            if kind == "list":
                pipe.llen(key(queue, state))
            elif kind == "zset":
                pipe.zcard(key(queue, state))
            else:
                counts[state] = 0
                continue
            counted.append(state)
        if counted:
            for state, value in zip(counted, await pipe.execute(), strict=True):
                counts[state] = int(value)
    return {s: counts[s] for s in STATES}, kinds


def counts(target: Target, timeouts: Timeouts, queue: str, *, attempts: int = 3
           ) -> ProbeResult:
    """Job counts of ``queue`` by state from BullMQ's ``getJobCounts``, cross-checked with
    ``TYPE`` + ``LLEN``/``ZCARD``. Records both, each key's type, the failed percentage of
    finished jobs (``failed_percent``) and Redis's eviction policy. Fails when a key has a type
    BullMQ does not use or the two counts still differ after ``attempts`` reads (jobs move
    between the reads of a busy queue, so a difference is read again)."""
    expected = (f"BullMQ's counts of {queue} equal LLEN on {', '.join(LIST_STATES)} and ZCARD"
                f" on {', '.join(SET_STATES)}")
    url = target.require("REDIS_URL")

    async def work(bull: Queue, connection: Redis) -> Verdict:
        bullmq: dict[str, int] = {}
        raw: dict[str, int] = {}
        kinds: dict[str, str] = {}
        tries = 0
        for tries in range(1, max(1, attempts) + 1):  # noqa: B007 - recorded below
            raw, kinds = await _raw_counts(connection, queue)
            wrong = [
                f"{key(queue, s)} is a {kinds[s]}, BullMQ keeps a {_EXPECTED_TYPE[s]}"
                for s in STATES if kinds[s] not in ("none", _EXPECTED_TYPE[s])
            ]
            if wrong:  # BullMQ's own script would fail on it with WRONGTYPE
                return Verdict(False, expected, "; ".join(wrong) + " (not a BullMQ queue?)",
                               {"queue": queue, "raw_counts": raw, "key_types": kinds},
                               advice="queues")
            bullmq = await _bullmq_counts(bull)
            if bullmq == raw:
                break
        try:
            memory = await connection.info("memory")
        except ResponseError:  # INFO disabled on some managed Redis
            memory = {}
        finished = bullmq["failed"] + bullmq["completed"]
        observed: dict[str, Any] = {
            "queue": queue,
            **bullmq,
            "finished": finished,
            "failed_percent": round(100.0 * bullmq["failed"] / finished, 2) if finished else 0.0,
            "bullmq_counts": bullmq,
            "raw_counts": raw,
            "key_types": kinds,
            "reads": tries,
            "maxmemory_policy": memory.get("maxmemory_policy"),
        }
        differ = [f"{s} {bullmq[s]} vs {raw[s]}" for s in STATES if bullmq[s] != raw[s]]
        if differ:
            return Verdict(False, expected, "BullMQ's counts differ from the type-aware"
                           f" commands after {tries} reads: {', '.join(differ)}", observed,
                           advice="queues")
        return Verdict(True, expected, observed=observed)

    return run_probe("queues", f"{queue} counts", target, timeouts,
                     lambda: run_async(url, timeouts, queue, work), expected=expected)


def runbook_llen_failed(target: Target, timeouts: Timeouts, queue: str = "email"
                        ) -> ProbeResult:
    """Run the runbook's ``LLEN bull:<queue>:failed`` as typed and record its reply.

    On a queue with failed jobs the key is a sorted set and Redis answers WRONGTYPE. Passes
    when the reply is what BullMQ's layout predicts: WRONGTYPE on a sorted set, 0 when the key
    is absent. Records ``wrongtype`` (the runbook defect shown), the key's type and BullMQ's
    own failed count (``ZCARD``)."""
    failed_key = key(queue, "failed")
    expected = (f"LLEN {failed_key}: WRONGTYPE when failed jobs exist (a sorted set),"
                " 0 when there are none")
    url = target.require("REDIS_URL")

    async def work(bull: Queue, connection: Redis) -> Verdict:
        kind = str(await connection.type(failed_key))
        observed: dict[str, Any] = {"queue": queue, "command": f"LLEN {failed_key}",
                                    "key_type": kind}
        try:
            reply: Any = await connection.llen(failed_key)
            observed.update(reply=int(reply), wrongtype=False)
        except ResponseError as exc:
            observed.update(reply=str(exc), wrongtype=str(exc).startswith("WRONGTYPE"),
                            error=str(exc))
        observed["bullmq_failed"] = int((await bull.getJobCounts("failed")).get("failed", 0))
        if kind == "zset":
            if observed["wrongtype"]:
                return Verdict(True, expected, observed=observed)
            return Verdict(False, expected, f"LLEN answered {observed['reply']!r} on a sorted"
                           " set", observed, advice="queues")
        if kind == "none":
            if observed["reply"] == 0:
                return Verdict(True, expected, observed=observed)
            return Verdict(False, expected, f"LLEN answered {observed['reply']!r} on a missing"
                           " key", observed, advice="queues")
        return Verdict(False, expected, f"{failed_key} is a {kind}; BullMQ keeps a sorted set"
                       " (not a BullMQ queue?)", observed, advice="queues")

    return run_probe("queues", f"runbook LLEN {queue} failed", target, timeouts,
                     lambda: run_async(url, timeouts, queue, work), expected=expected)


# -- workers -----------------------------------------------------------------------------


def workers(target: Target, timeouts: Timeouts, queue: str) -> ProbeResult:
    """Workers registered on ``queue``: BullMQ's ``getWorkers`` (``CLIENT LIST``, connections
    named ``bull:<queue>...``), keeping only connections on the target's database (BullMQ
    matches names alone). Records the count (a Python BullMQ worker holds two named
    connections), their names, ages and idle times. Fails with none; a Redis without
    ``CLIENT LIST`` gives ``unavailable``."""
    expected = f"at least one worker registered on {queue}"
    url = target.require("REDIS_URL")

    async def work(bull: Queue, connection: Redis) -> Verdict:
        named = await bull.get_workers()
        if len(named) == 1 and named[0].get("name") == "CLIENT LIST not supported":
            return Verdict(False, expected, "this Redis does not allow CLIENT LIST: cannot"
                           " see the workers", {"queue": queue, "unavailable": True},
                           advice="worker")
        # BullMQ matches names only; a worker on another database serves another queue.
        db = str(connection.connection_pool.connection_kwargs.get("db", 0))
        found = [c for c in named if str(c.get("db", db)) == db]
        connections = [
            {
                "name": str(c.get("rawname", "")),
                "age_s": _int(c.get("age")),
                "idle_s": _int(c.get("idle")),
                "last_command": str(c.get("cmd", "")),
            }
            for c in found
        ]
        observed = {
            "queue": queue,
            "db": int(db),
            "count": len(found),
            "names": sorted({str(c["name"]) for c in connections}),
            "connections": connections,
            "on_other_dbs": len(named) - len(found),
        }
        if not found:
            elsewhere = (f"; {len(named) - len(found)} named for it use another Redis database"
                         if len(named) > len(found) else "")
            return Verdict(False, expected, f"no worker is registered on the {queue} queue"
                           f" (no Redis connection on db {db} named for it{elsewhere})",
                           observed, advice="worker")
        return Verdict(True, expected, observed=observed)

    return run_probe("worker", f"{queue} workers", target, timeouts,
                     lambda: run_async(url, timeouts, queue, work), expected=expected)


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


# -- canary ------------------------------------------------------------------------------

_STUCK: dict[str, str] = {
    "waiting": "still waiting: no worker took it",
    "wait": "still waiting: no worker took it",
    "prioritized": "still waiting (prioritized): no worker took it",
    "paused": "still waiting in 'paused': the queue is paused",
    "delayed": "delayed: the worker deferred it (retry backoff?)",
    "active": "still active: a worker took it but did not complete it",
    "waiting-children": "waiting for children it should not have",
    "unknown": "gone: another client removed it",
}


def canary_deadline(timeouts: Timeouts, within_s: float) -> float:
    """The canary's overall deadline: the wait, plus enqueueing and cleaning up."""
    return max(timeouts.deadline, within_s + 2 * (timeouts.connect + timeouts.read) + 1.0)


#: The canary's limit when a run asks every queue's worker at once (the feature's
#: "allowing 10 seconds"); a canary check with another limit sends its own job.
CANARY_WITHIN_S = 10.0


def canary_round_trip(target: Target, timeouts: Timeouts, queue: str,
                      within_s: float = CANARY_WITHIN_S) -> ProbeResult:
    """Add a ``canary`` job to ``queue`` and wait, at most ``within_s``, for a worker to
    complete it with ``{"pong": true}``; then remove it whatever happened.

    Records the round trip as we saw it (``round_trip_ms``), BullMQ's own timestamps
    (``enqueue_to_finish_ms``, ``queued_ms``, ``processing_ms``), the return value, the final
    state and whether the job was removed. Fails naming the state the canary was stuck in.
    The deadline is ``canary_deadline(timeouts, within_s)``.

    In a run that asks every queue's worker at once (``ask_workers``), the canary that
    asked this queue's worker is this check's result: one canary per queue and run."""
    gate = reachability.current()
    # A check allowing longer than the run's asking of the workers is not judged by it.
    judged = gate is not None and within_s <= CANARY_WITHIN_S
    if gate is not None:
        stopped = blocked("queues", f"{queue} canary", target,
                          expected=_canary_expected(queue, within_s),
                          needs=("redis", reachability.worker(queue)) if judged else ("redis",))
        asked = gate.take_canary(queue, target, within_s)
        if asked is not None:
            return asked
        if stopped is not None:
            return stopped
    # Judged in a run's synthetic checks, a worker is asked as any component is: within the
    # read timeout; elsewhere (a drill waiting for a restarted worker) the allowance decides.
    result = _canary_job(target, timeouts, queue, within_s,
                         no_worker_after_s=timeouts.read if judged else None)
    answer_for_the_worker(target, queue, result, by=f"queues {queue} canary",
                          job="canary job")
    return result


def ask_workers(timeouts: Timeouts, within_s: float = CANARY_WITHIN_S
                ) -> reachability.WorkerAsker:
    """Asks the workers of the queues given at once, each with a canary job under
    ``within_s`` (the run's ``reachability.Reachability(ask_workers=...)``)."""

    def ask(target: Target, queues: tuple[str, ...]) -> dict[str, reachability.WorkerAnswer]:
        with ThreadPoolExecutor(max_workers=max(1, len(queues)),
                                thread_name_prefix="worker-canary") as pool:
            futures = {q: pool.submit(_canary_job, target, timeouts, q, within_s,
                                      no_worker_after_s=timeouts.read)
                       for q in queues}
            return {q: _worker_answer(q, f.result(), within_s) for q, f in futures.items()}

    return ask


def _worker_answer(queue: str, result: ProbeResult, within_s: float
                   ) -> reachability.WorkerAnswer:
    taken, detail, waited = _worker_verdict(queue, result, job="canary job")
    return reachability.WorkerAnswer(taken, detail, waited, result, within_s)


def _worker_verdict(queue: str, result: ProbeResult, *, job: str
                    ) -> tuple[bool | None, str, float]:
    """Whether a ``job`` put on ``queue`` was taken by a worker (``None``: it never got
    as far as a worker), said in one line, and how long it waited."""
    state = result.observed.get("state")
    waited = float(result.observed.get("waited_ms", 0)) / 1000
    if not isinstance(state, str) or state == "paused":
        return None, "", waited
    taken = state not in _UNTAKEN
    if taken:
        return taken, f"took the {job}", waited
    detail = f"a {job} on {queue} was still waiting after {waited:.1f} s: no worker took it"
    if isinstance(found := result.observed.get("no_worker"), Mapping):
        detail += f"; {_no_worker_said(queue, found)}"
    return taken, detail, waited


def _canary_expected(queue: str, within_s: float) -> str:
    return f"a worker completes a {CANARY_JOB} job on {queue} within {within_s:g} s"


def _canary_job(target: Target, timeouts: Timeouts, queue: str, within_s: float, *,
                no_worker_after_s: float | None = None) -> ProbeResult:
    """The canary job itself (``canary_round_trip``), asking only Redis.

    With ``no_worker_after_s`` (shorter than ``within_s``), the wait ends then when nothing
    in that time showed a worker able to take the job (``_no_worker_for``): a worker stopped
    or hung does not hold the run for the whole allowance, while one that is busy, rate
    limited or paused is still given all of it."""
    expected = _canary_expected(queue, within_s)
    url = target.require("REDIS_URL")
    job_id = f"{CANARY_ID_PREFIX}{uuid.uuid4().hex}"
    cleanup_budget = timeouts.connect + 2 * timeouts.read

    async def cleanup(bull: Queue, connection: Redis, observed: dict[str, Any]) -> None:
        """Remove the job; an active one is locked, so retry until it finishes or time ends."""
        job_key = f"{PREFIX}:{queue}:{job_id}"

        async def removed() -> bool:
            return await bull.remove(job_id) == 1 and not await connection.exists(job_key)

        try:
            async with asyncio.timeout(cleanup_budget):  # also cuts a call that hangs
                waited = await wait_until_async(removed, timeout=cleanup_budget, interval=0.1,
                                                errors=())
            if not waited.ok:
                raise TimeoutError(waited.summary())
            observed["removed"] = True
        except Exception as exc:
            observed["removed"] = False
            observed["cleanup_error"] = type(exc).__name__

    async def work(bull: Queue, connection: Redis) -> Verdict:
        observed: dict[str, Any] = {"queue": queue, "job_id": job_id, "added": False,
                                    "removed": False}
        try:
            verdict = await _canary(bull, connection, observed)
        except Exception as exc:  # recorded with the cleanup's outcome, not lost
            verdict = Verdict(False, expected, describe_error(exc),
                              {**observed, "error": type(exc).__name__}, advice="redis")
        finally:
            await cleanup(bull, connection, observed)
        observed = {**verdict.observed, **observed}
        if not observed["removed"] and observed["added"] == "unknown":
            observed["cleanup_unverified"] = True
        if not observed["removed"] and observed["added"] is True:
            observed["left_behind"] = f"{PREFIX}:{queue}:{job_id}"
            problem = f"the canary job could not be removed ({observed.get('cleanup_error')})"
            return Verdict(False, expected, "; ".join(p for p in (verdict.problem, problem) if p),
                           observed, advice=verdict.advice or "queues")
        return replace(verdict, observed=observed)

    async def _canary(bull: Queue, connection: Redis, observed: dict[str, Any]) -> Verdict:
        started = time.monotonic()
        try:
            await bull.add(CANARY_JOB, {"by": CLIENT_NAME}, {"jobId": job_id, "attempts": 1})
        except RedisTimeoutError:
            observed["added"] = "unknown"  # the command went out; its reply did not come
            raise
        observed["added"] = True
        observed["enqueue_ms"] = round((time.monotonic() - started) * 1000, 1)

        async def job_state() -> str:
            return str(await bull.getJobState(job_id))

        no_worker: dict[str, Any] = {}
        looking = None
        if no_worker_after_s is not None and no_worker_after_s < within_s:
            looking = asyncio.create_task(_no_worker_for(
                bull, connection, queue, started + no_worker_after_s, no_worker))
        try:
            waited = await wait_until_async(job_state, deadline=started + within_s,
                                            interval=POLL_INTERVAL_S,
                                            accept=lambda s: s in ("completed", "failed"),
                                            stop=lambda: bool(no_worker), errors=())
        finally:
            if looking is not None:
                looking.cancel()
                await asyncio.gather(looking, return_exceptions=True)
        state = waited.value or "unknown"
        elapsed = time.monotonic() - started
        observed.update(state=state, polls=waited.attempts, waited_ms=round(elapsed * 1000, 1))
        if waited.stopped:
            observed["no_worker"] = no_worker
        if state == "completed":
            observed["round_trip_ms"] = round(elapsed * 1000, 1)
        job = await bull.getJob(job_id)
        if job is not None:
            if job.processedOn and job.timestamp:
                observed["queued_ms"] = job.processedOn - job.timestamp
            if job.finishedOn and job.processedOn:
                observed["processing_ms"] = job.finishedOn - job.processedOn
            if job.finishedOn and job.timestamp:
                observed["enqueue_to_finish_ms"] = job.finishedOn - job.timestamp
            observed["returnvalue"] = job.returnvalue
            observed["attempts_made"] = job.attemptsMade
            if state == "failed":
                observed["failed_reason"] = str(getattr(job, "failedReason", "") or "")
        if state == "failed":
            return Verdict(False, expected, f"the worker failed the canary job:"
                           f" {observed.get('failed_reason') or 'no reason given'}", observed,
                           advice="queues")
        if state != "completed":
            what = _STUCK.get(state, f"in state {state!r}")
            why = f"; {_no_worker_said(queue, no_worker)}" if waited.stopped else ""
            return Verdict(False, expected, f"the canary job is {what} after"
                           f" {elapsed:.1f} s{why}", observed, advice="worker")
        if elapsed > within_s:
            return Verdict(False, expected, f"the canary job completed after {elapsed:.1f} s,"
                           f" over the {within_s:g} s allowed", observed, advice="worker")
        value = observed.get("returnvalue")
        if not (isinstance(value, Mapping) and value.get("pong") is True):
            return Verdict(False, expected, f"the canary job completed but returned {value!r},"
                           ' not {"pong": true}', observed, advice="queues")
        return Verdict(True, expected, observed=observed)

    budget = replace(timeouts, deadline=canary_deadline(timeouts, within_s))
    return run_probe("queues", f"{queue} canary", target, budget,
                     lambda: run_async(url, timeouts, queue, work), expected=expected,
                     needs=("redis",))


#: The states of a canary job no worker took.
_UNTAKEN = frozenset({"waiting", "wait", "prioritized"})


async def _no_worker_for(bull: Queue, connection: Redis, queue: str, until: float,
                         found: dict[str, Any]) -> None:
    """Looks at ``queue``'s workers every ``LOOK_INTERVAL_S`` until ``until`` (a
    ``time.monotonic()`` instant) and fills ``found`` with what was seen when no look
    showed a worker able to take a job: none of the connections named for the queue on the
    target's database blocked waiting for one (BZPOPMIN, where an idle BullMQ worker always
    is but for the instants between two), none of its jobs active, no rate limit and no
    pause holding its workers back. Returns, leaving ``found`` empty, at the first look
    showing any of these, or when this Redis does not allow CLIENT LIST: the canary's own
    allowance then decides.

    A job added to the queue wakes a worker blocked on it, stopped or not: a live one takes
    it (it becomes active) or is blocked again within milliseconds; a stopped one is never
    blocked again. A worker busy with its jobs is not blocked, but its jobs are active."""
    db = str(connection.connection_pool.connection_kwargs.get("db", 0))
    keys = {state: f"{PREFIX}:{queue}:{state}" for state in ("active", "limiter", "meta")}
    seen: dict[str, Any] = {}

    async def look() -> str:
        """``none`` when nothing shows a worker able to take a job, else what does."""
        named = await bull.get_workers()
        if len(named) == 1 and named[0].get("name") == "CLIENT LIST not supported":
            return "unseen"
        mine = [c for c in named if str(c.get("db", db)) == db]
        seen.update(connections=len(mine),
                    last_commands=sorted({str(c.get("cmd", "")) for c in mine}),
                    idle_s=sorted({_int(c.get("idle")) or 0 for c in mine}))
        if any("b" in str(c.get("flags", "")) for c in mine):
            return "waiting"  # a worker waits for jobs: it will take the canary
        if await connection.llen(keys["active"]):
            return "working"
        if await connection.pttl(keys["limiter"]) > 0:
            return "rate limited"
        if await connection.hexists(keys["meta"], "paused"):
            return "paused"
        return "none"

    await asyncio.sleep(LOOK_INTERVAL_S)  # the job's own wake-up first
    looked = await wait_until_async(look, deadline=until, interval=LOOK_INTERVAL_S,
                                    accept=lambda state: state != "none", errors=())
    if not looked.ok and looked.value == "none":
        found.update(looks=looked.attempts, **seen)


def _no_worker_said(queue: str, found: Mapping[str, Any]) -> str:
    """What ``_no_worker_for`` found, in one clause."""
    if not found.get("connections"):
        return f"no worker is connected for the {queue} queue (no Redis connection named for it)"
    return (f"none of the {found['connections']} Redis connections named for the {queue}"
            " queue waited for a job, and none of its jobs was being worked: a worker stopped"
            " or hung")


def answer_for_the_worker(target: Target, queue: str, result: ProbeResult, *, by: str,
                          job: str) -> None:
    """A ``job`` the check ``by`` put on ``queue`` (``result.observed["state"]``: its last state)
    answers, for the run, whether ``queue`` has a worker taking jobs: one that took it
    (completed, failed, even slow) answered; one left waiting did not, and the checks that
    need that worker fail at once after it (``reachability``)."""
    gate = reachability.current()
    taken, detail, waited = _worker_verdict(queue, result, job=job)
    if gate is None or taken is None:
        return  # no run's gate, or the job never got as far as a worker
    gate.record(reachability.worker(queue), target, ok=taken, by=by, elapsed_s=waited,
                detail=detail)
