"""Disaster Recovery drills: the runbook's data loss scenarios rehearsed on the sandbox, with
recovery time and data loss MEASURED against its Recovery Time Objectives table.

Every drill follows the game days' discipline (``runbook.drills.gameday``), each moment
recorded with its timestamps:

1. steady state: the end-to-end check (``runbook.probes.e2e.round_trip``: health, a login
   that writes, the user read back) is green, or nothing is done at all;
2. prepare: what recovery will need (the backup to restore, off-site copies) and the
   "before" figures; canaries written at known times (``runbook.drills.canaries``);
3. inject: the canary writer is stopped, the fault goes on the guard's ledger, then is
   injected; the RTO clock starts when the injection starts;
4. detect: the first failing check (end to end, or the integrity / object check for the
   silent disasters), recorded apart from the fault;
5. follow the runbook: the Disaster Recovery procedure's own steps, each a timed Activity;
6. recover: the first of N (default 3) consecutive green end-to-end checks (dated by its
   verdict, as ``record.watch_until`` does), polled every 50 ms: not when a process starts.
   ``recovery_resolution`` says how finely that moment was sampled: ``sampling_s`` from the
   last red verdict to the first green check's start, ``window_s`` to its verdict;
7. validate data integrity: per-table row counts and ordered checksums before against after
   (``dr_integrity``; rows written after the backup or the fault left out), S3 SHA-256 and
   version ids;
8. data loss: the canaries that survived, the exact number lost, the RPO (``canaries``);
9. restore (``finally``: pass, fail, timeout, Ctrl-C, SIGTERM): when the procedure did not
   finish, the fault's revert (the same procedure, idempotent) runs, and the guard runs it
   if this process dies; then the end-to-end check must be green again. Canaries removed.
   Interruptions arriving meanwhile, or after the first, wait until it and the record
   are done (``guard.Interruptions``).

The record (``on_record``, however the drill ends) carries the objective from the table:

================  ================  =============  ===========================================
drill             objective (row)   RTO / RPO      runbook section
================  ================  =============  ===========================================
api-crash         API crash         300 s / 0      Recovery Time Objectives
database-failure  Database failure  1800 / 3600 s  Data Loss Scenarios > Database Corruption
                                                   steps 1-2 (restore from latest backup)
database-         Database failure  1800 / 3600 s  Data Loss Scenarios > Database Corruption
corruption                                         steps 1-3 (with the audit-log replay)
s3-data-loss      (none: the table  1800 / 3600 s  Data Loss Scenarios > S3 Data Loss
                  has no S3 row;
                  judged by the
                  Database failure
                  row, noted)
complete-outage   Complete outage   14400 / 86400  Data Loss Scenarios > Complete
                                                   Infrastructure Loss
================  ================  =============  ===========================================

Where they run: every drill here is SANDBOX-ONLY and refuses any other target with
``SafetyGateError`` before touching anything (production first of all): each acts on what
only the sandbox lets the runbook reach: the API's real pid (a SIGKILL; Railway and
Kubernetes restart through their own APIs, which is the Service Down game day), the
database's data directory and backups (Railway's backups are not readable from its CLI),
the S3 bucket's versions with an extra unversioned bucket, and the whole state directory.

Backups: ``backup="latest"`` (the default) restores the newest backup the sandbox's schedule
took, so every canary of the drill post-dates it and the RPO is the schedule's own (fault
minus the backup's snapshot); ``backup="take"`` has the drill take one between
``canaries_before_backup`` canaries and ``canaries`` more, the writer paused meanwhile, so
exactly ``canaries`` are lost and the RPO is measured from the newest surviving canary.

The end-to-end check: by default the seeded canary user (``canary@legacyvideo.test``, the
sandbox's seed password), who is in every backup (seeded before the first one). A caller's
``steady`` check must log in as a user present in the backup the drill restores.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from runbook.config import Environment, Platform
from runbook.drills import dr_faults, dr_storage, faults
from runbook.drills.canaries import (
    Canary,
    CanaryLedger,
    CanaryReport,
    CanaryWriter,
    Write,
    api_video_writer,
    assess,
    audit_writer,
    foreign_canaries,
    new_drill_id,
    object_state,
    put_s3_canary,
    remove_canaries,
    remove_s3_canaries,
    s3_prefix,
    surviving_keys,
)
from runbook.drills.dr_integrity import Figures, compare, read_figures, row_key
from runbook.drills.dr_replay import NOT_REPLAYABLE, export_audit, replay, save_export
from runbook.drills.faults import DrillContext
from runbook.drills.gameday import SteadyStateRed
from runbook.drills.guard import Guard, interruptible
from runbook.drills.record import DrillRecord, DrillRun, Objective, PhaseListener
from runbook.errors import SafetyGateError, SandboxError
from runbook.platforms.base import record as record_activity
from runbook.probes import Verdict, e2e, run_probe
from runbook.probes import storage as s3_probe
from runbook.redact import Redactor
from runbook.results import Activity, ProbeResult, Timing, utcnow
from runbook.sandbox import Sandbox
from runbook.sandbox.backups import BackupInfo, latest_backup, take_backup

Check = Callable[[DrillContext], ProbeResult]
BackupChoice = Literal["latest", "take"]

#: The runbook's "Recovery Time Objectives" table (RUNBOOK.md, Disaster Recovery).
OBJECTIVES: Mapping[str, Objective] = {
    "API crash": Objective(rto_s=300.0, rpo_s=0.0),
    "Database failure": Objective(rto_s=1800.0, rpo_s=3600.0),
    "Complete outage": Objective(rto_s=14400.0, rpo_s=86400.0),
}
SECTION = "Disaster Recovery"
#: The seeded user the default end-to-end check logs in as.
SEEDED_CANARY = "canary@legacyvideo.test"


@dataclass(frozen=True)
class DrillOptions:
    """How a drill runs. Seconds throughout.

    ``consecutive`` green checks make a recovery, polled every ``interval_s``; ``canaries``
    are written before the fault (after the backup, with ``backup="take"``), one every
    ``canary_interval_s``; ``detect_within_s``, ``recover_within_s``, ``restore_within_s``
    bound the waits."""

    consecutive: int = 3
    interval_s: float = 0.05
    canaries: int = 5
    canaries_before_backup: int = 2
    canary_interval_s: float = 0.1
    backup: BackupChoice = "latest"
    detect_within_s: float = 30.0
    recover_within_s: float = 300.0
    restore_within_s: float = 180.0
    #: api-crash: how long the platform's own restart is waited for before the runbook's
    #: "Restart service" is taken.
    auto_restart_grace_s: float = 15.0


# -- the end-to-end check ---------------------------------------------------------------------


def _failed(context: DrillContext, component: str, check: str, problem: str) -> ProbeResult:
    return run_probe(component, check, context.target, context.timeouts,
                     lambda: Verdict(False, check, problem), expected=check)


def seeded_end_to_end(context: DrillContext) -> ProbeResult:
    """``e2e.round_trip`` as the seeded canary user with the sandbox's seed password (read
    afresh each time; see ``seeded_check`` for a drill)."""
    return seeded_check()(context)


def seeded_check() -> Check:
    """The end-to-end check as the seeded canary user, the seed password read once (while
    the sandbox's state exists) and kept in memory: during a complete outage the check then
    sees the service down, not a missing secrets file."""
    kept: list[SecretStr] = []

    def check(context: DrillContext) -> ProbeResult:
        if not kept:
            try:
                kept.append(SecretStr(Sandbox(context.home).secrets().user_password))
            except SandboxError as exc:
                return _failed(context, "api", "end to end", str(exc))
        return e2e.round_trip(context.target, context.timeouts, SEEDED_CANARY, kept[0])

    return check


# -- the drill's state ----------------------------------------------------------------------


@dataclass
class _State:
    """One drill run: what every phase reads and adds to."""

    spec: DisasterDrill
    context: DrillContext
    options: DrillOptions
    steady: Check
    drill: DrillRun
    drill_id: str = field(default_factory=new_drill_id)
    ledger: CanaryLedger | None = None
    writer: CanaryWriter | None = None
    params: dict[str, Any] = field(default_factory=dict)
    backup: BackupInfo | None = None
    before: Figures | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    #: Whether the sandbox was healthy at the end (else what recovery needs is kept).
    healthy_after: bool = True

    def __post_init__(self) -> None:
        self.ledger = CanaryLedger(self.drill_id)

    @property
    def sandbox(self) -> Sandbox:
        return Sandbox(self.context.home)

    @property
    def work(self) -> Path:
        """This drill's private directory (0700) under the backup storage."""
        path = dr_storage.storage_root(self.context.home) / self.drill_id
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        os.chmod(path, 0o700)
        return path

    def activity(self, name: str, command: tuple[str, ...],
                 body: Callable[[], tuple[bool, str, str]]) -> Activity:
        def guarded() -> tuple[bool, str, str]:
            try:
                return body()
            except Exception as exc:  # an Activity records the failure, the drill goes on
                return False, "", f"{type(exc).__name__}: {exc}"
        return record_activity(name, command, guarded,
                               Redactor(self.context.target.secret_values()))


Evidence = list[Mapping[str, Any]]


class _Plan:
    """A disaster's own parts; the engine runs them in the order of the module doc."""

    #: Whether the drill restores a backup (which may bring back earlier drills' canaries).
    restores = True

    def __init__(self, state: _State) -> None:
        self.s = state

    def prepare(self) -> tuple[bool, str, Evidence]:
        raise NotImplementedError

    def detect(self) -> ProbeResult:
        return self.s.steady(self.s.context)

    def remedy(self) -> list[Activity]:
        raise NotImplementedError

    def fallback(self) -> list[Activity]:
        """Further runbook steps when recovery did not come within the grace period."""
        return []

    def recovered(self) -> ProbeResult:
        return self.s.steady(self.s.context)

    def integrity(self) -> tuple[bool, str, Evidence]:
        raise NotImplementedError

    def canaries(self) -> CanaryReport | None:
        assert self.s.ledger is not None and self.s.drill.fault_at is not None
        alive = surviving_keys(self.s.context.target, self.s.context.timeouts,
                               self.s.drill_id)
        point = self.s.backup.taken_at if self.s.backup is not None else None
        return assess(self.s.drill_id, self.s.ledger.canaries, alive, self.s.drill.fault_at,
                      recovery_point=point, failures=self.s.ledger.failures)

    def cleanup(self) -> list[str]:
        """Remove the canaries (after a restore, every drill's: a backup may have brought
        old ones back) and the backup this drill took itself (it holds canaries)."""
        state = self.s
        removed = remove_canaries(state.context.target, state.context.timeouts,
                                  None if self.restores else state.drill_id)
        state.facts["canary_rows_removed"] = removed
        backup = state.backup
        if backup is not None and backup.reason == f"drill {state.drill_id}":
            backup.path.unlink(missing_ok=True)
            backup.metadata_path.unlink(missing_ok=True)
            state.facts["drill_backup_removed"] = backup.name
        return []

    # -- shared pieces --------------------------------------------------------------------

    def _writer(self, write: Write) -> CanaryWriter:
        assert self.s.ledger is not None
        self.s.writer = CanaryWriter(self.s.ledger, write, self.s.options.canary_interval_s)
        return self.s.writer

    def _write_exactly(self, writer: CanaryWriter, count: int, *, first: bool) -> None:
        if first:
            writer.start(limit=count)
        else:
            writer.resume(limit=count)
        timeout = 30.0 + count * (self.s.options.canary_interval_s + 5.0)
        if not writer.wait_idle(timeout):
            raise SandboxError(f"the canary writer did not write {count} canaries in"
                               f" {timeout:.0f} s")

    def _backup_with_canaries(self, write: Write,
                              between: Callable[[], None] | None = None) -> None:
        """Canaries around the backup the drill will restore (see ``backup=``)."""
        options, sandbox = self.s.options, self.s.sandbox
        writer = self._writer(write)
        if options.backup == "take":
            self._write_exactly(writer, options.canaries_before_backup, first=True)
            self.s.backup = take_backup(sandbox, reason=f"drill {self.s.drill_id}",
                                        timeouts=self.s.context.timeouts)
            if between is not None:
                between()
            self._write_exactly(writer, options.canaries, first=False)
        else:
            self.s.backup = latest_backup(sandbox)
            if self.s.backup is None:
                raise SandboxError("the sandbox has no backup to restore: take one (runbook"
                                   " sandbox backup) or run the drill with backup='take'")
            if between is not None:
                between()
            self._write_exactly(writer, options.canaries, first=True)
        damaged = self.s.backup.verify()
        if damaged:
            raise SandboxError(f"{damaged}: nothing to restore from, so nothing is injected")
        self.s.params["backup"] = str(self.s.backup.path)

    def _backup_evidence(self) -> Evidence:
        assert self.s.backup is not None and self.s.ledger is not None
        return [{"backup": self.s.backup.evidence(), "backup_choice": self.s.options.backup,
                 "canaries": [c.evidence() for c in self.s.ledger.canaries]}]

    def _db_integrity_against_backup(self) -> tuple[bool, str, Evidence]:
        backup = self.s.backup
        assert backup is not None
        after = read_figures(self.s.context.target.require("DATABASE_URL"),
                             self.s.context.timeouts, cutoff=backup.figures.cutoff)
        report = compare(backup.figures, after)
        detail = (f"{len(after.tables)} tables, {after.rows} rows up to the backup's snapshot"
                  " match its figures" if report.ok else report.problem())
        return report.ok, detail, [report.evidence()]


# -- api crash ----------------------------------------------------------------------------------


class _ApiCrash(_Plan):
    restores = False

    def prepare(self) -> tuple[bool, str, Evidence]:
        state = self.s
        self.s.before = read_figures(state.context.target.require("DATABASE_URL"),
                                     state.context.timeouts, row_level=True)
        api = state.sandbox.status().components["api"]
        if api.pid is None or not api.running:
            raise SandboxError("the API is not running; nothing to crash")
        state.params["pid"] = api.pid
        writer = self._writer(api_video_writer(state.context.target, state.context.timeouts,
                                               state.drill_id))
        writer.start()
        if not writer.wait_for(state.options.canaries, 30 + state.options.canaries * 5):
            raise SandboxError("the API did not acknowledge the canary writes")
        assert state.ledger is not None
        return True, (f"API pid {api.pid}; figures of {len(self.s.before.tables)} tables;"
                      f" canaries acknowledged by the API, writing until the fault"), [
            {"api_pid": api.pid, "figures": self.s.before.to_json()}]

    def remedy(self) -> list[Activity]:
        sandbox = self.s.sandbox

        def status() -> tuple[bool, str, str]:
            api = sandbox.status().components["api"]
            return True, (f"api {api.state}, restarts {api.restarts}, last exit"
                          f" {api.last_exit.describe() if api.last_exit else '-'}"), ""

        return [self.s.activity("1. check service status", ("runbook", "sandbox", "status"),
                                status)]

    def fallback(self) -> list[Activity]:
        return [self.s.context.platform.restart("api")]

    def integrity(self) -> tuple[bool, str, Evidence]:
        before = self.s.before
        assert before is not None
        after = read_figures(self.s.context.target.require("DATABASE_URL"),
                             self.s.context.timeouts, cutoff=before.cutoff, row_level=True)
        report = compare(before, after)
        detail = ("every table identical up to the fault's cutoff" if report.ok
                  else report.problem())
        return report.ok, detail, [report.evidence()]


# -- database failure ---------------------------------------------------------------------------


class _DatabaseFailure(_Plan):
    def prepare(self) -> tuple[bool, str, Evidence]:
        self._backup_with_canaries(audit_writer(self.s.context.target, self.s.context.timeouts,
                                                self.s.drill_id))
        assert self.s.backup is not None
        return True, (f"restoring {self.s.backup.name} (taken"
                      f" {self.s.backup.taken_at.isoformat()}); canaries written"), \
            self._backup_evidence()

    def remedy(self) -> list[Activity]:
        assert self.s.backup is not None
        started = dr_faults.ensure_running(self.s.context, "postgres")
        if not started.ok:
            return [started]
        restored, detail = dr_faults.restore_database(self.s.context, self.s.backup)
        if detail is not None:
            self.s.facts["restore"] = detail.evidence()

        def connections() -> tuple[bool, str, str]:
            return True, ("the API opens a connection per request and the worker none to the"
                          " database: no restart needed, the next request uses the restored"
                          " database"), ""

        return [started, restored,
                self.s.activity("API and worker connections", ("-",), connections)]

    def integrity(self) -> tuple[bool, str, Evidence]:
        return self._db_integrity_against_backup()


# -- database corruption ------------------------------------------------------------------------


class _DatabaseCorruption(_Plan):
    def prepare(self) -> tuple[bool, str, Evidence]:
        state = self.s
        target, timeouts = state.context.target, state.context.timeouts
        unaudited = api_video_writer(target, timeouts, state.drill_id)

        def unaudited_write() -> None:
            assert state.ledger is not None
            canary = state.ledger.add(unaudited(state.ledger.next_seq()))
            state.facts["unaudited_canary"] = canary.evidence()

        self._backup_with_canaries(audit_writer(target, timeouts, state.drill_id),
                                   between=unaudited_write)
        assert state.writer is not None
        state.writer.stop()
        state.before = read_figures(target.require("DATABASE_URL"), timeouts, row_level=True)
        state.params["export"] = str(state.work / "audit-export.json")
        return True, ("backup chosen; one unaudited write (a video through the API) and"
                      " audited canaries after it; figures read before the fault"), [
            *self._backup_evidence(), {"figures": state.before.to_json()}]

    def detect(self) -> ProbeResult:
        before = self.s.before
        assert before is not None
        target, timeouts = self.s.context.target, self.s.context.timeouts
        expected = "every table as it was before the fault"

        def body() -> Verdict:
            after = read_figures(target.require("DATABASE_URL"), timeouts,
                                 cutoff=before.cutoff)
            report = compare(before, after)
            return Verdict(report.matches, expected, report.problem(),
                           {"differing": [t.table for t in report.tables if not t.ok]},
                           advice="database")

        return run_probe("database", "data integrity", target, timeouts, body,
                         expected=expected)

    def remedy(self) -> list[Activity]:
        state = self.s
        backup = state.backup
        assert backup is not None
        target, timeouts = state.context.target, state.context.timeouts
        export_path = Path(state.params["export"])
        entries: list[Any] = []

        def export() -> tuple[bool, str, str]:
            found = export_audit(target.require("DATABASE_URL"), timeouts, backup.taken_at)
            save_export(export_path, found)
            entries[:] = found
            return True, (f"{len(found)} audit rows dated after the backup (minus a margin)"
                          " read from the damaged database before restoring"), ""

        steps = [state.activity("save the audit log written after the backup",
                                ("sql", 'SELECT * FROM "AuditLog" WHERE "createdAt" >= ...'),
                                export)]
        restored, detail = dr_faults.restore_database(state.context, backup)
        steps.append(restored)
        if detail is not None:
            state.facts["restore"] = detail.evidence()

        def manual() -> tuple[bool, str, str]:
            return True, f"not needed: the latest backup {backup.name} was available", ""

        steps.append(state.activity("2. if unavailable, restore from manual backup", ("-",),
                                    manual))
        if not restored.ok:
            return steps

        def replayed() -> tuple[bool, str, str]:
            report = replay(target.require("DATABASE_URL"), timeouts, entries)
            state.facts["replay"] = report.evidence()
            return True, report.summary(), ""

        steps.append(state.activity("3. replay recent transactions from the audit log",
                                    ("sql", 'INSERT INTO "AuditLog" ... ON CONFLICT DO'
                                     " NOTHING; re-apply each change"), replayed))
        return steps

    def integrity(self) -> tuple[bool, str, Evidence]:
        before = self.s.before
        assert before is not None
        after = read_figures(self.s.context.target.require("DATABASE_URL"),
                             self.s.context.timeouts, cutoff=before.cutoff, row_level=True)
        unaudited = self.s.facts.get("unaudited_canary", {}).get("key")
        expected = [row_key(unaudited)] if unaudited else []
        # Canaries of earlier drills the backup held come back: their deletion was not
        # audited either.
        resurrected = foreign_canaries(self.s.context.target, self.s.context.timeouts,
                                       self.s.drill_id)
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
            "replay": self.s.facts.get("replay"), "cannot_be_replayed": list(NOT_REPLAYABLE)}]

    def cleanup(self) -> list[str]:
        problems = super().cleanup()
        if self.s.healthy_after:
            dr_storage.remove_offsite(self.s.work)
        else:
            problems.append(f"the audit export in {self.s.work} is kept: the database was not"
                            " healthy after restoring")
        return problems


