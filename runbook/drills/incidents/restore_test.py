"""Disaster Recovery > Data Loss Scenarios > Database Corruption, steps 1-2, as a restore test
(the "Database failure" row: 30 minutes, 1 hour of data): the target's newest backup restored
into a scratch database and validated, the primary only read. Runs on staging, and on
production with --allow-operations production (``@read-only``).

The loss is declared, not caused: nothing is done to the primary (the fault
``dr-primary-declared-lost`` records the moment), so there is nothing to detect and the clock
starts at the declaration. Recovery is the restored copy validated (LegacyVideo's tables, a
consistent migrations table, per-table counts and checksums against the backup's own
figures where it has them). RTO: from the declaration to that validation (fetching the
backup included); RPO: the backup's age at the declaration, from its snapshot time, or
unmeasured when only a file's modification time dates it (a lower bound on its age).
"""

from __future__ import annotations

import contextlib
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from runbook.drills.canaries import CanaryReport
from runbook.drills.engine import Evidence
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.real_target import SECTION, RealTargetDrill, Verdict, probe
from runbook.drills.incidents.steps import StepLog, output
from runbook.drills.restores import (
    LOCATION_VARIABLE,
    FoundBackup,
    Restored,
    Scratch,
    admin_connection,
    backup_location,
    fresh_backup,
    newest_backup,
    restore_and_validate,
    scratch_for,
)
from runbook.pg import drop_database
from runbook.platforms.base import library_call, record
from runbook.results import Activity, ProbeResult, utcnow

ALL_PLATFORMS = ("sandbox", "railway", "kubernetes", "none")


def drill_directory(context: DrillContext, drill_id: str) -> Path:
    """The drill's private directory (0700) for the backups it fetches or takes."""
    path = context.home / "drills" / drill_id
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def postgres_bindir(context: DrillContext) -> Path:
    """The client tools: the sandbox's, else the newest PostgreSQL on this machine."""
    from runbook.sandbox import Sandbox, find_postgres  # the tools, not the sandbox's state

    if context.target.platform is not None and context.target.platform.value == "sandbox":
        return Sandbox(context.home).bindir
    return find_postgres().bindir


def drop_leftovers(context: DrillContext, params: Params) -> tuple[bool, str, str]:
    """Remove the drill's directory (its backups hold data) and any scratch database of it
    still there (the engine drops it; the guard calls this after a crash)."""

    shutil.rmtree(context.home / "drills" / str(params["drill_id"]), ignore_errors=True)
    name = str(params.get("scratch") or "")
    scratch = scratch_for(context.target)
    if name and scratch is not None:
        named = Scratch(scratch.admin, name, scratch.origin)
        with admin_connection(named, context.timeouts) as conn:
            drop_database(conn, name)
    return True, "the drill's backups and scratch database are gone", ""


def backup_rpo(drill_id: str, backup: FoundBackup, fault_at: datetime) -> CanaryReport:
    """The RPO of restoring ``backup`` after a loss at ``fault_at``: its age then, from its
    snapshot time; unmeasured when the drill took the dump itself (its age is 0 by
    construction) or only a file's modification time dates it (a lower bound)."""
    age = (fault_at - backup.taken_at).total_seconds()
    if backup.source == "fresh pg_dump":
        rpo: float | None = None
        basis = ("unmeasured: no backup location is configured, so the drill restored a"
                 " pg_dump it took itself, whose age is 0 by construction and says nothing"
                 f" of LegacyVideo's backups; set {LOCATION_VARIABLE} to the directory or"
                 " s3://bucket/prefix the backups are written to")
    elif backup.taken_at_basis.startswith("the file's modification time"):
        rpo = None
        basis = (f"unmeasured: only the file's modification time dates the backup"
                 f" ({backup.taken_at.isoformat()}, {age:.0f} s before the declared loss),"
                 " and its snapshot was earlier (a bound is not a measurement): keep the"
                 " backup's metadata beside it, or use pg_dump -Fc, whose header dates it")
    else:
        rpo = max(0.0, age)
        basis = (f"the backup's age at the declared loss: everything committed after its"
                 f" snapshot ({backup.taken_at.isoformat()}, {backup.taken_at_basis})"
                 " would be lost")
    return CanaryReport(drill_id, fault_at, 0, 0, 0, (), rpo, basis, None,
                        backup.taken_at)


@fault("dr-primary-declared-lost", "the primary database declared lost: nothing is done to"
       " it; its newest backup must bring LegacyVideo's data back", platforms=ALL_PLATFORMS)
class PrimaryDeclaredLost:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        return record("declare the primary database lost", (),
                      lambda: (True, "nothing done to the primary: the loss is declared", ""),
                      context.redactor())

    @staticmethod
    def present(context: DrillContext, params: Params) -> str | None:
        """Still lost when the runbook's steps brought no valid copy back."""
        problem = params.get("unrecovered")
        return f"the data is still lost: {problem}" if problem else None

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        return record("remove the restore test's scratch database and backups",
                      library_call("runbook.drills.incidents.restore_test.drop_leftovers"),
                      lambda: drop_leftovers(context, params), context.redactor())


