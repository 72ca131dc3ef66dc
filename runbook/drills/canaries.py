"""Canaries: records written at known times before a fault, so that what a recovery lost is
counted, not guessed, and the recovery point objective is measured.

A canary is committed, then its client-side commit time is recorded (after the commit
returned: the time the writer was told the data was safe). Kinds:

* ``audit``: an ``"AuditLog"`` row, action ``runbook.canary``, metadata ``{"seq", "drill"}``,
  written straight to ``DATABASE_URL`` (what the database holds, whoever wrote it);
* ``api-video``: a ``"Video"`` row written THROUGH the API (``POST /api/videos/upload-url``,
  title ``runbook-canary <drill> <seq>``; acknowledged by its 200): what the application
  acknowledged to a user. The API does not audit it, which the database-corruption drill
  uses to show what an audit-log replay cannot bring back;
* ``s3``: an object under ``runbook-canary/dr-<drill>/`` with its SHA-256 and version id.

``CanaryWriter`` writes one every ``interval_s`` in a background thread, can be paused (a
backup in between) and is stopped at the fault. After the recovery ``assess`` compares
what survived with what was written:

* lost: canaries committed before the fault and absent (or changed) after the recovery;
* RPO: fault time minus the commit time of the last canary before the first lost one (for
  the usual suffix loss: the newest surviving canary); 0 when none was lost. When no canary
  before the first lost one survived, the canaries cannot date the recovery point and the
  RPO is UNMEASURED (``None``: the drill fails), never a bound judged as exact. A restored
  backup's snapshot time is shown beside the figure, not used for it.

Every canary is removed afterwards (``remove_canaries``, ``remove_s3_canaries``): they are
the runbook's own rows and objects, never the application's.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from runbook.clients import http_client
from runbook.config import Target
from runbook.errors import SandboxError
from runbook.probes import describe_error
from runbook.probes.postgres import connect
from runbook.probes.storage import S3Client, error_code, remove_all_versions
from runbook.results import Record, utcnow
from runbook.timeouts import Timeouts
from runbook.wait import wait_until

#: The ``"AuditLog".action`` of an audit canary.
CANARY_ACTION = "runbook.canary"
#: Titles of API canaries start with this (then the drill id and the sequence number).
CANARY_TITLE = "runbook-canary"
#: S3 canaries live under ``runbook-canary/dr-<drill id>/``.
S3_CANARY_PREFIX = "runbook-canary/dr-"
KINDS: tuple[str, ...] = ("audit", "api-video", "s3")


def new_drill_id() -> str:
    """A short unique id that marks one drill's canaries."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Canary(Record):
    """One canary: ``key`` is the row id or object key; ``committed_at`` the client-side
    time right after its commit (or acknowledgement) returned."""

    seq: int
    kind: str
    key: str
    committed_at: datetime
    sha256: str = ""
    version_id: str = ""


class CanaryLedger:
    """Every canary written for one drill, in commit order (thread-safe)."""

    def __init__(self, drill_id: str) -> None:
        self.drill_id = drill_id
        self._lock = threading.Lock()
        self._canaries: list[Canary] = []
        self._seq = 0
        #: Writes that failed (not canaries: nothing was acknowledged).
        self.failures: list[str] = []

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def add(self, canary: Canary) -> Canary:
        with self._lock:
            self._canaries.append(canary)
        return canary

    def failed(self, problem: str) -> None:
        with self._lock:
            if problem not in self.failures:
                self.failures.append(problem)

    @property
    def canaries(self) -> tuple[Canary, ...]:
        with self._lock:
            return tuple(self._canaries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._canaries)


Write = Callable[[int], Canary]


