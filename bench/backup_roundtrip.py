"""Backup round trip against a bare ``pg_dump -Fc | pg_restore``, at 100,000+ rows.

    .venv/bin/python bench/backup_roundtrip.py [--runs 3] [--rows 100000] [--json]

Uses the sandbox of ``RUNBOOK_HOME`` when one runs there, else starts one in a temporary
home (destroyed afterwards). The sandbox's own data is never touched: its database is
cloned (``CREATE DATABASE ... TEMPLATE legacyvideo``, what ``createdb -T`` does) into
``runbook_bench_<hex>``, the clone grown with ``generate_series`` (Video and AuditLog rows
owned by the seeded users), vacuumed and analysed, and dropped at the end.

Each run measures, alternating which goes first:

* ours: ``runbook.actions.backup.backup_round_trip`` (dump, create, restore, compare
  row counts and checksums on both sides, drop);
* plain: ``createdb -T template0 X && pg_dump -Fc SRC | pg_restore -d X && dropdb --force X``.

One warm-up run of each is discarded. Prints the median seconds of each, the ratio, the
rows and the dump size (and ``--json`` for machines).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from psycopg import errors, sql

from runbook.actions.backup import BackupRecord, backup_round_trip
from runbook.pg import PgEndpoint, open_connection, parse_dsn
from runbook.sandbox import Sandbox
from runbook.timeouts import Timeouts

COMMAND_TIMEOUT_S = 600.0
STATEMENT_TIMEOUT_S = 600.0
TIMEOUTS = Timeouts(connect=5.0, read=30.0, deadline=60.0)

GROW_SQL = """
insert into "Video" ("id", "ownerId", "title", "s3Key", "contentType", "status",
                     "createdAt", "updatedAt")
select md5('bench-video-' || g)::uuid::text,
       (array['{user}', '{canary}'])[1 + g % 2],
       'Bench video ' || g,
       'videos/bench/' || md5('bench-video-' || g) || '/clip.mp4',
       'video/mp4',
       (array['PENDING_UPLOAD', 'UPLOADED', 'READY'])[1 + g % 3]::"VideoStatus",
       now() - make_interval(secs => g), now() - make_interval(secs => g / 2)
from generate_series(1, {videos}) g;

insert into "AuditLog" ("id", "userId", "action", "ip", "metadata", "createdAt")
select md5('bench-audit-' || g)::uuid::text,
       case when g % 10 = 0 then null else (array['{admin}', '{user}', '{canary}'])[1 + g % 3] end,
       (array['LOGIN_SUCCESS', 'LOGIN_FAILURE', 'RELEASE_REQUESTED', 'USER_LOCKED'])[1 + g % 4],
       '10.' || (g % 250) || '.' || (g % 200) || '.' || (g % 199 + 1),
       jsonb_build_object('n', g, 'path', '/api/auth/login', 'agent', 'bench/1.0'),
       now() - make_interval(secs => g)