# -- S3 data loss -------------------------------------------------------------------------------


class _S3DataLoss(_Plan):
    restores = False

    def _s3(self) -> Any:
        return s3_probe.client(self.s.context.target, self.s.context.timeouts)

    def prepare(self) -> tuple[bool, str, Evidence]:
        state = self.s
        target, timeouts = state.context.target, state.context.timeouts
        bucket_check = s3_probe.bucket(target, timeouts, require_versioning=True)
        if not bucket_check.ok:
            raise SandboxError(f"S3 bucket not ready for the drill: {bucket_check.problem}")
        bucket = target.require("S3_BUCKET")
        s3 = self._s3()
        assert state.ledger is not None
        canaries = []
        for _ in range(max(2, state.options.canaries)):
            canaries.append(state.ledger.add(put_s3_canary(s3, bucket, state.drill_id,
                                                           state.ledger.next_seq())))
            time.sleep(state.options.canary_interval_s)
        other = f"runbook-canary-unversioned-{state.drill_id}"
        region = target.s3_region or "us-east-1"
        config = ({} if region == "us-east-1"
                  else {"CreateBucketConfiguration": {"LocationConstraint": region}})
        state.params.update(bucket=bucket, prefix=s3_prefix(state.drill_id))
        s3.create_bucket(Bucket=other, **config)
        state.params["unversioned_bucket"] = other
        unversioned = put_s3_canary(s3, other, state.drill_id, 0,
                                    prefix=s3_prefix(state.drill_id))
        state.facts["unversioned"] = {**unversioned.evidence(), "bucket": other,
                                      "versioning": s3.get_bucket_versioning(Bucket=other)
                                      .get("Status", "never enabled")}
        keys = [c.key for c in canaries]
        state.params.update(bucket=bucket, prefix=s3_prefix(state.drill_id),
                            deleted=keys[0::2], overwritten=keys[1::2],
                            unversioned_bucket=other, unversioned_key=unversioned.key)
        return True, (f"{len(canaries)} canary objects in {bucket} (versioning"
                      f" {bucket_check.observed.get('versioning')}), 1 in the unversioned"
                      f" bucket {other}"), [
            {"bucket": bucket_check.evidence(), "canaries": [c.evidence() for c in canaries],
             "unversioned": state.facts["unversioned"]}]

    def _objects(self) -> ProbeResult:
        state = self.s
        bucket = state.params["bucket"]
        assert state.ledger is not None
        canaries = state.ledger.canaries
        expected = f"{len(canaries)} canary objects intact (SHA-256 as written)"

        def body() -> Verdict:
            s3 = self._s3()
            states = {c.key: object_state(s3, bucket, c.key) for c in canaries}
            bad = [c.key for c in canaries if not states[c.key].intact(c)]
            return Verdict(not bad, expected, f"{len(bad)} canary objects missing or changed",
                           {"objects": [s.evidence() for s in states.values()]},
                           advice="s3-bucket")

        return run_probe("s3", "canary objects", state.context.target,
                         state.context.timeouts, body, expected=expected)

    def detect(self) -> ProbeResult:
        return self._objects()

    def recovered(self) -> ProbeResult:
        from runbook.probes import combine

        return combine("s3", "end to end and canary objects",
                       [self.s.steady(self.s.context), self._objects()])

    def remedy(self) -> list[Activity]:
        state = self.s
        s3 = self._s3()
        bucket, other = state.params["bucket"], state.params["unversioned_bucket"]
        assert state.ledger is not None
        canaries = state.ledger.canaries

        def backed_up() -> tuple[bool, str, str]:
            return True, ("no S3 backup copy exists for this bucket: only versioning can"
                          " bring objects back"), ""

        restored: list[dict[str, Any]] = []
        unrecoverable: list[tuple[str, str]] = []

        def versions() -> tuple[bool, str, str]:
            status = s3.get_bucket_versioning(Bucket=bucket).get("Status", "never enabled")
            for canary in canaries:
                restored.append(restore_version(s3, bucket, canary))
            other_status = s3.get_bucket_versioning(Bucket=other).get("Status",
                                                                       "never enabled")
            key = state.params["unversioned_key"]
            listing = s3.list_object_versions(Bucket=other, Prefix=key)
            if not [v for v in listing.get("Versions", []) if v["Key"] == key]:
                unrecoverable.append((other, key))
            state.facts["versions"] = restored
            state.facts["unrecoverable"] = [f"s3://{b}/{k}" for b, k in unrecoverable]
            done = sum(1 for r in restored if r.get("intact"))
            return True, (f"versioning {status} on {bucket}: {done} of {len(canaries)} objects"
                          f" back as written (previous versions); versioning {other_status}"
                          f" on {other}: {len(unrecoverable)} object(s) unrecoverable"), ""

        def notify() -> tuple[bool, str, str]:
            # A video's key is videos/<owner id>/<video id>/<file>: its owner is affected.
            owners = sorted({k.split("/")[1] for _, k in unrecoverable
                             if k.startswith("videos/") and k.count("/") >= 2})
            shown = ", ".join(f"s3://{b}/{k}" for b, k in unrecoverable) or "none"
            return True, (f"{len(unrecoverable)} unrecoverable object(s) to report: {shown};"
                          f" users to notify: {', '.join(owners) or 'none (runbook canaries'}"
                          f"{'' if owners else ' only)'}"), ""

        return [
            state.activity("1. videos are unrecoverable if not backed up", ("-",), backed_up),
            state.activity("2. check S3 versioning and restore previous versions",
                           ("aws", "s3api", "list-object-versions / delete-object --version-id"
                            " / copy-object"), versions),
            state.activity("3. notify affected users", ("-",), notify),
        ]

    def integrity(self) -> tuple[bool, str, Evidence]:
        found = self._objects()
        versions = self.s.facts.get("versions", [])
        return found.ok, (f"{len(versions)} objects: SHA-256 as written, version ids recorded"
                          if found.ok else found.problem), [
            {"objects": found.observed.get("objects"), "restorations": versions,
             "unrecoverable": self.s.facts.get("unrecoverable", []),
             "unversioned": self.s.facts.get("unversioned")}]

    def canaries(self) -> CanaryReport | None:
        state = self.s
        assert state.ledger is not None and state.drill.fault_at is not None
        s3, bucket = self._s3(), state.params["bucket"]
        alive = {c.key for c in state.ledger.canaries
                 if object_state(s3, bucket, c.key).intact(c)}
        return assess(state.drill_id, state.ledger.canaries, alive, state.drill.fault_at)

    def cleanup(self) -> list[str]:
        params = self.s.params
        if "bucket" not in params:
            return []
        s3 = self._s3()
        self.s.facts["canary_versions_removed"] = remove_s3_canaries(
            s3, params["bucket"], params["prefix"])
        if params.get("unversioned_bucket"):
            dr_faults.remove_bucket(s3, params["unversioned_bucket"])
        return []


