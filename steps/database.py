"""Steps about the database."""

from __future__ import annotations

from pytest_bdd import given, then, when

from runbook.checks import require_ok
from runbook.config import Target
from runbook.probes import postgres
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts
from steps.support import require_variables


@given("the target has a database")
def _(target: Target) -> None:
    require_variables(target, "DATABASE_URL")


@when("the on-call engineer checks the database", target_fixture="database_answer")
def _(target: Target, timeouts: Timeouts) -> ProbeResult:
    return postgres.answers(target, timeouts)


@then("the database answers a query")
def _(database_answer: ProbeResult) -> None:
    require_ok(database_answer)


@when("the on-call engineer introspects the database schema read-only",
      target_fixture="database_schema")
def _(target: Target, timeouts: Timeouts) -> ProbeResult:
    return postgres.schema(target, timeouts)


@then("the schema has LegacyVideo's tables and its migrations table")
def _(database_schema: ProbeResult) -> None:
    require_ok(database_schema)
