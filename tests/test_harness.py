"""The pytest wiring, run as a user runs it: exit codes, tiers, gates, summary, evidence.

Each test lays out a small project as a team would with the installed package (the shipped
pytest configuration and binding module, the features it needs, any step it plants) and runs
pytest on it in a subprocess against a real HTTP server.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import write_project

ROOT = Path(__file__).resolve().parent.parent

HEALTH_SCENARIO = """
  @synthetic @{tier} @runbook:quick-health-check
  Scenario: {name}
    Given the target has the API
    When the on-call engineer checks the API health
    Then the API reports status ok
"""

DRILL_SCENARIO = """
  @drill @runbook:service-down
  Scenario: A destructive drill
    Given the drill touches the target
"""

RECORDING_STEP = '''

from pathlib import Path

from pytest_bdd import given


@given("the drill touches the target")
def _() -> None:
    Path("touched").write_text("the drill ran")
'''


class Health:
    """A real HTTP server whose /health answers what the test says."""

    def __init__(self) -> None:
        self.status = 200
        self.failures_first = 0
        self.body = b'{"status":"ok","timestamp":"2099-01-01T00:00:00Z"}'
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                from datetime import UTC, datetime

                body = health.body.replace(
                    b"2099-01-01T00:00:00Z", datetime.now(UTC).isoformat().encode()
                )
                status = health.status
                if self.path.startswith("/health") and health.failures_first > 0:
                    health.failures_first -= 1
                    status = 503
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def health() -> Iterator[Health]:
    server = Health()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The shipped configuration and binding module (the harness and steps are the
    package's), with no features yet, and no runbook variables inherited."""
    write_project(pytester.path)
    (pytester.path / "features").mkdir()
    for variable in ("API_URL", "WEB_URL", "DATABASE_URL", "REDIS_URL", "S3_BUCKET",
                     "RESEND_API_KEY", "ADMIN_TOKEN", "API_SECRET", "RUNBOOK_ENVIRONMENT",
                     "PLATFORM", "RUNBOOK_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    return pytester


def feature(project: pytest.Pytester, *scenarios: str) -> None:
    text = "Feature: Service Health Checks\n" + "".join(scenarios)
    (project.path / "features" / "checks.feature").write_text(text)


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess(
        "steps/test_runbook.py", "-p", "no:cacheprovider", "--runbook-reports",
        str(project.path / "reports"), *args,
    )


def summary(project: pytest.Pytester) -> dict[str, object]:
    return json.loads((project.path / "reports" / "summary.json").read_text())


def test_all_passing_exits_0_and_writes_the_summary(
    project: pytest.Pytester, health: Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_URL", health.url)
    feature(project, HEALTH_SCENARIO.format(tier="critical", name="API is healthy"))
    result = run(project)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*runbook summary*", "runbook: quick-health-check",
                                 "*ok*API is healthy [[]critical[]]"])
    [scenario] = summary(project)["scenarios"]  # type: ignore[misc]
    assert scenario["outcome"] == "passed"
    assert scenario["sections"] == ["quick-health-check"]


def test_a_critical_failure_exits_1_with_the_runbook_steps(
    project: pytest.Pytester, health: Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    health.status = 503
    monkeypatch.setenv("API_URL", health.url)
    feature(project, HEALTH_SCENARIO.format(tier="critical", name="API is healthy"))
    result = run(project)
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "api check failed on env (production, http://127.0.0.1:*)",
        "  Actual:   HTTP 503",
        "*Incident Response > Service Down: 5. restart the service*",
    ])
    # The on-call engineer reads the runbook's words, not a traceback through the harness.
    assert "call_fixture_func" not in result.stdout.str()


