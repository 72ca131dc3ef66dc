"""The runbook's Maintenance Tasks as checks: the weekly set passes on a healthy sandbox, and
each check fails, naming its maintenance item, when the sandbox shows what the item is about
(a burst of failed logins, an audit row past retention, no recent DR drill, a secret or the
runbook's review overdue); a manual item recorded too long ago is due again."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from runbook.actions import queues as queue_actions
from runbook.config import Target
from runbook.drills import quarterly
from runbook.drills.record import DrillRecord, Objective, write_record
from runbook.errors import ConfigError
from runbook.probes import audit, maintenance
from runbook.redact import Redactor
from runbook.sections import next_steps
from runbook.timeouts import Timeouts
from runbook.wait import wait_until
from tests.conftest import RunningSandbox
from tests.test_cli import outcomes, runbook

TIMEOUTS = Timeouts()
#: Documentation addresses (RFC 5737): never a real client's.
ATTACKER = "198.51.100.77"
NEW_ADMIN_ADDRESS = "198.51.100.23"

Row = tuple[str | None, str, str, dict[str, str], datetime]
Plant = Callable[[Sequence[Row]], None]


def _target(sandbox: RunningSandbox) -> Target:
    return Target.from_variables("sandbox", sandbox.env, source="sandbox",
                                 environment="sandbox", platform="sandbox")


@pytest.fixture
def plant(sandbox: RunningSandbox) -> Iterator[Plant]:
    """Insert audit rows (userId, action, ip, metadata, createdAt as aware UTC) through the
    sandbox's superuser; every row planted is deleted afterwards."""
    planted: list[str] = []
    dsn = sandbox.sandbox.superuser_dsn()

    def insert(rows: Sequence[Row]) -> None:
        ids = [str(uuid.uuid4()) for _ in rows]
        planted.extend(ids)
        with psycopg.connect(dsn, connect_timeout=5, autocommit=True) as conn:
            for row_id, (user, action, ip, metadata, at) in zip(ids, rows, strict=True):
                conn.execute(
                    'INSERT INTO "AuditLog" ("id", "userId", "action", "ip", "metadata",'
                    ' "createdAt") VALUES (%s, %s, %s, %s, %s, %s)',
                    (row_id, user, action, ip, Jsonb(metadata),
                     at.astimezone(UTC).replace(tzinfo=None)))

    yield insert
    with psycopg.connect(dsn, connect_timeout=5, autocommit=True) as conn:
        conn.execute('DELETE FROM "AuditLog" WHERE "id" = ANY(%s)', (planted,))


