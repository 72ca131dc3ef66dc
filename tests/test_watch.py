"""``runbook watch`` against the session's sandbox: alerts after N failing rounds in a row,
resolutions after M passing ones, each posted once to a real webhook receiver on loopback;
counters kept across restarts; a healthy watch never alerts and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runbook.redact import Redactor
from runbook.reporting.publish import Delivery
from runbook.watch import Watcher, WatchSettings, WatchState
from tests.conftest import RunningSandbox
from tests.receiver import CLEAN, Receiver

#: One scenario that needs Redis and one that does not: fast, and they must diverge.
SCENARIOS = "redis_answers_pong or api_reports_status"
REDIS = "Redis answers PONG"
API = "The API reports status ok with a current timestamp"


def watch(*args: str, home: Path, cwd: Path, receiver: Receiver
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runbook.cli", "watch", "--target", "sandbox", "-k", SCENARIOS,
         "--interval", "0.2", "--webhook", f"{receiver.url}/hook",
         "--pushgateway", receiver.url, *args],
        cwd=cwd, env={**CLEAN, "RUNBOOK_HOME": str(home)}, capture_output=True, text=True,
        timeout=120, check=False,
    )


def firing(reports: Path) -> dict[str, float]:
    """``runbook_watch_alert_firing`` by scenario, parsed from ``metrics.prom``."""
    text = (reports / "metrics.prom").read_text()
    return {s.labels["scenario"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "runbook_watch_alert_firing"}


def rounds(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("round ")]


def test_stopped_redis_alerts_once_after_three_rounds_and_resolves_once_after_two(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    box, home = healthy_sandbox.sandbox, healthy_sandbox.home
    (home / "watch-state.json").unlink(missing_ok=True)
    redis_pid = box.status().components["redis"].pid
    assert redis_pid
    os.kill(redis_pid, signal.SIGKILL)
    with Receiver() as receiver:
        # Two failing rounds, then a restart: the counters carry over to the third.
        first = watch("--rounds", "2", home=home, cwd=tmp_path, receiver=receiver)
        assert first.returncode == 0, first.stdout + first.stderr
        assert len(rounds(first.stdout)) == 2 and "ALERT" not in first.stdout
        assert receiver.seen("POST") == []
        assert box.status().components["redis"].state != "running"

        second = watch("--rounds", "1", home=home, cwd=tmp_path, receiver=receiver)
        assert second.returncode == 1, second.stdout + second.stderr  # a critical alert fires
        alerts = receiver.seen("POST")
        assert len(alerts) == 1
        alert = alerts[0].json()
        assert alert["text"].startswith("CRITICAL ALERT: 1 runbook check failing on sandbox")
        assert REDIS in alert["text"] and API not in json.dumps(alert)
        assert "failed 3 rounds in a row" in json.dumps(alert)
        latency = re.search(r"ALERT \[critical\] Redis answers PONG: failed 3 rounds in a row;"
                            r" detection latency ([0-9.]+) s", second.stdout)
        assert latency, second.stdout
        print(f"detection latency: {latency.group(1)} s")  # reported with -s
        assert firing(tmp_path / "reports") == {REDIS: 1.0, API: 0.0}

        box.start("redis")
        third = watch("--rounds", "2", home=home, cwd=tmp_path, receiver=receiver)
        assert third.returncode == 0, third.stdout + third.stderr
        posts = receiver.seen("POST")
        pushes = receiver.seen("PUT", "/metrics/job/runbook/instance/sandbox")

    assert len(posts) == 2, [p.json()["text"] for p in posts]
    resolved = posts[1].json()
    assert resolved["text"].startswith("RESOLVED (critical): 1 runbook check passing again")
    assert REDIS in resolved["text"] and "passed 2 rounds in a row" in json.dumps(resolved)
    assert third.stdout.count("RESOLVED") == 1
    assert firing(tmp_path / "reports") == {REDIS: 0.0, API: 0.0}
    assert len(pushes) == 5  # every round pushed its metrics
    state = json.loads((home / "watch-state.json").read_text())["targets"]["sandbox"]
    assert state["rounds"] == 5
    counters = {c["name"]: c for c in state["scenarios"].values()}
    assert counters[REDIS]["passes"] == 2 and not counters[REDIS]["firing"]
    assert counters[API]["failures"] == 0 and counters[API]["fired_at"] is None


def test_a_healthy_watch_never_alerts_and_stops_cleanly_on_ctrl_c(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    home = healthy_sandbox.home
    (home / "watch-state.json").unlink(missing_ok=True)
    with Receiver() as receiver:
        process = subprocess.Popen(
            [sys.executable, "-m", "runbook.cli", "watch", "--target", "sandbox",
             "-k", SCENARIOS, "--interval", "0.2",
             "--webhook", f"{receiver.url}/hook", "--pushgateway", receiver.url],
            cwd=tmp_path, env={**CLEAN, "RUNBOOK_HOME": str(home)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout
        reader = threading.Thread(target=lambda: [lines.put(line) for line in stdout],
                                  daemon=True)
        reader.start()
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while len(rounds("".join(seen))) < 3 and time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert process.poll() is None, "watch ended before it was interrupted"
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        reader.join(timeout=10)
        while not lines.empty():
            seen.append(lines.get())
        posts = receiver.seen("POST")
        pushes = receiver.seen("PUT")

    output = "".join(seen)
    assert code == 130, output + (process.stderr.read() if process.stderr else "")
    counted = rounds(output)
    assert len(counted) >= 3 and all("alerts firing: 0" in line for line in counted), output
    assert "watch interrupted after" in output
    assert posts == [] and "ALERT" not in output
    assert len(pushes) >= len(counted)
    state = json.loads((home / "watch-state.json").read_text())["targets"]["sandbox"]
    assert state["rounds"] == len(counted)
    assert all(c["failures"] == 0 and not c["firing"] for c in state["scenarios"].values())
    assert firing(tmp_path / "reports") == {REDIS: 0.0, API: 0.0}


def _attachments(result: object) -> list[str]:
    """The attachment files an Allure result names, its steps' included."""
    if isinstance(result, dict):
        own = [a["source"] for a in result.get("attachments", [])]
        return own + [s for step in result.get("steps", []) for s in _attachments(step)]
    return []


