"""Common Operations > Database Operations > Database Backup, verified by a round trip.

``backup_round_trip`` dumps the source with ``pg_dump`` (custom format ``-Fc``; the runbook's
plain SQL form with ``dump_format="plain"``, imported with ``psql`` as the runbook's Import
does), restores it into a scratch database ``runbook_restore_<hex>`` created from
``template0``, compares every table's row count and ordered checksum between the source and
the restored copy, then drops the scratch database (always, ``finally``) and deletes the dump
unless asked to keep it. Every command is recorded as an ``Activity``; no password is ever on
a command line (it travels in ``PGPASSWORD`` in the child's environment only).

Consistency: the source is read in a REPEATABLE READ transaction whose snapshot is exported
(``pg_export_snapshot()``) and handed to ``pg_dump --snapshot``; the source checksum sessions
import the same snapshot. The dump and the source checksums see the very same data, so
writes during the round trip cause no false mismatch.

Checksums, per table, the same on both sides, in sessions with fixed output settings:
``count(*)`` and an md5 over the rows in primary-key order (collatable key columns in the "C"
collation, so the databases' collations cannot reorder them; the row itself when there is no
key). What is hashed per row, the ``method``:

* ``hash``: the row's binary hash, ``hash_record_extended(ROW(t.a, t.b, ...), 0)``
  (PostgreSQL 14+, both servers of the same major version, every column type hashable),
  with enum, OID-valued, domain, composite and range columns cast to text first (an enum's
  hash is its OID's, which a restore renumbers): no rendering of whole rows as text, about
  2.5 times cheaper than ``text``. (It sees values, not spellings: ``1.0`` and ``1.00`` hash
  alike; a restore keeps both exactly, so this loses nothing here);
* ``hash-sum``: the same hashes summed, unordered (tables over ``HASH_ORDERED_LIMIT_ROWS``
  rows, whose ordered string would pass PostgreSQL's 1 GB limit; every row carries its key,
  so order adds nothing there);
* ``text``: ``ROW(t.*)::text`` joined by newlines (``md5(string_agg(t::text, E'\\n'
  ORDER BY pk))``), when ``hash`` is unavailable (e.g. a ``json`` column);
* ``text-md5``: md5 of each row's text, for tables over ``ROWS_METHOD_LIMIT_BYTES``.

Speed (bench/backup_roundtrip.py compares it with a bare ``pg_dump -Fc | pg_restore``):

* pipelined (the default): pg_dump's output is spooled to the dump file from the start and
  fed from there into ``pg_restore --section=pre-data --section=data`` as soon as the scratch
  database exists (created while pg_dump starts); then ``pg_restore --section=post-data
  --jobs`` builds indexes and constraints from the file while the restored tables are
  checksummed (which needs their data only). ``pipeline=False``: dump to the file, then
  ``pg_restore --jobs`` it, then checksum;
* the source is checksummed during the dump, in the dump's snapshot; the restored side by
  several sessions, largest table first; the restore runs with ``synchronous_commit=off``.

The checksums cost CPU that a bare dump and restore does not spend: on a 2-CPU machine the
round trip takes about 1.1-1.2 times a bare ``pg_dump -Fc | pg_restore`` at 100,000 rows.

Safety: refuses (``SafetyGateError``) a scratch name that is not ``runbook_restore_...`` or
equals the source database's name; the source is only read (read-only sessions and
``pg_dump``); only a database this call created is ever dropped.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Literal

import psycopg
from psycopg import sql
from psycopg.errors import DuplicateDatabase, InsufficientPrivilege

from runbook.config import Platform
from runbook.errors import ConfigError, SafetyGateError
from runbook.figures import HASH_ORDERED_LIMIT_ROWS, METHODS, checksum_query, choose_methods
from runbook.pg import (
    COMPARE_SETTINGS,
    PgEndpoint,
    TableInfo,
    drop_database_statement,
    list_tables,
    open_connection,
    parse_dsn,
)
from runbook.probes import describe_error
from runbook.redact import Redactor
from runbook.results import Activity, Result, TimedResult, Timing, failure, utcnow
from runbook.sandbox import Sandbox, find_postgres
from runbook.timeouts import Timeouts

#: Every scratch database this module creates is named ``runbook_restore_<hex>``.
SCRATCH_PREFIX = "runbook_restore_"
_SCRATCH_NAME = re.compile(r"^runbook_restore_[0-9a-z_]{1,40}$")
#: Session settings of the restore (a throw-away copy: no waiting for each commit's flush).
RESTORE_SETTINGS: tuple[str, ...] = ("synchronous_commit=off", "maintenance_work_mem=128MB")
#: Largest ``output`` kept in an Activity.
OUTPUT_LIMIT = 64 * 1024
DumpFormat = Literal["custom", "plain"]
FORMATS: tuple[str, ...] = ("custom", "plain")
_APPLICATION = "legacyvideo-runbook-backup"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BackupLimits:
    """Seconds. ``command_s`` bounds each pg_dump/pg_restore/psql; ``statement_s`` each SQL
    statement (checksums included); ``lock_wait_s`` how long pg_dump waits for a table lock
    (a migration holding one makes it fail fast, not hang); ``total_s`` the whole round trip."""

    command_s: float = 900.0
    statement_s: float = 600.0
    lock_wait_s: float = 30.0
    total_s: float = 1800.0


DEFAULT_LIMITS = BackupLimits()


@dataclass(frozen=True)
class TableSum:
    """One side's figures for one table; ``error`` when they could not be read."""

    rows: int | None
    checksum: str | None
    error: str = ""


