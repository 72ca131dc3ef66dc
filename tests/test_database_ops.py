"""Database Operations against the real sandbox: Prisma migration status (applied, failed,
modified, pending), the preconditions of "Rollback Migration (DANGEROUS)", and the backup
round trip (equal copy, corrupted copy detected, plain SQL form, failures cleaned up).

Nothing is left behind: a fake failed migration lives only in a scratch copy of the database
(``CREATE DATABASE ... TEMPLATE legacyvideo``) dropped after the test, and every test ends by
asserting that no ``runbook_restore_*`` or ``runbook_test_*`` database remains.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors, sql

from runbook.actions import backup
from runbook.actions.backup import (
    SCRATCH_PREFIX,
    BackupRecord,
    backup_round_trip,
    scratch_databases,
)
from runbook.actions.database import (
    MIGRATIONS_DIR_VARIABLE,
    MigrationRow,
    assess_migrations,
    checksum_matches,
    expected_migrations,
    migration_status,
    prisma_checksum,
    rollback_preconditions,
)
from runbook.config import Target
from runbook.errors import ConfigError, SafetyGateError
from runbook.pg import open_connection, parse_dsn
from runbook.sandbox.services.migrate import MIGRATIONS_DIR
from runbook.timeouts import Timeouts

TIMEOUTS = Timeouts(connect=5.0, read=10.0, deadline=20.0)
BUNDLED = expected_migrations(MIGRATIONS_DIR)
FAKE_FAILED = "20240201000000_add_video_duration"


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def target(sandbox: Any) -> Target:
    return Target.from_variables("sandbox", sandbox.env, source="sandbox", environment="sandbox")


@pytest.fixture(scope="module")
def admin_dsn(sandbox: Any) -> str:
    """The sandbox's superuser on its maintenance database (``postgres``)."""
    return str(sandbox.sandbox.superuser_dsn("postgres"))


@pytest.fixture(scope="module")
def passwords(sandbox: Any, target: Target, admin_dsn: str) -> list[str]:
    """Every password the tests could leak: the app role's and the superuser's."""
    return [*target.secret_values(), str(urlsplit(admin_dsn).password)]


def _admin(admin_dsn: str) -> psycopg.Connection[Any]:
    return open_connection(parse_dsn(admin_dsn), connect_timeout_s=5, statement_timeout_s=60,
                           read_only=False)


def _leftovers(admin_dsn: str) -> list[str]:
    with _admin(admin_dsn) as conn:
        return [name for (name,) in conn.execute(
            "select datname from pg_database where datname like 'runbook\\_restore\\_%'"
            " or datname like 'runbook\\_test\\_%' order by 1")]


@pytest.fixture(autouse=True)
def nothing_left_behind(admin_dsn: str) -> Iterator[None]:
    """After each test: no scratch database remains (dropped here if one did, then failed)."""
    yield
    left = _leftovers(admin_dsn)
    if left:
        with _admin(admin_dsn) as conn:
            for name in left:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))
    assert left == [], f"databases left behind: {left}"


def _writer(dsn: str) -> psycopg.Connection[Any]:
    """A read-write session with bounded connect and statement times (for corrupting a
    scratch copy, or writing to a copy while it is backed up)."""
    return open_connection(parse_dsn(dsn), connect_timeout_s=5, statement_timeout_s=30,
                           read_only=False)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def copy_target(sandbox: Any, admin_dsn: str) -> Iterator[Target]:
    """A scratch copy of the sandbox's database (``createdb -T legacyvideo``), as a target
    whose DATABASE_URL is the app role on the copy; dropped afterwards."""
    name = f"runbook_test_{secrets.token_hex(4)}"
    with _admin(admin_dsn) as conn:
        for attempt in range(100):
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE legacyvideo").format(
                    sql.Identifier(name)))
                break
            except errors.ObjectInUse:  # the API had a session open on the template
                if attempt == 99:
                    raise
                time.sleep(0.05)
    try:
        url = _with_database(sandbox.env["DATABASE_URL"], name)
        yield Target.from_variables("sandbox-copy", {**sandbox.env, "DATABASE_URL": url},
                                    source="test", environment="sandbox")
    finally:
        with _admin(admin_dsn) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def _superuser_on(admin_dsn: str, copy: Target) -> psycopg.Connection[Any]:
    name = parse_dsn(copy.require("DATABASE_URL")).dbname
    return open_connection(parse_dsn(admin_dsn).with_dbname(name), connect_timeout_s=5,
                           statement_timeout_s=30, read_only=False)


