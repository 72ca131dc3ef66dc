"""What the Allure report shows beside the results: labels tying each scenario to its runbook
section, failure categories by runbook incident, and the run's environment."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import allure

from runbook.sections import Heading

#: Alert tier -> Allure severity.
SEVERITY = {
    "critical": allure.severity_level.CRITICAL,
    "warning": allure.severity_level.NORMAL,
    "info": allure.severity_level.MINOR,
}

#: Failures grouped by the runbook incident their message names; the first match wins.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("Timeout", r"(?s).*(timeout|timed out|no answer within|deadline).*"),
    ("Service Down", r"(?s).*Incident Response > Service Down.*"),
    ("Database Connection Errors", r"(?s).*Database Connection Errors.*"),
    ("Upload Failures", r"(?s).*Upload Failures.*"),
    ("Email Not Sending", r"(?s).*Email Not Sending.*"),
    ("Invalid Token", r"(?s).*Invalid or Expired Token.*"),
    ("Worker Not Processing Jobs", r"(?s).*Worker Not Processing Jobs.*"),
    ("API Returns 500", r"(?s).*API Returns 500 Error.*"),
    ("High Memory/CPU", r"(?s).*High Memory/CPU Usage.*"),
    ("Security Incident", r"(?s).*Data Breach.*"),
    ("Slow Queries", r"(?s).*Slow Query Performance.*"),
    ("Drill", r"(?s).*drill check failed.*"),
)


def label(feature: str, sections: Sequence[str], headings: Mapping[str, Heading],
          tier: str | None) -> None:
    """Epic = the runbook part, feature, story = the subsection, severity from the alert
    tier, and a link to the section in the runbook (allure-pytest-bdd adds the tags)."""
    allure.dynamic.feature(feature)
    primary = next((headings[s] for s in sections if s in headings), None)
    if primary is not None:
        allure.dynamic.epic(primary.part)
        if primary.level == 3:
            allure.dynamic.story(primary.title)
        base = os.environ.get("RUNBOOK_URL", "docs/RUNBOOK.md")
        allure.dynamic.link(f"{base}#{primary.anchor}", name=f"Runbook: {primary.title}")
    if tier in SEVERITY:
        allure.dynamic.severity(SEVERITY[tier])


def write_extras(directory: Path, environment: Mapping[str, str]) -> None:
    """``categories.json`` and ``environment.properties`` in the Allure results directory."""
    directory.mkdir(parents=True, exist_ok=True)
    categories = [
        {"name": name, "messageRegex": regex, "matchedStatuses": ["failed", "broken"]}
        for name, regex in CATEGORIES
    ]
    categories.append({"name": "Runbook defect", "matchedStatuses": ["failed"],
                       "messageRegex": r"(?s).*runbook defect.*"})
    (directory / "categories.json").write_text(json.dumps(categories, indent=2))
    lines = [f"{key}={value}" for key, value in sorted(environment.items()) if value]
    (directory / "environment.properties").write_text("\n".join(lines) + "\n")
