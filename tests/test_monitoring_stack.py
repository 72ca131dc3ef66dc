"""The runbook's metrics through the real monitoring stack: ``runbook check --pushgateway``
against the sandbox with Redis down pushes to a real Pushgateway, a real Prometheus scrapes it
(``honor_labels``) with the shipped rules loaded, and a real Alertmanager delivers the critical
check's alert to a webhook receiver. One check run serves the module's tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runbook.wait import wait_until
from tests import monitoring
from tests.conftest import RunningSandbox
from tests.receiver import CLEAN, Receiver, Request

#: A critical check that fails while Redis is down, and one that keeps passing.
REDIS = "Redis answers PONG"
API = "The API reports status ok with a current timestamp"
SCENARIOS = "redis_answers_pong or api_reports_status"

# The module's stack (the session's sandbox, three servers, a check bounded at 180 s and the
# sandbox brought back) is set up inside its first test: over the default timeout.
pytestmark = pytest.mark.timeout(420)


@dataclass(frozen=True)
class Stack:
    pushgateway: str
    prometheus: str
    alertmanager: str
    receiver: Receiver
    check: subprocess.CompletedProcess[str]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector Prometheus' HTTP API answers for ``promql``."""
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": promql},
                           timeout=5)
        answer.raise_for_status()
        body = answer.json()
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        return list(body["data"]["result"])


@pytest.fixture(scope="module")
def stack(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The three servers, and one `runbook check` pushed to them with Redis down (Redis is
    started again before the tests look)."""
    directory = tmp_path_factory.mktemp("monitoring")
    with ExitStack() as stack:
        receiver = stack.enter_context(Receiver())
        alertmanager = stack.enter_context(
            monitoring.alertmanager(directory, f"{receiver.url}/alertmanager"))
        pushgateway = stack.enter_context(monitoring.pushgateway(directory))
        prometheus = stack.enter_context(
            monitoring.prometheus(directory, pushgateway, alertmanager))
        redis_pid = sandbox.sandbox.status().components["redis"].pid
        assert redis_pid
        os.kill(redis_pid, signal.SIGKILL)
        try:
            check = subprocess.run(
                [sys.executable, "-m", "runbook.cli", "check", "--target", "sandbox",
                 "-k", SCENARIOS, "--pushgateway", pushgateway],
                cwd=directory, env={**CLEAN, "RUNBOOK_HOME": str(sandbox.home)},
                capture_output=True, text=True, timeout=180, check=False)
        finally:
            sandbox.sandbox.up(timeout=60)
        yield Stack(pushgateway, prometheus, alertmanager, receiver, check)


def test_a_check_run_lands_in_the_pushgateway_in_the_targets_group(stack: Stack) -> None:
    output = stack.check.stdout + stack.check.stderr
    assert stack.check.returncode == 1, output
    assert "warning:" not in output, output  # the push went through
    text = httpx.get(f"{stack.pushgateway}/metrics", timeout=5).text
    passed = {sample.labels["scenario"]: (sample.labels, sample.value)
              for family in text_string_to_metric_families(text)
              for sample in family.samples if sample.name == "runbook_scenario_passed"}
    assert set(passed) == {REDIS, API}, passed
    labels, value = passed[REDIS]
    assert value == 0
    assert labels["job"] == "runbook" and labels["instance"] == "sandbox", labels
    assert labels["target"] == "sandbox" and labels["tier"] == "critical", labels
    assert passed[API][1] == 1


def test_prometheus_scrapes_the_pushgateway_and_answers_for_the_runbooks_metrics(
    stack: Stack
) -> None:
    seen = wait_until(lambda: stack.query('runbook_scenario_passed{job="runbook"}'),
                      timeout=30, interval=0.5, accept=lambda result: len(result) == 2)
    assert seen.ok, seen.summary()
    by_scenario = {r["metric"]["scenario"]: r for r in seen.value or []}
    redis = by_scenario[REDIS]
    assert redis["value"][1] == "0"
    assert {k: redis["metric"][k] for k in ("job", "instance", "target", "tier", "feature")} \
        == {"job": "runbook", "instance": "sandbox", "target": "sandbox", "tier": "critical",
            "feature": "Service Health Checks"}, redis["metric"]
    assert redis["metric"]["section"], redis["metric"]  # its runbook section
    assert by_scenario[API]["value"][1] == "1"
    exit_code = stack.query('runbook_run_exit_code{target="sandbox"}')
    assert [r["value"][1] for r in exit_code] == ["1"], exit_code
    # The shipped rules loaded and evaluated: Prometheus holds the alert as firing.
    alerts = wait_until(lambda: stack.query('ALERTS{alertstate="firing"}'), timeout=30,
                        interval=0.5, accept=bool)
    assert alerts.ok, alerts.summary()
    assert [(a["metric"]["alertname"], a["metric"]["scenario"]) for a in alerts.value or []] \
        == [("RunbookCriticalCheckFailing", REDIS)]


def test_the_failing_critical_check_reaches_the_webhook_through_alertmanager(
    stack: Stack
) -> None:
    def delivered() -> list[Request]:
        return stack.receiver.seen("POST", "/alertmanager")

    posts = wait_until(delivered, timeout=60, interval=0.5, accept=bool)
    assert posts.ok, posts.summary()
    alerts = [alert for post in posts.value or [] for alert in post.json()["alerts"]]
    assert [a["labels"]["alertname"] for a in alerts] == ["RunbookCriticalCheckFailing"], alerts
    alert = alerts[0]
    assert alert["status"] == "firing"
    assert alert["labels"]["scenario"] == REDIS
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["target"] == "sandbox" and alert["labels"]["tier"] == "critical"
    assert alert["annotations"]["summary"] == f"{REDIS} is failing on sandbox"
    assert posts.value is not None and posts.value[0].json()["receiver"] == "webhook"
