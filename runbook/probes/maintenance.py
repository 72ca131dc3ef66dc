"""The runbook's Maintenance Tasks checked at their cadence (features/maintenance_tasks.feature).

Read-only, each bounded like every probe. What they read:

* error rates: the platform's logs of a service (``runbook.probes.logs``), its request lines'
  5xx share;
* e-mail delivery: BullMQ's own ``completed`` and ``failed`` sorted sets of the ``email``
  queue, counted by score, which BullMQ sets to the time each job finished;
* secret ages: ``RUNBOOK_<NAME>_ROTATED_AT`` (a date or time, e.g. ``2026-11-01``) in the
  environment of the run, for any target; else, on the sandbox, its own record of when it
  generated (or re-minted) each secret. No secret value is read;
* table maintenance: ``pg_stat_user_tables`` against autovacuum's own thresholds;
* the runbook's ``**Next Review:**`` date.

The quarterly "DR drill passed" check reads drill records: it lives with them
(``runbook.drills.quarterly``).

``for_item`` gives a reused probe's result (disk usage, queue counts) the maintenance item's
advice, so its failure names the item before the incident steps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from runbook.config import Platform, Target
from runbook.platforms import PlatformAdapter
from runbook.platforms.base import PlatformTimeouts
from runbook.probes import Verdict, queues, run_probe
from runbook.probes.logs import recent_logs
from runbook.probes.postgres import connect
from runbook.reporting.alerts import WEBHOOK_VARIABLE, webhook_for
from runbook.results import ProbeResult, utcnow
from runbook.sandbox.credentials import rotation_dates
from runbook.sandbox.layout import Layout
from runbook.timeouts import Timeouts

#: The advice keys (``runbook.sections.NEXT_STEPS``) of these checks' failures.
ERROR_RATE_ADVICE = "maintenance-error-rate"
EMAIL_ADVICE = "maintenance-email-delivery"
SECRETS_ADVICE = "maintenance-secrets"
VACUUM_ADVICE = "maintenance-vacuum"
DOCUMENTATION_ADVICE = "maintenance-documentation"
DR_DRILL_ADVICE = "maintenance-dr-drill"

#: At most this many log lines of a day are read.
LOG_LINES = 20_000
#: The secrets whose rotation age is checked, as the runbook's variables name them.
SECRETS: tuple[str, ...] = ("API_SECRET", "ADMIN_TOKEN", "RESEND_API_KEY",
                            "AWS_SECRET_ACCESS_KEY", "DATABASE_URL", "REDIS_URL")
#: The part of the runbook drill records of a disaster recovery drill name as their section.
DR_PART = "Disaster Recovery"
#: How many failed e-mail jobs a result names as evidence.
KEPT_FAILURES = 5

_NEXT_REVIEW = re.compile(r"\*\*Next Review:\*\*\s*(\d{4}-\d{2}-\d{2})")
_LAST_UPDATED = re.compile(r"\*\*Last Updated:\*\*\s*(\d{4}-\d{2}-\d{2})")


def for_item(result: ProbeResult, advice: str) -> ProbeResult:
    """``result`` with ``advice`` as its runbook advice: a reused probe's failure then names
    the maintenance item first."""
    return replace(result, advice=advice)


def as_days(seconds: float) -> float:
    return round(seconds / 86400, 2)


# -- daily ------------------------------------------------------------------------------------


def log_error_rate(target: Target, timeouts: Timeouts, platform: PlatformAdapter,
                   service: str, *, since: str = "1d") -> ProbeResult:
    """The share of ``service``'s request lines of the last ``since`` answered 5xx, read
    through the platform (at most ``LOG_LINES`` lines). Records lines, error lines, request
    lines, 5xx lines, ``error_percent`` and the last error lines; ``unavailable`` when the
    logs hold no request line (nothing to measure)."""
    expected = f"the 5xx share of {service}'s requests over the last {since}"
    command_s = PlatformTimeouts.from_env().command_s

    def body() -> Verdict:
        summary = recent_logs(platform, service, since=since, lines=LOG_LINES)
        observed: dict[str, Any] = {
            "service": service, "since": since, "lines": summary.lines,
            "error_lines": summary.error_lines, "request_lines": summary.request_lines,
            "server_errors": summary.server_errors, "error_percent": summary.error_percent,
            "last_errors": list(summary.errors[-5:]), "lines_read_at_most": LOG_LINES,
        }
        if not summary.ok:
            return Verdict(False, expected, f"the {service}'s logs could not be read:"
                           f" {summary.activity.error or 'no reason given'}", observed,
                           advice=ERROR_RATE_ADVICE)
        if summary.error_percent is None:
            observed["unavailable"] = True
            return Verdict(False, expected, f"the {service}'s logs of the last {since} hold no"
                           " request line: no error rate to measure; read its error lines"
                           f" ({summary.error_lines})", observed, advice=ERROR_RATE_ADVICE)
        return Verdict(True, expected, observed=observed)

    budget = replace(timeouts, deadline=max(timeouts.deadline, command_s + 5.0))
    return run_probe("logs", f"{service} error rate", target, budget, body, expected=expected)


def email_delivery(target: Target, timeouts: Timeouts, *, window_s: float = 86400.0,
                   now: datetime | None = None) -> ProbeResult:
    """E-mail jobs finished in the last ``window_s``: ``ZCOUNT`` by score on BullMQ's
    ``completed`` and ``failed`` sets of the ``email`` queue (the score is when each job
    finished). Records delivered, failed, ``failed_percent`` (0 when none finished) and the
    newest failures' names and reasons."""
    expected = f"e-mail jobs finished in the last {as_days(window_s):g} days, counted"
    url = target.require("REDIS_URL")
    queue = "email"

    async def work(bull: object, connection: Redis) -> Verdict:
        since_ms = int(((now or utcnow()) - timedelta(seconds=window_s)).timestamp() * 1000)
        counted: dict[str, int] = {}
        for state in ("completed", "failed"):
            key = queues.key(queue, state)
            kind = str(await connection.type(key))
            if kind not in ("zset", "none"):
                return Verdict(False, expected, f"{key} is a {kind}; BullMQ keeps a sorted set"
                               " (not a BullMQ queue?)", {"key_type": kind}, advice=EMAIL_ADVICE)
            counted[state] = int(await connection.zcount(key, since_ms, "+inf"))
        finished = counted["completed"] + counted["failed"]
        newest = await connection.zrevrangebyscore(queues.key(queue, "failed"), "+inf",
                                                   since_ms, start=0, num=KEPT_FAILURES)
        failures = []
        for job_id in map(str, newest):  # decode_responses: already text
            name, reason = await connection.hmget(f"{queues.PREFIX}:{queue}:{job_id}",
                                                  ["name", "failedReason"])
            failures.append({"id": job_id, "name": name, "reason": reason})
        return Verdict(True, expected, observed={
            "queue": queue, "window_s": window_s, "delivered": counted["completed"],
            "failed": counted["failed"], "finished": finished,
            "failed_percent": round(100.0 * counted["failed"] / finished, 2) if finished
            else 0.0, "newest_failures": failures,
        })

    return run_probe("email", "delivery of the last day", target, timeouts,
                     lambda: queues.run_async(url, timeouts, queue, work), expected=expected,
                     needs=("redis",))


