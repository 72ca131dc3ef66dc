"""Steps about Redis and the BullMQ queues."""

from __future__ import annotations

from pytest_bdd import given, then, when

from runbook.checks import require_ok
from runbook.config import Target
from runbook.probes import redis
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts
from steps.support import require_variables


@given("the target has Redis")
def _(target: Target) -> None:
    require_variables(target, "REDIS_URL")


@when("the on-call engineer pings Redis", target_fixture="redis_ping")
def _(target: Target, timeouts: Timeouts) -> ProbeResult:
    return redis.ping(target, timeouts)


@then("Redis answers PONG")
def _(redis_ping: ProbeResult) -> None:
    require_ok(redis_ping)
