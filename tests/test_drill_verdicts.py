"""The drill record's verdict is the scenario's: pytest's outcome, Allure's status, the
summary and the exit code all say what the record says.

First as a user runs it: ``runbook drill`` on the sandbox for two runbook sections, one game
day whose runbook steps restore service and two whose steps do not, each detected by the
full scheduled suite. Then with drills planted in a copy of the harness: one whose fault
cannot be injected and one whose clean-up fails; no Then step looks at either phase, and
the scenario still fails, naming the phase.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningSandbox, write_project

PLANTED = '''

# -- planted by tests/test_drill_verdicts.py -------------------------------------------------
from runbook.drills import catalog as _catalog
from runbook.drills import engine as _engine
from runbook.drills.faults import fault as _fault
from runbook.platforms.base import record as _record
from runbook.probes import Verdict as _Verdict, run_probe as _run_probe


@_fault("planted-broken", "a fault that cannot be injected")
class _Broken:
    @staticmethod
    def inject(context, params):
        return _record("inject", ("library", "planted"), lambda: (False, "", "planted: no"),
                       context.redactor())

    @staticmethod
    def revert(context, params):
        return _record("revert", ("library", "planted"), lambda: (True, "", ""),
                       context.redactor())


@_fault("planted-noop", "a fault that changes nothing")
class _Noop(_Broken):
    @staticmethod
    def inject(context, params):
        return _record("inject", ("library", "planted"), lambda: (True, "", ""),
                       context.redactor())


class _Planted(_engine.Incident):
    section = "Incident Response > Service Down"
    description = "planted"
    kind = _engine.DISASTER_RECOVERY

    def detect(self):
        return _run_probe("api", "planted", self.context.target, self.context.timeouts,
                          lambda: _Verdict(False, "planted", "planted: seen"),
                          expected="planted")

    def runbook_steps(self):
        return []


class _BrokenInject(_Planted):
    name = "planted-broken-inject"
    fault = "planted-broken"


class _BrokenCleanup(_Planted):
    name = "planted-broken-cleanup"
    fault = "planted-noop"

    def cleanup(self):
        return ["planted: the clean-up left something behind"]


_catalog.DRILLS.update({d.name: d for d in (_BrokenInject, _BrokenCleanup)})
'''

WHEN = ('    When the on-call engineer runs the "{name}" disaster recovery drill, allowing 10'
        " seconds to detect it, against an RTO of 60 seconds and an RPO of 0 seconds\n")
FEATURE = ("""Feature: Planted drills

  @drill @runbook:service-down
  Scenario: A drill whose fault cannot be injected
    Given a canary user for the end-to-end check
""" + WHEN.format(name="planted-broken-inject") + """
  @drill @runbook:service-down
  Scenario: A drill whose clean-up fails
    Given a canary user for the end-to-end check
""" + WHEN.format(name="planted-broken-cleanup") + """    Then the drill's own check detected it
    And service was back within the RTO
""")


def _allure(results: Path) -> dict[str, str]:
    """Scenario name -> Allure status, from raw results."""
    found = {}
    for path in results.glob("*-result.json"):
        document = json.loads(path.read_text())
        found[document["name"]] = document["status"]
    return found


def _records(drills: Path) -> dict[str, dict[str, Any]]:
    return {json.loads(p.read_text())["drill"]: json.loads(p.read_text())
            for p in drills.glob("*.json") if not p.name.startswith(("guard", "ledger"))}


def _env(box: RunningSandbox) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "DATABASE_"))}
    return {**env, "RUNBOOK_HOME": str(box.home)}


@pytest.mark.timeout(600)
def test_runbook_drill_records_equal_the_scenarios_allure_statuses(
        healthy_sandbox: RunningSandbox, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    ran = subprocess.run(
        [str(Path(sys.executable).with_name("runbook")), "drill", "service-down",
         "database-connection-errors", "--target", "sandbox", "--reports", str(reports)],
        cwd=tmp_path, env=_env(healthy_sandbox), capture_output=True, text=True, timeout=580,
        check=False)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    records = _records(reports / "drills")
    verdicts = {name: record["verdict"] for name, record in records.items()}
    assert verdicts == {"service-down": "pass", "database-connection-errors": "fail",
                        "connection-limit-exhausted": "fail"}, ran.stdout
    statuses = _allure(reports / "allure-results")
    summary = json.loads((reports / "summary.json").read_text())
    outcomes = {s["name"]: s["outcome"] for s in summary["scenarios"]}
    scenario = {"service-down": "Game day: the API is killed and kept down",
                "database-connection-errors": "Game day: PostgreSQL is stopped",
                "connection-limit-exhausted": "Game day: every database connection is taken"}
    for drill, name in scenario.items():
        want = "passed" if verdicts[drill] == "pass" else "failed"
        assert statuses[name] == want and outcomes[name] == want, (drill, statuses, outcomes)
        detection = records[drill]["evidence"]["detection"]
        assert detection["detected_by"], detection
        # the full scheduled selection ran (a round stops at the first failure naming the
        # section, so at least that many scenarios were checked)
        assert detection["method"].startswith("the scheduled checks"), detection
    assert "the fault is still in place" in ran.stdout
    assert "runbook should add" in ran.stdout


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
            sandbox: RunningSandbox) -> pytest.Pytester:
    """A project on the package's steps with the planted drills (its conftest.py), against
    the session's sandbox given as the ``env`` target."""
    write_project(pytester.path)
    with (pytester.path / "conftest.py").open("a") as module:
        module.write(PLANTED)
    (pytester.path / "features").mkdir()
    (pytester.path / "features" / "planted.feature").write_text(FEATURE)
    for name, value in sandbox.env.items():
        monkeypatch.setenv(name, value)
    return pytester


def test_a_failed_inject_or_clean_up_fails_the_scenario_naming_the_phase(
        project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess(
        "steps/test_runbook.py", "-p", "no:cacheprovider", "--target", "env",
        "--runbook-reports", str(project.path / "reports"),
        "--alluredir", str(project.path / "allure"))
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines([
        "*the drill record says FAIL: phase 'inject' failed*",
        "*the drill record says FAIL: phase 'clean up' failed: planted: the clean-up left*",
    ], consecutive=False)
    statuses = _allure(project.path / "allure")
    assert statuses == {"A drill whose fault cannot be injected": "failed",
                        "A drill whose clean-up fails": "failed"}, statuses
    records = _records(project.path / "reports" / "drills")
    assert {n: r["verdict"] for n, r in records.items()} == {
        "planted-broken-inject": "fail", "planted-broken-cleanup": "fail"}
    summary = json.loads((project.path / "reports" / "summary.json").read_text())
    assert {s["outcome"] for s in summary["scenarios"]} == {"failed"}
