"""Steps about the runbook's Maintenance Tasks: error rates, e-mail delivery, disk usage, the
audit log, failed jobs, secret ages, table maintenance, the runbook's review date, drills.

Reused probes (disk usage, queue counts) get the maintenance item's advice (``for_item``), so
a failure names the item to do first. The backup status reuses the disaster recovery steps
as they are: their advice already is "Maintenance Tasks > Weekly".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_bdd import parsers, then, when

from runbook.checks import require_at_most, require_ok
from runbook.config import Target
from runbook.drills import quarterly
from runbook.harness.evidence import Evidence
from runbook.harness.scenarios import needs
from runbook.platforms import PlatformAdapter
from runbook.probes import audit, maintenance, queues, resources
from runbook.results import ProbeResult
from runbook.shipped import RUNBOOK
from runbook.steps.support import skip_if_unavailable
from runbook.timeouts import Timeouts


@pytest.fixture
def drill_records(request: pytest.FixtureRequest) -> Path:
    """Where this run's drill records are: the reports directory's ``drills/``."""
    reports = request.config.getoption("--runbook-reports") or Path("reports")
    return Path(reports) / "drills"


# -- daily ------------------------------------------------------------------------------------


@when(parsers.parse("the on-call engineer reads the error rate in the {service}'s logs of the"
                    " last day"), target_fixture="log_error_rate")
def _(target: Target, timeouts: Timeouts, platform: PlatformAdapter, service: str,
      evidence: Evidence) -> ProbeResult:
    return skip_if_unavailable(evidence(
        maintenance.log_error_rate(target, timeouts, platform, service)))


@then(parsers.parse("at most {limit:g} percent of the requests in them were answered 5xx"))
def _(log_error_rate: ProbeResult, limit: float) -> None:
    require_at_most(log_error_rate, "error_percent", limit, "%")


@when("the on-call engineer counts the e-mail jobs finished in the last day",
      target_fixture="email_delivery")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(maintenance.email_delivery(target, timeouts))


@then(parsers.parse("at most {limit:g} percent of them failed"))
def _(email_delivery: ProbeResult, limit: float) -> None:
    require_at_most(email_delivery, "failed_percent", limit, "%")


@when("the on-call engineer reads the platform's disk usage", target_fixture="usage")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(maintenance.for_item(resources.usage(target, timeouts), "maintenance-disk"))


# -- weekly -----------------------------------------------------------------------------------


@when(parsers.parse("the on-call engineer reviews the audit log of the last {days:d} days for"
                    " {failures:d} failed logins from one address within {minutes:d} minutes"),
      target_fixture="login_bursts")
@needs("database")
def _(target: Target, timeouts: Timeouts, days: int, failures: int, minutes: int, evidence: Evidence
      ) -> ProbeResult:
    return evidence(audit.login_bursts(target, timeouts, window_s=days * 86400.0, failures=failures,
                                       burst_s=minutes * 60.0))


@when(parsers.parse("the on-call engineer looks for password guessing in the audit log of the"
                    " last {window:d} minutes: {failures:d} failed logins from one address"
                    " within {minutes:d} minutes"), target_fixture="login_bursts")
@needs("database")
def _(target: Target, timeouts: Timeouts, window: int, failures: int, minutes: int,
      evidence: Evidence) -> ProbeResult:
    return evidence(audit.login_bursts(target, timeouts, window_s=window * 60.0, failures=failures,
                                       burst_s=minutes * 60.0, advice="security-incident"))


@then("no address made such a burst")
def _(login_bursts: ProbeResult) -> None:
    require_ok(login_bursts)


@when(parsers.parse("the on-call engineer reviews the admin actions of the last {days:d} days"
                    " against the addresses seen before"), target_fixture="admin_addresses")
@needs("database")
def _(target: Target, timeouts: Timeouts, days: int, evidence: Evidence) -> ProbeResult:
    return evidence(audit.admin_addresses(target, timeouts, window_s=days * 86400.0))


@then("every admin action came from a known address")
def _(admin_addresses: ProbeResult) -> None:
    require_ok(admin_addresses)


@when(parsers.parse("the on-call engineer reviews the {queue} queue's failed jobs"),
      target_fixture="failed_jobs_review")
def _(target: Target, timeouts: Timeouts, queue: str, evidence: Evidence) -> ProbeResult:
    return evidence(maintenance.for_item(queues.counts(target, timeouts, queue),
                                         "maintenance-failed-jobs"))


@then(parsers.parse("at most {limit:d} failed jobs are kept on it"))
def _(failed_jobs_review: ProbeResult, limit: int) -> None:
    require_at_most(failed_jobs_review, "failed", limit, "jobs")


# -- monthly ----------------------------------------------------------------------------------


@when(parsers.parse("the on-call engineer checks the age of {secret} against {days:d} days"),
      target_fixture="secret_age")
def _(target: Target, timeouts: Timeouts, secret: str, days: int,
      evidence: Evidence) -> ProbeResult:
    return evidence(maintenance.secret_age(target, timeouts, secret, max_age_days=days))


@then("it was rotated recently enough")
def _(secret_age: ProbeResult) -> None:
    require_ok(secret_age)


@when(parsers.parse("the on-call engineer looks for audit log entries older than {days:d} days"),
      target_fixture="audit_retention")
def _(target: Target, timeouts: Timeouts, days: int, evidence: Evidence) -> ProbeResult:
    return evidence(
        audit.beyond_retention(target, timeouts, retention_days=audit.retention_days(days)))


@then("there are none left to archive")
def _(audit_retention: ProbeResult) -> None:
    require_ok(audit_retention)


@when(parsers.parse("the on-call engineer reads when each table was last vacuumed and analyzed,"
                    " allowing {days:d} days"), target_fixture="table_maintenance")
def _(target: Target, timeouts: Timeouts, days: int, evidence: Evidence) -> ProbeResult:
    return evidence(maintenance.table_maintenance(target, timeouts, max_age_days=days))


@then("every table that changed was vacuumed and analyzed in time")
def _(table_maintenance: ProbeResult) -> None:
    require_ok(table_maintenance)


@when("the on-call engineer reads the runbook's Next Review date", target_fixture="review")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(maintenance.next_review(target, timeouts, RUNBOOK))


@then("the review is not overdue")
def _(review: ProbeResult) -> None:
    require_ok(review)


@when("the on-call engineer reads the runbook's emergency contacts", target_fixture="contacts")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(maintenance.emergency_contacts(target, timeouts, RUNBOOK))


@then("every on-call and vendor contact is filled in, none a placeholder")
def _(contacts: ProbeResult) -> None:
    require_ok(contacts)


@when("the on-call engineer reads where the runbook's alerts go", target_fixture="channels")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(maintenance.alert_channels(target, timeouts))


@then("the critical and warning tiers each reach a team channel")
def _(channels: ProbeResult) -> None:
    require_ok(channels)


# -- quarterly --------------------------------------------------------------------------------


@when(parsers.parse("the on-call engineer reads the drill records of the last {days:d} days"),
      target_fixture="dr_drill")
def _(target: Target, timeouts: Timeouts, drill_records: Path, days: int,
      evidence: Evidence) -> ProbeResult:
    return evidence(quarterly.dr_drill_passed(target, timeouts, drill_records, within_days=days))


@then("a disaster recovery drill passed among them")
def _(dr_drill: ProbeResult) -> None:
    require_ok(dr_drill)
