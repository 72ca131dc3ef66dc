"""``runbook watch``: the synthetic checks every interval, with alert thresholds.

Each round is one ordinary run (the caller's ``run_round``, i.e. ``runbook check``'s path).
Per scenario, consecutive failing and passing rounds are counted: an alert fires after
``fail_after`` failing rounds in a row and resolves after ``resolve_after`` passing ones.
Each alert and each resolution is posted to the webhook once, with its detection latency
(the first failing round's start to the alert). The counters live in
``RUNBOOK_HOME/watch-state.json``, so a restarted watch keeps counting; ``metrics.prom`` is
rewritten (and pushed) every round with the alert state.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook.redact import Redactor
from runbook.reporting import alerts, live, metrics, publish
from runbook.reporting.summary import EXIT_FAILED, EXIT_OK, EXIT_WARNINGS, NON_PAGING_TIERS
from runbook.sandbox.layout import write_json_atomic

STATE_FILE = "watch-state.json"
EXIT_INTERRUPTED = 130
#: Exit codes of a round that say the configuration is wrong: waiting will not fix it.
_FATAL = (2, 3)
PASSING = frozenset({"passed", "flaky"})
FAILING = frozenset({"failed", "error"})


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


@dataclass
class Counter:
    """One scenario's consecutive rounds and its alert."""

    name: str
    feature: str = ""
    sections: list[str] = field(default_factory=list)
    tier: str | None = None
    failures: int = 0
    passes: int = 0
    firing: bool = False
    #: Start of the first round of the current failing streak (ISO UTC).
    first_failed_at: str | None = None
    fired_at: str | None = None
    #: The first failing round's start to the alert, in seconds.
    detection_latency_s: float | None = None
    last_message: str = ""

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Counter:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def scenario(self, nodeid: str) -> dict[str, Any]:
        """As a ``summary.json`` scenario, for labels and messages."""
        return {"nodeid": nodeid, "name": self.name, "feature": self.feature,
                "sections": self.sections, "tier": self.tier, "message": self.last_message}


@dataclass(frozen=True)
class Event:
    """An alert that fired or resolved in a round."""

    kind: str  # "alert" | "resolved"
    nodeid: str
    counter: Counter
    scenario: Mapping[str, Any]
    #: alert: detection latency; resolved: how long the alert lasted.
    seconds: float

    def line(self) -> str:
        tier = alerts.tier_of(self.scenario)
        if self.kind == "alert":
            return (f"ALERT [{tier}] {self.counter.name}: failed {self.counter.failures} rounds"
                    f" in a row; detection latency {self.seconds:.1f} s (first failing round"
                    f" at {self.counter.first_failed_at})")
        return (f"RESOLVED [{tier}] {self.counter.name}: passed {self.counter.passes} rounds"
                f" in a row; the alert lasted {self.seconds:.1f} s")