# -- monthly ----------------------------------------------------------------------------------


def rotation_variable(secret: str) -> str:
    """The variable holding when ``secret`` was last rotated: ``RUNBOOK_<NAME>_ROTATED_AT``."""
    return f"RUNBOOK_{secret}_ROTATED_AT"


def parse_moment(raw: str) -> datetime:
    """``2026-11-01`` (midnight UTC) or an ISO time (UTC when it gives no zone)."""
    text = raw.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _sandbox_rotations(target: Target) -> dict[str, datetime] | None:
    if target.platform is not Platform.SANDBOX or target.runbook_home is None:
        return None

    return rotation_dates(Layout(target.runbook_home).secrets)


def secret_age(target: Target, timeouts: Timeouts, secret: str, *, max_age_days: float,
               environ: Mapping[str, str] | None = None, now: datetime | None = None
               ) -> ProbeResult:
    """``secret`` was rotated within ``max_age_days``. When comes from
    ``RUNBOOK_<NAME>_ROTATED_AT`` in ``environ`` (default: this process's environment), else
    from the sandbox's record of when it generated its secrets; with neither, the age is
    unknown and the check fails saying where to record it. Never reads the secret itself.
    Records ``rotated_at``, ``age_days`` and ``source``."""
    if secret not in SECRETS:
        raise ValueError(f"unknown secret {secret!r}; one of {', '.join(SECRETS)}")
    expected = f"{secret} rotated within the last {max_age_days:g} days"
    variable = rotation_variable(secret)
    env = os.environ if environ is None else environ

    def body() -> Verdict:
        observed: dict[str, Any] = {"secret": secret, "max_age_days": max_age_days}
        raw = env.get(variable, "").strip()
        if raw:
            observed["source"] = variable
            try:
                rotated = parse_moment(raw)
            except ValueError:
                return Verdict(False, expected, f"{raw!r} in {variable} is not a date; give"
                               " one like 2026-11-01", observed, advice=SECRETS_ADVICE)
        else:
            sandbox = _sandbox_rotations(target)
            found = (sandbox or {}).get(secret)
            if found is None:
                where = ("the sandbox has no record of generating it (made before such"
                         " records were kept?)" if sandbox is not None else "nothing records it")
                return Verdict(False, expected, f"when {secret} was last rotated is unknown:"
                               f" {where}; when rotating it, record the date in {variable}"
                               " (YYYY-MM-DD)", observed, advice=SECRETS_ADVICE)
            observed["source"] = "the sandbox's record of generating its secrets"
            rotated = found
        age_days = ((now or utcnow()) - rotated).total_seconds() / 86400
        observed.update(rotated_at=rotated.isoformat(), age_days=round(age_days, 2))
        if age_days > max_age_days:
            return Verdict(False, expected, f"{secret} was last rotated {age_days:.0f} days ago"
                           f" ({rotated.date().isoformat()}, from {observed['source']}): older"
                           f" than {max_age_days:g} days", observed, advice=SECRETS_ADVICE)
        return Verdict(True, expected, observed=observed)

    return run_probe("secrets", f"{secret} rotation age", target, timeouts, body,
                     expected=expected)


