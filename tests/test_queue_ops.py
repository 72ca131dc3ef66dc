"""Queue Management against the real sandbox, on canary jobs and canary queues: failed jobs
counted by BullMQ equal ZCARD and the runbook's LLEN answers WRONGTYPE; the runbook's DEL
leaves N orphaned job hashes (cleaned after) while BullMQ's clean leaves none; a retry moves
jobs out of the failed set; a worker restart leaves them failed. Nothing is left behind,
also when a step fails, and real jobs are never touched."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from runbook.actions import queues
from runbook.config import Target
from runbook.errors import SafetyGateError
from runbook.probes import queues as probes
from runbook.timeouts import Timeouts

TIMEOUTS = Timeouts()
#: A database of the sandbox's Redis that no worker uses.
EMPTY_DB = 8


@pytest.fixture(scope="module")
def target(sandbox: Any) -> Target:
    return Target.from_variables("sandbox", sandbox.env, source="sandbox",
                                 environment="sandbox")


def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                decode_responses=True)


def _keys(url: str, pattern: str) -> list[str]:
    conn = _redis(url)
    try:
        return sorted(str(k) for k in conn.scan_iter(pattern, count=1000))
    finally:
        conn.close()


def _failed_count(target: Target, queue: str) -> int:
    result = queues.status(target, TIMEOUTS, queue)
    assert result.ok, result.problem
    return int(result.observed["failed"])


def _no_secrets(target: Target, *records: Any) -> None:
    text = json.dumps([r.evidence() for r in records], default=str) + repr(records)
    for secret in target.secret_values():
        assert secret not in text


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind(target: Target) -> Iterator[None]:
    """No key naming a canary job or canary queue is left when the module ends."""
    yield
    assert _keys(target.require("REDIS_URL"), f"*{queues.CANARY_PREFIX}*") == []


@pytest.fixture
def workerless_target(sandbox: Any) -> Iterator[Target]:
    """The sandbox with REDIS_URL on a database no worker serves; emptied afterwards."""
    head, _, _ = sandbox.env["REDIS_URL"].rpartition("/")
    url = f"{head}/{EMPTY_DB}"
    yield Target.from_variables("no-worker", {**sandbox.env, "REDIS_URL": url},
                                source="test", environment="sandbox")
    conn = _redis(url)
    try:
        conn.flushdb()
    finally:
        conn.close()


# -- the story on LegacyVideo's own queues -----------------------------------------------


@pytest.mark.parametrize(("queue", "reason"), [
    ("email", "job data needs 'to' and 'subject'"),
    ("release-process", "job data has no releaseId"),
])
def test_failed_canary_jobs_are_counted_retried_and_cleared(
    target: Target, queue: str, reason: str,
) -> None:
    removals: list[queues.Cleared] = []
    with queues.failed_canary_jobs(target, TIMEOUTS, queue, 3,
                                   on_removed=removals.append) as failed:
        assert failed.ok
        assert len(failed.ids) == 3 and all(queues.is_canary_job(i) for i in failed.ids)
        assert [j.state for j in failed.jobs] == ["failed"] * 3
        assert {j.failed_reason for j in failed.jobs} == {reason}  # the real worker's
        assert {j.attempts_made for j in failed.jobs} == {1}
        assert failed.failed_after == failed.failed_before + 3
        assert failed.zcard_after == failed.failed_after

        # View Queue Status: BullMQ's failed count equals ZCARD; LLEN is WRONGTYPE.
        counts = queues.status(target, TIMEOUTS, queue)
        assert counts.ok, counts.problem
        assert counts.observed["bullmq_counts"]["failed"] == counts.observed["raw_counts"][
            "failed"] == failed.failed_after
        assert counts.observed["key_types"]["failed"] == "zset"
        llen = probes.runbook_llen_failed(target, TIMEOUTS, queue)
        assert llen.observed["wrongtype"] is True, llen.observed

        # Retry Failed Jobs the BullMQ way: each is run again (and rejected again).
        retried = queues.retry_failed(target, TIMEOUTS, queue, failed.ids)
        assert retried.ok, retried.problems
        assert retried.method == "Job.retry('failed')"
        assert set(retried.left_failed) == set(failed.ids)
        assert set(retried.outcomes.values()) == {"failed again"}
        assert {j.attempts_made for j in retried.after} == {2}
        assert retried.time_to_leave_s is not None and retried.time_to_leave_s > 0

        # Clear Failed Jobs the BullMQ way: only ours, by id, nothing left naming them.
        cleared = queues.clear_failed(target, TIMEOUTS, queue, only_ids=failed.ids)
        assert cleared.ok, cleared.problems
        assert set(cleared.removed_ids) == set(failed.ids)
        assert cleared.failed_after == cleared.failed_before - 3
        assert cleared.keys_left == ()
        _no_secrets(target, failed, counts, retried, cleared)
    assert removals and removals[0].keys_left == ()
    assert _keys(target.require("REDIS_URL"), f"bull:{queue}:{queues.CANARY_PREFIX}*") == []


# -- the runbook's DEL versus BullMQ's clean ---------------------------------------------


def test_the_runbooks_del_leaves_orphaned_job_hashes(target: Target) -> None:
    email_failed = _failed_count(target, "email")
    shown = queues.runbook_del_failed(target, TIMEOUTS, "email", jobs=4)
    assert shown.ok, shown.problems
    assert shown.stands_for == "DEL bull:email:failed"
    assert shown.command == f"DEL bull:{shown.queue}:failed"
    assert queues.is_canary_queue(shown.queue)
    assert shown.failed_before == shown.zcard_before == 4
    assert shown.llen_reply.startswith("WRONGTYPE")
    assert shown.del_reply == 1
    assert shown.failed_after_del == 0  # BullMQ no longer sees them...
    assert shown.orphans == 4  # ...but every job hash is still there,
    assert shown.still_readable == 4  # readable by id,
    assert set(shown.states_after_del.values()) == {"unknown"}  # in no state at all.
    assert shown.orphan_bytes is None or shown.orphan_bytes > 0
    assert shown.orphans_removed == 4
    assert shown.keys_left == ()
    assert _keys(target.require("REDIS_URL"), f"bull:{shown.queue}:*") == []
    assert _failed_count(target, "email") == email_failed  # the real queue untouched
    _no_secrets(target, shown)


def test_bullmq_clean_leaves_no_orphans(target: Target) -> None:
    removals: list[queues.Cleared] = []
    with queues.canary_queue(target, TIMEOUTS, "fail", on_removed=removals.append) as canary:
        failed = queues.fail_canary_jobs(target, TIMEOUTS, canary.name, 4)
        counts = queues.status(target, TIMEOUTS, canary.name)
        assert counts.ok, counts.problem
        assert counts.observed["failed"] == counts.observed["raw_counts"]["failed"] == 4
        cleared = queues.clear_failed(target, TIMEOUTS, canary.name)
        assert cleared.ok, cleared.problems
        assert cleared.method == "Queue.clean(0, 1000, 'failed')"
        assert set(cleared.removed_ids) == set(failed.ids)
        assert (cleared.failed_before, cleared.failed_after) == (4, 0)
        assert cleared.orphans == 0 and cleared.keys_left == ()
    assert removals[0].ok and removals[0].keys_left == ()
    assert _keys(target.require("REDIS_URL"), f"bull:{canary.name}:*") == []


@pytest.mark.parametrize("by_id", [False, True])
def test_a_retry_moves_failed_jobs_out_of_the_failed_set(target: Target, by_id: bool) -> None:
    """Our worker fails each job's first attempt only, so a retried job completes."""
    with queues.canary_queue(target, TIMEOUTS, "fail-once") as canary:
        failed = queues.fail_canary_jobs(target, TIMEOUTS, canary.name, 3)
        retried = queues.retry_failed(target, TIMEOUTS, canary.name,
                                      failed.ids if by_id else None)
        assert retried.ok, retried.problems
        assert retried.method == ("Job.retry('failed')" if by_id
                                  else "Queue.retryJobs({'state': 'failed'})")
        assert set(retried.ids) == set(failed.ids)
        assert retried.outcomes == {i: "completed" for i in failed.ids}
        assert (retried.failed_before, retried.failed_after) == (3, 0)
        counts = queues.status(target, TIMEOUTS, canary.name)
        assert (counts.observed["failed"], counts.observed["completed"]) == (0, 3)


