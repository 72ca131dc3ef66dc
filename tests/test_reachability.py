"""A dead component is asked once per run: the first probe that needs it waits its own
deadline, every later one fails at once naming it and the check that found it; components
that answer are measured as before; outside a run's gate nothing changes. On a sandbox with
Redis stopped (SIGSTOP), the synthetic run fails every check that needs Redis with the one
verdict, and the checks that do not need it pass."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bullmq import Queue
from redis import Redis

from runbook import reachability
from runbook.actions import journeys
from runbook.config import Target
from runbook.probes import redis as redis_probe
from runbook.probes.queues import CANARY_ID_PREFIX, ask_workers, canary_round_trip, counts
from runbook.sandbox.services.worker import redis_options
from runbook.timeouts import Timeouts
from tests.conftest import RunningSandbox
from tests.network import BlackHole
from tests.test_cli import runbook

TIMEOUTS = Timeouts(connect=0.5, read=0.5, deadline=2.0)


@pytest.fixture
def hole() -> Iterator[BlackHole]:
    made = BlackHole()
    yield made
    made.close()


def _target(redis_url: str, api_url: str = "http://127.0.0.1:9") -> Target:
    return Target.from_variables("t", {"REDIS_URL": redis_url, "API_URL": api_url},
                                 source="test", environment="staging", platform="sandbox")


def _check_with_stopped(sandbox: RunningSandbox, component: str, selection: str, cwd: Path
                        ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``runbook check --json -k selection`` with ``component`` stopped (SIGSTOP) for the
    run; the result and its scenarios by name."""
    pid = sandbox.sandbox.status().components[component].pid
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        result = runbook("check", "--target", "sandbox", "--json", "-k", selection,
                         cwd=cwd, env={"RUNBOOK_HOME": str(sandbox.home)})
    finally:
        os.kill(pid, signal.SIGCONT)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result, {s["name"]: s for s in lines if s.get("type") == "scenario"}


def test_a_black_holed_component_is_asked_once_and_named_by_every_later_probe(
        hole: BlackHole) -> None:
    target = _target(f"redis://127.0.0.1:{hole.port}/0")
    gate = reachability.Reachability(TIMEOUTS)
    gate.scenario = "Redis answers PONG"
    asked: list[str] = []
    real = gate._ask
    gate._ask = lambda *a: (asked.append(a[0]), real(*a))[1]  # type: ignore[method-assign]
    with reachability.active(gate):
        first = redis_probe.ping(target, TIMEOUTS)
        later = [counts(target, TIMEOUTS, "email") for _ in range(3)]
    assert asked == ["redis"], asked
    assert not first.ok and all(not r.ok for r in later)
    for result in (first, *later):
        assert result.problem.startswith("redis unreachable:"), result.problem
        assert "connect and PING" in result.problem
        assert "'redis ping' of the scenario 'Redis answers PONG'" in result.problem
        assert result.observed["unreachable"] == "redis"
        assert result.advice == "redis"
    [answer] = gate.answers()
    assert not answer.ok and answer.elapsed_s <= 2.0 + 0.5


def test_a_component_asked_ahead_is_asked_once_and_its_verdict_named_by_later_probes(
        hole: BlackHole) -> None:
    """``ask_ahead`` asks in a thread of its own; a probe that needs the component while
    the asking is under way waits for it instead of asking again, and every probe names
    the run's asking. A second ``ask_ahead`` asks nothing more."""
    target = _target(f"redis://127.0.0.1:{hole.port}/0")
    gate = reachability.Reachability(TIMEOUTS)
    asked: list[str] = []
    real = gate._ask
    gate._ask = lambda *a: (asked.append(a[0]), real(*a))[1]  # type: ignore[method-assign]
    gate.ask_ahead(target, ("redis", "worker:email", "web"))  # no WEB_URL: nothing to ask
    gate.ask_ahead(target, ("redis",))
    with reachability.active(gate):
        results = [redis_probe.ping(target, TIMEOUTS), counts(target, TIMEOUTS, "email")]
    gate.close()
    assert asked == ["redis"], asked
    for result in results:
        assert result.problem.startswith("redis unreachable:"), result.problem
        assert f"by {reachability.AHEAD})" in result.problem, result.problem
    [answer] = gate.answers()
    assert not answer.ok and answer.found_by == reachability.AHEAD