def restore_version(s3: Any, bucket: str, canary: Canary) -> dict[str, Any]:
    """Bring ``canary``'s key back to the version it was written as: a delete marker on top
    is deleted (the original becomes current again, same version id); a newer version is
    covered by a copy of the original (``copy_object``: a new version, same bytes)."""
    listing = s3.list_object_versions(Bucket=bucket, Prefix=canary.key)
    versions = [v for v in listing.get("Versions", []) if v["Key"] == canary.key]
    markers = [m for m in listing.get("DeleteMarkers", []) if m["Key"] == canary.key]
    latest = next((v for v in (*versions, *markers) if v.get("IsLatest")), None)
    original = next((v for v in versions if v.get("VersionId") == canary.version_id), None)
    entry: dict[str, Any] = {"key": canary.key, "original_version_id": canary.version_id,
                             "sha256": canary.sha256,
                             "versions_seen": len(versions), "delete_markers": len(markers)}
    if original is None:
        entry["action"] = "none possible"
        return entry
    if latest is not None and latest in markers:
        s3.delete_object(Bucket=bucket, Key=canary.key, VersionId=latest["VersionId"])
        entry.update(action="delete marker removed", after_fault="deleted")
    elif latest is not None and latest.get("VersionId") != canary.version_id:
        s3.copy_object(Bucket=bucket, Key=canary.key, CopySource={
            "Bucket": bucket, "Key": canary.key, "VersionId": canary.version_id})
        entry.update(action="previous version copied over", after_fault="overwritten")
    else:
        entry.update(action="none needed", after_fault="intact")
    now = object_state(s3, bucket, canary.key)
    entry.update(restored_version_id=now.version_id, restored_sha256=now.sha256,
                 intact=now.intact(canary))
    return entry


