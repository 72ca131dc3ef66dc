"""Backups of a real target and their restore into a scratch database: what the drills that
prove LegacyVideo's own backups restore (``restore-test``, ``accidental-deletion``, the
isolated rebuild) read and write, without ever writing to the primary.

Where the newest backup comes from (``RUNBOOK_BACKUP_LOCATION``):

* a directory: the newest ``*.dump``/``*.backup`` (``pg_dump -Fc``) or ``*.sql`` (the
  runbook's plain ``pg_dump $DATABASE_URL > backup.sql``) file in it;
* ``s3://BUCKET/PREFIX``: the newest such object under the prefix (the runbook's off-site
  copies), read with the target's S3 credentials and downloaded to the drill's directory;
* unset: a fresh ``pg_dump -Fc`` of ``DATABASE_URL`` (read-only), its figures read in the
  dump's own snapshot.

A backup's time, from the best source there is, and the record says which: the metadata a
runbook backup carries beside it (``<name>.json``: the dump's snapshot and per-table
figures), else the archive's own header (``pg_restore -l``: "Archive created at", when
pg_dump began), else the file's modification time (an upper bound on its age: the snapshot
was before). Only a backup with its figures can be compared table for table; any other is
validated by its tables and migrations, with row counts shown, not judged.

The scratch database (``RUNBOOK_SCRATCH_DATABASE_URL``): a ``runbook_restore_...`` database
name on the server to restore into, which the drill creates (refusing one that exists) and
drops; a DSN naming any other database is the connection that creates a
``runbook_restore_<hex>`` one. On the sandbox, its own server and superuser.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from runbook.actions.backup import SCRATCH_PREFIX, check_scratch_name, new_scratch_name
from runbook.config import SCRATCH_DATABASE_VARIABLE, Platform, Target
from runbook.errors import ConfigError, SafetyGateError
from runbook.figures import Figures, IntegrityReport, compare, read_figures
from runbook.pg import PgEndpoint, drop_database, open_connection, parse_dsn
from runbook.probes import describe_error, storage
from runbook.redact import Redactor
from runbook.results import Record, Result, utcnow
from runbook.sandbox.backups import BackupInfo, backups_dir, file_sha256, take_backup_at
from runbook.timeouts import Timeouts

LOCATION_VARIABLE = "RUNBOOK_BACKUP_LOCATION"
SCRATCH_VARIABLE = SCRATCH_DATABASE_VARIABLE
#: Archive suffixes by format.
SUFFIXES: Mapping[str, str] = {".dump": "custom", ".backup": "custom", ".sql": "plain"}
#: LegacyVideo's tables (Prisma's models and its migrations table): a restored backup
#: without them is not LegacyVideo's.
EXPECTED_TABLES: tuple[str, ...] = ("User", "Video", "Release", "AuditLog",
                                    "_prisma_migrations")
#: Seconds for one pg_restore/psql of a backup (a real database may be large).
RESTORE_TIMEOUT_S = float(os.environ.get("RUNBOOK_RESTORE_TIMEOUT", "1800"))
_CREATED = re.compile(r"Archive created at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
_APPLICATION = "legacyvideo-runbook-restore-test"


@dataclass(frozen=True)
class FoundBackup(Record):
    """The backup a drill restores: a local file, where it came from, and its time. Its
    evidence: which backup, from where, how old and big (no data, no secret: of its
    ``figures``, the ``row_figures`` only)."""

    path: Path = field(repr=False)
    origin: str
    source: str  # directory | s3 | fresh pg_dump
    dump_format: str = field(repr=False)
    taken_at: datetime
    taken_at_basis: str
    size_bytes: int
    sha256: str
    figures: Figures | None = field(default=None, repr=False)
    fetch_s: float = 0.0
    evidence_properties = ("format", "row_figures")

    def age_s(self, at: datetime | None = None) -> float:
        return ((at or utcnow()) - self.taken_at).total_seconds()

    @property
    def format(self) -> str:
        return self.dump_format

    @property
    def row_figures(self) -> dict[str, Any] | None:
        """Rows, tables and cutoff of the backup's figures."""
        return None if self.figures is None else {
            "rows": self.figures.rows, "tables": len(self.figures.tables),
            "cutoff": self.figures.cutoff.isoformat()}