@dataclass
class WatchState:
    """Every scenario's counters for one target, and how many rounds have run."""

    target: str
    rounds: int = 0
    scenarios: dict[str, Counter] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, target: str) -> WatchState:
        """The state of ``target`` in ``path``; fresh when there is none (or it is
        unreadable: counting again from zero is the safe side of a broken file)."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            raw = document["targets"][target]
            return cls(target, int(raw.get("rounds", 0)),
                       {k: Counter.from_json(v) for k, v in raw.get("scenarios", {}).items()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls(target)

    def save(self, path: Path) -> None:
        """Write this target's state into ``path`` (other targets' kept), atomically."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(document.get("targets"), dict):
                raise ValueError
        except (OSError, ValueError, AttributeError):
            document = {"version": 1, "targets": {}}
        document["targets"][self.target] = {
            "rounds": self.rounds,
            "scenarios": {k: asdict(v) for k, v in self.scenarios.items()},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, document)

    def observe(self, summary: Mapping[str, Any], round_started: datetime, seen_at: datetime,
                *, fail_after: int, resolve_after: int) -> list[Event]:
        """Count one round's outcomes; the alerts that fire and resolve with it. Skipped
        and expired scenarios leave their counters as they were."""
        self.rounds += 1
        events: list[Event] = []
        for scenario in summary.get("scenarios", []):
            nodeid = str(scenario.get("nodeid", scenario.get("name", "")))
            counter = self.scenarios.setdefault(nodeid, Counter(str(scenario.get("name", ""))))
            counter.name = str(scenario.get("name", counter.name))
            counter.feature = str(scenario.get("feature", ""))
            counter.sections = list(scenario.get("sections") or [])
            counter.tier = scenario.get("tier")
            outcome = scenario.get("outcome")
            if outcome in FAILING:
                event = _failed(counter, nodeid, scenario, round_started, seen_at, fail_after)
            elif outcome in PASSING:
                event = _passed(counter, nodeid, scenario, seen_at, resolve_after)
            else:
                event = None
            if event is not None:
                events.append(event)
        return events

    def firing(self) -> dict[str, Counter]:
        return {k: c for k, c in self.scenarios.items() if c.firing}


def _failed(counter: Counter, nodeid: str, scenario: Mapping[str, Any], round_started: datetime,
            seen_at: datetime, fail_after: int) -> Event | None:
    counter.failures += 1
    counter.passes = 0
    counter.last_message = str(scenario.get("message", ""))
    if counter.failures == 1 or counter.first_failed_at is None:
        counter.first_failed_at = _iso(round_started)
    if counter.firing or counter.failures < fail_after:
        return None
    counter.firing = True
    counter.fired_at = _iso(seen_at)
    first = datetime.fromisoformat(counter.first_failed_at)
    counter.detection_latency_s = round((seen_at - first).total_seconds(), 3)
    return Event("alert", nodeid, counter, scenario, counter.detection_latency_s)


def _passed(counter: Counter, nodeid: str, scenario: Mapping[str, Any], seen_at: datetime,
            resolve_after: int) -> Event | None:
    counter.passes += 1
    counter.failures = 0
    if not counter.firing:
        counter.first_failed_at = None
        return None
    if counter.passes < resolve_after:
        return None
    counter.firing = False
    lasted = (seen_at - datetime.fromisoformat(counter.fired_at)).total_seconds() \
        if counter.fired_at else 0.0
    counter.first_failed_at = None
    return Event("resolved", nodeid, counter, scenario, lasted)


def add_watch_metrics(exposition: metrics.Exposition, state: WatchState) -> None:
    """The alert state: per scenario whether its alert fires, its consecutive failing and
    passing rounds, and the detection latency of its last alert."""
    exposition.family("runbook_watch_rounds", "Rounds the watch has run for the target.").add(
        {"target": state.target}, state.rounds)
    firing = exposition.family("runbook_watch_alert_firing",
                               "1 while the scenario's alert fires (N failing rounds in a row,"
                               " until M passing ones), else 0.")
    failures = exposition.family("runbook_watch_consecutive_failures",
                                 "Failing rounds in a row.")
    passes = exposition.family("runbook_watch_consecutive_passes", "Passing rounds in a row.")
    latency = exposition.family("runbook_watch_detection_latency_seconds",
                                "The first failing round's start to the scenario's last alert.")
    for nodeid, counter in state.scenarios.items():
        labels = metrics.scenario_labels(state.target, counter.scenario(nodeid))
        firing.add(labels, 1.0 if counter.firing else 0.0)
        failures.add(labels, counter.failures)
        passes.add(labels, counter.passes)
        latency.add(labels, counter.detection_latency_s)


