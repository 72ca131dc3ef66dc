"""A game day's detection: the scheduled suite, run against the faulted target.

"The scheduled checks detected it" means what the schedule would see: rounds of exactly the
selection ``runbook check`` runs every few minutes (``runner.SYNTHETIC``), through the same
code path (``runner.execute``: a pytest subprocess on the bound features), against the same
target (its variables handed over in the subprocess's environment, never on its command
line). A round writes its ``summary.json`` under the drill's evidence directory; from it
come the scenarios that failed, the runbook sections each failure named (its next steps),
and when each failed. A round stops after the first failure naming the incident's section:
the scenarios after it would not change the detection (the record says how many ran).

Detected: a failed scenario names the incident's section. Time to detect: from the fault's
first effect to the end of the first such scenario. Rounds follow one another until that,
or until the limit has passed (at least one round always runs). A fault the suite does not
see, or sees under another section's name, is reported as such: "not detected by the
scheduled checks", with the signal that was missing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from runbook import runner
from runbook.config import META_VARIABLES, TARGET_VARIABLES
from runbook.drills.faults import DrillContext
from runbook.redact import Redactor
from runbook.results import Record, Result, utcnow
from runbook.targets import RunSpec
from runbook.wait import wait_until


@dataclass(frozen=True)
class Failure(Record):
    """One scheduled scenario that failed in a detection round (evidence: ``scenario``,
    ``restates``, ``named``, ``tier``, ``message``, ``finished_at``)."""

    name: str = field(repr=False)
    sections: tuple[str, ...] = field(repr=False)  # the runbook sections it restates
    named: tuple[str, ...]      # the runbook sections its failure's next steps name
    tier: str | None
    message: str
    finished_at: datetime
    evidence_properties = ("scenario", "restates")

    @property
    def scenario(self) -> str:
        return self.name

    @property
    def restates(self) -> tuple[str, ...]:
        """The runbook sections it restates (its @runbook: tags)."""
        return self.sections


@dataclass(frozen=True)
class Round(Record):
    """One run of the scheduled suite while the fault was in (evidence: its times, exit
    code, ``scenarios_checked``, ``summary`` and the ``failed`` scenarios)."""

    started_at: datetime
    finished_at: datetime
    exit_code: int
    checked: int = field(repr=False)
    failures: tuple[Failure, ...] = field(repr=False)
    summary: str   # where its summary.json is
    evidence_properties = ("scenarios_checked", "failed")

    @property
    def scenarios_checked(self) -> int:
        return self.checked

    @property
    def failed(self) -> tuple[Failure, ...]:
        return self.failures


@dataclass(frozen=True)
class Detection(Result):
    """What the scheduled suite saw of a fault: ok when a check naming the incident's
    section failed within ``within_s`` of it (else ``describe()`` is its problem)."""

    section: str
    fault_at: datetime
    within_s: float
    rounds: tuple[Round, ...]
    evidence_properties = ("method", "time_to_detect_s", "detected_by")

    #: How the fault was detected.
    method = f"the scheduled checks (runbook check's selection: {runner.SYNTHETIC})"

    @property
    def by(self) -> tuple[Failure, ...]:
        """The failures that named the incident's section, earliest first."""
        found = [f for r in self.rounds for f in r.failures if self.section in f.named]
        return tuple(sorted(found, key=lambda f: f.finished_at))

    @property
    def detected_at(self) -> datetime | None:
        return self.by[0].finished_at if self.by else None

    @property
    def time_to_detect_s(self) -> float | None:
        at = self.detected_at
        return None if at is None else (at - self.fault_at).total_seconds()

    @property
    def detected_by(self) -> tuple[Failure, ...]:
        return self.by

    @property
    def in_time(self) -> bool:
        ttd = self.time_to_detect_s
        return ttd is not None and ttd <= self.within_s

    @property
    def problems(self) -> tuple[str, ...]:
        return () if self.in_time else (self.describe(),)

    @property
    def other_failures(self) -> tuple[Failure, ...]:
        return tuple(f for r in self.rounds for f in r.failures if self.section not in f.named)

    def describe(self, signal: str = "") -> str:
        """One line: detected by which scenarios, or what was missing."""
        if self.in_time:
            names = ", ".join(dict.fromkeys(f.name for f in self.by))
            return (f"detected by the scheduled checks in {self.time_to_detect_s:.1f} s:"
                    f" {names}; named {self.section!r}")
        missing = f" (missing signal: {signal})" if signal else ""
        if self.by:
            return (f"not detected by the scheduled checks within {self.within_s:g} s: the"
                    f" first check naming {self.section!r} failed"
                    f" {self.time_to_detect_s:.1f} s after the fault{missing}")
        others = self.other_failures
        if others:
            named = "; ".join(f"{f.name} named {', '.join(f.named) or 'no section'}"
                              for f in others[:5])
            return (f"not detected by the scheduled checks: none named {self.section!r} in"
                    f" {len(self.rounds)} round(s){missing}; failures seen: {named}")
        return (f"not detected by the scheduled checks: every scheduled check passed in"
                f" {len(self.rounds)} round(s){missing}")