@dataclass(frozen=True)
class TableCheck(Result):
    """One table, source against restored copy: ok when both sides were read, with the same
    row count and the same checksum."""

    table: str
    key: tuple[str, ...]
    method: str
    source_rows: int | None
    restored_rows: int | None
    source_checksum: str | None
    restored_checksum: str | None
    error: str = ""

    @property
    def problems(self) -> tuple[str, ...]:
        """What differs, in one line (none when the copy matches)."""
        if self.error:
            return (f"{self.table}: {self.error}",)
        if self.source_rows != self.restored_rows:
            return (f"{self.table}: {self.source_rows} rows in the source,"
                    f" {self.restored_rows} restored",)
        if self.source_rows is None or self.source_checksum != self.restored_checksum:
            return (f"{self.table}: same {self.source_rows} rows, but their contents differ",)
        return ()

    def problem(self) -> str:
        """One line on what differs ("" when ok)."""
        return "; ".join(self.problems)


def compare_tables(tables: Sequence[TableInfo], source: Mapping[str, TableSum],
                   restored: Mapping[str, TableSum]) -> tuple[TableCheck, ...]:
    """Pair both sides' figures per table (keyed by ``TableInfo.qualified``)."""
    checks = []
    for table in tables:
        mine, theirs = source.get(table.qualified), restored.get(table.qualified)
        errors = []
        if mine is None or mine.error:
            errors.append(f"source not read ({mine.error if mine else 'no result'})")
        if theirs is None or theirs.error:
            errors.append(f"restored copy not read ({theirs.error if theirs else 'no result'})")
        checks.append(TableCheck(
            table=table.qualified, key=table.key, method=table.method,
            source_rows=mine.rows if mine else None,
            restored_rows=theirs.rows if theirs else None,
            source_checksum=mine.checksum if mine else None,
            restored_checksum=theirs.checksum if theirs else None,
            error="; ".join(errors),
        ))
    return tuple(checks)


class Canceller:
    """Stops checksum sessions still running when the round trip has failed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[psycopg.Connection[Any]] = []
        self.cancelled = threading.Event()

    def register(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._connections.append(conn)

    def cancel(self) -> None:
        """Mark cancelled and cancel the statement each registered session is running."""
        self.cancelled.set()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(Exception):
                    if not conn.closed:
                        conn.cancel()


def checksum_tables(
    endpoint: PgEndpoint,
    tables: Sequence[TableInfo],
    timeouts: Timeouts,
    *,
    jobs: int = 1,
    limits: BackupLimits = DEFAULT_LIMITS,
    snapshot: str | None = None,
    canceller: Canceller | None = None,
) -> dict[str, TableSum]:
    """Row count and checksum of each of ``tables`` in ``endpoint``'s database, read-only,
    over up to ``jobs`` sessions (largest table first). With ``snapshot`` every session
    imports that exported snapshot, so all see what a concurrent ``pg_dump --snapshot`` sees.

    A table that cannot be read gets a ``TableSum`` with ``error``; a session that cannot
    connect (or breaks) raises ``psycopg.Error``.
    """
    todo = sorted(tables, key=lambda t: t.size_bytes, reverse=True)
    lock = threading.Lock()
    results: dict[str, TableSum] = {}

    def next_table() -> TableInfo | None:
        with lock:
            if canceller is not None and canceller.cancelled.is_set():
                return None
            return todo.pop(0) if todo else None

    def worker() -> None:
        with open_connection(
            endpoint, connect_timeout_s=timeouts.connect, statement_timeout_s=limits.statement_s,
            autocommit=snapshot is None, settings=COMPARE_SETTINGS, application=_APPLICATION,
        ) as conn:
            if canceller is not None:
                canceller.register(conn)
            if snapshot is not None:
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                conn.read_only = True
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            while (table := next_table()) is not None:
                try:
                    if snapshot is None:
                        row = conn.execute(checksum_query(table)).fetchone()
                    else:  # a savepoint: one table's error leaves the snapshot usable
                        with conn.transaction():
                            row = conn.execute(checksum_query(table)).fetchone()
                    total = (TableSum(int(row[0]), row[1]) if row
                             else TableSum(None, None, "no answer"))
                except psycopg.Error as exc:
                    if conn.broken or conn.closed:
                        raise
                    total = TableSum(None, None, describe_error(exc))
                with lock:
                    results[table.qualified] = total
            if snapshot is not None:
                conn.rollback()

    count = max(1, min(jobs, len(todo)))
    if not todo:
        return results
    if count == 1:
        worker()
        return results
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="runbook-checksum") as pool:
        for future in [pool.submit(worker) for _ in range(count)]:
            future.result()
    return results


# -- the record ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupRecord(TimedResult):
    """What one backup round trip did and found. ``ok`` when the restored copy matched the
    source table for table and the scratch database was dropped; ``problem`` says otherwise.
    ``phases``: ``create``, ``dump``, ``restore`` (which overlap when ``pipelined``; then
    ``restore`` spans the data pass from the stream and the post-data pass from the file),
    ``compare`` (overlapping the post-data pass), ``drop``, plus ``checksum_source`` (during
    the dump), as ``Timing``s."""

    source: str
    scratch_server: str
    scratch_database: str
    dump_format: str
    jobs: int
    pipelined: bool
    timing: Timing
    phases: Mapping[str, Timing]
    tables: tuple[TableCheck, ...]
    activities: tuple[Activity, ...]
    dump_bytes: int
    source_database_bytes: int | None
    restored_database_bytes: int | None
    scratch_dropped: bool
    dump_path: str | None
    problem: str = ""
    notes: tuple[str, ...] = ()
    snapshot_consistent: bool = False
    evidence_properties = ("phases_s", "source_rows")

    @property
    def problems(self) -> tuple[str, ...]:
        return (self.problem,) if self.problem else ()

    @property
    def phases_s(self) -> dict[str, float]:
        """Each phase's seconds."""
        return {name: round(t.elapsed_s, 3) for name, t in self.phases.items()}

    @property
    def source_rows(self) -> int:
        """Rows across the source's tables."""
        return sum(t.source_rows or 0 for t in self.tables)

    @property
    def mismatches(self) -> tuple[TableCheck, ...]:
        return tuple(t for t in self.tables if not t.ok)

    @property
    def copies_every_table(self) -> bool:
        """Tables were compared, and every one matches its restored copy."""
        return bool(self.tables) and not self.mismatches


