"""Disaster Recovery > Complete Infrastructure Loss, rehearsed in an isolated recovery
environment (the "Complete outage" row: 4 hours, 24 hours of data), the target itself never
touched: the loss is declared, and LegacyVideo is rebuilt from the target's copies on this
machine, as a test failover into an isolated environment is done.

1. "Provision new Railway project": a fresh stack here, the sandbox's components (PostgreSQL,
   Redis, an S3 server, the API, the worker, the web page, the mail stand-in) in a state
   directory of the drill's own, started empty (migrated, seeded);
2. "Restore database from backup": the target's newest backup (``restores.newest_backup``:
   ``RUNBOOK_BACKUP_LOCATION``, else a fresh ``pg_dump``) replaces the new stack's database,
   validated against the backup's own figures where it has them; the target's objects
   (current versions, outside the canary prefix) copied into the new stack's bucket, each
   read back and its SHA-256 compared;
3. "Redeploy API and Worker": the new environment's own operator accounts added where the
   restored data lacks them (so its checks can sign in; never overwriting a restored row),
   its ``ADMIN_TOKEN`` minted, API and worker restarted;
4. "Update DNS": not done: the environment is isolated and reached directly;
5. "Validate data integrity": step 2's comparisons, then the whole synthetic suite run
   against the rebuilt environment, which must pass.

RTO: from the declaration to the end of step 5; RPO: the backup's age at the declaration
(unmeasured for a fresh dump: see ``restore_test``). The rebuilt environment is destroyed at
the end, whatever happens.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from psycopg import sql

from runbook.config import Target
from runbook.drills import detection
from runbook.drills.canaries import S3_CANARY_PREFIX, CanaryReport
from runbook.drills.engine import Evidence, Run
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.real_target import SECTION, RealTargetDrill, Verdict, probe
from runbook.drills.incidents.restore_test import (
    ALL_PLATFORMS,
    backup_rpo,
    drill_directory,
    postgres_bindir,
)
from runbook.drills.incidents.steps import StepLog, output
from runbook.drills.restores import FoundBackup, Restored, newest_backup, restore_file, validate
from runbook.pg import drop_database, open_connection, parse_dsn
from runbook.platforms.base import library_call, record
from runbook.probes import storage as s3_probe
from runbook.results import Activity, ProbeResult
from runbook.sandbox import Sandbox
from runbook.sandbox.services import migrate


def recovery_home(context: DrillContext, params: Params) -> Path:
    return context.home / "drills" / str(params["drill_id"]) / "recovery"


def destroy_recovery(context: DrillContext, params: Params) -> tuple[bool, str, str]:
    """Stop and delete the isolated environment (idempotent)."""
    from runbook.sandbox import Sandbox  # the recovery environment is a sandbox stack

    home = recovery_home(context, params)
    if home.exists():
        Sandbox(home).destroy()
    shutil.rmtree(context.home / "drills" / str(params["drill_id"]), ignore_errors=True)
    return True, "the isolated recovery environment is stopped and deleted", ""


@fault("dr-complete-loss-declared", "the whole deployment declared lost: nothing is done to"
       " it; LegacyVideo is rebuilt from its copies in an isolated environment",
       platforms=ALL_PLATFORMS)
class CompleteLossDeclared:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        return record("declare the deployment lost", (),
                      lambda: (True, "nothing done to the target: the loss is declared", ""),
                      context.redactor())

    @staticmethod
    def present(context: DrillContext, params: Params) -> str | None:
        problem = params.get("unrecovered")
        return f"not rebuilt: {problem}" if problem else None

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        return record("remove the isolated recovery environment", library_call(
            "runbook.drills.incidents.isolated_rebuild.destroy_recovery"),
            lambda: destroy_recovery(context, params), context.redactor())


class IsolatedRebuild(RealTargetDrill):
    name = "isolated-rebuild"
    section = f"{SECTION} > Complete Infrastructure Loss"
    scenario = "Complete outage"
    fault = "dr-complete-loss-declared"
    description = ("the whole deployment declared lost (nothing done to it); rebuilt from its"
                   " newest backup and its objects in an isolated environment on this"
                   " machine, then the synthetic suite run against it")
    needs = ("DATABASE_URL", "S3_BUCKET")
    uses_bucket = True
    simulated = True
    notes = ("an isolated rebuild: the target was only read; DNS was not changed (step 4),"
             " the rebuilt environment was checked directly and destroyed at the end",)

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        self.backup: FoundBackup | None = None
        self.restored: Restored | None = None
        self.objects: dict[str, Any] = {}
        self.suite: detection.Round | None = None

    def prepare(self) -> tuple[str, Evidence]:
        home = recovery_home(self.context, self.run.params)
        return f"the isolated environment will live in {home}", [{"recovery_home": str(home)}]

    def _rebuilt(self) -> DrillContext:

        home = recovery_home(self.context, self.run.params)
        target = Target.from_variables("isolated-recovery", Sandbox(home).env(),
                                       source="the isolated recovery environment",
                                       environment="sandbox", platform="sandbox")
        return DrillContext(target, self.context.timeouts, self.context.platform, home)

    def runbook_steps(self) -> list[Activity]:

        context, run = self.context, self.run
        book = StepLog(context)
        workdir = drill_directory(context, run.drill_id)
        home = recovery_home(context, run.params)
        box = Sandbox(home)

        def provision() -> tuple[bool, str, str]:
            status = box.up(timeout=180)
            return True, output(f"a fresh stack in {home}: "
                                + ", ".join(sorted(status.components))), ""

        book.step("1. provision a new environment (isolated, on this machine)",
                  library_call("runbook.sandbox.Sandbox.up", str(home)), provision,
                  runbook_says="Provision new Railway project")

        def restore_database() -> tuple[bool, str, str]:
            self.backup = newest_backup(context.target, context.timeouts, workdir,
                                        postgres_bindir(context))
            run.drill.evidence["backup"] = self.backup.evidence()
            admin = parse_dsn(box.superuser_dsn("postgres"))
            with open_connection(admin, connect_timeout_s=context.timeouts.connect,
                                 statement_timeout_s=120.0, read_only=False) as conn:
                drop_database(conn, "legacyvideo")
                conn.execute(sql.SQL("CREATE DATABASE legacyvideo OWNER legacyvideo"
                                     " TEMPLATE template0"))
            into = parse_dsn(box.superuser_dsn())
            done = Restored(into.describe(), created=True)
            done.restore_s, done.problem = restore_file(
                self.backup, into, box.bindir, context.timeouts, owner="legacyvideo")
            if not done.problem:
                validate(into, self.backup, context.timeouts, done, None)
            self.restored = done
            return done.ok, output(f"{self.backup.origin} restored in {done.restore_s:.3f} s"
                                   if done.ok else done.problem, done.evidence()), done.problem

        book.step("2. restore the database from the newest backup",
                  ("pg_restore", "--no-owner", "--role=legacyvideo", "--exit-on-error",
                   "--dbname=<rebuilt>", "<backup>"), restore_database,
                  runbook_says="Restore database from backup")

        def copy_objects() -> tuple[bool, str, str]:
            source = s3_probe.client(context.target, context.timeouts)
            rebuilt = self._rebuilt().target
            into = s3_probe.client(rebuilt, context.timeouts)
            bucket, new_bucket = context.target.require("S3_BUCKET"), rebuilt.require("S3_BUCKET")
            copied, bad, size = 0, [], 0
            for page in source.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for entry in page.get("Contents", []):
                    key = str(entry["Key"])
                    if key.startswith(S3_CANARY_PREFIX):
                        continue
                    body = source.get_object(Bucket=bucket, Key=key)["Body"].read()
                    into.put_object(Bucket=new_bucket, Key=key, Body=body)
                    back = into.get_object(Bucket=new_bucket, Key=key)["Body"].read()
                    if hashlib.sha256(back).digest() != hashlib.sha256(body).digest():
                        bad.append(key)
                    copied, size = copied + 1, size + len(body)
            self.objects = {"copied": copied, "bytes": size, "mismatched": bad}
            return not bad, output(f"{copied} objects ({size} bytes) copied from {bucket},"
                                   f" {len(bad)} differ when read back", self.objects), (
                f"{len(bad)} objects differ when read back" if bad else "")

        book.step("2b. restore the objects into the new bucket",
                  library_call("boto3 s3.get_object, s3.put_object", "S3_BUCKET"),
                  copy_objects, runbook_says="(the runbook names no step for the videos)")

        def redeploy() -> tuple[bool, str, str]:
            secrets = box.secrets()
            migrate.seed(box.superuser_dsn(), secrets.admin_password, secrets.user_password)
            box.refresh_admin_token()
            for service in ("api", "worker"):
                box.restart(service)
            box.up(timeout=120)
            return True, output("the environment's operator accounts added where missing"
                                " (no restored row overwritten); ADMIN_TOKEN minted; api and"
                                " worker restarted"), ""

        book.step("3. redeploy the API and the worker", library_call(
            "runbook.sandbox.Sandbox.restart", "api", "worker"), redeploy,
            runbook_says="Redeploy API and Worker")
        book.step("4. update DNS: not done (isolated)", (), lambda: (True, output(
            "DNS is not changed: the rebuilt environment is isolated and its checks reach it"
            " directly"), ""), runbook_says="Update DNS to new infrastructure")

        def synthetic() -> tuple[bool, str, str]:
            self.suite = detection.run_round(self._rebuilt(), workdir / "suite")
            round_ = self.suite
            ok = round_.exit_code == 0 and round_.checked > 0
            failures = "; ".join(str(f) for f in round_.failures[:3])
            return ok, output(f"the synthetic suite on the rebuilt environment: exit"
                              f" {round_.exit_code}, {round_.checked} scenarios checked"
                              + (f"; failed: {failures}" if failures else "")), (
                "" if ok else f"the synthetic suite failed on the rebuilt environment"
                              f" (exit {round_.exit_code})")

        book.step("5. validate: the synthetic suite against the rebuilt environment",
                  ("runbook", "check", "--target", "sandbox"), synthetic,
                  runbook_says="Validate data integrity")
        problems = [a.error for a in book.activities if not a.ok]
        if problems:
            run.params["unrecovered"] = problems[0]
        return book.activities

    def verify(self) -> ProbeResult:
        expected = "the rebuilt environment restored, its objects copied, its suite green"

        def body() -> Verdict:
            done = self.restored
            if done is None or not done.ok:
                return Verdict(False, expected, done.problem if done else "not restored")
            if self.objects.get("mismatched") or not self.objects:
                return Verdict(False, expected, "objects not copied intact")
            if self.suite is None or self.suite.exit_code != 0:
                return Verdict(False, expected, "the synthetic suite did not pass")
            return Verdict(True, expected)

        return probe(self.context, "isolated recovery", "rebuilt", expected, body)

    def integrity(self) -> tuple[bool, str, Evidence]:
        done = self.restored
        assert done is not None
        detail = (f"{len(done.tables)} tables restored"
                  + (", counts and checksums equal to the backup's figures"
                     if done.comparison is not None else
                     " (the backup has no figures of its own: counts shown, not compared)")
                  + f"; {self.objects.get('copied')} objects copied intact; synthetic suite"
                  f" passed ({self.suite.checked if self.suite else 0} scenarios)")
        return done.ok, detail, [done.evidence(), self.objects,
                                 {"suite": None if self.suite is None else
                                  {"exit_code": self.suite.exit_code, "checked": self.suite.checked,
                                   "summary": self.suite.summary}}]

    def data_loss(self) -> CanaryReport | None:
        fault_at = self.run.drill.fault_at
        assert fault_at is not None and self.backup is not None
        return backup_rpo(self.run.drill_id, self.backup, fault_at)

    def cleanup(self) -> list[str]:
        destroy_recovery(self.context, self.run.params)
        return []


__all__ = ["CompleteLossDeclared", "IsolatedRebuild", "destroy_recovery"]