# -- complete outage ----------------------------------------------------------------------------


class _CompleteOutage(_Plan):
    def prepare(self) -> tuple[bool, str, Evidence]:
        state = self.s
        target, timeouts = state.context.target, state.context.timeouts
        s3 = s3_probe.client(target, timeouts)
        bucket = target.require("S3_BUCKET")

        def offsite() -> None:
            assert state.ledger is not None and state.backup is not None
            objects = [state.ledger.add(put_s3_canary(s3, bucket, state.drill_id,
                                                      state.ledger.next_seq()))
                       for _ in range(2)]
            state.facts["s3_canaries"] = [o.evidence() for o in objects]
            copy = dr_storage.copy_offsite(state.sandbox, target, timeouts, state.backup,
                                           state.work)
            state.facts["offsite"] = copy
            state.params["storage"] = str(copy.directory)

        writer_target = audit_writer(target, timeouts, state.drill_id)
        if state.options.backup == "take":
            self._backup_with_canaries(writer_target, between=offsite)
        else:
            # The off-site copy is of the latest backup, made before the canaries after it.
            backup = latest_backup(state.sandbox)
            if backup is None:
                raise SandboxError("the sandbox has no backup to restore")
            state.backup = backup
            offsite()
            writer = self._writer(writer_target)
            self._write_exactly(writer, state.options.canaries, first=True)
            state.params["backup"] = str(backup.path)
        copy = state.facts["offsite"]
        return True, (f"off-site copies in {copy.directory}: backup {copy.backup.name},"
                      f" {len(copy.objects)} S3 objects, the secrets"), [
            *self._backup_evidence(), {"offsite": copy.evidence()}]

    def remedy(self) -> list[Activity]:
        state = self.s
        copy: dr_storage.OffsiteCopy = state.facts["offsite"]
        old_api = state.context.target.api_url
        steps = [dr_faults.provision(state.context, copy)]
        if not steps[0].ok:
            return steps
        fresh = dr_faults._context_now(state.context)
        restored, detail = dr_faults.restore_database(fresh, copy.backup)
        steps.append(restored)
        if detail is not None:
            state.facts["restore"] = detail.evidence()
        objects, done = dr_faults.restore_objects(fresh, copy)
        steps.append(objects)
        if done is not None:
            state.facts["objects_restore"] = done.evidence()
        steps.extend(dr_faults.redeploy(fresh))
        fresh = dr_faults._context_now(fresh)  # ADMIN_TOKEN was minted again
        steps.append(dr_faults.backup_restored(fresh))

        def dns() -> tuple[bool, str, str]:
            state.context = fresh
            return True, (f"target repointed: API_URL {old_api} -> {fresh.target.api_url}"
                          " (the sandbox's stand-in for the DNS change)"), ""

        steps.append(state.activity("4. update DNS to the new infrastructure",
                                    ("runbook", "sandbox", "env"), dns))
        return steps

    def integrity(self) -> tuple[bool, str, Evidence]:
        ok, detail, evidence = self._db_integrity_against_backup()
        copy: dr_storage.OffsiteCopy = self.s.facts["offsite"]
        objects = dr_storage.check_objects(self.s.context.target, self.s.context.timeouts,
                                           copy.objects)
        intact = sum(1 for o in objects if o["intact"])
        objects_ok = intact == len(objects)
        return ok and objects_ok, (f"{detail}; {intact} of {len(objects)} S3 objects intact"
                                   " (SHA-256 as copied; new version ids)"), [
            *evidence, {"objects": objects}]

    def canaries(self) -> CanaryReport | None:
        state = self.s
        assert state.ledger is not None and state.drill.fault_at is not None
        database = [c for c in state.ledger.canaries if c.kind != "s3"]
        alive = surviving_keys(state.context.target, state.context.timeouts, state.drill_id)
        return assess(state.drill_id, database, alive, state.drill.fault_at,
                      recovery_point=state.backup.taken_at if state.backup else None,
                      failures=state.ledger.failures)

    def cleanup(self) -> list[str]:
        problems = super().cleanup()
        s3 = s3_probe.client(self.s.context.target, self.s.context.timeouts)
        self.s.facts["canary_versions_removed"] = remove_s3_canaries(
            s3, self.s.context.target.require("S3_BUCKET"), s3_prefix(self.s.drill_id))
        if self.s.healthy_after:
            dr_storage.remove_offsite(self.s.work)
        else:
            problems.append(f"the off-site copies in {self.s.work} are kept: the sandbox was not"
                            " healthy after restoring")
        return problems