class Detector(Protocol):
    """Detection of a fault: ``(context, section, fault_at, within_s) -> Detection``."""

    def __call__(self, context: DrillContext, section: str, fault_at: datetime,
                 within_s: float) -> Detection: ...


def _failures(document: Mapping[str, Any]) -> tuple[Failure, ...]:
    found = []
    for scenario in document.get("scenarios", []):
        if scenario.get("outcome") not in ("failed", "error"):
            continue
        found.append(Failure(
            name=str(scenario.get("name")), sections=tuple(scenario.get("sections") or ()),
            named=tuple(scenario.get("named") or ()), tier=scenario.get("tier"),
            message=str(scenario.get("message") or ""),
            finished_at=datetime.fromisoformat(str(scenario["finished_at"]))))
    return tuple(found)


def run_round(context: DrillContext, reports: Path, *, section: str = "",
              extra: tuple[str, ...] = ()) -> Round:
    """One run of the scheduled suite against ``context``'s target, writing under
    ``reports``; with ``section``, it stops after the first failure naming it (what the
    rest of the round would add does not change the detection). Raises ``RunbookError``
    when it could not run at all."""
    run_id = uuid.uuid4().hex
    stop = ("--runbook-stop-when-named", section) if section else ()
    selection = runner.Selection(marks=runner.SYNTHETIC, reports=reports, run_id=run_id,
                                 extra=(*stop, *extra), full_reports=False)
    home = context.target.runbook_home or context.home
    env = runner.environment(run_id, home, RunSpec.of_target(context.target, home).to_environ())
    for name in (*TARGET_VARIABLES, *META_VARIABLES):  # exactly this target, nothing stray
        env.pop(name, None)
    started = utcnow()
    code = runner.execute(selection, env, Redactor(context.target.secret_values()),
                          handle_signals=False)
    finished = utcnow()
    document = runner.load_summary(reports, run_id) or {}
    checked = sum(1 for s in document.get("scenarios", [])
                  if s.get("outcome") in ("passed", "flaky", "failed", "error"))
    return Round(started, finished, code, checked, _failures(document),
                 str(reports / "summary.json"))


def scheduled_suite(evidence_dir: Path, *, extra: tuple[str, ...] = ()) -> Detector:
    """The detector of game days: rounds of the scheduled suite (see the module doc), each
    writing under ``evidence_dir/<drill id>/round-<n>``."""

    def detect(context: DrillContext, section: str, fault_at: datetime, within_s: float
               ) -> Detection:
        where = evidence_dir / f"{fault_at.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"
        rounds: list[Round] = []

        def next_round() -> Detection:
            rounds.append(run_round(context, where / f"round-{len(rounds) + 1}",
                                    section=section, extra=extra))
            return Detection(section, fault_at, within_s, tuple(rounds))

        # Rounds back to back (no pause) until one names the section or ``within_s`` after
        # the fault went in.
        left = within_s - (utcnow() - fault_at).total_seconds()
        waited = wait_until(next_round, deadline=time.monotonic() + left, interval=0.0,
                            accept=lambda found: bool(found.by),
                            describe=lambda found: f"{len(found.rounds)} rounds, not named",
                            errors=())
        assert waited.value is not None  # errors=(): every round returned or raised
        return waited.value

    return detect


def fixed(rounds: Callable[[], tuple[Round, ...]]) -> Detector:
    """A detector answering with ``rounds`` (for tests of the engine itself)."""

    def detect(context: DrillContext, section: str, fault_at: datetime, within_s: float
               ) -> Detection:
        return Detection(section, fault_at, within_s, rounds())

    return detect
