"""Disaster Recovery > Database Corruption, step 3: "Replay recent transactions from the audit
log", as far as LegacyVideo's ``"AuditLog"`` truthfully allows.

What the audit log records (``runbook/sandbox/services/api.py``; every row is written in the
SAME transaction as the change it describes, so a row is absent from a restored backup
exactly when its change is absent too):

=====================  =========================================  ==========================
action                 metadata                                   replayed as
=====================  =========================================  ==========================
USER_LOCKED/UNLOCKED   targetUserId, targetEmail                  ``locked`` set again
TOKENS_REVOKED         scope (all/user), userId, revoked          ``tokenVersion`` + 1 again
RELEASE_REQUESTED      releaseId, videoId (userId = requester)    the PENDING release row
                                                                  (``jobId`` = its id, as
                                                                  the API sets it); a
                                                                  PENDING_UPLOAD video
                                                                  becomes UPLOADED
RELEASE_PROCESSED      releaseId, service                         release COMPLETED
                                                                  (``processedAt`` = the
                                                                  row's time), video READY
LOGIN_SUCCESS/FAILURE  email, reason                              the audit row only (a
                                                                  login changes nothing)
anything else          (``runbook.canary`` ...)                   the audit row only
=====================  =========================================  ==========================

The changed rows get ``"updatedAt"`` = the audit row's ``"createdAt"``: both were the same
transaction's ``now()``.

What it cannot replay (``NOT_REPLAYABLE``): writes the API does not audit. The audit row
must also have survived the corruption: replay reads them from the damaged database BEFORE
the restore (``export_audit``), then re-inserts each one the restored database lacks (``ON
CONFLICT DO NOTHING``) and replays only those, oldest first, each in a savepoint: one that
cannot be applied (its video was never audited, so it is not there) is reported, not fatal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from runbook.probes.postgres import connect
from runbook.results import Record
from runbook.timeouts import Timeouts

#: Writes LegacyVideo makes without an audit row: a replay cannot bring them back.
NOT_REPLAYABLE: tuple[str, ...] = (
    '"Video" rows created by POST /api/videos/upload-url (no audit row is written)',
    "a release's FAILED status when Redis refused its job, and a jobId other than the"
    " release id (not audited)",
    '"User" rows created outside the API (Prisma Studio, seeds, the runbook\'s canaries),'
    " password resets and deletions (direct SQL, not audited)",
    "anything changed with SQL directly (migrations, Prisma Studio edits)",
    "state outside PostgreSQL: BullMQ jobs in Redis, objects in S3",
)
#: Audit rows this long before the backup's snapshot are exported too (a transaction that
#: began before the snapshot but committed after it dates its row before the snapshot).
EXPORT_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class AuditEntry:
    """One ``"AuditLog"`` row as exported from the damaged database."""

    id: str
    user_id: str | None
    action: str
    ip: str | None
    metadata: Mapping[str, Any] | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "userId": self.user_id, "action": self.action, "ip": self.ip,
                "metadata": self.metadata, "createdAt": self.created_at.isoformat()}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AuditEntry:
        return cls(str(raw["id"]), raw.get("userId"), str(raw["action"]), raw.get("ip"),
                   raw.get("metadata"), datetime.fromisoformat(str(raw["createdAt"])))


def export_audit(dsn: str, timeouts: Timeouts, since: datetime) -> tuple[AuditEntry, ...]:
    """The audit rows dated after ``since`` minus ``EXPORT_MARGIN``, oldest first, read-only
    from the (damaged) database. Raises ``psycopg.Error`` when it cannot be read."""
    with connect(dsn, timeouts) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        rows = conn.execute(
            'SELECT "id", "userId", "action", "ip", "metadata",'
            ' "createdAt" AT TIME ZONE \'UTC\' FROM "AuditLog"'
            ' WHERE "createdAt" >= (%s::timestamptz AT TIME ZONE \'UTC\')'
            ' ORDER BY "createdAt", "id"', (since - EXPORT_MARGIN,)).fetchall()
    return tuple(AuditEntry(str(r[0]), r[1], str(r[2]), r[3], r[4], r[5]) for r in rows)


def save_export(path: Path, entries: Sequence[AuditEntry]) -> None:
    """Keep the export in a 0600 file (audit rows hold e-mails and IPs: data, not for
    reports), so a restoration after a crash can replay it too."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump([e.to_json() for e in entries], handle)


