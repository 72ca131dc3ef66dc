"""Which sections of a runbook the features restate: covered, manual or uncovered.

A runbook's ``##`` and ``###`` headings (``runbook.sections.parse_headings``, so the slugs are
the ones ``@runbook:<slug>`` tags use) are matched against the tags of every scenario in a
features directory (``runbook.features``, the ``gherkin`` parser pytest-bdd uses). A
scenario's tags are its own, its feature's and its rule's.

- **covered**: at least one scenario that is not ``@manual`` restates the section;
- **manual**: only ``@manual`` scenarios do (a person records their result);
- **uncovered**: none does.

How parents count (the rule is printed with every report): the share counts *leaves*, the
headings without subsections. A part with subsections (a ``##`` with ``###`` under it) is
not counted itself; its status is rolled up from its subsections: covered, manual or
uncovered when all of them are, otherwise ``partial``. A feature-level tag that names the part
(``@runbook:incident-response``) therefore covers no subsection: only a tag naming a
subsection proves that subsection is restated. A heading such as "Table of Contents" is
navigation: listed, never counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.errors import ConfigError
from runbook.features import ScenarioInfo, parse_feature
from runbook.sections import Heading, parse_headings

COVERED = "covered"
MANUAL = "manual"
UNCOVERED = "uncovered"
PARTIAL = "partial"
NAVIGATION = "navigation"

#: Headings that are navigation, not procedure: listed, never counted.
NAVIGATION_SLUGS = frozenset({"table-of-contents", "contents", "toc"})

RULE = ("leaves are counted (headings without subsections); a part with subsections is"
        " covered when all of them are, else partial, and is not counted itself")

_TAG = "runbook:"


def is_manual(scenario: ScenarioInfo) -> bool:
    """A step only a person can take: its result is recorded, not run."""
    return "manual" in scenario.tags


@dataclass(frozen=True)
class Section:
    """One heading of the runbook, the scenarios tagged with it, and its status."""

    heading: Heading
    status: str
    counted: bool
    scenarios: tuple[ScenarioInfo, ...]
    subsections: tuple[Section, ...] = ()

    @property
    def title(self) -> str:
        return self.heading.title

    @property
    def slug(self) -> str:
        return self.heading.slug

    @property
    def path(self) -> str:
        """``Part > Title`` (the title alone for a part)."""
        if self.heading.level == 2:
            return self.title
        return f"{self.heading.part} > {self.title}"

    @property
    def gap(self) -> bool:
        """A counted section that no executable scenario restates."""
        return self.counted and self.status in (MANUAL, UNCOVERED)


@dataclass(frozen=True)
class Coverage:
    """Every heading of a runbook (in its order) with its status, and the counts."""

    runbook: Path
    features: Path
    feature_files: int
    scenarios: tuple[ScenarioInfo, ...]
    sections: tuple[Section, ...]  # in the runbook's order, subsections after their part
    unknown_tags: tuple[tuple[str, ScenarioInfo], ...] = ()

    def counted(self) -> list[Section]:
        return [s for s in self.sections if s.counted]

    def count(self, status: str) -> int:
        return sum(1 for s in self.counted() if s.status == status)

    @property
    def share(self) -> float:
        total = len(self.counted())
        return self.count(COVERED) / total if total else 0.0

    def gaps(self) -> list[Section]:
        return [s for s in self.sections if s.gap]

    def summary_line(self) -> str:
        """``covered 31/38 sections (82%), manual 3, uncovered 4``."""
        total = len(self.counted())
        covered = self.count(COVERED)
        percent = round(100 * covered / total) if total else 0
        if covered < total:
            percent = min(percent, 99)  # never "100%" while a section is missing
        return (f"covered {covered}/{total} sections ({percent}%), manual {self.count(MANUAL)},"
                f" uncovered {self.count(UNCOVERED)}")

    def lines(self) -> list[str]:
        """The report as the terminal shows it: the rule, each heading, the share."""
        lines = [
            f"runbook coverage of {self.runbook} by {self.features}"
            f" ({self.feature_files} feature files, {_distinct(self.scenarios)} scenarios)",
            f"rule: {RULE}",
            "",
        ]
        width = max((len(s.title) + 2 * (s.heading.level - 2) for s in self.sections),
                    default=10)
        for section in self.sections:
            indent = "  " * (section.heading.level - 2)
            label = f"{indent}{section.title}".ljust(width)
            lines.append(f"  {label}  {section.status:<10} {_detail(section)}".rstrip())
        if self.unknown_tags:
            lines.append("")
            for tag, scenario in self.unknown_tags:
                lines.append(f"tag naming no heading: @{_TAG}{tag} on '{scenario.name}'"
                             f" ({scenario.path}:{scenario.line})")
        lines += ["", self.summary_line()]
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "runbook": str(self.runbook),
            "features": str(self.features),
            "rule": RULE,
            "sections": [_section_json(s) for s in self.sections],
            "covered": self.count(COVERED),
            "manual": self.count(MANUAL),
            "uncovered": self.count(UNCOVERED),
            "counted": len(self.counted()),
            "share": round(self.share, 4),
            "summary": self.summary_line(),
            "unknown_tags": [{"tag": f"{_TAG}{tag}", "scenario": s.name,
                              "file": str(s.path), "line": s.line}
                             for tag, s in self.unknown_tags],
        }


def _detail(section: Section) -> str:
    if section.status == NAVIGATION:
        return "not counted"
    if section.subsections:
        counted = [s for s in section.subsections if s.counted]
        done = sum(1 for s in counted if s.status == COVERED)
        return f"{done}/{len(counted)} subsections covered; not counted itself"
    executable = _distinct(s for s in section.scenarios if not is_manual(s))
    manual = _distinct(s for s in section.scenarios if is_manual(s))
    parts = [f"{executable} scenario{'s' if executable != 1 else ''}"] if executable else []
    if manual:
        parts.append(f"{manual} manual")
    return ", ".join(parts)


def _distinct(scenarios: Iterable[ScenarioInfo]) -> int:
    """How many scenarios as written (an outline's examples variants count once)."""
    return len({(s.path, s.line) for s in scenarios})


def _section_json(section: Section) -> dict[str, Any]:
    return {
        "title": section.title,
        "slug": section.slug,
        "level": section.heading.level,
        "part": section.heading.part,
        "status": section.status,
        "counted": section.counted,
        "subsections": [s.slug for s in section.subsections],
        "scenarios": [{"feature": s.feature, "name": s.name, "file": str(s.path),
                       "line": s.line, "manual": is_manual(s)} for s in section.scenarios],
    }


# -- reading the inputs ----------------------------------------------------------------------


def read_headings(runbook: Path) -> list[Heading]:
    """The runbook's ``##``/``###`` headings; ``ConfigError`` (one line) when the file is
    missing, unreadable or has none."""
    try:
        text = runbook.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{runbook}: no such runbook file; give the path of the runbook's"
                          " Markdown") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{runbook}: cannot read it as UTF-8 text ({_reason(exc)})") from None
    headings = parse_headings(text)
    if not headings:
        raise ConfigError(f"{runbook}: no ## or ### headings; coverage maps those to"
                          " @runbook:<slug> tags")
    return headings


