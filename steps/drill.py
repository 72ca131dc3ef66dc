"""Steps about drills and game days: run one, then read its record phase by phase."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pytest_bdd import given, parsers, then, when

from runbook.actions import users
from runbook.checks import require_phase
from runbook.config import Target
from runbook.drills import gameday
from runbook.drills.catalog import GAMEDAYS
from runbook.drills.faults import DrillContext
from runbook.drills.guard import Guard
from runbook.drills.record import DrillRecord
from runbook.probes import e2e
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts


@given("a canary user for the end-to-end check", target_fixture="steady")
def _(target: Target, timeouts: Timeouts
      ) -> Iterator[Callable[[DrillContext], ProbeResult]]:
    with users.canary_user(target, timeouts) as canary:
        yield lambda context: e2e.round_trip(context.target, context.timeouts, canary.email,
                                             canary.password)


@when(parsers.parse('the on-call engineer runs the "{name}" game day'),
      target_fixture="drill_record")
def _(drill_context: DrillContext, guard: Guard, name: str,
      steady: Callable[[DrillContext], ProbeResult],
      record_drill: Callable[[DrillRecord], None]) -> DrillRecord:
    return gameday.run(GAMEDAYS[name], drill_context, steady=steady, guard=guard,
                       on_record=record_drill)


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