class CanaryWriter:
    """Writes a canary with ``write(seq)`` every ``interval_s`` in a daemon thread.

    ``pause`` and ``stop`` return once the write in flight (if any) has finished, so no
    canary is half-written at a fault or a backup. ``resume(limit=n)`` writes exactly ``n``
    more and then idles (a drill that must lose exactly ``n``)."""

    def __init__(self, ledger: CanaryLedger, write: Write, interval_s: float = 0.1) -> None:
        self.ledger, self.write, self.interval_s = ledger, write, interval_s
        self._cond = threading.Condition()
        self._running = False
        self._stopped = False
        self._busy = False
        self._limit: int | None = None
        self._thread = threading.Thread(target=self._loop, name="runbook-canaries", daemon=True)

    def start(self, limit: int | None = None) -> CanaryWriter:
        with self._cond:
            self._running, self._limit = True, limit
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._running or self._limit == 0):
                    self._cond.wait()
                if self._stopped:
                    return
                self._busy = True
                if self._limit is not None:
                    self._limit -= 1
            try:
                self.ledger.add(self.write(self.ledger.next_seq()))
            except Exception as exc:  # a failed write is recorded, never a canary
                self.ledger.failed(describe_error(exc))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            with self._cond:
                self._cond.wait_for(lambda: self._stopped, timeout=self.interval_s)

    def _quiesce(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout=timeout)

    def pause(self, timeout: float = 30.0) -> bool:
        """Stop writing; returns once no write is in flight (False after ``timeout``)."""
        with self._cond:
            self._running = False
            self._cond.notify_all()
        return self._quiesce(timeout)

    def resume(self, limit: int | None = None) -> None:
        """Write again: ``limit`` more canaries, or until paused or stopped."""
        with self._cond:
            self._running, self._limit = True, limit
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until the ledger holds ``count`` canaries; False after ``timeout``."""
        return wait_until(lambda: len(self.ledger), timeout=timeout,
                          interval=min(0.02, self.interval_s), accept=lambda n: n >= count,
                          errors=()).ok

    def wait_idle(self, timeout: float) -> bool:
        """Wait until a ``resume(limit=n)`` has written its ``n`` (or failed trying)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            return self._cond.wait_for(
                lambda: self._stopped or (self._limit == 0 and not self._busy),
                timeout=max(0.0, deadline - time.monotonic()))

    def write_exactly(self, count: int, *, first: bool) -> None:
        """Write ``count`` canaries (``first``: start the writer, else resume it) and return
        once they are written; ``SandboxError`` when they are not within a bound."""
        if first:
            self.start(limit=count)
        else:
            self.resume(limit=count)
        timeout = 30.0 + count * (self.interval_s + 5.0)
        if not self.wait_idle(timeout):
            raise SandboxError(f"the canary writer did not write {count} canaries in"
                               f" {timeout:.0f} s")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop for good; returns once the thread has ended (False after ``timeout``)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        close = getattr(self.write, "close", None)
        if callable(close) and not self._thread.is_alive():
            close()
        return not self._thread.is_alive()


# -- writers ------------------------------------------------------------------------------

_INSERT_AUDIT = ('INSERT INTO "AuditLog" ("id", "userId", "action", "ip", "metadata")'
                 " VALUES (%s, NULL, %s, NULL, %s)")


class AuditWriter:
    """``write(seq)`` committing one audit canary row (autocommit: the INSERT returning is
    the commit) over one connection, reconnecting after a lost one; ``close`` ends it.
    Raises ``psycopg.Error`` for a failed write."""

    def __init__(self, target: Target, timeouts: Timeouts, drill_id: str) -> None:
        self.dsn = target.require("DATABASE_URL")
        self.timeouts, self.drill_id = timeouts, drill_id
        self.conn: psycopg.Connection[Any] | None = None

    def __call__(self, seq: int) -> Canary:
        conn = self.conn
        if conn is None or conn.closed or conn.broken:
            conn = self.conn = connect(self.dsn, self.timeouts, read_only=False)
        key = str(uuid.uuid4())
        try:
            conn.execute(_INSERT_AUDIT, (key, CANARY_ACTION,
                                         Jsonb({"seq": seq, "drill": self.drill_id})))
        except psycopg.Error:
            self.close()
            raise
        return Canary(seq, "audit", key, utcnow())

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = None


def audit_writer(target: Target, timeouts: Timeouts, drill_id: str) -> AuditWriter:
    """An ``AuditWriter`` for ``target``'s database (``ConfigError`` without one)."""
    return AuditWriter(target, timeouts, drill_id)


def api_video_writer(target: Target, timeouts: Timeouts, drill_id: str) -> Write:
    """A ``write(seq)`` that asks the API for an upload URL (which commits a ``"Video"`` row)
    with ``ADMIN_TOKEN``; the canary counts once the API answered 200. Raises
    ``RuntimeError`` for any other answer, ``ConfigError`` without ``ADMIN_TOKEN``."""
    api = target.require("API_URL")
    token = target.require("ADMIN_TOKEN")

    def write(seq: int) -> Canary:
        with http_client(timeouts) as client:
            answer = client.post(f"{api}/api/videos/upload-url", headers={
                "Authorization": f"Bearer {token}"}, json={
                "filename": f"canary-{seq}.mp4", "contentType": "video/mp4",
                "title": f"{CANARY_TITLE} {drill_id} {seq}"})
        if answer.status_code != 200:
            raise RuntimeError(f"upload-url answered HTTP {answer.status_code}")
        return Canary(seq, "api-video", str(answer.json()["videoId"]), utcnow())

    return write