@dataclass(frozen=True)
class Scratch:
    """Where a backup is restored: ``admin`` connects to the scratch server (a role that
    may create databases), ``name`` the database the drill creates and drops."""

    admin: PgEndpoint
    name: str
    origin: str

    @property
    def endpoint(self) -> PgEndpoint:
        return self.admin.with_dbname(self.name)

    def describe(self) -> str:
        return self.endpoint.describe()


def scratch_for(target: Target, environ: Mapping[str, str] | None = None) -> Scratch | None:
    """The scratch database for ``target``, or ``None`` when it has none (the drills that
    need one are refused). Raises ``SafetyGateError`` for a scratch name that is not a
    ``runbook_restore_`` one, or is the source database on the source's server."""
    env = os.environ if environ is None else environ
    if target.platform is Platform.SANDBOX and target.runbook_home is not None:
        from runbook.sandbox import Sandbox  # the sandbox's own server, for its targets

        admin = parse_dsn(Sandbox(target.runbook_home).superuser_dsn("postgres"))
        return Scratch(admin, new_scratch_name(), "the sandbox's server")
    value = env.get(SCRATCH_VARIABLE, "")
    if not value:
        return None
    given = parse_dsn(value)
    named = given.params.get("dbname", "")
    if named.startswith(SCRATCH_PREFIX):
        scratch = Scratch(given.with_dbname("postgres"), named, SCRATCH_VARIABLE)
    else:
        scratch = Scratch(given, new_scratch_name(), f"{SCRATCH_VARIABLE} (a new database)")
    source = parse_dsn(target.require("DATABASE_URL")) if target.database_url else None
    if source is not None:
        check_scratch_name(scratch.name, source.dbname)
        same_server = all(source.params.get(k) == scratch.admin.params.get(k)
                          for k in ("host", "port"))
        if same_server and scratch.name == source.dbname:
            raise SafetyGateError(f"refused: the scratch database {scratch.name!r} is the"
                                  " target's own database")
    return scratch


def _redactor(*endpoints: PgEndpoint) -> Redactor:
    return Redactor([e.password for e in endpoints if e.password])


# -- finding the newest backup ----------------------------------------------------------------


def _archive_time(path: Path, bindir: Path) -> datetime | None:
    """When pg_dump began writing a custom-format archive (its header), or ``None``."""
    try:
        done = subprocess.run([str(bindir / "pg_restore"), "--list", str(path)],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "TZ": "UTC"}, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = _CREATED.search(done.stdout)
    if done.returncode != 0 or found is None:
        return None
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def _dated(path: Path, origin: str, source: str, bindir: Path, *, modified: datetime,
           fetch_s: float = 0.0, metadata: Path | None = None) -> FoundBackup:
    dump_format = SUFFIXES[path.suffix]
    figures: Figures | None = None
    if metadata is not None and metadata.exists():
        try:
            info = BackupInfo.load(metadata)
        except Exception as exc:  # unreadable metadata: the archive is still a backup
            info, note = None, f" (its metadata {metadata.name} is unreadable: {exc})"
        else:
            note = ""
        if info is not None:
            damaged = info.verify() if info.path == path else ""
            if damaged:
                raise ConfigError(f"{origin}: {damaged}")
            return FoundBackup(path, origin, source, dump_format, info.taken_at,
                               "the dump's snapshot, from the metadata written with it",
                               path.stat().st_size, file_sha256(path), info.figures, fetch_s)
    else:
        note = ""
    created = _archive_time(path, bindir) if dump_format == "custom" else None
    if created is not None:
        taken, basis = created, "the archive's header (pg_dump began: Archive created at)"
    else:
        taken, basis = modified, ("the file's modification time: an upper bound, the"
                                  " snapshot was earlier")
    return FoundBackup(path, origin, source, dump_format, taken, basis + note,
                       path.stat().st_size, file_sha256(path), figures, fetch_s)