# -- the runbook's "restart retries failed jobs" -----------------------------------------


def test_a_worker_restart_leaves_failed_jobs_failed(healthy_sandbox: Any) -> None:
    box = healthy_sandbox.sandbox
    target = Target.from_variables("sandbox", box.env(), source="sandbox",
                                   environment="sandbox")
    pid_before = box.status().components["worker"].pid
    with queues.failed_canary_jobs(target, TIMEOUTS, "email", 3) as failed:
        record = queues.restart_does_not_retry(target, TIMEOUTS, "email", failed.ids,
                                               lambda: box.restart("worker"))
    assert box.status().components["worker"].pid != pid_before  # it really restarted
    assert record.ok, record.problems
    assert record.restart.ok
    assert record.worker_after.ok, record.worker_after.problem  # it processes jobs again
    assert record.still_failed == failed.ids
    assert record.reprocessed == ()
    assert not record.runbook_claim_holds
    assert record.failed_after == record.failed_before
    assert [(j.attempts_made, j.finished_on) for j in record.after] == [
        (j.attempts_made, j.finished_on) for j in record.before]
    assert record.evidence()["runbook_claim_holds"] is False
    _no_secrets(target, record)


def test_the_restart_check_sees_jobs_that_were_run_again(target: Target) -> None:
    """The check can fail: a "restart" that did retry the jobs is reported as such."""
    with queues.failed_canary_jobs(target, TIMEOUTS, "email", 2) as failed:
        record = queues.restart_does_not_retry(
            target, TIMEOUTS, "email", failed.ids,
            lambda: queues.retry_failed(target, TIMEOUTS, "email", failed.ids),
            observe_s=0.5)
    assert set(record.reprocessed) == set(failed.ids)
    assert record.runbook_claim_holds
    assert not record.ok
    assert "jobs left the failed set after the restart" in record.problems[0]


