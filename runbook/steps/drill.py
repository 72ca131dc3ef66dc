"""Steps about drills and game days: run one within the Gherkin's limits, then read its
record phase by phase. The record's verdict is the scenario's: the last step fails on any
failed phase, naming it (and the harness fails a scenario whose record failed)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_bdd import given, parsers, then, when

from runbook.actions import users
from runbook.checks import require_ok, require_phase, require_verdict
from runbook.config import Target
from runbook.drills.faults import DrillContext
from runbook.drills.guard import Guard
from runbook.drills.record import DrillRecord, PhaseListener
from runbook.errors import CheckFailed
from runbook.harness.evidence import Evidence
from runbook.harness.scenarios import needs
from runbook.probes import backups, e2e
from runbook.results import ProbeResult
from runbook.sections import next_steps
from runbook.steps.support import skip_if_unavailable
from runbook.timeouts import Timeouts

if TYPE_CHECKING:
    from runbook.drills import engine


def _run(name: str, drill_context: DrillContext, detect_s: float, rto_s: float,
         rpo_s: float | None, steady: engine.Check | None, *, guard: Guard,
         on_record: Callable[[DrillRecord], None], on_phase: PhaseListener,
         evidence_dir: Path) -> DrillRecord:
    """Run drill ``name`` within its limits (``rpo_s``: a DR drill's, else ``None``);
    without ``steady``, against the sandbox's seeded data (a DR drill's own check)."""
    # imported when a drill runs: every other run starts without importing the drills'
    # engine and catalog (every incident's module)
    from runbook.drills import catalog, engine
    from runbook.drills.incidents import disaster  # as they are: a DR drill's seeded check
    return engine.run(catalog.DRILLS[name], drill_context,
                      limits=engine.Limits(detect_s, rto_s, rpo_s),
                      guard=guard, steady=disaster.seeded_check() if steady is None else steady,
                      on_record=on_record, on_phase=on_phase, evidence_dir=evidence_dir)


@given("a canary user for the end-to-end check", target_fixture="steady")
def _(target: Target, timeouts: Timeouts) -> Iterator[engine.Check]:
    with contextlib.ExitStack() as stack:
        try:
            canary = stack.enter_context(users.canary_user(target, timeouts))
        except Exception as exc:
            # No canary, no drill: the target is not healthy enough to inject anything into.
            raise CheckFailed(
                "drill", target.describe(), "steady state red before the drill: cannot create"
                f" the canary user for the end-to-end check ({exc})",
                "a healthy target: a drill starts only from a green steady state",
                next_steps("api")) from None
        yield lambda context: e2e.round_trip(context.target, context.timeouts, canary.email,
                                             canary.password)


@when(parsers.parse('the on-call engineer runs the "{name}" game day, allowing {detect_s:g}'
                    " seconds to detect it and {rto_s:g} seconds to restore service"),
      target_fixture="drill_record")
def _(drill_context: DrillContext, guard: Guard, name: str, detect_s: float, rto_s: float,
      steady: engine.Check, record_drill: Callable[[DrillRecord], None],
      drill_progress: Callable[[str], PhaseListener], drill_evidence: Path) -> DrillRecord:
    return _run(name, drill_context, detect_s, rto_s, None, steady, guard=guard,
                on_record=record_drill, on_phase=drill_progress(name),
                evidence_dir=drill_evidence)


@when(parsers.parse('the on-call engineer runs the "{name}" disaster recovery drill, allowing'
                    " {detect_s:g} seconds to detect it, against an RTO of {rto_s:g} seconds"
                    " and an RPO of {rpo_s:g} seconds"), target_fixture="drill_record")
def _(drill_context: DrillContext, guard: Guard, name: str, detect_s: float, rto_s: float,
      rpo_s: float, record_drill: Callable[[DrillRecord], None],
      drill_progress: Callable[[str], PhaseListener], drill_evidence: Path) -> DrillRecord:
    return _run(name, drill_context, detect_s, rto_s, rpo_s, None, guard=guard,
                on_record=record_drill, on_phase=drill_progress(name),
                evidence_dir=drill_evidence)


@when(parsers.parse('the on-call engineer runs the "{name}" disaster recovery drill through the'
                    " platform, allowing {detect_s:g} seconds to detect it, against an RTO of"
                    " {rto_s:g} seconds"), target_fixture="drill_record")
def _(drill_context: DrillContext, guard: Guard, name: str, detect_s: float, rto_s: float,
      steady: engine.Check, record_drill: Callable[[DrillRecord], None],
      drill_progress: Callable[[str], PhaseListener], drill_evidence: Path) -> DrillRecord:
    """A DR drill on a real target's platform: its steady state and recovery are the
    scenario's end-to-end check as its canary user (not the sandbox's seeded one); no RPO is
    judged (nothing is written but the check's logins)."""
    return _run(name, drill_context, detect_s, rto_s, None, steady, guard=guard,
                on_record=record_drill, on_phase=drill_progress(name),
                evidence_dir=drill_evidence)


@then(parsers.parse('the scheduled checks detected it, naming the runbook\'s "{section}"'))
def _(drill_record: DrillRecord, section: str) -> None:
    require_phase(drill_record, "detect", f"a scheduled check failing, naming {section!r}",
                  contains=section)


@then("the drill's own check detected it")
def _(drill_record: DrillRecord) -> None:
    require_phase(drill_record, "detect", "the loss detected within the limit")


@then("following the runbook's steps restored service within that time")
@then("service was back within the RTO")
def _(drill_record: DrillRecord) -> None:
    require_phase(drill_record, "recover", "recovered within the limit, measured from the fault",
                  within=("rto_s", drill_record.objective.rto_s or 0.0))


@then("the data lost is within the RPO")
def _(drill_record: DrillRecord) -> None:
    require_phase(drill_record, "data loss", "data lost within the RPO, measured",
                  within=("rpo_s", drill_record.objective.rpo_s or 0.0))


@then("the data that survived is intact")
def _(drill_record: DrillRecord) -> None:
    require_phase(drill_record, "validate data integrity", "equal counts and checksums")


@then("the target is healthy again after the drill")
def _(drill_record: DrillRecord) -> None:
    require_phase(drill_record, "restore", "the fault reverted and the target healthy")
    require_verdict(drill_record)


@then("the target was left as found")
def _(drill_record: DrillRecord) -> None:
    require_phase(drill_record, "left as found",
                  "per-table checksums and the object listing equal before and after")
    require_verdict(drill_record)


@when(parsers.parse("the on-call engineer checks the age of the newest database backup"
                    " against {hours:g} hour"), target_fixture="backup_age")
@needs("database")
def _(target: Target, timeouts: Timeouts, hours: float, evidence: Evidence) -> ProbeResult:
    return evidence(backups.backup_freshness(target, timeouts, max_age_s=hours * 3600))


@then("the newest backup is recent enough")
def _(backup_age: ProbeResult) -> None:
    require_ok(skip_if_unavailable(backup_age))