class RestoreTest(RealTargetDrill):
    name = "restore-test"
    section = f"{SECTION} > Data Loss Scenarios > Database Corruption"
    fault = "dr-primary-declared-lost"
    description = ("the primary database declared lost (nothing done to it); its newest"
                   " backup restored into a scratch database and validated")
    needs_scratch = True
    read_only = True
    simulated = True
    notes = ("a restore test: the primary was only read; the restore went into a scratch"
             " database the drill created and dropped",)

    def __init__(self, run: Any) -> None:
        super().__init__(run)
        self.scratch: Scratch | None = None
        self.backup: FoundBackup | None = None
        self.restored: Restored | None = None

    def prepare(self) -> tuple[str, Evidence]:
        scratch = scratch_for(self.context.target)
        assert scratch is not None  # refused before otherwise
        self.scratch = scratch
        self.run.params["scratch"] = scratch.name
        location = backup_location(self.context.target) or (
            f"none ({LOCATION_VARIABLE} is not set): a fresh pg_dump")
        return (f"scratch database {scratch.describe()} ({scratch.origin}); backups from"
                f" {location}"), [{"scratch": scratch.describe(), "backup_location": location}]

    def runbook_steps(self) -> list[Activity]:
        context, run = self.context, self.run
        book = StepLog(context)
        workdir = drill_directory(context, run.drill_id)
        bindir = postgres_bindir(context)
        found: list[FoundBackup] = []

        def latest() -> tuple[bool, str, str]:
            if not backup_location(context.target):
                return True, output(f"no backup location is configured ({LOCATION_VARIABLE});"
                                    " Railway's own backups are not readable from its CLI"), ""
            found.append(newest_backup(context.target, context.timeouts, workdir, bindir))
            return True, output(f"newest backup: {found[0].origin}", found[0].evidence()), ""

        book.step("1. restore from the latest backup: find it", library_call(
            "runbook.drills.restores.newest_backup", LOCATION_VARIABLE), latest,
            runbook_says="Restore from latest Railway backup")
        if not found:
            def manual() -> tuple[bool, str, str]:
                found.append(fresh_backup(context.target, context.timeouts, workdir, bindir,
                                          reason=f"drill {run.drill_id}"))
                return True, output(f"took {found[0].origin}", found[0].evidence()), ""

            book.step("2. if unavailable, restore from a manual backup: take it",
                      ("pg_dump", "--format=custom", "$DATABASE_URL"), manual,
                      runbook_says="railway run --service api pg_dump $DATABASE_URL >"
                                   " backup-$(date +%Y%m%d).sql")
        if found:
            self.backup = found[0]
            run.drill.evidence["backup"] = self.backup.evidence()

            def restore() -> tuple[bool, str, str]:
                assert self.backup is not None and self.scratch is not None
                self.restored = restore_and_validate(
                    self.backup, self.scratch, bindir, context.timeouts,
                    source_dsn=context.target.require("DATABASE_URL"))
                done = self.restored
                return done.ok, output(
                    f"restored into {done.scratch} in {done.restore_s:.3f} s and validated"
                    if done.ok else done.problem, done.evidence()), done.problem

            book.step("restore it into the scratch database and validate it",
                      ("pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                       "--dbname=<scratch>", "<backup>"), restore,
                      runbook_says="railway run --service api psql $DATABASE_URL <"
                                   " backup-20240101.sql (into a new database, not the"
                                   " primary)")
        if self.restored is None or not self.restored.ok:
            run.params["unrecovered"] = (self.restored.problem if self.restored is not None
                                         else "no backup could be found or restored")
        return book.activities

    def verify(self) -> ProbeResult:
        expected = "the backup restored into the scratch database and validated"

        def body() -> Verdict:
            done = self.restored
            if done is None:
                return Verdict(False, expected, "no backup was restored")
            return Verdict(done.ok, expected, done.problem, done.evidence())

        return probe(self.context, "postgres", "restore test", expected, body)

    def integrity(self) -> tuple[bool, str, Evidence]:
        done, backup = self.restored, self.backup
        assert done is not None and backup is not None
        throughput = backup.size_bytes / done.restore_s if done.restore_s > 0 else None
        figures = {
            "restore_s": round(done.restore_s, 3), "archive_bytes": backup.size_bytes,
            "throughput_bytes_per_s": None if throughput is None else round(throughput),
            "tables": len(done.tables), "restored_rows": (done.figures.rows
                                                          if done.figures else None),
            "migrations": done.migrations}
        self.run.drill.evidence["restore_test"] = figures
        if done.comparison is not None:
            detail = (f"{len(done.comparison.tables)} tables,"
                      f" {done.figures.rows if done.figures else 0} rows: counts and ordered"
                      " checksums equal to the backup's own figures")
        else:
            detail = (f"{len(done.tables)} tables present, {done.migrations.get('applied')}"
                      " migrations all finished; the backup has no figures of its own, so"
                      " row counts are shown, not compared")
        return done.ok, detail if done.ok else done.problem, [figures, done.evidence()]

    def data_loss(self) -> CanaryReport | None:
        fault_at = self.run.drill.fault_at
        assert fault_at is not None and self.backup is not None
        return backup_rpo(self.run.drill_id, self.backup, fault_at)

    def cleanup(self) -> list[str]:
        problems = []
        with contextlib.suppress(Exception):
            drop_leftovers(self.context, self.run.params)
        if self.restored is not None and self.restored.created and not self.restored.dropped:
            problems.append(f"the scratch database {self.restored.scratch} was not dropped")
        self.run.facts["scratch_dropped"] = bool(self.restored and self.restored.dropped)
        self.run.facts["finished_at"] = utcnow().isoformat()
        return problems


__all__ = ["PrimaryDeclaredLost", "RestoreTest", "backup_rpo", "drill_directory", "drop_leftovers",
           "postgres_bindir"]
