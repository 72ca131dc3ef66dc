"""The feature files read as data (not run): each scenario with its tags, for coverage, the
living documentation and ``runbook manual``. Parsed with ``gherkin``, pytest-bdd's parser."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gherkin.errors import CompositeParserException, ParserException
from gherkin.parser import Parser
from gherkin.token_scanner import TokenScanner

from runbook.errors import ConfigError


@dataclass(frozen=True)
class ScenarioInfo:
    """One scenario (or outline) of a feature file, with its own and its feature's tags."""

    name: str
    feature: str
    path: Path
    line: int
    #: Tags without the ``@``, the scenario's own and those of its feature and rule.
    tags: frozenset[str]
    steps: tuple[str, ...]
    #: The rows of its Examples tables (an outline's), each as ``{column: value}``.
    examples: tuple[Mapping[str, str], ...] = ()

    @property
    def sections(self) -> tuple[str, ...]:
        """The runbook sections it restates (``@runbook:<slug>``), sorted."""
        return tuple(sorted(t.split(":", 1)[1] for t in self.tags if t.startswith("runbook:")))


def parse_feature(path: Path) -> list[ScenarioInfo]:
    """The scenarios of one feature file; a file that does not parse is a ``ConfigError``
    naming the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the feature file as UTF-8") from None
    try:
        document = Parser().parse(TokenScanner(text))
    except (CompositeParserException, ParserException) as exc:
        errors = getattr(exc, "errors", None) or [exc]
        first = errors[0]
        line = getattr(getattr(first, "location", None), "get", lambda _: None)("line")
        said = re.sub(r"^\(\d+:\d+\):\s*", "", str(first).strip().splitlines()[-1].strip())
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(f"{where}: not valid Gherkin: {said}; fix the feature file") from None
    feature = document.get("feature")
    if not feature:
        return []
    return list(_scenarios(feature, path, _tags(feature)))


def _tags(node: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(tag["name"].lstrip("@") for tag in node.get("tags", ()))


def _scenarios(node: Mapping[str, Any], path: Path, inherited: frozenset[str],
               feature: str | None = None) -> Iterator[ScenarioInfo]:
    feature = feature if feature is not None else node.get("name", "")
    for child in node.get("children", ()):
        if "rule" in child:
            rule = child["rule"]
            yield from _scenarios(rule, path, inherited | _tags(rule), feature)
        elif "scenario" in child:
            scenario = child["scenario"]
            yield ScenarioInfo(
                name=scenario["name"], feature=feature, path=path,
                line=scenario["location"]["line"], tags=inherited | _tags(scenario),
                steps=tuple(f"{s['keyword'].strip()} {s['text']}"
                            for s in scenario.get("steps", ())),
                examples=tuple(_rows(scenario)),
            )


def _rows(scenario: Mapping[str, Any]) -> Iterator[Mapping[str, str]]:
    for table in scenario.get("examples", ()):
        header = [cell["value"] for cell in table.get("tableHeader", {}).get("cells", ())]
        for row in table.get("tableBody", ()):
            yield dict(zip(header, (cell["value"] for cell in row["cells"]), strict=True))


#: The step that runs a drill: ``runs the "<name>" game day`` / ``disaster recovery drill``.
DRILL_STEP = re.compile(r'runs the "([^"]+)" (?:game day|disaster recovery drill)')


def drill_names(steps: Iterable[str], row: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The drills that ``steps`` run, an outline's ``<column>`` filled in from ``row``."""
    found: list[str] = []
    for step in steps:
        for name in DRILL_STEP.findall(step):
            for column, value in (row or {}).items():
                name = name.replace(f"<{column}>", value)
            found.append(name)
    return tuple(dict.fromkeys(found))


def drills(scenarios: Iterable[ScenarioInfo]) -> dict[str, tuple[str, ...]]:
    """Every drill the ``@drill`` scenarios run, with the runbook sections of its scenario."""
    found: dict[str, tuple[str, ...]] = {}
    for scenario in scenarios:
        if "drill" not in scenario.tags:
            continue
        for row in scenario.examples or ({},):
            for name in drill_names(scenario.steps, row):
                found[name] = scenario.sections
    return found


def load_features(directory: Path) -> list[ScenarioInfo]:
    """Every scenario of every ``*.feature`` under ``directory``, in file order."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such features directory")
    found: list[ScenarioInfo] = []
    for path in sorted(directory.rglob("*.feature")):
        found.extend(parse_feature(path))
    return found