def _insert_failed_migration(admin_dsn: str, copy: Target, name: str = FAKE_FAILED) -> None:
    """What a `prisma migrate deploy` that died half-way leaves: started, never finished."""
    with _superuser_on(admin_dsn, copy) as conn:
        conn.execute(
            'insert into "_prisma_migrations" (id, checksum, migration_name, logs, started_at,'
            " applied_steps_count) values (%s, %s, %s, %s, now(), 0)",
            (str(uuid.uuid4()), prisma_checksum(b"alter table \"Video\" add column x int;"),
             name, 'ERROR: column "duration" of relation "Video" already exists'),
        )


def _no_secret(text: str, passwords: list[str]) -> None:
    for password in passwords:
        assert password not in text


# -- migration status --------------------------------------------------------------------------


def test_migration_status_all_applied(target: Target, passwords: list[str]) -> None:
    result = migration_status(target, TIMEOUTS)

    assert result.ok, result.problem
    observed = result.observed
    assert observed["applied"] == BUNDLED == observed["expected"]
    assert observed["pending"] == [] and observed["failed"] == [] and observed["modified"] == []
    assert observed["checksums_compared"] == len(BUNDLED) == 3
    assert observed["pending_judged"] is True
    _no_secret(json.dumps(result.evidence()), passwords)


def test_a_failed_migration_fails_the_check_naming_it(admin_dsn: str, copy_target: Target,
                                                       target: Target) -> None:
    _insert_failed_migration(admin_dsn, copy_target)

    result = migration_status(copy_target, TIMEOUTS)

    assert not result.ok
    assert FAKE_FAILED in result.problem and "P3009" in result.problem
    assert [f["migration_name"] for f in result.observed["failed"]] == [FAKE_FAILED]
    assert result.observed["failed"][0]["state"] == "failed"
    assert "already exists" in result.observed["failed"][0]["logs"]
    assert result.observed["applied"] == BUNDLED  # the others are still applied
    assert result.advice == "database-migrations"
    # The fake row lived in the copy only: the sandbox's own database is untouched.
    assert migration_status(target, TIMEOUTS).ok


def test_a_migration_modified_after_it_was_applied_is_detected(target: Target,
                                                               tmp_path: Path) -> None:
    local = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, local)
    edited = local / BUNDLED[1] / "migration.sql"
    edited.write_bytes(edited.read_bytes() + b"\n-- edited after deploy\n")

    result = migration_status(target, TIMEOUTS, migrations_dir=local)
    lenient = migration_status(target, TIMEOUTS, migrations_dir=local, strict_checksums=False)

    assert not result.ok
    assert "modified after it was applied" in result.problem and BUNDLED[1] in result.problem
    assert result.observed["modified"] == [BUNDLED[1]]
    assert lenient.ok and lenient.observed["modified"] == [BUNDLED[1]]


def test_line_endings_alone_are_not_a_modification(target: Target, tmp_path: Path) -> None:
    """Prisma accepts a checkout with CRLF line endings (git on Windows); so do we."""
    local = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, local)
    for name in BUNDLED:
        script = local / name / "migration.sql"
        script.write_bytes(script.read_bytes().replace(b"\n", b"\r\n"))

    result = migration_status(target, TIMEOUTS, migrations_dir=local)

    assert result.ok, result.problem
    assert result.observed["checksums_compared"] == 3


def test_an_expected_migration_not_applied_is_pending(target: Target) -> None:
    future = "20991231000000_not_yet_deployed"

    result = migration_status(target, TIMEOUTS, [*BUNDLED, future])

    assert not result.ok
    assert result.observed["pending"] == [future]
    assert "pending" in result.problem and future in result.problem
    assert result.advice == "database-schema"