def load_export(path: Path) -> tuple[AuditEntry, ...]:
    """Read ``save_export``'s file; empty when it does not exist."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ()
    return tuple(AuditEntry.from_json(entry) for entry in raw)


@dataclass(frozen=True)
class ReplayReport(Record):
    """What a replay did: audit rows exported, re-inserted, already present; changes
    replayed per action; rows restored as audit rows only (``audit_row_only``); failures
    with the reason (``failed``: id, action, reason); what ``cannot_be_replayed``."""

    exported: int
    reinserted: int
    already_present: int
    replayed: Mapping[str, int]
    audit_only: Mapping[str, int] = field(repr=False)
    failed: tuple[tuple[str, str, str], ...] = ()
    not_replayable: tuple[str, ...] = field(default=NOT_REPLAYABLE, repr=False)
    notes: tuple[str, ...] = field(default=())
    evidence_properties = ("audit_row_only", "cannot_be_replayed")

    @property
    def audit_row_only(self) -> Mapping[str, int]:
        return self.audit_only

    @property
    def cannot_be_replayed(self) -> tuple[str, ...]:
        return self.not_replayable

    def summary(self) -> str:
        replayed = ", ".join(f"{n} {a}" for a, n in sorted(self.replayed.items())) or "none"
        return (f"{self.exported} audit rows after the backup read from the damaged database;"
                f" {self.reinserted} re-inserted ({self.already_present} were in the backup);"
                f" changes replayed: {replayed}; {len(self.failed)} could not be applied")


Apply = Callable[[psycopg.Connection[Any], AuditEntry], str]


def _meta(entry: AuditEntry, name: str) -> str:
    value = (entry.metadata or {}).get(name)
    if not value:
        raise LookupError(f"metadata has no {name}")
    return str(value)


def _must(count: int, what: str) -> None:
    if count == 0:
        raise LookupError(f"{what} is not in the restored database")


def _lock(locked: bool) -> Apply:
    def apply(conn: psycopg.Connection[Any], entry: AuditEntry) -> str:
        user = _meta(entry, "targetUserId")
        _must(conn.execute('UPDATE "User" SET "locked" = %s, "updatedAt" = %s WHERE "id" = %s',
                           (locked, entry.created_at, user)).rowcount, f"user {user}")
        return f"user {user} locked={locked}"
    return apply


def _revoke(conn: psycopg.Connection[Any], entry: AuditEntry) -> str:
    if (entry.metadata or {}).get("scope") == "user":
        user = _meta(entry, "userId")
        _must(conn.execute('UPDATE "User" SET "tokenVersion" = "tokenVersion" + 1,'
                           ' "updatedAt" = %s WHERE "id" = %s',
                           (entry.created_at, user)).rowcount, f"user {user}")
        return f"tokens of {user} revoked"
    count = conn.execute('UPDATE "User" SET "tokenVersion" = "tokenVersion" + 1,'
                         ' "updatedAt" = %s', (entry.created_at,)).rowcount
    return f"tokens of {count} users revoked"


def _requested(conn: psycopg.Connection[Any], entry: AuditEntry) -> str:
    release, video = _meta(entry, "releaseId"), _meta(entry, "videoId")
    if entry.user_id is None:
        raise LookupError("the requester (userId) is not recorded")
    found = conn.execute('SELECT 1 FROM "Video" WHERE "id" = %s', (video,)).fetchone()
    if found is None:
        raise LookupError(f"video {video} is not in the restored database (created after the"
                          " backup: upload URLs are not audited)")
    conn.execute('UPDATE "Video" SET "status" = \'UPLOADED\', "updatedAt" = %s'
                 ' WHERE "id" = %s AND "status" = \'PENDING_UPLOAD\'', (entry.created_at, video))
    conn.execute('INSERT INTO "Release" ("id", "videoId", "requestedById", "status", "jobId",'
                 ' "createdAt", "updatedAt") VALUES (%s, %s, %s, \'PENDING\', %s, %s, %s)'
                 ' ON CONFLICT ("id") DO NOTHING',
                 (release, video, entry.user_id, release, entry.created_at, entry.created_at))
    return f"release {release} PENDING again"


def _processed(conn: psycopg.Connection[Any], entry: AuditEntry) -> str:
    release = _meta(entry, "releaseId")
    row = conn.execute('UPDATE "Release" SET "status" = \'COMPLETED\', "processedAt" ='
                       ' COALESCE("processedAt", %s), "updatedAt" = %s WHERE "id" = %s'
                       ' RETURNING "videoId"', (entry.created_at, entry.created_at, release)
                       ).fetchone()
    if row is None:
        raise LookupError(f"release {release} is not in the restored database")
    conn.execute('UPDATE "Video" SET "status" = \'READY\', "updatedAt" = %s WHERE "id" = %s',
                 (entry.created_at, row[0]))
    return f"release {release} COMPLETED"


#: The actions whose change a replay re-applies.
REPLAYERS: dict[str, Apply] = {
    "USER_LOCKED": _lock(True),
    "USER_UNLOCKED": _lock(False),
    "TOKENS_REVOKED": _revoke,
    "RELEASE_REQUESTED": _requested,
    "RELEASE_PROCESSED": _processed,
}

_INSERT = ('INSERT INTO "AuditLog" ("id", "userId", "action", "ip", "metadata", "createdAt")'
           " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (\"id\") DO NOTHING RETURNING \"id\"")


def replay(dsn: str, timeouts: Timeouts, entries: Sequence[AuditEntry]) -> ReplayReport:
    """Re-insert the audit rows the restored database lacks and re-apply their changes,
    oldest first, in one transaction (a savepoint per row). Raises ``psycopg.Error`` when
    the database cannot be reached; per-row failures are reported instead."""
    reinserted = present = 0
    replayed: dict[str, int] = {}
    audit_only: dict[str, int] = {}
    failed: list[tuple[str, str, str]] = []
    with connect(dsn, timeouts, read_only=False) as conn, conn.transaction():
        conn.execute("SET LOCAL TIME ZONE 'UTC'")
        for entry in sorted(entries, key=lambda e: (e.created_at, e.id)):
            metadata = Jsonb(entry.metadata) if entry.metadata is not None else None
            user = entry.user_id
            if user is not None and conn.execute('SELECT 1 FROM "User" WHERE "id" = %s',
                                                 (user,)).fetchone() is None:
                user = None  # ON DELETE SET NULL: the API's own rule for a missing user
            inserted = conn.execute(_INSERT, (entry.id, user, entry.action, entry.ip,
                                              metadata, entry.created_at)).fetchone()
            if inserted is None:
                present += 1
                continue
            reinserted += 1
            apply = REPLAYERS.get(entry.action)
            if apply is None:
                audit_only[entry.action] = audit_only.get(entry.action, 0) + 1
                continue
            try:
                with conn.transaction():
                    apply(conn, entry)
                replayed[entry.action] = replayed.get(entry.action, 0) + 1
            except (LookupError, psycopg.errors.IntegrityError) as exc:
                failed.append((entry.id, entry.action, str(exc).splitlines()[0]))
    return ReplayReport(len(entries), reinserted, present, replayed, audit_only, tuple(failed))


__all__ = [
    "EXPORT_MARGIN",
    "NOT_REPLAYABLE",
    "REPLAYERS",
    "AuditEntry",
    "ReplayReport",
    "export_audit",
    "load_export",
    "replay",
    "save_export",
]
