"""The audit log reviewed: bursts of failed logins, admin actions from new addresses, and
rows kept beyond the retention period (Maintenance Tasks > Weekly and Monthly).

Read-only SQL on LegacyVideo's ``"AuditLog"`` table (Prisma keeps ``"createdAt"`` as a UTC
``timestamp(3)``, so every cut-off is passed as a naive UTC time). Failed logins against the
runbook's own canary accounts (``runbook-canary-<hex>@...``, made and removed by its
operations and game days) are not counted: they are the runbook proving that a locked or
rotated canary is refused, not somebody guessing passwords.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook.config import Target
from runbook.errors import ConfigError
from runbook.probes import Verdict, run_probe
from runbook.probes.canaries import CANARY_PREFIX
from runbook.probes.postgres import connect
from runbook.results import ProbeResult, utcnow
from runbook.timeouts import Timeouts

#: The advice keys (``runbook.sections.NEXT_STEPS``) of these checks' failures.
REVIEW_ADVICE = "maintenance-audit-log"
ARCHIVE_ADVICE = "maintenance-audit-archive"
#: Actions only an admin can take (LegacyVideo's admin API); an admin's own rows count too.
ADMIN_ACTIONS: tuple[str, ...] = ("USER_LOCKED", "USER_UNLOCKED", "TOKENS_REVOKED")
#: The e-mail pattern (POSIX regex) of the runbook's canary accounts.
CANARY_EMAIL = f"^{CANARY_PREFIX}[0-9a-f]{{8,}}@"
#: How many offending addresses a result keeps as evidence.
KEPT = 10
#: Overrides the audit log retention period a scenario states, in days.
RETENTION_VARIABLE = "RUNBOOK_AUDIT_RETENTION_DAYS"

_BURSTS = """
WITH failures AS (
    SELECT "ip", "createdAt", coalesce("metadata"->>'email', '') AS email
    FROM "AuditLog"
    WHERE "action" = 'LOGIN_FAILURE' AND "ip" IS NOT NULL AND "createdAt" >= %(since)s
      AND coalesce("metadata"->>'email', '') !~ %(canary)s
), counted AS (
    SELECT "ip", "createdAt",
           count(*) OVER (PARTITION BY "ip" ORDER BY "createdAt"
                          RANGE BETWEEN CURRENT ROW AND make_interval(secs => %(burst_s)s)
                          FOLLOWING) AS n
    FROM failures
), worst AS (
    SELECT DISTINCT ON ("ip") "ip", "createdAt" AS started, n
    FROM counted WHERE n >= %(failures)s
    ORDER BY "ip", n DESC, "createdAt"
)
SELECT w."ip", w.started, w.n,
       (SELECT count(DISTINCT f.email) FROM failures f WHERE f."ip" = w."ip"),
       (SELECT count(*) FROM failures f WHERE f."ip" = w."ip"),
       (SELECT count(*) FROM "AuditLog" s WHERE s."action" = 'LOGIN_SUCCESS'
          AND s."ip" = w."ip" AND s."createdAt" >= w.started)
FROM worst w ORDER BY w.n DESC, w."ip" LIMIT %(kept)s
"""
_FAILURES_IN_WINDOW = """
SELECT count(*), count(DISTINCT "ip") FROM "AuditLog"
WHERE "action" = 'LOGIN_FAILURE' AND "createdAt" >= %(since)s
  AND coalesce("metadata"->>'email', '') !~ %(canary)s
"""
_CANARY_FAILURES = """
SELECT count(*) FROM "AuditLog"
WHERE "action" = 'LOGIN_FAILURE' AND "createdAt" >= %(since)s
  AND coalesce("metadata"->>'email', '') ~ %(canary)s
"""
# Known addresses: where something other than a failed login happened before the window.
_BASELINE = """
SELECT count(*), count(DISTINCT "ip") FROM "AuditLog"
WHERE "createdAt" < %(since)s AND "ip" IS NOT NULL AND "action" <> 'LOGIN_FAILURE'
"""
_ADMIN_FROM_NEW = """
WITH admin_rows AS (
    SELECT a."ip", a."action", a."createdAt", a."userId"
    FROM "AuditLog" a LEFT JOIN "User" u ON u."id" = a."userId"
    WHERE a."createdAt" >= %(since)s AND a."ip" IS NOT NULL AND a."action" <> 'LOGIN_FAILURE'
      AND (a."action" = ANY(%(admin_actions)s) OR u."role"::text = 'ADMIN')
)
SELECT r."ip", count(*), min(r."createdAt"), array_agg(DISTINCT r."action"),
       count(DISTINCT r."userId")