def test_without_a_migrations_directory_pending_is_not_judged(sandbox: Any,
                                                             tmp_path: Path) -> None:
    variables = {k: v for k, v in sandbox.env.items() if k != "PLATFORM"}
    staging = Target.from_variables("staging-like", variables, source="test",
                                    environment="staging")

    unjudged = migration_status(staging, TIMEOUTS, environ={})
    local = tmp_path / "prisma-migrations"
    shutil.copytree(MIGRATIONS_DIR, local)
    (local / "20991231000000_next").mkdir()
    (local / "20991231000000_next" / "migration.sql").write_text("select 1;\n")
    judged = migration_status(staging, TIMEOUTS, environ={MIGRATIONS_DIR_VARIABLE: str(local)})

    assert unjudged.ok
    assert unjudged.observed["pending_judged"] is False and unjudged.observed["pending"] is None
    assert MIGRATIONS_DIR_VARIABLE in unjudged.observed["note"]
    assert MIGRATIONS_DIR_VARIABLE in unjudged.expected
    assert not judged.ok and judged.observed["pending"] == ["20991231000000_next"]
    with pytest.raises(ConfigError, match=MIGRATIONS_DIR_VARIABLE):
        migration_status(staging, TIMEOUTS, environ={MIGRATIONS_DIR_VARIABLE: "/nonexistent"})


def test_prisma_url_parameters_are_understood(sandbox: Any) -> None:
    """A real Prisma DATABASE_URL carries ?schema=...&connection_limit=..., which libpq
    refuses; the schema names where _prisma_migrations lives."""
    url = sandbox.env["DATABASE_URL"]
    public = Target.from_variables("prisma-url", {**sandbox.env, "DATABASE_URL":
                                   f"{url}?schema=public&connection_limit=5"},
                                   source="test", environment="sandbox")
    other = Target.from_variables("prisma-url", {**sandbox.env, "DATABASE_URL":
                                  f"{url}?schema=reporting"}, source="test",
                                  environment="sandbox")

    assert migration_status(public, TIMEOUTS).ok
    missing = migration_status(other, TIMEOUTS)
    assert not missing.ok and "reporting._prisma_migrations" in missing.problem


def test_assessment_follows_prisma_row_semantics() -> None:
    def row(name: str, finished: bool, rolled_back: bool, checksum: str = "") -> MigrationRow:
        moment = datetime(2024, 1, 1, tzinfo=UTC)
        return MigrationRow(str(uuid.uuid4()), name, checksum, moment,
                            moment if finished else None, moment if rolled_back else None,
                            1 if finished else 0, None)

    rows = [
        row("1_a", True, False, prisma_checksum(b"a")),
        row("2_b", False, True),            # rolled back, then applied again below
        row("2_b", True, False, prisma_checksum(b"b")),
        row("3_c", False, True),            # rolled back only: pending again
        row("4_d", False, False),           # failed
        row("5_e", True, False, "x"),       # applied, not expected: unknown
    ]
    found = assess_migrations(rows, ["1_a", "2_b", "3_c", "4_d"], {"1_a": b"a", "2_b": b"B"})

    assert found.applied == ("1_a", "2_b", "5_e")
    assert found.failed_names == ("4_d",)
    assert found.rolled_back == ("3_c",)
    assert found.pending == ("3_c", "4_d")
    assert found.unknown == ("5_e",)
    assert found.modified == ("2_b",)
    assert not found.ok


def test_checksums_match_as_prisma_matches_them() -> None:
    script = b"create table a (id int);\ncreate table b (id int);\n"
    recorded = prisma_checksum(script)

    assert checksum_matches(script, recorded)
    assert checksum_matches(script.replace(b"\n", b"\r\n"), recorded)
    assert not checksum_matches(script + b"-- more\n", recorded)
    old_style = "".join(f"{byte:x}" for byte in bytes.fromhex(recorded))  # not zero-padded
    assert checksum_matches(script, old_style) == (len(old_style) != 64)


def test_checks_run_in_read_only_sessions(target: Target) -> None:
    endpoint = parse_dsn(target.require("DATABASE_URL"))
    with open_connection(endpoint, connect_timeout_s=5, statement_timeout_s=5) as conn, \
            pytest.raises(errors.ReadOnlySqlTransaction):
        conn.execute("create table runbook_must_not_exist (id int)")


# -- rollback preconditions --------------------------------------------------------------------


