"""The disasters of the runbook's Disaster Recovery section as registered faults, and the
recovery procedures that both the drills (step by step, timed) and the restoration guard
(after a crash, from its ledger) run.

Every fault here is sandbox-only (``platforms=("sandbox",)``): each acts on the sandbox's own
processes, data directory, backups or state directory, which no other platform lets the
runbook reach. Each revert is idempotent and leaves the sandbox healthy:

=========================  ===========================================  ===================
fault                      inject                                       revert
=========================  ===========================================  ===================
``dr-api-killed``          SIGKILL to the API's real pid (``pid``)      start the API if it
                                                                        is not running
``dr-database-destroyed``  postgres stopped, its data directory         start postgres (a
                           deleted (initdb is needed to start again)    fresh cluster),
                                                                        restore ``backup``
``dr-database-corrupted``  every ``"Release"`` row deleted, every       restore ``backup``,
                           ``"Video"`` row overwritten (one              replay the audit
                           transaction, as a bad deploy would)           export if saved
``dr-s3-objects-lost``     canary objects deleted and overwritten,      every canary
                           the unversioned canary deleted               version and the
                                                                        unversioned bucket
                                                                        removed
``dr-infrastructure-lost`` ``Sandbox.destroy()``: every process, the    provision again with
                           data, the state directory, the in-memory     the stored secrets,
                           S3 objects (``backup-storage/`` survives)    restore the database
                                                                        and the objects
=========================  ===========================================  ===================
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from runbook.drills import dr_storage
from runbook.drills.canaries import remove_s3_canaries
from runbook.drills.dr_replay import load_export, replay
from runbook.drills.faults import DrillContext, Params, fault
from runbook.errors import SandboxError
from runbook.platforms.base import record
from runbook.probes.storage import client
from runbook.results import Activity
from runbook.sandbox import Sandbox
from runbook.sandbox.backups import BackupInfo, RestoreRecord, restore_backup
from runbook.sandbox.postgres import remove_data_directory

#: The API's module, looked for in a pid's command line before it is killed.
API_MODULE = "runbook.sandbox.services.api"
#: How long a component may take to come back.
START_TIMEOUT_S = 60.0



def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _act(context: DrillContext, name: str, command: tuple[str, ...],
         body: Callable[[], tuple[bool, str, str]]) -> Activity:
    """``record`` that turns an exception from ``body`` into a failed Activity."""
    def guarded() -> tuple[bool, str, str]:
        try:
            return body()
        except (SandboxError, OSError) as exc:
            return False, "", str(exc)
    return record(name, command, guarded, context.redactor())


# -- procedures (drills and guard alike) ----------------------------------------------------


def ensure_running(context: DrillContext, component: str) -> Activity:
    """Start ``component`` when it is not running; wait until it answers."""
    sandbox = Sandbox(context.home)

    def body() -> tuple[bool, str, str]:
        state = sandbox.status().components[component]
        if state.running:
            return True, f"{component} running (pid {state.pid})", ""
        started = sandbox.start(component, wait=True, timeout=START_TIMEOUT_S)
        return started.running, f"{component} running again (pid {started.pid})", ""

    return _act(context, f"start {component}", ("runbook", "sandbox", "start", component), body)


def restore_database(context: DrillContext, backup: BackupInfo
                     ) -> tuple[Activity, RestoreRecord | None]:
    """Restore ``backup`` into the sandbox's application database (``restore_backup``) as
    one Activity, plus its record (``None`` when it was refused)."""
    sandbox = Sandbox(context.home)
    outcome: list[RestoreRecord] = []

    def body() -> tuple[bool, str, str]:
        restored = restore_backup(sandbox, backup, timeouts=context.timeouts)
        outcome.append(restored)
        steps = "; ".join(f"{a.name} {a.elapsed_s:.2f}s" for a in restored.activities)
        return restored.ok, steps, restored.problem

    activity = _act(context, "restore from the latest backup",
                    ("pg_restore", "--exit-on-error", str(backup.path)), body)
    return activity, (outcome[0] if outcome else None)


def replay_export(context: DrillContext, export: Path) -> Activity:
    """Replay a saved audit export into the sandbox's database (``dr_replay.replay``)."""
    def body() -> tuple[bool, str, str]:
        entries = load_export(export)
        report = replay(context.target.require("DATABASE_URL"), context.timeouts, entries)
        return True, report.summary(), ""

    return _act(context, "replay recent transactions from the audit log",
                ("sql", "INSERT INTO \"AuditLog\" ... ON CONFLICT DO NOTHING; replay"), body)