# -- commands and their records -----------------------------------------------------------------


class _StepFailed(Exception):
    """A step failed; its Activity is recorded and ``problem`` says what happened."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass
class _Running:
    name: str
    argv: tuple[str, ...]
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    started_at: datetime
    started: float


@dataclass
class _Recorder:
    """Activities, phase timings and the overall deadline of one round trip."""

    redact: Redactor
    deadline: float = 0.0
    activities: list[Activity] = field(default_factory=list)
    phases: dict[str, Timing] = field(default_factory=dict)
    current: str = "start"

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.current = name
        started_at, started = utcnow(), time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = Timing(started_at, utcnow(), time.monotonic() - started)

    def remaining(self, cap: float) -> float:
        """Seconds left for the next wait: ``cap``, or less near the total limit."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _StepFailed(f"{self.current}: the round trip ran over its total time limit")
        return min(cap, left)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], *,
              stdin: int | None = subprocess.DEVNULL,
              stdout: int | None = subprocess.DEVNULL) -> _Running:
        """Start a command in its own process group; its stderr goes to a temporary file."""
        started_at, started = utcnow(), time.monotonic()
        log = tempfile.TemporaryFile()  # noqa: SIM115  (closed by finish)
        try:
            proc = subprocess.Popen(list(argv), env=dict(env), stdin=stdin, stdout=stdout,
                                    stderr=log, start_new_session=True)
        except OSError as exc:
            log.close()
            self._record(name, argv, started_at, started, False, "", f"cannot start: {exc}")
            raise _StepFailed(f"{name}: cannot start {argv[0]} ({exc.strerror})") from None
        return _Running(name, tuple(argv), proc, log, started_at, started)

    def finish(self, running: _Running, timeout: float) -> str:
        """Wait for ``running`` (killing it after ``timeout``), record it, and return its
        error ("" when it exited 0). Sets the phase named after the command."""
        proc = running.proc
        try:
            proc.wait(timeout=timeout)
            error = "" if proc.returncode == 0 else f"exit status {proc.returncode}"
        except subprocess.TimeoutExpired:
            self.kill(running)
            proc.wait()
            error = f"timed out after {timeout:.0f} s (killed)"
        running.log.seek(0, os.SEEK_END)
        size = running.log.tell()
        running.log.seek(max(0, size - OUTPUT_LIMIT))
        text = running.log.read().decode("utf-8", "replace")
        running.log.close()
        self._record(running.name, running.argv, running.started_at, running.started,
                     not error, text, error)
        if error:
            last = self.redact(text.strip().splitlines()[-1]) if text.strip() else ""
            return f"{running.name}: {error}" + (f": {last}" if last else "")
        return ""

    def kill(self, running: _Running) -> None:
        """Kill the command and whatever it forked (its own process group)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(running.proc.pid, signal.SIGKILL)

    def statement(self, name: str, conn: psycopg.Connection[Any],
                  statement: sql.Composed) -> None:
        """Execute one SQL statement as a recorded Activity; re-raise its error."""
        text = statement.as_string(conn)
        started_at, started = utcnow(), time.monotonic()
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            self._record(name, ("sql", text), started_at, started, False, "",
                         describe_error(exc))
            raise
        self._record(name, ("sql", text), started_at, started, True, "", "")

    def _record(self, name: str, argv: Sequence[str], started_at: datetime, started: float,
                ok: bool, output: str, error: str) -> None:
        self.activities.append(Activity(
            name=name,
            command=tuple(self.redact(part) for part in argv),
            timing=Timing(started_at, utcnow(), time.monotonic() - started),
            output=self.redact(output)[-OUTPUT_LIMIT:],
            error="" if ok else failure(name, self.redact(error.splitlines()[0] if error
                                                          else "")),
        ))


class _Spool:
    """pg_dump's output goes to the dump file at full speed (``write_from``, from the
    start), and from the file to the restore once that has started (``feed``, catching up
    from the page cache): the dump never waits for the scratch database to be created."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd
        self.changed = threading.Condition()
        self.bytes = 0
        self.done = False
        #: Why the dump file could not be written (a full disk), "" when it could.
        self.error = ""
        #: The restore stopped reading (it failed).
        self.restore_gone = False

    def write_from(self, source: IO[bytes]) -> None:
        """Copy ``source`` (pg_dump's stdout) into the dump file until it ends. On a write
        error, stop reading, so pg_dump fails too instead of blocking."""
        try:
            while chunk := os.read(source.fileno(), _CHUNK):
                view = memoryview(chunk)
                try:
                    while view:
                        view = view[os.write(self.fd, view):]
                except OSError as exc:
                    self.error = f"writing the dump file: {exc.strerror or exc}"
                    break
                with self.changed:
                    self.bytes += len(chunk)
                    self.changed.notify_all()
        finally:
            with self.changed:
                self.done = True
                self.changed.notify_all()
            with contextlib.suppress(OSError, ValueError):
                source.close()

    def feed(self, sink: IO[bytes]) -> None:
        """Copy the dump file into ``sink`` (the restore's stdin) as it grows, until the
        dump has ended and all of it was sent, or the restore stops reading."""
        offset = 0
        reader = os.open(self.path, os.O_RDONLY)
        try:
            while True:
                with self.changed:
                    while self.bytes == offset and not self.done:
                        self.changed.wait()
                    available, finished = self.bytes, self.done
                if offset >= available and finished:
                    return
                while offset < available:
                    chunk = os.pread(reader, min(_CHUNK, available - offset), offset)
                    view = memoryview(chunk)
                    try:
                        while view:
                            view = view[os.write(sink.fileno(), view):]
                    except (BrokenPipeError, ValueError):
                        self.restore_gone = True
                        return
                    offset += len(chunk)
        finally:
            os.close(reader)
            with contextlib.suppress(OSError, ValueError):
                sink.close()