_TABLE_STATS = """
SELECT relname, n_live_tup, n_dead_tup, n_mod_since_analyze,
       greatest(last_vacuum, last_autovacuum), greatest(last_analyze, last_autoanalyze),
       current_setting('autovacuum_vacuum_threshold')::float8
         + current_setting('autovacuum_vacuum_scale_factor')::float8 * n_live_tup,
       current_setting('autovacuum_analyze_threshold')::float8
         + current_setting('autovacuum_analyze_scale_factor')::float8 * n_live_tup
FROM pg_stat_user_tables WHERE schemaname = current_schema() ORDER BY relname
"""


def _overdue(done: datetime | None, changed: float, threshold: float, cutoff: datetime
             ) -> bool:
    """Changed beyond autovacuum's threshold and last done before ``cutoff``; never done,
    changed beyond twice the threshold (a table that just crossed it is autovacuum's next
    round, within ``autovacuum_naptime``; at twice, autovacuum is not keeping up)."""
    if done is None:
        return changed > 2 * threshold
    return changed > threshold and done < cutoff


def table_maintenance(target: Target, timeouts: Timeouts, *, max_age_days: float,
                      now: datetime | None = None) -> ProbeResult:
    """Every table that changed more than autovacuum's own thresholds (the server's
    ``autovacuum_*_threshold`` + ``*_scale_factor`` x live rows: dead rows for VACUUM, rows
    changed since the last analyze for ANALYZE) was vacuumed, resp. analyzed, by hand or by
    autovacuum within ``max_age_days`` (never: see ``_overdue``); tables with little change
    pass as they are. Records each table's figures and the ``autovacuum`` setting."""
    expected = (f"every table changed beyond autovacuum's thresholds vacuumed and analyzed in"
                f" the last {max_age_days:g} days")
    dsn = target.require("DATABASE_URL")

    def body() -> Verdict:

        cutoff = (now or utcnow()) - timedelta(days=max_age_days)
        with connect(dsn, timeouts) as conn:
            rows = conn.execute(_TABLE_STATS).fetchall()
            setting = conn.execute("SELECT current_setting('autovacuum')").fetchone()
        tables: dict[str, dict[str, Any]] = {}
        overdue: list[str] = []
        for name, live, dead, changed, vacuumed, analyzed, vacuum_at, analyze_at in rows:
            late = [what for what, done, count, threshold in (
                ("VACUUM", vacuumed, dead, vacuum_at), ("ANALYZE", analyzed, changed, analyze_at))
                if _overdue(done, float(count or 0), float(threshold), cutoff)]
            tables[name] = {"live_rows": live, "dead_rows": dead, "changed_since_analyze": changed,
                            "last_vacuum": vacuumed.isoformat() if vacuumed else None,
                            "last_analyze": analyzed.isoformat() if analyzed else None,
                            "overdue": late}
            overdue += [f"{name} ({' and '.join(late)}: {dead} dead rows, {changed} changed;"
                        f" last vacuum {vacuumed.date() if vacuumed else 'never'}, last analyze"
                        f" {analyzed.date() if analyzed else 'never'})"] if late else []
        observed = {"tables": tables, "autovacuum": setting[0] if setting else None,
                    "max_age_days": max_age_days}
        if overdue:
            return Verdict(False, expected, f"{len(overdue)} tables changed and were not"
                           f" maintained in {max_age_days:g} days: {'; '.join(overdue)}",
                           observed, advice=VACUUM_ADVICE)
        return Verdict(True, expected, observed=observed)

    return run_probe("database", "VACUUM and ANALYZE recency", target, timeouts, body,
                     expected=expected)


