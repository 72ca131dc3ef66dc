"""The one drill engine: every game day and every disaster recovery drill runs these phases,
each recorded with its timestamps, and the record's verdict is the only verdict.

1. steady state: the end-to-end check (``runbook.probes.e2e.round_trip``: health, a login
   that writes, the user read back) is green, or nothing is done at all;
2. prepare (disaster recovery drills): what recovery will need (the backup, off-site copies)
   and the "before" figures; canaries written at known times (``canaries``);
3. inject: the fault goes on the guard's ledger, then in. The clock starts when the
   injection STARTS (the fault's first effect): time to detect and RTO are measured from it;
4. detect: for a game day, rounds of the SCHEDULED suite (``runbook check``'s own selection,
   through the same code path: ``detection``) against the faulted target, until a failure
   names the incident's runbook section, within the Gherkin's limit; for a disaster, the
   drill's own check (a silent loss no scheduled check can see), said so in the record;
5. follow the runbook: the runbook's own steps for the incident, and nothing else;
6. recover: the first of N (3) consecutive green end-to-end checks (and the incident's own
   check, where it has one), within the Gherkin's recovery limit, measured from the fault.
   When the runbook's steps are over, the checks are red and the fault is demonstrably still
   in place (``FaultSpec.present``), waiting cannot help: the phase fails at once, and the
   record carries what the runbook should add (``Incident.defect``); greens with the fault
   still in place are not a recovery either (the checks missed it for a moment);
7. corrected procedure (only after a failed recovery, when the incident has one): the steps
   the runbook lacks, applied and checked, so the record proves the correction. It never
   turns a failed drill into a passed one;
8. validate data integrity, 9. data loss (disaster recovery drills): per-table counts and
   checksums, object hashes; the canaries lost and the RPO (``canaries.assess``);
10. restore (``finally``: pass, fail, timeout, Ctrl-C, SIGTERM): the fault's revert unless
    recovery already happened, then the end-to-end check green again; 11. clean up.
    Interruptions arriving meanwhile wait until the restore and the record are done
    (``guard.Interruptions``).

Limits come from the Gherkin alone (``Limits``, passed in by the step); there is no second
copy in Python. The verdict (``DrillRecord.verdict``) passes only a drill that ran to its
end with every phase passed, the RTO measured within the limit and, where judged, the RPO.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from runbook.drills import detection, faults
from runbook.drills.canaries import CanaryLedger, CanaryReport, CanaryWriter, new_drill_id
from runbook.drills.faults import DrillContext, FaultSpec
from runbook.drills.guard import Guard, interruptible
from runbook.drills.record import DrillRecord, DrillRun, Objective, PhaseListener, watch_until
from runbook.errors import SafetyGateError, SandboxError
from runbook.platforms.base import record as record_activity
from runbook.probes import combine
from runbook.redact import Redactor
from runbook.results import Activity, ProbeResult, Record, Timing, utcnow
from runbook.wait import wait_until

Check = Callable[[DrillContext], ProbeResult]
Evidence = list[Mapping[str, Any]]

GAME_DAY = "game day"
DISASTER_RECOVERY = "disaster recovery drill"


@dataclass(frozen=True)
class Limits(Record):
    """What the scenario's Gherkin allows: the only copy of a drill's limits.

    ``detect_within_s``: from the fault to its detection; ``rto_s``: from the fault to the
    first of ``consecutive`` green end-to-end checks (the recovery time objective judged);
    ``rpo_s``: the data loss allowed (``None``: not judged by this drill)."""

    detect_within_s: float
    rto_s: float
    rpo_s: float | None = None
    consecutive: int = 3
    evidence_properties = ("source",)
    #: Where the limits come from.
    source = "the scenario's Gherkin"

    @property
    def objective(self) -> Objective:
        return Objective(rto_s=self.rto_s, rpo_s=self.rpo_s)


class SteadyStateRed(Exception):
    """The target was not healthy before the drill; nothing was injected."""


class Abandoned(Exception):
    """A phase before the fault failed: nothing more is done (the record says why)."""


@dataclass
class Run:
    """One drill run: what every phase and the incident's own parts read and add to."""

    context: DrillContext
    limits: Limits
    drill: DrillRun
    steady: Check
    evidence_dir: Path
    drill_id: str = field(default_factory=new_drill_id)
    #: The fault's parameters (JSON, on the guard's ledger; never a secret).
    params: dict[str, Any] = field(default_factory=dict)
    #: What the incident found and did, for the record's clean-up evidence.
    facts: dict[str, Any] = field(default_factory=dict)
    ledger: CanaryLedger = field(init=False)
    writer: CanaryWriter | None = None
    #: Whether the target was healthy at the end (else what recovery needs is kept).
    healthy_after: bool = True
    #: Whether the runbook's steps (or its correction) already recovered the target.
    recovered: bool = False

    def __post_init__(self) -> None:
        self.ledger = CanaryLedger(self.drill_id)

    @property
    def target_redactor(self) -> Redactor:
        return Redactor(self.context.target.secret_values())

    def activity(self, name: str, command: Sequence[str],
                 body: Callable[[], tuple[bool, str, str]], *, runbook_says: str = ""
                 ) -> Activity:
        """``body`` (``ok, output, error``) recorded as a step; an exception is a failed
        step, never a crash of the drill."""
        def guarded() -> tuple[bool, str, str]:
            try:
                return body()
            except Exception as exc:
                return False, "", one_line(exc)
        return record_activity(name, command, guarded, self.target_redactor,
                               runbook_says=runbook_says)