def read_features(directory: Path) -> tuple[list[ScenarioInfo], int]:
    """Every scenario of the ``*.feature`` files under ``directory`` and how many files there
    were; ``ConfigError`` (one line naming the file and line) for a malformed one."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such features directory; give the directory of"
                          " the .feature files with --features")
    files = sorted(directory.rglob("*.feature"))
    if not files:
        raise ConfigError(f"{directory}: no .feature files in it; give the features directory"
                          " with --features")
    scenarios: list[ScenarioInfo] = []
    for path in files:
        try:
            scenarios += parse_feature(path)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start});"
                              " save the feature file as UTF-8") from None
    return scenarios, len(files)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


# -- the mapping -----------------------------------------------------------------------------


def measure(runbook: Path, features: Path) -> Coverage:
    """Map ``runbook``'s headings to the ``@runbook:`` tags of the scenarios in ``features``.

    Raises ``ConfigError`` (one line, exit 2) for a missing runbook, a missing or empty
    features directory or a malformed feature file."""
    headings = read_headings(runbook)
    scenarios, files = read_features(features)
    return build(runbook, features, headings, scenarios, files)


def build(runbook: Path, features: Path, headings: Sequence[Heading],
          scenarios: Sequence[ScenarioInfo], files: int) -> Coverage:
    """The coverage of ``headings`` by ``scenarios`` (see the module's rule)."""
    by_slug: dict[str, list[ScenarioInfo]] = {}
    for scenario in scenarios:
        for slug in scenario.sections:
            by_slug.setdefault(slug, []).append(scenario)
    sections: list[Section] = []
    for index, heading in enumerate(headings):
        children = _children(headings, index)
        tagged = tuple(by_slug.get(heading.slug, ()))
        if heading.slug in NAVIGATION_SLUGS and not tagged:
            sections.append(Section(heading, NAVIGATION, False, tagged))
        elif children:
            sections.append(Section(heading, "", False, tagged))  # rolled up below
        else:
            sections.append(Section(heading, _status(tagged), True, tagged))
    sections = _roll_up(headings, sections)
    known = {h.slug for h in headings}
    unknown = tuple((slug, s) for s in scenarios for slug in s.sections if slug not in known)
    return Coverage(runbook, features, files, tuple(scenarios), tuple(sections), unknown)


def _children(headings: Sequence[Heading], index: int) -> list[int]:
    """Indexes of the ``###`` headings under the ``##`` at ``index`` (none for a ``###``)."""
    if headings[index].level != 2:
        return []
    found = []
    for later in range(index + 1, len(headings)):
        if headings[later].level == 2:
            break
        found.append(later)
    return found


def _status(scenarios: Sequence[ScenarioInfo]) -> str:
    if any(not is_manual(s) for s in scenarios):
        return COVERED
    return MANUAL if scenarios else UNCOVERED


def _roll_up(headings: Sequence[Heading], sections: list[Section]) -> list[Section]:
    rolled = list(sections)
    for index, section in enumerate(sections):
        children = _children(headings, index)
        if not children:
            continue
        subsections = tuple(sections[i] for i in children)
        statuses = {s.status for s in subsections if s.counted}
        status = statuses.pop() if len(statuses) == 1 else (PARTIAL if statuses else UNCOVERED)
        rolled[index] = Section(section.heading, status, False, section.scenarios, subsections)
    return rolled