def surviving_keys(target: Target, timeouts: Timeouts, drill_id: str) -> set[str]:
    """The keys of this drill's audit and API canaries present in the database now
    (read-only). Raises ``psycopg.Error`` when the database does not answer."""
    with connect(target.require("DATABASE_URL"), timeouts) as conn:
        audit = conn.execute(
            'SELECT "id" FROM "AuditLog" WHERE "action" = %s AND "metadata"->>\'drill\' = %s',
            (CANARY_ACTION, drill_id)).fetchall()
        videos = conn.execute('SELECT "id" FROM "Video" WHERE "title" LIKE %s',
                              (f"{CANARY_TITLE} {drill_id} %",)).fetchall()
    return {str(row[0]) for row in (*audit, *videos)}


def remove_canaries(target: Target, timeouts: Timeouts, drill_id: str | None) -> int:
    """Delete this drill's audit and API canaries (``None``: every drill's, e.g. those a
    restored backup brought back); returns how many rows went."""
    pattern = f"{CANARY_TITLE} {drill_id} %" if drill_id else f"{CANARY_TITLE} %"
    with connect(target.require("DATABASE_URL"), timeouts, read_only=False) as conn, \
            conn.transaction():
        audit = conn.execute(
            'DELETE FROM "AuditLog" WHERE "action" = %s'
            ' AND (%s::text IS NULL OR "metadata"->>\'drill\' = %s::text)',
            (CANARY_ACTION, drill_id, drill_id)).rowcount
        videos = conn.execute('DELETE FROM "Video" WHERE "title" LIKE %s',
                              (pattern,)).rowcount
    return int(audit) + int(videos)


def foreign_canaries(target: Target, timeouts: Timeouts, drill_id: str) -> dict[str, set[str]]:
    """Canary rows of OTHER drills in the database now, by table (``public.AuditLog``,
    ``public.Video``): a restored backup brings back canaries whose deletion no audit row
    recorded. Read-only."""
    with connect(target.require("DATABASE_URL"), timeouts) as conn:
        audit = conn.execute(
            'SELECT "id" FROM "AuditLog" WHERE "action" = %s'
            ' AND "metadata"->>\'drill\' IS DISTINCT FROM %s', (CANARY_ACTION, drill_id)
        ).fetchall()
        videos = conn.execute(
            'SELECT "id" FROM "Video" WHERE "title" LIKE %s AND "title" NOT LIKE %s',
            (f"{CANARY_TITLE} %", f"{CANARY_TITLE} {drill_id} %")).fetchall()
    return {"public.AuditLog": {str(r[0]) for r in audit},
            "public.Video": {str(r[0]) for r in videos}}


# -- S3 -----------------------------------------------------------------------------------


def s3_prefix(drill_id: str) -> str:
    return f"{S3_CANARY_PREFIX}{drill_id}/"


def put_s3_canary(s3: S3Client, bucket: str, drill_id: str, seq: int, *,
                  prefix: str | None = None) -> Canary:
    """Put one canary object and record its SHA-256 and version id (``""`` in an
    unversioned bucket). Raises botocore errors."""
    key = f"{prefix or s3_prefix(drill_id)}object-{seq:03d}"
    payload = f"legacyvideo-runbook DR canary {drill_id} {seq} {uuid.uuid4().hex}\n".encode()
    answer = s3.put_object(Bucket=bucket, Key=key, Body=payload, ContentType="text/plain")
    version = answer.get("VersionId") or ""
    return Canary(seq, "s3", key, utcnow(), hashlib.sha256(payload).hexdigest(),
                  "" if version == "null" else version)


@dataclass(frozen=True)
class ObjectState(Record):
    """What a bucket holds for a canary's key now."""

    key: str
    present: bool
    sha256: str = ""
    version_id: str = ""

    def intact(self, canary: Canary) -> bool:
        return self.present and self.sha256 == canary.sha256


def object_state(s3: S3Client, bucket: str, key: str) -> ObjectState:
    """Read the current version of ``key`` (absent, or its SHA-256 and version id)."""
    from botocore.exceptions import ClientError


    try:
        got = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code, status = error_code(exc)
        if status == 404 or code in ("NoSuchKey", "404"):
            return ObjectState(key, False)
        raise
    body = got["Body"].read()
    version = got.get("VersionId") or ""
    return ObjectState(key, True, hashlib.sha256(body).hexdigest(),
                       "" if version == "null" else version)


