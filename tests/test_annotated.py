"""The runbook, annotated (``runbook docs``), and its defects as a patch (``--propose-fixes``).

The catalogue of defects (runbook/defects.py) is checked against the runbook and the features;
the patch is applied with the real ``git apply``; the page is read in headless Chromium after a
real run of the @runbook-defect scenarios against the sandbox's Redis and BullMQ.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runbook import defects
from runbook.drills.record import DrillRun, Objective, write_record
from runbook.drills.signoff import sign
from runbook.features import load_features
from runbook.redact import Redactor
from runbook.reporting import annotated, evidence
from runbook.reporting.summary import append_history
from runbook.sections import RUNBOOK_FILE
from tests.conftest import RunningSandbox
from tests.test_docs import _outcome, runbook
from tests.test_report_html import Chromium, chromium

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = (ROOT / RUNBOOK_FILE).read_text(encoding="utf-8")
LLEN = "The runbook's LLEN on the failed jobs answers WRONGTYPE"
PLANTED = "planted-Hunter2-pw"
#: The lines the runbook gets wrong that the patch must change (the issue's four).
WRONG_LINES = ("> LLEN bull:email:failed", "> DEL bull:email:failed",
               "# Restart worker (will retry failed jobs automatically)",
               "railway run --service api npx prisma db pull")


# -- the catalogue ---------------------------------------------------------------------------


def test_every_finding_quotes_the_runbook_exactly_once() -> None:
    for finding in defects.FINDINGS:
        for text in finding.runbook_text:
            assert RUNBOOK.count(text) == 1, (finding.id, text)
    edits = defects.locate(RUNBOOK.split("\n"))
    assert len(edits) == sum(len(f.runbook_text) for f in defects.FINDINGS)


def test_every_runbook_defect_scenario_has_its_finding_and_none_pretends() -> None:
    scenarios = load_features(ROOT / "runbook" / "features")
    tagged = {s.name for s in scenarios if "runbook-defect" in s.tags}
    assert tagged, "no @runbook-defect scenario found"
    for name in tagged:
        assert defects.of_scenario(name), f"@runbook-defect scenario {name!r} has no finding"
    for finding in defects.FINDINGS:
        if finding.evidence == "demonstrated":
            assert set(finding.scenarios) <= tagged, finding.id
        else:  # documented: the real tool cannot run here, and no scenario says otherwise
            assert not finding.scenarios and finding.citation.startswith("https://")
    # The scenario that "demonstrated" resolve --rolled-back on our own migrations table.
    assert not [s for s in scenarios if any("rollback" in step for step in s.steps)]
    assert defects.finding("resolve-rolled-back").evidence == "documented"
    assert "prisma.io/docs" in defects.finding("resolve-rolled-back").citation
    assert defects.finding("db-pull-health-check").evidence == "documented"


def test_each_demonstrating_scenario_quotes_the_runbook_text_of_its_finding() -> None:
    """The scenario's description says what the runbook says, in its words, from the one
    catalogue: a finding edited away from its scenario is seen here."""
    features = ROOT / "runbook" / "features"
    for finding in defects.FINDINGS:
        for name in finding.scenarios:
            scenario = next(s for s in load_features(features) if s.name == name)
            text = scenario.path.read_text(encoding="utf-8")
            block = text.split(f"Scenario: {name}", 1)[1].split("Scenario", 1)[0]
            assert f'"{finding.quote}"' in " ".join(block.split()), (name, finding.quote)


# -- the patch --------------------------------------------------------------------------------


def test_the_proposed_fixes_apply_with_git_and_change_the_wrong_lines(tmp_path: Path) -> None:
    result = runbook("docs", "--reports", str(tmp_path / "reports"), "--propose-fixes",
                     cwd=tmp_path, env={"RUNBOOK_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    patch = tmp_path / "reports" / annotated.PATCH_FILE
    assert f"proposed fixes: {patch}" in result.stdout
    text = patch.read_text()
    hunks = [line for line in text.splitlines() if line.startswith("@@ ")]
    assert hunks
    for hunk in hunks:  # each hunk cites its finding and its evidence
        assert re.search(r"demonstrated by the scenario \"|documented: https://", hunk), hunk
    assert f"demonstrated by the scenario \"{LLEN}\"" in text

    repository = tmp_path / "checkout"
    (repository / "docs").mkdir(parents=True)
    shutil.copy(ROOT / RUNBOOK_FILE, repository / RUNBOOK_FILE)
    subprocess.run(["git", "init", "-q"], cwd=repository, check=True)
    check = subprocess.run(["git", "apply", "--check", str(patch)], cwd=repository,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    subprocess.run(["git", "apply", str(patch)], cwd=repository, check=True)
    fixed = (repository / RUNBOOK_FILE).read_text()
    assert fixed == defects.apply(RUNBOOK)
    before, after = RUNBOOK.splitlines(), fixed.splitlines()
    for wrong in WRONG_LINES:
        assert any(line.startswith(wrong) for line in before), wrong
        assert not any(line.strip() == wrong or line.endswith(f"{wrong}`")
                       for line in after), f"still in the patched runbook: {wrong}"
    assert "> ZCARD bull:email:failed" in after
    assert "npx prisma db pull --print > /dev/null" in fixed
    assert ".retryJobs({ state: 'failed' })" in fixed


# -- the page, without and with results -------------------------------------------------------


def test_a_demonstrated_finding_needs_its_scenario_to_have_passed(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    result = runbook("docs", "--reports", str(reports), cwd=tmp_path,
                     env={"RUNBOOK_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    page = (reports / annotated.MARKDOWN_FILE).read_text()
    assert f"NOT demonstrated: its scenario \"{LLEN}\" never ran" in page
    assert "demonstrated on the real component" not in page.split("# Operations Runbook")[1]
    assert "WRONG (resolve-rolled-back), documented" in page

    # Its latest run failed: still not demonstrated, and the failure is shown.
    now = datetime.now(UTC)
    failed = _outcome(LLEN, "failed", now, "LLEN answered 0 on a sorted set")
    append_history(reports / "history.jsonl",
                   [replace(failed, feature="Common Operations")],
                   run_id="r1", target="staging", environment="staging")
    result = runbook("docs", "--reports", str(reports), cwd=tmp_path,
                     env={"RUNBOOK_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    page = (reports / annotated.MARKDOWN_FILE).read_text()
    assert f"NOT demonstrated: its scenario \"{LLEN}\" did not pass" in page
    assert "FAILED: LLEN answered 0 on a sorted set" in page


def test_a_section_no_scenario_restates_is_marked_as_such(tmp_path: Path) -> None:
    copy = tmp_path / "RUNBOOK.md"
    copy.write_text(RUNBOOK + "\n## Capacity Planning\n\nReview growth each quarter.\n")
    result = runbook("docs", "--reports", str(tmp_path / "reports"), "--runbook", str(copy),
                     cwd=tmp_path, env={"RUNBOOK_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "reports" / annotated.MARKDOWN_FILE).read_text()
    tail = page.split("## Capacity Planning", 1)[1]
    assert tail.lstrip().startswith("> ∅ No evidence: no scenario restates this section")
    assert "Review growth each quarter." in tail


def test_a_runbook_without_a_findings_text_gets_its_page_and_no_patch(tmp_path: Path) -> None:
    copy = tmp_path / "RUNBOOK.md"
    copy.write_text(RUNBOOK.replace("> LLEN bull:email:failed\n", ""))
    args = ("docs", "--reports", str(tmp_path / "reports"), "--runbook", str(copy))
    env = {"RUNBOOK_HOME": str(tmp_path / "home")}
    result = runbook(*args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "reports" / annotated.MARKDOWN_FILE).read_text()
    assert "Findings whose text this runbook does not hold" in page
    assert "llen-failed-set" in page.split("# Operations Runbook")[0]
    assert "(del-failed-set), NOT demonstrated" in page  # the other findings still shown
    result = runbook(*args, "--propose-fixes", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "runbook defect llen-failed-set: its text '> LLEN bull:email:failed' is not in the" \
           " runbook" in result.stderr
    assert not (tmp_path / "reports" / annotated.PATCH_FILE).exists()


READ = """
(() => {
  const text = (node) => node ? node.innerText : "";
  return {
    defects: [...document.querySelectorAll("aside.note-defect")].map((aside) => ({
      label: text(aside.querySelector(".label")),
      removed: [...aside.querySelectorAll("del")].map(text),
      added: [...aside.querySelectorAll("ins")].map(text),
      text: text(aside),
      before: text(aside.previousElementSibling),
    })),
    tables: [...document.querySelectorAll("table")].map((table) =>
      [...table.rows].map((row) => [...row.cells].map(text))),
    body: document.body.innerText,
    scripts: document.scripts.length,
    external: [...document.querySelectorAll("[src], link")].length,
  };
})()
"""


def read_page(browser: Chromium, url: str) -> dict[str, Any]:
    target = browser.send("Target.createTarget", url="about:blank")["targetId"]
    session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    browser.send("Page.enable", session)
    browser.send("Page.navigate", session, url=url)
    browser.event("Page.loadEventFired", session)
    seen = browser.send("Runtime.evaluate", session, returnByValue=True, expression=READ)
    browser.send("Target.closeTarget", targetId=target)
    assert "exceptionDetails" not in seen, seen["exceptionDetails"]
    page: dict[str, Any] = seen["result"]["value"]
    return page


def drill(reports: Path, scenario: str, environment: str, started: datetime, rto_s: float,
          objective: Objective) -> Path:
    run = DrillRun(scenario.lower().replace(" ", "-"),
                   "Disaster Recovery > Recovery Time Objectives", environment, environment,
                   objective)
    run.started_at = run.fault_at = started
    run.detected_at = started + timedelta(seconds=2)
    run.recovered_at = started + timedelta(seconds=rto_s)
    run.rpo_s = 0.0
    run.phase("inject", started, True)
    run.evidence["scenario"] = scenario
    run.completed = True
    json_path, _ = write_record(run.finish(), reports / "drills", Redactor())
    return json_path


def test_the_page_in_chromium_shows_the_runbook_its_wrong_llen_beside_the_real_count_and_the_rto_table_measured(  # noqa: E501
        sandbox: RunningSandbox, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    home = {"RUNBOOK_HOME": str(sandbox.home)}
    result = runbook("check", "--target", "sandbox", "--tags", "operation", "-k",
                     "llen_on_the_failed_jobs", "--reports", str(reports), cwd=tmp_path,
                     env=home)
    assert result.returncode == 0, result.stdout + result.stderr
    kept = json.loads(evidence.path_of(reports, "Common Operations", LLEN).read_text())
    llen = next(r["evidence"]["observed"] for r in kept["records"]
                if r["evidence"].get("check") == "runbook LLEN email failed")
    assert llen["reply"].startswith("WRONGTYPE") and llen["key_type"] == "zset"
    count = llen["bullmq_failed"]
    assert count == 2  # "Given 2 failed canary jobs on the email queue", as BullMQ counts

    # A record kept unredacted (a hand edit, an older version): the page masks it itself.
    kept["records"].append({"title": "planted", "evidence": {"observed": {
        "dsn": f"postgresql://ops:{PLANTED}@db.internal/lv", "seen": sandbox.env["ADMIN_TOKEN"]}}})
    evidence.path_of(reports, "Common Operations", LLEN).write_text(json.dumps(kept))

    now = datetime.now(UTC)
    api = Objective(rto_s=300, rpo_s=0)
    signed = drill(reports, "API crash", "staging", now - timedelta(days=3), 41, api)
    drill(reports, "API crash", "staging", now - timedelta(days=1), 55, api)  # not signed
    drill(reports, "Database failure", "sandbox", now - timedelta(hours=2), 900,
          Objective(rto_s=1800, rpo_s=3600))
    sign(signed, by="Rita Reviewer", evidence="CHG-7")

    result = runbook("docs", "--reports", str(reports), cwd=tmp_path, env=home)
    assert result.returncode == 0, result.stderr
    html_path = reports / annotated.HTML_FILE
    html = html_path.read_text()
    markdown = (reports / annotated.MARKDOWN_FILE).read_text()
    for text in (html, markdown):
        assert sandbox.env["ADMIN_TOKEN"] not in text and PLANTED not in text
    assert "planted: dsn = postgresql://ops:***@db.internal/lv" in html

    browser = Chromium(chromium(), tmp_path / "chromium-profile")
    try:
        page = read_page(browser, html_path.as_uri())
    finally:
        browser.close()
    assert page["scripts"] == 0 and page["external"] == 0
    body = page["body"]
    # The runbook's own words, in its order.
    words = ["Operational procedures for running and maintaining LegacyVideo in production.",
             "View Queue Status:", "Clear Failed Jobs:", "Recovery Time Objectives",
             "This runbook should be reviewed and updated:"]
    assert [body.find(w) for w in words] == sorted(body.find(w) for w in words), words
    assert all(w in body for w in words)

    # LLEN bull:email:failed: struck through, right after the code block that says it, beside
    # the count real Redis and BullMQ gave in that run.
    wrong = next(d for d in page["defects"] if d["removed"] == ["> LLEN bull:email:failed"])
    assert wrong["before"].splitlines()[-1] == "> LLEN bull:email:failed"
    assert wrong["label"].startswith("WRONG (llen-failed-set), demonstrated on the real")
    assert wrong["added"] == ["> ZCARD bull:email:failed"]
    assert f"bullmq_failed = {count}" in wrong["text"]
    assert "reply = WRONGTYPE" in wrong["text"]
    assert f"{LLEN} — passed" in wrong["text"]
    # The documented ones, with their source.
    rollback = next(d for d in page["defects"] if "resolve-rolled-back" in d["label"])
    assert "documented" in rollback["label"] and "prisma.io/docs" in rollback["text"]

    # The RTO/RPO table, each row with the measured figures of its latest drill per
    # environment, the signed one first.
    table = next(t for t in page["tables"] if t[0][0] == "Scenario")
    rows = {row[0]: row for row in table[1:]}
    assert table[0][-1].startswith("Measured")
    assert rows["API crash"][1] == "5 minutes"  # the runbook's own cell, unchanged
    assert re.search(r"staging: RTO 41 s \(300 s\) met, RPO 0 s \(0 s\) met; .* signed off by"
                     r" Rita Reviewer", rows["API crash"][-1]), rows["API crash"]
    assert re.search(r"sandbox: RTO 900 s \(1800 s\) met, .* NOT signed off",
                     rows["Database failure"][-1]), rows["Database failure"]
    assert rows["Complete outage"][-1] == "no drill recorded for this row"
