"""The shipped monitoring files: the alerting rules pass ``promtool check rules`` and their
unit tests (which fail when a rule is broken), every alert has a test expecting it to fire,
and the rules and the Grafana dashboard query only metrics the runbook writes, so a renamed
metric or label cannot leave them silently empty."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runbook import watch
from runbook.drills.record import DrillRecord, Objective, Phase, write_record
from runbook.redact import Redactor
from runbook.reporting import metrics, publish
from runbook.reporting.summary import ScenarioOutcome, write_summary
from tests import monitoring

#: PromQL's keywords: words in an expression that are not metric names.
KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                      "group_right", "bool", "offset", "inf", "nan"})
#: Grafana's variables and what a query holds in their place, for promtool.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
                     "$target": ".*"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([monitoring.PROMTOOL.path(), *args], capture_output=True, text=True,
                          timeout=120, check=False)


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(monitoring.RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects: its words once strings, label matchers, ranges,
    grouping clauses and Grafana variables are taken out, less functions and keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ",
                  text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for word in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", text):
        if not text[word.end():].lstrip().startswith("(") and word.group() not in KEYWORDS:
            names.add(word.group())
    return names


def test_metric_names_reads_selectors_not_functions_labels_or_numbers() -> None:
    assert metric_names('sum by (section) (rate(a_total{x="b c", y=~"$target"}[5m])) '
                        '/ on (job) group_left () b:c > 1e3 and absent(d) unless e offset 5m'
                        ) == {"a_total", "b:c", "d", "e"}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every metric name the runbook writes: a run's ``metrics.prom`` (a scenario with every
    figure, a drill with both objectives) and the watch's alert state, parsed back."""
    reports = tmp_path_factory.mktemp("written") / "reports"
    started = datetime.now(UTC)
    write_summary(reports / "summary.json", [ScenarioOutcome(
        nodeid="steps/test_runbook.py::test_a", name="Redis answers PONG",
        feature="Service Health Checks", sections=("quick-health-check",), tier="critical",
        outcome="failed", duration_s=1.5, figures={"redis ping ms": 3.0},
        last_passed_at=(started - timedelta(days=1)).isoformat(), expired=True)],
        1, "staging", "run-1")
    at = started + timedelta(seconds=1)
    write_record(DrillRecord(
        drill="database-failure", runbook_section="Disaster Recovery", target="staging",
        environment="staging", operator="test", host="host", started_at=at,
        finished_at=at + timedelta(seconds=9), objective=Objective(rto_s=900.0, rpo_s=3600.0),
        phases=(Phase("inject", at, at + timedelta(seconds=1), True),), fault_at=at,
        detected_at=at + timedelta(seconds=0.5), recovered_at=at + timedelta(seconds=7),
        rpo_s=0.0), reports / "drills", Redactor())
    exposition = publish.run_exposition(reports, publish.load_summary(reports, "run-1"),
                                        target="staging", code=1, started=started)
    state = watch.WatchState(target="staging", rounds=3, scenarios={
        "steps/test_runbook.py::test_a": watch.Counter(
            name="Redis answers PONG", sections=["quick-health-check"], tier="critical",
            failures=3, firing=True, detection_latency_s=120.0)})
    watch_exposition = metrics.Exposition()
    watch.add_watch_metrics(watch_exposition, state)
    names = {sample.name
             for text in (generate_latest(exposition.registry()).decode(),
                          generate_latest(watch_exposition.registry()).decode())
             for family in text_string_to_metric_families(text) for sample in family.samples}
    assert {"runbook_scenario_passed", "runbook_drill_rpo_objective_seconds",
            "runbook_watch_detection_latency_seconds"} <= names, names
    return names


