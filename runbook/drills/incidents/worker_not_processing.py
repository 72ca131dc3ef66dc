"""Troubleshooting > Worker Not Processing Jobs: the worker stopped and held while jobs
keep arriving.

``worker-down-backlog``: the worker stopped and held while canary jobs with fixed ids
(``backlog_ids``) pile up in the queue's ``wait`` list. The revert starts the worker and
removes those jobs wherever they are. The entry's steps (status, logs, Redis, restart the
worker) restore service: the restarted worker takes the backlog.
"""

from __future__ import annotations

from typing import Any

from bullmq import Queue
from redis.asyncio import Redis

from runbook.actions.journeys import remove_jobs
from runbook.config import Target
from runbook.drills.engine import Incident, fixed
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.steps import StepLog
from runbook.errors import ConfigError, SandboxError
from runbook.platforms.base import chained, library_call, record
from runbook.probes import Verdict, combine, describe_error, run_probe
from runbook.probes import queues as queue_probe
from runbook.probes import redis as redis_probe
from runbook.results import Activity, ProbeResult
from runbook.sandbox import Sandbox
from runbook.sections import WORKER_NOT_PROCESSING
from runbook.timeouts import Timeouts

#: Canary jobs of the backlog carry this id prefix (a ``runbook-canary-`` id).
BACKLOG_PREFIX = f"{queue_probe.CANARY_ID_PREFIX}backlog-"
#: How long removing the backlog's jobs may take (an active job is locked until it ends).
BACKLOG_CLEANUP_S = 10.0
#: How long a restart may take before the fault (or its revert) is recorded as failed.
RESTART_TIMEOUT_S = 30.0
#: The queue the game day piles jobs on, and how many.
BACKLOG_QUEUE = "email"
BACKLOG_JOBS = 3


def backlog_ids(queue: str, jobs: int) -> list[str]:
    """The fixed job ids of the backlog's canary jobs on ``queue``."""
    return [f"{BACKLOG_PREFIX}{queue}-{index}" for index in range(jobs)]


def _backlog(params: Params) -> tuple[str, int]:
    queue = str(params.get("queue") or BACKLOG_QUEUE)
    if queue not in queue_probe.QUEUES:
        raise ConfigError(f"worker-down-backlog: unknown queue {queue!r}")
    return queue, max(1, int(params.get("jobs") or BACKLOG_JOBS))


def _on_queue(target: Target, timeouts: Timeouts, queue: str, work: Any) -> Any:
    return queue_probe.run_async(target.require("REDIS_URL"), timeouts, queue, work)


@fault("worker-down-backlog",
       "the worker stopped and held while jobs keep arriving (canary jobs pile up)")