def next_review(target: Target, timeouts: Timeouts, runbook_file: Path, *,
                today: date | None = None) -> ProbeResult:
    """The runbook's ``**Next Review:** YYYY-MM-DD`` is today or later. Records it, the
    ``**Last Updated:**`` date and how many days it is overdue."""
    expected = "the runbook's Next Review date today or later"

    def body() -> Verdict:
        text = runbook_file.read_text(encoding="utf-8")
        found, updated = _NEXT_REVIEW.search(text), _LAST_UPDATED.search(text)
        observed: dict[str, Any] = {"runbook": str(runbook_file),
                                    "last_updated": updated.group(1) if updated else None}
        if found is None:
            return Verdict(False, expected, f"{runbook_file.name} states no **Next Review:**"
                           " date", observed, advice=DOCUMENTATION_ADVICE)
        due = date.fromisoformat(found.group(1))
        overdue = ((today or utcnow().date()) - due).days
        observed.update(next_review=due.isoformat(), days_overdue=max(overdue, 0))
        if overdue > 0:
            return Verdict(False, expected, f"the runbook's review was due on {due.isoformat()},"
                           f" {overdue} days ago (last updated {observed['last_updated']})",
                           observed, advice=DOCUMENTATION_ADVICE)
        return Verdict(True, expected, observed=observed)

    return run_probe("runbook", "next review date", target, timeouts, body, expected=expected)


#: A placeholder a runbook template leaves for a person to fill in: ``[Name]``, ``[Contact]``,
#: ``[Phone/Email]`` (a Markdown link, ``[text](url)``, is not one).
_PLACEHOLDER = re.compile(r"\[(?:[A-Z][A-Za-z]*)(?:[ /][A-Za-z]+)*\](?!\()")


def _section(text: str, title: str) -> str:
    """The body of the ``##`` or ``###`` section headed ``title`` (up to the next heading of
    the same or a higher level); empty when there is none."""
    found = re.search(rf"^(#{{2,3}})\s+{re.escape(title)}\s*$", text, re.MULTILINE)
    if found is None:
        return ""
    level = len(found.group(1))
    rest = text[found.end():]
    end = re.search(rf"^#{{1,{level}}}\s", rest, re.MULTILINE)
    return rest[:end.start()] if end else rest


def emergency_contacts(target: Target, timeouts: Timeouts, runbook_file: Path) -> ProbeResult:
    """The runbook's Emergency Contacts section names people and numbers, not the template's
    placeholders. Records each placeholder line found."""
    expected = "an Emergency Contacts section with every on-call and vendor contact filled in"

    def body() -> Verdict:
        section = _section(runbook_file.read_text(encoding="utf-8"), "Emergency Contacts")
        observed: dict[str, Any] = {"runbook": str(runbook_file)}
        if not section.strip():
            return Verdict(False, expected, f"{runbook_file.name} has no Emergency Contacts"
                           " section", observed, advice=DOCUMENTATION_ADVICE)
        unfilled = [line.strip() for line in section.splitlines()
                    if _PLACEHOLDER.search(line)]
        observed["placeholders"] = unfilled
        if unfilled:
            return Verdict(False, expected, f"{len(unfilled)} contact(s) still a placeholder:"
                           f" {'; '.join(unfilled[:4])}", observed, advice=DOCUMENTATION_ADVICE)
        return Verdict(True, expected, observed=observed)

    return run_probe("runbook", "emergency contacts", target, timeouts, body, expected=expected)


def alert_channels(target: Target, timeouts: Timeouts,
                   env: Mapping[str, str] | None = None) -> ProbeResult:
    """Every paging tier (critical, warning) has a webhook the runbook's failures go to
    (``RUNBOOK_WEBHOOK_URL`` or ``RUNBOOK_WEBHOOK_URL_<TIER>``), an http(s) URL. Nothing is
    posted: the URL itself is a secret, so only which tiers are routed is recorded."""

    expected = f"a webhook for the critical and warning tiers ({WEBHOOK_VARIABLE}[_<TIER>])"
    env = os.environ if env is None else env

    def body() -> Verdict:
        routes = {tier: webhook_for(tier, env=env) for tier in ("critical", "warning", "info")}
        observed: dict[str, Any] = {f"{tier}_routed": url is not None
                                    for tier, url in routes.items()}
        missing = [t for t in ("critical", "warning") if routes[t] is None]
        bad = [t for t, url in routes.items()
               if url is not None and not url.startswith(("https://", "http://"))]
        if missing or bad:
            said = "; ".join(
                ([f"no alert channel for {', '.join(missing)}: set {WEBHOOK_VARIABLE} (or"
                  f" {WEBHOOK_VARIABLE}_<TIER>) to the team's Slack or Discord webhook"]
                 if missing else [])
                + ([f"{', '.join(bad)}: the webhook is not an http(s) URL"] if bad else []))
            return Verdict(False, expected, said, observed, advice=DOCUMENTATION_ADVICE)
        return Verdict(True, expected, observed=observed)

    return run_probe("alerts", "alert channels", target, timeouts, body, expected=expected)
