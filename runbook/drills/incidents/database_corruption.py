"""Disaster Recovery > Data Loss Scenarios > Database Corruption, judged against the
Recovery Time Objectives' "Database failure" row (30 minutes, 1 hour of data):

- ``database-failure``: PostgreSQL stopped and its data directory deleted
  (``dr-database-destroyed``); restored from the backup (steps 1-2).
- ``database-corruption``: every release deleted and every video overwritten in one
  transaction, as a bad deploy would (``dr-database-corrupted``); restored from the backup,
  then the audit log written since replayed (steps 1-3). What the audit log does not record
  (a video created through the API) cannot be replayed: the record names it.

Each fault's revert is the same procedure (idempotent): the guard runs it if the drill dies.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runbook.drills import dr_storage
from runbook.drills.canaries import api_video_writer, audit_writer, foreign_canaries
from runbook.drills.dr_procedures import (
    act,
    ensure_running,
    forget_drill,
    load_backup,
    replay_export,
    restore_database,
    summary,
)
from runbook.drills.dr_replay import NOT_REPLAYABLE, export_audit, replay, save_export
from runbook.drills.engine import Evidence
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.disaster import SECTION, DisasterIncident
from runbook.drills.incidents.steps import StepLog, output
from runbook.figures import compare, read_figures, row_key
from runbook.platforms.base import chained, library_call
from runbook.probes import Verdict, run_probe
from runbook.probes.postgres import connect
from runbook.results import Activity, ProbeResult
from runbook.sandbox import Sandbox
from runbook.sandbox.postgres import remove_data_directory

SUBSECTION = f"{SECTION} > Data Loss Scenarios > Database Corruption"
#: The corruption: one transaction, as a bad deploy or a mistaken script would do it.
CORRUPTION_SQL: tuple[str, ...] = (
    'DELETE FROM "Release"',
    'UPDATE "Video" SET "title" = \'CORRUPTED \' || "title", "status" = \'FAILED\','
    ' "updatedAt" = now()',
)


@fault("dr-database-destroyed",
       "PostgreSQL stopped and its data directory deleted: the database is gone")
class DatabaseDestroyed:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        sandbox = Sandbox(context.home)

        def body() -> tuple[bool, str, str]:
            sandbox.stop("postgres")
            data = sandbox.layout.pgdata
            shown = os.readlink(data) if data.is_symlink() else str(data)
            remove_data_directory(data)
            return True, f"postgres stopped; data directory {shown} deleted", ""

        return act(context, "destroy the database",
                   chained(library_call("runbook.sandbox.Sandbox.stop", "postgres"),
                              library_call("runbook.sandbox.postgres.remove_data_directory")),
                   body)

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            started = ensure_running(context, "postgres")
            if not started.ok:
                return False, "", started.error
            restored, _ = restore_database(context, load_backup(params))
            return summary([started, restored, forget_drill(context, params)])

        return act(context, "recover the database from its backup",
                   library_call("runbook.sandbox.backups.restore_backup"), body)


@fault("dr-database-corrupted", "every release deleted and every video overwritten")
class DatabaseCorrupted:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            counts = []
            with connect(context.target.require("DATABASE_URL"), context.timeouts,
                         read_only=False) as conn, conn.transaction():
                for statement in CORRUPTION_SQL:
                    counts.append(conn.execute(statement).rowcount)
            return True, f"{counts[0]} releases deleted, {counts[1]} videos overwritten", ""

        return act(context, "corrupt the database",
                   library_call("psycopg.Connection.execute", *CORRUPTION_SQL), body)

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            ensured = ensure_running(context, "postgres")
            restored, _ = restore_database(context, load_backup(params))
            steps = [ensured, restored]
            export = Path(str(params.get("export") or ""))
            if restored.ok and export.name and export.exists():
                steps.append(replay_export(context, export))
            steps.append(forget_drill(context, params))
            return summary(steps)

        return act(context, "restore the database and replay the audit log",
                   library_call("runbook.sandbox.backups.restore_backup"), body)


class DatabaseFailure(DisasterIncident):
    name = "database-failure"
    section = SUBSECTION
    scenario = "Database failure"
    fault = "dr-database-destroyed"
    description = ("PostgreSQL stopped and its data directory deleted; restored from the"
                   " latest backup")
    sandbox_only = ("it deletes the database's data directory and restores the sandbox's own"
                    " backups; Railway's backups are not readable from its CLI")

    def prepare(self) -> tuple[str, Evidence]:
        self.backup_with_canaries(audit_writer(self.context.target, self.context.timeouts,
                                               self.run.drill_id))
        assert self.backup is not None
        return (f"backup {self.backup.name} taken ({self.backup.taken_at.isoformat()}) between"
                " the canaries"), self.backup_evidence()

    def runbook_steps(self) -> list[Activity]:
        assert self.backup is not None
        started = ensure_running(self.context, "postgres")
        if not started.ok:
            return [started]
        restored, detail = restore_database(self.context, self.backup)
        if detail is not None:
            self.run.facts["restore"] = detail.evidence()
        book = StepLog(self.context)
        book.add(started, "start the database service")
        book.add(restored, "1. restore from the latest backup",
                 runbook_says="restore from latest Railway backup")
        book.step("API and worker connections", (), lambda: (True, output(
            "the API opens a connection per request and the worker none to the database: no"
            " restart needed, the next request uses the restored database"), ""))
        return book.activities

    def integrity(self) -> tuple[bool, str, Evidence]:
        return self.integrity_against_backup()


class DatabaseCorruption(DisasterIncident):
    name = "database-corruption"
    section = SUBSECTION
    scenario = "Database failure"
    fault = "dr-database-corrupted"
    description = ("releases deleted and videos overwritten; restored from the latest backup,"
                   " then the audit log replayed")
    sandbox_only = ("it rewrites the application's rows and restores the sandbox's own"
                    " backups")

    def prepare(self) -> tuple[str, Evidence]:
        target, timeouts = self.context.target, self.context.timeouts
        unaudited = api_video_writer(target, timeouts, self.run.drill_id)

        def unaudited_write() -> None:
            canary = self.run.ledger.add(unaudited(self.run.ledger.next_seq()))
            self.run.facts["unaudited_canary"] = canary.evidence()

        self.backup_with_canaries(audit_writer(target, timeouts, self.run.drill_id),
                                  between=unaudited_write)
        assert self.run.writer is not None
        self.run.writer.stop()
        self.before = read_figures(target.require("DATABASE_URL"), timeouts, row_level=True)
        self.run.params["export"] = str(self.work / "audit-export.json")
        return ("backup taken; one unaudited write (a video through the API) and audited"
                " canaries after it; figures read before the fault"), [
            *self.backup_evidence(), {"figures": self.before.to_json()}]

    def detect(self) -> ProbeResult:
        before = self.before
        assert before is not None
        target, timeouts = self.context.target, self.context.timeouts
        expected = "every table as it was before the fault"

        def body() -> Verdict:
            after = read_figures(target.require("DATABASE_URL"), timeouts,
                                 like=before)
            report = compare(before, after)
            return Verdict(report.matches, expected, report.problem(),
                           {"differing": [t.table for t in report.tables if not t.ok]},
                           advice="database")

        return run_probe("database", "data integrity", target, timeouts, body,
                         expected=expected)

    def runbook_steps(self) -> list[Activity]:
        backup = self.backup
        assert backup is not None
        target, timeouts = self.context.target, self.context.timeouts
        export_path = Path(self.run.params["export"])
        entries: list[Any] = []
        book = StepLog(self.context)

        def export() -> tuple[bool, str, str]:
            found = export_audit(target.require("DATABASE_URL"), timeouts, backup.taken_at)
            save_export(export_path, found)
            entries[:] = found
            return True, output(f"{len(found)} audit rows dated after the backup (minus a"
                                " margin) read from the damaged database before restoring"), ""

        book.step("save the audit log written after the backup",
                  library_call("runbook.drills.dr_replay.export_audit"), export,
                  runbook_says="(implied by step 3: the audit log is in the damaged database)")
        restored, detail = restore_database(self.context, backup)
        book.add(restored, "1. restore from the latest backup",
                 runbook_says="restore from latest Railway backup")
        if detail is not None:
            self.run.facts["restore"] = detail.evidence()
        book.step("2. if unavailable, restore from manual backup", (), lambda: (True, output(
            f"not needed: the latest backup {backup.name} was available"), ""),
            runbook_says="restore from manual backup")
        if not restored.ok:
            return book.activities

        def replayed() -> tuple[bool, str, str]:
            report = replay(target.require("DATABASE_URL"), timeouts, entries)
            self.run.facts["replay"] = report.evidence()
            return True, output(report.summary()), ""

        book.step("3. replay recent transactions from the audit log",
                  library_call("runbook.drills.dr_replay.replay"), replayed,
                  runbook_says="replay recent transactions from audit log")
        return book.activities

    def integrity(self) -> tuple[bool, str, Evidence]:
        before = self.before
        assert before is not None
        after = read_figures(self.context.target.require("DATABASE_URL"),
                             self.context.timeouts, like=before, row_level=True)
        unaudited = self.run.facts.get("unaudited_canary", {}).get("key")
        expected = [row_key(unaudited)] if unaudited else []
        # Canaries of earlier drills the backup held come back: their deletion was not
        # audited either.
        resurrected = foreign_canaries(self.context.target, self.context.timeouts,
                                       self.run.drill_id)
        expected += [row_key(k) for keys in resurrected.values() for k in keys]
        report = compare(before, after, expected)
        lost = [f"{t.table} {k}" for t in report.tables for k in (*t.missing, *t.changed)]
        if report.matches:
            detail = "every table as before the fault"
        elif report.ok:
            detail = (f"as before the fault but for what the audit log cannot replay:"
                      f" {'; '.join(lost)}")
        else:
            detail = "unexplained differences: " + "; ".join(report.unexplained)
        return report.ok, detail, [report.evidence(), {
            "replay": self.run.facts.get("replay"), "cannot_be_replayed": list(NOT_REPLAYABLE)}]

    def cleanup(self) -> list[str]:
        problems = super().cleanup()
        if self.run.healthy_after:
            dr_storage.remove_offsite(self.work)
        else:
            problems.append(f"the audit export in {self.work} is kept: the database was not"
                            " healthy after restoring")
        return problems