def _newest_in_directory(directory: Path, bindir: Path) -> FoundBackup:
    if not directory.is_dir():
        raise ConfigError(f"{LOCATION_VARIABLE}: {directory} is not a directory; set it to the"
                          " directory or s3://bucket/prefix the backups are written to")
    files = [p for p in directory.iterdir()
             if p.is_file() and p.suffix in SUFFIXES and not p.name.startswith(".")]
    if not files:
        raise ConfigError(f"{LOCATION_VARIABLE}: no backup (*.dump, *.backup, *.sql) in"
                          f" {directory}")
    newest = max(files, key=lambda p: p.stat().st_mtime)
    modified = datetime.fromtimestamp(newest.stat().st_mtime, UTC)
    return _dated(newest, f"{directory}/{newest.name}", "directory", bindir,
                  modified=modified, metadata=newest.with_suffix(".json"))


def _newest_in_s3(location: str, target: Target, timeouts: Timeouts, workdir: Path,
                  bindir: Path) -> FoundBackup:

    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    s3 = storage.client(target, timeouts)
    objects: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects.extend(o for o in page.get("Contents", [])
                       if Path(o["Key"]).suffix in SUFFIXES)
    if not objects:
        raise ConfigError(f"{LOCATION_VARIABLE}: no backup (*.dump, *.backup, *.sql) under"
                          f" {location}")
    newest = max(objects, key=lambda o: o["LastModified"])
    key = str(newest["Key"])
    local = workdir / Path(key).name
    started = time.monotonic()
    s3.download_file(bucket, key, str(local))
    metadata: Path | None = None
    sidecar = str(Path(key).with_suffix(".json"))
    with contextlib.suppress(Exception):  # no metadata beside it: dated another way
        metadata = workdir / Path(sidecar).name
        s3.download_file(bucket, sidecar, str(metadata))
    fetched = time.monotonic() - started
    os.chmod(local, 0o600)
    return _dated(local, f"s3://{bucket}/{key}", "s3", bindir,
                  modified=newest["LastModified"].astimezone(UTC), fetch_s=fetched,
                  metadata=metadata if metadata is not None and metadata.exists() else None)


def backup_location(target: Target, environ: Mapping[str, str] | None = None) -> str:
    """``RUNBOOK_BACKUP_LOCATION``; on the sandbox, its own backups' directory; else ``""``
    (no backups to read: a fresh dump is all there is)."""
    env = os.environ if environ is None else environ
    location = env.get(LOCATION_VARIABLE, "").strip()
    if not location and target.platform is Platform.SANDBOX and target.runbook_home:

        location = str(backups_dir(target.runbook_home))
    return location


def newest_backup(target: Target, timeouts: Timeouts, workdir: Path, bindir: Path,
                  environ: Mapping[str, str] | None = None) -> FoundBackup:
    """The target's newest backup (see the module doc), as a local file under ``workdir``
    when it had to be fetched or taken. Raises ``ConfigError`` when the location holds none,
    ``SandboxError`` when a fresh dump fails."""
    # (a fresh dump only where no location is known: see ``backup_location``)
    location = backup_location(target, environ)
    if location.startswith("s3://"):
        return _newest_in_s3(location, target, timeouts, workdir, bindir)
    if location:
        return _newest_in_directory(Path(location), bindir)
    return fresh_backup(target, timeouts, workdir, bindir, reason="restore test")


def fresh_backup(target: Target, timeouts: Timeouts, workdir: Path, bindir: Path, *,
                 reason: str) -> FoundBackup:
    """A ``pg_dump -Fc`` of ``DATABASE_URL`` now (read-only), with its figures read in the
    dump's snapshot."""
    started = time.monotonic()
    info = take_backup_at(target.require("DATABASE_URL"), bindir, workdir, timeouts,
                          reason=reason, keep=None)
    return FoundBackup(info.path, f"a fresh pg_dump of DATABASE_URL ({info.name})",
                       "fresh pg_dump", "custom", info.taken_at,
                       "the dump's snapshot (pg_export_snapshot, read beside the dump)",
                       info.size_bytes, info.sha256, info.figures, time.monotonic() - started)