# -- the catalogue ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DisasterDrill:
    """One data loss scenario of the runbook, rehearsed; ``run`` does it."""

    name: str
    section: str
    scenario: str
    objective: Objective
    fault: str
    description: str
    sandbox_only: str
    plan: type[_Plan]
    recover_within_s: float = 300.0
    notes: tuple[str, ...] = ()

    def run(self, context: DrillContext, *, guard: Guard,
            on_record: Callable[[DrillRecord], None], steady: Check | None = None,
            objective: Objective | None = None, options: DrillOptions | None = None,
            on_phase: PhaseListener | None = None) -> DrillRecord:
        """Run this drill (see ``run``)."""
        return run(self, context, guard=guard, on_record=on_record, steady=steady,
                   objective=objective, options=options, on_phase=on_phase)


DRILLS: dict[str, DisasterDrill] = {d.name: d for d in (
    DisasterDrill(
        "api-crash", f"{SECTION} > Recovery Time Objectives", "API crash",
        OBJECTIVES["API crash"], "dr-api-killed",
        "the API's process killed with SIGKILL; the platform restarts it",
        "SIGKILL to the API's own pid needs the process on this machine (on Railway or"
        " Kubernetes, use the Service Down game day's restart)", _ApiCrash, 120.0),
    DisasterDrill(
        "database-failure", f"{SECTION} > Data Loss Scenarios > Database Corruption",
        "Database failure", OBJECTIVES["Database failure"], "dr-database-destroyed",
        "PostgreSQL stopped and its data directory deleted; restored from the latest backup",
        "it deletes the database's data directory and restores the sandbox's own backups;"
        " Railway's backups are not readable from its CLI", _DatabaseFailure, 300.0),
    DisasterDrill(
        "database-corruption", f"{SECTION} > Data Loss Scenarios > Database Corruption",
        "Database failure", OBJECTIVES["Database failure"], "dr-database-corrupted",
        "releases deleted and videos overwritten; restored from the latest backup, then the"
        " audit log replayed", "it rewrites the application's rows and restores the sandbox's"
        " own backups", _DatabaseCorruption, 300.0),
    DisasterDrill(
        "s3-data-loss", f"{SECTION} > Data Loss Scenarios > S3 Data Loss", "Database failure",
        OBJECTIVES["Database failure"], "dr-s3-objects-lost",
        "canary objects deleted and overwritten; restored from their previous versions; an"
        " object in an unversioned bucket shown unrecoverable",
        "it creates and deletes a bucket, which an application's S3 credentials should not be"
        " allowed to do", _S3DataLoss, 120.0,
        ("the runbook's RTO/RPO table has no S3 row: judged against the 'Database failure'"
         " row (the nearest data store); add an S3 row to the runbook",)),
    DisasterDrill(
        "complete-outage", f"{SECTION} > Data Loss Scenarios > Complete Infrastructure Loss",
        "Complete outage", OBJECTIVES["Complete outage"], "dr-infrastructure-lost",
        "the whole sandbox destroyed; provisioned again, database and objects restored from"
        " off-site copies, services redeployed, the target repointed",
        "it destroys and re-creates the whole deployment", _CompleteOutage, 600.0,
        ("the runbook's Complete Infrastructure Loss steps never mention S3 objects: the"
         " drill restores them from its own S3 backup copy; add that step to the runbook",)),
)}