def test_rollback_of_an_applied_migration_is_refused_as_prisma_would(target: Target) -> None:
    result = rollback_preconditions(target, TIMEOUTS, BUNDLED[-1])

    assert not result.ok
    observed = result.observed
    assert observed["exists"] is True and observed["state"] == "applied"
    assert observed["resolve_rolled_back_accepts"] is False
    assert observed["prisma_error"].startswith("P3012")
    assert "never undoes an applied migration" in result.problem
    assert "runbook" in observed["runbook_defect"] and "P3012" in observed["runbook_defect"]
    assert "out of scope" in observed["backup_newer_than_migration"]
    assert observed["in_migrations_dir"] is True and observed["read_only"] is True


def test_rollback_of_a_failed_migration_meets_the_preconditions(admin_dsn: str,
                                                                copy_target: Target) -> None:
    _insert_failed_migration(admin_dsn, copy_target)

    result = rollback_preconditions(copy_target, TIMEOUTS, FAKE_FAILED)

    assert result.ok, result.problem
    observed = result.observed
    assert observed["state"] == "failed" and observed["resolve_rolled_back_accepts"] is True
    assert observed["prisma_error"] is None
    assert "no SQL of the migration is undone" in observed["resolve_rolled_back_does"]
    assert observed["in_migrations_dir"] is False  # the fix is not in the checkout yet
    # Read-only: the row is still failed afterwards.
    with _superuser_on(admin_dsn, copy_target) as conn:
        still = conn.execute('select rolled_back_at from "_prisma_migrations"'
                             " where migration_name = %s", (FAKE_FAILED,)).fetchone()
    assert still == (None,)


def test_rollback_of_an_unknown_migration_is_p3011(target: Target) -> None:
    result = rollback_preconditions(target, TIMEOUTS, "20240101000000_typo")

    assert not result.ok
    assert result.observed["state"] == "absent" and result.observed["exists"] is False
    assert "P3011" in result.problem


# -- backup round trip -------------------------------------------------------------------------


def _counts(dsn: str) -> dict[str, int]:
    counts = {}
    with open_connection(parse_dsn(dsn), connect_timeout_s=5, statement_timeout_s=30) as conn:
        for table in ("User", "Video", "Release", "AuditLog", "_prisma_migrations"):
            row = conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier(table))).fetchone()
            assert row is not None
            counts[f"public.{table}"] = int(row[0])
    return counts


def _round_trip(sandbox: Any, workdir: Path, **options: Any) -> BackupRecord:
    box = sandbox.sandbox
    return backup_round_trip(sandbox.env["DATABASE_URL"], box.superuser_dsn("postgres"),
                             box.bindir, TIMEOUTS, workdir=workdir, **options)


def test_backup_round_trip_restores_an_equal_copy(sandbox: Any, admin_dsn: str, tmp_path: Path,
                                                 passwords: list[str]) -> None:
    record = _round_trip(sandbox, tmp_path)

    assert record.ok, record.problem
    counts = _counts(sandbox.env["DATABASE_URL"])
    by_table = {t.table: t for t in record.tables}
    assert set(counts) <= set(by_table)
    for table, rows in counts.items():
        check = by_table[table]
        assert check.source_rows == check.restored_rows == rows
        assert check.source_checksum == check.restored_checksum
        assert check.source_checksum and len(check.source_checksum) == 32
        assert check.key == ("id",) and check.method == "hash"
    assert record.scratch_dropped and record.scratch_database.startswith(SCRATCH_PREFIX)
    assert record.scratch_database not in _leftovers(admin_dsn)
    assert scratch_databases(admin_dsn, TIMEOUTS) == []
    assert list(tmp_path.iterdir()) == []  # the dump was deleted
    assert record.dump_bytes > 0 and record.source_database_bytes
    assert {"create", "dump", "restore", "compare", "drop"} <= set(record.phases)
    names = [a.name for a in record.activities]
    assert {"create scratch database", "pg_dump", "pg_restore", "drop scratch database"} <= set(
        names)
    assert all(a.ok for a in record.activities)
    dump = next(a for a in record.activities if a.name == "pg_dump")
    assert any(part.startswith("--snapshot=") for part in dump.command)
    assert record.snapshot_consistent
    everything = json.dumps(record.evidence())
    _no_secret(everything, passwords)
    assert "password" not in " ".join(" ".join(a.command) for a in record.activities)


