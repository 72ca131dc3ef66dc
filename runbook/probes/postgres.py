"""The database: it connects and answers, and LegacyVideo's tables are there.

The runbook's ``prisma db pull`` rewrites ``schema.prisma``; this introspects read-only
instead: every session is ``default_transaction_read_only`` with a statement timeout.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from runbook.clients import postgres as connect
from runbook.config import Target
from runbook.probes import Verdict, run_probe
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts

#: The tables a LegacyVideo database has (Prisma's names), migrations table included.
LEGACYVIDEO_TABLES: tuple[str, ...] = ("User", "Video", "Release", "AuditLog",
                                       "_prisma_migrations")


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


# -- slow queries ----------------------------------------------------------------------------

_ACTIVITY_SQL = (
    "select pid, application_name, state, wait_event_type,"
    " round(extract(epoch from now() - query_start) * 1000)::bigint as running_ms,"
    " round(extract(epoch from now() - xact_start) * 1000)::bigint as xact_ms,"
    " pg_blocking_pids(pid) as blocked_by,"
    " left(regexp_replace(query, '\\s+', ' ', 'g'), 160) as query"
    " from pg_stat_activity"
    " where datname = current_database() and pid <> pg_backend_pid()"
    " and backend_type = 'client backend' and state is distinct from 'idle'"
)


def sessions(target: Target, timeouts: Timeouts) -> list[dict[str, Any]]:
    """The database's non-idle client sessions from ``pg_stat_activity`` (read-only)."""
    with connect(target.require("DATABASE_URL"), timeouts) as conn:
        cursor = conn.execute(_ACTIVITY_SQL)
        names = [c.name for c in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def offenders(found: Sequence[Mapping[str, Any]], threshold_ms: float
              ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], list[int]]:
    """Statements running over ``threshold_ms``, sessions that have waited on a lock that
    long, and the pids that block them (the cause when something waits), worst first. A
    shorter wait is two writers meeting on a row, which any busy database (or the runbook's
    own checks run with ``--workers``) shows at times; the statement's run time counts its
    wait."""
    slow = sorted((s for s in found if s.get("state") == "active"
                   and int(s.get("running_ms") or 0) >= threshold_ms),
                  key=lambda s: -int(s.get("running_ms") or 0))
    waiting = [s for s in found
               if s.get("blocked_by") and int(s.get("running_ms") or 0) >= threshold_ms]
    blockers = sorted({int(pid) for s in waiting for pid in s["blocked_by"]})
    return slow, waiting, blockers


def slow_queries(target: Target, timeouts: Timeouts, *, threshold_ms: float,
                 watch_s: float = 1.5, samples: int = 6) -> ProbeResult:
    """No statement runs over ``threshold_ms`` and no session waits on a lock, in
    ``pg_stat_activity`` (duration, ``pg_blocking_pids``) sampled ``samples`` times over
    ``watch_s`` seconds: a statement is over the threshold only in the last part of its run,
    so one look can miss it. Records each offending session's pid, application, duration and
    statement (first 160 characters) at the worst sample. Read-only."""
    expected = (f"no statement over {threshold_ms:g} ms, no session waiting on a lock"
                f" ({samples} looks over {watch_s:g} s)")

    def body() -> Verdict:
        worst: tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], list[int]] = ([], [], [])
        looked = 0
        for index in range(samples):
            if index:
                time.sleep(watch_s / max(1, samples - 1))
            found = sessions(target, timeouts)
            looked += 1
            seen = offenders(found, threshold_ms)
            if len(seen[0]) + len(seen[1]) > len(worst[0]) + len(worst[1]):
                worst = seen
        slow, waiting, blockers = worst
        observed = {"looks": looked, "threshold_ms": threshold_ms, "slow": slow[:5],
                    "waiting": waiting[:5], "blockers": blockers}
        if not slow and not waiting:
            return Verdict(True, expected, observed=observed)
        parts = []
        if slow:
            top = slow[0]
            parts.append(f"{len(slow)} statement(s) over {threshold_ms:g} ms (longest"
                         f" {top['running_ms']} ms: pid {top['pid']}"
                         f" {top['application_name'] or '-'}: {top['query']})")
        if waiting:
            parts.append(f"{len(waiting)} session(s) waiting on locks held by pid(s)"
                         f" {', '.join(map(str, blockers))}")
        return Verdict(False, expected, "; ".join(parts), observed, advice="database-slow")

    budget = replace(timeouts, deadline=timeouts.deadline + watch_s)
    return run_probe("database", "slow queries", target, budget, body, expected=expected)
