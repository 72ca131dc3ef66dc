"""The database: it connects and answers, and LegacyVideo's tables are there.

The runbook's ``prisma db pull`` rewrites ``schema.prisma``; this introspects read-only
instead: every session is ``default_transaction_read_only`` with a statement timeout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import psycopg

from runbook.config import Target
from runbook.probes import Verdict, run_probe
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts

#: The tables a LegacyVideo database has (Prisma's names), migrations table included.
LEGACYVIDEO_TABLES: tuple[str, ...] = ("User", "Video", "Release", "AuditLog",
                                       "_prisma_migrations")


def connect(dsn: str, timeouts: Timeouts, *, read_only: bool = True) -> psycopg.Connection:
    """A connection with a bounded connect and statement time; read-only unless asked."""
    options = f"-c statement_timeout={int(timeouts.read * 1000)}"
    if read_only:
        options += " -c default_transaction_read_only=on"
    return psycopg.connect(
        dsn, connect_timeout=max(1, math.ceil(timeouts.connect)), options=options,
        autocommit=True, application_name="legacyvideo-runbook",
    )


def answers(target: Target, timeouts: Timeouts) -> ProbeResult:
    """Connect and run a query; records server version, round-trip time and connections."""
    expected = "a connection and an answer to a query"
    dsn = target.require("DATABASE_URL")

    def body() -> Verdict:
        started = time.monotonic()
        with connect(dsn, timeouts) as conn:
            connected_ms = (time.monotonic() - started) * 1000
            row = conn.execute(
                "select current_setting('server_version'), current_database(),"
                " (select count(*) from pg_stat_activity),"
                " current_setting('max_connections')::int"
            ).fetchone()
        assert row is not None
        version, database, connections, max_connections = row
        return Verdict(True, expected, observed={
            "server_version": version,
            "database": database,
            "connect_ms": round(connected_ms, 1),
            "connections": connections,
            "max_connections": max_connections,
        })

    return run_probe("database", "answers", target, timeouts, body, expected=expected)


def schema(target: Target, timeouts: Timeouts,
           tables: Sequence[str] = LEGACYVIDEO_TABLES) -> ProbeResult:
    """Introspect, read-only, that ``tables`` exist; records every table the schema has."""
    expected = f"tables {', '.join(tables)}"
    dsn = target.require("DATABASE_URL")

    def body() -> Verdict:
        with connect(dsn, timeouts) as conn:
            found = [
                name for (name,) in conn.execute(
                    "select table_name from information_schema.tables"
                    " where table_schema = current_schema() order by table_name"
                )
            ]
        missing = [t for t in tables if t not in found]
        observed = {"tables": found, "missing": missing}
        if missing:
            return Verdict(False, expected, f"missing tables {', '.join(missing)}", observed,
                           advice="database-schema")
        return Verdict(True, expected, observed=observed)

    return run_probe("database", "schema", target, timeouts, body, expected=expected)