def test_a_watch_keeps_the_allure_results_of_its_last_rounds_only(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    home = healthy_sandbox.home
    (home / "watch-state.json").unlink(missing_ok=True)
    results = tmp_path / "reports" / "allure-results"
    results.mkdir(parents=True)
    # A result of a run before the watch, an hour old, and a file that is not a result.
    old = results / "0f3c1e2a-4b5d-4e6f-8a9b-0c1d2e3f4a5b-result.json"
    old.write_text("{}")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    (results / "notes.txt").write_text("kept")
    done = subprocess.run(
        [sys.executable, "-m", "runbook.cli", "watch", "--target", "sandbox",
         "-k", "redis_answers_pong", "--interval", "0", "--rounds", "4", "--keep-results", "2",
         "--json"],
        cwd=tmp_path, env={**CLEAN, "RUNBOOK_HOME": str(home)}, capture_output=True,
        text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    started = [datetime.fromisoformat(json.loads(line)["started_at"])
               for line in done.stdout.splitlines() if line.startswith('{"type": "round"')]
    assert len(started) == 4
    kept = [json.loads(path.read_text()) for path in results.glob("*-result.json")]
    # One scenario a round: the results of rounds 3 and 4, none of rounds 1 and 2.
    assert len(kept) == 2
    assert all(r["start"] >= started[2].timestamp() * 1000 - 1 for r in kept), kept
    attachments = {source for r in kept for source in _attachments(r)}
    assert attachments and attachments == {
        p.name for p in results.glob("*-attachment.*")}  # theirs and no other
    assert not old.exists() and (results / "notes.txt").read_text() == "kept"


def test_counters_need_n_failures_in_a_row_and_m_passes_in_a_row(tmp_path: Path) -> None:
    """A flapping check: a pass in between restarts the count; the alert carries the
    latency from the first round of its failing streak."""
    state_file = tmp_path / "watch-state.json"
    start = datetime(2025, 1, 1, tzinfo=UTC)
    fired: list[tuple[int, str, float]] = []
    for number, outcome in enumerate(["failed", "failed", "passed", "failed", "error", "skipped",
                                      "failed", "failed", "passed", "failed", "passed",
                                      "passed", "passed"]):
        state = WatchState.load(state_file, "staging")  # a restart every round
        summary = {"scenarios": [{"nodeid": "n", "name": REDIS, "tier": "critical",
                                  "sections": ["quick-health-check"], "outcome": outcome,
                                  "message": "redis on staging: refused"}]}
        began = start + timedelta(minutes=number)
        for event in state.observe(summary, began, began + timedelta(seconds=2),
                                   fail_after=3, resolve_after=2):
            fired.append((number, event.kind, event.seconds))
        state.save(state_file)
    # Rounds 3, 4 fail, 5 is skipped (no change), 6 fails: the third failure in a row, 182 s
    # after round 3 began. The pass of round 8 is undone by round 9; 10 and 11 resolve it.
    assert fired == [(6, "alert", 182.0), (11, "resolved", 300.0)]
    assert WatchState.load(state_file, "staging").rounds == 13
    assert WatchState.load(state_file, "production").rounds == 0


def test_an_interrupt_during_a_rounds_bookkeeping_comes_after_it_with_the_round_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM right after a round's line is printed (a scheduler stopping the watch as the
    round ends): held until the bookkeeping is through, then the watch ends as interrupted
    with that round counted."""
    monkeypatch.delenv("RUNBOOK_PUSHGATEWAY_URL", raising=False)
    monkeypatch.delenv("RUNBOOK_WEBHOOK_URL", raising=False)
    reports = tmp_path / "reports"
    reports.mkdir()
    said: list[str] = []

    def run_round(run_id: str) -> int:
        (reports / "summary.json").write_text(json.dumps({"run_id": run_id, "scenarios": []}))
        return 0

    def say(line: str) -> None:
        said.append(line)
        if line.startswith("round 1 "):
            os.kill(os.getpid(), signal.SIGTERM)

    watcher = Watcher(WatchSettings(target="t", reports=reports,
                                    state_file=tmp_path / "watch-state.json", interval_s=0),
                      run_round, redact=Redactor(), delivery=Delivery(), say=say,
                      warn=said.append)
    assert watcher.run() == 130, said
    assert said[-1].startswith("watch interrupted after 1 round(s)"), said
    assert (reports / "metrics.prom").exists()  # the bookkeeping after the line ran