# -- scratch databases ---------------------------------------------------------------------------


def new_scratch_name() -> str:
    """``runbook_restore_<12 hex>``."""
    return f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"


def check_scratch_name(name: str, source_database: str) -> None:
    """Raise ``SafetyGateError`` unless ``name`` is a runbook scratch name other than the
    source database's name (the scratch database is dropped at the end)."""
    if name == source_database:
        raise SafetyGateError(
            f"refused: the scratch database {name!r} would be the source database itself;"
            " a backup round trip drops its scratch database"
        )
    if not _SCRATCH_NAME.match(name):
        raise SafetyGateError(
            f"refused: scratch database name {name!r} does not match {SCRATCH_PREFIX}<hex>;"
            " the round trip only creates and drops such databases"
        )


def scratch_databases(scratch_admin_dsn: str, timeouts: Timeouts) -> list[str]:
    """The ``runbook_restore_*`` databases on the scratch server (read-only): proof that
    none was left behind. Raises ``psycopg.Error`` when the server does not answer."""
    admin = parse_dsn(scratch_admin_dsn)
    with open_connection(admin, connect_timeout_s=timeouts.connect,
                         statement_timeout_s=timeouts.read) as conn:
        return [str(name) for (name,) in conn.execute(
            "select datname from pg_database where datname like %s order by datname",
            (SCRATCH_PREFIX.replace("_", "\\_") + "%",),
        )]