def event_messages(events: list[Event], target: str, junit: Path | None
                   ) -> list[tuple[str, str, dict[str, Any]]]:
    """``(tier, kind, message)``: one webhook message per kind and tier of a round's events."""
    from_junit = alerts.junit_next_steps(junit) if junit is not None else {}
    grouped: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        grouped.setdefault((event.kind, alerts.tier_of(event.scenario)), []).append(event)
    messages: list[tuple[str, str, dict[str, Any]]] = []
    for kind in ("alert", "resolved"):
        for tier in alerts.TIERS:
            batch = grouped.get((kind, tier))
            if batch:
                messages.append((tier, kind, _event_message(kind, tier, batch, target,
                                                            from_junit)))
    return messages


def _event_message(kind: str, tier: str, batch: list[Event], target: str,
                   from_junit: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    count = len(batch)
    checks = f"{count} runbook check{'s' if count != 1 else ''}"
    failures = []
    notes = []
    for event in batch:
        failure = alerts.failure_of(event.scenario, target, from_junit)
        if kind == "alert":
            notes.append(f"failed {event.counter.failures} rounds in a row; detected"
                         f" {event.seconds:.1f} s after the first failing round")
        else:
            failure = alerts.Failure(failure.scenario, failure.tier, failure.section,
                                     f"passing again; last failure: {event.counter.last_message}",
                                     ())
            notes.append(f"passed {event.counter.passes} rounds in a row; the alert lasted"
                         f" {event.seconds:.1f} s")
        failures.append(failure)
    headline = (f"{tier.upper()} ALERT: {checks} failing on {target}" if kind == "alert"
                else f"RESOLVED ({tier}): {checks} passing again on {target}")
    context = f"LegacyVideo runbook watch · target {target}"
    return alerts.message(headline, failures, context, notes)


#: Ctrl-C, and a scheduler's stop (SIGTERM), which the watch treats as Ctrl-C.
_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while the round's bookkeeping runs (state, webhook, metrics);
    raise KeyboardInterrupt afterwards, so an interrupted watch never loses a count or posts
    an alert twice."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {number: signal.signal(number, lambda signum, frame: caught.append(signum))
                for number in _INTERRUPTS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if caught:
        raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler stopping the watch) raises KeyboardInterrupt for the whole watch,
    as Ctrl-C does: between rounds too, not only while a round's run holds its own handler
    (``runner.run``), so the watch always stops its resident and says where its counters
    are, and exits 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # Ctrl-C's own
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class WatchSettings:
    """What ``runbook watch`` was asked for."""

    target: str
    reports: Path
    state_file: Path
    interval_s: float = 60.0
    fail_after: int = 3
    resolve_after: int = 2
    rounds: int = 0  # 0: until interrupted
    #: The Allure results of this many rounds, the last ones, stay in the reports'
    #: ``allure-results``; older ones go, so a watch that runs for weeks keeps its disk.
    keep_results: int = 60