def test_a_corrupted_restore_is_detected(sandbox: Any, tmp_path: Path) -> None:
    def lose_a_row(scratch_dsn: str) -> None:
        with _writer(scratch_dsn) as conn:
            conn.execute('delete from "AuditLog" where id = (select min(id) from "AuditLog")')

    record = _round_trip(sandbox, tmp_path, before_compare=lose_a_row)

    assert not record.ok
    assert [t.table for t in record.mismatches] == ["public.AuditLog"]
    audit = record.mismatches[0]
    assert audit.restored_rows == (audit.source_rows or 0) - 1
    assert "public.AuditLog" in record.problem and "restored" in record.problem
    assert record.scratch_dropped


def test_a_changed_value_with_equal_counts_is_detected(sandbox: Any, tmp_path: Path) -> None:
    """Same row count, one enum value changed: only the checksum can tell (and enums are
    hashed by their label, not their OID, which the restore renumbers)."""
    def change_a_status(scratch_dsn: str) -> None:
        with _writer(scratch_dsn) as conn:
            conn.execute("""update "Video" set status = 'FAILED'
                            where id = (select min(id) from "Video")""")

    record = _round_trip(sandbox, tmp_path, before_compare=change_a_status, pipeline=False)

    assert [t.table for t in record.mismatches] == ["public.Video"]
    video = record.mismatches[0]
    assert video.source_rows == video.restored_rows
    assert video.source_checksum != video.restored_checksum
    assert "contents differ" in record.problem


def test_the_runbooks_plain_sql_form_round_trips_with_psql(sandbox: Any, tmp_path: Path) -> None:
    record = _round_trip(sandbox, tmp_path, dump_format="plain", pipeline=False, keep_dump=True)

    assert record.ok, record.problem
    assert record.dump_path is not None
    dump = Path(record.dump_path)
    try:
        assert dump.read_text().startswith("--\n-- PostgreSQL database dump")
        assert stat.S_IMODE(dump.stat().st_mode) == 0o600
        assert any(a.name == "psql restore" for a in record.activities)
    finally:
        dump.unlink()


def test_parallel_restore_from_the_dump_file(sandbox: Any, tmp_path: Path) -> None:
    record = _round_trip(sandbox, tmp_path, pipeline=False, jobs=2)

    assert record.ok, record.problem
    restore = next(a for a in record.activities if a.name == "pg_restore")
    assert "--jobs=2" in restore.command and not record.pipelined


def test_exotic_types_round_trip(sandbox: Any, admin_dsn: str, copy_target: Target,
                                 tmp_path: Path) -> None:
    """json (no hash function: compared as text), enum arrays, a table without a primary
    key, numerics, bytea, intervals; and a corrupted enum array is still caught."""
    with _superuser_on(admin_dsn, copy_target) as conn:
        conn.execute("""
            create table "Exotic" (payload json, roles "Role"[], amount numeric(12, 3),
                                   blob bytea, span interval, at timestamptz);
            insert into "Exotic" select json_build_object('n', g), array['ADMIN', 'USER']::"Role"[],
                g / 7.0, decode(md5(g::text), 'hex'), make_interval(secs => g), now()
            from generate_series(1, 500) g;
            create table "Tagged" (id int primary key, roles "Role"[], note text collate "C");
            insert into "Tagged" select g, array['USER']::"Role"[], 'n' || g
            from generate_series(1, 500) g;
            alter table "Exotic" owner to legacyvideo;
            alter table "Tagged" owner to legacyvideo;
        """)
    box = sandbox.sandbox
    source = copy_target.require("DATABASE_URL")

    record = backup_round_trip(source, box.superuser_dsn("postgres"), box.bindir, TIMEOUTS,
                               workdir=tmp_path)

    def corrupt(scratch_dsn: str) -> None:
        with _writer(scratch_dsn) as conn:
            conn.execute("""update "Tagged" set roles = array['ADMIN']::"Role"[] where id = 7""")

    corrupted = backup_round_trip(source, box.superuser_dsn("postgres"), box.bindir, TIMEOUTS,
                                  workdir=tmp_path, before_compare=corrupt)

    assert record.ok, record.problem
    methods = {t.table: t.method for t in record.tables}
    assert methods["public.Exotic"] == "text" and methods["public.Tagged"] == "hash"
    exotic = next(t for t in record.tables if t.table == "public.Exotic")
    assert exotic.key == () and exotic.source_rows == 500
    assert [t.table for t in corrupted.mismatches] == ["public.Tagged"]