def default_jobs() -> int:
    """Sessions for the restored side's checksums and ``pg_restore --jobs``: the CPU count,
    at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def _tool(bindir: Path, name: str) -> str:
    path = bindir / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ConfigError(
            f"no {name} in {bindir}; pass the bindir of a PostgreSQL installation at least as"
            f" new as the server (Sandbox.bindir on the sandbox)"
        )
    return str(path)


def _as_connected(endpoint: PgEndpoint, conn: psycopg.Connection[Any]) -> PgEndpoint:
    """``endpoint`` with the host, port, user and database libpq actually used filled in
    where the DSN left them to the environment or defaults."""
    info = conn.info
    actual = {"host": info.host, "port": str(info.port), "user": info.user,
              "dbname": info.dbname}
    missing = {k: v for k, v in actual.items() if v and k not in endpoint.params}
    if "hostaddr" in endpoint.params:
        missing.pop("host", None)
    return replace(endpoint, params={**endpoint.params, **missing}) if missing else endpoint


# -- the round trip ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SourceFacts:
    database: str
    encoding: str
    collate: str
    ctype: str
    icu_locale: str | None
    size_bytes: int
    snapshot: str
    version: int
    tables: tuple[TableInfo, ...]


class _RoundTrip:
    def __init__(self, source: PgEndpoint, admin: PgEndpoint, name: str, bindir: Path,
                 timeouts: Timeouts, workdir: Path, *, keep_dump: bool, dump_format: str,
                 jobs: int, pipeline: bool, limits: BackupLimits,
                 before_compare: Callable[[str], None] | None) -> None:
        self.source, self.admin, self.name = source, admin, name
        self.scratch = admin.with_dbname(name)
        self.timeouts, self.limits, self.jobs, self.pipeline = timeouts, limits, jobs, pipeline
        self.keep_dump, self.dump_format = keep_dump, dump_format
        self.before_compare = before_compare
        self.pg_dump = _tool(bindir, "pg_dump")
        self.restorer = _tool(bindir, "pg_restore" if dump_format == "custom" else "psql")
        suffix = ".dump" if dump_format == "custom" else ".sql"
        self.dump_path = workdir / f"{name}{suffix}"
        self.rec = _Recorder(Redactor([p for p in (source.password, admin.password) if p]))
        self.notes: list[str] = []
        self.dump_bytes = 0
        self.post_data: _Running | None = None

    # -- steps ---------------------------------------------------------------------------------

    def _facts(self, conn: psycopg.Connection[Any], scratch_version: int) -> _SourceFacts:
        row = conn.execute(
            "select pg_export_snapshot(), current_database(),"
            " pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,"
            " pg_database_size(d.oid), current_setting('server_version_num')::int"
            " from pg_database d where d.datname = current_database()"
        ).fetchone()
        assert row is not None
        snapshot, database, encoding, collate, ctype, size, version = row
        icu: str | None = None
        if int(version) >= 150000:
            provider = conn.execute(
                "select datlocprovider, daticulocale from pg_database"
                " where datname = current_database()").fetchone()
            if provider and provider[0] == "i":
                icu = str(provider[1])
        tables = list_tables(conn)
        if int(version) >= 140000 and int(version) // 10000 == scratch_version // 10000:
            tables = choose_methods(conn, tables)
        else:
            self.notes.append(
                "row hashes compared as text: binary row hashes need PostgreSQL 14+ and"
                " both servers of the same major version")
        return _SourceFacts(str(database), str(encoding), str(collate), str(ctype), icu,
                            int(size), str(snapshot), int(version), tuple(tables))

    def _create(self, conn: psycopg.Connection[Any], facts: _SourceFacts) -> None:
        """Create the scratch database like the source's (encoding, locale); in the C locale
        when this server lacks the source's (checksums order in "C" anyway)."""
        name = sql.Identifier(self.name)
        locale = sql.SQL(" LC_COLLATE {} LC_CTYPE {}").format(
            sql.Literal(facts.collate), sql.Literal(facts.ctype))
        if facts.icu_locale and conn.info.server_version >= 150000:
            locale = sql.SQL(" LOCALE_PROVIDER icu ICU_LOCALE {}{}").format(
                sql.Literal(facts.icu_locale), locale)
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {}{}").format(
            name, sql.Literal(facts.encoding), locale)
        try:
            self.rec.statement("create scratch database", conn, statement)
        except (DuplicateDatabase, InsufficientPrivilege):
            raise
        except psycopg.Error:
            if conn.broken:
                raise
            self.notes.append(
                f"the scratch server lacks the source's locale ({facts.collate}); the scratch"
                " database uses C (checksums order in C, so they still compare)")
            self.rec.statement("create scratch database", conn, sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE 'C'"
                " LC_CTYPE 'C'").format(name, sql.Literal(facts.encoding)))

    def _drop(self) -> tuple[bool, int | None]:
        """Drop the scratch database (``WITH (FORCE)``). Returns whether it is gone and its
        size just before. Never raises: a failure is recorded."""
        size: int | None = None
        started_at, started = utcnow(), time.monotonic()
        try:
            with self._admin_connection() as conn:
                found = conn.execute(
                    "select pg_database_size(oid) from pg_database where datname = %s",
                    (self.name,)).fetchone()
                size = int(found[0]) if found else None
                drop = drop_database_statement(conn, self.name)
                self.rec.statement("drop scratch database", conn, drop)
                gone = conn.execute("select count(*) from pg_database where datname = %s",
                                    (self.name,)).fetchone()
                return (gone is not None and gone[0] == 0), size
        except psycopg.Error as exc:
            if not any(a.name == "drop scratch database" for a in self.rec.activities):
                self.rec._record("drop scratch database", ("sql", f"DROP DATABASE {self.name}"),
                                 started_at, started, False, "", describe_error(exc))
            return False, size

    def _admin_connection(self) -> psycopg.Connection[Any]:
        return open_connection(self.admin, connect_timeout_s=self.timeouts.connect,
                               statement_timeout_s=self.limits.statement_s, read_only=False,
                               application=_APPLICATION)

    def _conninfo(self, endpoint: PgEndpoint, settings: Sequence[str] = ()) -> str:
        return endpoint.conninfo(
            options=[f"-c {s}" for s in settings],
            connect_timeout=str(max(1, int(self.timeouts.connect + 0.999))),
            application_name=_APPLICATION,
        )

    def _dump_argv(self, snapshot: str) -> list[str]:
        argv = [self.pg_dump, f"--format={self.dump_format}", f"--snapshot={snapshot}",
                f"--lock-wait-timeout={int(self.limits.lock_wait_s * 1000)}"]
        if not self.pipeline:
            argv.append(f"--file={self.dump_path}")
            if not self.keep_dump:
                argv.append("--no-sync")
        if self.dump_format == "plain":
            argv += ["--no-owner", "--no-acl"]
        argv.append(f"--dbname={self._conninfo(self.source)}")
        return argv

    def _restore_argv(self) -> list[str]:
        target = f"--dbname={self._conninfo(self.scratch, RESTORE_SETTINGS)}"
        if self.dump_format == "plain":
            source = "-" if self.pipeline else str(self.dump_path)  # "-": stdin
            return [self.restorer, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                    f"--file={source}", target]
        argv = [self.restorer, "--exit-on-error", "--no-owner", "--no-acl", target]
        if self.pipeline:  # tables and their data from the stream; the rest from the file
            return [*argv, "--section=pre-data", "--section=data"]
        return [*argv, f"--jobs={self.jobs}", str(self.dump_path)]

    def _post_data_argv(self) -> list[str]:
        target = f"--dbname={self._conninfo(self.scratch, RESTORE_SETTINGS)}"
        return [self.restorer, "--exit-on-error", "--no-owner", "--no-acl",
                "--section=post-data", f"--jobs={self.jobs}", target, str(self.dump_path)]

    def _restore_name(self) -> str:
        return "pg_restore" if self.dump_format == "custom" else "psql restore"

    def _dump_and_restore(self, admin: psycopg.Connection[Any], facts: _SourceFacts) -> bool:
        """pg_dump (the scratch database created meanwhile), then the restore: streamed
        as the dump is written, or from the finished file. Returns whether the scratch
        database was created; raises ``_StepFailed`` naming the first failing step."""
        rec = self.rec
        created = False
        restoring: _Running | None = None
        writer: threading.Thread | None = None
        feeder: threading.Thread | None = None
        fd = os.open(self.dump_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        spool = _Spool(self.dump_path, fd)
        try:
            dumping = rec.start("pg_dump", self._dump_argv(facts.snapshot),
                                self.source.tool_env(),
                                stdout=subprocess.PIPE if self.pipeline else subprocess.DEVNULL)
            if self.pipeline:
                assert dumping.proc.stdout is not None
                writer = threading.Thread(target=spool.write_from, args=(dumping.proc.stdout,),
                                          name="runbook-dump-spool", daemon=True)
                writer.start()
            errors: list[str] = []
            try:
                with rec.phase("create"):
                    self._create(admin, facts)
                    created = True
                if self.pipeline:
                    restoring = rec.start(self._restore_name(), self._restore_argv(),
                                          self.scratch.tool_env(), stdin=subprocess.PIPE)
                    assert restoring.proc.stdin is not None
                    feeder = threading.Thread(target=spool.feed, args=(restoring.proc.stdin,),
                                              name="runbook-dump-feed", daemon=True)
                    feeder.start()
            finally:
                if not created:
                    rec.kill(dumping)
                else:
                    rec.current = "dump"
                errors.append(rec.finish(dumping, rec.remaining(self.limits.command_s)))
                self._phase_of(dumping, "dump")
                if writer is not None:  # pg_dump has ended: so does its reader
                    writer.join(rec.remaining(self.limits.command_s))
            if restoring is None and created and not errors[0]:
                rec.current = "restore"
                restoring = rec.start(self._restore_name(), self._restore_argv(),
                                      self.scratch.tool_env())
            if restoring is not None:
                rec.current = "restore"
                if errors[0]:
                    rec.kill(restoring)
                errors.append(rec.finish(restoring, rec.remaining(self.limits.command_s)))
                self._phase_of(restoring, "restore")
            if feeder is not None:  # the restore has ended (or was killed): so does its feed
                feeder.join(rec.remaining(self.limits.command_s))
            if spool.restore_gone:  # the restore failed first
                errors.reverse()
            if spool.error:  # pg_dump and the restore only lost their pipe
                errors.insert(0, spool.error)
            first = next((e for e in errors if e), "")
            if first:
                raise _StepFailed(first)
            if self.pipeline and self.dump_format == "custom":
                # Indexes, constraints, triggers: from the finished file, in parallel, while
                # the restored tables are checksummed (that needs their data only).
                self.post_data = rec.start("pg_restore post-data", self._post_data_argv(),
                                           self.scratch.tool_env())
        finally:
            if self.keep_dump:
                os.fsync(fd)
            self.dump_bytes = os.fstat(fd).st_size
            os.close(fd)
        return created

    def _phase_of(self, running: _Running, phase: str) -> None:
        ended = next(a for a in reversed(self.rec.activities) if a.name == running.name)
        self.rec.phases[phase] = ended.timing

    def _finish_post_data(self) -> None:
        """Wait for the post-data restore; the ``restore`` phase then spans both passes.
        Raises ``_StepFailed`` when it failed."""
        running, self.post_data = self.post_data, None
        if running is None:
            return
        error = self.rec.finish(running, self.rec.remaining(self.limits.command_s))
        first = self.rec.phases.get("restore")
        ended = next(a for a in reversed(self.rec.activities) if a.name == running.name)
        if first is not None:
            self.rec.phases["restore"] = Timing(
                first.started_at, ended.timing.finished_at,
                (ended.timing.finished_at - first.started_at).total_seconds())
        if error:
            raise _StepFailed(error)

    def _source_checksums(self, facts: _SourceFacts, canceller: Canceller
                          ) -> dict[str, TableSum]:
        started_at, started = utcnow(), time.monotonic()
        try:
            return checksum_tables(self.source, facts.tables, self.timeouts, jobs=1,
                                   limits=self.limits, snapshot=facts.snapshot,
                                   canceller=canceller)
        finally:
            self.rec.phases["checksum_source"] = Timing(started_at, utcnow(),
                                                        time.monotonic() - started)

    def execute(self) -> BackupRecord:
        started_at, started = utcnow(), time.monotonic()
        rec = self.rec
        rec.deadline = started + self.limits.total_s
        problem = ""
        created = dropped = False
        facts: _SourceFacts | None = None
        checks: tuple[TableCheck, ...] = ()
        restored_bytes: int | None = None
        canceller = Canceller()
        source_job = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runbook-source")
        try:
            rec.current = "connect"
            with self._admin_connection() as admin, open_connection(
                self.source, connect_timeout_s=self.timeouts.connect,
                statement_timeout_s=self.limits.statement_s, autocommit=False,
                settings=(f"idle_in_transaction_session_timeout="
                          f"{int(self.limits.total_s * 1000)}",),
                application=_APPLICATION,
            ) as snap:
                rec.current = "source"
                # The tools get no PG* variables: give them what libpq filled in from them.
                self.source = _as_connected(self.source, snap)
                self.admin = _as_connected(self.admin, admin)
                self.scratch = self.admin.with_dbname(self.name)
                snap.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                snap.read_only = True
                facts = self._facts(snap, admin.info.server_version)
                check_scratch_name(self.name, facts.database)
                if not facts.tables:
                    raise _StepFailed(f"the source database {facts.database!r} has no tables;"
                                      " is DATABASE_URL the right database?")
                source_sums: Future[dict[str, TableSum]] = source_job.submit(
                    self._source_checksums, facts, canceller)
                try:
                    created = self._dump_and_restore(admin, facts)
                except _StepFailed:
                    created = any(a.name == "create scratch database" and a.ok
                                  for a in rec.activities)
                    raise
                if self.before_compare is not None:
                    rec.current = "restore"
                    self._finish_post_data()  # the hook sees the whole restored copy
                    rec.current = "before_compare"
                    self.before_compare(self.scratch.dsn())
                with rec.phase("compare"):
                    restored = checksum_tables(self.scratch, facts.tables, self.timeouts,
                                               jobs=self.jobs, limits=self.limits)
                    source = source_sums.result(timeout=rec.remaining(self.limits.statement_s))
                    rec.current = "restore"
                    self._finish_post_data()
                    rec.current = "compare"
                    checks = compare_tables(facts.tables, source, restored)
        except _StepFailed as exc:
            problem = exc.problem
        except TimeoutError:
            problem = f"{rec.current}: no answer within the round trip's time limits"
        except psycopg.Error as exc:
            problem = f"{rec.current}: {rec.redact(describe_error(exc))}"
            created = created or any(a.name == "create scratch database" and a.ok
                                     for a in rec.activities)
        except OSError as exc:
            problem = f"{rec.current}: {exc.strerror or exc}"
        finally:
            if problem:
                canceller.cancel()
            if self.post_data is not None:  # still running after a failure
                self.rec.kill(self.post_data)
                with contextlib.suppress(_StepFailed):
                    self._finish_post_data()
            source_job.shutdown(wait=True, cancel_futures=True)
            if created:
                with rec.phase("drop"):
                    dropped, restored_bytes = self._drop()
            if not self.keep_dump:
                with contextlib.suppress(FileNotFoundError):
                    self.dump_path.unlink()
        return self._record(started_at, started, facts, checks, problem, created, dropped,
                            restored_bytes)

    def _record(self, started_at: datetime, started: float, facts: _SourceFacts | None,
                checks: tuple[TableCheck, ...], problem: str, created: bool, dropped: bool,
                restored_bytes: int | None) -> BackupRecord:
        if not problem:
            differing = [c.problem() for c in checks if not c.ok]
            if differing:
                problem = "the restored copy differs from the source: " + "; ".join(differing)
        if created and not dropped:
            left = (f"scratch database {self.name} was left behind on {self.admin.describe()};"
                    f' drop it: DROP DATABASE "{self.name}" WITH (FORCE)')
            problem = f"{problem}; {left}" if problem else left
        dump_bytes = self.dump_bytes
        return BackupRecord(
            source=self.source.describe(),
            scratch_server=self.admin.describe().rsplit("/", 1)[0],
            scratch_database=self.name,
            dump_format=self.dump_format,
            jobs=self.jobs,
            pipelined=self.pipeline,
            timing=Timing(started_at, utcnow(), time.monotonic() - started),
            phases=MappingProxyType(dict(self.rec.phases)),
            tables=checks,
            activities=tuple(sorted(self.rec.activities, key=lambda a: a.timing.started_at)),
            dump_bytes=dump_bytes,
            source_database_bytes=facts.size_bytes if facts else None,
            restored_database_bytes=restored_bytes,
            scratch_dropped=dropped or not created,
            dump_path=str(self.dump_path) if self.keep_dump and dump_bytes else None,
            problem=problem,
            notes=tuple([*self.notes, *self._standing_notes()]),
            snapshot_consistent=facts is not None,
        )

    def _standing_notes(self) -> list[str]:
        notes = [
            "source compared at the dump's own snapshot (pg_export_snapshot + pg_dump"
            " --snapshot): writes during the round trip cause no false mismatch",
            "ownership and privileges are not restored (--no-owner --no-acl): the scratch"
            " copy is for verification; sequences, views and functions are restored but only"
            " table rows are compared",
        ]
        if self.dump_format == "custom":
            notes.append(
                "the runbook's plain SQL form (pg_dump $DATABASE_URL > backup.sql, imported"
                " with psql $DATABASE_URL < backup.sql) is also supported: dump_format='plain'"
                " restores it with psql -v ON_ERROR_STOP=1 --single-transaction")
        else:
            notes.append("plain SQL dump (the runbook's form) imported with psql; the custom"
                         " format (-Fc) also allows a parallel, selective pg_restore")
        return notes


def backup_round_trip(
    source_dsn: str,
    scratch_admin_dsn: str,
    bindir: Path | str,
    timeouts: Timeouts,
    *,
    workdir: Path | str,
    keep_dump: bool = False,
    dump_format: DumpFormat = "custom",
    jobs: int | None = None,
    pipeline: bool = True,
    limits: BackupLimits = DEFAULT_LIMITS,
    before_compare: Callable[[str], None] | None = None,
    scratch_name: str | None = None,
) -> BackupRecord:
    """Dump ``source_dsn``, restore it into a new ``runbook_restore_<hex>`` database on the
    server of ``scratch_admin_dsn`` (a role that may create databases), compare every
    table's row count and ordered checksum, drop the scratch database, delete the dump in
    ``workdir`` (unless ``keep_dump``).

    ``pipeline`` streams the dump into the restore as it is written; ``False`` restores the
    finished file with ``pg_restore --jobs`` (``jobs``, default ``default_jobs()``, also the
    number of sessions checksumming the restored copy). ``before_compare`` is called with
    the scratch database's DSN (it carries the admin password: never log it) after the
    restore, before the comparison (tests corrupt the copy there).

    ``timeouts.connect`` bounds every connection; ``limits`` bound each command, each
    statement and the whole round trip. Measures wall time per phase, dump and database
    sizes, and per-table counts and checksums on both sides. A failing command or statement
    is recorded in ``problem``, not raised.

    Raises ``SafetyGateError`` before anything is written when the scratch name is not a
    ``runbook_restore_`` name or is the source database's; ``ConfigError`` for a DSN libpq
    cannot read, an unknown format, or a bindir without the tools.
    """
    if dump_format not in FORMATS:
        raise ConfigError(f"dump format {dump_format!r} is not one of {', '.join(FORMATS)}")
    source = parse_dsn(source_dsn)
    admin = parse_dsn(scratch_admin_dsn)
    name = scratch_name if scratch_name is not None else new_scratch_name()
    check_scratch_name(name, source.dbname)
    directory = Path(workdir)
    directory.mkdir(parents=True, exist_ok=True)
    trip = _RoundTrip(source, admin, name, Path(bindir), timeouts, directory,
                      keep_dump=keep_dump, dump_format=dump_format,
                      jobs=max(1, jobs or default_jobs()), pipeline=pipeline, limits=limits,
                      before_compare=before_compare)
    return trip.execute()


__all__ = [
    "DEFAULT_LIMITS",
    "HASH_ORDERED_LIMIT_ROWS",
    "METHODS",
    "SCRATCH_PREFIX",
    "BackupLimits",
    "BackupRecord",
    "Canceller",
    "TableCheck",
    "TableSum",
    "backup_round_trip",
    "check_scratch_name",
    "checksum_query",
    "checksum_tables",
    "choose_methods",
    "compare_tables",
    "default_jobs",
    "new_scratch_name",
    "scratch_databases",
]


def round_trip_for(target: Any, timeouts: Timeouts, workdir: Path) -> BackupRecord:
    """The runbook's Database Backup, export and import, as a round trip on ``target``.

    The scratch database is created on the sandbox's server with its superuser; on other
    targets with ``RUNBOOK_SCRATCH_DATABASE_URL`` (a role that may create databases), else
    with ``DATABASE_URL`` itself. The client tools are the sandbox's, else the newest
    PostgreSQL installation this machine has (``pg_dump`` must not be older than the
    server). Raises ``ConfigError`` when the target has no database.
    """

    source = target.require("DATABASE_URL")
    if target.platform is Platform.SANDBOX and target.runbook_home is not None:
        sandbox = Sandbox(target.runbook_home)
        admin, bindir = sandbox.superuser_dsn("postgres"), sandbox.bindir
    else:
        admin = os.environ.get("RUNBOOK_SCRATCH_DATABASE_URL") or source
        bindir = find_postgres().bindir
    workdir.mkdir(parents=True, exist_ok=True)
    return backup_round_trip(source, admin, bindir, timeouts, workdir=workdir)
