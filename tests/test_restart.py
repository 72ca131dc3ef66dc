"""Restart Services, measured: the measurement rules on made-up polls, the poller against a
scripted outage, and real restarts of the sandbox's API, worker and web."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from runbook.actions.restart import (
    Poll,
    RestartRecord,
    analyse,
    probe_for,
    restart_and_measure,
)
from runbook.config import Target
from runbook.errors import SafetyGateError
from runbook.platforms import RecordingPlatform, platform_for
from runbook.platforms.base import LogLines, Variables, not_run
from runbook.probes import api as api_probe
from runbook.results import Activity, ProbeResult, Timing, utcnow
from runbook.timeouts import Timeouts

UNIT = Target.from_variables("unit", {"API_URL": "http://127.0.0.1:9",
                                      "RUNBOOK_ENVIRONMENT": "staging"}, source="test")


def _poll(start: float, ok: bool, problem: str = "") -> Poll:
    return Poll(start, start + 0.01, ok, "" if ok else (problem or "HTTP 502"))


# -- the rules -------------------------------------------------------------------------


def test_downtime_runs_from_the_first_failure_to_the_confirmed_recovery() -> None:
    polls = [_poll(-0.2, True), _poll(0.1, True), _poll(0.2, False, "refused"),
             _poll(0.3, False, "refused"), _poll(0.4, True), _poll(0.5, False, "HTTP 502"),
             _poll(0.6, True), _poll(0.7, True), _poll(0.8, True), _poll(0.9, True)]
    measured = analyse(polls, returned_s=0.65)
    assert measured.healthy_before is True
    assert measured.time_to_healthy_s == pytest.approx(0.6)  # the flap at 0.5 counts
    assert measured.downtime_s == pytest.approx(0.4)
    assert measured.confirmed_s == pytest.approx(0.81)
    assert measured.problems == ("refused", "HTTP 502")


def test_passes_before_the_restart_shows_are_not_healthy_again() -> None:
    # The old instance answers while the call runs; only after it returned do passes count.
    polls = [_poll(0.1, True), _poll(0.2, True), _poll(0.3, True), _poll(0.4, True),
             _poll(1.1, True), _poll(1.2, True), _poll(1.3, True)]
    measured = analyse(polls, returned_s=1.0)
    assert measured.downtime_s == 0.0
    assert measured.time_to_healthy_s == pytest.approx(1.1)


def test_no_three_passes_means_not_healthy_and_downtime_is_a_lower_bound() -> None:
    polls = [_poll(0.1, False), _poll(0.2, True), _poll(0.3, True), _poll(0.4, False)]
    measured = analyse(polls, returned_s=0.05)
    assert measured.time_to_healthy_s is None and measured.confirmed_s is None
    assert measured.downtime_s == pytest.approx(0.41 - 0.1)


def test_each_service_is_judged_by_its_own_probe() -> None:
    assert probe_for("api") is api_probe.health
    assert probe_for("web").__name__ == "front_page"
    assert probe_for("worker").__qualname__.startswith("worker_probe")


# -- the poller against a scripted outage ------------------------------------------------


class ScriptedPlatform:
    """A platform whose restart takes ``call_s`` and whose service is down for ``down_s``
    of it, starting ``down_at_s`` into the call."""

    name = "scripted"

    def __init__(self, *, call_s: float, down_at_s: float, down_s: float,
                 allow_changes: bool = True) -> None:
        self.call_s, self.down_at_s, self.down_s = call_s, down_at_s, down_s
        self.allow_changes = allow_changes
        self.down_from: float | None = None
        self.probed_before_restart = False
        self.probes = 0

    def restart(self, service: str) -> Activity:
        if not self.allow_changes:
            raise SafetyGateError("refused: scripted")
        self.probed_before_restart = self.probes > 0
        started_at, started = utcnow(), time.monotonic()
        self.down_from = started + self.down_at_s
        time.sleep(self.call_s)
        return Activity(f"restart {service}", ("scripted",),
                        Timing(started_at, utcnow(), time.monotonic() - started))

    def probe(self, target: Target, timeouts: Timeouts) -> ProbeResult:
        self.probes += 1
        now = time.monotonic()
        down = self.down_from is not None and self.down_from <= now < self.down_from + \
            self.down_s
        stamp = utcnow()
        return ProbeResult("api", "health", "unit", Timing(stamp, stamp, 0.0),
                           problem="connection refused" if down else "")

    def logs(self, service: str, *, since: str = "1h", lines: int = 500) -> LogLines:
        return LogLines(service, not_run("logs", "scripted"), (), ())

    def variables(self, service: str) -> Variables:
        return Variables(service, not_run("variables", "scripted"))

    def status(self, service: str | None = None) -> Activity:
        return not_run("status", "scripted")


def test_an_outage_during_the_restart_call_is_measured() -> None:
    platform = ScriptedPlatform(call_s=0.8, down_at_s=0.2, down_s=0.5)
    record = restart_and_measure(platform, "api", UNIT, Timeouts(), within_s=5,
                                 interval_s=0.02, probe=platform.probe)
    assert platform.probed_before_restart
    assert record.ok and record.healthy and record.healthy_before is True
    assert record.downtime_s == pytest.approx(0.5, abs=0.1)
    assert record.time_to_healthy_s == pytest.approx(0.7, abs=0.1)
    assert record.seen == ("connection refused",)
    assert [run["ok"] for run in record.timeline()] == [True, False, True]
    assert "down 0." in record.summary()


def test_a_service_that_stays_down_is_not_healthy_and_waiting_ends_in_time() -> None:
    platform = ScriptedPlatform(call_s=0.1, down_at_s=0.0, down_s=3600)
    started = time.monotonic()
    record = restart_and_measure(platform, "api", UNIT, Timeouts(), within_s=1.0,
                                 interval_s=0.05, probe=platform.probe)
    assert time.monotonic() - started < 1.0 + 1.0
    assert not record.ok and not record.healthy and record.time_to_healthy_s is None
    assert record.downtime_s >= 0.8
    assert "NOT healthy again within 1 s" in record.summary()


def test_a_refused_restart_raises_and_leaves_no_poller() -> None:
    platform = ScriptedPlatform(call_s=0.1, down_at_s=0, down_s=0, allow_changes=False)
    with pytest.raises(SafetyGateError):
        restart_and_measure(platform, "api", UNIT, Timeouts(), within_s=1,
                            interval_s=0.02, probe=platform.probe)
    assert not [t for t in threading.enumerate()
                if t.name == "runbook-restart-poller" and t.is_alive()]


# -- the real sandbox ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_target(sandbox: Any) -> Target:
    return Target.from_variables("sandbox", sandbox.env, source="sandbox",
                                 environment="sandbox", platform="sandbox")


def _report(record: RestartRecord) -> None:
    print(f"\n{record.summary()}\n  downtime_s={record.downtime_s:.3f}"
          f" time_to_healthy_s={record.time_to_healthy_s}"
          f" restart_call_s={record.activity.elapsed_s:.3f}")


@pytest.mark.parametrize("service", ["api", "worker", "web"])
def test_a_real_restart_is_measured(healthy_sandbox: Any, sandbox_target: Target,
                                    service: str) -> None:
    box = healthy_sandbox.sandbox
    before = box.status().components[service]
    platform = RecordingPlatform(platform_for(sandbox_target, allow_changes=True))
    record = restart_and_measure(platform, service, sandbox_target, Timeouts(), within_s=30,
                                 interval_s=0.05)
    _report(record)
    after = box.status().components[service]
    assert record.ok, record.summary()
    assert after.pid != before.pid, "no new process: the restart did not happen"
    assert record.healthy_before is True
    # The supervisor stops the old process before starting the new one on the same port
    # (api, web) or Redis connections (worker): a real restart has a gap. A poll sees it
    # when one lands in it (the api's start always leaves room; a busy machine can poll
    # past the web's short one): the downtime is measured exactly when a poll failed.
    assert (record.downtime_s > 0) == (record.failed_polls > 0), record.summary()
    if service == "api":
        assert record.downtime_s > 0, record.summary()
    assert record.time_to_healthy_s is not None
    assert record.downtime_s <= record.time_to_healthy_s
    assert [(c.method, c.kind) for c in platform.calls] == [("restart", "destructive")]


def test_without_allow_changes_the_sandbox_is_not_restarted(
    sandbox: Any, sandbox_target: Target,
) -> None:
    before = sandbox.sandbox.status().components["api"]
    with pytest.raises(SafetyGateError, match="without allow_changes"):
        restart_and_measure(platform_for(sandbox_target, allow_changes=False), "api",
                            sandbox_target, Timeouts(), within_s=5)
    after = sandbox.sandbox.status().components["api"]
    assert (after.pid, after.launches) == (before.pid, before.launches)


def test_the_worker_probe_with_canaries_passes_on_a_healthy_sandbox(
    sandbox: Any, sandbox_target: Target,
) -> None:
    result = probe_for("worker", canary=True)(sandbox_target, Timeouts())
    assert result.ok, result.problem
    assert set(result.observed) == {"email workers", "release-process workers",
                                    "email canary", "release-process canary"}
