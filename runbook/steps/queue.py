"""Steps about Redis, the BullMQ queues and the worker."""

from __future__ import annotations

from collections.abc import Iterator

from pytest_bdd import given, parsers, then, when

from runbook.actions import journeys
from runbook.actions import queues as queue_actions
from runbook.actions.queues import (
    Cleared,
    DelDemonstration,
    FailedJobs,
    RestartLeavesFailed,
    Retried,
)
from runbook.actions.users import CanaryPool
from runbook.checks import (
    require_at_least,
    require_at_most,
    require_flag,
    require_ok,
    require_record,
)
from runbook.config import Target
from runbook.harness.evidence import Evidence
from runbook.harness.scenarios import needs, waits_on_workers
from runbook.platforms import PlatformAdapter
from runbook.probes import queues, redis
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts


@when("the on-call engineer pings Redis", target_fixture="redis_ping")
@needs("redis")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(redis.ping(target, timeouts))


@then("Redis answers PONG")
def _(redis_ping: ProbeResult) -> None:
    require_ok(redis_ping)


@when(parsers.parse("the on-call engineer sends a canary job through the {queue} queue,"
                    " allowing {seconds:g} seconds"), target_fixture="canary_job")
@waits_on_workers
def _(target: Target, timeouts: Timeouts, queue: str, seconds: float,
      evidence: Evidence) -> ProbeResult:
    return evidence(queues.canary_round_trip(target, timeouts, queue, within_s=seconds))


@then("the worker completes the canary job")
def _(canary_job: ProbeResult) -> None:
    require_ok(canary_job)


@when(parsers.parse("the on-call engineer counts the {queue} queue's jobs"),
      target_fixture="queue_counts")
@needs("redis")
def _(target: Target, timeouts: Timeouts, queue: str, evidence: Evidence) -> ProbeResult:
    return evidence(queues.counts(target, timeouts, queue))


@then("the counts agree with the type-aware commands")
def _(queue_counts: ProbeResult) -> None:
    require_ok(queue_counts)


@then(parsers.parse("at most {limit:d} jobs are waiting"))
def _(queue_counts: ProbeResult, limit: int) -> None:
    require_at_most(queue_counts, "wait", limit, "jobs")


@then(parsers.parse("at most {limit:g} percent of finished email jobs failed"))
def _(queue_counts: ProbeResult, limit: float) -> None:
    require_at_most(queue_counts, "failed_percent", limit, "%")


@given(parsers.parse("{count:d} failed canary jobs on the {queue} queue"),
       target_fixture="failed_jobs")
def _(target: Target, timeouts: Timeouts, count: int, queue: str, evidence: Evidence
      ) -> Iterator[FailedJobs]:
    with queue_actions.failed_canary_jobs(target, timeouts, queue, count) as failed:
        yield evidence(failed)


@when("the on-call engineer counts the failed jobs with the runbook's LLEN",
      target_fixture="runbook_llen")
def _(target: Target, timeouts: Timeouts, failed_jobs: FailedJobs,
      evidence: Evidence) -> ProbeResult:
    return evidence(queues.runbook_llen_failed(target, timeouts, failed_jobs.queue))


@then("Redis answers WRONGTYPE while BullMQ counts the failed jobs")
def _(runbook_llen: ProbeResult) -> None:
    require_ok(runbook_llen)
    require_at_least(runbook_llen, "bullmq_failed", 1, "jobs")
    require_flag(runbook_llen, "wrongtype")


@when(parsers.parse("the on-call engineer runs the runbook's DEL on a canary queue with"
                    " {count:d} failed jobs"), target_fixture="del_demo")
def _(target: Target, timeouts: Timeouts, count: int, evidence: Evidence) -> DelDemonstration:
    return evidence(queue_actions.runbook_del_failed(target, timeouts, "email", jobs=count))


@then(parsers.parse("BullMQ counts no failed jobs but {count:d} job hashes are left behind"))
def _(target: Target, del_demo: DelDemonstration, count: int) -> None:
    require_record(target, del_demo, "queues", f"{count} orphaned job hashes after the DEL",
                   holds=del_demo.orphans_left(count))


@then("once cleaned the canary queue leaves nothing behind")
def _(target: Target, del_demo: DelDemonstration) -> None:
    require_record(target, del_demo, "queues", "no key of the canary queue left",
                   holds=del_demo.leaves_no_key)


@when("the on-call engineer clears them the BullMQ way", target_fixture="cleared")
def _(target: Target, timeouts: Timeouts, failed_jobs: FailedJobs, evidence: Evidence) -> Cleared:
    return evidence(queue_actions.clear_failed(target, timeouts, failed_jobs.queue,
                                               only_ids=failed_jobs.ids))


@then("they are gone and no key names them")
def _(target: Target, cleared: Cleared) -> None:
    require_record(target, cleared, "queues", "the failed canary jobs removed, no key left",
                   holds=cleared.leaves_no_key)


@when("the on-call engineer retries them the BullMQ way", target_fixture="retried")
def _(target: Target, timeouts: Timeouts, failed_jobs: FailedJobs, evidence: Evidence) -> Retried:
    return evidence(
        queue_actions.retry_failed(target, timeouts, failed_jobs.queue, failed_jobs.ids))


@then("they leave the failed set")
def _(target: Target, retried: Retried) -> None:
    require_record(target, retried, "queues", "every retried job out of the failed set",
                   holds=retried.every_job_left_failed)


@when("the on-call engineer restarts the worker as the runbook says to retry them",
      target_fixture="restart_leaves")
def _(target: Target, timeouts: Timeouts, platform: PlatformAdapter, failed_jobs: FailedJobs,
      evidence: Evidence) -> RestartLeavesFailed:
    return evidence(queue_actions.restart_does_not_retry(
        target, timeouts, failed_jobs.queue, failed_jobs.ids, lambda: platform.restart("worker")))


@then("the restarted worker processes new jobs but the failed jobs stay failed")
def _(target: Target, restart_leaves: RestartLeavesFailed) -> None:
    require_record(target, restart_leaves, "worker", "failed jobs still failed after the restart",
                   holds=restart_leaves.runbook_claim_refuted)


@when(parsers.parse("the on-call engineer requests a canary release through the API, allowing"
                    " {seconds:g} seconds"), target_fixture="release_round_trip")
@waits_on_workers
def _(target: Target, timeouts: Timeouts, seconds: float, canary_pool: CanaryPool,
      evidence: Evidence) -> ProbeResult:
    return evidence(journeys.release(target, timeouts, within_s=seconds, pool=canary_pool))


@then("the worker processes the release")
def _(release_round_trip: ProbeResult) -> None:
    require_ok(release_round_trip)
