"""Records deleted by mistake, brought back the way the runbook's Database Backup and Database
Corruption steps allow without touching anything else: restore the backup into a NEW
database, export the affected records from it, import them into the primary. Judged against
the "Database failure" row (30 minutes, 1 hour of data). The runbook has no "Accidental
Deletion" heading of its own: the record says so.

Only canary rows are ever written or deleted (``AuditLog`` rows with the action
``runbook.canary`` and this drill's id): ``canaries_before_backup`` of them, a backup the
drill takes (``pg_dump -Fc``, read-only), ``canaries`` more, then the fault deletes the drill's
canaries. The restore brings back exactly those the backup holds; the ones written after it
are lost, counted exactly, and the RPO is the fault's time minus the commit of the newest
canary that came back.
"""

from __future__ import annotations

import contextlib
import shutil
from typing import Any

from psycopg.types.json import Jsonb

from runbook.drills.canaries import (
    CANARY_ACTION,
    CanaryReport,
    CanaryWriter,
    assess,
    audit_writer,
    remove_canaries,
    surviving_keys,
)
from runbook.drills.engine import Evidence, Run
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.real_target import SECTION, RealTargetDrill, Verdict, probe
from runbook.drills.incidents.restore_test import (
    ALL_PLATFORMS,
    drill_directory,
    drop_leftovers,
    postgres_bindir,
)
from runbook.drills.incidents.steps import StepLog, output
from runbook.drills.restores import (
    FoundBackup,
    Restored,
    fresh_backup,
    restore_and_validate,
    scratch_for,
)
from runbook.pg import PgEndpoint, open_connection
from runbook.platforms.base import library_call, record
from runbook.probes.postgres import connect
from runbook.results import Activity, ProbeResult

_DELETE = ('DELETE FROM "AuditLog" WHERE "action" = %s AND "metadata"->>\'drill\' = %s')
_EXPORT = ('SELECT "id", "userId", "action", "ip", "metadata", "createdAt" FROM "AuditLog"'
           ' WHERE "action" = %s AND "metadata"->>\'drill\' = %s ORDER BY "createdAt"')
_IMPORT = ('INSERT INTO "AuditLog" ("id", "userId", "action", "ip", "metadata", "createdAt")'
           ' VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT ("id") DO NOTHING')


@fault("dr-canary-rows-deleted", "the drill's canary rows deleted from the primary, as a"
       " mistaken DELETE would", platforms=ALL_PLATFORMS)
class CanaryRowsDeleted:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            with connect(context.target.require("DATABASE_URL"), context.timeouts,
                         read_only=False) as conn:
                gone = conn.execute(_DELETE, (CANARY_ACTION, params["drill_id"])).rowcount
            return True, f"{gone} canary rows deleted (only this drill's canaries)", ""

        return record("delete the canary rows", library_call("psycopg.Connection.execute",
                                                             _DELETE), body,
                      context.redactor())

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            removed = remove_canaries(context.target, context.timeouts,
                                      str(params["drill_id"]))
            drop_leftovers(context, params)
            return True, f"{removed} canary rows removed; the drill's backup deleted", ""

        return record("remove the canary rows", library_call(
            "runbook.drills.canaries.remove_canaries", params["drill_id"]), body,
            context.redactor())


