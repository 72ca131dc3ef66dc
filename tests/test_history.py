"""The run history (``reports/history.jsonl``) and its index: every run reads each scenario's
last pass from the index when it is of the history as it is now, and reads the whole history
only when it is not; either way it gets what reading every entry gives."""

from __future__ import annotations

import fcntl
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runbook import parallelism
from runbook.reporting import summary
from runbook.reporting.summary import (
    LATEST_FIELDS,
    HistoryIndex,
    ScenarioOutcome,
    append_history,
    last_passes,
    read_history,
)

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _outcome(nodeid: str, outcome: str, minutes: float) -> ScenarioOutcome:
    return ScenarioOutcome(nodeid=nodeid, name=nodeid, feature="F", sections=("s",),
                           tier="critical", outcome=outcome, duration_s=0.1,
                           finished_at=(START + timedelta(minutes=minutes)).isoformat())


def _run(history: Path, *outcomes: ScenarioOutcome, target: str = "sandbox") -> None:
    append_history(history, outcomes, run_id="r", target=target, environment=target)


def _every_entry(history: Path) -> dict[str, str]:
    """Each scenario's last pass as reading every entry gives it."""
    found: dict[str, str] = {}
    for entry in read_history(history):
        if entry.get("outcome") in ("passed", "flaky"):
            found[entry["nodeid"]] = max(found.get(entry["nodeid"], ""), entry["finished_at"])
    return found


def _runs(history: Path) -> None:
    _run(history, _outcome("t::a", "passed", 0), _outcome("t::b", "failed", 0))
    _run(history, _outcome("t::a", "failed", 5), _outcome("t::b", "flaky", 5),
         _outcome("t::c", "skipped", 5))
    # A pass recorded late, with an earlier finish: the latest finish is the last pass.
    _run(history, _outcome("t::a", "passed", -10), _outcome("t::c", "error", 10))


def test_the_index_gives_what_reading_every_entry_gives(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    _runs(history)
    index = HistoryIndex.of(history)
    assert index is not None
    assert index.entries == len(history.read_text(encoding="utf-8").splitlines()) == 7
    expected = {"t::a": START.isoformat(), "t::b": (START + timedelta(minutes=5)).isoformat()}
    assert _every_entry(history) == expected
    assert last_passes(history) == expected


def test_a_run_reads_the_index_and_not_the_whole_history(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    history = tmp_path / "history.jsonl"
    _runs(history)
    expected = _every_entry(history)

    def whole_history(*args: object) -> None:
        raise AssertionError("the whole history was read")

    monkeypatch.setattr(summary, "read_history", whole_history)
    monkeypatch.setattr(summary, "_parsed", whole_history)
    assert last_passes(history) == expected
    _run(history, _outcome("t::c", "passed", 20))
    assert last_passes(history) == {**expected, "t::c": (START + timedelta(minutes=20)).isoformat()}


def test_the_latest_entry_of_each_scenario_on_each_target_comes_from_the_index(
        tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    _runs(history)
    _run(history, _outcome("t::a", "failed", 30), target="staging")
    _run(history, _outcome("t::b", "passed", 31), target="staging")
    for target, nodeids in (("sandbox", {"t::a", "t::b", "t::c"}),
                            ("staging", {"t::a", "t::b"})):
        from_index = parallelism.latest_durations(history, target)
        assert set(from_index) == nodeids
        assert all(set(entry) == set(LATEST_FIELDS) for entry in from_index.values())
        HistoryIndex.path(history).rename(tmp_path / "aside.json")
        every_entry = parallelism.latest_durations(history, target)
        (tmp_path / "aside.json").rename(HistoryIndex.path(history))
        assert from_index == {nodeid: {name: entry[name] for name in LATEST_FIELDS}
                              for nodeid, entry in every_entry.items()}
    assert parallelism.latest_durations(history, "production") == {}


def test_a_history_changed_behind_its_index_is_read_in_full(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    _runs(history)
    # Another writer (an older runbook, say) appends a pass and leaves the index alone.
    with history.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"nodeid": "t::c", "outcome": "passed",
                                 "finished_at": (START + timedelta(hours=1)).isoformat()}) + "\n")
    assert last_passes(history)["t::c"] == (START + timedelta(hours=1)).isoformat()
    # Someone removes every entry of t::a by hand.
    kept = [line for line in history.read_text(encoding="utf-8").splitlines(keepends=True)
            if '"t::a"' not in line]
    history.write_text("".join(kept), encoding="utf-8")
    assert "t::a" not in last_passes(history)
    # The next run's append brings the index up to date with what is there.
    _run(history, _outcome("t::d", "passed", 30))
    index = HistoryIndex.of(history)
    assert index is not None and index.entries == len(kept) + 1
    assert dict(index.last_passes) == _every_entry(history)
    # An index that does not parse is no index.
    HistoryIndex.path(history).write_text("{", encoding="utf-8")
    assert HistoryIndex.of(history) is None
    assert last_passes(history) == _every_entry(history)


def test_trimming_keeps_the_newest_entries_and_the_index_follows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary, "HISTORY_LIMIT", 8)
    history = tmp_path / "history.jsonl"
    _run(history, _outcome("t::old", "passed", 0))
    for minute in range(1, 11):
        _run(history, _outcome("t::new", "passed", minute))
    lines = history.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8  # 11 entries went over 8 * 1.25: the newest 8 kept
    assert all('"t::new"' in line for line in lines)
    index = HistoryIndex.of(history)
    assert index is not None and index.entries == 8
    assert last_passes(history) == _every_entry(history) == {
        "t::new": (START + timedelta(minutes=10)).isoformat()}


def test_runs_appending_at_once_lose_no_entry_and_leave_the_index_of_the_history(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary, "HISTORY_LIMIT", 40)
    history = tmp_path / "history.jsonl"

    failed: list[BaseException] = []

    def runs(writer: int) -> None:
        try:
            for n in range(30):
                _run(history, _outcome(f"t::{writer}", "passed", n),
                     _outcome(f"t::{writer}-{n}", "failed", n))
        except Exception as exc:  # the test's verdict, below
            failed.append(exc)

    threads = [threading.Thread(target=runs, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    lines = history.read_text(encoding="utf-8").splitlines()
    # 240 entries, trimmed to 40 whenever over 50: what is left is a whole number of runs
    # past the last trim (no line lost or torn), and the index is of it.
    assert 40 <= len(lines) <= 50 and len(lines) % 2 == 0
    assert all(json.loads(line)["run_id"] == "r" for line in lines)
    index = HistoryIndex.of(history)
    assert index is not None and index.entries == len(lines)
    assert dict(index.last_passes) == _every_entry(history)


def test_where_no_lock_can_be_taken_runs_write_no_index_and_read_the_whole_history(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    history = tmp_path / "history.jsonl"
    _runs(history)
    assert HistoryIndex.of(history) is not None

    def no_lock(fd: int, operation: int) -> None:
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_lock)
    _run(history, _outcome("t::c", "passed", 40))
    assert not HistoryIndex.path(history).exists()
    assert last_passes(history) == _every_entry(history)
    assert last_passes(history)["t::c"] == (START + timedelta(minutes=40)).isoformat()