class Watcher:
    """Runs the rounds, counts, alerts, and keeps ``metrics.prom`` current.

    ``run_round(run_id)`` runs one check and returns its exit code (130 when interrupted);
    ``say`` prints a terminal line, ``warn`` a warning; ``report`` (``--json``) gets each
    round as a document (``round_document``); ``status`` (``--listen``) is given each
    round's metrics, outcomes and alerts; ``forked_cpu()`` gives the CPU seconds of the
    rounds a resident pytest ran so far (``Resident.rounds_cpu_s``), which this process's
    own accounting does not see.
    """

    def __init__(self, settings: WatchSettings, run_round: Callable[[str], int], *,
                 redact: Redactor, delivery: publish.Delivery, say: Callable[[str], None],
                 warn: Callable[[str], None], sleep: Callable[[float], None] = time.sleep,
                 report: Callable[[dict[str, Any]], None] | None = None,
                 status: live.LiveStatus | None = None,
                 forked_cpu: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self.run_round = run_round
        self.redact = redact
        self.delivery = delivery
        self.say = say
        self.warn = warn
        self.sleep = sleep
        self.report = report
        self.status = status
        self.forked_cpu = forked_cpu
        self._round_cpu_from = 0.0
        #: When the rounds whose Allure results are kept started (epoch seconds).
        self._kept_rounds: collections.deque[float] = collections.deque(
            maxlen=max(1, settings.keep_results))
        self.state = WatchState.load(settings.state_file, settings.target)
        #: Rounds of this watch whose bookkeeping is through.
        self.done = 0

    def run(self) -> int:
        """Round after round until ``rounds`` ran (0: until Ctrl-C). Exit code: 130
        interrupted; 2 or 3 when a round says the configuration is wrong; else 1 while a
        paging alert fires at the end, 4 while only warning or info ones do, 0 none."""
        self.done = 0
        next_start = time.monotonic()
        try:
            with terminate_as_interrupt():
                # not a poll: the watch's main loop, rounds paced by the interval until Ctrl-C
                while self.settings.rounds == 0 or self.done < self.settings.rounds:
                    self.sleep(max(0.0, next_start - time.monotonic()))
                    next_start = time.monotonic() + self.settings.interval_s
                    code = self._round()
                    if code in _FATAL:
                        return code
        except KeyboardInterrupt:
            self.say(f"watch interrupted after {self.done} round(s); counters kept in"
                     f" {self.settings.state_file}")
            return EXIT_INTERRUPTED
        return self._exit_code()

    def _round(self) -> int:
        """One round and its bookkeeping, counted in ``done`` once its bookkeeping is
        through (an interrupt held meanwhile comes after, with the round counted)."""
        run_id = uuid.uuid4().hex
        started = datetime.now(UTC)
        self._kept_rounds.append(time.time())
        self._round_cpu_from = self._cpu()
        code = self.run_round(run_id)
        if code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        with deferred_interrupt():
            code = self._bookkeeping(run_id, started, code)
            self.done += 1
            if len(self._kept_rounds) == self._kept_rounds.maxlen:
                # Written before the oldest kept round started: an older round's.
                publish.prune_results(self.settings.reports, self._kept_rounds[0])
        return code

    def _bookkeeping(self, run_id: str, started: datetime, code: int) -> int:
        """The round's results: counters, lines, report, alerts, metrics and status."""
        summary = publish.load_summary(self.settings.reports, run_id)
        if summary is None:
            self.say(f"round {self.state.rounds + 1} {started:%H:%M:%S}Z: no result"
                     f" (exit {code}); counters unchanged")
            if self.report is not None:
                self.report(self.round_document(None, run_id, started, code, []))
            exposition = (self._write_metrics(None, code, started)
                          if code not in _FATAL else None)
            self._update_status(exposition, [], started, code, result=False)
            return code
        events = self.state.observe(summary, started, datetime.now(UTC),
                                    fail_after=self.settings.fail_after,
                                    resolve_after=self.settings.resolve_after)
        self.state.save(self.settings.state_file)
        self.say(self._round_line(summary, started, code))
        for event in events:
            self.say(event.line())
        if self.report is not None:
            self.report(self.round_document(summary, run_id, started, code, events))
        self._post(events)
        exposition = self._write_metrics(summary, code, started)
        self._update_status(exposition, summary.get("scenarios", []), started, code,
                            result=True)
        return code

    def _cpu(self) -> float:
        """CPU seconds so far: this process's, the processes it reaped (a plain round's
        pytest) and the resident's rounds."""
        times = os.times()
        forked = self.forked_cpu() if self.forked_cpu is not None else 0.0
        return (times.user + times.system + times.children_user + times.children_system
                + forked)

    def round_document(self, summary: Mapping[str, Any] | None, run_id: str,
                       started: datetime, code: int, events: list[Event]) -> dict[str, Any]:
        """One round as ``runbook watch --json`` prints it: its outcome counts, failing
        scenarios, the alerts firing after it and those that fired or resolved with it;
        ``"result": false`` (and the counters left as they were) when it gave none."""
        scenarios = list(summary.get("scenarios", [])) if summary is not None else []
        counts: dict[str, int] = {}
        for scenario in scenarios:
            counts[str(scenario.get("outcome"))] = counts.get(str(scenario.get("outcome")), 0) + 1
        return {
            "type": "round",
            "round": self.state.rounds if summary is not None else self.state.rounds + 1,
            "target": self.settings.target,
            "run_id": run_id,
            "started_at": _iso(started),
            "elapsed_s": round((datetime.now(UTC) - started).total_seconds(), 3),
            "cpu_s": round(self._cpu() - self._round_cpu_from, 3),
            "exit_code": code,
            "result": summary is not None,
            "counts": counts,
            "failing": [str(s.get("name")) for s in scenarios if s.get("outcome") in FAILING],
            "firing": [c.name for c in self.state.firing().values()],
            "events": [{"kind": e.kind, "scenario": e.counter.name,
                        "tier": alerts.tier_of(e.scenario), "seconds": round(e.seconds, 3)}
                       for e in events],
        }

    def _round_line(self, summary: Mapping[str, Any], started: datetime, code: int) -> str:
        counts: dict[str, int] = {}
        for scenario in summary.get("scenarios", []):
            counts[str(scenario.get("outcome"))] = counts.get(str(scenario.get("outcome")), 0) + 1
        seen = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no scenarios"
        elapsed = (datetime.now(UTC) - started).total_seconds()
        firing = [c.name for c in self.state.firing().values()]
        failing = [str(s.get("name")) for s in summary.get("scenarios", [])
                   if s.get("outcome") in FAILING]
        line = (f"round {self.state.rounds} {started:%H:%M:%S}Z {elapsed:.1f}s: {seen}"
                f" (exit {code}); alerts firing: {len(firing)}")
        if failing:
            line += f"; failing: {', '.join(failing)}"
        return self.redact(line)

    def _post(self, events: list[Event]) -> None:
        junit = self.settings.reports / "junit.xml"
        for tier, kind, payload in event_messages(events, self.settings.target, junit):
            alerts.deliver(tier, payload, self.redact, explicit=self.delivery.webhook,
                           warn=self.warn, what=kind if kind == "alert" else "resolution")

    def _write_metrics(self, summary: Mapping[str, Any] | None, code: int,
                       started: datetime) -> metrics.Exposition:
        exposition = publish.run_exposition(self.settings.reports, summary,
                                            target=self.settings.target, code=code,
                                            started=started)
        add_watch_metrics(exposition, self.state)
        publish.write_and_push(self.settings.reports, exposition, target=self.settings.target,
                               redact=self.redact, delivery=self.delivery, warn=self.warn)
        return exposition

    def _update_status(self, exposition: metrics.Exposition | None,
                       scenarios: list[Mapping[str, Any]], started: datetime, code: int, *,
                       result: bool) -> None:
        if self.status is None:
            return
        number = self.state.rounds if result else self.state.rounds + 1
        last = live.Round(number, started, (datetime.now(UTC) - started).total_seconds(),
                          code, result)
        firing = [live.Alert(c.name, c.tier or "", c.fired_at or "", c.last_message)
                  for c in self.state.firing().values()]
        self.status.update(exposition, scenarios, last, firing)

    def _exit_code(self) -> int:
        firing = self.state.firing().values()
        if not firing:
            return EXIT_OK
        if all(c.tier in NON_PAGING_TIERS for c in firing):
            return EXIT_WARNINGS
        return EXIT_FAILED


def state_file(home: Path) -> Path:
    """``RUNBOOK_HOME/watch-state.json`` (``RUNBOOK_HOME`` as the CLI resolves it)."""
    return home / STATE_FILE


__all__ = [
    "Counter",
    "Event",
    "WatchSettings",
    "WatchState",
    "Watcher",
    "add_watch_metrics",
    "deferred_interrupt",
    "event_messages",
    "state_file",
]