def provision(context: DrillContext, copy: dr_storage.OffsiteCopy) -> Activity:
    """A new sandbox in the same ``RUNBOOK_HOME`` with the stored secrets ("provision new
    Railway project"): started fresh (initdb, migrations, seed) unless one already runs
    with those secrets."""
    sandbox = Sandbox(context.home)

    def body() -> tuple[bool, str, str]:
        if sandbox.supervisor_pid() is not None and dr_storage.secrets_match(sandbox, copy):
            status = sandbox.up(timeout=120)
            return status.running, "a sandbox with the stored secrets already runs", ""
        if sandbox.supervisor_pid() is not None or sandbox.layout.root.exists():
            sandbox.destroy()
        dr_storage.install_secrets(sandbox, copy)
        status = sandbox.up(timeout=120)
        ready = max((c.time_to_running_s or 0.0) for c in status.components.values())
        return status.running, (f"new sandbox running (7 components, slowest ready in"
                                f" {ready:.2f}s)"), ""

    return _act(context, "provision new infrastructure", ("runbook", "sandbox", "up"), body)


def redeploy(context: DrillContext) -> list[Activity]:
    """"Redeploy API and Worker": restart both, then mint ``ADMIN_TOKEN`` for the restored
    admin's token version."""
    sandbox = Sandbox(context.home)
    steps = []
    for service in ("api", "worker"):
        def body(service: str = service) -> tuple[bool, str, str]:
            after = sandbox.restart(service, timeout=START_TIMEOUT_S)
            return after.running, f"{service} running (pid {after.pid})", ""
        steps.append(_act(context, f"redeploy {service}",
                          ("runbook", "sandbox", "restart", service), body))

    def token() -> tuple[bool, str, str]:
        sandbox.refresh_admin_token()
        return True, "ADMIN_TOKEN minted for the restored admin", ""

    steps.append(_act(context, "mint ADMIN_TOKEN", ("runbook", "sandbox",
                                                    "refresh-admin-token"), token))
    return steps


def backup_restored(context: DrillContext) -> Activity:
    """The new infrastructure's first backup, of the restored data (the one its ``up`` took
    was of an empty, freshly seeded database: restoring that would lose everything)."""
    from runbook.sandbox.backups import take_backup

    sandbox = Sandbox(context.home)

    def body() -> tuple[bool, str, str]:
        info = take_backup(sandbox, reason="after restore", timeouts=context.timeouts)
        return True, f"backup {info.name} of the restored database", ""

    return _act(context, "back up the restored database", ("runbook", "sandbox", "backup"),
                body)


def restore_objects(context: DrillContext, copy: dr_storage.OffsiteCopy
                    ) -> tuple[Activity, dr_storage.ObjectsRestore | None]:
    """Put the copied S3 objects back into the (new) bucket."""
    outcome: list[dr_storage.ObjectsRestore] = []

    def body() -> tuple[bool, str, str]:
        done = dr_storage.restore_objects(context.target, context.timeouts, copy)
        outcome.append(done)
        return done.ok, (f"{len(done.restored)} objects put back, {done.already_intact}"
                         " already intact"), "; ".join(done.problems)

    activity = _act(context, "restore objects from the S3 backup copy",
                    ("aws", "s3", "cp", "--recursive", str(copy.directory / "s3"),
                     f"s3://{copy.bucket}/"), body)
    return activity, (outcome[0] if outcome else None)


def _load_backup(params: Params) -> BackupInfo:
    return BackupInfo.load(Path(str(params["backup"])).with_suffix(".json"))


def _context_now(context: DrillContext) -> DrillContext:
    """``context`` with the target rebuilt from the sandbox's current variables (a
    re-provisioned sandbox has new ports)."""
    from runbook.config import Target
    from runbook.platforms import platform_for

    target = Target.from_variables("sandbox", Sandbox(context.home).env(), source="sandbox",
                                   environment="sandbox", platform="sandbox")
    return DrillContext(target, context.timeouts, platform_for(target, allow_changes=True),
                        context.home)


def _summary(activities: list[Activity]) -> tuple[bool, str, str]:
    ok = all(a.ok for a in activities)
    output = "; ".join(f"{a.name}: {'ok' if a.ok else a.error}" for a in activities)
    return ok, output, "" if ok else next(a.error for a in activities if not a.ok)


# -- faults ---------------------------------------------------------------------------------


@fault("dr-api-killed", "the API process killed with SIGKILL: a crash, no graceful shutdown")
class ApiKilled:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        pid = int(params["pid"])

        def body() -> tuple[bool, str, str]:
            if API_MODULE not in _cmdline(pid):
                return False, "", f"pid {pid} is not the API (already gone?)"
            os.kill(pid, signal.SIGKILL)
            return True, f"SIGKILL sent to the API (pid {pid})", ""

        return _act(context, "kill the API", ("kill", "-KILL", str(pid)), body)

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        return ensure_running(context, "api")


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

        return _act(context, "destroy the database",
                    ("runbook sandbox stop postgres && rm -rf", "PGDATA"), body)

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            started = ensure_running(context, "postgres")
            if not started.ok:
                return False, "", started.error
            restored, _ = restore_database(context, _load_backup(params))
            return _summary([started, restored])

        return _act(context, "recover the database from its backup",
                    ("runbook", "sandbox", "restore"), body)


