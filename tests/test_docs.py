"""``runbook docs``: the living runbook from real results of a real check on the sandbox, with
manual and drill records, gaps, escaping and redaction."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runbook import manual
from runbook.drills.record import DrillRun, Objective, write_record
from runbook.features import ScenarioInfo, load_features
from runbook.redact import Redactor
from runbook.reporting import docs
from runbook.reporting.coverage import measure
from runbook.reporting.summary import ScenarioOutcome, append_history, write_summary
from runbook.sections import RUNBOOK_FILE
from tests.conftest import RunningSandbox
from tests.test_cli import CLEAN

ROOT = Path(__file__).resolve().parent.parent
API = "The API reports status ok with a current timestamp"
REDIS = "Redis answers PONG"
PLANTED_DSN_PASSWORD = "planted-Hunter2-pw"


def runbook(*args: str, cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runbook.cli", *args], cwd=cwd,
                          env={**CLEAN, **env}, capture_output=True, text=True, timeout=120,
                          check=False)


def a_manual_scenario() -> ScenarioInfo:
    return next(s for s in load_features(ROOT / "runbook" / "features") if "manual" in s.tags)


def row(page: str, name: str) -> str:
    """The table row of scenario ``name`` (Markdown-escaped as the page writes it)."""
    cell = docs.markdown_text(name)
    return next(line for line in page.splitlines() if line.startswith(f"| {cell} |"))


@pytest.fixture(scope="module")
def checked(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory whose reports/ hold one real check of two quick health
    scenarios against the session's sandbox."""
    work = tmp_path_factory.mktemp("living")
    result = runbook("check", "--target", "sandbox", "-k",
                     "api_reports_status_ok or redis_answers_pong",
                     "--reports", str(work / "reports"), cwd=work,
                     env={"RUNBOOK_HOME": str(sandbox.home)})
    assert result.returncode == 0, result.stdout + result.stderr
    return work


def test_the_page_shows_real_results_figures_records_and_gaps_without_secrets(
        checked: Path, sandbox: RunningSandbox) -> None:
    reports = checked / "reports"
    admin_token = sandbox.env["ADMIN_TOKEN"]
    leak = f"{admin_token} postgresql://ops:{PLANTED_DSN_PASSWORD}@db.internal/lv"
    # A person's record and a drill record written without redaction, as an older version or
    # a hand edit might have left them: the page must mask them itself.
    step = a_manual_scenario()
    manual.record(step.name, result="pass", by="Ada Oncall", evidence=f"INC-42 {leak}",
                  path=checked / "records" / "manual.jsonl", redact=Redactor(enabled=False))
    drill = DrillRun("service-down", "Incident Response > Service Down", "sandbox", "sandbox",
                     Objective(rto_s=900))
    drill.fault_at = drill.started_at
    drill.detected_at = drill.started_at + timedelta(seconds=2.5)
    drill.recovered_at = drill.started_at + timedelta(seconds=41)
    drill.phase("inject", drill.started_at, True, detail=leak)
    drill.notes.append(leak)
    drill.evidence["detection"] = {
        "method": "the scheduled checks (runbook check's selection)",
        "detected_by": [{"scenario": "The API reports status ok with a current timestamp"}],
        "rounds": [{"failed": [{"scenario": "The API reports status ok with a current"
                                            " timestamp",
                                "named": ["Incident Response > Service Down",
                                          "Troubleshooting > API Returns 500 Error"]}]}]}
    drill.completed = True
    write_record(drill.finish(), reports / "drills", Redactor(enabled=False))

    # The project's runbook is fully covered: a section added to a copy of it is the gap.
    runbook_copy = checked / "RUNBOOK.md"
    runbook_copy.write_text((ROOT / RUNBOOK_FILE).read_text()
                            + "\n## Capacity Planning\n\nReview growth each quarter.\n")
    result = runbook("docs", "--reports", str(reports), "--runbook", str(runbook_copy),
                     cwd=checked, env={"RUNBOOK_HOME": str(sandbox.home),
                                       "RUNBOOK_RECORDS": str(checked / "records")})
    assert result.returncode == 0, result.stderr
    page = (reports / docs.MARKDOWN_FILE).read_text()
    html = (reports / docs.HTML_FILE).read_text()

    api = row(page, API)
    assert re.search(r"\| passed \| \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC on sandbox", api), api
    assert re.search(r"\d+(\.\d+)? ms", api), f"no measured latency in {api}"
    assert "| passed |" in row(page, REDIS)
    assert "| never run |" in row(page, "The web front end answers HTTP 200")
    assert "Results: the latest of each scenario from history.jsonl (2 passed)" in page
    # The drill record's figures against the runbook's objective, under its section.
    service_down = page.split("### Service Down", 1)[1].split("\n### ", 1)[0]
    assert re.search(r"\| service-down \| .* \| pass \| 2\.5 s \| 41 s \(900 s\) met \|",
                     service_down), service_down
    # The detection matrix: what the scheduled checks saw of each drill's fault.
    matrix = page.split("## Detection matrix", 1)[1].split("\n## ", 1)[0]
    assert ("| service-down | Incident Response > Service Down | The API reports status ok"
            " with a current timestamp | Incident Response > Service Down; Troubleshooting >"
            " API Returns 500 Error | 2.5 s | pass |") in matrix, matrix
    # The person's record: who, when, evidence.
    assert "| pass (valid) | Ada Oncall |" in row(page, step.name)
    assert "INC-42" in page
    # Gaps: the runbook's sections that no executable scenario restates.
    gaps = page.split("## Gaps: sections with no executable scenario", 1)[1]
    assert "- Capacity Planning (uncovered)" in gaps
    assert "Runbook Updates" not in gaps
    assert "Table of Contents" not in gaps
    for text in (page, html, result.stdout):
        assert admin_token not in text
        assert PLANTED_DSN_PASSWORD not in text
    assert API in html and "Ada Oncall" in html