class Incident:
    """One incident of the runbook, rehearsed: its fault, the runbook's steps for it, its
    verification. A subclass per incident (``runbook.drills.incidents``); an instance per run
    (``self.run``). Only ``runbook_steps`` must be written; the rest have defaults."""

    #: The drill's name (``runbook drill`` and the Gherkin use it).
    name: ClassVar[str]
    #: The runbook section it restates (``"Incident Response > Service Down"``): a game
    #: day's scheduled checks must name it.
    section: ClassVar[str]
    #: The registered fault and what it does (for the record).
    fault: ClassVar[str]
    description: ClassVar[str]
    #: The fault's parameters when they do not depend on the run (``prepare`` may add).
    params: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    kind: ClassVar[str] = GAME_DAY
    #: What the scheduled checks have to see (named when they do not see it).
    signal: ClassVar[str] = ""
    #: What the runbook should say, where its steps do not restore service.
    defect: ClassVar[str] = ""
    #: Notes every record of this drill carries (a runbook gap, a judgement made).
    notes: ClassVar[tuple[str, ...]] = ()
    #: A loss that is declared, not caused (a restore test: the primary is taken as lost and
    #: nothing is done to it): there is nothing to detect, and the clock starts at the
    #: declaration.
    simulated: ClassVar[bool] = False

    @classmethod
    def refusal(cls, context: DrillContext) -> str | None:
        """Why this drill cannot run on ``context``'s target (one line, nothing touched), or
        ``None``. By default: its fault cannot be injected on the target's platform."""
        spec = faults.REGISTRY.get(cls.fault)
        if spec is not None and context.platform.name not in spec.platforms:
            return (f"refused: the {cls.name} drill's fault ({spec.name}) can only be"
                    f" injected on {', '.join(spec.platforms)}, not on"
                    f" {context.target.describe()} (platform {context.platform.name});"
                    " nothing was done")
        return None

    def __init__(self, run: Run) -> None:
        self.run = run

    @property
    def context(self) -> DrillContext:
        return self.run.context

    # -- the parts ------------------------------------------------------------------------

    def prepare(self) -> tuple[str, Evidence]:
        """Before the fault (disaster recovery drills): what the restore will need. Returns
        the phase's detail and evidence; raises to abandon the drill before any fault."""
        return "", []

    def detect(self) -> ProbeResult:
        """The drill's own detection check (disaster recovery drills): red while the fault
        is in. Game days are detected by the scheduled suite instead."""
        return self.run.steady(self.context)

    def runbook_steps(self) -> list[Activity]:
        """The runbook's own steps for this incident, in its order, through the platform."""
        raise NotImplementedError

    def correction(self) -> list[Activity]:
        """The steps the runbook lacks (``defect``), for the corrected-procedure phase."""
        return []

    def verify(self) -> ProbeResult | None:
        """The incident's own check, green again when its service is back (beside the
        end-to-end check), or ``None``."""
        return None

    def integrity(self) -> tuple[bool, str, Evidence] | None:
        """Data integrity after recovery (disaster recovery drills), or ``None``."""
        return None

    def data_loss(self) -> CanaryReport | None:
        """The canaries lost and the RPO (disaster recovery drills), or ``None``."""
        return None

    def cleanup(self) -> list[str]:
        """Remove what the drill made; the problems left (an empty list: all gone)."""
        return []

    def steady_check(self, context: DrillContext) -> ProbeResult | None:
        """The drill's own steady-state check, where the end-to-end one does not apply (a
        target with data services only), or ``None`` for the step's."""
        return None

    def footprint(self) -> Mapping[str, Any] | None:
        """What must be equal before and after the drill on a real target (per-table
        checksums, an object listing), or ``None`` when the drill does not promise to leave
        the target as found (the sandbox's destructive drills)."""
        return None

    # -- derived --------------------------------------------------------------------------

    def recovered_check(self) -> ProbeResult:
        """What recovery is: the end-to-end check, and the incident's own where it has one."""
        steady = self.run.steady(self.context)
        if not steady.ok:
            return steady
        own = self.verify()
        return steady if own is None else combine(
            steady.component, "end to end and the incident's own check", [steady, own])