class WorkerDownBacklog:
    """``params``: ``queue`` (default ``email``), ``jobs`` (canary jobs to enqueue, 3)."""

    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        queue, jobs = _backlog(params)
        ids = backlog_ids(queue, jobs)
        sandbox = Sandbox(context.home)

        async def enqueue(bull: Queue, connection: Redis) -> int:
            stale = await remove_jobs(bull, connection, queue, ids, BACKLOG_CLEANUP_S)
            if stale:
                raise SandboxError(f"backlog jobs of an earlier run remain: {', '.join(stale)}")
            for job_id in ids:
                await bull.add(queue_probe.CANARY_JOB, {"by": "runbook game day"},
                               {"jobId": job_id, "attempts": 1})
            return int(await connection.llen(queue_probe.key(queue, "wait")))

        def body() -> tuple[bool, str, str]:
            try:
                held = sandbox.stop("worker")
                waiting = _on_queue(context.target, context.timeouts, queue, enqueue)
            except (SandboxError, OSError) as exc:
                return False, "", str(exc)
            except Exception as exc:
                return False, "", describe_error(exc)
            return held.state == "held", (f"worker {held.state}; {jobs} canary jobs enqueued on"
                                          f" {queue} ({waiting} waiting)"), ""

        return record("stop the worker while jobs arrive",
                      chained(library_call("runbook.sandbox.Sandbox.stop", "worker"),
                              library_call("bullmq.Queue.add", *ids)),
                      body, context.redactor())

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        queue, jobs = _backlog(params)
        ids = backlog_ids(queue, jobs)
        sandbox = Sandbox(context.home)

        async def clean(bull: Queue, connection: Redis) -> list[str]:
            return await remove_jobs(bull, connection, queue, ids, BACKLOG_CLEANUP_S)

        def body() -> tuple[bool, str, str]:
            said = []
            try:
                current = sandbox.status().components["worker"]
                if current.running:
                    said.append(f"worker already running (pid {current.pid})")
                else:
                    started = sandbox.start("worker", wait=True, timeout=RESTART_TIMEOUT_S)
                    said.append(f"worker running (pid {started.pid})")
                left = _on_queue(context.target, context.timeouts, queue, clean)
            except SandboxError as exc:
                return False, "; ".join(said), str(exc)
            except Exception as exc:
                return False, "; ".join(said), describe_error(exc)
            if left:
                return False, "; ".join(said), f"backlog jobs not removed: {', '.join(left)}"
            said.append(f"backlog canary jobs on {queue} removed")
            return True, "; ".join(said), ""

        return record("start the worker and remove the backlog",
                      chained(library_call("runbook.sandbox.Sandbox.start", "worker"),
                              library_call("bullmq.Queue.remove", *ids)),
                      body, context.redactor())

    @staticmethod
    def present(context: DrillContext, params: Params) -> str | None:
        state = Sandbox(context.home).status().components["worker"]
        return None if state.running else f"the worker is {state.state}, not running"


def backlog_processed(target: Target, timeouts: Timeouts, queue: str = BACKLOG_QUEUE,
                      jobs: int = BACKLOG_JOBS) -> ProbeResult:
    """A worker listens on both queues and the backlog's canary jobs were completed (their
    states, by id): the jobs that piled up were processed, not only new ones."""
    expected = f"a worker listening and the {jobs} piled-up jobs on {queue} completed"
    ids = backlog_ids(queue, jobs)

    async def states(bull: Queue, connection: Redis) -> dict[str, str]:
        return {job_id: str(await bull.getJobState(job_id)) for job_id in ids}

    def body() -> Verdict:
        found = _on_queue(target, timeouts, queue, states)
        done = sum(1 for state in found.values() if state == "completed")
        observed = {"states": found, "completed": done}
        if done < jobs:
            return Verdict(False, expected, f"{jobs - done} of {jobs} piled-up jobs on {queue}"
                           f" not completed ({', '.join(sorted(set(found.values())))})",
                           observed, advice="worker")
        return Verdict(True, expected, observed=observed)

    listening = combine("worker", "workers listening",
                        [queue_probe.workers(target, timeouts, name)
                         for name in queue_probe.QUEUES])
    if not listening.ok:
        return listening
    return run_probe("worker", "backlog processed", target, timeouts, body, expected=expected)


class WorkerDown(Incident):
    name = "worker-not-processing"
    section = WORKER_NOT_PROCESSING.section
    fault = "worker-down-backlog"
    params = fixed(queue=BACKLOG_QUEUE, jobs=BACKLOG_JOBS)
    description = "the worker stopped and held while jobs keep arriving"
    signal = "no worker listening; canary jobs not completed"

    def runbook_steps(self) -> list[Activity]:
        book = StepLog(self.context)
        target, timeouts = self.context.target, self.context.timeouts
        book.status("check the worker is running", "worker",
                    runbook_says="railway status --service worker")
        book.logs("check logs", "worker", runbook_says="railway logs --service worker --tail")
        book.check("check the Redis connection", "runbook.probes.redis.ping",
                   lambda: redis_probe.ping(target, timeouts),
                   runbook_says="redis-cli -u $REDIS_URL ping")
        book.restart("restart the worker", "worker",
                     runbook_says="railway restart --service worker")
        return book.activities

    def verify(self) -> ProbeResult:
        return backlog_processed(self.context.target, self.context.timeouts)


__all__ = ["BACKLOG_PREFIX", "WorkerDown", "WorkerDownBacklog", "backlog_ids",
           "backlog_processed"]
