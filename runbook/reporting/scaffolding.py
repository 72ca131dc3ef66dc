"""A feature skeleton for each runbook section no scenario restates, in the runbook's words.

``runbook coverage --scaffold DIR`` writes ``DIR/<slug>.feature`` for every uncovered
section: tagged ``@manual`` and ``@runbook:<slug>``, the section's text as the feature's
description, and one manual scenario per item of its lists (the whole section when it has
none), each naming the item in the runbook's words. Until someone makes it executable, a
person records doing each item (``runbook manual record``), and ``runbook coverage`` counts
the section as manual instead of uncovered. An existing file is never overwritten.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.errors import ConfigError
from runbook.reporting.coverage import UNCOVERED, Coverage
from runbook.reporting.drift import RunbookSection, RunbookText

_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+(?:\[[ xX]\]\s+)?(.+?)\s*$")
#: Line starts that mean something to Gherkin inside a description: quoted with "> ".
_GHERKIN = re.compile(r"^(?:@|\||#|\"\"\"|```|\*\s|(?:Feature|Rule|Background|Scenario"
                      r"|Scenario Outline|Example|Examples|Scenarios)\s*:|(?:Given|When|Then"
                      r"|And|But)\s)")


@dataclass(frozen=True)
class Skeleton:
    """The skeleton of one uncovered section: where it goes and what it says."""

    section: RunbookSection
    path: Path
    text: str
    scenarios: int
    written: bool  # False: a file was already there, left as it was

    def to_json(self) -> dict[str, Any]:
        return {"section": self.section.title, "slug": self.section.slug,
                "runbook_line": self.section.line, "file": str(self.path),
                "scenarios": self.scenarios, "written": self.written}


def _clean(text: str) -> str:
    """Markdown emphasis and code marks off; double quotes made single (step text)."""
    return re.sub(r"\*\*|`", "", text).replace('"', "'").strip()


def items(runbook: RunbookText, section: RunbookSection) -> list[str]:
    """The section's list items, in order, each once (code blocks left out)."""
    found: list[str] = []
    fenced = False
    for _, line in runbook.body(section):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else _ITEM.match(line)
        if match and (item := _clean(match.group(1))) and item not in found:
            found.append(item)
    return found


def skeleton(runbook: RunbookText, section: RunbookSection, part: str) -> tuple[str, int]:
    """The feature file's text for ``section`` and how many scenarios it has."""
    title = _clean(section.title)
    where = f"{part} > {title}" if part and part != section.title else title
    lines = [f"@manual @runbook:{section.slug}", f"Feature: {where}",
             f"  Written by runbook coverage --scaffold from {runbook.path}:{section.line}: the",
             "  section's words, each item a manual step until someone makes it executable.", ""]
    for _, line in runbook.body(section):
        text = line.strip()
        if text and text != "---":
            lines.append(f"  > {text}" if _GHERKIN.match(text) else f"  {text}")
    steps = items(runbook, section) or [title]
    for step in steps:
        lines += ["", f"  Scenario: {title}: {step}",
                  f'    Given the runbook step "{step}" that only a person can take',
                  "    Then a person has recorded doing it, with who, when and the evidence"]
    return "\n".join(lines) + "\n", len(steps)


def write(coverage: Coverage, runbook: RunbookText, directory: Path) -> list[Skeleton]:
    """A skeleton in ``directory`` for each uncovered leaf of ``coverage``; ``ConfigError``
    when the directory cannot be made or written."""
    uncovered = [s for s in coverage.sections if s.counted and s.status == UNCOVERED]
    made: list[Skeleton] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for covered in uncovered:
            section = runbook.section(covered.slug)
            if section is None:
                continue
            text, scenarios = skeleton(runbook, section, covered.heading.part)
            path = directory / f"{section.slug}.feature"
            written = not path.exists()
            if written:
                path.write_text(text, encoding="utf-8")
            made.append(Skeleton(section, path, text, scenarios, written))
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot write the skeletons there ({exc.strerror});"
                          " give a writable directory to --scaffold") from None
    return made


def hint(coverage: Coverage) -> list[str]:
    """The line that says how to scaffold the uncovered sections (none when there are none)."""
    count = coverage.count(UNCOVERED)
    if not count:
        return []
    return [f"uncovered: {count} sections; runbook coverage --scaffold DIR writes a @manual"
            " feature skeleton in the runbook's words for each"]


def lines(made: Sequence[Skeleton], directory: Path) -> list[str]:
    """What the command prints about the skeletons."""
    if not made:
        return [f"scaffold: no uncovered section, nothing written to {directory}"]
    shown = []
    for skeleton_ in made:
        what = (f"wrote {skeleton_.path} ({skeleton_.scenarios} manual scenarios)"
                if skeleton_.written else f"kept {skeleton_.path} (already there)")
        shown.append(f"scaffold: {what} for '{skeleton_.section.title}'"
                     f" ({skeleton_.path.name} @runbook:{skeleton_.section.slug})")
    shown.append(f"scaffold: count them with: runbook coverage --features <a directory holding"
                 f" the features and {directory}>")
    return shown
