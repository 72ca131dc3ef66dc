"""Common Operations > Restart Services, measured.

``restart_and_measure`` polls the service's own health probe in a background thread that
starts before the restart is issued, so an outage during the platform call itself is seen,
and keeps polling until the service is healthy again: three consecutive passing polls.

Figures, all from the polls' monotonic clocks, relative to the moment the restart was issued:

* ``downtime_s``: from the start of the first failed poll to the start of the first pass of
  the three that confirmed health (a flap inside that window counts whole); 0.0 when no poll
  failed. Resolution is one poll interval plus one probe's duration.
* ``time_to_healthy_s``: from the restart being issued to the start of the first of those
  three passes; ``None`` when they did not all complete within ``within_s``.

A streak of passes counts only once the restart has visibly taken effect: after a failed poll,
or, when none failed (a rolling restart), once the platform call has returned. Passes seen
before the old instance went down therefore never count as "healthy again".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runbook.config import Target
from runbook.platforms.base import PlatformAdapter, check_service
from runbook.probes import api as api_probe
from runbook.probes import combine, describe_error
from runbook.probes import queues as queue_probe
from runbook.probes import web as web_probe
from runbook.results import Activity, ProbeResult, Result, utcnow
from runbook.timeouts import Timeouts
from runbook.wait import wait_until

#: A health probe: one bounded, read-only check of a service.
Probe = Callable[[Target, Timeouts], ProbeResult]
#: Consecutive passing polls that make a service healthy again.
HEALTHY_STREAK = 3


def worker_probe(*, canary: bool = False, canary_within_s: float = 5.0) -> Probe:
    """The worker's health: a worker registered on both BullMQ queues (``queues.workers``),
    and with ``canary`` a canary job completed on each within ``canary_within_s``."""

    def probe(target: Target, timeouts: Timeouts) -> ProbeResult:
        results = [queue_probe.workers(target, timeouts, queue) for queue in queue_probe.QUEUES]
        if canary and all(r.ok for r in results):
            results += [queue_probe.canary_round_trip(target, timeouts, queue, canary_within_s)
                        for queue in queue_probe.QUEUES]
        return combine("worker", "workers listening", results)

    return probe


def probe_for(service: str, *, canary: bool = False) -> Probe:
    """The probe that judges ``service`` healthy: api ``api.health``, web
    ``web.front_page``, worker ``queues.workers`` on both queues (plus canaries with
    ``canary``). Raises ``ConfigError`` for an unknown service."""
    check_service(service)
    if service == "api":
        return api_probe.health
    if service == "web":
        return web_probe.front_page
    return worker_probe(canary=canary)


@dataclass(frozen=True)
class Poll:
    """One health poll: when it started and ended (seconds from the restart being issued;
    negative before it), whether it passed, and the probe's problem when not."""

    start_s: float
    end_s: float
    ok: bool
    problem: str = ""


@dataclass(frozen=True)
class RestartRecord(Result):
    """A restart and what the service's own probe saw around it (see the module docstring
    for how each figure is measured). ok when the platform call succeeded and the service
    was healthy again within ``within_s``; ``seen``: what the failing polls said."""

    service: str
    target: str
    platform: str
    activity: Activity
    issued_at: datetime
    within_s: float
    interval_s: float
    downtime_s: float
    time_to_healthy_s: float | None
    confirmed_s: float | None
    healthy: bool
    healthy_before: bool | None
    polls: tuple[Poll, ...] = field(repr=False)
    seen: tuple[str, ...] = ()
    evidence_properties = ("poll_count", "failed_polls", "timeline")

    @property
    def problems(self) -> tuple[str, ...]:
        found = [] if self.activity.ok else [f"the restart call failed: {self.activity.error}"]
        if not self.healthy:
            saw = f"; saw: {'; '.join(self.seen)}" if self.seen else ""
            found.append(f"{self.service} NOT healthy again within {self.within_s:g} s{saw}")
        return tuple(found)

    @property
    def poll_count(self) -> int:
        return len(self.polls)

    @property
    def failed_polls(self) -> int:
        return sum(1 for poll in self.polls if not poll.ok and poll.end_s >= 0)

    def timeline(self) -> list[dict[str, Any]]:
        """The polls as runs of the same verdict: ``{"from_s", "to_s", "ok", "polls"}``."""
        runs: list[dict[str, Any]] = []
        for poll in self.polls:
            if runs and runs[-1]["ok"] == poll.ok:
                runs[-1]["to_s"] = round(poll.end_s, 3)
                runs[-1]["polls"] += 1
            else:
                runs.append({"from_s": round(poll.start_s, 3), "to_s": round(poll.end_s, 3),
                             "ok": poll.ok, "polls": 1})
        return runs

    def summary(self) -> str:
        """One line for a report or a failure message."""
        if self.healthy and self.time_to_healthy_s is not None:
            back = f"healthy again after {self.time_to_healthy_s:.2f} s"
        else:
            back = f"NOT healthy again within {self.within_s:g} s"
        call = "" if self.activity.ok else f"; the restart call failed: {self.activity.error}"
        seen = f"; saw: {'; '.join(self.seen)}" if self.seen else ""
        return (f"{self.service} restart on {self.target} via {self.platform}: down"
                f" {self.downtime_s:.2f} s, {back} ({len(self.polls)} polls,"
                f" {self.failed_polls} failed){call}{seen}")


