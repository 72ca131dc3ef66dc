"""Common Operations > View Logs: a service's recent logs retrieved and its errors counted.

Reused by the daily maintenance check "Check error rates in logs": ``error_rate`` is the
share of request lines answered 5xx, the figure the runbook's alerts ("Error rate > 5%")
are about, and only exists when the logs hold request lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from runbook.platforms.base import LogLines, PlatformAdapter, request_status
from runbook.results import Activity, Result

#: How many error lines a summary keeps as evidence (the most recent ones).
KEPT_ERRORS = 20


@dataclass(frozen=True)
class LogSummary(Result):
    """What a service's recent logs say: how many lines, how many of them errors, and (when
    there are request lines) the 5xx rate among them. ``errors`` keeps the last
    ``KEPT_ERRORS`` error lines, redacted. ok when the logs could be read (not: they hold no
    errors): its ``activity``'s problems are its own."""

    service: str
    since: str
    activity: Activity
    lines: int
    error_lines: int
    request_lines: int
    server_errors: int
    errors: tuple[str, ...] = ()
    evidence_properties = ("error_percent",)

    @property
    def problems(self) -> tuple[str, ...]:
        return self.activity.problems

    @property
    def error_rate(self) -> float | None:
        """5xx request lines / request lines, 0.0 .. 1.0; ``None`` without request lines."""
        if not self.request_lines:
            return None
        return self.server_errors / self.request_lines

    @property
    def error_percent(self) -> float | None:
        """``error_rate`` as a percentage, as the runbook's alert thresholds are written."""
        rate = self.error_rate
        return None if rate is None else round(100.0 * rate, 2)


def summarize(logs: LogLines, *, since: str = "1h") -> LogSummary:
    """Count the lines, error lines, request lines and 5xx request lines of ``logs``."""
    statuses = [status for status in map(request_status, logs.lines) if status is not None]
    return LogSummary(
        service=logs.service,
        since=since,
        activity=logs.activity,
        lines=len(logs.lines),
        error_lines=len(logs.error_lines),
        request_lines=len(statuses),
        server_errors=sum(1 for status in statuses if status >= 500),
        errors=logs.error_lines[-KEPT_ERRORS:],
    )


def recent_logs(platform: PlatformAdapter, service: str, *, since: str = "1h",
                lines: int = 500) -> LogSummary:
    """Retrieve at most ``lines`` log lines of ``service`` from the last ``since`` through
    ``platform`` and count their errors. A platform that cannot read them gives a summary
    whose ``ok`` is false (its activity says why); a missing CLI raises ``RunbookError``."""
    return summarize(platform.logs(service, since=since, lines=lines), since=since)