from generate_series(1, {audits}) g;
"""


def _run(argv: list[str], env: dict[str, str]) -> None:
    subprocess.run(argv, env=env, check=True, timeout=COMMAND_TIMEOUT_S,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _clone(admin: PgEndpoint, template: str, name: str) -> None:
    """``createdb -T template name``, retried while the template has a session open."""
    with open_connection(admin, connect_timeout_s=5, statement_timeout_s=STATEMENT_TIMEOUT_S,
                         read_only=False) as conn:
        for attempt in range(50):
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)))
                return
            except errors.ObjectInUse:
                if attempt == 49:
                    raise
                time.sleep(0.1)


def _drop(admin: PgEndpoint, name: str) -> None:
    with open_connection(admin, connect_timeout_s=5, statement_timeout_s=STATEMENT_TIMEOUT_S,
                         read_only=False) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def _grow(db: PgEndpoint, rows: int) -> int:
    """Add ``rows`` rows (a quarter videos, the rest audit entries); return the total rows."""
    videos = rows // 4
    with open_connection(db, connect_timeout_s=5, statement_timeout_s=STATEMENT_TIMEOUT_S,
                         read_only=False) as conn:
        users = dict(conn.execute('select "email", "id" from "User"').fetchall())
        statement = GROW_SQL.format(
            videos=videos, audits=rows - videos,
            admin=users["admin@legacyvideo.test"], user=users["user@legacyvideo.test"],
            canary=users["canary@legacyvideo.test"],
        )
        conn.execute(statement.encode())
        conn.execute("vacuum analyze")
        total = 0
        for table in ("User", "Video", "Release", "AuditLog", "_prisma_migrations"):
            found = conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier(table))).fetchone()
            total += int(found[0]) if found else 0
        return total


def _plain(bindir: Path, source: PgEndpoint, admin: PgEndpoint) -> float:
    """Seconds for createdb, ``pg_dump -Fc | pg_restore -d``, dropdb --force."""
    name = f"runbook_restore_plain_{secrets.token_hex(4)}"
    scratch = admin.with_dbname(name)
    admin_env = admin.tool_env()
    started = time.monotonic()
    _run([str(bindir / "createdb"), "-T", "template0",
          f"--maintenance-db={admin.conninfo()}", name], admin_env)
    try:
        dump = subprocess.Popen(
            [str(bindir / "pg_dump"), "-Fc", f"--dbname={source.conninfo()}"],
            env=source.tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert dump.stdout is not None
        restore = subprocess.run(
            [str(bindir / "pg_restore"), f"--dbname={scratch.conninfo()}"],
            env=scratch.tool_env(), stdin=dump.stdout, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, timeout=COMMAND_TIMEOUT_S, check=False)
        dump.stdout.close()
        dump.wait(timeout=COMMAND_TIMEOUT_S)
        if dump.returncode or restore.returncode:
            raise RuntimeError(f"plain round trip failed: pg_dump {dump.returncode},"
                               f" pg_restore {restore.returncode}: {restore.stderr[-500:]!r}")
    finally:
        _run([str(bindir / "dropdb"), "--force", f"--maintenance-db={admin.conninfo()}",
              name], admin_env)
    return time.monotonic() - started


def _ours(box: Sandbox, source_dsn: str, workdir: Path, pipeline: bool) -> BackupRecord:
    record = backup_round_trip(source_dsn, box.superuser_dsn("postgres"), box.bindir,
                               TIMEOUTS, workdir=workdir, pipeline=pipeline)
    if not record.ok:
        raise RuntimeError(f"backup round trip failed: {record.problem}")
    return record


def bench(box: Sandbox, runs: int, rows: int, pipeline: bool = True) -> dict[str, Any]:
    admin = parse_dsn(box.superuser_dsn("postgres"))
    app = parse_dsn(box.env()["DATABASE_URL"])
    name = f"runbook_bench_{secrets.token_hex(4)}"
    _clone(admin, app.dbname, name)
    try:
        total_rows = _grow(admin.with_dbname(name), rows)
        source = app.with_dbname(name)
        source_dsn = source.dsn()
        ours: list[float] = []
        plain: list[float] = []
        phases: dict[str, list[float]] = {}
        record: BackupRecord | None = None
        with tempfile.TemporaryDirectory(prefix="runbook-bench-") as work:
            for run in range(runs + 1):
                order = ("ours", "plain") if run % 2 == 0 else ("plain", "ours")
                for which in order:
                    if which == "ours":
                        record = _ours(box, source_dsn, Path(work), pipeline)
                        if run:
                            ours.append(record.elapsed_s)
                            for phase, timing in record.phases.items():
                                phases.setdefault(phase, []).append(timing.elapsed_s)
                    else:
                        seconds = _plain(box.bindir, source, admin)
                        if run:
                            plain.append(seconds)
        assert record is not None
        ours_median, plain_median = statistics.median(ours), statistics.median(plain)
        return {
            "rows": total_rows,
            "compared_rows": record.source_rows,
            "dump_bytes": record.dump_bytes,
            "source_database_bytes": record.source_database_bytes,
            "jobs": record.jobs,
            "pipelined": record.pipelined,
            "cpus": os.cpu_count(),
            "runs": runs,
            "ours_s": [round(x, 3) for x in ours],
            "plain_s": [round(x, 3) for x in plain],
            "ours_median_s": round(ours_median, 3),
            "plain_median_s": round(plain_median, 3),
            "ratio": round(ours_median / plain_median, 3),
            "ours_phase_median_s": {k: round(statistics.median(v), 3) for k, v in phases.items()},
        }
    finally:
        _drop(admin, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000, help="rows to add (>= 100000)")
    parser.add_argument("--no-pipeline", action="store_true",
                        help="restore the finished dump file with pg_restore --jobs instead")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    home = os.environ.get("RUNBOOK_HOME")
    temporary = None if home else tempfile.mkdtemp(prefix="runbook-bench-home-")
    box = Sandbox(home or temporary)
    started_here = box.status().supervisor_pid is None
    try:
        if started_here:
            box.up(timeout=120)
        result = bench(box, args.runs, args.rows, pipeline=not args.no_pipeline)
    except (psycopg.Error, subprocess.SubprocessError, RuntimeError) as exc:
        print(f"bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if temporary is not None:
            box.destroy()
        elif started_here:
            box.down()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"rows: {result['rows']} (compared: {result['compared_rows']}),"
              f" dump: {result['dump_bytes'] / 1e6:.2f} MB,"
              f" database: {result['source_database_bytes'] / 1e6:.1f} MB,"
              f" jobs: {result['jobs']} on {result['cpus']} CPUs, pipelined: {result['pipelined']}")
        print(f"backup_round_trip (dump+create+restore+compare+drop): median"
              f" {result['ours_median_s']:.3f} s  {result['ours_s']}")
        print(f"plain createdb + pg_dump -Fc | pg_restore + dropdb:      median"
              f" {result['plain_median_s']:.3f} s  {result['plain_s']}")
        print(f"ratio: {result['ratio']:.2f}x   phases (median s): {result['ours_phase_median_s']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