IncidentType = type[Incident]


def fixed(**values: Any) -> Mapping[str, Any]:
    """A fault's parameters as a class attribute (read-only, JSON values)."""
    return MappingProxyType(values)


# -- helpers --------------------------------------------------------------------------------


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def broken(name: str, exc: BaseException, redact: Redactor) -> Activity:
    """A failed Activity standing for a step that raised."""
    now = utcnow()
    return Activity(name=name, command=(), timing=Timing(now, now, 0.0),
                    error=redact(one_line(exc)))


@dataclass(frozen=True)
class _Timeline:
    """Every check of a wait (start, verdict time, ok, problem), to say how finely the
    moment of change was sampled."""

    checks: tuple[tuple[datetime, datetime, bool, str], ...]

    def around(self, at: datetime | None, *, earlier_red: datetime | None = None
               ) -> dict[str, float | str | None]:
        """``sampling_s``: from the last failing check's verdict to the start of the first
        green one (the polling gap); ``window_s``: to that green check's verdict (``at``);
        ``last_red``: which check was the last to see the fault. Without a red check in
        the wait (the target came back while the runbook's steps ran, before the wait's
        first check), the last red is ``earlier_red``, the detection's verdict: the gap is
        then as wide as the steps took, and says so. ``None`` without any red check."""
        if at is None:
            return {"sampling_s": None, "window_s": None, "last_red": None}
        red = [finished for _, finished, ok, _ in self.checks if not ok and finished < at]
        green = [started for started, finished, ok, _ in self.checks if ok and finished == at]
        source = "the recovery wait"
        if not red and earlier_red is not None and earlier_red < at:
            red, source = [earlier_red], "the detection (no red check in the recovery wait)"
        if not red:
            return {"sampling_s": None, "window_s": None, "last_red": None}
        return {"sampling_s": (green[0] - red[-1]).total_seconds() if green else None,
                "window_s": (at - red[-1]).total_seconds(), "last_red": source}


@dataclass(frozen=True)
class Recovery:
    """How the wait for recovery ended."""

    ok: bool
    at: datetime | None
    timeline: _Timeline
    observations: tuple[str, ...]
    #: Why the wait stopped before the limit: the fault still in place after the steps.
    stalled: str = ""


#: How long the checks are watched after the runbook's steps before the fault's presence
#: is asked (a step's effect may take a moment to show).
SETTLE_S = 2.0


