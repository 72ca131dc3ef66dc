"""The Disaster Recovery section's procedures, as the drills' steps and the restoration
guard's reverts both run them: start a component, restore a backup into the application's
database, replay an audit export, provision a new sandbox from off-site copies, redeploy the
services, put objects back. Each is an ``Activity`` naming the call that really ran; each is
idempotent and leaves the sandbox healthy when it succeeds.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from runbook.drills import dr_storage
from runbook.drills.canaries import remove_canaries
from runbook.drills.dr_replay import load_export, replay
from runbook.drills.faults import DrillContext, Params
from runbook.errors import SandboxError
from runbook.platforms.base import library_call, record
from runbook.results import Activity
from runbook.sandbox import Sandbox
from runbook.sandbox.backups import BackupInfo, RestoreRecord, restore_backup, take_backup

#: How long a component may take to come back.
START_TIMEOUT_S = 60.0


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the socket listening on TCP ``port`` (read from
    ``/proc/net/tcp`` and ``/proc/PID/fd``, Linux): the process a crash drill kills must be
    the one that serves, not one the platform is already replacing."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as handle:
            for line in list(handle)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    if not inodes:
        return False
    fds = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    return False


def act(context: DrillContext, name: str, command: tuple[str, ...],
        body: Callable[[], tuple[bool, str, str]], *, runbook_says: str = "") -> Activity:
    """``record`` that turns an exception from ``body`` into a failed Activity."""
    def guarded() -> tuple[bool, str, str]:
        try:
            return body()
        except (SandboxError, OSError) as exc:
            return False, "", str(exc)
    return record(name, command, guarded, context.redactor(), runbook_says=runbook_says)


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

    return act(context, f"start {component}",
               library_call("runbook.sandbox.Sandbox.start", component), body)


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

    activity = act(context, "restore from the latest backup",
                   library_call("runbook.sandbox.backups.restore_backup", backup.path.name),
                   body, runbook_says="restore from latest Railway backup")
    return activity, (outcome[0] if outcome else None)


def replay_export(context: DrillContext, export: Path) -> Activity:
    """Replay a saved audit export into the sandbox's database (``dr_replay.replay``)."""
    def body() -> tuple[bool, str, str]:
        entries = load_export(export)
        report = replay(context.target.require("DATABASE_URL"), context.timeouts, entries)
        return True, report.summary(), ""

    return act(context, "replay recent transactions from the audit log",
               library_call("runbook.drills.dr_replay.replay", export.name), body,
               runbook_says="replay recent transactions from audit log")


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

    return act(context, "provision new infrastructure",
               library_call("runbook.sandbox.Sandbox.up"), body,
               runbook_says="provision new Railway project")


def redeploy(context: DrillContext) -> list[Activity]:
    """"Redeploy API and Worker": restart both, then mint ``ADMIN_TOKEN`` for the restored
    admin's token version."""
    sandbox = Sandbox(context.home)
    steps = []
    for service in ("api", "worker"):
        def body(service: str = service) -> tuple[bool, str, str]:
            after = sandbox.restart(service, timeout=START_TIMEOUT_S)
            return after.running, f"{service} running (pid {after.pid})", ""
        steps.append(act(context, f"redeploy {service}",
                         library_call("runbook.sandbox.Sandbox.restart", service), body,
                         runbook_says="redeploy API and Worker"))

    def token() -> tuple[bool, str, str]:
        sandbox.refresh_admin_token()
        return True, "ADMIN_TOKEN minted for the restored admin", ""

    steps.append(act(context, "mint ADMIN_TOKEN",
                     library_call("runbook.sandbox.Sandbox.refresh_admin_token"), token))
    return steps


def backup_restored(context: DrillContext) -> Activity:
    """The new infrastructure's first backup, of the restored data (the one its ``up`` took
    was of an empty, freshly seeded database: restoring that would lose everything)."""

    sandbox = Sandbox(context.home)

    def body() -> tuple[bool, str, str]:
        info = take_backup(sandbox, reason="after restore", timeouts=context.timeouts)
        return True, f"backup {info.name} of the restored database", ""

    return act(context, "back up the restored database",
               library_call("runbook.sandbox.backups.take_backup"), body)


def restore_objects(context: DrillContext, copy: dr_storage.OffsiteCopy
                    ) -> tuple[Activity, dr_storage.ObjectsRestore | None]:
    """Put the copied S3 objects back into the (new) bucket."""
    outcome: list[dr_storage.ObjectsRestore] = []

    def body() -> tuple[bool, str, str]:
        done = dr_storage.restore_objects(context.target, context.timeouts, copy)
        outcome.append(done)
        return done.ok, (f"{len(done.restored)} objects put back, {done.already_intact}"
                         " already intact"), "; ".join(done.problems)

    activity = act(context, "restore objects from the S3 backup copy",
                   library_call("runbook.drills.dr_storage.restore_objects", copy.bucket),
                   body)
    return activity, (outcome[0] if outcome else None)


def load_backup(params: Params) -> BackupInfo:
    return BackupInfo.load(Path(str(params["backup"])).with_suffix(".json"))


def summary(activities: list[Activity]) -> tuple[bool, str, str]:
    ok = all(a.ok for a in activities)
    output = "; ".join(f"{a.name}: {'ok' if a.ok else a.error}" for a in activities)
    return ok, output, "" if ok else next(a.error for a in activities if not a.ok)


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


def forget_drill(context: DrillContext, params: Params) -> Activity:
    """What a disaster's revert leaves behind otherwise, for a drill cut short: every canary
    row (a restored backup may bring back any drill's) and the drill's own backup (it holds
    canaries). Idempotent."""

    def body() -> tuple[bool, str, str]:
        removed = remove_canaries(context.target, context.timeouts, None)
        said = f"{removed} canary rows removed"
        path = Path(str(params.get("backup") or ""))
        if path.name and params.get("drill_id"):
            backup = load_backup(params) if path.with_suffix(".json").exists() else None
            if backup is not None and backup.reason == f"drill {params['drill_id']}":
                backup.path.unlink(missing_ok=True)
                backup.metadata_path.unlink(missing_ok=True)
                said += f"; the drill's backup {backup.name} removed"
        return True, said, ""

    return act(context, "remove the drill's canaries and its backup",
               library_call("runbook.drills.canaries.remove_canaries"), body)