@dataclass(frozen=True)
class Measurement:
    """What a sequence of polls says about a restart (``analyse``)."""

    downtime_s: float
    time_to_healthy_s: float | None
    confirmed_s: float | None
    healthy_before: bool | None
    problems: tuple[str, ...]


def analyse(polls: Sequence[Poll], *, returned_s: float, streak: int = HEALTHY_STREAK
            ) -> Measurement:
    """Measure a restart from its polls (times relative to the restart being issued;
    ``returned_s`` is when the platform call returned). Pure: the rules are in the module
    docstring."""
    ordered = sorted(polls, key=lambda p: p.start_s)
    before = [p for p in ordered if p.end_s < 0]
    during = [p for p in ordered if p.end_s >= 0]
    healthy_before = before[-1].ok if before else None
    first_failure: float | None = None
    problems: list[str] = []
    run: list[Poll] = []
    healthy_at: float | None = None
    confirmed: float | None = None
    for poll in during:
        if not poll.ok:
            if first_failure is None:
                first_failure = max(poll.start_s, 0.0)
            if poll.problem and poll.problem not in problems:
                problems.append(poll.problem)
            run = []
            continue
        if not run and first_failure is None and poll.start_s < returned_s:
            continue  # no sign of the restart yet: this pass may be the old instance
        run.append(poll)
        if len(run) >= streak:
            healthy_at, confirmed = max(run[0].start_s, 0.0), run[-1].end_s
            break
    if first_failure is None:
        downtime = 0.0
    elif healthy_at is not None:
        downtime = healthy_at - first_failure
    else:  # still down when polling ended: a lower bound
        downtime = (during[-1].end_s if during else 0.0) - first_failure
    return Measurement(max(downtime, 0.0), healthy_at, confirmed, healthy_before,
                       tuple(problems))


class _Poller:
    """Runs the probe every ``interval_s`` in a daemon thread until stopped; each poll is
    bounded by the probe's own deadline."""

    def __init__(self, probe: Probe, target: Target, timeouts: Timeouts,
                 interval_s: float) -> None:
        self.probe = probe
        self.target = target
        self.timeouts = timeouts
        self.interval_s = interval_s
        self.origin = time.monotonic()
        self._polls: list[tuple[float, float, bool, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="runbook-restart-poller",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeouts.deadline + 1.0)

    def count(self) -> int:
        with self._lock:
            return len(self._polls)

    def polls(self, issued: float) -> list[Poll]:
        with self._lock:
            raw = list(self._polls)
        return [Poll(start - issued, end - issued, ok, problem)
                for start, end, ok, problem in raw]

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                result = self.probe(self.target, self.timeouts)
                ok, problem = result.ok, result.problem
            except Exception as exc:  # a probe that raises is a failed poll
                ok, problem = False, describe_error(exc)
            with self._lock:
                self._polls.append((started, time.monotonic(), ok, problem))
            self._stop.wait(self.interval_s)


def restart_and_measure(platform: PlatformAdapter, service: str, target: Target,
                        timeouts: Timeouts, *, within_s: float, interval_s: float = 0.1,
                        probe: Probe | None = None) -> RestartRecord:
    """Restart ``service`` through ``platform`` and measure its downtime and time to
    healthy with its own probe (``probe_for(service)`` unless ``probe`` is given), polled
    every ``interval_s`` from before the restart until three consecutive passes or
    ``within_s`` after it was issued.

    Raises what ``platform.restart`` raises (``SafetyGateError`` without allow_changes,
    ``RunbookError`` for a missing CLI); the poller is stopped either way. A restart call
    that fails, or a service not healthy in time, is recorded (``ok`` false), not raised."""
    check_service(service)
    check = probe if probe is not None else probe_for(service)
    poller = _Poller(check, target, timeouts, interval_s)
    poller.start()
    try:
        # One poll first: the baseline, and proof the poller runs before the restart.
        wait_until(poller.count, timeout=timeouts.deadline + 1.0, interval=0.01,
                   accept=lambda n: n >= 1)
        issued = time.monotonic()
        issued_at = utcnow()
        activity = platform.restart(service)
        returned_s = time.monotonic() - issued

        def confirmed() -> Measurement:
            return analyse(poller.polls(issued), returned_s=returned_s)

        wait_until(confirmed, timeout=max(0.0, within_s - (time.monotonic() - issued)),
                   interval=interval_s, accept=lambda m: m.confirmed_s is not None)
    finally:
        poller.stop()
    polls = poller.polls(issued)
    measured = analyse(polls, returned_s=returned_s)
    healthy = measured.confirmed_s is not None and measured.confirmed_s <= within_s
    return RestartRecord(
        service=service,
        target=target.describe(),
        platform=platform.name,
        activity=activity,
        issued_at=issued_at,
        within_s=within_s,
        interval_s=interval_s,
        downtime_s=measured.downtime_s,
        time_to_healthy_s=measured.time_to_healthy_s if healthy else None,
        confirmed_s=measured.confirmed_s,
        healthy=healthy,
        healthy_before=measured.healthy_before,
        polls=tuple(polls),
        seen=measured.problems,
    )
