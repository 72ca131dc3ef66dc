"""Every scenario names a section of the runbook it restates, and every name is real."""

from __future__ import annotations

import re
from pathlib import Path

from runbook.sections import RUNBOOK_FILE, parse_headings, slugify

ROOT = Path(__file__).resolve().parent.parent
TAG = re.compile(r"@runbook:([a-z0-9-]+)")


def test_every_runbook_tag_names_a_heading_of_the_runbook() -> None:
    slugs = {h.slug for h in parse_headings((ROOT / RUNBOOK_FILE).read_text())}
    used = {(path.name, tag) for path in (ROOT / "runbook" / "features").glob("*.feature")
            for tag in TAG.findall(path.read_text())}
    assert used, "no @runbook: tag found in features/"
    unknown = sorted(f"{name}: @runbook:{tag}" for name, tag in used if tag not in slugs)
    assert not unknown, f"tags naming no heading of {RUNBOOK_FILE}: {unknown}"


def test_every_scenario_carries_a_runbook_section() -> None:
    missing = []
    for path in (ROOT / "runbook" / "features").glob("*.feature"):
        feature_tagged = False
        tags: list[str] = []
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("@"):
                tags += stripped.split()
            elif stripped.startswith("Feature:"):
                feature_tagged = any(t.startswith("@runbook:") for t in tags)
                tags = []
            elif stripped.startswith(("Scenario:", "Scenario Outline:")):
                if not feature_tagged and not any(t.startswith("@runbook:") for t in tags):
                    missing.append(f"{path.name}: {stripped}")
                tags = []
    assert not missing, missing


def test_slugs_are_the_heading_lowercased_with_hyphens() -> None:
    assert slugify("Monitoring & Alerts") == "monitoring-alerts"
    assert slugify('"Invalid or Expired Token" Errors') == "invalid-or-expired-token-errors"
