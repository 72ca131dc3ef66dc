"""Manual steps recorded by a person, and staleness: a check whose cadence has gone by since
it last passed is reported as expired; so is a manual step with no valid record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runbook import manual
from runbook.cli import _marks
from runbook.errors import ConfigError
from runbook.reporting.summary import ScenarioOutcome, append_history, render, staleness
from tests.conftest import RunningSandbox
from tests.test_cli import outcomes, runbook

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _outcome(outcome: str, cadence: str | None = "weekly", nodeid: str = "t::weekly"
             ) -> ScenarioOutcome:
    return ScenarioOutcome(nodeid=nodeid, name="Failed job queues are reviewed", feature="F",
                           sections=("weekly",), tier="warning", outcome=outcome,
                           duration_s=0.1, cadence=cadence, finished_at=NOW.isoformat())


def _history_with_pass(path: Path, days_ago: float, nodeid: str = "t::weekly") -> None:
    passed = _outcome("passed", nodeid=nodeid)
    when = (NOW - timedelta(days=days_ago)).isoformat()
    append_history(path, [ScenarioOutcome(**{**passed.__dict__, "finished_at": when})],
                   run_id="earlier", target="sandbox", environment="sandbox")


@pytest.mark.parametrize(("days_ago", "expired"), [(3, False), (8, True), (None, True)])
def test_a_failing_cadence_check_expires_when_its_last_pass_is_older_than_its_cadence(
    tmp_path: Path, days_ago: float | None, expired: bool
) -> None:
    history = tmp_path / "history.jsonl"
    if days_ago is not None:
        _history_with_pass(history, days_ago)
    [result] = staleness([_outcome("failed")], history, now=NOW)
    assert result.expired is expired
    if days_ago is None:
        assert result.last_passed_at is None
        assert any("EXPIRED: never passed" in line for line in render([result]))
    else:
        assert result.last_passed_at == (NOW - timedelta(days=days_ago)).isoformat()


def test_a_pass_now_is_never_expired_and_becomes_the_last_pass(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    _history_with_pass(history, 40)
    [result] = staleness([_outcome("passed")], history, now=NOW)
    assert not result.expired and result.last_passed_at == NOW.isoformat()
    # No cadence: never expired, however long ago it passed.
    [plain] = staleness([_outcome("failed", cadence=None)], history, now=NOW)
    assert not plain.expired


def test_a_torn_history_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    _history_with_pass(history, 2)
    with history.open("a") as handle:
        handle.write('{"nodeid": "t::weekly", "outc')
    [result] = staleness([_outcome("failed")], history, now=NOW)
    assert not result.expired


def test_a_record_stands_for_its_cadence_then_expires(tmp_path: Path) -> None:
    path = tmp_path / "manual.jsonl"
    manual.record("Security audit", result="pass", by="alice", evidence="AUD-7",
                  at=NOW - timedelta(days=40), path=path)
    assert manual.standing("Security audit", "quarterly", path=path, now=NOW).expired is False
    assert manual.standing("Security audit", "monthly", path=path, now=NOW).expired is True
    assert manual.standing("security audit", "monthly", path=path, now=NOW).record is not None
    assert manual.standing("Penetration testing", "quarterly", path=path,
                           now=NOW).describe() == "never recorded"


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"result": "maybe"}, "one of pass, fail"),
    ({"by": " "}, "--by is empty"),
    ({"evidence": ""}, "--evidence is empty"),
    ({"at": datetime(2026, 1, 1)}, "give a time zone"),
    ({"at": datetime.now(UTC) + timedelta(days=2)}, "in the future"),
])
def test_a_bad_record_is_refused_and_nothing_is_written(
    tmp_path: Path, kwargs: dict[str, object], says: str
) -> None:
    path = tmp_path / "manual.jsonl"
    arguments: dict[str, object] = {"result": "pass", "by": "alice", "evidence": "AUD-7",
                                    "path": path, **kwargs}
    with pytest.raises(ConfigError, match=says):
        manual.record("Security audit", **arguments)  # type: ignore[arg-type]
    assert not path.exists()


def test_a_corrupt_records_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "manual.jsonl"
    manual.record("Security audit", result="pass", by="a", evidence="e", path=path)
    with path.open("a") as handle:
        handle.write("not json\n")
    with pytest.raises(ConfigError, match=r"manual.jsonl:2: not a manual record"):
        manual.load(path)


def test_a_cadence_selects_its_checks_and_its_manual_items() -> None:
    assert _marks(None, "weekly") == "(synthetic or manual) and weekly"
    assert _marks("operation", "daily") == "(operation) and daily"
    assert _marks(None, None) == "synthetic and not (daily or weekly or monthly or quarterly)"


def test_manual_scenarios_read_back_what_a_person_recorded(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    env = {"RUNBOOK_HOME": str(sandbox.home)}
    # Nothing recorded yet: every manual item is due, which is not a failure, but nothing
    # was checked either: not green (exit 2, said in the summary).
    first = runbook("check", "--tags", "manual", cwd=tmp_path, env=env)
    assert first.returncode == 2, first.stdout + first.stderr
    assert set(outcomes(tmp_path / "reports").values()) == {"expired"}
    assert "when done: runbook manual record" in first.stdout
    assert "nothing was checked" in first.stdout

    recorded = runbook("manual", "record", "the incident timeline is documented",
                       "--by", "alice", "--evidence", "https://wiki.example/INC-42",
                       cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    failed = runbook("manual", "record", "The threat model is updated after the incident",
                     "--by", "bob", "--evidence", "TM-3", "--result", "fail",
                     "--notes", "two findings open", cwd=tmp_path)
    assert failed.returncode == 0, failed.stderr
    unknown = runbook("manual", "record", "Somebody did something", "--by", "x",
                      "--evidence", "y", cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "runbook: no @manual scenario named 'Somebody did something'; see"
        " 'runbook manual list'"]

    second = runbook("check", "--tags", "manual", cwd=tmp_path, env=env)
    assert second.returncode == 4, second.stdout + second.stderr  # the failed one is @info
    incident = {name: outcome for name, outcome in outcomes(tmp_path / "reports").items()
                if "incident" in name}  # the maintenance items are due too, and left aside
    assert incident == {
        "Affected users are notified after a security incident": "expired",
        "The incident timeline is documented": "passed",
        "The threat model is updated after the incident": "failed",
    }
    assert "bob recorded 'Update threat model' as failed" in second.stdout
    results = [json.loads(p.read_text())
               for p in (tmp_path / "reports" / "allure-results").glob("*-result.json")]
    documented = sorted((r for r in results if r["name"] == "The incident timeline is documented"),
                        key=lambda r: r["stop"])
    assert [r["status"] for r in documented] == ["skipped", "passed"]  # expired, then recorded
    listed = runbook("manual", "list", cwd=tmp_path)
    assert "ok   The incident timeline is documented" in listed.stdout
    assert "FAIL The threat model is updated after the incident" in listed.stdout