def test_with_redis_not_answering_the_workers_are_not_asked_and_no_canary_is_put(
        hole: BlackHole) -> None:
    """The workers' asking asks Redis first (the run's one asking of it): a Redis that does
    not answer gets no canary job, so none is left behind and no removal is waited for."""
    target = _target(f"redis://127.0.0.1:{hole.port}/0")
    asked_workers: list[tuple[str, ...]] = []

    def asker(_target: Target, queues: tuple[str, ...]) -> dict[str, reachability.WorkerAnswer]:
        asked_workers.append(queues)
        return {}

    gate = reachability.Reachability(TIMEOUTS, ask_workers=asker, queues=("email",))
    gate.ask_workers_ahead(target)
    gate.close()
    assert asked_workers == []
    [answer] = gate.answers()
    assert answer.component == "redis" and not answer.ok
    assert answer.found_by == reachability.AHEAD


def test_what_users_get_is_asked_as_soon_as_a_component_is_suspect_and_only_then(
        hole: BlackHole) -> None:
    """``ask_meanwhile``: with the component silent past ``after_s``, the run calls the ask
    once, long before the component's own deadline, and a check takes its answer, saying
    when; with the component answering in time, nothing is asked."""
    target = _target(f"redis://127.0.0.1:{hole.port}/0")
    gate = reachability.Reachability(Timeouts(connect=1.5, read=1.5, deadline=3.0))
    calls: list[float] = []

    def ask(_target: Target, _timeouts: Timeouts) -> int:
        calls.append(time.monotonic())
        return 500

    started = time.monotonic()
    gate.ask_ahead(target, ("redis",))
    gate.ask_meanwhile("redis", target, ask, after_s=0.2)
    gate.ask_meanwhile("redis", target, ask, after_s=0.2)  # once per run
    asked = gate.asked(ask, "redis", target)
    gate.close()
    assert asked is not None and asked.value == 500
    assert asked.component == "redis"
    assert "while the redis was not answering" in asked.said()
    assert len(calls) == 1
    # asked on suspicion, before the asking's own verdict (3 s at the earliest)
    assert calls[0] - started < 1.5, calls[0] - started
    [answer] = gate.answers()
    assert not answer.ok

    healthy = _target("redis://127.0.0.1:6379/13")
    gate = reachability.Reachability(Timeouts(connect=3.0, read=3.0, deadline=6.0))
    gate.ask_ahead(healthy, ("redis",))
    gate.ask_meanwhile("redis", healthy, ask, after_s=2.0)
    assert gate.asked(ask, "redis", healthy) is None
    gate.close()
    assert len(calls) == 1
    # not asked ahead: nothing to be suspect of, nothing asked
    gate = reachability.Reachability(TIMEOUTS)
    gate.ask_meanwhile("redis", target, ask, after_s=0.0)
    assert gate.asked(ask, "redis", target) is None
    assert len(calls) == 1


def test_a_component_that_answers_is_measured_by_its_own_probe() -> None:
    """The machine's Redis answers: the probe runs its body (its own figures recorded)."""
    target = _target("redis://127.0.0.1:6379/13")
    gate = reachability.Reachability(TIMEOUTS)
    with reachability.active(gate):
        result = redis_probe.ping(target, TIMEOUTS)
    assert result.ok, result.problem
    assert "round_trip_ms" in result.observed
    [answer] = gate.answers()
    assert answer.ok and answer.component == "redis"


def test_outside_a_gate_nothing_is_asked_or_held(hole: BlackHole) -> None:
    """A library caller (or a drill's wait) gets the probe's own verdict every time."""
    target = _target(f"redis://127.0.0.1:{hole.port}/0")
    assert reachability.current() is None
    result = redis_probe.ping(target, TIMEOUTS)
    assert not result.ok and "unreachable" not in result.problem
    assert "unreachable" not in result.observed