# -- the engine ---------------------------------------------------------------------------------


def refuse_unless_sandbox(drill: DisasterDrill, context: DrillContext) -> None:
    """Raise ``SafetyGateError`` (nothing touched) unless ``context`` is the sandbox."""
    target = context.target
    if target.environment is Environment.PRODUCTION:
        raise SafetyGateError(f"refused: the {drill.name} drill never runs against production"
                              f" ({target.describe()})")
    if (target.environment is not Environment.SANDBOX or target.platform is not Platform.SANDBOX
            or context.platform.name != "sandbox"):
        raise SafetyGateError(f"refused: the {drill.name} drill is sandbox-only ("
                              f"{drill.sandbox_only}); nothing was done to {target.describe()}")


@dataclass(frozen=True)
class _Timeline:
    """Every check of a wait (start, verdict time, ok, problem), to say how finely the
    moment of change was sampled."""

    checks: tuple[tuple[datetime, datetime, bool, str], ...]

    def around(self, at: datetime | None) -> dict[str, float | None]:
        """``sampling_s``: from the last failing check's verdict to the start of the first
        green one (the polling gap); ``window_s``: to that green check's verdict (``at``,
        the recovery moment as ``watch_until`` dates it). ``None`` without a red check."""
        if at is None:
            return {"sampling_s": None, "window_s": None}
        red = [finished for _, finished, ok, _ in self.checks if not ok and finished < at]
        green = [started for started, finished, ok, _ in self.checks if ok and finished == at]
        if not red:
            return {"sampling_s": None, "window_s": None}
        return {"sampling_s": (green[0] - red[-1]).total_seconds() if green else None,
                "window_s": (at - red[-1]).total_seconds()}

    @property
    def last_problem(self) -> str:
        return next((p for *_, ok, p in reversed(self.checks) if not ok), "")


