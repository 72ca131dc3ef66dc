"""Steps about the database."""

from __future__ import annotations

from pathlib import Path

from pytest_bdd import parsers, then, when

from runbook.actions import backup, database
from runbook.actions.backup import BackupRecord
from runbook.checks import require_ok, require_record
from runbook.config import Target
from runbook.harness.evidence import Evidence
from runbook.harness.scenarios import needs
from runbook.probes import postgres
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts


@when("the on-call engineer checks the database", target_fixture="database_answer")
@needs("database")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(postgres.answers(target, timeouts))


@then("the database answers a query")
def _(database_answer: ProbeResult) -> None:
    require_ok(database_answer)


@when("the on-call engineer introspects the database schema read-only",
      target_fixture="database_schema")
@needs("database")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(postgres.schema(target, timeouts))


@then("the schema has LegacyVideo's tables and its migrations table")
def _(database_schema: ProbeResult) -> None:
    require_ok(database_schema)


@when("the on-call engineer checks the migration status", target_fixture="migrations")
@needs("database")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(database.migration_status(target, timeouts))


@then("every expected migration is applied and none failed or was modified")
def _(migrations: ProbeResult) -> None:
    require_ok(migrations)


@when("the on-call engineer exports a backup and imports it into a scratch database",
      target_fixture="backup_record")
def _(target: Target, timeouts: Timeouts, tmp_path: Path, evidence: Evidence) -> BackupRecord:
    return evidence(backup.round_trip_for(target, timeouts, tmp_path))


@then("every table has the same rows and checksums in both")
def _(target: Target, backup_record: BackupRecord) -> None:
    require_record(target, backup_record, "database", "equal row counts and checksums per table",
                   holds=backup_record.copies_every_table)


@then("the scratch database is gone")
def _(target: Target, backup_record: BackupRecord) -> None:
    require_record(target, backup_record, "database", "the scratch database dropped",
                   holds=backup_record.scratch_dropped)


@when(parsers.re(r"the on-call engineer looks for queries running over (?P<ms>\d+)"
                 r" milliseconds, watching for (?P<seconds>[\d.]+) seconds?"),
      converters={"ms": int, "seconds": float}, target_fixture="slow_queries")
@needs("database")
def _(target: Target, timeouts: Timeouts, ms: int, seconds: float,
      evidence: Evidence) -> ProbeResult:
    return evidence(postgres.slow_queries(target, timeouts, threshold_ms=ms, watch_s=seconds))


@then("no query ran over it and none waited on a lock")
def _(slow_queries: ProbeResult) -> None:
    require_ok(slow_queries)