#: The corruption: one transaction, as a bad deploy or a mistaken script would do it.
CORRUPTION_SQL: tuple[str, ...] = (
    'DELETE FROM "Release"',
    'UPDATE "Video" SET "title" = \'CORRUPTED \' || "title", "status" = \'FAILED\','
    ' "updatedAt" = now()',
)


@fault("dr-database-corrupted", "every release deleted and every video overwritten")
class DatabaseCorrupted:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        from runbook.probes.postgres import connect

        def body() -> tuple[bool, str, str]:
            counts = []
            with connect(context.target.require("DATABASE_URL"), context.timeouts,
                         read_only=False) as conn, conn.transaction():
                for statement in CORRUPTION_SQL:
                    counts.append(conn.execute(statement).rowcount)
            return True, f"{counts[0]} releases deleted, {counts[1]} videos overwritten", ""

        return _act(context, "corrupt the database", ("sql", *CORRUPTION_SQL), body)

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            ensured = ensure_running(context, "postgres")
            restored, _ = restore_database(context, _load_backup(params))
            steps = [ensured, restored]
            export = Path(str(params.get("export") or ""))
            if restored.ok and export.name and export.exists():
                steps.append(replay_export(context, export))
            return _summary(steps)

        return _act(context, "restore the database and replay the audit log",
                    ("runbook", "sandbox", "restore"), body)


@fault("dr-s3-objects-lost", "canary objects deleted and overwritten in S3")
class ObjectsLost:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            s3 = client(context.target, context.timeouts)
            bucket = str(params["bucket"])
            for key in params["deleted"]:
                s3.delete_object(Bucket=bucket, Key=key)
            for key in params["overwritten"]:
                s3.put_object(Bucket=bucket, Key=key, Body=b"overwritten by the DR drill\n",
                              ContentType="text/plain")
            if params.get("unversioned_bucket"):
                s3.delete_object(Bucket=params["unversioned_bucket"],
                                 Key=params["unversioned_key"])
            return True, (f"{len(params['deleted'])} deleted, {len(params['overwritten'])}"
                          " overwritten in the versioned bucket; 1 deleted in the unversioned"
                          " one"), ""

        return _act(context, "lose S3 objects", ("aws", "s3api", "delete-object / put-object"),
                    body)

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            s3 = client(context.target, context.timeouts)
            removed = remove_s3_canaries(s3, str(params["bucket"]), str(params["prefix"]))
            other = params.get("unversioned_bucket")
            if other:
                remove_bucket(s3, str(other))
            return True, f"{removed} canary versions removed; unversioned bucket gone", ""

        return _act(context, "remove the S3 canaries",
                    ("aws", "s3api", "delete-object --version-id ..."), body)


def remove_bucket(s3: object, bucket: str) -> None:
    """Delete a runbook canary bucket with everything in it (it must be one of ours)."""
    from botocore.exceptions import ClientError

    if not bucket.startswith("runbook-canary-"):
        raise ValueError(f"refused: {bucket!r} is not a runbook canary bucket")
    try:
        listing = s3.list_object_versions(Bucket=bucket)  # type: ignore[attr-defined]
    except ClientError:
        return  # already gone
    for entry in (*listing.get("Versions", []), *listing.get("DeleteMarkers", [])):
        version = entry.get("VersionId")
        if version and version != "null":
            s3.delete_object(Bucket=bucket, Key=entry["Key"],  # type: ignore[attr-defined]
                             VersionId=version)
        else:
            s3.delete_object(Bucket=bucket, Key=entry["Key"])  # type: ignore[attr-defined]
    with contextlib.suppress(ClientError):
        s3.delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]


@fault("dr-infrastructure-lost",
       "the whole sandbox destroyed: processes, database, S3 objects, state directory")
class InfrastructureLost:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        sandbox = Sandbox(context.home)

        def body() -> tuple[bool, str, str]:
            sandbox.destroy()
            return True, f"sandbox in {sandbox.layout.root} destroyed (backup storage kept)", ""

        return _act(context, "lose the infrastructure", ("runbook", "sandbox", "destroy"),
                    body)

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            copy = dr_storage.OffsiteCopy.load(Path(str(params["storage"])))
            steps = [provision(context, copy)]
            if not steps[0].ok:
                return _summary(steps)
            fresh = _context_now(context)
            steps.append(restore_database(fresh, copy.backup)[0])
            steps.append(restore_objects(fresh, copy)[0])
            steps.extend(redeploy(fresh))
            steps.append(backup_restored(fresh))
            return _summary(steps)

        return _act(context, "rebuild the infrastructure from backup storage",
                    ("runbook", "sandbox", "up && restore"), body)


__all__ = [
    "API_MODULE",
    "CORRUPTION_SQL",
    "backup_restored",
    "ensure_running",
    "provision",
    "redeploy",
    "remove_bucket",
    "replay_export",
    "restore_database",
    "restore_objects",
]