def test_the_weekly_checks_pass_and_the_unrecorded_manual_item_is_due(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    result = runbook("check", "--cadence", "weekly", cwd=tmp_path,
                     env={"RUNBOOK_HOME": str(sandbox.home)})
    assert result.returncode == 0, result.stdout + result.stderr
    seen = outcomes(tmp_path / "reports")
    assert seen.pop("Security updates of the dependencies are applied") == "expired"
    assert len(seen) == 5 and set(seen.values()) == {"passed"}, seen
    assert "EXPD" in result.stdout


def test_a_burst_of_failed_logins_fails_the_audit_review_and_canaries_are_left_out(
    sandbox: RunningSandbox, tmp_path: Path, plant: Plant
) -> None:
    now = datetime.now(UTC)
    canaries = [(None, "LOGIN_FAILURE", "198.51.100.78",
                 {"email": f"runbook-canary-{uuid.uuid4().hex[:16]}@legacyvideo.test"},
                 now - timedelta(seconds=i)) for i in range(12)]
    plant(canaries)
    left_out = audit.login_bursts(_target(sandbox), TIMEOUTS, window_s=7 * 86400,
                                  failures=10, burst_s=600)
    assert left_out.ok, left_out.problem
    assert left_out.observed["canary_failed_logins_left_out"] >= 12

    plant([(None, "LOGIN_FAILURE", ATTACKER, {"email": f"victim{i % 3}@example.com"},
            now - timedelta(hours=30, seconds=20 * i)) for i in range(11)])
    result = runbook("check", "--cadence", "weekly", "-k", "burst_of_failed_logins",
                     cwd=tmp_path, env={"RUNBOOK_HOME": str(sandbox.home)})
    assert result.returncode == 1, result.stdout + result.stderr  # @critical
    assert outcomes(tmp_path / "reports") == {
        "No address made a burst of failed logins in the last week": "failed"}
    assert f"11 failed logins from {ATTACKER}" in result.stdout
    assert "against 3 accounts" in result.stdout
    assert "Maintenance Tasks > Weekly: review audit logs for anomalies" in result.stdout


def test_an_admin_action_from_a_new_address_is_an_anomaly_once_there_is_a_baseline(
    sandbox: RunningSandbox, plant: Plant
) -> None:
    target, now = _target(sandbox), datetime.now(UTC)
    plant([(None, "USER_LOCKED", NEW_ADMIN_ADDRESS, {"targetUserId": "x"}, now)])
    first = audit.admin_addresses(target, TIMEOUTS, window_s=7 * 86400)
    if first.observed["baseline_rows"] == 0:  # a young sandbox: nothing to compare with
        assert first.ok and "no known addresses" in first.observed["note"]
        plant([(None, "LOGIN_SUCCESS", "127.0.0.1", {"email": "a@example.com"},
                now - timedelta(days=30))])
    found = audit.admin_addresses(target, TIMEOUTS, window_s=7 * 86400)
    assert not found.ok
    assert f"from {NEW_ADMIN_ADDRESS}, an address not seen before" in found.problem
    assert found.advice == audit.REVIEW_ADVICE
    assert [a["ip"] for a in found.observed["new_addresses"]] == [NEW_ADMIN_ADDRESS]


def test_an_audit_row_past_retention_fails_the_archive_check(
    sandbox: RunningSandbox, tmp_path: Path, plant: Plant
) -> None:
    old = datetime.now(UTC) - timedelta(days=200)
    plant([(None, "LOGIN_SUCCESS", "127.0.0.1", {"email": "a@example.com"}, old)])
    result = runbook("check", "--cadence", "monthly", "-k", "retention", cwd=tmp_path,
                     env={"RUNBOOK_HOME": str(sandbox.home)})
    assert result.returncode == 4, result.stdout + result.stderr  # @warning only
    assert outcomes(tmp_path / "reports") == {
        "No audit log entry is older than the retention period": "failed"}
    assert "older than 90 days" in result.stdout
    assert "Maintenance Tasks > Monthly: review and archive old audit logs" in result.stdout
    longer = runbook("check", "--cadence", "monthly", "-k", "retention", cwd=tmp_path,
                     env={"RUNBOOK_HOME": str(sandbox.home),
                          audit.RETENTION_VARIABLE: "365"})
    assert longer.returncode == 0, longer.stdout + longer.stderr


def _dr_record(days_ago: float) -> DrillRecord:
    finished = datetime.now(UTC) - timedelta(days=days_ago)
    return DrillRecord(drill="api-crash",
                       runbook_section="Disaster Recovery > Recovery Time Objectives",
                       target="sandbox", environment="sandbox", operator="test", host="h",
                       started_at=finished - timedelta(minutes=2), finished_at=finished,
                       objective=Objective(), phases=())


def test_the_quarterly_drill_check_reads_the_records_and_manual_records_expire(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    drills = tmp_path / "reports" / "drills"
    write_record(_dr_record(100), drills, Redactor(), target=_target(sandbox))
    long_ago = (datetime.now(UTC) - timedelta(days=100)).isoformat()
    recorded = runbook("manual", "record", "Security audit", "--by", "alice", "--evidence",
                       "AUD-7", "--at", long_ago, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    env = {"RUNBOOK_HOME": str(sandbox.home)}
    selection = "disaster_recovery_drill or security_audit"

    stale = runbook("check", "--cadence", "quarterly", "-k", selection, cwd=tmp_path, env=env)
    assert stale.returncode == 4, stale.stdout + stale.stderr  # the drill check is @warning
    assert outcomes(tmp_path / "reports") == {
        "A disaster recovery drill passed within the quarter": "failed",
        "Security audit": "expired"}
    assert "(api-crash) finished 100 days ago" in stale.stdout
    assert "Maintenance Tasks > Quarterly: disaster recovery drill" in stale.stdout
    assert "100.0 days ago, expired for 92 days" in stale.stdout

    write_record(_dr_record(3), drills, Redactor(), target=_target(sandbox))
    assert runbook("manual", "record", "Security audit", "--by", "alice", "--evidence",
                   "AUD-8", cwd=tmp_path).returncode == 0
    fresh = runbook("check", "--cadence", "quarterly", "-k", selection, cwd=tmp_path, env=env)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert set(outcomes(tmp_path / "reports").values()) == {"passed"}


def test_a_failed_drill_alone_does_not_count(sandbox: RunningSandbox, tmp_path: Path) -> None:
    record = _dr_record(1)
    failing = replace(record, completed=False)
    write_record(failing, tmp_path, Redactor(), target=_target(sandbox))
    (tmp_path / "torn.json").write_text("{")
    result = quarterly.dr_drill_passed(_target(sandbox), TIMEOUTS, tmp_path, within_days=92)
    assert not result.ok and "no disaster recovery drill passed" in result.problem
    assert "aborted" in result.problem and result.observed["unreadable"] == ["torn.json"]
    assert "not counted: torn.json (not a readable drill record)" in result.problem


def test_secret_ages_come_from_the_rotation_variables_or_the_sandbox(
    sandbox: RunningSandbox
) -> None:
    remote = Target.from_variables("staging", {"API_URL": "https://api.example.com"},
                                   source="test", environment="staging", platform="railway")
    unknown = maintenance.secret_age(remote, TIMEOUTS, "API_SECRET", max_age_days=31,
                                     environ={})
    assert not unknown.ok
    assert "record the date in RUNBOOK_API_SECRET_ROTATED_AT (YYYY-MM-DD)" in unknown.problem
    assert Redactor()(unknown.problem) == unknown.problem  # nothing in it looks like a secret
    old = maintenance.secret_age(remote, TIMEOUTS, "API_SECRET", max_age_days=31,
                                 environ={"RUNBOOK_API_SECRET_ROTATED_AT": "2026-01-02"},
                                 now=datetime(2026, 3, 1, tzinfo=UTC))
    assert not old.ok and "last rotated 58 days ago (2026-01-02" in old.problem
    assert old.advice == maintenance.SECRETS_ADVICE
    bad = maintenance.secret_age(remote, TIMEOUTS, "API_SECRET", max_age_days=31,
                                 environ={"RUNBOOK_API_SECRET_ROTATED_AT": "last week"})
    assert not bad.ok and "'last week' in RUNBOOK_API_SECRET_ROTATED_AT is not a date" in \
        bad.problem
    # The sandbox generated its secrets when it was made: today.
    fresh = maintenance.secret_age(_target(sandbox), TIMEOUTS, "DATABASE_URL",
                                   max_age_days=31, environ={})
    assert fresh.ok and fresh.observed["age_days"] < 1, fresh.problem
    assert "sandbox" in fresh.observed["source"]
    for secret in _target(sandbox).secret_values():
        assert secret not in str(fresh.evidence())


def test_the_next_review_date_is_read_from_the_runbook(sandbox: RunningSandbox,
                                                       tmp_path: Path) -> None:
    target, runbook_file = _target(sandbox), tmp_path / "RUNBOOK.md"
    runbook_file.write_text("**Last Updated:** 2024-01-17\n**Next Review:** 2024-04-17\n")
    due = maintenance.next_review(target, TIMEOUTS, runbook_file, today=date(2024, 4, 20))
    assert not due.ok and "due on 2024-04-17, 3 days ago" in due.problem
    assert maintenance.next_review(target, TIMEOUTS, runbook_file,
                                   today=date(2024, 4, 17)).ok
    runbook_file.write_text("# no dates\n")
    assert "states no **Next Review:** date" in maintenance.next_review(
        target, TIMEOUTS, runbook_file).problem


def test_email_delivery_counts_the_failed_jobs_of_the_day(sandbox: RunningSandbox) -> None:
    target = _target(sandbox)
    with queue_actions.failed_canary_jobs(target, TIMEOUTS, "email", 2) as failed:
        result = maintenance.email_delivery(target, TIMEOUTS)
        assert result.ok, result.problem
        assert result.observed["failed"] >= 2 and result.observed["failed_percent"] > 0
        named = {f["id"] for f in result.observed["newest_failures"]}
        assert set(failed.ids) <= named
    after = maintenance.email_delivery(target, TIMEOUTS)
    assert after.observed["failed"] == result.observed["failed"] - 2


def test_a_bad_retention_override_is_one_clear_line() -> None:
    assert audit.retention_days(90, {}) == 90
    assert audit.retention_days(90, {audit.RETENTION_VARIABLE: "400"}) == 400
    with pytest.raises(ConfigError, match="RUNBOOK_AUDIT_RETENTION_DAYS: 'forever' is not a"
                                          " positive number of days"):
        audit.retention_days(90, {audit.RETENTION_VARIABLE: "forever"})


@pytest.mark.parametrize(("done_days_ago", "changed", "overdue"), [
    (None, 40.0, False),   # never, under the threshold: little change
    (None, 80.0, False),   # never, just over: autovacuum's next round
    (None, 120.0, True),   # never, twice over: autovacuum is not keeping up
    (40, 60.0, True),      # over the threshold, last done before the month
    (40, 30.0, False),     # little change since: nothing to do
    (3, 500.0, False),     # done within the month
])
def test_a_table_is_overdue_only_when_it_changed_and_was_not_maintained(
    done_days_ago: float | None, changed: float, overdue: bool
) -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    done = None if done_days_ago is None else now - timedelta(days=done_days_ago)
    assert maintenance._overdue(done, changed, 50.0, now - timedelta(days=31)) is overdue


def test_the_sandbox_tables_are_maintained_in_time(sandbox: RunningSandbox) -> None:
    # The shared sandbox's earlier tests change its tables (every login adds audit rows):
    # autovacuum looks at each database once a minute (autovacuum_naptime), so a table just
    # past its threshold is maintained within that, not at once.
    looked = wait_until(
        lambda: maintenance.table_maintenance(_target(sandbox), TIMEOUTS, max_age_days=31),
        timeout=90, interval=2.0, accept=lambda r: r.ok)
    result = looked.value
    assert result is not None and result.ok, result.problem if result else looked.summary()
    assert {"AuditLog", "User", "_prisma_migrations"} <= set(result.observed["tables"])
    assert result.observed["autovacuum"] == "on"


# -- emergency contacts and alert channels ---------------------------------------------------

_LOCAL = Target.from_variables("doc", {}, source="test", environment="staging",
                               platform="sandbox")


def test_emergency_contacts_fail_while_a_placeholder_is_left(tmp_path: Path) -> None:
    runbook_file = tmp_path / "RUNBOOK.md"
    runbook_file.write_text(
        "# R\n\n## Emergency Contacts\n\n- Railway: [help](https://railway.app/help)\n"
        "- Primary: [Name] - [Contact]\n- AWS Support (S3): [Phone/Email]\n\n## Next\n"
        "- Secondary: [Name]\n")
    result = maintenance.emergency_contacts(_LOCAL, TIMEOUTS, runbook_file)
    assert not result.ok
    assert result.observed["placeholders"] == ["- Primary: [Name] - [Contact]",
                                               "- AWS Support (S3): [Phone/Email]"]
    assert "Maintenance Tasks > Monthly" in " ".join(next_steps(result.advice))
    runbook_file.write_text(
        "## Emergency Contacts\n\n- Railway: [help](https://railway.app/help)\n"
        "- Primary: Alice Example - +44 20 7946 0000\n")
    assert maintenance.emergency_contacts(_LOCAL, TIMEOUTS, runbook_file).ok
    runbook_file.write_text("## Something Else\n")
    missing = maintenance.emergency_contacts(_LOCAL, TIMEOUTS, runbook_file)
    assert not missing.ok and "no Emergency Contacts section" in missing.problem


@pytest.mark.parametrize(("env", "ok", "says"), [
    ({}, False, "no alert channel for critical, warning"),
    ({"RUNBOOK_WEBHOOK_URL_CRITICAL": "https://hooks.example/T1/B1/tok-123456"}, False,
     "no alert channel for warning"),
    ({"RUNBOOK_WEBHOOK_URL": "hooks.example/T1/B1/tok-123456"}, False, "not an http(s) URL"),
    ({"RUNBOOK_WEBHOOK_URL": "https://hooks.example/T1/B1/tok-123456"}, True, ""),
])
def test_alert_channels_need_a_webhook_for_each_paging_tier(
    env: dict[str, str], ok: bool, says: str
) -> None:
    result = maintenance.alert_channels(_LOCAL, TIMEOUTS, env)
    assert result.ok is ok, result.problem
    assert says in result.problem
    assert "tok-123456" not in repr(result.evidence())