def test_only_warning_failures_exit_4(
    project: pytest.Pytester, health: Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    health.status = 500
    monkeypatch.setenv("API_URL", health.url)
    feature(project, HEALTH_SCENARIO.format(tier="warning", name="A warning check"))
    assert run(project).ret == 4
    assert summary(project)["exit_code"] == 4


def test_a_warning_and_a_critical_failure_exit_1(
    project: pytest.Pytester, health: Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    health.status = 500
    monkeypatch.setenv("API_URL", health.url)
    feature(project, HEALTH_SCENARIO.format(tier="warning", name="A warning check"),
            HEALTH_SCENARIO.format(tier="critical", name="A critical check"))
    assert run(project).ret == 1


PASSING_SCENARIO = """
  @synthetic @warning @runbook:quick-health-check
  Scenario: Something else is checked
    Given a check that passes
"""

PASSING_STEP = '''

from pytest_bdd import given


@given("a check that passes")
def _() -> None:
    assert True
'''


def test_a_run_that_checked_nothing_exits_2_and_says_why(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    feature(project, HEALTH_SCENARIO.format(tier="critical", name="API is healthy"))
    result = run(project)
    assert result.ret == 2, result.stdout.str()
    result.stdout.fnmatch_lines(["*skip*API is healthy [[]critical[]]",
                                 "*target 'env' sets no API_URL*",
                                 "nothing was checked*"])
    [scenario] = summary(project)["scenarios"]  # type: ignore[misc]
    assert scenario["outcome"] == "skipped"
    assert summary(project)["exit_code"] == 2


@pytest.mark.parametrize(("environment", "expected"), [("staging", 4), ("sandbox", 0)])
def test_a_skipped_critical_check_off_the_sandbox_is_not_green(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, environment: str, expected: int
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("RUNBOOK_ENVIRONMENT", environment)
    with (project.path / "steps" / "test_runbook.py").open("a") as module:
        module.write(PASSING_STEP)
    feature(project, HEALTH_SCENARIO.format(tier="critical", name="API is healthy"),
            PASSING_SCENARIO)
    result = run(project)
    assert result.ret == expected, result.stdout.str()
    assert summary(project)["exit_code"] == expected
    result.stdout.fnmatch_lines(["*1 not checked (skipped)*"])
    if expected:
        result.stdout.fnmatch_lines([
            "1 critical check(s) not run on this staging target*API is healthy: target 'env'"
            " sets no API_URL*"])


def test_a_malformed_variable_exits_2_in_one_line_before_running(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_URL", "not-a-url")
    feature(project, HEALTH_SCENARIO.format(tier="critical", name="API is healthy"))
    result = run(project)
    assert result.ret == 2
    result.stdout.fnmatch_lines(["*configuration error: API_URL: 'not-a-url' is not an http*"])
    assert not (project.path / "reports" / "summary.json").exists()


@pytest.mark.parametrize(
    ("environment", "flag", "expected"),
    [
        ("production", None, 3),
        ("production", "production", 3),
        ("staging", None, 3),
        ("staging", "production", 3),
        ("staging", "staging", 0),
    ],
)
def test_drill_gates_refuse_before_anything_is_touched(
    project: pytest.Pytester, health: Health, monkeypatch: pytest.MonkeyPatch,
    environment: str, flag: str | None, expected: int,
) -> None:
    monkeypatch.setenv("API_URL", health.url)
    monkeypatch.setenv("RUNBOOK_ENVIRONMENT", environment)
    feature(project, DRILL_SCENARIO)
    with (project.path / "steps" / "test_runbook.py").open("a") as module:
        module.write(RECORDING_STEP)
    args = ("--allow-drills", flag) if flag else ()
    result = run(project, *args)
    assert result.ret == expected, result.stdout.str()
    assert (project.path / "touched").exists() == (expected == 0)
    if expected == 3:
        result.stdout.fnmatch_lines(["*refused: drills*"])


def test_a_pass_on_retry_is_flaky_never_silently_green(
    project: pytest.Pytester, health: Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    health.failures_first = 1
    monkeypatch.setenv("API_URL", health.url)
    feature(project, HEALTH_SCENARIO.format(tier="critical", name="API is healthy"))
    result = run(project, "--reruns", "2")
    assert result.ret == 0
    [scenario] = summary(project)["scenarios"]  # type: ignore[misc]
    assert (scenario["outcome"], scenario["attempts"]) == ("flaky", 2)
    result.stdout.fnmatch_lines(["*FLKY*API is healthy*", "*passed on attempt 2; first:*503*"])


def test_failing_every_attempt_is_a_failure(
    project: pytest.Pytester, health: Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    health.status = 503
    monkeypatch.setenv("API_URL", health.url)
    feature(project, HEALTH_SCENARIO.format(tier="critical", name="API is healthy"))
    assert run(project, "--reruns", "2").ret == 1
    [scenario] = summary(project)["scenarios"]  # type: ignore[misc]
    assert (scenario["outcome"], scenario["attempts"]) == ("failed", 3)


LEAKY_STEP = """

import os

from pytest_bdd import given


@given("a step fails quoting the API secret")
def _() -> None:
    secret = os.environ["API_SECRET"]
    raise AssertionError(f"boom: {secret} / Bearer {secret}")
"""


def test_secrets_in_a_failure_reach_no_report(
    project: pytest.Pytester, health: Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "planted-Secret-4f9c2e7d"
    monkeypatch.setenv("API_URL", health.url)
    monkeypatch.setenv("API_SECRET", secret)
    feature(project, """
  @synthetic @critical @runbook:quick-health-check
  Scenario: A leaky failure
    Given a step fails quoting the API secret
""")
    with (project.path / "steps" / "test_runbook.py").open("a") as module:
        module.write(LEAKY_STEP)
    result = run(project, "--alluredir", str(project.path / "reports" / "allure-results"),
                 "--junitxml", str(project.path / "reports" / "junit.xml"), "-l")
    assert result.ret == 1
    assert "boom" in result.stdout.str()
    assert secret not in result.stdout.str()
    written = [p for p in (project.path / "reports").rglob("*") if p.is_file()]
    assert any(p.name.endswith("-result.json") for p in written)
    assert any(p.name == "junit.xml" for p in written)
    for path in written:
        assert secret not in path.read_text(errors="replace"), path


def test_allure_results_carry_the_runbook_section_and_the_incident_categories(
    project: pytest.Pytester, health: Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(ROOT / "docs", project.path / "docs")
    health.status = 503
    monkeypatch.setenv("API_URL", health.url)
    feature(project, HEALTH_SCENARIO.format(tier="critical", name="API is healthy"))
    results = project.path / "allure-results"
    assert run(project, "--alluredir", str(results)).ret == 1
    [result] = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    labels = {(label["name"], label["value"]) for label in result["labels"]}
    assert {("epic", "Service Health Checks"), ("story", "Quick Health Check"),
            ("severity", "critical")} <= labels
    assert result["links"][0]["url"].endswith("RUNBOOK.md#quick-health-check")
    categories = json.loads((results / "categories.json").read_text())
    service_down = next(c for c in categories if c["name"] == "Service Down")
    assert re.fullmatch(service_down["messageRegex"], result["statusDetails"]["message"])
    assert "target=env (production" in (results / "environment.properties").read_text()