# -- restoring into the scratch database ------------------------------------------------------


@dataclass
class Restored(Result):
    """What restoring a backup into the scratch database did and found (filled in as the
    restore goes, hence not frozen). Its evidence names the database ``scratch_database``
    and gives of the restored ``figures`` the ``restored_rows`` only."""

    scratch: str = field(repr=False)
    created: bool = False
    restore_s: float = 0.0
    problem: str = ""
    tables: list[str] = field(default_factory=list)
    migrations: dict[str, Any] = field(default_factory=dict)
    figures: Figures | None = field(default=None, repr=False)
    comparison: IntegrityReport | None = None
    dropped: bool = False
    evidence_properties = ("scratch_database", "restored_rows")

    @property
    def problems(self) -> tuple[str, ...]:
        return (self.problem,) if self.problem else ()

    @property
    def scratch_database(self) -> str:
        return self.scratch

    @property
    def restored_rows(self) -> int | None:
        return None if self.figures is None else self.figures.rows


def admin_connection(scratch: Scratch, timeouts: Timeouts) -> psycopg.Connection[Any]:
    """A session on the scratch server that may create and drop databases (autocommit)."""
    return open_connection(scratch.admin, connect_timeout_s=timeouts.connect,
                           statement_timeout_s=120.0, read_only=False,
                           application=_APPLICATION)


@contextlib.contextmanager
def scratch_database(scratch: Scratch, timeouts: Timeouts, restored: Restored
                     ) -> Iterator[PgEndpoint]:
    """Create the scratch database (refusing one that exists: only what this drill created
    is ever dropped), yield it, drop it (``WITH (FORCE)``) whatever happens."""
    check_scratch_name(scratch.name, "")
    with admin_connection(scratch, timeouts) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s",
                              (scratch.name,)).fetchone()
        if exists:
            raise SafetyGateError(f"refused: the scratch database {scratch.name!r} already"
                                  f" exists on {scratch.admin.describe()}; the drill only"
                                  " drops a database it created: drop it or name another")
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
            sql.Identifier(scratch.name)))
    restored.created = True
    try:
        yield scratch.endpoint
    finally:
        with admin_connection(scratch, timeouts) as conn:
            drop_database(conn, scratch.name)
        restored.dropped = True


def restore_file(backup: FoundBackup, into: PgEndpoint, bindir: Path, timeouts: Timeouts,
                 *, jobs: int = 2, owner: str | None = None) -> tuple[float, str]:
    """``pg_restore --no-owner --no-privileges --exit-on-error`` (custom) or ``psql -v
    ON_ERROR_STOP=1`` (plain) of ``backup`` into ``into``: seconds taken and the problem
    (``""``: restored). ``owner``: the role the restored objects belong to (the session
    takes it: ``--role``). The password travels in ``PGPASSWORD`` only."""
    conninfo = into.conninfo(connect_timeout=str(max(1, int(timeouts.connect))),
                             application_name=_APPLICATION)
    if backup.dump_format == "custom":
        argv = [str(bindir / "pg_restore"), "--no-owner", "--no-privileges",
                "--exit-on-error", f"--jobs={max(1, jobs)}", f"--dbname={conninfo}",
                *([f"--role={owner}"] if owner else []), str(backup.path)]
    else:
        argv = [str(bindir / "psql"), "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1",
                f"--dbname={conninfo}",
                *(["--command", f'SET ROLE "{owner}"'] if owner else []),
                "--file", str(backup.path)]
    started = time.monotonic()
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=into.tool_env(), timeout=RESTORE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return time.monotonic() - started, (f"{Path(argv[0]).name} did not finish within"
                                            f" {RESTORE_TIMEOUT_S:.0f} s")
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        last = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return elapsed, _redactor(into)(f"{Path(argv[0]).name} failed (exit"
                                        f" {done.returncode})" + (f": {last[-1]}" if last
                                                                  else ""))
    return elapsed, ""