def _watch(check: Callable[[], ProbeResult], *, want_ok: bool, consecutive: int,
           timeout: float, interval: float) -> tuple[bool, datetime | None, _Timeline, list[str]]:
    """``record.watch_until`` that also keeps each check's start, verdict time and verdict."""
    from runbook.drills.record import watch_until

    seen: list[tuple[datetime, datetime, bool, str]] = []

    def timed() -> ProbeResult:
        result = check()
        seen.append((result.timing.started_at, result.timing.finished_at, result.ok,
                     result.problem))
        return result

    outcome = watch_until(timed, want_ok=want_ok, consecutive=consecutive, timeout=timeout,
                          interval=interval)
    return outcome.ok, outcome.at, _Timeline(tuple(seen)), list(outcome.observations)


class _Abandoned(Exception):
    """A phase before the fault failed: nothing more is done (the record says why)."""


def run(drill: DisasterDrill, context: DrillContext, *, guard: Guard,
        on_record: Callable[[DrillRecord], None], steady: Check | None = None,
        objective: Objective | None = None, options: DrillOptions | None = None,
        on_phase: PhaseListener | None = None) -> DrillRecord:
    """Run ``drill`` on ``context``'s sandbox and return its record.

    Measures detection, RTO (fault to the first of N consecutive green end-to-end checks),
    data integrity and RPO (canaries), against ``objective`` (default: the runbook's row).
    ``on_record`` receives the record however the drill ends; ``on_phase`` hears each
    phase's name as it starts. Raises ``SafetyGateError`` before anything is done off the
    sandbox; ``SteadyStateRed`` (after recording) when the sandbox is unhealthy to begin
    with; ``KeyboardInterrupt``/``DrillInterrupted`` after restoring.
    """
    refuse_unless_sandbox(drill, context)
    spec = faults.get(drill.fault, context.platform.name)
    chosen = options or DrillOptions(recover_within_s=drill.recover_within_s)
    goal = objective or drill.objective
    state = _State(drill, context, chosen, steady or seeded_check(),
                   DrillRun(drill.name, drill.section, context.target.describe(),
                            context.target.environment.value, goal, on_phase))
    plan = drill.plan(state)
    run_ = state.drill
    run_.evidence.update(scenario=drill.scenario, objective_source=(
        f"RUNBOOK.md > Disaster Recovery > Recovery Time Objectives: {drill.scenario}"),
        drill_id=state.drill_id, options={k: getattr(chosen, k) for k in (
            "consecutive", "interval_s", "canaries", "canaries_before_backup",
            "canary_interval_s", "backup")})
    run_.notes.extend(drill.notes)

    phase = run_.begin

    def healthy() -> ProbeResult:
        return state.steady(state.context)

    injected = struck = False
    with interruptible() as interruptions:
        try:
            started = phase("steady state")
            before = healthy()
            run_.phase("steady state", started, before.ok, before.problem or "green",
                       [before.evidence()])
            if not before.ok:
                raise SteadyStateRed(f"steady state red before the drill: {before.problem}")

            started = phase("prepare")
            try:
                ok, detail, evidence = plan.prepare()
            except Exception as exc:  # nothing is injected after a failed preparation
                problem = _one_line(exc)
                run_.phase("prepare", started, False, problem)
                raise _Abandoned(problem) from None
            run_.phase("prepare", started, ok, detail, evidence)

            if state.writer is not None:
                state.writer.stop()
            assert state.ledger is not None
            started = phase("inject")
            guard.record(drill.fault, state.params)
            injected = True
            activity = spec.inject(context, state.params)
            run_.fault_at = activity.timing.started_at
            run_.phase("inject", started, activity.ok, drill.description, [
                activity.evidence(), {"canaries_before_fault": len(state.ledger)}])
            if not activity.ok:
                raise _Abandoned(f"the fault was not injected: {activity.error}")

            started = phase("detect")
            seen, at, checks, _ = _watch(plan.detect, want_ok=False, consecutive=1,
                                         timeout=chosen.detect_within_s,
                                         interval=chosen.interval_s)
            run_.detected_at = at
            failing = checks.last_problem if seen else ""
            run_.phase("detect", started, seen, (f"detected: {failing}" if seen else
                                                 f"not detected within"
                                                 f" {chosen.detect_within_s:g} s"),
                       [{"checks": len(checks.checks), "poll_interval_s": chosen.interval_s}])

            started = phase("follow the runbook")
            try:
                steps = plan.remedy()
            except Exception as exc:  # the recovery below (and the restore) still run
                steps = [_broken("follow the runbook", exc, state)]
            run_.phase("follow the runbook", started, all(a.ok for a in steps),
                       "; ".join(a.name for a in steps), [a.evidence() for a in steps])

            started = phase("recover")
            deadline = time.monotonic() + chosen.recover_within_s
            grace = chosen.auto_restart_grace_s if type(plan).fallback is not _Plan.fallback \
                else chosen.recover_within_s
            ok, at, timeline, observations = _watch(
                plan.recovered, want_ok=True, consecutive=chosen.consecutive,
                timeout=min(grace, chosen.recover_within_s), interval=chosen.interval_s)
            extra: list[Activity] = []
            if not ok and time.monotonic() < deadline:
                extra = plan.fallback()
                if extra:
                    ok, at, timeline, observations = _watch(
                        plan.recovered, want_ok=True, consecutive=chosen.consecutive,
                        timeout=max(1.0, deadline - time.monotonic()),
                        interval=chosen.interval_s)
            run_.recovered_at = at
            resolution = timeline.around(at)
            run_.phase("recover", started, ok, (
                f"{chosen.consecutive} consecutive green end-to-end checks"
                + (f" after {', '.join(a.name for a in extra)}" if extra else "")
                if ok else "not recovered: " + "; ".join(observations)),
                [{"checks": len(timeline.checks), "poll_interval_s": chosen.interval_s,
                  **resolution}, *[a.evidence() for a in extra]])
            run_.evidence["recovery_resolution"] = resolution
            if ok:
                guard.strike(drill.fault)
                struck = True

                started = phase("validate data integrity")
                try:
                    ok, detail, evidence = plan.integrity()
                except Exception as exc:  # a check that cannot read fails, it does not crash
                    ok, detail, evidence = False, _one_line(exc), []
                run_.phase("validate data integrity", started, ok, detail, evidence)

                started = phase("data loss")
                try:
                    report = plan.canaries()
                except Exception as exc:
                    report = None
                    run_.phase("data loss", started, False, f"canaries not read:"
                               f" {_one_line(exc)}")
                if report is not None:
                    run_.rpo_s, run_.lost_canaries = report.rpo_s, report.lost_count
                    run_.evidence["canaries"] = report.evidence()
                    run_.phase("data loss", started, report.rpo_s is not None, (
                        f"{report.lost_count} of {report.before_fault} canaries lost;"
                        f" RPO {report.rpo_s if report.rpo_s is None else round(report.rpo_s, 3)}"
                        f" s ({report.basis})"), [report.evidence()])
            run_.completed = True
        except _Abandoned as exc:
            run_.notes.append(f"abandoned: {exc}")
            run_.completed = True
        except BaseException as exc:
            run_.ended_early(exc)
            raise
        finally:
            with interruptions.restoring():
                try:
                    _restore(state, plan, spec, guard, injected=injected, struck=struck)
                finally:
                    run_.held([signum.name for signum in interruptions.held])
                    final = run_.finish()
                    on_record(final)
    return final


