"""``runbook check --workers N``: pytest-xdist workers run the scenarios, the controller alone
reports them, and a run ends the same, exit code and summary, as with one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.conftest import RunningSandbox
from tests.test_cli import CLEAN, FAKEBIN, USERS_TRAFFIC, runbook

ROOT = Path(__file__).resolve().parent.parent


def summary(reports: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((reports / "summary.json").read_text())
    return document


def verdicts(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(nodeid, outcome) of every scenario, in the summary's order."""
    return [(s["nodeid"], s["outcome"]) for s in document["scenarios"]]


def concurrently(*runs: tuple[str, ...], cwd: Path, env: dict[str, str]
                 ) -> list[subprocess.CompletedProcess[str]]:
    """``runbook`` invocations that do not touch each other, run at once to save time."""
    with ThreadPoolExecutor(len(runs)) as pool:
        return list(pool.map(lambda args: runbook(*args, cwd=cwd, env=env), runs))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_two_workers_report_what_one_reports_and_only_the_controller_writes(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    env = {"RUNBOOK_HOME": str(sandbox.home)}
    # The users' alerts compare with readings the runs themselves keep: the second run's
    # window is not the first's, so they are left out of a comparison of the two.
    others = f"not ({USERS_TRAFFIC})"
    one = runbook("check", "--target", "sandbox", "-k", others, "--reports", "w1",
                  cwd=tmp_path, env=env)
    two = runbook("check", "--target", "sandbox", "-k", others, "--workers", "2",
                  "--reports", "w2", cwd=tmp_path, env=env)
    assert "2 workers" in two.stdout and "2 workers" not in one.stdout
    assert two.returncode == one.returncode, two.stdout + two.stderr
    first, second = summary(tmp_path / "w1"), summary(tmp_path / "w2")
    assert len(first["scenarios"]) > 20
    assert verdicts(second) == verdicts(first), "same scenarios, outcomes and order"
    assert second["exit_code"] == first["exit_code"] == two.returncode
    # The figures the probes measured on the workers reached the controller's summary.
    assert [sorted(s["figures"]) for s in second["scenarios"]] == [
        sorted(s["figures"]) for s in first["scenarios"]]
    assert any(s["figures"] for s in second["scenarios"])
    # Written once, by the controller: one history line per scenario, one summary.
    history = (tmp_path / "w2" / "history.jsonl").read_text().splitlines()
    assert len(history) == len(second["scenarios"])
    assert {json.loads(line)["run_id"] for line in history} == {second["run_id"]}
    assert two.stdout.count("runbook summary") == 1
    results = tmp_path / "w2" / "allure-results"
    assert "target=sandbox" in (results / "environment.properties").read_text()
    assert json.loads((results / "categories.json").read_text())
    assert len(list(results.glob("*-result.json"))) == len(second["scenarios"])
    # With w1's history, the estimate reads those scenarios' durations (it says their sum);
    # on a quiet machine two workers would start slower than they share a few seconds of
    # scenarios: one process, said on stderr. A busy machine has no core to share: the same.
    serial_s = sum(s["duration_s"] for s in first["scenarios"])
    again = runbook("check", "--target", "sandbox", "-k", others, "--workers", "2",
                    "--reports", "w1", cwd=tmp_path, env=env)
    assert "--workers 2: one process instead, faster here" in again.stderr, again.stderr
    assert f"the {len(first['scenarios'])} scenarios took {serial_s:.1f} s" in again.stderr
    assert "2 workers" not in again.stdout
    assert verdicts(summary(tmp_path / "w1")) == verdicts(first)


def test_a_failing_run_exits_the_same_with_two_workers(tmp_path: Path) -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0",
           "RUNBOOK_ENVIRONMENT": "staging"}
    one, two = concurrently(("check", "--reports", "w1"),
                            ("check", "--workers", "2", "--reports", "w2"), cwd=tmp_path, env=env)
    assert one.returncode == two.returncode == 1, two.stdout + two.stderr
    first, second = summary(tmp_path / "w1"), summary(tmp_path / "w2")
    assert verdicts(second) == verdicts(first)
    failed = {s["name"]: s["message"] for s in second["scenarios"] if s["outcome"] == "failed"}
    assert "redis" in failed["Redis answers PONG"].lower()
    assert "FAIL" in two.stdout and "Redis answers PONG" in two.stdout


def test_with_two_workers_a_malformed_variable_exits_2_in_one_line(tmp_path: Path) -> None:
    result = runbook("check", "--workers", "2", cwd=tmp_path, env={"API_URL": "not-a-url"})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("runbook: API_URL: 'not-a-url' is not an http or https URL")


def gated_target(tmp_path: Path, environment: str) -> dict[str, str]:
    """A Railway target whose platform CLI is the recording stand-in in tests/fakebin."""
    return {
        "API_URL": "https://api.legacyvideo.invalid",
        "DATABASE_URL": "postgresql://lv:pw@db.legacyvideo.invalid/lv", "PLATFORM": "railway",
        "RUNBOOK_ENVIRONMENT": environment, "FAKEBIN_RECORD": str(tmp_path / "calls.jsonl"),
        "PATH": f"{FAKEBIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def test_with_two_workers_a_refused_drill_exits_3_before_any_scenario_runs(
    tmp_path: Path
) -> None:
    """The gates are checked on the controller, before any worker is given a scenario."""
    result = runbook("check", "--tags", "drill", "--workers", "2", cwd=tmp_path,
                     env=gated_target(tmp_path, "production"))
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert output.count("refused: drills") == 1 and "INTERNALERROR" not in output
    assert not (tmp_path / "calls.jsonl").exists(), "the platform was called"
    assert not (tmp_path / "reports" / "summary.json").exists(), "a scenario ran"


def test_drills_the_gates_allow_still_never_run_in_parallel(tmp_path: Path) -> None:
    drill = runbook("drill", "--workers", "2", cwd=tmp_path,
                    env=gated_target(tmp_path, "staging"))
    assert drill.returncode == 2
    assert drill.stderr.strip().splitlines() == [
        "runbook: drills never run in parallel (--workers): each injects a fault into the"
        " target the others would be measuring; drop --workers"]
    # pytest -n itself, on staging with drills allowed (runbook check has no --allow-drills).
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "runbook/steps/test_runbook.py", "-m", "drill", "-n", "2",
         "--target", "env", "--allow-drills", "staging",
         "--runbook-reports", str(tmp_path / "reports"), "--color", "no"],
        cwd=ROOT, env={**CLEAN, **gated_target(tmp_path, "staging")},
        capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "drills and operations never run in parallel" in result.stdout
    assert "INTERNALERROR" not in result.stdout + result.stderr
    assert not (tmp_path / "calls.jsonl").exists(), "the platform was called"
    assert not (tmp_path / "reports" / "summary.json").exists(), "a scenario ran"


def test_operations_never_run_in_parallel_either(sandbox: RunningSandbox, tmp_path: Path
                                                 ) -> None:
    result = runbook("check", "--tags", "operation", "--workers", "2", cwd=tmp_path,
                     env={"RUNBOOK_HOME": str(sandbox.home)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "drills and operations never run in parallel" in result.stdout + result.stderr
    assert not (tmp_path / "reports" / "summary.json").exists(), "a scenario ran"