def test_with_no_run_yet_the_page_is_written_and_says_how_to_get_results(tmp_path: Path
                                                                         ) -> None:
    coverage = measure(ROOT / RUNBOOK_FILE, ROOT / "runbook" / "features")
    inputs = docs.gather(coverage, tmp_path / "reports", tmp_path / "records" / "manual.jsonl")
    written = docs.write(inputs, tmp_path / "out", Redactor())
    page = written.markdown.read_text()
    assert written.never_run == written.scenarios > 0
    assert "**no run recorded yet**" in page and "`runbook check`" in page
    assert "| passed |" not in page
    assert "| never run |" in row(page, API)
    assert "never recorded (due)" in row(page, a_manual_scenario().name)
    assert written.html.read_text().startswith("<!DOCTYPE html>")


def _outcome(name: str, outcome: str, at: datetime, message: str = "",
             figures: Mapping[str, float] | None = None) -> ScenarioOutcome:
    return ScenarioOutcome(
        nodeid=f"steps/test_runbook.py::{name}", name=name, feature="Service Health Checks",
        sections=("quick-health-check",), tier="critical", outcome=outcome, duration_s=0.2,
        message=message, figures=dict(figures or {}), finished_at=at.isoformat())


def test_the_latest_history_entry_wins_and_summary_json_is_the_fallback(tmp_path: Path
                                                                        ) -> None:
    coverage = measure(ROOT / RUNBOOK_FILE, ROOT / "runbook" / "features")
    now = datetime.now(UTC)
    history = tmp_path / "h" / "history.jsonl"
    append_history(history, [_outcome(API, "passed", now, figures={"api health ms": 7.5}),
                             _outcome("A scenario since removed", "failed", now)],
                   run_id="new", target="staging", environment="staging")
    append_history(history, [_outcome(API, "failed", now - timedelta(hours=1), "it was down")],
                   run_id="old", target="staging", environment="staging")
    page = docs.Page(docs.gather(coverage, history.parent, tmp_path / "none.jsonl"),
                     Redactor(), now).render()
    assert re.search(r"\| passed \| .* on staging \(0\.20 s\) \| api health 7\.5 ms \|",
                     row(page, API))
    outside = page.split("## Results outside the runbook's sections", 1)[1]
    assert ("- Service Health Checks: A scenario since removed: FAILED (no such scenario in the"
            " features now)") in outside

    write_summary(tmp_path / "s" / "summary.json",
                  [_outcome(API, "failed", now, "API check failed: connection refused")], 1,
                  "env", "run-1", environment="production")
    page = docs.Page(docs.gather(coverage, tmp_path / "s", tmp_path / "none.jsonl"),
                     Redactor(), now).render()
    assert "FAILED: API check failed: connection refused" in row(page, API)
    assert "env (production)" in row(page, API)
    assert "from summary.json" in page


def test_the_html_is_self_contained_and_escapes_what_a_record_holds(tmp_path: Path) -> None:
    hostile = ('<script>alert(1)</script> ![x](http://evil.test/x.png)'
               ' [click](javascript:alert(1)) | cell <b>bold</b>')
    records = tmp_path / "records" / "manual.jsonl"
    step = a_manual_scenario()
    manual.record(step.name, result="fail", by="<i>Mallory</i>", evidence=hostile,
                  notes="a|b", path=records)
    coverage = measure(ROOT / RUNBOOK_FILE, ROOT / "runbook" / "features")
    written = docs.write(docs.gather(coverage, tmp_path / "reports", records),
                         tmp_path / "out", Redactor())
    html = written.html.read_text()
    body = html.split("<body>", 1)[1]
    for forbidden in ("<script", "<img", "<b>", "<i>", "<a ", "<link", " src=", "href="):
        assert forbidden not in body.lower(), forbidden
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;i&gt;Mallory&lt;/i&gt;" in body
    # The record's "|" did not break its table row: six cells, as the header has.
    cells = row(written.markdown.read_text(), step.name)
    assert len(re.findall(r"(?<!\\)\|", cells)) == 7
    assert re.search(r"<style>", html) and "<script" not in html.lower()
    # No stray data: the JSON records were read, not rewritten.
    assert json.loads(records.read_text().splitlines()[0])["by"] == "<i>Mallory</i>"
