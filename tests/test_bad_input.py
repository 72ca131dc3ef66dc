"""Bad input, as a user gives it to ``runbook``: each is one clear line (``runbook: ...``)
naming what is wrong and what to do, the documented exit code, and nothing lost: the
reports and history of earlier runs are as they were.

Exit codes: 2 for what the user must fix (a malformed feature file, an undefined step, a bad
runbook.toml, a bad variable value); 1 for what the target must fix (an unreachable host,
wrong credentials), with the runbook's next steps.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from tests.conftest import RunningSandbox
from tests.test_cli import outcomes, runbook

PROJECT = Path(__file__).resolve().parent.parent
EARLIER = '{"run_id": "earlier", "nodeid": "x", "outcome": "passed"}\n'


def _reports_with_history(where: Path) -> Path:
    """A reports directory holding an earlier run's history, to prove nothing is lost."""
    reports = where / "reports"
    reports.mkdir(parents=True)
    (reports / "history.jsonl").write_text(EARLIER)
    return reports


def _features(where: Path) -> Path:
    copy = where / "features"
    shutil.copytree(PROJECT / "runbook" / "features", copy)
    return copy


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("runbook:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_malformed_feature_file_is_one_line_naming_it_and_nothing_runs(
    tmp_path: Path
) -> None:
    features = _features(tmp_path)
    broken = features / "service_health_checks.feature"
    broken.write_text(broken.read_text() + "\n  Oops, this is not Gherkin\n")
    line_number = len(broken.read_text().splitlines())
    reports = _reports_with_history(tmp_path)
    result = runbook("check", cwd=tmp_path, env={"RUNBOOK_FEATURES": str(features)})
    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_line(result.stderr)
    assert line.startswith(f"runbook: {broken}:{line_number}: not valid Gherkin"), line
    assert "fix the feature file" in line
    assert result.stdout == ""  # nothing ran, no sandbox was started
    assert (reports / "history.jsonl").read_text() == EARLIER
    assert not (tmp_path / ".runbook").exists()


def test_an_undefined_step_is_one_line_with_its_file_and_line_and_exit_2(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    features = _features(tmp_path)
    extra = features / "extra.feature"
    extra.write_text(
        "Feature: Extra\n\n"
        "  @synthetic @critical @runbook:quick-health-check\n"
        "  Scenario: The moon answers\n"
        "    Given the moon is made of cheese\n")
    reports = _reports_with_history(tmp_path)
    result = runbook("check", "-k", "moon_answers or api_reports_status_ok", cwd=tmp_path,
                     env={"RUNBOOK_FEATURES": str(features),
                          "RUNBOOK_HOME": str(sandbox.home)})
    assert result.returncode == 2, result.stdout + result.stderr
    said = f'{extra}:5: no step definition for Given "the moon is made of cheese"'
    assert said in result.stdout, result.stdout
    assert "Traceback" not in result.stdout
    found = outcomes(reports)
    assert found["The moon answers"] == "error"
    assert found["The API reports status ok with a current timestamp"] == "passed"
    history = (reports / "history.jsonl").read_text()
    assert history.startswith(EARLIER) and len(history.splitlines()) == 3


@pytest.mark.parametrize(("text", "says"), [
    ("[targets.staging\nAPI_URL = 'x'\n", "not valid TOML"),
    ("[targets.staging]\nAPI_URL = 'x'\n", "declares no environment"),
    ("[targets.staging]\nenvironment = 'staging'\nAPI_URL = 'ftp://api.example.com'\n",
     "API_URL"),
    ("[targets.staging]\nenvironment = 'staging'\nDATABASE_URL = '${NOT_SET_ANYWHERE}'\n",
     "NOT_SET_ANYWHERE"),
])
def test_a_bad_runbook_toml_is_one_line_and_exit_2(tmp_path: Path, text: str, says: str
                                                   ) -> None:
    (tmp_path / "runbook.toml").write_text(text)
    reports = _reports_with_history(tmp_path)
    result = runbook("check", "--target", "staging", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_line(result.stderr)
    assert says in line, line
    assert (reports / "history.jsonl").read_text() == EARLIER


@pytest.mark.parametrize(("variable", "value"), [
    ("REDIS_URL", "http://redis.example.com:6379"),
    ("DATABASE_URL", "mysql://lv:secret-pw-123@db.example.com/lv"),
    ("RUNBOOK_ENVIRONMENT", "prod"),
    ("PLATFORM", "heroku"),
])
def test_a_bad_variable_value_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = {"API_URL": "https://api.example.com", variable: value}
    result = runbook("check", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_line(result.stderr)
    assert variable in line, line
    assert "secret-pw-123" not in result.stdout + result.stderr


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_host_fails_the_check_naming_it_with_the_next_steps(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    env = {**sandbox.env, "RUNBOOK_HOME": str(sandbox.home),
           "DATABASE_URL": f"postgresql://legacyvideo:pw-unreachable-1@127.0.0.1:"
                           f"{_closed_port()}/legacyvideo"}
    result = runbook("check", "--target", "env", "-k", "database", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Connection refused" in result.stdout or "connection refused" in result.stdout
    assert "Database Connection Errors" in result.stdout
    assert "pw-unreachable-1" not in result.stdout + result.stderr


def test_wrong_credentials_fail_the_check_saying_so_without_the_secret(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    env = dict(sandbox.env)
    redis_url = env["REDIS_URL"]
    password = redis_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    env["REDIS_URL"] = redis_url.replace(password, "wrong-redis-password-42", 1)
    env["RUNBOOK_HOME"] = str(sandbox.home)
    result = runbook("check", "--target", "env", "-k", "redis", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    text = result.stdout + result.stderr
    assert "WRONGPASS" in text or "invalid username-password" in text or "auth" in text.lower()
    assert "wrong-redis-password-42" not in text and password not in text
    document = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert any(s["outcome"] == "failed" for s in document["scenarios"])