FROM admin_rows r
WHERE NOT EXISTS (SELECT 1 FROM "AuditLog" b WHERE b."ip" = r."ip"
                  AND b."createdAt" < %(since)s AND b."action" <> 'LOGIN_FAILURE')
GROUP BY r."ip" ORDER BY min(r."createdAt") LIMIT %(kept)s
"""
_ADMIN_IN_WINDOW = """
SELECT count(*) FROM "AuditLog" a LEFT JOIN "User" u ON u."id" = a."userId"
WHERE a."createdAt" >= %(since)s AND a."action" <> 'LOGIN_FAILURE'
  AND (a."action" = ANY(%(admin_actions)s) OR u."role"::text = 'ADMIN')
"""
_OLDER_THAN = """
SELECT count(*) FILTER (WHERE "createdAt" < %(cutoff)s),
       min("createdAt"), count(*)
FROM "AuditLog"
"""


def _naive_utc(moment: datetime) -> datetime:
    """``moment`` as the naive UTC time Prisma stores in ``timestamp(3)`` columns."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def _iso(stored: datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with its zone."""
    return None if stored is None else stored.replace(tzinfo=UTC).isoformat()


def _days(seconds: float) -> str:
    return f"{seconds / 86400:g} days"


def _query(target: Target, timeouts: Timeouts, sql: str, params: Mapping[str, Any]
           ) -> list[tuple[Any, ...]]:
    with connect(target.require("DATABASE_URL"), timeouts) as conn:
        return list(conn.execute(sql, dict(params)).fetchall())  # type: ignore[arg-type]


def login_bursts(target: Target, timeouts: Timeouts, *, window_s: float, failures: int,
                 burst_s: float, now: datetime | None = None,
                 advice: str = REVIEW_ADVICE) -> ProbeResult:
    """No address made ``failures`` failed logins within ``burst_s`` at any time in the last
    ``window_s``. Records each address that did (the most failures in one burst, when that
    burst began, the accounts tried, its failures in the window and the successful logins
    from it since), the window's failed logins and addresses, and the canaries' failures
    left out. A failure carries ``advice`` (the weekly review's by default; the scheduled
    check's is the Data Breach incident's)."""
    expected = (f"no address with {failures} or more failed logins within {burst_s:g} s in"
                f" the last {_days(window_s)}")
    target.require("DATABASE_URL")

    def body() -> Verdict:
        since = _naive_utc((now or utcnow()) - timedelta(seconds=window_s))
        params = {"since": since, "canary": CANARY_EMAIL, "burst_s": burst_s,
                  "failures": failures, "kept": KEPT}
        rows = _query(target, timeouts, _BURSTS, params)
        [(total, addresses)] = _query(target, timeouts, _FAILURES_IN_WINDOW, params)
        [(canaries,)] = _query(target, timeouts, _CANARY_FAILURES, params)
        bursts = [{"ip": ip, "burst_started_at": _iso(started), "failures_in_burst": n,
                   "accounts_tried": accounts, "failures_in_window": in_window,
                   "logins_since": later} for ip, started, n, accounts, in_window, later in rows]
        observed = {"window_s": window_s, "since": _iso(since), "burst_s": burst_s,
                    "threshold": failures, "failed_logins": total, "addresses": addresses,
                    "canary_failed_logins_left_out": canaries, "bursts": bursts}
        if not bursts:
            return Verdict(True, expected, observed=observed)
        worst = bursts[0]
        more = f" (and {len(bursts) - 1} more addresses)" if len(bursts) > 1 else ""
        return Verdict(False, expected, f"{worst['failures_in_burst']} failed logins from"
                       f" {worst['ip']} within {burst_s:g} s from {worst['burst_started_at']},"
                       f" against {worst['accounts_tried']} accounts;"
                       f" {worst['logins_since']} successful logins from there since{more}",
                       observed, advice=advice)

    return run_probe("audit log", "failed login bursts", target, timeouts, body,
                     expected=expected)