def test_promtool_checks_the_shipped_rules() -> None:
    result = promtool("check", "rules", str(monitoring.RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout, result.stdout


def test_the_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", *map(str, monitoring.RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(monitoring.RULE_TESTS), result.stdout


@pytest.mark.parametrize(("broken", "fixed"), [
    ('runbook_scenario_passed{tier="critical"} == 0', 'runbook_scenario_passed{tier="x"} == 0'),
    ("runbook_drill_rto_seconds > runbook_drill_rto_objective_seconds",
     "runbook_drill_rto_seconds > 2 * runbook_drill_rto_objective_seconds"),
    ("< 92 * 86400", "< 95 * 86400"),
    ("runbook_run_timestamp_seconds) > 900", "runbook_run_timestamp_seconds) > 9000"),
])
def test_a_broken_rule_fails_its_unit_tests(broken: str, fixed: str, tmp_path: Path) -> None:
    text = monitoring.RULES.read_text()
    assert broken in text, f"{broken!r} is no longer in the rules: update this test"
    (tmp_path / monitoring.RULES.name).write_text(text.replace(broken, fixed))
    for test in monitoring.RULE_TESTS:
        (tmp_path / test.name).write_text(test.read_text())
    result = promtool("test", "rules", *(str(tmp_path / t.name) for t in monitoring.RULE_TESTS))
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "FAILED" in output, output


def test_every_alert_has_a_unit_test_expecting_it_to_fire() -> None:
    expected: set[str] = set()
    for path in monitoring.RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            expected |= {test["alertname"] for test in case.get("alert_rule_test", [])
                         if test.get("exp_alerts")}
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts == {"RunbookCriticalCheckFailing", "RunbookWatchSilent",
                      "RunbookMetricsAbsent", "RunbookDrillRTOOverObjective",
                      "RunbookDrillRPOOverObjective", "RunbookDRDrillOverdue"}
    assert alerts <= expected, f"alerts no test expects to fire: {sorted(alerts - expected)}"


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def test_the_rules_query_only_metrics_the_runbook_writes(written: set[str]) -> None:
    used = {rule.get("alert") or rule["record"]: metric_names(rule["expr"]) for rule in rules()}
    assert all(used.values()), used
    unknown = {name: sorted(names - written - recorded()) for name, names in used.items()
               if names - written - recorded()}
    assert not unknown, f"rules selecting metrics the runbook does not write: {unknown}"


def dashboard_queries(node: Any) -> Iterator[str]:
    """Every PromQL query in the dashboard: panel targets (rows' panels included) and
    template variables (``label_values(metric, label)`` as the metric)."""
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield node["expr"]
        definition = node.get("definition")
        if isinstance(definition, str) and (found := re.fullmatch(
                r"label_values\((\w+),\s*\w+\)", definition)):
            yield found.group(1)
        for value in node.values():
            yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def test_the_dashboard_queries_only_metrics_the_runbook_writes(
    written: set[str], tmp_path: Path
) -> None:
    dashboard = json.loads(monitoring.DASHBOARD.read_text())
    queries = list(dashboard_queries(dashboard))
    assert len(queries) >= 20, queries
    unknown = {q: sorted(metric_names(q) - written - recorded()) for q in queries
               if not metric_names(q) or metric_names(q) - written - recorded()}
    assert not unknown, f"queries naming no metric, or one the runbook does not write: {unknown}"
    used = set().union(*map(metric_names, queries))
    assert {"runbook_scenario_passed", "runbook_drill_rto_seconds",
            "runbook_drill_rto_objective_seconds", "runbook_drill_rpo_seconds",
            "runbook_drill_rpo_objective_seconds", "runbook_drill_time_to_detect_seconds",
            "runbook_watch_detection_latency_seconds"} <= used, used
    # Valid PromQL, Grafana's variables filled in: promtool parses each as a recording rule.
    def filled(query: str) -> str:
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"a Grafana variable this test does not know: {query}"
        return query
    check = tmp_path / "dashboard-queries.yml"
    check.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{n}", "expr": filled(q)} for n, q in enumerate(queries)]}]}))
    result = promtool("check", "rules", str(check))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_shows_checks_by_section_drills_against_objectives_and_detection() -> None:
    dashboard = json.loads(monitoring.DASHBOARD.read_text())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Checks by runbook section", "Drills: RTO and RPO against the objectives",
                    "Detection latency"]
    by_title = {p["title"]: p for p in dashboard["panels"] if p["type"] != "row"}
    section = by_title["Checks passing by runbook section"]["targets"][0]
    assert "by (section)" in section["expr"] and section["legendFormat"] == "{{section}}"
    rto = [t["expr"] for t in by_title["RTO against the objective"]["targets"]]
    assert [metric_names(e) for e in rto] == [{"runbook_drill_rto_seconds"},
                                              {"runbook_drill_rto_objective_seconds"}]
    assert all('target=~"$target"' in q for q in dashboard_queries(dashboard["panels"])), \
        "every panel follows the target variable"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