# -- cleanup, also on failure ------------------------------------------------------------


def test_jobs_no_worker_fails_are_removed_and_reported(workerless_target: Target) -> None:
    url = workerless_target.require("REDIS_URL")
    with pytest.raises(queues.QueueOperationFailed) as failure:
        queues.fail_canary_jobs(workerless_target, TIMEOUTS, "email", 2, within_s=0.5)
    assert "'waiting'" in str(failure.value)
    assert "remove the canary jobs" in [a.name for a in failure.value.activities]
    assert _keys(url, f"*{queues.CANARY_PREFIX}*") == []


def test_a_canary_queue_is_removed_when_the_block_fails(target: Target) -> None:
    names: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), \
            queues.canary_queue(target, TIMEOUTS) as canary:
        names.append(canary.name)
        queues.fail_canary_jobs(target, TIMEOUTS, canary.name, 2)
        raise RuntimeError("boom")
    assert _keys(target.require("REDIS_URL"), f"bull:{names[0]}:*") == []


def test_failed_canary_jobs_are_removed_when_the_block_fails(target: Target) -> None:
    ids: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), \
            queues.failed_canary_jobs(target, TIMEOUTS, "email", 2) as failed:
        ids.extend(failed.ids)
        raise RuntimeError("boom")
    url = target.require("REDIS_URL")
    assert ids and all(_keys(url, f"bull:email:{i}*") == [] for i in ids)


# -- safety: never another's jobs ----------------------------------------------------------


def test_whole_set_operations_refuse_real_queues(target: Target) -> None:
    before = _failed_count(target, "email")
    with pytest.raises(SafetyGateError, match="canary queues"):
        queues.clear_failed(target, TIMEOUTS, "email")
    with pytest.raises(SafetyGateError, match="canary queues"):
        queues.retry_failed(target, TIMEOUTS, "email")
    with pytest.raises(SafetyGateError, match="canary queues"):
        queues.delete_canary_queue(target, TIMEOUTS, "email")
    assert _failed_count(target, "email") == before


def test_jobs_that_are_not_ours_are_refused(target: Target) -> None:
    someone_elses = f"release-email-{uuid.uuid4()}"
    for action in (
        lambda: queues.clear_failed(target, TIMEOUTS, "email", only_ids=[someone_elses]),
        lambda: queues.retry_failed(target, TIMEOUTS, "email", [someone_elses]),
        lambda: queues.remove_jobs(target, TIMEOUTS, "email", ["42"]),
    ):
        with pytest.raises(SafetyGateError, match="not runbook canaries"):
            action()
    with pytest.raises(SafetyGateError, match="rejects without side effects"):
        queues.fail_canary_jobs(target, TIMEOUTS, "video-transcode", 1)