def test_writes_during_the_round_trip_cause_no_false_mismatch(
        sandbox: Any, copy_target: Target, tmp_path: Path) -> None:
    """The source is checksummed at the dump's own snapshot: rows committed while the round
    trip runs are in neither side."""
    source = copy_target.require("DATABASE_URL")
    with _writer(source) as conn:  # the copy holds the shared sandbox's audit rows so far
        row = conn.execute('select count(*) from "AuditLog"').fetchone()
        before = int(row[0]) if row else 0
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        with _writer(source) as conn:
            while not stop.is_set():
                conn.execute('insert into "AuditLog" (id, action) values (%s, %s)',
                             (str(uuid.uuid4()), "LIVE_WRITE"))
                written.append(1)
                time.sleep(0.001)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        while not written:
            time.sleep(0.01)
        box = sandbox.sandbox
        record = backup_round_trip(source, box.superuser_dsn("postgres"), box.bindir,
                                   TIMEOUTS, workdir=tmp_path)
        during = len(written)
    finally:
        stop.set()
        writer.join(10)

    assert record.ok, record.problem
    assert during > 10  # the writer really wrote while the round trip ran
    audit = next(t for t in record.tables if t.table == "public.AuditLog")
    # Some of the live rows were committed before the dump's snapshot, the rest after it.
    assert audit.source_rows is not None and before < audit.source_rows < before + len(written)


def test_the_dump_spool_reports_a_full_disk(tmp_path: Path) -> None:
    """Streaming into the dump file on a full disk names the disk, not the broken pipes."""
    data_read, data_write = os.pipe()
    os.write(data_write, b"x" * 1000)
    os.close(data_write)
    full = os.open("/dev/full", os.O_WRONLY)
    spool = backup._Spool(tmp_path / "unused.dump", full)
    try:
        with open(data_read, "rb") as source:
            spool.write_from(source)
    finally:
        os.close(full)

    assert spool.error.startswith("writing the dump file:") and "space" in spool.error
    assert spool.bytes == 0 and spool.done


def test_the_dump_spool_feeds_the_restore_as_the_file_grows(tmp_path: Path) -> None:
    path = tmp_path / "spool.dump"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    spool = backup._Spool(path, fd)
    data_read, data_write = os.pipe()
    sink_read, sink_write = os.pipe()
    payload = os.urandom(3 * 1024 * 1024 + 17)
    received = bytearray()

    def drain() -> None:
        with open(sink_read, "rb") as sink:
            while chunk := sink.read(65536):
                received.extend(chunk)

    with open(data_read, "rb") as source, open(sink_write, "wb") as sink:
        threads = [threading.Thread(target=spool.write_from, args=(source,)),
                   threading.Thread(target=spool.feed, args=(sink,)),
                   threading.Thread(target=drain)]
        for thread in threads:
            thread.start()
        for offset in range(0, len(payload), 500_000):
            os.write(data_write, payload[offset:offset + 500_000])
            time.sleep(0.01)
        os.close(data_write)
        for thread in threads:
            thread.join(10)
    os.close(fd)

    assert bytes(received) == payload == path.read_bytes()
    assert spool.bytes == len(payload) and not spool.error and not spool.restore_gone


def test_a_failing_restore_is_recorded_and_cleaned_up(sandbox: Any, tmp_path: Path,
                                                      admin_dsn: str) -> None:
    real = Path(sandbox.sandbox.bindir)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("pg_dump", "psql"):
        (bindir / tool).symlink_to(real / tool)
    fake = bindir / "pg_restore"
    fake.write_text('#!/bin/sh\necho "pg_restore: error: simulated: disk full" >&2\nexit 1\n')
    fake.chmod(0o755)
    work = tmp_path / "work"

    record = backup_round_trip(sandbox.env["DATABASE_URL"],
                               sandbox.sandbox.superuser_dsn("postgres"), bindir, TIMEOUTS,
                               workdir=work)

    assert not record.ok
    assert record.problem.startswith("pg_restore: exit status 1")
    assert "simulated: disk full" in record.problem
    assert record.scratch_dropped and record.tables == ()
    assert list(work.iterdir()) == []
    failed = next(a for a in record.activities if a.name == "pg_restore")
    assert not failed.ok and "disk full" in failed.output