def remove_s3_canaries(s3: S3Client, bucket: str, prefix: str) -> int:
    """Delete every version and delete marker under ``prefix`` (must be a canary prefix)."""
    if not prefix.startswith(S3_CANARY_PREFIX):
        raise ValueError(f"refused: {prefix!r} is not a canary prefix")
    listing = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    keys = {e["Key"] for e in (*listing.get("Versions", []),
                                *listing.get("DeleteMarkers", []))}
    return sum(remove_all_versions(s3, bucket, key) for key in sorted(keys))


# -- assessment ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryReport(Record):
    """What survived a disaster, and the recovery point objective it measures. Its evidence
    names the figures as drill records have always shown them (``committed_before_fault``,
    ``lost_count``, the first 50 ``lost_canaries``, ``rpo_basis``, ``failed_writes``)."""

    drill_id: str
    fault_at: datetime
    written: int
    before_fault: int = field(repr=False)
    survived: int
    lost: tuple[Canary, ...] = field(repr=False)
    rpo_s: float | None
    basis: str = field(repr=False)
    newest_surviving_at: datetime | None
    recovery_point: datetime | None
    failures: tuple[str, ...] = field(default=(), repr=False)
    evidence_properties = ("committed_before_fault", "lost_count", "lost_canaries",
                           "rpo_basis", "failed_writes")

    @property
    def lost_count(self) -> int:
        return len(self.lost)

    @property
    def committed_before_fault(self) -> int:
        return self.before_fault

    @property
    def lost_canaries(self) -> tuple[Canary, ...]:
        """The first 50 canaries lost."""
        return self.lost[:50]

    @property
    def rpo_basis(self) -> str:
        return self.basis

    @property
    def failed_writes(self) -> tuple[str, ...]:
        return self.failures


def assess(drill_id: str, canaries: Sequence[Canary], surviving: Iterable[str],
           fault_at: datetime, *, recovery_point: datetime | None = None,
           failures: Sequence[str] = ()) -> CanaryReport:
    """Count the canaries committed before ``fault_at`` that are not in ``surviving`` and
    measure the RPO from them (see the module doc). ``recovery_point`` (a restored backup's
    snapshot time) is shown beside the figure, never used for it: when no canary before the
    first lost one survived, the RPO is unmeasured (``None``), not a bound judged as exact."""
    alive = set(surviving)
    ordered = sorted((c for c in canaries if c.committed_at <= fault_at),
                     key=lambda c: (c.committed_at, c.seq))
    lost = tuple(c for c in ordered if c.key not in alive)
    survivors = [c for c in ordered if c.key in alive]
    newest = survivors[-1].committed_at if survivors else None
    point = ""
    if recovery_point is not None:
        point = (f"; the restored backup's snapshot was at {recovery_point.isoformat()}"
                 f" ({max(0.0, (fault_at - recovery_point).total_seconds()):.3f} s before the"
                 " fault), shown beside, not used for the figure")
    rpo: float | None
    if not ordered:
        rpo, basis = None, "unmeasured: no canary was written before the fault"
    elif not lost:
        rpo = 0.0
        basis = "no canary was lost: the newest one written before the fault survived"
    else:
        first_lost = ordered.index(lost[0])
        if first_lost > 0:
            intact = ordered[first_lost - 1]
            rpo = (fault_at - intact.committed_at).total_seconds()
            basis = (f"fault minus the commit of canary {intact.seq}, the newest surviving one"
                     f" before the first lost ({lost[0].seq}); {len(lost)} lost")
        else:
            which = ("every canary was lost" if len(lost) == len(ordered)
                     else f"the oldest canary ({lost[0].seq}) was lost")
            rpo = None
            basis = (f"unmeasured: {which}, so no surviving canary dates the recovery point"
                     " (a bound is not a measurement)")
    return CanaryReport(drill_id, fault_at, len(canaries), len(ordered), len(survivors), lost,
                        rpo, basis + point, newest, recovery_point, tuple(failures))


__all__ = [
    "CANARY_ACTION",
    "CANARY_TITLE",
    "KINDS",
    "S3_CANARY_PREFIX",
    "AuditWriter",
    "Canary",
    "CanaryLedger",
    "CanaryReport",
    "CanaryWriter",
    "ObjectState",
    "api_video_writer",
    "assess",
    "audit_writer",
    "foreign_canaries",
    "new_drill_id",
    "object_state",
    "put_s3_canary",
    "remove_canaries",
    "remove_s3_canaries",
    "s3_prefix",
    "surviving_keys",
]
