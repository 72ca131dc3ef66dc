"""``runbook coverage``: a runbook's headings against the features' ``@runbook:`` tags, on a
runbook written for the test and on the project's own."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runbook.errors import ConfigError
from runbook.reporting.coverage import measure
from runbook.sections import RUNBOOK_FILE, parse_headings

ROOT = Path(__file__).resolve().parent.parent

RUNBOOK = """\
# Ops Runbook

Written for this test.

## Table of Contents
1. [Health](#health)

## Health

### Quick Check
```bash
# Check API (a comment in a code block, not a heading)
curl https://api.example.com/health
```

### Status Table

## Incidents

### Outage

### Breach Response

## Contacts
"""

HEALTH = """\
@runbook:health
Feature: Health
  Scenario: Untagged itself, under the part's tag only
    Given something

  @synthetic @runbook:quick-check
  Scenario: The quick check passes
    Given something

  @manual @runbook:status-table
  Scenario: A person reads the status table
    Given something
"""

INCIDENTS = """\
Feature: Incidents
  @runbook:outage
  Rule: Outages are detected
    Scenario Outline: The <service> outage is detected
      Given the <service> is down

      Examples:
        | service |
        | api     |

  @manual @runbook:nowhere
  Scenario: A tag naming no heading
    Given something
"""

CONTACTS = """\
@runbook:contacts
Feature: Contacts
  Scenario: The contacts answer
    Given something
"""


@pytest.fixture
def book(tmp_path: Path) -> tuple[Path, Path]:
    """A runbook and a features directory with covered, manual-only and untagged sections."""
    runbook = tmp_path / "OPS.md"
    runbook.write_text(RUNBOOK)
    features = tmp_path / "features"
    (features / "nested").mkdir(parents=True)
    (features / "health.feature").write_text(HEALTH)
    (features / "nested" / "incidents.feature").write_text(INCIDENTS)
    (features / "contacts.feature").write_text(CONTACTS)
    return runbook, features


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runbook.cli", "coverage", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def test_each_section_gets_its_status_and_leaves_make_the_share(book: tuple[Path, Path]
                                                                ) -> None:
    coverage = measure(*book)
    status = {s.slug: s.status for s in coverage.sections}
    assert status == {
        "table-of-contents": "navigation",
        "health": "partial",            # one subsection covered, one manual
        "quick-check": "covered",
        "status-table": "manual",       # only a @manual scenario
        "incidents": "partial",
        "outage": "covered",            # through the rule's tag, an outline
        "breach-response": "uncovered",
        "contacts": "covered",          # through its feature's tag
    }
    assert [s.slug for s in coverage.counted()] == [
        "quick-check", "status-table", "outage", "breach-response", "contacts"]
    assert coverage.summary_line() == "covered 3/5 sections (60%), manual 1, uncovered 1"
    assert [s.slug for s in coverage.gaps()] == ["status-table", "breach-response"]
    assert [tag for tag, _ in coverage.unknown_tags] == ["nowhere"]


def test_the_command_lists_every_heading_the_rule_and_the_share(book: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    runbook, features = book
    result = cli(str(runbook), "--features", str(features), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("rule: leaves are counted") for line in lines)
    rows = {m.group(1).strip(): m.group(2) for line in lines
            if (m := re.match(r"^  (\s*\S.*?)\s{2,}(covered|manual|uncovered|partial|navigation)"
                              r"\b", line))}
    assert rows == {"Table of Contents": "navigation", "Health": "partial",
                    "Quick Check": "covered", "Status Table": "manual",
                    "Incidents": "partial", "Outage": "covered",
                    "Breach Response": "uncovered", "Contacts": "covered"}
    assert "tag naming no heading: @runbook:nowhere" in result.stdout
    assert lines[-3:] == [
        "covered 3/5 sections (60%), manual 1, uncovered 1",
        "quotes: 0 checked in 0 scenarios, 0 no longer what the runbook says",
        "uncovered: 1 sections; runbook coverage --scaffold DIR writes a @manual feature"
        " skeleton in the runbook's words for each"]

    as_json = cli(str(runbook), "--features", str(features), "--json", cwd=tmp_path)
    document = json.loads(as_json.stdout)
    assert (document["covered"], document["manual"], document["uncovered"]) == (3, 1, 1)
    assert document["share"] == 0.6


def test_the_projects_own_runbook_has_every_heading_listed_with_a_status(tmp_path: Path
                                                                        ) -> None:
    result = cli("--json", cwd=tmp_path)  # the defaults: the project's runbook and features
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    headings = parse_headings((ROOT / RUNBOOK_FILE).read_text())
    listed = [(s["title"], s["status"]) for s in document["sections"]]
    assert [title for title, _ in listed] == [h.title for h in headings]
    assert all(status in {"covered", "manual", "uncovered", "partial", "navigation"}
               for _, status in listed)
    assert ("Quick Health Check", "covered") in listed
    assert re.fullmatch(r"covered \d+/\d+ sections \(\d+%\), manual \d+, uncovered \d+",
                        document["summary"])
    assert document["counted"] == document["covered"] + document["manual"] + document[
        "uncovered"]


def test_a_malformed_feature_file_is_one_line_naming_file_and_line(book: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    runbook, features = book
    (features / "broken.feature").write_text(
        "Feature: Broken\n  Scenario: fine\n    Given something\n  this is not Gherkin\n")
    result = cli(str(runbook), "--features", str(features), cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("runbook: ") and "broken.feature" in line
    assert re.search(r"\b4\b", line), line  # the offending line
    assert result.stdout == ""


def test_a_missing_runbook_file_is_one_line_and_exit_2(book: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    _, features = book
    result = cli(str(tmp_path / "NOPE.md"), "--features", str(features), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"runbook: {tmp_path / 'NOPE.md'}: no such runbook file; give the path of the"
        " runbook's Markdown"]


def test_other_bad_inputs_say_what_is_wrong(book: tuple[Path, Path], tmp_path: Path) -> None:
    runbook, features = book
    flat = tmp_path / "flat.md"
    flat.write_text("# Title only\n\nNo sections here.\n")
    with pytest.raises(ConfigError, match="no ## or ### headings"):
        measure(flat, features)
    with pytest.raises(ConfigError, match="no such features directory"):
        measure(runbook, tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"no \.feature files"):
        measure(runbook, empty)
    (features / "latin1.feature").write_bytes("Feature: Caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.feature: not UTF-8"):
        measure(runbook, features)
