"""Backups of the sandbox's application database: what Railway's automatic backups are to
LegacyVideo, the sandbox has here, so "Restore from latest Railway backup" can be rehearsed.

Where: ``$RUNBOOK_HOME/sandbox/backups/`` (0700). Each backup is ``<UTC>.dump`` (``pg_dump
-Fc`` of the ``legacyvideo`` database, 0600) plus ``<UTC>.json`` (0600): when its snapshot
was taken, size, SHA-256 of the dump, why it was taken, and every table's row count and
checksum read in the dump's own snapshot (``pg_export_snapshot`` + ``pg_dump --snapshot``),
so a restore can be proved identical to what was dumped. The checksums are
``runbook.figures``' (sums of row hashes computed by the server in one pass; an older
backup's are ordered md5s, and its restore is compared by that method). Backups are data
(user rows, e-mails, password hashes): never attached to a report, never printed.

When: the supervisor takes one once the database is migrated and seeded at every ``up``
(before the sandbox reports ready, so a ready sandbox always has a backup), then every
``RUNBOOK_SANDBOX_BACKUP_INTERVAL`` seconds (default 1800; 0 or less: none after the first),
keeping the newest ``RUNBOOK_SANDBOX_BACKUP_KEEP`` (default 10). ``take_backup`` takes one
on demand (the CLI's ``runbook sandbox backup``).

``restore_backup`` replaces the application database with a backup: the dump's SHA-256 is
checked first (a damaged backup is refused before anything is touched), the role is
(re)created if a fresh cluster lacks it, the database is dropped (``WITH (FORCE)``: open
sessions are ended) and created again from ``template0``, ``pg_restore --exit-on-error``
fills it (ownership kept: the objects belong to ``legacyvideo`` again), and the restored
tables are compared with the figures recorded at backup time, each by the method it was
recorded with (``read_figures(like=...)``): every table, every row up to the backup's
cut-off. The API opens a connection
per request and the worker none to the database, so neither needs a restart: their next
request simply finds the restored database.

Every subprocess and statement is bounded; passwords travel in ``PGPASSWORD`` in the
child's environment only, never on a command line, and no error message carries one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.clients import describe_error
from runbook.errors import SandboxError
from runbook.figures import (
    Figures,
    IntegrityReport,
    LandedFigures,
    TableFigure,
    compare,
    read_figures,
)
from runbook.pg import PgEndpoint, drop_database, open_connection, parse_dsn
from runbook.redact import Redactor
from runbook.results import Activity, Record, TimedResult, Timing, utcnow
from runbook.sandbox.layout import Layout, write_json_atomic
from runbook.sandbox.ports import load_ports
from runbook.sandbox.postgres import APP_DATABASE, APP_ROLE, bootstrap
from runbook.timeouts import Timeouts

if TYPE_CHECKING:  # the stack imports this module to take its backups
    from runbook.sandbox.stack import Sandbox

INTERVAL_VARIABLE = "RUNBOOK_SANDBOX_BACKUP_INTERVAL"
KEEP_VARIABLE = "RUNBOOK_SANDBOX_BACKUP_KEEP"
DEFAULT_INTERVAL_S = 1800.0
DEFAULT_KEEP = 10
#: Seconds for one pg_dump or pg_restore of the sandbox's (small) database.
COMMAND_TIMEOUT_S = 300.0
#: Seconds for one SQL statement (drop, create, checksums).
STATEMENT_TIMEOUT_S = 60.0
#: pg_dump waits this long for a table lock, then fails instead of hanging.
LOCK_WAIT_S = 30.0
_SUFFIX = ".dump"
_META = ".json"
_APPLICATION = "legacyvideo-runbook-sandbox-backup"


def backups_dir(home: Path) -> Path:
    """``$RUNBOOK_HOME/sandbox/backups``."""
    return Layout(Path(home)).root / "backups"


@dataclass(frozen=True)
class BackupInfo(Record):
    """One backup on disk. ``taken_at`` is the moment of the dump's snapshot: the recovery
    point (what was committed before it is in the dump, nothing after). Its evidence is
    which file, when, how big, its digest and row counts (no data, no secrets)."""

    path: Path
    taken_at: datetime
    finished_at: datetime
    size_bytes: int
    sha256: str
    database: str
    server_version: str
    reason: str
    figures: Figures = field(repr=False)
    evidence_properties = ("rows", "tables")

    @property
    def rows(self) -> int:
        """Rows across the backup's tables."""
        return self.figures.rows

    @property
    def tables(self) -> dict[str, int]:
        """Each table's rows."""
        return {n: t.rows for n, t in sorted(self.figures.tables.items())}

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def metadata_path(self) -> Path:
        return self.path.with_suffix(_META)

    def age_s(self, now: datetime | None = None) -> float:
        """Seconds from the snapshot to ``now``."""
        return ((now or utcnow()) - self.taken_at).total_seconds()

    def verify(self) -> str:
        """"" when the dump is there with its recorded size and SHA-256, else the problem."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return f"backup {self.name} is missing"
        if size != self.size_bytes:
            return f"backup {self.name} is {size} bytes, {self.size_bytes} were written"
        digest = file_sha256(self.path)
        if digest != self.sha256:
            return (f"backup {self.name} is damaged: sha256 {digest[:12]}..., recorded"
                    f" {self.sha256[:12]}...")
        return ""

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.path.name,
            "taken_at": self.taken_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "database": self.database,
            "server_version": self.server_version,
            "reason": self.reason,
            "figures": self.figures.to_json(),
        }

    @classmethod
    def load(cls, metadata: Path) -> BackupInfo:
        """Read a backup's ``.json``. Raises ``SandboxError`` when it is unreadable."""

        try:
            document = json.loads(metadata.read_text(encoding="utf-8"))
            return cls(
                path=metadata.with_name(str(document["file"])),
                taken_at=datetime.fromisoformat(str(document["taken_at"])),
                finished_at=datetime.fromisoformat(str(document["finished_at"])),
                size_bytes=int(document["size_bytes"]),
                sha256=str(document["sha256"]),
                database=str(document["database"]),
                server_version=str(document.get("server_version", "")),
                reason=str(document.get("reason", "")),
                figures=Figures.from_json(document["figures"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SandboxError(f"backup metadata {metadata} is unreadable"
                               f" ({type(exc).__name__}); delete it and its .dump") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def describe(backup: BackupInfo) -> str:
    """One line for the CLI: file, snapshot time, size, digest prefix, rows."""
    return (f"{backup.path} taken {backup.taken_at.isoformat(timespec='milliseconds')}"
            f" ({backup.reason}): {backup.size_bytes} bytes, sha256 {backup.sha256[:12]}...,"
            f" {backup.figures.rows} rows in {len(backup.figures.tables)} tables")


# -- schedule ----------------------------------------------------------------------------------


def schedule_from_env(environ: Mapping[str, str] | None = None) -> tuple[float, int, list[str]]:
    """``(interval_s, keep, problems)`` from ``RUNBOOK_SANDBOX_BACKUP_INTERVAL`` and
    ``RUNBOOK_SANDBOX_BACKUP_KEEP``; a malformed value falls back to the default and is
    named in ``problems``."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    interval, keep = DEFAULT_INTERVAL_S, DEFAULT_KEEP
    raw = env.get(INTERVAL_VARIABLE, "").strip()
    if raw:
        try:
            interval = float(raw)
        except ValueError:
            problems.append(f"{INTERVAL_VARIABLE}={raw!r} is not a number of seconds;"
                            f" using {DEFAULT_INTERVAL_S:g}")
    raw = env.get(KEEP_VARIABLE, "").strip()
    if raw:
        try:
            keep = int(raw)
            if keep < 1:
                raise ValueError
        except ValueError:
            keep = DEFAULT_KEEP
            problems.append(f"{KEEP_VARIABLE}={raw!r} is not a whole number >= 1; using"
                            f" {DEFAULT_KEEP}")
    return interval, keep, problems


class BackupSchedule:
    """A daemon thread calling ``take`` every ``interval_s`` (while ``ready()``), reporting
    each outcome to ``log(level, message)``; ``stop`` ends it."""

    def __init__(self, take: Callable[[str], BackupInfo], interval_s: float,
                 log: Callable[[str, str], None], ready: Callable[[], bool]) -> None:
        self.take, self.interval_s, self.log, self.ready = take, interval_s, log, ready
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="backup-schedule", daemon=True)

    def start(self) -> None:
        if self.interval_s > 0:
            self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self.ready():
                self.log("WARN", "scheduled backup skipped: postgres is not running")
                continue
            try:
                info = self.take("schedule")
            except Exception as exc:  # the schedule must outlive one failed backup
                self.log("ERROR", f"scheduled backup failed: {exc}")
                continue
            self.log("INFO", f"backup {info.name} taken ({info.size_bytes} bytes)")


# -- taking, listing, pruning --------------------------------------------------------------------


def _stem(moment: datetime, directory: Path) -> str:
    base = moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S.") + \
        f"{moment.microsecond // 1000:03d}Z"
    stem, n = base, 0
    while (directory / f"{stem}{_SUFFIX}").exists() or (directory / f"{stem}{_META}").exists():
        n += 1
        stem = f"{base}-{n}"
    return stem


def _conninfo(endpoint: PgEndpoint, timeouts: Timeouts) -> str:
    """A conninfo for pg_dump/pg_restore: no password (it goes in PGPASSWORD)."""
    return endpoint.conninfo(connect_timeout=str(max(1, int(timeouts.connect))),
                             application_name=_APPLICATION)


def _prepare_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)


def take_backup_at(admin_dsn: str, bindir: Path, directory: Path, timeouts: Timeouts, *,
                   reason: str = "manual", keep: int | None = DEFAULT_KEEP) -> BackupInfo:
    """Dump the database of ``admin_dsn`` (a superuser DSN naming the application database)
    with ``bindir``'s ``pg_dump -Fc`` into ``directory``, record its metadata and figures
    (same snapshot), then keep only the newest ``keep`` backups (``None``: all).

    Measures the snapshot time, size and SHA-256. Raises ``SandboxError`` (one line, no
    secret) when the database cannot be read or pg_dump fails; nothing is left behind then.
    """
    import psycopg


    endpoint = parse_dsn(admin_dsn)
    redact = Redactor([endpoint.password] if endpoint.password else [])
    pg_dump = Path(bindir) / "pg_dump"
    if not pg_dump.exists():
        raise SandboxError(f"no pg_dump in {bindir}; install the PostgreSQL client tools")
    _prepare_dir(directory)
    partial: Path | None = None
    try:
        with open_connection(endpoint, connect_timeout_s=timeouts.connect,
                             statement_timeout_s=STATEMENT_TIMEOUT_S, read_only=True,
                             autocommit=False, application=_APPLICATION) as snap:
            snap.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            snap.read_only = True
            row = snap.execute("select pg_export_snapshot(), clock_timestamp(),"
                               " current_database(), current_setting('server_version')"
                               ).fetchone()
            assert row is not None
            snapshot, taken_at, database, version = row
            stem = _stem(taken_at, directory)
            partial = directory / f".{stem}{_SUFFIX}.partial"
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                argv = [str(pg_dump), "--format=custom", f"--snapshot={snapshot}",
                        f"--lock-wait-timeout={int(LOCK_WAIT_S * 1000)}",
                        f"--dbname={_conninfo(endpoint, timeouts)}"]
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd,
                                        stderr=subprocess.PIPE, env=endpoint.tool_env(),
                                        start_new_session=True)
                try:
                    figures = read_figures(admin_dsn, timeouts, snapshot=str(snapshot),
                                           statement_s=STATEMENT_TIMEOUT_S)
                finally:
                    try:
                        _, err = proc.communicate(timeout=COMMAND_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        _, err = proc.communicate()
                        raise SandboxError(f"pg_dump did not finish within"
                                           f" {COMMAND_TIMEOUT_S:.0f} s") from None
                if proc.returncode != 0:
                    last = err.decode("utf-8", "replace").strip().splitlines()
                    raise SandboxError(f"pg_dump failed (exit {proc.returncode})"
                                       + (f": {redact(last[-1])}" if last else ""))
                os.fsync(fd)
            finally:
                os.close(fd)
            snap.rollback()
    except psycopg.Error as exc:

        if partial is not None:
            partial.unlink(missing_ok=True)
        raise SandboxError(f"backup failed: the database did not answer"
                           f" ({redact(describe_error(exc))})") from None
    except BaseException:
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise
    final = directory / f"{stem}{_SUFFIX}"
    partial.replace(final)
    info = BackupInfo(final, taken_at, utcnow(), final.stat().st_size, file_sha256(final),
                      str(database), str(version), reason, figures)
    write_json_atomic(info.metadata_path, info.to_json(), mode=0o600)
    if keep is not None:
        prune(directory, keep)
    return info


def list_backups(directory: Path) -> list[BackupInfo]:
    """Every complete backup in ``directory`` (dump and metadata both there), newest
    first. Unreadable metadata is skipped."""
    found = []
    if not directory.is_dir():
        return []
    for metadata in directory.glob(f"*{_META}"):
        if metadata.name.startswith("."):
            continue
        try:
            info = BackupInfo.load(metadata)
        except SandboxError:
            continue
        if info.path.exists():
            found.append(info)
    return sorted(found, key=lambda b: b.taken_at, reverse=True)


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups; returns the dumps deleted."""
    removed = []
    for info in list_backups(directory)[max(keep, 1):]:
        info.path.unlink(missing_ok=True)
        info.metadata_path.unlink(missing_ok=True)
        removed.append(info.path)
    return removed


def _sandbox_parts(sandbox: Sandbox) -> tuple[str, Path, Path]:

    return (sandbox.superuser_dsn(APP_DATABASE), sandbox.bindir,
            backups_dir(sandbox.home))


def take_backup(sandbox: Sandbox, *, reason: str = "manual", keep: int | None = None,
                timeouts: Timeouts | None = None) -> BackupInfo:
    """Back up the running ``sandbox``'s application database now (``runbook sandbox
    backup``), keeping the newest ``keep`` (default ``RUNBOOK_SANDBOX_BACKUP_KEEP``).

    Raises ``SandboxError`` when the sandbox was never started or the backup fails."""
    admin, bindir, directory = _sandbox_parts(sandbox)
    if keep is None:
        keep = schedule_from_env()[1]
    return take_backup_at(admin, bindir, directory, timeouts or Timeouts(), reason=reason,
                          keep=keep)


def sandbox_backups(sandbox: Sandbox | Path) -> list[BackupInfo]:
    """The backups of a sandbox (or of ``RUNBOOK_HOME`` given as a path), newest first."""
    home = sandbox if isinstance(sandbox, Path) else sandbox.home
    return list_backups(backups_dir(home))


def latest_backup(sandbox: Sandbox | Path) -> BackupInfo | None:
    """The newest backup, or ``None`` when there is none."""
    backups = sandbox_backups(sandbox)
    return backups[0] if backups else None


# -- restoring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreRecord(TimedResult):
    """What ``restore_backup`` did: each step as an ``Activity``, and the restored tables
    compared with the figures recorded when the backup was taken."""

    backup: BackupInfo
    timing: Timing
    activities: tuple[Activity, ...]
    integrity: IntegrityReport | None
    problem: str = ""

    @property
    def problems(self) -> tuple[str, ...]:
        return (self.problem,) if self.problem else ()


class _Steps:
    def __init__(self, redact: Redactor) -> None:
        self.redact = redact
        self.activities: list[Activity] = []

    def run(self, name: str, command: Sequence[str], body: Callable[[], str]) -> str:
        """Run ``body`` (returning its output) as a recorded Activity; re-raise its error."""
        started_at, started = utcnow(), time.monotonic()
        error, output = "", ""
        try:
            output = body()
            return output
        except BaseException as exc:
            error = self.redact(str(exc).strip().splitlines()[0] if str(exc).strip()
                                else type(exc).__name__)
            raise
        finally:
            self.activities.append(Activity(
                name=name, command=tuple(self.redact(c) for c in command),
                timing=Timing(started_at, utcnow(), time.monotonic() - started),
                output=self.redact(output)[-4000:], error=error))


#: pg_restore --verbose, parallel: a table's rows are all in ("finished item 3391 TABLE DATA
#: Video"; the tag is the table's name without its schema).
_TABLE_DATA_DONE = re.compile(r"^pg_restore: finished item \d+ TABLE DATA (.+)$")


def _pg_restore(argv: Sequence[str], env: Mapping[str, str],
                landed: Callable[[str], None]) -> tuple[int, str]:
    """Run ``argv`` (a ``pg_restore --verbose``), calling ``landed(table)`` as each table's
    data is in; its exit code and the line that says why it failed (its last error, else its
    last line). Raises ``subprocess.TimeoutExpired`` after ``COMMAND_TIMEOUT_S`` (killed)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=dict(env), start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            lines.append(line)
            done = _TABLE_DATA_DONE.match(line)
            if done:
                landed(done.group(1))

    reader = threading.Thread(target=read, name="pg_restore output", daemon=True)
    deadline = time.monotonic() + COMMAND_TIMEOUT_S
    reader.start()
    try:
        # Its output ends as it does, and a thread's end wakes its joiner at once, where
        # ``Popen.wait`` with a time limit polls and sees the end up to 50 ms late (a tenth
        # of a small restore). Then the process itself, which is ending or has ended.
        reader.join(COMMAND_TIMEOUT_S)
        if reader.is_alive():
            raise subprocess.TimeoutExpired(list(argv), COMMAND_TIMEOUT_S)
        code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        reader.join(5.0)
        if proc.stderr is not None:
            proc.stderr.close()
    errors = [line for line in lines if line.startswith("pg_restore: error:")]
    return code, (errors or lines or [""])[-1]


def restore_backup(sandbox: Sandbox, backup: BackupInfo, *, timeouts: Timeouts | None = None,
                   jobs: int = 2) -> RestoreRecord:
    """Replace ``sandbox``'s application database with ``backup`` and prove the restored
    tables equal the figures recorded at backup time. The figures of a table are read as
    soon as pg_restore has its rows in, while it builds the indexes and constraints, where
    that reads the same (``runbook.figures.LandedFigures``); the rest once it has ended.

    Raises ``SandboxError`` before touching anything when the backup is damaged (SHA-256)
    or the sandbox was never started. A failure after that is recorded in ``problem`` (the
    database may then be missing or partly restored: restore again).
    """
    import psycopg
    from psycopg import sql


    timeouts = timeouts or Timeouts()
    damaged = backup.verify()
    if damaged:
        raise SandboxError(f"refused: {damaged}; restore an older backup")
    secrets = sandbox.secrets()
    admin = parse_dsn(sandbox.superuser_dsn("postgres"))
    app_admin = admin.with_dbname(APP_DATABASE)
    port = load_ports(sandbox.layout.ports).get("postgres")
    if port is None:
        raise SandboxError(f"the sandbox in {sandbox.layout.root} was never started")
    steps = _Steps(Redactor(secrets.values()))
    started_at, started = utcnow(), time.monotonic()
    problem = ""
    integrity = None
    try:
        def ensure_role() -> str:
            cluster = bootstrap(port, secrets.postgres_password, secrets.db_password)
            return f"role {APP_ROLE} present (cluster {cluster})"

        steps.run("create the role if missing", ("sql", f'CREATE ROLE "{APP_ROLE}" LOGIN'
                  " PASSWORD *** (when missing)"), ensure_role)

        def recreate() -> str:
            with open_connection(admin, connect_timeout_s=timeouts.connect,
                                 statement_timeout_s=STATEMENT_TIMEOUT_S, read_only=False,
                                 application=_APPLICATION) as conn:
                name = sql.Identifier(APP_DATABASE)
                drop_database(conn, APP_DATABASE)
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                    name, sql.Identifier(APP_ROLE)))
            return f"database {APP_DATABASE} dropped and created empty"

        steps.run("drop and create the database", (
            "sql", f'DROP DATABASE IF EXISTS "{APP_DATABASE}" WITH (FORCE); CREATE DATABASE'
            f' "{APP_DATABASE}" OWNER "{APP_ROLE}" TEMPLATE template0'), recreate)
        pg_restore = str(sandbox.bindir / "pg_restore")
        argv = [pg_restore, "--exit-on-error", "--verbose", f"--jobs={max(1, jobs)}",
                f"--dbname={_conninfo(app_admin, timeouts)}",
                str(backup.path)]
        landed: dict[str, TableFigure] = {}

        def restore() -> str:
            # The figures of each table are read as soon as its rows are in, while pg_restore
            # builds the indexes and constraints (LandedFigures says what it may read early).
            reader = LandedFigures(app_admin.dsn(), timeouts, backup.figures,
                                   statement_s=STATEMENT_TIMEOUT_S)
            try:
                code, last = _pg_restore(argv, app_admin.tool_env(), reader.landed)
            finally:
                landed.update(reader.close())
            if code != 0:
                raise SandboxError(f"pg_restore failed (exit {code}): {last}")
            return f"{backup.name} restored ({backup.size_bytes} bytes)"

        steps.run("pg_restore", argv, restore)

        def verify() -> str:
            nonlocal integrity
            after = read_figures(app_admin.dsn(), timeouts, like=backup.figures,
                                 statement_s=STATEMENT_TIMEOUT_S, landed=landed)
            integrity = compare(backup.figures, after)
            if not integrity.matches:
                raise SandboxError("the restored tables differ from the backup's figures: "
                                   + integrity.problem())
            early = sum(1 for name in after.tables if name in landed)
            return (f"{len(after.tables)} tables, {after.rows} rows match the backup"
                    f" ({early} of them read as their data landed, during pg_restore)")

        methods = sorted({t.method for t in backup.figures.tables.values()})
        steps.run("compare with the backup's figures",
                  ("sql", f"count(*) and checksum of every table ({', '.join(methods)})"),
                  verify)
    except (SandboxError, OSError, subprocess.TimeoutExpired) as exc:
        problem = steps.redact(str(exc).splitlines()[0])
    except psycopg.Error as exc:
        problem = steps.redact(describe_error(exc))
    return RestoreRecord(backup, Timing(started_at, utcnow(), time.monotonic() - started),
                         tuple(steps.activities), integrity, problem)


def remove_partials(directory: Path) -> None:
    """Delete half-written dumps a killed backup left (``.<stem>.dump.partial``)."""
    for leftover in directory.glob(".*.partial"):
        with contextlib.suppress(OSError):
            leftover.unlink()


__all__ = [
    "DEFAULT_INTERVAL_S",
    "DEFAULT_KEEP",
    "INTERVAL_VARIABLE",
    "KEEP_VARIABLE",
    "BackupInfo",
    "BackupSchedule",
    "RestoreRecord",
    "backups_dir",
    "describe",
    "latest_backup",
    "list_backups",
    "prune",
    "restore_backup",
    "sandbox_backups",
    "schedule_from_env",
    "take_backup",
    "take_backup_at",
]