def wait_for_recovery(check: Callable[[], ProbeResult], *, consecutive: int, until: float,
                      interval: float, still_faulted: Callable[[], str | None]
                      ) -> Recovery:
    """Run ``check`` until ``consecutive`` greens in a row (dated by the first one's
    verdict), the monotonic deadline ``until``, or a red check while ``still_faulted()``
    says the fault is still in place (asked after ``SETTLE_S``, at most once a second).

    Greens while ``still_faulted()`` says the fault is in place are no recovery: the checks
    did not see the fault for a moment (a starved runaway reading below its alert), and
    counting them would pass a drill whose runbook fixed nothing. The wait fails at once."""
    seen: list[tuple[datetime, datetime, bool, str]] = []
    observations: list[str] = []
    streak: list[datetime] = []
    asked = time.monotonic() - 1.0 + SETTLE_S
    # Whether the fault is still in place is asked beside the checks, not between them: the
    # gap between the last red check and the first green one is the RTO's resolution.
    beside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="still-faulted")
    pending: Future[str | None] | None = None

    def look() -> Recovery | None:
        """One check: the wait's end (recovered, or stalled with the fault in place), else
        ``None``."""
        nonlocal asked, pending
        if pending is not None and pending.done():
            present, pending = pending.result(), None
            if present and not streak:
                return Recovery(False, None, _Timeline(tuple(seen)), tuple(observations),
                                stalled=present)
        result = check()
        seen.append((result.timing.started_at, result.timing.finished_at, result.ok,
                     result.problem))
        if result.ok:
            streak.append(result.timing.finished_at)
            if len(streak) >= consecutive:
                present = still_faulted()
                if present:
                    return Recovery(False, None, _Timeline(tuple(seen)), tuple(observations),
                                    stalled=f"{present}; the checks read green meanwhile,"
                                            " which is not a recovery with the fault in place")
                return Recovery(True, streak[0], _Timeline(tuple(seen)), tuple(observations))
        else:
            streak.clear()
            if result.problem not in observations:
                observations.append(result.problem)
            if pending is None and time.monotonic() - asked >= 1.0:
                asked = time.monotonic()
                pending = beside.submit(still_faulted)
        return None

    try:
        waited = wait_until(look, deadline=until, interval=interval,
                            accept=lambda ended: ended is not None,
                            describe=lambda _: "not yet", errors=())
    finally:
        beside.shutdown(wait=True, cancel_futures=True)
    return waited.value or Recovery(False, None, _Timeline(tuple(seen)), tuple(observations))


# -- the engine -----------------------------------------------------------------------------


def run(incident: IncidentType, context: DrillContext, *, limits: Limits, guard: Guard,
        steady: Check, on_record: Callable[[DrillRecord], None], evidence_dir: Path,
        on_phase: PhaseListener | None = None, interval_s: float = 0.05,
        detector: detection.Detector | None = None) -> DrillRecord:
    """Rehearse ``incident`` on ``context``'s target within ``limits`` (see the module doc).

    ``steady`` is the end-to-end check; ``on_record`` receives the record however the drill
    ends (also when interrupted, before the interruption propagates); ``on_phase`` hears
    each phase's name as it starts; ``evidence_dir`` holds what the detection rounds write.
    ``detector`` replaces the scheduled suite for a game day's detection (tests only).
    Raises ``SteadyStateRed`` (after recording) when the target is unhealthy to begin with;
    ``KeyboardInterrupt``/``DrillInterrupted`` (or a timeout's exception) after restoring.
    """
    drill = DrillRun(incident.name, incident.section, context.target.describe(),
                     context.target.environment.value, limits.objective, on_phase)
    state = Run(context, limits, drill, steady, evidence_dir)
    state.params.update(incident.params)
    refused = incident.refusal(context)
    if refused:
        raise SafetyGateError(refused)
    parts = incident(state)  # a drill that cannot run here refuses now, nothing touched
    if type(parts).steady_check is not Incident.steady_check:
        state.steady = _own_steady(parts, steady)
    spec = faults.get(incident.fault, context.platform.name)
    drill.evidence.update(kind=incident.kind, limits=limits.evidence(), drill_id=state.drill_id,
                          fault={"name": spec.name, "description": incident.description})
    drill.notes.extend(incident.notes)
    injected = False
    found: Mapping[str, Any] | None = None
    with interruptible() as interruptions:
        try:
            _steady_state(state)
            found = _footprint(state, parts)
            if incident.kind == DISASTER_RECOVERY:
                _prepare(state, parts)
            if state.writer is not None:
                state.writer.stop()
            started = drill.begin("inject")
            guard.record(spec.name, state.params)
            injected = True
            activity = spec.inject(state.context, state.params)
            drill.fault_at = activity.timing.started_at
            drill.phase("inject", started, activity.ok, incident.description, [
                activity.evidence(), {"canaries_before_fault": len(state.ledger)}])
            if not activity.ok:
                raise Abandoned(f"the fault was not injected: {activity.error}")
            _detect(state, parts, detector, interval_s)
            _follow(state, parts)
            recovered = _recover(state, parts, spec, interval_s)
            if recovered:
                guard.strike(spec.name)
                state.recovered = True
                if incident.kind == DISASTER_RECOVERY:
                    _integrity(state, parts)
                    _data_loss(state, parts)
            else:
                if incident.defect:
                    drill.notes.append(f"runbook defect: {incident.defect}")
                state.recovered = _corrected(state, parts, interval_s)
                if state.recovered:
                    guard.strike(spec.name)
            drill.completed = True
        except Abandoned as exc:
            drill.notes.append(f"abandoned: {exc}")
            drill.completed = True
        except BaseException as exc:
            drill.ended_early(exc)
            raise
        finally:
            with interruptions.restoring():
                try:
                    _restore(state, parts, spec, guard, injected=injected)
                    if found is not None:
                        _left_as_found(state, parts, found)
                finally:
                    drill.held([signum.name for signum in interruptions.held])
                    final = drill.finish()
                    on_record(final)
    return final


