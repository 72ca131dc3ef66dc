"""BullMQ probes against the real sandbox: counts cross-checked with type-aware commands,
workers, the canary round trip (and a canary nobody takes), and the runbook's
``LLEN bull:email:failed`` on a real failed set."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from runbook.config import Target
from runbook.probes import queues
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts

#: A database of the sandbox's Redis that no worker uses.
EMPTY_DB = 7


@pytest.fixture(scope="module")
def target(sandbox: Any) -> Target:
    return Target.from_variables("sandbox", sandbox.env, source="sandbox",
                                 environment="sandbox")


def _url_on_db(url: str, db: int) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{db}"


@pytest.fixture
def other_db_target(sandbox: Any) -> Iterator[Target]:
    """The sandbox with REDIS_URL on a database no worker uses; emptied afterwards."""
    url = _url_on_db(sandbox.env["REDIS_URL"], EMPTY_DB)
    yield Target.from_variables("other-db", {**sandbox.env, "REDIS_URL": url}, source="test",
                                environment="sandbox")
    conn = redis.Redis.from_url(url, socket_timeout=5)
    try:
        conn.flushdb()
    finally:
        conn.close()


def _no_secrets(result: ProbeResult, target: Target) -> None:
    text = json.dumps(result.evidence(), default=str)
    for secret in target.secret_values():
        assert secret not in text


def _keys_naming(url: str, text: str) -> list[str]:
    conn = redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)
    try:
        return [k for k in conn.scan_iter("bull:*") if text in k]
    finally:
        conn.close()


# -- healthy -----------------------------------------------------------------------------


@pytest.mark.parametrize("queue", queues.QUEUES)
def test_counts_agree_with_type_aware_commands(target: Target, queue: str) -> None:
    result = queues.counts(target, Timeouts(), queue)
    assert result.ok, result.problem
    observed = result.observed
    assert observed["bullmq_counts"] == observed["raw_counts"]
    assert set(observed["bullmq_counts"]) == set(queues.STATES)
    assert isinstance(observed["wait"], int)
    assert isinstance(observed["failed_percent"], float)
    for state, kind in observed["key_types"].items():
        assert kind in ("none", "list" if state in queues.LIST_STATES else "zset")
    _no_secrets(result, target)


@pytest.mark.parametrize("queue", queues.QUEUES)
def test_the_sandbox_worker_is_registered(target: Target, queue: str) -> None:
    result = queues.workers(target, Timeouts(), queue)
    assert result.ok, result.problem
    assert result.observed["count"] >= 1
    assert result.observed["names"] == [f"bull:{queue}:w:legacyvideo-worker"]


@pytest.mark.parametrize("queue", queues.QUEUES)
def test_canary_round_trip_completes_and_cleans_up(target: Target, queue: str) -> None:
    result = queues.canary_round_trip(target, Timeouts(), queue, within_s=10)
    assert result.ok, result.problem
    observed = result.observed
    assert observed["state"] == "completed"
    assert observed["returnvalue"] == {"pong": True, "queue": queue}
    assert 0 < observed["round_trip_ms"] < 10_000
    assert observed["enqueue_to_finish_ms"] >= 0
    assert observed["removed"] is True
    assert _keys_naming(target.require("REDIS_URL"), observed["job_id"]) == []
    _no_secrets(result, target)


# -- failures made real ------------------------------------------------------------------


def test_a_canary_nobody_takes_fails_with_its_state_and_leaves_no_job(
    other_db_target: Target,
) -> None:
    within = 1.0
    result = queues.canary_round_trip(other_db_target, Timeouts(), "email", within_s=within)
    assert not result.ok
    assert result.observed["state"] == "waiting"
    assert "still waiting: no worker took it" in result.problem
    assert result.advice == "worker"
    assert within <= result.elapsed_s < within + 2
    assert result.observed["removed"] is True
    assert "left_behind" not in result.observed
    url = other_db_target.require("REDIS_URL")
    assert _keys_naming(url, result.observed["job_id"]) == []
    conn = redis.Redis.from_url(url, socket_timeout=5)
    try:
        assert conn.llen("bull:email:wait") == 0
    finally:
        conn.close()


def test_no_worker_on_the_targets_database_is_a_failure(other_db_target: Target) -> None:
    # The sandbox's worker is named for "email", but on database 0: it serves no job here.
    result = queues.workers(other_db_target, Timeouts(), "email")
    assert not result.ok
    assert result.observed["count"] == 0
    assert result.observed["on_other_dbs"] >= 1
    assert f"no Redis connection on db {EMPTY_DB} named for it" in result.problem
    assert result.advice == "worker"


def test_a_queue_without_workers_is_a_failure(target: Target) -> None:
    queue = f"runbook-test-{uuid.uuid4().hex[:8]}"
    result = queues.workers(target, Timeouts(), queue)
    assert not result.ok
    assert result.observed["count"] == 0
    assert f"no worker is registered on the {queue} queue" in result.problem


@pytest.fixture
def failed_email_job(target: Target) -> Iterator[str]:
    """A real failed job on the sandbox's email queue: the worker fails a ``send-email``
    without recipients (UnrecoverableError). Removed afterwards."""
    url = target.require("REDIS_URL")
    job_id = f"runbook-test-failed-{uuid.uuid4().hex}"
    timeouts = Timeouts()

    async def add() -> None:
        queue = queues.open_queue("email", queues.async_client(url, timeouts))
        try:
            await queue.add("send-email", {}, {"jobId": job_id, "attempts": 1})
            deadline = time.monotonic() + 15
            while await queue.getJobState(job_id) != "failed":
                assert time.monotonic() < deadline, "the worker did not fail the job"
                await asyncio.sleep(0.05)
        finally:
            await queue.close()

    async def remove() -> None:
        queue = queues.open_queue("email", queues.async_client(url, timeouts))
        try:
            await queue.remove(job_id)
        finally:
            await queue.close()

    try:
        asyncio.run(add())
        yield job_id
    finally:
        asyncio.run(remove())
        assert _keys_naming(url, job_id) == []


def test_runbook_llen_on_a_real_failed_set_is_wrongtype(
    target: Target, failed_email_job: str,
) -> None:
    result = queues.runbook_llen_failed(target, Timeouts(), "email")
    assert result.ok, result.problem
    assert result.observed["key_type"] == "zset"
    assert result.observed["wrongtype"] is True
    assert str(result.observed["reply"]).startswith("WRONGTYPE")
    assert result.observed["bullmq_failed"] >= 1

    counts = queues.counts(target, Timeouts(), "email")
    assert counts.ok, counts.problem
    assert counts.observed["failed"] >= 1
    assert counts.observed["key_types"]["failed"] == "zset"
    assert counts.observed["failed_percent"] > 0


def test_runbook_llen_without_failed_jobs_answers_zero(other_db_target: Target) -> None:
    result = queues.runbook_llen_failed(other_db_target, Timeouts(), "email")
    assert result.ok, result.problem
    assert result.observed == {
        "queue": "email", "command": "LLEN bull:email:failed", "key_type": "none",
        "reply": 0, "wrongtype": False, "bullmq_failed": 0,
    }


def test_a_failed_key_of_the_wrong_type_is_not_a_bullmq_queue(other_db_target: Target) -> None:
    url = other_db_target.require("REDIS_URL")
    conn = redis.Redis.from_url(url, socket_timeout=5)
    try:
        conn.rpush("bull:email:failed", "1")  # what the runbook's LLEN assumes
    finally:
        conn.close()
    result = queues.counts(other_db_target, Timeouts(), "email")
    assert not result.ok
    assert "bull:email:failed is a list, BullMQ keeps a zset" in result.problem
