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

#: Runbook incidents and the section name their failure messages carry. A message lists the
#: runbook's next steps, most relevant section first (runbook.sections.NEXT_STEPS), so a
#: failure belongs to the incident its message names FIRST: a database failure whose advice
#: goes on to "Service Down" still sits under Database Connection Errors.
INCIDENTS: tuple[tuple[str, str], ...] = (
    ("Service Down", "Incident Response > Service Down"),
    ("Database Connection Errors", "Database Connection Errors"),
    ("Upload Failures", "Upload Failures"),
    ("Email Not Sending", "Email Not Sending"),
    ("Invalid Token", "Invalid or Expired Token"),
    ("Worker Not Processing Jobs", "Worker Not Processing Jobs"),
    ("API Returns 500", "API Returns 500 Error"),
    ("High Memory/CPU", "High Memory/CPU Usage"),
    ("Security Incident", "Data Breach"),
    ("Slow Queries", "Slow Query Performance"),
)
_NAMED = "|".join(section for _, section in INCIDENTS)


def _first_named(section: str) -> str:
    """A message whose first runbook section named is ``section``."""
    return rf"^(?:(?!{_NAMED})[\s\S])*{section}[\s\S]*$"


def _anywhere(text: str) -> str:
    """A message with ``text`` anywhere in it."""
    return rf"^[\s\S]*{text}[\s\S]*$"


#: Failures grouped by runbook incident; the first match wins. The patterns mean the same in
#: Python, Java (Allure 2) and JavaScript (Allure 3): no inline flags, ``[\s\S]`` for "any
#: character", anchored, since Allure 2 matches whole messages and Allure 3 searches them.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("Timeout", _anywhere("(?:timeout|timed out|no answer within|deadline)")),
    *((name, _first_named(section)) for name, section in INCIDENTS),
    ("Drill", _anywhere("drill check failed")),
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
                       "messageRegex": _anywhere("runbook defect")})
    (directory / "categories.json").write_text(json.dumps(categories, indent=2))
    lines = [f"{key}={value}" for key, value in sorted(environment.items()) if value]
    (directory / "environment.properties").write_text("\n".join(lines) + "\n")