def _own_steady(parts: Incident, fallback: Check) -> Check:
    def check(context: DrillContext) -> ProbeResult:
        own = parts.steady_check(context)
        return fallback(context) if own is None else own
    return check


def _footprint(state: Run, parts: Incident) -> Mapping[str, Any] | None:
    """The target's footprint before anything is done (``Incident.footprint``); a drill
    that promises to leave the target as found and cannot read it does nothing."""
    try:
        return parts.footprint()
    except Exception as exc:
        drill = state.drill
        started = drill.begin("prepare")
        drill.phase("prepare", started, False,
                    f"the target's checksums and listing could not be read before the drill,"
                    f" so it could not prove it leaves the target as found: {one_line(exc)}")
        raise Abandoned(one_line(exc)) from None


def _left_as_found(state: Run, parts: Incident, before: Mapping[str, Any]) -> None:
    """After the clean-up: the footprint read again and compared, whatever the outcome."""
    drill = state.drill
    started = drill.begin("left as found")
    try:
        after = parts.footprint() or {}
    except Exception as exc:
        drill.phase("left as found", started, False,
                    f"the target could not be read after the drill: {one_line(exc)}")
        return
    differ = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    evidence = {"before": dict(before), "after": dict(after), "differ": differ}
    drill.evidence["left_as_found"] = {"equal": not differ, "compared": sorted(before),
                                       "differ": differ}
    drill.phase("left as found", started, not differ,
                "the target's per-table checksums and object listing are equal before and"
                f" after ({', '.join(sorted(before))})" if not differ else
                f"the target CHANGED: {', '.join(differ)} differ before and after the drill",
                [evidence])


def _steady_state(state: Run) -> None:
    drill = state.drill
    started = drill.begin("steady state")
    before = state.steady(state.context)
    drill.phase("steady state", started, before.ok, before.problem or "green",
                [before.evidence()])
    if not before.ok:
        raise SteadyStateRed(f"steady state red before the drill: {before.problem}")


def _prepare(state: Run, parts: Incident) -> None:
    drill = state.drill
    started = drill.begin("prepare")
    try:
        detail, evidence = parts.prepare()
    except Exception as exc:  # nothing is injected after a failed preparation
        problem = one_line(exc)
        drill.phase("prepare", started, False, problem)
        raise Abandoned(problem) from None
    drill.phase("prepare", started, True, detail, evidence)