def test_a_failing_post_data_pass_is_recorded(sandbox: Any, tmp_path: Path) -> None:
    """Pipelined, indexes and constraints are restored from the file in a second pass while
    the tables are checksummed: its failure fails the round trip too."""
    real = Path(sandbox.sandbox.bindir)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pg_dump").symlink_to(real / "pg_dump")
    fake = bindir / "pg_restore"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--section=post-data*)'
        ' echo "pg_restore: error: could not create index: simulated" >&2; exit 1;; esac\n'
        f'exec "{real / "pg_restore"}" "$@"\n')
    fake.chmod(0o755)

    record = backup_round_trip(sandbox.env["DATABASE_URL"],
                               sandbox.sandbox.superuser_dsn("postgres"), bindir, TIMEOUTS,
                               workdir=tmp_path / "work")

    assert not record.ok
    assert record.problem.startswith("pg_restore post-data: exit status 1")
    assert [a.name for a in record.activities if not a.ok] == ["pg_restore post-data"]
    assert record.scratch_dropped and not any((tmp_path / "work").iterdir())


def test_a_bad_password_is_recorded_without_the_password(sandbox: Any, tmp_path: Path,
                                                         passwords: list[str]) -> None:
    parts = urlsplit(sandbox.env["DATABASE_URL"])
    wrong = "not-the-password-4711"
    url = urlunsplit(parts._replace(netloc=f"{parts.username}:{wrong}@{parts.hostname}:"
                                           f"{parts.port}"))
    box = sandbox.sandbox

    record = backup_round_trip(url, box.superuser_dsn("postgres"), box.bindir, TIMEOUTS,
                               workdir=tmp_path)

    assert not record.ok and record.problem.startswith("connect:")
    assert "password authentication failed" in record.problem
    _no_secret(json.dumps(record.evidence()), [*passwords, wrong])
    assert record.scratch_dropped


def test_the_scratch_database_is_never_the_source(sandbox: Any, tmp_path: Path) -> None:
    with pytest.raises(SafetyGateError, match="source database itself"):
        _round_trip(sandbox, tmp_path, scratch_name="legacyvideo")
    with pytest.raises(SafetyGateError, match="runbook_restore_"):
        _round_trip(sandbox, tmp_path, scratch_name="postgres")
    assert list(tmp_path.iterdir()) == []


def test_a_source_named_like_a_scratch_database_is_refused(
        sandbox: Any, admin_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate holds for the database the server reports, not only the one the DSN names
    (here the DSN names none and libpq takes PGDATABASE)."""
    name = f"{SCRATCH_PREFIX}{secrets.token_hex(3)}"
    with _admin(admin_dsn) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        monkeypatch.setenv("PGDATABASE", name)
        without_db = parse_dsn(admin_dsn)
        params = {k: v for k, v in without_db.params.items() if k != "dbname"}
        source = type(without_db)(params, without_db.password)
        with pytest.raises(SafetyGateError, match="source database itself"):
            backup_round_trip(source.dsn(), admin_dsn, sandbox.sandbox.bindir, TIMEOUTS,
                              workdir=tmp_path, scratch_name=name)
        with _admin(admin_dsn) as conn:  # refused, so not dropped
            assert conn.execute("select count(*) from pg_database where datname = %s",
                                (name,)).fetchone() == (1,)
    finally:
        with _admin(admin_dsn) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def test_a_missing_tool_is_a_configuration_error(sandbox: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pg_dump"):
        backup_round_trip(sandbox.env["DATABASE_URL"], sandbox.sandbox.superuser_dsn("postgres"),
                          tmp_path / "empty-bindir", TIMEOUTS, workdir=tmp_path / "work")
    assert not any((tmp_path / "work").iterdir())
