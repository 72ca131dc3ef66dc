"""Metrics and webhook messages after a run: ``reports/metrics.prom`` parsed back with
prometheus_client's parser, the Pushgateway push and one Slack-compatible message per failed
alert tier, received by a real HTTP server on loopback."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runbook.config import Target
from runbook.drills.record import DrillRecord, Objective, Phase, write_record
from runbook.redact import Redactor
from runbook.reporting import metrics, publish
from runbook.reporting.summary import ScenarioOutcome, write_summary
from tests.conftest import RunningSandbox
from tests.receiver import CLEAN, Receiver

#: One scenario per alert tier that fails while Redis is down, and one that keeps passing.
THREE_TIERS = ("redis_answers_pong or failed_email_delivery or (bullmq_counts_them and email)"
               " or api_reports_status")


def runbook(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runbook.cli", *args], cwd=cwd,
                          env={**CLEAN, **env}, capture_output=True, text=True, timeout=120,
                          check=False)


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample by metric name, parsed by prometheus_client (raises on a bad line)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def value(parsed: dict[str, list[tuple[dict[str, str], float]]], name: str,
          **labels: str) -> float:
    matching = [v for got, v in parsed[name] if all(got.get(k) == w for k, w in labels.items())]
    assert len(matching) == 1, f"{name} {labels}: {matching}"
    return matching[0]


def test_metrics_parse_back_with_escaped_labels_and_each_drills_figures(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    run_started = datetime.now(UTC)
    awkward = 'Says "ok" at C:\\tmp\nthen stops'
    outcomes = [
        ScenarioOutcome(nodeid="steps/test_runbook.py::test_a", name=awkward, feature="F",
                        sections=("service-down",), tier="critical", outcome="failed",
                        duration_s=1.5, message="api on sandbox: down"),
        ScenarioOutcome(nodeid="steps/test_runbook.py::test_b", name="Backups are fresh",
                        feature="F", sections=("data-loss-scenarios",), tier=None,
                        outcome="passed", duration_s=0.25, figures={"backup age s": 12.0}),
        ScenarioOutcome(nodeid="steps/test_runbook.py::test_c", name="Only on Railway",
                        feature="F", sections=(), tier="info", outcome="skipped",
                        duration_s=0.0),
    ]
    write_summary(reports / "summary.json", outcomes, 1, "sandbox", "run-1")
    drills = reports / "drills"
    old = run_started - timedelta(days=1)
    for drill, start, rto in (("api-crash", run_started + timedelta(seconds=1), 7.25),
                              ("database-failure", old, 99.0)):
        write_record(DrillRecord(
            drill=drill, runbook_section="service-down", target="sandbox",
            environment="sandbox", operator="test", host="host", started_at=start,
            finished_at=start + timedelta(seconds=9), objective=Objective(rto_s=900.0),
            phases=(Phase("inject", start, start + timedelta(seconds=1), True),),
            fault_at=start, detected_at=start + timedelta(seconds=0.5),
            recovered_at=start + timedelta(seconds=rto), rpo_s=0.0), drills, Redactor())
    warnings: list[str] = []
    with Receiver(status=500) as gateway:
        publish.publish_run(reports, run_id="run-1", code=1, target="sandbox",
                            started=run_started, redact=Redactor(),
                            delivery=publish.Delivery(pushgateway=gateway.url),
                            warn=warnings.append)
        pushed = gateway.seen("PUT", "/metrics/job/runbook/instance/sandbox")

    text = (reports / "metrics.prom").read_text()
    parsed = samples(text)
    assert value(parsed, "runbook_run_exit_code", target="sandbox") == 1
    assert value(parsed, "runbook_scenario_passed", scenario=awkward, tier="critical",
                 section="service-down") == 0
    assert value(parsed, "runbook_scenario_outcome", scenario=awkward, outcome="failed") == 1
    assert value(parsed, "runbook_scenario_duration_seconds", scenario=awkward) == 1.5
    assert value(parsed, "runbook_scenario_passed", scenario="Backups are fresh", tier="") == 1
    assert value(parsed, "runbook_scenario_figure", figure="backup age s") == 12.0
    assert not [s for s in parsed["runbook_scenario_passed"] if s[0]["scenario"] ==
                "Only on Railway"], "a skipped scenario is neither passing nor failing"
    assert value(parsed, "runbook_scenario_expired", scenario="Only on Railway") == 0
    assert value(parsed, "runbook_drill_rto_seconds", drill="api-crash") == 7.25
    assert value(parsed, "runbook_drill_rto_objective_seconds", drill="api-crash") == 900
    assert value(parsed, "runbook_drill_time_to_detect_seconds", drill="api-crash") == 0.5
    assert value(parsed, "runbook_drill_rpo_seconds", drill="api-crash") == 0
    assert value(parsed, "runbook_drill_passed", drill="api-crash") == 1
    assert "runbook_drill_rpo_objective_seconds" not in parsed  # no RPO objective: no sample
    assert all(labels["drill"] != "database-failure"
               for labels, _ in parsed["runbook_drill_rto_seconds"]), "an earlier run's drill"
    # The Pushgateway got the same text and said no: one warning, the file still written.
    assert [r.text for r in pushed] == [text]
    assert pushed[0].content_type.startswith("text/plain; version=0.0.4")
    assert len(warnings) == 1 and "HTTP 500" in warnings[0], warnings
    assert [p.name for p in reports.iterdir() if "metrics.prom" in p.name] == ["metrics.prom"], \
        "no temporary file left behind"


def grouping_key(path: str) -> dict[str, str]:
    """The grouping key of a Pushgateway push path, decoded as the Pushgateway does: a
    ``<label>@base64/<value>`` pair is URL-safe base64, any other value percent-encoded."""
    parts = path.split("/")
    assert parts[:2] == ["", "metrics"], path
    key: dict[str, str] = {}
    for label, encoded in zip(parts[2::2], parts[3::2], strict=True):
        if label.endswith("@base64"):
            padded = encoded + "=" * (-len(encoded) % 4)
            key[label.removesuffix("@base64")] = base64.urlsafe_b64decode(padded).decode()
        else:
            key[label] = unquote(encoded)
    return key


def a_run(target: str) -> metrics.Exposition:
    exposition = metrics.Exposition()
    metrics.add_run(exposition, None, target=target, exit_code=4,
                    finished_at=datetime.now(UTC), duration_s=2.5)
    return exposition


@pytest.mark.parametrize("target", ["staging", "eu-west/staging", "ops team: prod+1 %ü?&#"])
def test_a_push_reaches_the_gateway_under_the_grouping_key_the_library_encodes(
    target: str
) -> None:
    with Receiver() as gateway:
        problem = metrics.push(gateway.url + "/", target, a_run(target).registry())
        [put] = gateway.seen("PUT")
    assert problem is None
    assert grouping_key(put.path) == {"job": "runbook", "instance": target}
    if target == "staging":
        assert put.path == "/metrics/job/runbook/instance/staging"
    assert "/" not in put.path.removeprefix("/metrics/").replace("/", "", 3)  # four segments
    parsed = samples(put.text)
    assert value(parsed, "runbook_run_exit_code", target=target) == 4
    assert value(parsed, "runbook_run_duration_seconds", target=target) == 2.5
    assert put.content_type.startswith("text/plain; version=0.0.4")
    assert put.authorization == ""


def test_credentials_in_the_pushgateway_url_go_as_basic_auth_and_never_into_a_message(
) -> None:
    with Receiver() as gateway:
        url = gateway.url.replace("http://", "http://runbook:p%40ss-w0rd@")
        assert metrics.push(url, "staging", a_run("staging").registry()) is None
        [put] = gateway.seen("PUT")
    assert put.path == "/metrics/job/runbook/instance/staging"
    assert put.authorization == "Basic " + base64.b64encode(b"runbook:p@ss-w0rd").decode()
    with Receiver(status=503) as refusing:
        url = refusing.url.replace("http://", "http://runbook:p%40ss-w0rd@")
        refused = metrics.push(url, "staging", a_run("staging").registry())
    assert refused == f"the Pushgateway at {refusing.url} answered HTTP 503 to the push"
    # Nothing listens on port 9 (discard).
    unreachable = metrics.push("http://runbook:p%40ss-w0rd@127.0.0.1:9", "staging",
                               a_run("staging").registry())
    assert unreachable == ("the Pushgateway at http://127.0.0.1:9 did not take the metrics:"
                           " ConnectionRefusedError")


def test_a_pushgateway_that_never_answers_is_given_up_after_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # connections queue, never answered
        port = silent.getsockname()[1]
        started = time.monotonic()
        problem = metrics.push(f"http://127.0.0.1:{port}", "staging",
                               a_run("staging").registry(), timeout=0.5)
        elapsed = time.monotonic() - started
    assert problem == (f"the Pushgateway at http://127.0.0.1:{port} did not take the"
                       " metrics: TimeoutError")
    assert elapsed < 5, elapsed


def test_the_textfile_and_the_push_carry_label_values_and_the_group_redacted(
    tmp_path: Path
) -> None:
    secret = "tok-" + secrets.token_hex(8)
    redact = Redactor()
    redact.add([secret])
    target = f"team/{secret}"
    warnings: list[str] = []
    with Receiver() as gateway:
        path = publish.write_and_push(tmp_path, a_run(target), target=target, redact=redact,
                                      delivery=publish.Delivery(pushgateway=gateway.url),
                                      warn=warnings.append)
        [put] = gateway.seen("PUT")
    written = path.read_text()
    assert warnings == []
    assert put.text == written
    assert value(samples(written), "runbook_run_exit_code", target="team/***") == 4
    assert grouping_key(put.path)["instance"] == "team/***"
    assert secret not in written and secret not in put.path


def test_the_textfile_is_replaced_whole_and_a_failed_write_is_one_warning(
    tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    warnings: list[str] = []
    first = publish.write_and_push(reports, a_run("first"), target="first",
                                   redact=Redactor(), delivery=publish.Delivery(),
                                   warn=warnings.append)
    publish.write_and_push(reports, a_run("second"), target="second", redact=Redactor(),
                           delivery=publish.Delivery(), warn=warnings.append)
    assert [s[0]["target"] for s in samples(first.read_text())["runbook_run_exit_code"]] == \
        ["second"]
    assert sorted(p.name for p in reports.iterdir()) == ["metrics.prom"]
    first.unlink()
    first.mkdir()  # a directory where the file goes: the rename fails
    publish.write_and_push(reports, a_run("third"), target="third", redact=Redactor(),
                           delivery=publish.Delivery(), warn=warnings.append)
    assert len(warnings) == 1 and warnings[0].startswith(f"cannot write {first}:"), warnings
    assert sorted(p.name for p in reports.iterdir()) == ["metrics.prom"], "temporary file"


def test_a_run_with_failures_posts_one_message_per_failed_tier_and_never_a_secret(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    redis_pid = healthy_sandbox.sandbox.status().components["redis"].pid
    assert redis_pid
    os.kill(redis_pid, signal.SIGKILL)
    tokens = {tier: secrets.token_hex(12) for tier in ("critical", "warning", "info")}
    env = dict(healthy_sandbox.env)
    with Receiver() as receiver:
        hooks = {
            "RUNBOOK_WEBHOOK_URL_CRITICAL": f"{receiver.url}/services/T0/B1/{tokens['critical']}",
            "RUNBOOK_WEBHOOK_URL_WARNING": f"{receiver.url}/services/T0/B2/{tokens['warning']}",
            # Nothing listens on port 9 (discard): the info message cannot be delivered.
            "RUNBOOK_WEBHOOK_URL_INFO": f"http://127.0.0.1:9/services/T0/B3/{tokens['info']}",
        }
        result = runbook("check", "--target", "sandbox", "-k", THREE_TIERS, cwd=tmp_path,
                         env={"RUNBOOK_HOME": str(healthy_sandbox.home),
                              "RUNBOOK_PUSHGATEWAY_URL": receiver.url, **hooks})
        posts = receiver.seen("POST")
        puts = receiver.seen("PUT")

    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # the undelivered message changes nothing
    assert sorted(p.path for p in posts) == sorted(
        [f"/services/T0/B1/{tokens['critical']}", f"/services/T0/B2/{tokens['warning']}"])
    by_tier = {p.path.split("/")[3]: p.json() for p in posts}
    critical, warning = by_tier["B1"], by_tier["B2"]
    assert critical["text"].startswith("CRITICAL: 1 runbook check failed on sandbox")
    body = json.dumps(critical)
    assert "Redis answers PONG" in body
    assert "Service Health Checks &gt; Quick Health Check" in body  # its runbook section
    assert "Connection refused" in body or "Error 111" in body       # what was seen
    assert "check the Redis connection (redis-cli -u $REDIS_URL ping)" in body  # next step
    assert "The API reports status ok" not in body                    # it passed
    assert "Failed email delivery stays under 10 percent" in json.dumps(warning)
    assert "Redis answers PONG" not in json.dumps(warning)
    assert [b["type"] for b in critical["blocks"]] == ["header", "section", "context"]

    warnings = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "info" in warnings[0], result.stderr
    sandbox_secrets = Target.from_variables("sandbox", env, source="sandbox").secret_values()
    assert sandbox_secrets
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "reports").rglob("*")
                      if p.is_file())
    for secret in [*tokens.values(), *sandbox_secrets]:
        for text in (output, written, *(p.text for p in posts), *(p.text for p in puts)):
            assert secret not in text and json.dumps(secret)[1:-1] not in text

    assert len(puts) == 1 and puts[0].path == "/metrics/job/runbook/instance/sandbox"
    parsed = samples(puts[0].text)
    assert value(parsed, "runbook_scenario_passed", scenario="Redis answers PONG") == 0
    assert value(parsed, "runbook_scenario_passed",
                 scenario="The API reports status ok with a current timestamp") == 1
    assert value(parsed, "runbook_run_exit_code") == 1
    assert puts[0].text == (tmp_path / "reports" / "metrics.prom").read_text()


def test_a_webhook_that_is_not_a_url_is_a_usage_error_that_does_not_print_it(
    tmp_path: Path
) -> None:
    token = secrets.token_hex(12)
    result = runbook("check", "--webhook", f"hooks.example.com/services/{token}", cwd=tmp_path,
                     env={})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runbook: a webhook URL is not an http"), lines
    assert token not in result.stdout + result.stderr
    assert not (tmp_path / "reports").exists()