def validate(into: PgEndpoint, backup: FoundBackup, timeouts: Timeouts, restored: Restored,
             source_dsn: str | None) -> None:
    """LegacyVideo's tables present, the migrations table consistent (every migration
    finished, none rolled back or failed), and every table's count and checksum
    equal to the backup's own figures where it has them; else the counts of the source's
    rows created before the backup's time, shown beside (not judged)."""
    dsn = into.dsn()
    with open_connection(into, connect_timeout_s=timeouts.connect, statement_timeout_s=60.0,
                         application=_APPLICATION) as conn:
        restored.tables = sorted(str(r[0]) for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'public'"
            " and table_type = 'BASE TABLE'"))
        missing = [t for t in EXPECTED_TABLES if t not in restored.tables]
        if missing:
            restored.problem = (f"the restored backup lacks LegacyVideo's table(s)"
                                f" {', '.join(missing)}")
            return
        rows = conn.execute(
            'select count(*), count(*) filter (where "finished_at" is null),'
            ' count(*) filter (where "rolled_back_at" is not null),'
            ' max("finished_at") from "_prisma_migrations"').fetchone()
    assert rows is not None
    total, unfinished, rolled_back, newest = rows
    restored.migrations = {"applied": int(total), "unfinished": int(unfinished),
                           "rolled_back": int(rolled_back),
                           "newest_finished_at": newest.isoformat() if newest else None}
    if total == 0 or unfinished:
        restored.problem = (f"the migrations table is not consistent: {total} migrations,"
                            f" {unfinished} never finished")
        return
    if backup.figures is not None:
        restored.figures = read_figures(dsn, timeouts, like=backup.figures)
        restored.comparison = compare(backup.figures, restored.figures)
        if not restored.comparison.ok:
            restored.problem = restored.comparison.problem()
        return
    restored.figures = read_figures(dsn, timeouts, cutoff=backup.taken_at)
    if source_dsn is not None:
        now = read_figures(source_dsn, timeouts, cutoff=backup.taken_at)
        restored.migrations["source_rows_created_before_backup"] = now.rows
        restored.migrations["note"] = (
            "the backup has no figures of its own: counts shown, not judged (rows changed or"
            " deleted since the backup legitimately differ)")


def restore_and_validate(backup: FoundBackup, scratch: Scratch, bindir: Path,
                         timeouts: Timeouts, *, source_dsn: str | None,
                         keep: Any = None) -> Restored:
    """Create the scratch database, restore ``backup`` into it, validate it, then drop it
    (``keep``, when given, is called with the scratch endpoint before the drop: the
    accidental-deletion drill exports its rows there). Never raises for what the restore
    found: ``Restored.problem`` says it."""
    restored = Restored(scratch.describe())
    try:
        with scratch_database(scratch, timeouts, restored) as into:
            restored.restore_s, restored.problem = restore_file(backup, into, bindir, timeouts)
            if not restored.problem:
                validate(into, backup, timeouts, restored, source_dsn)
            if keep is not None and not restored.problem:
                keep(into)
    except psycopg.Error as exc:
        restored.problem = restored.problem or _redactor(scratch.admin)(
            f"the scratch server did not answer: {describe_error(exc)}")
    return restored


def digest(values: Mapping[str, Any]) -> str:
    """A short stable digest of a mapping (for footprints)."""
    text = "\n".join(f"{k}={values[k]}" for k in sorted(values))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = ["EXPECTED_TABLES", "LOCATION_VARIABLE", "SCRATCH_VARIABLE", "FoundBackup",
           "Restored", "Scratch", "admin_connection", "backup_location", "digest",
           "fresh_backup", "newest_backup", "restore_and_validate", "restore_file",
           "scratch_database", "scratch_for", "validate"]