def admin_addresses(target: Target, timeouts: Timeouts, *, window_s: float,
                    now: datetime | None = None) -> ProbeResult:
    """Every admin action of the last ``window_s`` (``ADMIN_ACTIONS``, or anything an ADMIN
    user did but fail to log in) came from an address the audit log saw something other than
    a failed login from before the window. Without rows from before the window there is no
    baseline to judge by: that passes and says so (``baseline_rows`` 0). Records the new
    addresses with their actions, how many admins, and when each was first used."""
    expected = (f"admin actions of the last {_days(window_s)} only from addresses seen before"
                " it")
    target.require("DATABASE_URL")

    def body() -> Verdict:
        since = _naive_utc((now or utcnow()) - timedelta(seconds=window_s))
        params = {"since": since, "admin_actions": list(ADMIN_ACTIONS), "kept": KEPT}
        [(baseline_rows, baseline_addresses)] = _query(target, timeouts, _BASELINE, params)
        [(admin_rows,)] = _query(target, timeouts, _ADMIN_IN_WINDOW, params)
        observed: dict[str, Any] = {
            "window_s": window_s, "since": _iso(since), "admin_actions_in_window": admin_rows,
            "baseline_rows": baseline_rows, "baseline_addresses": baseline_addresses,
        }
        if not baseline_rows:
            observed["note"] = ("the audit log has nothing from before the window: no known"
                                " addresses to compare with")
            return Verdict(True, expected, observed=observed)
        rows = _query(target, timeouts, _ADMIN_FROM_NEW, params)
        new = [{"ip": ip, "actions": count, "first_at": _iso(first), "kinds": sorted(kinds),
                "admins": admins} for ip, count, first, kinds, admins in rows]
        observed["new_addresses"] = new
        if not new:
            return Verdict(True, expected, observed=observed)
        first = new[0]
        more = f" (and {len(new) - 1} more new addresses)" if len(new) > 1 else ""
        return Verdict(False, expected, f"{first['actions']} admin actions"
                       f" ({', '.join(first['kinds'])}) from {first['ip']}, an address not"
                       f" seen before the last {_days(window_s)}, first at"
                       f" {first['first_at']}{more}", observed, advice=REVIEW_ADVICE)

    return run_probe("audit log", "admin actions from new addresses", target, timeouts, body,
                     expected=expected)


def retention_days(stated: float, environ: Mapping[str, str] | None = None) -> float:
    """The audit log's retention period in days: ``RUNBOOK_AUDIT_RETENTION_DAYS`` when set,
    else ``stated`` (the scenario's). Raises ``ConfigError`` for a value that is not a
    positive number."""
    raw = (os.environ if environ is None else environ).get(RETENTION_VARIABLE, "").strip()
    if not raw:
        return stated
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if not days > 0:
        raise ConfigError(f"{RETENTION_VARIABLE}: {raw!r} is not a positive number of days;"
                          " set it like 365")
    return days


def beyond_retention(target: Target, timeouts: Timeouts, *, retention_days: float,
                     now: datetime | None = None) -> ProbeResult:
    """No audit log row is older than ``retention_days``: older ones should have been
    archived and removed. Records how many are, the oldest row's time and the table's size."""
    expected = f"no audit log row older than {retention_days:g} days"
    target.require("DATABASE_URL")

    def body() -> Verdict:
        cutoff = _naive_utc((now or utcnow()) - timedelta(days=retention_days))
        [(older, oldest, total)] = _query(target, timeouts, _OLDER_THAN, {"cutoff": cutoff})
        observed = {"retention_days": retention_days, "cutoff": _iso(cutoff),
                    "rows_beyond_retention": older, "oldest_at": _iso(oldest), "rows": total}
        if not older:
            return Verdict(True, expected, observed=observed)
        return Verdict(False, expected, f"{older} of {total} audit log rows are older than"
                       f" {retention_days:g} days (the oldest from {_iso(oldest)}): not archived",
                       observed, advice=ARCHIVE_ADVICE)

    return run_probe("audit log", "archived beyond retention", target, timeouts, body,
                     expected=expected)
