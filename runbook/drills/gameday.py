"""Game days: a fault injected, the synthetic checks made to detect it with the right
diagnosis, the runbook's steps followed, service restored, every moment timed.

Phases, each recorded with its timestamps:

1. steady state: the end-to-end check is green, or nothing is injected at all;
2. inject: the fault is put on the guard's ledger, then injected (the fault's time);
3. detect: the incident's synthetic check fails, and its advice names the runbook
   subsection of this incident (time to detect);
4. follow the runbook: the subsection's steps, through the platform adapter;
5. recover: the first of N consecutive green end-to-end checks (time to recover);
6. restore: the fault's revert, always (pass, fail, timeout, Ctrl-C, SIGTERM), then the
   end-to-end check green again. Interruptions arriving meanwhile, or after the first,
   wait until it and the record are done (``guard.Interruptions``).

``on_phase`` hears each phase's name as it starts (e.g. a ``record.ProgressFile``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook.drills import faults
from runbook.drills.faults import DrillContext
from runbook.drills.guard import Guard, interruptible
from runbook.drills.record import DrillRecord, DrillRun, Objective, PhaseListener, watch_until
from runbook.results import Activity, ProbeResult
from runbook.sections import next_steps

Check = Callable[[DrillContext], ProbeResult]
Steps = Callable[[DrillContext], Sequence[Activity]]


@dataclass(frozen=True)
class GameDay:
    """One incident of the runbook, rehearsed.

    ``detect`` is the synthetic check that must fail while the fault is in, and its advice
    must name ``diagnosis`` (e.g. ``"Incident Response > Service Down"``). ``remedy`` runs the
    runbook's steps for it. ``defect`` says what to do instead when the runbook's steps
    alone do not restore service (the scenario then records a runbook defect).
    """

    name: str
    section: str
    fault: str
    params: Mapping[str, Any]
    detect: Check
    diagnosis: str
    remedy: Steps
    detect_within_s: float = 30.0
    recover_within_s: float = 120.0
    objective: Objective = field(default_factory=Objective)
    defect: str = ""
    #: What else must be green for service to count as restored, beside the end-to-end
    #: check (e.g. the piled-up jobs drained, the release processed).
    verify: Check | None = None


class SteadyStateRed(Exception):
    """The target was not healthy before the drill; nothing was injected."""


def _named(result: ProbeResult, diagnosis: str) -> bool:
    return any(line.startswith(diagnosis) for line in next_steps(result.advice
                                                                  or result.component))


def run(gameday: GameDay, context: DrillContext, *, steady: Check, guard: Guard,
        on_record: Callable[[DrillRecord], None], consecutive: int = 3,
        interval_s: float = 0.2, on_phase: PhaseListener | None = None) -> DrillRecord:
    """Rehearse ``gameday`` on ``context``'s target; ``steady`` is the end-to-end check.

    ``on_record`` receives the record however the drill ends (also when interrupted, before
    the interruption propagates); ``on_phase`` hears each phase's name as it starts. Raises
    ``SteadyStateRed`` (after recording it) when the target is unhealthy to begin with;
    ``KeyboardInterrupt``/``DrillInterrupted`` (or a timeout's exception) after restoring.
    """
    drill = DrillRun(gameday.name, gameday.section, context.target.describe(),
                     context.target.environment.value, gameday.objective, on_phase)
    spec = faults.get(gameday.fault, context.platform.name)
    last_failure: list[ProbeResult] = []

    def detect() -> ProbeResult:
        result = gameday.detect(context)
        if not result.ok:
            last_failure[:] = [result]
        return result

    def healthy() -> ProbeResult:
        return steady(context)

    def restored() -> ProbeResult:
        result = steady(context)
        if not result.ok or gameday.verify is None:
            return result
        return gameday.verify(context)

    injected = False
    with interruptible() as interruptions:
        try:
            started = drill.begin("steady state")
            before = steady(context)
            drill.phase("steady state", started, before.ok, before.problem or "green",
                        [before.evidence()])
            if not before.ok:
                raise SteadyStateRed(f"steady state red before the drill: {before.problem}")

            started = drill.begin("inject")
            guard.record(gameday.fault, gameday.params)
            injected = True
            activity = spec.inject(context, gameday.params)
            drill.fault_at = activity.timing.finished_at
            drill.phase("inject", started, activity.ok, f"{spec.description}",
                        [activity.evidence()])

            started = drill.begin("detect")
            seen = watch_until(detect, want_ok=False, timeout=gameday.detect_within_s,
                               interval=interval_s)
            drill.detected_at = seen.at
            failure = last_failure[0] if last_failure else None
            diagnosed = failure is not None and _named(failure, gameday.diagnosis)
            detail = (f"{failure.component} check failed: {failure.problem}; advice names"
                      f" {gameday.diagnosis!r}: {'yes' if diagnosed else 'NO'}"
                      if failure else f"not detected within {gameday.detect_within_s:g} s")
            drill.phase("detect", started, seen.ok and diagnosed, detail,
                        [failure.evidence()] if failure else [])

            started = drill.begin("follow the runbook")
            steps = list(gameday.remedy(context))
            drill.phase("follow the runbook", started, all(a.ok for a in steps),
                        "; ".join(a.name for a in steps), [a.evidence() for a in steps])

            started = drill.begin("recover")
            recovery = watch_until(restored, want_ok=True, consecutive=consecutive,
                                   timeout=gameday.recover_within_s, interval=interval_s)
            drill.recovered_at = recovery.at
            drill.phase("recover", started, recovery.ok,
                        f"{consecutive} consecutive green end-to-end checks" if recovery.ok
                        else "not recovered: " + "; ".join(recovery.observations))
            if gameday.defect:
                drill.notes.append(f"runbook defect: {gameday.defect}")
            drill.completed = True
        except BaseException as exc:
            drill.ended_early(exc)
            raise
        finally:
            with interruptions.restoring():
                try:
                    if injected:
                        started = drill.begin("restore")
                        revert = spec.revert(context, gameday.params)
                        if revert.ok:
                            guard.strike(gameday.fault)
                        after = watch_until(healthy, want_ok=True,
                                            timeout=gameday.recover_within_s,
                                            interval=interval_s)
                        drill.phase("restore", started, revert.ok and after.ok,
                                    "reverted and healthy" if after.ok else
                                    "NOT healthy after revert: "
                                    + "; ".join(after.observations), [revert.evidence()])
                finally:
                    drill.held([signum.name for signum in interruptions.held])
                    record = drill.finish()
                    on_record(record)
    return record