def _detect(state: Run, parts: Incident, detector: detection.Detector | None,
            interval_s: float) -> None:
    drill, limits = state.drill, state.limits
    assert drill.fault_at is not None
    started = drill.begin("detect")
    if parts.simulated:
        drill.detected_at = None  # no time to detect: nothing was broken
        declared: dict[str, Any] = {
            "method": "none: the loss is declared, not caused (nothing was broken), so there"
                      " is nothing to detect; the clock starts at the declaration"}
        drill.evidence["detection"] = declared
        drill.phase("detect", started, True, declared["method"], [declared])
        return
    if parts.kind == GAME_DAY:
        detect = detector or detection.scheduled_suite(state.evidence_dir)
        found = detect(state.context, parts.section, drill.fault_at, limits.detect_within_s)
        drill.detected_at = found.detected_at
        drill.evidence["detection"] = found.evidence()
        drill.phase("detect", started, found.ok, found.describe(parts.signal),
                    [found.evidence()])
        return
    until = limits.detect_within_s - (utcnow() - drill.fault_at).total_seconds()
    last: list[ProbeResult] = []

    def own() -> ProbeResult:
        result = parts.detect()
        if not result.ok:
            last[:] = [result]
        return result

    seen = watch_until(own, want_ok=False, timeout=max(0.0, until), interval=interval_s)
    drill.detected_at = seen.at
    failure = last[0] if last else None
    evidence = {"method": "the drill's own check (a loss no scheduled check can see)",
                "check": f"{failure.component} {failure.check}" if failure else None,
                "checks": seen.checks, "poll_interval_s": interval_s,
                "seen": list(seen.observations)}
    drill.evidence["detection"] = evidence
    drill.phase("detect", started, seen.ok,
                (f"detected by the drill's own check ({failure.component} {failure.check}):"
                 f" {failure.problem}" if seen.ok and failure else
                 f"not detected within {limits.detect_within_s:g} s of the fault"
                 f" ({seen.checks} checks, {seen.elapsed_s:.1f} s; last seen:"
                 f" {seen.observations[-1] if seen.observations else 'nothing'})"), [evidence])


def _follow(state: Run, parts: Incident) -> None:
    drill = state.drill
    started = drill.begin("follow the runbook")
    try:
        steps = parts.runbook_steps()
    except Exception as exc:  # the recovery below (and the restore) still run
        steps = [broken("follow the runbook", exc, state.target_redactor)]
    drill.phase("follow the runbook", started, all(a.ok for a in steps),
                "; ".join(a.name for a in steps), [a.evidence() for a in steps])


def _still_faulted(state: Run, spec: FaultSpec) -> Callable[[], str | None]:
    def ask() -> str | None:
        if spec.present is None:
            return None
        try:
            return spec.present(state.context, state.params)
        except Exception:  # cannot tell: keep waiting
            return None
    return ask


def _recover(state: Run, parts: Incident, spec: FaultSpec, interval_s: float) -> bool:
    drill, limits = state.drill, state.limits
    assert drill.fault_at is not None
    started = drill.begin("recover")
    left = limits.rto_s - (utcnow() - drill.fault_at).total_seconds()
    outcome = wait_for_recovery(parts.recovered_check, consecutive=limits.consecutive,
                                until=time.monotonic() + max(0.0, left), interval=interval_s,
                                still_faulted=_still_faulted(state, spec))
    drill.recovered_at = outcome.at
    resolution = outcome.timeline.around(outcome.at, earlier_red=drill.detected_at)
    drill.evidence["recovery_resolution"] = resolution
    if outcome.ok:
        steady = ("end-to-end checks" if type(parts).steady_check is Incident.steady_check
                  else "checks of the target's data services")
        detail = (f"{limits.consecutive} consecutive green {steady}"
                  + ("" if type(parts).verify is Incident.verify
                     else " and the incident's own check"))
    elif outcome.stalled:
        seen = "; ".join(outcome.observations[-2:])
        detail = (f"not recovered by the runbook's steps: the fault is still in place"
                  f" ({outcome.stalled})" + (f"; last seen: {seen}" if seen else "")
                  + (f"; the runbook should add: {parts.defect}" if parts.defect else ""))
    else:
        detail = (f"not recovered within {limits.rto_s:g} s of the fault: "
                  + "; ".join(outcome.observations))
    drill.phase("recover", started, outcome.ok, detail,
                [{"checks": len(outcome.timeline.checks), "poll_interval_s": interval_s,
                  **resolution}])
    return outcome.ok


