"""Steps about the platform: restarting services, reading their logs."""

from __future__ import annotations

from pytest_bdd import parsers, then, when

from runbook.actions import restart
from runbook.actions.restart import RestartRecord
from runbook.checks import require_record
from runbook.config import Target
from runbook.harness.evidence import Evidence
from runbook.platforms import PlatformAdapter
from runbook.probes import logs
from runbook.probes.logs import LogSummary
from runbook.timeouts import Timeouts


@when(parsers.parse("the on-call engineer restarts the {service} as the runbook says"),
      target_fixture="restart_record")
def _(platform: PlatformAdapter, target: Target, timeouts: Timeouts, service: str,
      evidence: Evidence) -> RestartRecord:
    return evidence(restart.restart_and_measure(platform, service, target, timeouts, within_s=60))


@then(parsers.parse("the {service} is healthy again within {seconds:g} seconds"))
def _(target: Target, restart_record: RestartRecord, seconds: float) -> None:
    require_record(target, restart_record, restart_record.service,
                   f"healthy again within {seconds:g} s of the restart",
                   within=("time_to_healthy_s", seconds))


@then("the restart's downtime is recorded")
def _(target: Target, restart_record: RestartRecord) -> None:
    require_record(target, restart_record, restart_record.service, "a measured downtime",
                   figures=("downtime_s",))


@when(parsers.parse("the on-call engineer reads the {service}'s logs since {since}"),
      target_fixture="log_summary")
def _(platform: PlatformAdapter, service: str, since: str, evidence: Evidence) -> LogSummary:
    return evidence(logs.recent_logs(platform, service, since=since))


@then("the logs are retrieved and their error lines counted")
def _(target: Target, log_summary: LogSummary) -> None:
    require_record(target, log_summary, log_summary.service, "the service's recent logs, read",
                   figures=("error_lines", "lines"))