def _restore(state: _State, plan: _Plan, spec: faults.FaultSpec, guard: Guard, *,
             injected: bool, struck: bool) -> None:
    """The phases every drill ends with: ``restore`` (when the fault went in: its revert
    unless the procedure already recovered, then the end-to-end check green) and
    ``clean up`` (the canaries)."""
    run_, drill, chosen = state.drill, state.spec, state.options
    if state.writer is not None:
        state.writer.stop()
    if injected:
        started = run_.begin("restore")
        reverted: list[Mapping[str, Any]] = []
        revert_ok = True
        if not struck:
            revert = spec.revert(state.context, state.params)
            revert_ok = revert.ok
            reverted.append(revert.evidence())
            if revert.ok:
                guard.strike(drill.fault)
                with contextlib.suppress(SandboxError, OSError):
                    state.context = dr_faults._context_now(state.context)
        after_ok, _, _, after_seen = _watch(lambda: state.steady(state.context), want_ok=True,
                                            consecutive=1, timeout=chosen.restore_within_s,
                                            interval=0.2)
        state.healthy_after = revert_ok and after_ok
        run_.phase("restore", started, revert_ok and after_ok,
                   ("healthy" if struck else "reverted and healthy") if after_ok
                   else "NOT healthy after restoring: " + "; ".join(after_seen), reverted)
    started = run_.begin("clean up")
    try:
        problems = plan.cleanup()
        run_.phase("clean up", started, not problems, "; ".join(problems) or
                   "canaries removed", [_jsonable(state.facts)])
    except Exception as exc:  # a cleanup failure is recorded, never hides the outcome
        run_.phase("clean up", started, False, f"{type(exc).__name__}: {exc}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _broken(name: str, exc: BaseException, state: _State) -> Activity:
    """A failed Activity standing for a step that raised."""
    now = utcnow()
    redact = Redactor(state.context.target.secret_values())
    return Activity(name=name, command=(), timing=Timing(now, now, 0.0), ok=False,
                    error=redact(_one_line(exc)))


def _jsonable(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The drill's facts for the record: objects turned into their evidence."""
    shown: dict[str, Any] = {}
    for name, value in facts.items():
        evidence = getattr(value, "evidence", None)
        shown[name] = evidence() if callable(evidence) else value
    return shown


def figures_table(records: Sequence[DrillRecord]) -> str:
    """The drills' figures as a Markdown table: RTO and RPO measured against target, the
    canaries lost, the verdict."""
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f} s"

    lines = ["| drill | RTO measured | RTO target | RPO measured | RPO target | canaries lost"
             " | verdict |", "|---|---|---|---|---|---|---|"]
    for item in records:
        lines.append(f"| {item.drill} | {seconds(item.rto_s)} |"
                     f" {seconds(item.objective.rto_s)} | {seconds(item.rpo_s)} |"
                     f" {seconds(item.objective.rpo_s)} |"
                     f" {'-' if item.lost_canaries is None else item.lost_canaries} |"
                     f" {item.verdict} |")
    return "\n".join(lines)


__all__ = [
    "DRILLS",
    "OBJECTIVES",
    "SEEDED_CANARY",
    "BackupChoice",
    "Check",
    "DisasterDrill",
    "DrillOptions",
    "figures_table",
    "refuse_unless_sandbox",
    "restore_version",
    "run",
    "seeded_end_to_end",
]
