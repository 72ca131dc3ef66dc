"""``runbook coverage`` catches drift: the values the features quote from the runbook checked
against the runbook's current text, on edited copies of the project's runbook and on small
runbooks written for the test; ``--scaffold`` writes a skeleton for an uncovered section."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_bdd.parser import FeatureParser

from runbook.errors import ConfigError
from runbook.features import parse_feature
from runbook.reporting import drift
from runbook.reporting.scaffolding import skeleton
from runbook.sections import RUNBOOK_FILE

ROOT = Path(__file__).resolve().parent.parent
FEATURES = ROOT / "runbook" / "features"
SHIPPED = (ROOT / RUNBOOK_FILE).read_text(encoding="utf-8")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runbook.cli", "coverage", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def edited(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the project's runbook with ``old`` (found exactly once) replaced."""
    assert SHIPPED.count(old) == 1, old
    copy = tmp_path / "RUNBOOK.md"
    copy.write_text(SHIPPED.replace(old, new), encoding="utf-8")
    return copy


def line_of(path: Path, text: str) -> int:
    """The one line of ``path`` holding ``text``."""
    found = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line]
    assert len(found) == 1, (path, text, found)
    return found[0]


def test_the_shipped_runbook_and_features_have_no_drift(tmp_path: Path) -> None:
    result = cli("--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    quotes = json.loads(result.stdout)["quotes"]
    assert quotes["drift"] == []
    assert quotes["quotes"] >= 60  # the RTO table, the thresholds, items, queues, commands
    report = drift.measure(ROOT / RUNBOOK_FILE, FEATURES)
    found = {(q.said, q.found_at) for q in report.quotes}
    rto_row = line_of(ROOT / RUNBOOK_FILE, "| API crash |")
    assert ("5 minutes", rto_row) in found and ("300 seconds", rto_row) in found
    assert ("5 percent", line_of(ROOT / RUNBOOK_FILE, "- Error rate > 5%")) in found


def test_a_changed_rto_names_the_scenario_and_both_lines(tmp_path: Path) -> None:
    runbook = edited(tmp_path, "| API crash | 5 minutes |", "| API crash | 10 minutes |")
    result = cli(str(runbook), cwd=tmp_path)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr
    feature = FEATURES / "disaster_recovery.feature"
    row = line_of(feature, "| API crash ")
    rto = line_of(runbook, "| API crash |")
    expected = (f"drift: 'API crash: recovered within 5 minutes losing at most no data'"
                f" ({feature}:{row}) quotes '5 minutes'; the runbook now says '10 minutes'"
                f" ({runbook}:{rto}, Recovery Time Objectives)")
    assert expected in result.stdout.splitlines()
    # the platform drill states the same RTO in seconds: flagged too, at its own step
    step = line_of(feature, '"platform-api-crash" disaster recovery drill')
    assert f"({feature}:{step}) quotes '300 seconds'; the runbook now says '10 minutes'" in (
        result.stdout)
    # so do the game days held to the API crash row, and nothing else is flagged
    flagged = {(d.quote.scenario, d.quote.said, d.runbook_line, d.runbook_says)
               for d in drift.measure(runbook, FEATURES).drifts}
    assert flagged == {
        ("API crash: recovered within 5 minutes losing at most no data", "5 minutes", rto,
         "10 minutes"),
        ("API crash through the platform: one API instance replaced, back within 5 minutes",
         "300 seconds", rto, "10 minutes"),
        ("Game day: the API is killed and kept down", "300 seconds", rto, "10 minutes"),
        ("Game day: the API lost an environment variable", "300 seconds", rto, "10 minutes")}
    assert result.stdout.splitlines()[-1].endswith(", 4 no longer what the runbook says")

    as_json = cli(str(runbook), "--json", cwd=tmp_path)
    assert as_json.returncode == 1
    document = json.loads(as_json.stdout)
    assert document["exit_code"] == 1
    first = document["quotes"]["drift"][0]
    assert first == {
        "scenario": "API crash: recovered within 5 minutes losing at most no data",
        "kind": "duration", "feature_file": str(feature), "feature_line": row,
        "examples_row_line": row, "feature_says": "5 minutes", "runbook_file": str(runbook),
        "runbook_line": rto, "runbook_says": "10 minutes",
        "section": "Recovery Time Objectives",
        "sections": ["recovery-time-objectives"]}


def test_a_changed_alert_threshold_is_flagged_with_its_examples_row(tmp_path: Path) -> None:
    runbook = edited(tmp_path, "- Error rate > 5%", "- Error rate > 7%")
    report = drift.measure(runbook, FEATURES)
    feature = FEATURES / "monitoring_and_alerts.feature"
    [finding] = report.drifts
    assert finding.quote.scenario == ("The users' error rate over 5 minutes stays under the"
                                      " critical threshold of 5 percent")
    assert finding.quote.feature_file == feature
    assert finding.quote.feature_line == line_of(
        feature, "Then at most <limit> percent of the users' requests failed")
    assert finding.quote.row_line == line_of(feature, "| critical | 5 ")
    assert (finding.quote.said, finding.runbook_says) == ("5 percent", "7%")
    assert finding.runbook_line == line_of(runbook, "- Error rate > 7%")
    assert finding.section == "Recommended Alerts"
    assert report.exit_code == 1


def test_a_changed_memory_threshold_flags_every_scenario_quoting_it(tmp_path: Path) -> None:
    runbook = edited(tmp_path, "- Memory usage > 80%", "- Memory usage > 85%")
    report = drift.measure(runbook, FEATURES)
    flagged = {(d.quote.feature_file.name, d.quote.said, d.runbook_says) for d in report.drifts}
    assert flagged == {("monitoring_and_alerts.feature", "80 percent", "85%"),
                       # the CPU check applies the memory warning's threshold, and says so
                       ("incident_response.feature", "80 percent", "85%")}


def test_a_moved_checklist_item_and_an_edited_command_are_flagged(tmp_path: Path) -> None:
    runbook = edited(tmp_path, "- [ ] Check failed job queues\n", "")
    [finding] = drift.measure(runbook, FEATURES).drifts
    assert finding.quote.said == "Check failed job queues"
    assert "the runbook says no such words there" in finding.line()
    assert finding.section == "Weekly"

    runbook = edited(tmp_path, "> LLEN bull:email:failed", "> ZCARD bull:email:failed")
    text = runbook.read_text().replace("$REDIS_URL LLEN bull:email:failed",
                                       "$REDIS_URL ZCARD bull:email:failed")
    runbook.write_text(text)
    [finding] = drift.measure(runbook, FEATURES).drifts
    assert (finding.quote.said, finding.runbook_says) == ("LLEN bull:email:failed",
                                                          "ZCARD bull:email:failed")


def test_a_new_subsection_is_uncovered_and_its_scaffold_counts_as_manual(tmp_path: Path
                                                                        ) -> None:
    runbook = edited(tmp_path, "---\n\n## Incident Response", (
        "### Cache Warmup\n\nAfter a deploy, warm the cache before traffic returns:\n"
        "1. Purge stale entries: `railway run --service api pnpm cache:purge`\n"
        "2. Request the most viewed videos\n"
        "* Scenario: check the hit ratio is above 80%\n\n"
        "```bash\n# Given a comment in a code block\nrailway logs --service api --tail\n```\n\n"
        "---\n\n## Incident Response"))
    features = tmp_path / "features"
    shutil.copytree(FEATURES, features)
    before = json.loads(cli(str(runbook), "--features", str(features), "--json",
                            cwd=tmp_path).stdout)
    status = {s["slug"]: s["status"] for s in before["sections"]}
    assert status["cache-warmup"] == "uncovered"
    assert before["uncovered"] == 1 and before["exit_code"] == 0
    hint = cli(str(runbook), "--features", str(features), cwd=tmp_path)
    assert "uncovered: 1 sections; runbook coverage --scaffold DIR" in hint.stdout

    scaffold = features / "scaffold"
    result = cli(str(runbook), "--features", str(features), "--scaffold", str(scaffold),
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = scaffold / "cache-warmup.feature"
    assert f"scaffold: wrote {written} (3 manual scenarios)" in result.stdout
    text = written.read_text()
    assert text.startswith("@manual @runbook:cache-warmup\nFeature: Common Operations >"
                           " Cache Warmup\n")
    assert "  After a deploy, warm the cache before traffic returns:" in text  # its words
    assert "  > # Given a comment in a code block" in text  # kept, not read as Gherkin
    scenarios = parse_feature(written)
    assert [s.steps[0] for s in scenarios] == [
        'Given the runbook step "Purge stale entries: railway run --service api pnpm'
        ' cache:purge" that only a person can take',
        'Given the runbook step "Request the most viewed videos" that only a person can take',
        'Given the runbook step "Scenario: check the hit ratio is above 80%" that only a'
        ' person can take']
    assert all({"manual", "runbook:cache-warmup"} <= s.tags for s in scenarios)
    parsed = FeatureParser(str(scaffold), "cache-warmup.feature").parse()
    assert len(parsed.scenarios) == 3 and "manual" in parsed.tags

    after = json.loads(cli(str(runbook), "--features", str(features), "--json",
                           cwd=tmp_path).stdout)
    status = {s["slug"]: s["status"] for s in after["sections"]}
    assert status["cache-warmup"] == "manual"
    assert (after["uncovered"], after["manual"], after["exit_code"]) == (0, 1, 0)
    assert after["quotes"]["drift"] == []  # the skeleton quotes the runbook as it is

    again = cli(str(runbook), "--features", str(features), "--scaffold", str(scaffold),
                "--json", cwd=tmp_path)
    assert json.loads(again.stdout)["scaffold"] == []  # nothing uncovered any more
    assert written.read_text() == text


RUNBOOK = """\
# Ops

## Recovery

### Objectives

| Scenario | RTO |
|----------|-----|
| API crash | 5 minutes |

### Checklist

- [ ] Rotate the keys
- Restart: `svc restart --queue bull:mail:wait`
"""

FEATURE = """\
Feature: Recovery
  # not quoted: 2 minutes (the check's own limit), the scratch queue (made for it)
  @runbook:objectives
  Scenario: Own figures are exempt, quotes are checked
    "Rotate the keys", once a quarter.

    When the API crash drill runs, allowing 30 seconds to detect it, against 5 minutes
    Then it is back within 2 minutes on the mail queue and the scratch queue

  @runbook:checklist
  Scenario: The same figure unexempted here is a quote
    Runbook defect: "svc restart --queue bull:mail:wait" restarts nothing.

    Then it is back within 2 minutes

  @manual @runbook:checklist
  Scenario: A person rotates
    Given the runbook step "Rotate the keys" that only a person can take
"""


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    runbook = tmp_path / "OPS.md"
    runbook.write_text(RUNBOOK)
    features = tmp_path / "features"
    features.mkdir()
    (features / "recovery.feature").write_text(FEATURE)
    return runbook, features


def test_the_rule_exempts_only_what_is_marked_and_finds_every_kind(small: tuple[Path, Path]
                                                                  ) -> None:
    runbook, features = small
    report = drift.measure(runbook, features)
    said = {(q.scenario_line, q.kind, q.said) for q in report.quotes}
    assert said == {
        (4, "duration", "5 minutes"), (4, "queue", "mail"), (4, "words", "Rotate the keys"),
        (11, "duration", "2 minutes"), (11, "words", "svc restart --queue bull:mail:wait"),
        (17, "words", "Rotate the keys")}
    # the 'Rotate the keys' of scenario 4 is looked up in its own section only: not there
    assert [(d.quote.scenario_line, d.quote.said) for d in report.drifts] == [
        (4, "Rotate the keys"), (11, "2 minutes")]
    [words, minutes] = report.drifts
    assert words.runbook_line == 5 and words.runbook_says == ""  # the section's heading
    assert (minutes.runbook_line, minutes.runbook_says) == (11, "")

    runbook.write_text(RUNBOOK.replace("bull:mail:wait", "bull:email:wait").replace(
        "| 5 minutes |", "| 15 minutes |"))
    after = {(d.quote.said, d.runbook_line, d.runbook_says)
             for d in drift.measure(runbook, features).drifts}
    assert {("mail", 14, "email"), ("5 minutes", 9, "15 minutes"),
            ("svc restart --queue bull:mail:wait", 14,
             "Restart: `svc restart --queue bull:email:wait`")} <= after


def test_units_convert_and_a_bare_zero_is_zero() -> None:
    [minutes] = drift.figures("within 5 minutes")
    [seconds] = drift.figures("an RTO of 300 seconds")
    assert minutes.matches(seconds) and minutes.value == 300
    assert [f.text for f in drift.figures("p99 > 2s, --since 1h, 90%, 10 percent")] == [
        "2s", "1h", "90%", "10 percent"]
    assert not drift.figures("2024-01-17, bcrypt 12, port 5555, -d '{}'")
    zeros = drift.figures("| 0 (no data loss) |", zeros=True)
    assert {f.kind for f in zeros} == {"duration", "percent"}
    assert all(f.matches(drift.Figure(f.kind, "0 seconds", 0.0)) for f in zeros)


def test_a_missing_features_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = cli(str(ROOT / RUNBOOK_FILE), "--features", str(tmp_path / "none"), cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("runbook: ") and "no such features directory" in line


def test_a_malformed_feature_file_is_a_config_error_naming_it(small: tuple[Path, Path]) -> None:
    runbook, features = small
    (features / "broken.feature").write_text(
        "Feature: Broken\n  Scenario: fine\n    Given something\n  this is not Gherkin\n")
    with pytest.raises(ConfigError, match=r"broken\.feature:4: not valid Gherkin"):
        drift.measure(runbook, features)


def test_a_changed_database_rto_flags_every_scenario_held_to_that_row(tmp_path: Path) -> None:
    runbook = edited(tmp_path, "| Database failure | 30 minutes |",
                     "| Database failure | 45 minutes |")
    report = drift.measure(runbook, FEATURES)
    rto = line_of(runbook, "| Database failure |")
    assert {(d.runbook_line, d.runbook_says) for d in report.drifts} == {(rto, "45 minutes")}
    assert {d.quote.scenario for d in report.drifts} == {
        "Database failure: recovered within 30 minutes losing at most 1 hour",
        "Database corruption: restored from the latest backup, recent transactions replayed"
        " from the audit log",
        "S3 data loss: versioned objects restored, unversioned ones reported unrecoverable",
        "Database restore test: the newest backup restores into a scratch database within 30"
        " minutes, at most 1 hour old",
        "Accidental deletion: deleted records restored into a new database, exported and"
        " imported back",
        "S3 data loss on canary objects: restored from their versions in the target's own"
        " bucket",
        "Game day: PostgreSQL is stopped", "Game day: every database connection is taken",
        "Game day: the API lost its database"}


def test_every_section_of_the_projects_runbook_scaffolds_into_valid_gherkin(tmp_path: Path
                                                                           ) -> None:
    """Tables, code blocks with comments, bold labels, quotes: each skeleton parses."""
    runbook = drift.RunbookText.read(ROOT / RUNBOOK_FILE)
    parts = {s.line: s.title for s in runbook.sections if s.level == 2}
    for section in runbook.sections:
        part = parts[max(n for n in parts if n <= section.line)]
        text, count = skeleton(runbook, section, part)
        path = tmp_path / f"{section.slug}.feature"
        path.write_text(text)
        scenarios = parse_feature(path)
        assert len(scenarios) == count >= 1, section.title
        assert all({"manual", f"runbook:{section.slug}"} <= s.tags for s in scenarios)
        assert len(FeatureParser(str(tmp_path), path.name).parse().scenarios) == count
    quick = (tmp_path / "recovery-time-objectives.feature").read_text()
    assert "  > | API crash | 5 minutes | 0 (no data loss) |" in quick