def test_a_probe_declares_more_than_its_component_needs() -> None:
    """A journey through the API to the queue needs the API too: a dead API blocks it even
    though Redis answers."""
    target = _target("redis://127.0.0.1:6379/13", api_url="http://127.0.0.1:9")
    # a refusal is immediate: a roomy budget keeps a busy machine from reading it as silence
    gate = reachability.Reachability(Timeouts(connect=3.0, read=3.0, deadline=6.0))
    found = gate.unreachable("worker", "release round trip", target, needs=("api", "redis"))
    assert found is not None and found.component == "api"
    assert "cannot connect" in found.detail
    assert gate.unreachable("worker", "workers", target) is None  # Redis alone answers


def test_with_redis_stopped_the_run_fails_what_needs_it_with_one_verdict(
        healthy_sandbox: RunningSandbox, tmp_path: Path) -> None:
    result, scenarios = _check_with_stopped(
        healthy_sandbox, "redis", "redis or queue or database_answers or api_reports", tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert scenarios["Redis answers PONG"]["outcome"] == "failed"
    assert scenarios["The database answers"]["outcome"] == "passed"
    assert scenarios["The API reports status ok with a current timestamp"]["outcome"] == "passed"
    blocked = [s for s in scenarios.values() if "redis unreachable" in (s.get("message") or "")]
    assert len(blocked) >= 4, [(s["name"], s.get("message")) for s in scenarios.values()]
    # one verdict: the same asking, named by every check that needed Redis
    asked = {s["message"].split("asked once for this run at ")[1][:8] for s in blocked}
    assert len(asked) == 1, asked
    assert all(s["outcome"] == "failed" for s in blocked)
    # the next run asks afresh: Redis is back
    (tmp_path / "again").mkdir()
    again = runbook("check", "--target", "sandbox", "--json", "-k", "redis_answers",
                    cwd=tmp_path / "again", env={"RUNBOOK_HOME": str(healthy_sandbox.home)})
    assert again.returncode == 0, again.stdout + again.stderr


def test_with_the_database_stopped_the_login_asks_it_once_and_still_sees_what_users_get(
        healthy_sandbox: RunningSandbox, tmp_path: Path) -> None:
    """The run asks the database as its first check starts (both checks are marked as
    needing it) and runs them after the others. The login makes its canary user in the
    database: it does not wait for a database the run already found unreachable; it still
    waits for what a user's login gets from the live API (HTTP 500), the signal of API
    Returns 500 Error, asked as soon as the database was silent past
    ``reachability.SUSPECT_AFTER_S`` (the step's ``needs(meanwhile=...)``)."""
    result, scenarios = _check_with_stopped(
        healthy_sandbox, "postgres", "log_in or migration_is_applied", tmp_path)
    login = scenarios["A user can log in and be read back"]
    migrations = scenarios["Every migration is applied and none failed"]
    assert result.returncode == 1, result.stdout + result.stderr
    assert login["outcome"] == migrations["outcome"] == "failed"
    # What a user's login got: HTTP 500 when the API's own database timeout comes first,
    # else nothing within the runbook's read timeout (the sandbox API's is as long).
    assert re.search(r"a login (answered HTTP 500|got no answer within 5 s)",
                     login["message"]), login["message"]
    # ... asked as the database went silent, not after the login check's own wait for it
    assert "while the database was not answering)" in login["message"], login["message"]
    # one asking, the run's, named by both
    asked = {s["message"].split("database unreachable: ")[1].split(" by ")[0]
             for s in (login, migrations)}
    assert len(asked) == 1, asked
    for scenario in (login, migrations):
        assert f"by {reachability.AHEAD})" in scenario["message"], scenario["message"]


def test_with_the_web_front_end_stopped_the_run_asks_it_ahead_and_checks_it_after_the_rest(
        healthy_sandbox: RunningSandbox, tmp_path: Path) -> None:
    """The web check is marked as needing the front end: the run asks it as its first check
    starts and runs it, with the other checks marked as needing a component (the migration
    check, marked as needing the database), after the checks that need nothing marked (the
    API's, which the features list after the migration check), so the asking's read timeout
    overlaps them. The web check fails naming the run's asking; the checks that do not need
    the front end pass."""
    result, scenarios = _check_with_stopped(
        healthy_sandbox, "web", "web_front_end or api_reports or migration_is_applied", tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    names = list(scenarios)
    web = scenarios["The web front end answers HTTP 200"]
    assert web["outcome"] == "failed"
    assert "web unreachable: " in web["message"], web["message"]
    assert "one HTTP request to WEB_URL" in web["message"], web["message"]
    assert f"by {reachability.AHEAD})" in web["message"], web["message"]
    assert scenarios["The API reports status ok with a current timestamp"]["outcome"] == "passed"
    assert scenarios["Every migration is applied and none failed"]["outcome"] == "passed"
    # the features list the migration check first: the run moved it and the web check after
    assert names == ["The API reports status ok with a current timestamp",
                     "Every migration is applied and none failed",
                     "The web front end answers HTTP 200"], names


WAITING_ON_WORKERS = ("An e-mail the worker sends is delivered",
                      "The worker completes a canary job on the email queue",
                      "The worker completes a canary job on the release-process queue",
                      "A requested release is processed by the worker")


def test_with_the_worker_stopped_one_asking_of_both_queues_fails_every_check_that_needs_it(
        healthy_sandbox: RunningSandbox, tmp_path: Path) -> None:
    """The run asks both queues' workers as it starts, with a canary job each, and runs the
    checks that wait on a worker last (the e-mail check stands before the Redis and database
    checks in the features): while the canaries wait, the checks that need no worker run
    and pass. The e-mail and release checks fail naming that one asking, and each queue's
    canary check reports its own canary, still waiting, and why it was not waited for
    longer: no connection of the worker waited for a job and no job was active."""
    result, scenarios = _check_with_stopped(
        healthy_sandbox, "worker",
        "worker_sends or canary_job or release_is_processed or redis_answers"
        " or database_answers", tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(scenarios) == 6, list(scenarios)
    assert {scenarios[name]["outcome"] for name in WAITING_ON_WORKERS} == {"failed"}, scenarios
    assert scenarios["Redis answers PONG"]["outcome"] == "passed"
    assert scenarios["The database answers"]["outcome"] == "passed"
    assert list(scenarios)[2:] == sorted(WAITING_ON_WORKERS, key=list(scenarios).index)
    assert set(list(scenarios)[2:]) == set(WAITING_ON_WORKERS), list(scenarios)
    email = scenarios["An e-mail the worker sends is delivered"]["message"]
    release = scenarios["A requested release is processed by the worker"]["message"]
    assert "worker:email unreachable" in email, email
    assert "worker:release-process unreachable" in release, release
    asking = {m.split("asked once for this run at ")[1] for m in (email, release)}
    assert len(asking) == 1, asking
    assert f"by {reachability.AHEAD})" in email, email
    for queue in ("email", "release-process"):
        canary = scenarios[f"The worker completes a canary job on the {queue} queue"]
        assert "the canary job is still waiting: no worker took it" in canary["message"], canary
        # decided by what Redis showed of the worker within the read timeout, not after 10 s
        assert (f"none of the 2 Redis connections named for the {queue} queue waited for a"
                " job" in canary["message"]), canary
    assert "a worker stopped or hung" in email and "a worker stopped or hung" in release


def test_as_the_moved_checks_start_those_whose_components_answered_go_before_the_rest(
        healthy_sandbox: RunningSandbox, tmp_path: Path) -> None:
    """The features list the web check before the database's. With the front end stopped,
    when the moved checks start (after the API's CPU, measured over a second) the database
    has answered and the front end is still being asked: the database check runs first,
    while the asking goes on, and the web check after it."""
    result, scenarios = _check_with_stopped(
        healthy_sandbox, "web", "api_processs_cpu or web_front_end or database_answers",
        tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert list(scenarios) == ["The API process's CPU stays under 80 percent",
                               "The database answers",
                               "The web front end answers HTTP 200"], list(scenarios)
    assert scenarios["The database answers"]["outcome"] == "passed"
    assert scenarios["The web front end answers HTTP 200"]["outcome"] == "failed"


def test_with_the_mail_provider_stopped_no_release_is_requested_to_fail_its_email(
        healthy_sandbox: RunningSandbox, tmp_path: Path) -> None:
    """The worker sends a release's e-mail through the provider. With the provider stopped,
    the release check fails at once on the run's one asking of it (as the run started: the
    Resend check is marked as needing the provider) and
    requests no release: no release job and no release e-mail reach the queues (BullMQ's
    ``added`` events), so no e-mail hangs in the worker and then fails on the target, where
    the failed-e-mail figure would count it."""
    redis = Redis.from_url(healthy_sandbox.env["REDIS_URL"], decode_responses=True)
    queues = ("email", "release-process")
    since = {q: next(iter(redis.xrevrange(f"bull:{q}:events", count=1)), ("0-0",))[0]
             for q in queues}
    result, scenarios = _check_with_stopped(
        healthy_sandbox, "mail", "resend_accepts or release_is_processed", tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
    resend = scenarios["Resend accepts the key and the sender's domain is verified"]
    release = scenarios["A requested release is processed by the worker"]
    assert resend["outcome"] == release["outcome"] == "failed", scenarios
    assert "email provider unreachable" in release["message"], release["message"]
    assert f"by {reachability.AHEAD})" in release["message"], release["message"]
    asking = {m.split("asked once for this run at ")[1] for m in (resend["message"],
                                                                   release["message"])}
    assert len(asking) == 1, asking
    added = {q: [fields.get("jobId", "") for _, fields in redis.xrange(
                 f"bull:{q}:events", min=f"({since[q]}") if fields.get("event") == "added"]
             for q in queues}
    # the canary jobs that asked the workers, and nothing else
    assert not [job for jobs in added.values() for job in jobs
                if not job.startswith(CANARY_ID_PREFIX)], added


def test_a_send_email_job_no_worker_took_makes_the_email_worker_unreachable_for_the_run(
        ) -> None:
    """The machine's Redis, where no worker works the e-mail queue: the delivery check's
    job waits its limit once, and the queue's canary after it fails at once naming it."""
    target = Target.from_variables(
        "t", {"REDIS_URL": "redis://127.0.0.1:6379/13", "FROM_EMAIL": "runbook@example.com"},
        source="test", environment="staging", platform="sandbox")
    gate = reachability.Reachability(TIMEOUTS)
    with reachability.active(gate):
        delivery = journeys.email(target, TIMEOUTS, within_s=0.5)
        assert not delivery.ok and delivery.observed.get("state") == "waiting", delivery
        canary = canary_round_trip(target, TIMEOUTS, "email", within_s=5)
    assert not canary.ok
    assert canary.elapsed_s < 0.5, canary.elapsed_s
    assert "worker:email unreachable" in canary.problem, canary.problem
    assert "a send-email job on email was still waiting after" in canary.problem
    assert "'email delivery'" in canary.problem
    assert canary.advice == "worker"  # Worker Not Processing Jobs, as its own wait would say


def test_a_canary_no_worker_took_makes_its_queues_worker_unreachable_for_the_run() -> None:
    """The machine's Redis, a queue nobody works: the canary waits its limit once, and the
    checks that need that queue's worker fail at once after it; another queue's worker is
    not judged by it."""
    queue = "runbook-test-unworked"
    target = _target("redis://127.0.0.1:6379/13")
    gate = reachability.Reachability(TIMEOUTS)
    with reachability.active(gate):
        canary = canary_round_trip(target, TIMEOUTS, queue, within_s=0.5)
        assert not canary.ok and canary.observed.get("state") == "waiting", canary.observed
        assert canary.observed.get("removed") is True
        stopped = gate.unreachable("worker", "release round trip", target,
                                   needs=(reachability.worker(queue),))
        other = gate.unreachable("worker", "release round trip", target,
                                 needs=(reachability.worker("another-queue"),))
    assert stopped is not None and other is None
    assert stopped.component == f"worker:{queue}"
    assert "still waiting after" in stopped.detail and "no worker took it" in stopped.detail
    assert f"'queues {queue} canary'" in stopped.blocked()
    assert "its canary job on the queue" in stopped.blocked()


def test_a_run_asks_every_queues_worker_at_once_and_each_canary_check_gets_its_own() -> None:
    """The machine's Redis, two queues nobody works: the first check that needs one
    queue's worker asks both at once (one wait, not two), and each canary check of the run
    is then handed its queue's canary once."""
    first, second = "runbook-test-unworked-a", "runbook-test-unworked-b"
    target = _target("redis://127.0.0.1:6379/13")
    gate = reachability.Reachability(TIMEOUTS, ask_workers=ask_workers(TIMEOUTS, 1.0),
                                     queues=(first, second))
    with reachability.active(gate):
        stopped = gate.unreachable("worker", "release round trip", target,
                                   needs=(reachability.worker(first),))
        answers = {a.component: a for a in gate.answers()}
        first_canary = gate.take_canary(first, target, 1.0)
        canary = canary_round_trip(target, TIMEOUTS, second, within_s=1.0)
        again = canary_round_trip(target, TIMEOUTS, second, within_s=1.0)
    assert stopped is not None and stopped.component == f"worker:{first}"
    assert not answers[f"worker:{second}"].ok
    assert answers[f"worker:{first}"].asked_at == answers[f"worker:{second}"].asked_at
    # both canaries waited together: one wait, where one after the other is two
    assert first_canary is not None
    one, other = first_canary.timing, canary.timing
    assert one.started_at < other.finished_at and other.started_at < one.finished_at, (
        one, other)
    assert not canary.ok and canary.observed.get("state") == "waiting", canary
    assert canary.observed.get("removed") is True
    assert canary.observed.get("job_id") != again.observed.get("job_id")
    assert "worker:runbook-test-unworked-b unreachable" in again.problem, again.problem


def test_a_run_without_a_check_that_waits_on_a_worker_puts_no_canary_on_the_queues(
        healthy_sandbox: RunningSandbox, tmp_path: Path) -> None:
    """Asking the workers ahead is for runs that hold a check waiting on one: a run of the
    Redis check alone adds no canary job to either queue (BullMQ writes an ``added`` event
    with the job's id to the queue's event stream), where a run of the e-mail queue's canary
    check adds one to each queue, the release queue's included."""
    redis = Redis.from_url(healthy_sandbox.env["REDIS_URL"], decode_responses=True)
    queues = ("email", "release-process")

    def newest() -> dict[str, str]:
        return {q: next(iter(redis.xrevrange(f"bull:{q}:events", count=1)), ("0-0",))[0]
                for q in queues}

    def canaries_added(since: dict[str, str]) -> dict[str, list[str]]:
        return {q: [fields["jobId"] for _, fields in redis.xrange(
                    f"bull:{q}:events", min=f"({since[q]}")
                    if fields.get("event") == "added"
                    and fields.get("jobId", "").startswith(CANARY_ID_PREFIX)]
                for q in queues}

    def check(selection: str) -> None:
        (tmp_path / selection).mkdir()
        done = runbook("check", "--target", "sandbox", "--json", "-k", selection,
                       cwd=tmp_path / selection, env={"RUNBOOK_HOME": str(healthy_sandbox.home)})
        assert done.returncode == 0, done.stdout + done.stderr

    before = newest()
    check("redis_answers")
    assert canaries_added(before) == {"email": [], "release-process": []}
    before = newest()
    check("canary_job and email")
    added = canaries_added(before)
    assert all(len(jobs) == 1 for jobs in added.values()), added


# -- a worker stopped, busy, or asked outside a run ----------------------------------------

SCRATCH_REDIS = "redis://127.0.0.1:6379/13"


@pytest.fixture
def own_worker() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A BullMQ worker process of the test's own (``tests/bullmq_worker.py``) on a queue of
    its own on the machine's Redis, blocked waiting for jobs; stopped and its keys removed
    afterwards."""
    queue = f"runbook-test-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen([sys.executable, "-m", "tests.bullmq_worker", SCRATCH_REDIS,
                                queue], cwd=Path(__file__).resolve().parents[1])
    redis = Redis.from_url(SCRATCH_REDIS, decode_responses=True)
    try:
        assert _wait_for(lambda: _waiting_connections(redis, queue) > 0, 15), (
            "the test's worker did not start waiting for jobs")
        yield queue, process
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        process.wait(10)
        keys = list(redis.scan_iter(f"bull:{queue}:*"))
        if keys:
            redis.delete(*keys)
        redis.close()


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _waiting_connections(redis: Redis, queue: str) -> int:
    """Connections named for ``queue``'s workers blocked waiting for a job."""
    return sum(1 for c in redis.client_list()
               if c["name"].startswith(f"bull:{queue}:w:") and "b" in c["flags"])


def test_a_worker_stopped_long_before_the_run_is_found_within_the_read_timeout(
        own_worker: tuple[str, subprocess.Popen[bytes]]) -> None:
    """A worker stopped (SIGSTOP) after its last wait for a job ran out: none of its
    connections waits for a job again and none of the queue's jobs is active, so a run's
    canary ends after the read timeout, not the allowance, saying so, and leaves no job.
    Outside a run's gate (a drill waiting for a restarted worker), the same canary is given
    its whole allowance."""
    queue, process = own_worker
    redis = Redis.from_url(SCRATCH_REDIS, decode_responses=True)
    os.kill(process.pid, signal.SIGSTOP)
    assert _wait_for(lambda: _waiting_connections(redis, queue) == 0, 15)
    timeouts = Timeouts(connect=0.5, read=1.0, deadline=2.0)
    with reachability.active(reachability.Reachability(timeouts)):
        canary = canary_round_trip(_target(SCRATCH_REDIS), timeouts, queue, within_s=8)
    assert not canary.ok and canary.observed["state"] == "waiting", canary
    found = canary.observed.get("no_worker")
    assert found and found["connections"] == 2, canary.observed  # a Python worker holds two
    assert (f"none of the 2 Redis connections named for the {queue} queue waited for a job"
            in canary.problem and "a worker stopped or hung" in canary.problem), canary.problem
    assert canary.observed["removed"] is True
    assert not list(redis.scan_iter(f"bull:{queue}:{CANARY_ID_PREFIX}*"))
    alone = canary_round_trip(_target(SCRATCH_REDIS), timeouts, queue, within_s=1.5)
    assert not alone.ok and "no_worker" not in alone.observed, alone.observed
    assert alone.observed["waited_ms"] >= 1500, alone.observed
    redis.close()


def test_a_busy_worker_is_given_the_whole_allowance(
        own_worker: tuple[str, subprocess.Popen[bytes]]) -> None:
    """A worker busy with a long job is not waiting for jobs, but its job is active: a run's
    canary behind it is given its whole allowance, as the feature's "allowing 10 seconds"
    says, and not judged by the read timeout."""
    queue, _ = own_worker
    redis = Redis.from_url(SCRATCH_REDIS, decode_responses=True)

    async def enqueue() -> None:
        bull = Queue(queue, {"connection": redis_options(SCRATCH_REDIS)})
        await bull.add("slow", {"sleep_s": 30}, {"jobId": "runbook-test-slow"})
        await bull.close()

    asyncio.run(enqueue())
    assert _wait_for(lambda: redis.llen(f"bull:{queue}:active") == 1, 10)
    timeouts = Timeouts(connect=0.5, read=0.5, deadline=2.0)
    with reachability.active(reachability.Reachability(timeouts)):
        canary = canary_round_trip(_target(SCRATCH_REDIS), timeouts, queue, within_s=2)
    assert not canary.ok and canary.observed["state"] == "waiting", canary
    assert "no_worker" not in canary.observed, canary.observed
    assert canary.observed["waited_ms"] >= 2000, canary.observed
    assert canary.observed["removed"] is True
    redis.close()
