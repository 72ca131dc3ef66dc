"""Steps about Redis, the BullMQ queues and the worker."""

from __future__ import annotations

from pytest_bdd import parsers, then, when

from runbook.checks import require_at_most, require_ok
from runbook.config import Target
from runbook.probes import queues, redis
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts


@when("the on-call engineer pings Redis", target_fixture="redis_ping")
def _(target: Target, timeouts: Timeouts) -> ProbeResult:
    return redis.ping(target, timeouts)


@then("Redis answers PONG")
def _(redis_ping: ProbeResult) -> None:
    require_ok(redis_ping)


@when(parsers.parse("the on-call engineer sends a canary job through the {queue} queue,"
                    " allowing {seconds:g} seconds"), target_fixture="canary_job")
def _(target: Target, timeouts: Timeouts, queue: str, seconds: float) -> ProbeResult:
    return queues.canary_round_trip(target, timeouts, queue, within_s=seconds)


@then("the worker completes the canary job")
def _(canary_job: ProbeResult) -> None:
    require_ok(canary_job)


@when(parsers.parse("the on-call engineer counts the {queue} queue's jobs"),
      target_fixture="queue_counts")
def _(target: Target, timeouts: Timeouts, queue: str) -> ProbeResult:
    return queues.counts(target, timeouts, queue)


@then("the counts agree with the type-aware commands")
def _(queue_counts: ProbeResult) -> None:
    require_ok(queue_counts)


@then(parsers.parse("at most {limit:d} jobs are waiting"))
def _(queue_counts: ProbeResult, limit: int) -> None:
    require_at_most(queue_counts, "wait", limit, "jobs")


@then(parsers.parse("at most {limit:g} percent of finished email jobs failed"))
def _(queue_counts: ProbeResult, limit: float) -> None:
    require_at_most(queue_counts, "failed_percent", limit, "%")