def _corrected(state: Run, parts: Incident, interval_s: float) -> bool:
    """The corrected procedure, after a failed recovery; True when it restored service."""
    drill = state.drill
    if type(parts).correction is Incident.correction:
        return False
    started = drill.begin("corrected procedure")
    try:
        steps = parts.correction()
    except Exception as exc:
        steps = [broken("corrected procedure", exc, state.target_redactor)]
    outcome = wait_for_recovery(parts.recovered_check, consecutive=state.limits.consecutive,
                                until=time.monotonic() + 30.0, interval=interval_s,
                                still_faulted=lambda: None)
    drill.phase("corrected procedure", started, outcome.ok and all(a.ok for a in steps),
                ("what the runbook should add, applied: service back ("
                 if outcome.ok else "the correction did NOT restore service (")
                + "; ".join(a.name for a in steps) + "); this does not change the verdict",
                [a.evidence() for a in steps])
    return outcome.ok


def _integrity(state: Run, parts: Incident) -> None:
    drill = state.drill
    started = drill.begin("validate data integrity")
    try:
        found = parts.integrity()
    except Exception as exc:  # a check that cannot read fails, it does not crash
        found = (False, one_line(exc), [])
    if found is not None:
        ok, detail, evidence = found
        drill.phase("validate data integrity", started, ok, detail, evidence)


def _data_loss(state: Run, parts: Incident) -> None:
    drill = state.drill
    started = drill.begin("data loss")
    try:
        report = parts.data_loss()
    except Exception as exc:
        drill.phase("data loss", started, False, f"canaries not read: {one_line(exc)}")
        return
    if report is None:
        return
    drill.rpo_s, drill.lost_canaries = report.rpo_s, report.lost_count
    drill.evidence["canaries"] = report.evidence()
    shown = "unmeasured" if report.rpo_s is None else f"{report.rpo_s:.3f} s"
    lost = (f"{report.lost_count} of {report.before_fault} canaries lost; "
            if report.written else "")
    drill.phase("data loss", started, report.rpo_s is not None,
                f"{lost}RPO {shown} ({report.basis})", [report.evidence()])


def _restore(state: Run, parts: Incident, spec: FaultSpec, guard: Guard, *,
             injected: bool) -> None:
    """The phases every drill ends with: ``restore`` (when the fault went in: its revert
    unless recovery already happened, then the end-to-end check green) and ``clean up``."""
    drill = state.drill
    if state.writer is not None:
        state.writer.stop()
    if injected:
        started = drill.begin("restore")
        reverted: list[Mapping[str, Any]] = []
        revert_ok = True
        # A game day's fault is always reverted (idempotent: it finds nothing left to undo
        # when the runbook's steps fixed it, and removes what they could not, such as a
        # holder process); a disaster's revert is its whole recovery procedure again, so
        # only when the drill's own recovery did not happen.
        if not state.recovered or parts.kind == GAME_DAY:
            revert = spec.revert(state.context, state.params)
            revert_ok = revert.ok
            reverted.append(revert.evidence())
            if revert.ok:
                guard.strike(spec.name)
                with contextlib.suppress(SandboxError, OSError):
                    state.context = state.context.refreshed()
        after = watch_until(lambda: state.steady(state.context), want_ok=True,
                            timeout=180.0, interval=0.2)
        state.healthy_after = revert_ok and after.ok
        done = "the fault reverted" if reverted else "nothing to revert (recovered)"
        drill.phase("restore", started, revert_ok and after.ok,
                    f"{done}; healthy" if after.ok
                    else f"{done}; NOT healthy after restoring: "
                    + "; ".join(after.observations), reverted)
    started = drill.begin("clean up")
    try:
        problems = parts.cleanup()
        drill.phase("clean up", started, not problems, "; ".join(problems) or
                    "what the drill made is removed", [jsonable(state.facts)])
    except Exception as exc:  # a cleanup failure is recorded, never hides the outcome
        drill.phase("clean up", started, False, one_line(exc))


def jsonable(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The drill's facts for the record: objects turned into their evidence."""
    shown: dict[str, Any] = {}
    for name, value in facts.items():
        evidence = getattr(value, "evidence", None)
        shown[name] = evidence() if callable(evidence) else value
    return shown