class AccidentalDeletion(RealTargetDrill):
    name = "accidental-deletion"
    section = f"{SECTION} > Data Loss Scenarios > Database Corruption"
    fault = "dr-canary-rows-deleted"
    description = ("canary rows deleted by mistake; restored into a new database from a"
                   " backup, exported from it and imported into the primary")
    needs_scratch = True
    notes = ("the runbook has no 'Accidental Deletion' procedure: its Database Corruption"
             " steps restore the whole database, which would also undo every write since the"
             " backup; this drill restores into a new database and imports only the affected"
             " records (the runbook's Database Backup export and import)",)
    canaries_before_backup = 2
    canaries_after_backup = 3

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        self.backup: FoundBackup | None = None
        self.restored: Restored | None = None
        self.exported: list[tuple[Any, ...]] = []
        self.before_backup: set[str] = set()

    def prepare(self) -> tuple[str, Evidence]:
        context, run = self.context, self.run
        scratch = scratch_for(context.target)
        assert scratch is not None
        run.params["scratch"] = scratch.name
        writer = audit_writer(context.target, context.timeouts, run.drill_id)
        run.writer = CanaryWriter(run.ledger, writer, 0.05)
        run.writer.write_exactly(self.canaries_before_backup, first=True)
        self.before_backup = {c.key for c in run.ledger.canaries}
        self.backup = fresh_backup(context.target, context.timeouts,
                                   drill_directory(context, run.drill_id),
                                   postgres_bindir(context), reason=f"drill {run.drill_id}")
        run.writer.write_exactly(self.canaries_after_backup, first=False)
        run.drill.evidence["backup"] = self.backup.evidence()
        return (f"{self.canaries_before_backup} canary rows, a backup"
                f" ({self.backup.taken_at.isoformat()}), {self.canaries_after_backup} more"), [
            {"backup": self.backup.evidence(),
             "canaries": [c.evidence() for c in run.ledger.canaries]}]

    def _canaries(self) -> ProbeResult:
        expected = "every canary row the backup holds is in the primary"
        wanted = self.before_backup

        def body() -> Verdict:
            alive = surviving_keys(self.context.target, self.context.timeouts,
                                   self.run.drill_id)
            missing = sorted(wanted - alive)
            return Verdict(not missing, expected, f"{len(missing)} of {len(wanted)} canary"
                           " rows the backup holds are missing from the primary",
                           {"missing": missing, "present": len(alive)}, advice="postgres")

        return probe(self.context, "postgres", "canary rows", expected, body)

    def detect(self) -> ProbeResult:
        return self._canaries()

    def verify(self) -> ProbeResult:
        return self._canaries()

    def runbook_steps(self) -> list[Activity]:
        context, run = self.context, self.run
        book = StepLog(context)
        backup, scratch = self.backup, scratch_for(context.target)
        assert backup is not None and scratch is not None
        scratch = type(scratch)(scratch.admin, str(run.params["scratch"]), scratch.origin)

        def export(into: PgEndpoint) -> None:
            with open_connection(into, connect_timeout_s=context.timeouts.connect,
                                 statement_timeout_s=60.0) as conn:
                self.exported = list(conn.execute(_EXPORT, (CANARY_ACTION, run.drill_id)))

        def restore() -> tuple[bool, str, str]:
            self.restored = restore_and_validate(
                backup, scratch, postgres_bindir(context), context.timeouts,
                source_dsn=None, keep=export)
            done = self.restored
            return done.ok, output(f"restored into {done.scratch} in {done.restore_s:.3f} s;"
                                   f" {len(self.exported)} affected records exported from it"
                                   if done.ok else done.problem, done.evidence()), done.problem

        book.step("1. restore the backup into a new database and export the affected records",
                  ("pg_restore", "--dbname=<new database>", "<backup>", "&&", "SELECT",
                   "<affected records>"), restore,
                  runbook_says="Restore from latest Railway backup (into a new database)")

        def import_rows() -> tuple[bool, str, str]:
            with connect(context.target.require("DATABASE_URL"), context.timeouts,
                         read_only=False) as conn, conn.transaction():
                added = sum(conn.execute(_IMPORT, (*row[:4], Jsonb(row[4]), row[5])).rowcount
                            for row in self.exported)
            return True, output(f"{added} of {len(self.exported)} records imported into the"
                                " primary (existing ones left as they are)"), ""

        book.step("2. import the affected records into the primary",
                  library_call("psycopg.Connection.execute", _IMPORT), import_rows,
                  runbook_says="railway run --service api psql $DATABASE_URL <"
                               " backup-20240101.sql (only the affected records)")
        if self.restored is None or not self.restored.ok:
            run.params["unrecovered"] = (self.restored.problem if self.restored is not None
                                         else "the backup was not restored")
        return book.activities

    def integrity(self) -> tuple[bool, str, Evidence]:
        """The imported rows are the originals, and what was lost is exactly what was
        written after the backup."""
        run = self.run
        after_backup = {c.key for c in run.ledger.canaries} - self.before_backup
        alive = surviving_keys(self.context.target, self.context.timeouts, run.drill_id)
        lost = {c.key for c in run.ledger.canaries} - alive
        with connect(self.context.target.require("DATABASE_URL"), self.context.timeouts) as c:
            rows = {str(r[0]): r[1] for r in c.execute(
                'SELECT "id", "metadata" FROM "AuditLog" WHERE "action" = %s AND'
                ' "metadata"->>\'drill\' = %s', (CANARY_ACTION, run.drill_id))}
        seqs = {c.key: c.seq for c in run.ledger.canaries}
        wrong = sorted(k for k, meta in rows.items()
                       if meta != {"seq": seqs.get(k), "drill": run.drill_id})
        ok = lost == after_backup and not wrong and (self.restored is not None
                                                      and self.restored.ok)
        evidence = {"lost": sorted(lost), "written_after_backup": sorted(after_backup),
                    "rows_not_as_written": wrong,
                    "restore": None if self.restored is None else self.restored.evidence()}
        detail = (f"{len(lost)} canary rows lost, exactly the {len(after_backup)} written"
                  f" after the backup; the {len(rows)} imported are as written" if ok else
                  f"lost {len(lost)} rows, {len(after_backup)} were written after the backup;"
                  f" {len(wrong)} rows differ from what was written")
        return ok, detail, [evidence]

    def data_loss(self) -> CanaryReport | None:
        fault_at = self.run.drill.fault_at
        assert fault_at is not None and self.backup is not None
        alive = surviving_keys(self.context.target, self.context.timeouts, self.run.drill_id)
        return assess(self.run.drill_id, self.run.ledger.canaries, alive, fault_at,
                      recovery_point=self.backup.taken_at, failures=self.run.ledger.failures)

    def cleanup(self) -> list[str]:
        run = self.run
        if run.writer is not None:
            run.writer.stop()
            close = getattr(run.writer.write, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
        run.facts["canary_rows_removed"] = remove_canaries(
            self.context.target, self.context.timeouts, run.drill_id)
        shutil.rmtree(self.context.home / "drills" / run.drill_id, ignore_errors=True)
        problems = []
        if self.restored is not None and self.restored.created and not self.restored.dropped:
            problems.append(f"the scratch database {self.restored.scratch} was not dropped")
        return problems


__all__ = ["AccidentalDeletion", "CanaryRowsDeleted"]
