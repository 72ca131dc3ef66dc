"""The ``runbook`` command run as a user runs it, against the real sandbox and real servers."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
import pytest

from runbook.config import TARGET_VARIABLES
from runbook.sandbox.services import migrate
from tests.conftest import RunningSandbox

#: The repository's root (the source checkout these tests run in).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CLEAN = {k: v for k, v in os.environ.items()
         if k not in (*TARGET_VARIABLES, "PLATFORM", "RUNBOOK_ENVIRONMENT", "RUNBOOK_HOME")}


def runbook(*args: str, cwd: Path, env: Mapping[str, str] | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runbook.cli", *args], cwd=cwd, env={**CLEAN, **(env or {})},
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def outcomes(reports: Path) -> dict[str, str]:
    document = json.loads((reports / "summary.json").read_text())
    return {s["name"]: s["outcome"] for s in document["scenarios"]}


#: The alerts on the users' traffic: their verdict depends on the readings earlier runs kept
#: in RUNBOOK_HOME and on what the sandbox's users saw in the last 5 minutes (another test's
#: fault included), so the runs over the whole suite leave them out; they have their own.
USERS_TRAFFIC = "the_users_error_rate or the_users_p99"


def test_check_on_the_sandbox_passes_and_writes_allure_results(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    result = runbook("check", "--target", "sandbox", "-k", f"not ({USERS_TRAFFIC})",
                     cwd=tmp_path, env={"RUNBOOK_HOME": str(sandbox.home)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "runbook summary" in result.stdout
    results = [json.loads(p.read_text())
               for p in (tmp_path / "reports" / "allure-results").glob("*-result.json")]
    health = [r for r in results
              if r["name"].startswith("The API reports status ok with a current timestamp")]
    assert health and health[0]["status"] == "passed"
    assert (tmp_path / "reports" / "junit.xml").exists()
    assert all(outcome == "passed" for outcome in outcomes(tmp_path / "reports").values())


def test_a_first_check_cannot_measure_the_users_alerts_and_says_so(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """The quick start's one run on a fresh sandbox: no earlier reading of the API's counters,
    so no 5-minute window; the alerts are not checked, each with one line saying what is
    missing and when a run can measure it. Never a pass: with nothing else selected, the run
    checked nothing (exit 2); off the sandbox, a critical one not checked exits 4."""
    home = tmp_path / "home"
    env = {**sandbox.env, "RUNBOOK_HOME": str(home)}
    result = runbook("check", "--target", "env", "-k", USERS_TRAFFIC, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nothing was checked" in result.stdout
    document = json.loads((tmp_path / "reports" / "summary.json").read_text())
    seen = {s["name"]: s for s in document["scenarios"]}
    assert sorted(seen) == [
        "The users' error rate over 5 minutes stays under the critical threshold of 5 percent",
        "The users' error rate over 5 minutes stays under the warning threshold of 1 percent",
        "The users' p99 response time over 5 minutes stays under 2 seconds",
    ]
    for scenario in seen.values():
        assert scenario["outcome"] == "skipped"
        message = scenario["message"]
        assert message.startswith("unmeasurable: ") and "\n" not in message, message
        assert "RUNBOOK_PROMETHEUS_URL" in message
    assert (home / "traffic-readings.json").exists()  # the next run's earlier reading
    staging = runbook("check", "--target", "env", "-k", f"({USERS_TRAFFIC}) or"
                      " test_the_api_reports_status_ok", cwd=tmp_path,
                      env={**env, "RUNBOOK_ENVIRONMENT": "staging"})
    assert staging.returncode == 4, staging.stdout + staging.stderr
    assert "critical check(s) not run on this staging target" in staging.stdout


def test_a_malformed_variable_exits_2_in_one_line(tmp_path: Path) -> None:
    result = runbook("check", cwd=tmp_path, env={"API_URL": "not-a-url"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "runbook: API_URL: 'not-a-url' is not an http or https URL; set it like"
        " https://api.example.com (target 'env', from environment variables)"
    ]
    assert not (tmp_path / ".runbook").exists(), "no sandbox may start for an env target"


def test_an_unknown_profile_exits_2(tmp_path: Path) -> None:
    (tmp_path / "runbook.toml").write_text(
        '[targets.staging]\nenvironment = "staging"\nAPI_URL = "https://a.test"\n')
    result = runbook("check", "--target", "prod", cwd=tmp_path)
    assert result.returncode == 2
    assert "target 'prod' is not defined" in result.stderr


@pytest.fixture
def machine_database() -> Iterator[str]:
    """A scratch LegacyVideo database on this machine's own PostgreSQL (not the sandbox's)."""
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    name = f"lv_external_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'create database "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"this machine runs no PostgreSQL on 5432 to use as a target ({exc})")
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    migrate.deploy(dsn)
    yield dsn
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'drop database "{name}" with (force)')


def test_an_external_target_is_checked_without_starting_a_sandbox(
    machine_database: str, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 6379)) != 0:
            pytest.skip("this machine runs no Redis on 6379 to use as a target")
    result = runbook(
        "check", "-k", "database or redis", cwd=tmp_path,
        env={"DATABASE_URL": machine_database, "REDIS_URL": "redis://127.0.0.1:6379/15",
             "RUNBOOK_ENVIRONMENT": "staging"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    seen = outcomes(tmp_path / "reports")
    assert seen["The database answers"] == "passed"
    assert seen["Redis answers PONG"] == "passed"
    assert seen["The Database gives the Component Status table's expected response"] == "passed"
    assert not (tmp_path / ".runbook").exists()
    assert "sandbox" not in result.stderr


def test_stopping_redis_fails_the_redis_checks_and_names_the_runbook_steps(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    redis_pid = healthy_sandbox.sandbox.status().components["redis"].pid
    assert redis_pid
    os.kill(redis_pid, signal.SIGKILL)
    result = runbook("check", "--target", "sandbox", "-k", "redis or worker or api or database",
                     cwd=tmp_path, env={"RUNBOOK_HOME": str(healthy_sandbox.home)})
    assert result.returncode == 1, result.stdout + result.stderr
    seen = outcomes(tmp_path / "reports")
    assert seen["Redis answers PONG"] == "failed"
    assert seen["The Worker gives the Component Status table's expected response"] == "failed"
    assert seen["The worker completes a canary job on the email queue"] == "failed"
    assert seen["The API reports status ok with a current timestamp"] == "passed"
    assert seen["The database answers"] == "passed"
    assert "redis check failed on sandbox" in result.stdout
    assert "Troubleshooting > Worker Not Processing Jobs" in result.stdout


FAKEBIN = Path(__file__).parent / "fakebin"


@pytest.mark.parametrize(("environment", "flag"), [("production", None),
                                                    ("production", "production"),
                                                    ("staging", None)])
def test_drills_against_a_gated_target_exit_3_before_any_platform_call(
    tmp_path: Path, environment: str, flag: str | None
) -> None:
    record = tmp_path / "calls.jsonl"
    env = {
        "API_URL": "https://api.legacyvideo.invalid", "DATABASE_URL":
        "postgresql://lv:pw@db.legacyvideo.invalid/lv", "PLATFORM": "railway",
        "RUNBOOK_ENVIRONMENT": environment, "FAKEBIN_RECORD": str(record),
        "PATH": f"{FAKEBIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    args = ("--allow-drills", flag) if flag else ()
    result = runbook("drill", *args, cwd=tmp_path, env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "refused: drills" in result.stdout + result.stderr
    assert not record.exists() or record.read_text() == "", "the platform was called"
    assert not (tmp_path / "reports" / "drills").exists() or not any(
        (tmp_path / "reports" / "drills").glob("*.json"))


def test_a_drill_is_named_by_its_record_name_or_by_its_runbook_section(tmp_path: Path) -> None:
    """``runbook drill high-cpu`` (the name on its record) and ``runbook drill service-down``
    (a section) select those scenarios and no others, an outline by its row; a name that is
    neither is one line listing both kinds, before anything runs."""
    result = runbook("drill", "hi-cpu", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_line(result.stderr)
    assert "no drill or drilled runbook section named 'hi-cpu'" in line, line
    assert "high-cpu" in line and "high-memory-cpu-usage" in line, line
    assert not (tmp_path / "reports").exists()

    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "runbook/steps/test_runbook.py", "--collect-only", "-q",
         "-p", "no:cacheprovider", "-m", "drill", "--runbook-drills",
         "high-cpu,database-failure", "--runbook-sections", "service-down"],
        cwd=PROJECT_ROOT, env=CLEAN, capture_output=True, text=True, timeout=120, check=False)
    ids = sorted(line for line in collected.stdout.splitlines() if "::" in line)
    assert ids == [
        "steps/test_runbook.py::test_game_day_a_cpu_hog_runs_inside_the_api",
        "steps/test_runbook.py::test_game_day_the_api_is_killed_and_kept_down",
        "steps/test_runbook.py::test_scenario_recovered_within_rto_losing_at_most_rpo"
        "[Database failure-database-failure-30 minutes-1 hour-1800-3600]",
    ], collected.stdout + collected.stderr


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_report_renders_the_html_report_with_the_scenarios(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    from runbook.cli import allure_cli

    if allure_cli() is None:
        pytest.skip("no Allure 3 CLI: Node.js is not installed on this machine")
    env = {"RUNBOOK_HOME": str(sandbox.home)}
    checked = runbook("check", "--target", "sandbox", "-k", "api_reports", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = runbook("report", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    html = tmp_path / "reports" / "allure-report"
    assert (html / "index.html").exists()
    rendered = " ".join(p.read_text(errors="replace") for p in html.rglob("*.json"))
    assert "The API reports status ok with a current timestamp" in rendered


def test_report_without_results_says_what_to_run(tmp_path: Path) -> None:
    result = runbook("report", cwd=tmp_path)
    assert result.returncode == 2
    assert "no Allure results" in result.stderr and "runbook check" in result.stderr
