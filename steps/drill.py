"""Steps about drills and game days: run one, then read its record phase by phase."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from pytest_bdd import given, parsers, then, when

from runbook.actions import users
from runbook.checks import require_ok, require_phase
from runbook.config import Target
from runbook.drills import gameday
from runbook.drills.catalog import GAMEDAYS
from runbook.drills.disaster import DRILLS
from runbook.drills.faults import DrillContext
from runbook.drills.guard import Guard
from runbook.drills.record import DrillRecord, Objective, PhaseListener
from runbook.errors import CheckFailed
from runbook.probes import backups, e2e
from runbook.results import ProbeResult
from runbook.sections import next_steps
from runbook.timeouts import Timeouts
from steps.support import skip_if_unavailable


@given("a canary user for the end-to-end check", target_fixture="steady")
def _(target: Target, timeouts: Timeouts
      ) -> Iterator[Callable[[DrillContext], ProbeResult]]:
    with contextlib.ExitStack() as stack:
        try:
            canary = stack.enter_context(users.canary_user(target, timeouts))
        except Exception as exc:
            # No canary, no drill: the target is not healthy enough to inject anything into.
            raise CheckFailed(
                "drill", "", f"steady state red before the drill: cannot create the canary"
                f" user for the end-to-end check ({exc})",
                "a healthy target: a drill starts only from a green steady state",
                next_steps("api")) from None
        yield lambda context: e2e.round_trip(context.target, context.timeouts, canary.email,
                                             canary.password)


@when(parsers.parse('the on-call engineer runs the "{name}" game day'),
      target_fixture="drill_record")
def _(drill_context: DrillContext, guard: Guard, name: str,
      steady: Callable[[DrillContext], ProbeResult],
      record_drill: Callable[[DrillRecord], None],
      drill_progress: Callable[[str], PhaseListener]) -> DrillRecord:
    return gameday.run(GAMEDAYS[name], drill_context, steady=steady, guard=guard,
                       on_record=record_drill, on_phase=drill_progress(name))


@then(parsers.parse('the synthetic checks detected it, naming the runbook\'s "{section}"'))
def _(drill_record: DrillRecord, section: str) -> None:
    require_phase(drill_record, "detect", f"a failed check naming {section!r}",
                  contains=section)


@then(parsers.parse("following the runbook's steps restored service within {seconds:g}"
                    " seconds"))
def _(drill_record: DrillRecord, seconds: float) -> None:
    require_phase(drill_record, "recover", f"recovered within {seconds:g} s of the fault",
                  within=("rto_s", seconds))


@then("the target is healthy again after the drill")
def _(drill_record: DrillRecord) -> None:
    require_phase(drill_record, "restore", "the fault reverted and the target healthy")




@when(parsers.parse('the on-call engineer runs the "{name}" disaster recovery drill against an'
                    " RTO of {rto_s:g} seconds and an RPO of {rpo_s:g} seconds"),
      target_fixture="drill_record")
def _(drill_context: DrillContext, guard: Guard, name: str, rto_s: float, rpo_s: float,
      record_drill: Callable[[DrillRecord], None],
      drill_progress: Callable[[str], PhaseListener]) -> DrillRecord:
    return DRILLS[name].run(drill_context, guard=guard, on_record=record_drill,
                            objective=Objective(rto_s=rto_s, rpo_s=rpo_s),
                            on_phase=drill_progress(name))


@then("service was back within the RTO")
def _(drill_record: DrillRecord) -> None:
    require_phase(drill_record, "recover", "recovered within the RTO",
                  within=("rto_s", drill_record.objective.rto_s or 0.0))


@then("the data lost is within the RPO")
def _(drill_record: DrillRecord) -> None:
    require_phase(drill_record, "data loss", "data lost within the RPO",
                  within=("rpo_s", drill_record.objective.rpo_s or 0.0))


@then("the data that survived is intact")
def _(drill_record: DrillRecord) -> None:
    require_phase(drill_record, "validate data integrity", "equal counts and checksums")


@when(parsers.parse("the on-call engineer checks the age of the newest database backup"
                    " against {hours:g} hour"), target_fixture="backup_age")
def _(target: Target, timeouts: Timeouts, hours: float) -> ProbeResult:
    return backups.backup_freshness(target, timeouts, max_age_s=hours * 3600)


@then("the newest backup is recent enough")
def _(backup_age: ProbeResult) -> None:
    require_ok(skip_if_unavailable(backup_age))
