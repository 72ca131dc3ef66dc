"""Whether the figures and words the features quote from the runbook are still what it says.

A scenario quotes the runbook (the rule, printed with ``runbook coverage --help`` and in
docs/architecture.md "Quotes from the runbook"):

- **figures**: every duration (``5 minutes``, ``300 seconds``, ``1h``, ``2s``) and percentage
  (``5 percent``, ``90%``) in its name, its steps and, for an outline, each Examples row
  (placeholders filled in from the row, the row's cells themselves too);
- **words**: the text in double quotes that opens its description (``"Check error rates in
  logs", ...``) or follows ``Runbook defect:``, and the step a ``@manual`` scenario names
  (``the runbook step "..." that only a person can take``);
- **queue names**: ``the <name> queue`` in its name and steps.

Not quotes: the figure right after ``allowing`` in a step (``allowing 30 seconds to detect
it``: the time the suite allows a check or a detection, which the runbook never gives; a
second figure in the clause, ``and 300 seconds to restore service``, is a quote), and the
figures and quoted words listed on a ``# not quoted: ...`` comment line above the scenario,
each with its reason.

A quote is looked up in the sections the scenario restates (its own and its rule's
``@runbook:`` tags; its feature's only when it has none; a part's range holds its
subsections) and in the sections its description names by their heading's title. A figure
matches a figure of the same kind and value on a line there (units converted: ``300
seconds`` is ``5 minutes``; a bare ``0`` is a zero of any kind), words match
case-insensitively with spaces collapsed, a queue name matches ``bull:<name>:`` or ``<name>
queue`` anywhere in the runbook. A quote found nowhere there has drifted: the finding names
the scenario, the feature's file:line (and the Examples row the value comes from), the
runbook's file:line (the line most like the quote's context, else the section's heading) and
what the runbook says there now. Which line is shown is a best match by shared words; whether
a quote drifted never is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gherkin.parser import Parser
from gherkin.token_scanner import TokenScanner

from runbook.errors import ConfigError
from runbook.features import parse_feature
from runbook.reporting.summary import EXIT_FAILED, EXIT_OK
from runbook.sections import slugify

DURATION = "duration"
PERCENT = "percent"
WORDS = "words"
QUEUE = "queue"

RULE = ("a scenario quotes the durations and percentages in its name, steps and Examples rows"
        " (not the one right after 'allowing'), the quoted words opening its description or"
        " after 'Runbook defect:', its manual step, and 'the <name> queue'; each must still"
        " be in the sections it restates or names (a '# not quoted: ...' comment above it"
        " exempts a value)")

_SECONDS = {"ms": 0.001, "millisecond": 0.001, "s": 1, "sec": 1, "second": 1, "m": 60,
            "min": 60, "minute": 60, "h": 3600, "hr": 3600, "hour": 3600, "d": 86400,
            "day": 86400}
_FIGURE = re.compile(
    r"(?<![\w.-])(\d+(?:\.\d+)?)\s*"
    r"(?:(?P<percent>%|percent\b)|(?P<unit>milliseconds?|ms|seconds?|secs?|s|minutes?|mins?|m"
    r"|hours?|hrs?|h|days?|d)\b)",
    re.IGNORECASE)
_ZERO = re.compile(r"(?<![\w.-])0(?![\w.%])")
_HEADING = re.compile(r"^(#{2,3})\s+(.+?)\s*#*\s*$")
_ALLOWING = re.compile(r"\ballowing\s+\d+(?:\.\d+)?\s*[a-z]+", re.IGNORECASE)
_QUEUE = re.compile(r"\bthe ([a-z][a-z0-9-]*) queue\b")
_OPENING_QUOTE = re.compile(r'^\s*"([^"]+)"')
_DEFECT_QUOTE = re.compile(r'Runbook defect:\s*"([^"]+)"')
_MANUAL_STEP = re.compile(r'the runbook step "(.+)" that only a person can take')
_NOT_QUOTED = re.compile(r"^\s*#\s*not quoted:\s*(.*)$", re.IGNORECASE)
_QUOTED = re.compile(r'"([^"]+)"')
_WORD = re.compile(r"[a-z0-9]+")
_BULL = re.compile(r"\bbull:([\w-]+):")


@dataclass(frozen=True)
class Figure:
    """A value of a kind, as written (``5 minutes``) and compared (300.0 seconds)."""

    kind: str
    text: str
    value: float | str

    def matches(self, other: Figure) -> bool:
        if self.kind != other.kind:
            return False
        if isinstance(self.value, str) or isinstance(other.value, str):
            return self.value == other.value
        return abs(self.value - other.value) < 1e-9


def figures(text: str, *, zeros: bool = False) -> list[Figure]:
    """The durations and percentages in ``text`` (``zeros``: a bare ``0`` too, as a zero
    of both kinds: the runbook's "0 (no data loss)")."""
    found = []
    for match in _FIGURE.finditer(text):
        number = float(match.group(1))
        if match.group("percent"):
            found.append(Figure(PERCENT, match.group(0).strip(), number))
        else:
            unit = match.group("unit").lower()
            unit = unit if unit in _SECONDS else unit.rstrip("s")
            found.append(Figure(DURATION, match.group(0).strip(), number * _SECONDS[unit]))
    if zeros:
        for _ in _ZERO.finditer(text):
            found += [Figure(DURATION, "0", 0.0), Figure(PERCENT, "0", 0.0)]
    return found


def _words(text: str) -> str:
    """Lower case, spaces collapsed, Markdown's code and emphasis marks left out."""
    return " ".join(re.sub(r"`|\*\*", "", text).lower().split())


# -- the runbook's text ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunbookSection:
    """A ``##``/``###`` heading and the lines under it (a part's include its subsections)."""

    level: int
    title: str
    slug: str
    line: int  # the heading's line, 1-based
    end: int  # the last line of its range

    def numbers(self) -> range:
        return range(self.line, self.end + 1)


@dataclass(frozen=True)
class RunbookText:
    """A runbook's lines (1-based through ``line``) and its sections with their ranges."""

    path: Path
    lines: tuple[str, ...]
    sections: tuple[RunbookSection, ...]

    @classmethod
    def read(cls, path: Path) -> RunbookText:
        """Raises ``ConfigError`` (one line) when the file is missing or not UTF-8 text."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such runbook file; give the path of the runbook's"
                              " Markdown") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(f"{path}: cannot read it as UTF-8 text ({reason})") from None
        return cls.parse(path, text)

    @classmethod
    def parse(cls, path: Path, text: str) -> RunbookText:
        lines = tuple(text.splitlines())
        found: list[tuple[int, str, int]] = []  # level, title, line
        fenced = False
        for number, line in enumerate(lines, start=1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            match = None if fenced else _HEADING.match(line)
            if match:
                found.append((len(match.group(1)), match.group(2).strip(), number))
        sections = []
        for index, (level, title, number) in enumerate(found):
            later = [n for lv, _, n in found[index + 1:] if lv <= level]
            end = later[0] - 1 if later else len(lines)
            sections.append(RunbookSection(level, title, slugify(title), number, end))
        return cls(path, lines, tuple(sections))

    def line(self, number: int) -> str:
        return self.lines[number - 1]

    def section(self, slug: str) -> RunbookSection | None:
        return next((s for s in self.sections if s.slug == slug), None)

    def body(self, section: RunbookSection) -> list[tuple[int, str]]:
        """The section's own lines up to its first subsection, without its heading."""
        subsections = [s.line for s in self.sections
                       if s.level > section.level and section.line < s.line <= section.end]
        end = (subsections[0] - 1) if subsections else section.end
        return [(n, self.line(n)) for n in range(section.line + 1, end + 1)]


# -- the features' quotes --------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    """One value a scenario quotes, where the feature says it, and where the runbook does."""

    scenario: str
    feature_file: Path
    feature_line: int
    figure: Figure
    sections: tuple[str, ...]  # slugs looked in
    context: str  # the feature's words around it (its step, row, tags, description)
    found_at: int | None = None  # the runbook's line, when it is there
    row_line: int | None = None  # the Examples row it comes from, for an outline's value
    scenario_line: int = 0  # the scenario's own line (an outline's, for all its rows)

    @property
    def kind(self) -> str:
        return self.figure.kind

    @property
    def said(self) -> str:
        return self.figure.text


@dataclass(frozen=True)
class Drift:
    """A quote the runbook no longer says: the feature's line and the runbook's."""

    quote: Quote
    runbook: Path
    runbook_line: int
    runbook_says: str  # the nearest value of the quote's kind there ("" when none)
    section: str  # the title of the section that line is in

    def line(self) -> str:
        quote = self.quote
        now = (f"the runbook now says {self.runbook_says!r}" if self.runbook_says
               else f"the runbook says no {_KIND_NAMES[quote.kind]} there")
        where = f"{quote.feature_file}:{quote.feature_line}"
        if quote.row_line and quote.row_line != quote.feature_line:
            where += f", Examples row {quote.feature_file}:{quote.row_line}"
        return (f"drift: '{quote.scenario}' ({where}) quotes {quote.said!r}; {now}"
                f" ({self.runbook}:{self.runbook_line}, {self.section})")

    def to_json(self) -> dict[str, Any]:
        quote = self.quote
        return {"scenario": quote.scenario, "kind": quote.kind, "feature_file":
                str(quote.feature_file), "feature_line": quote.feature_line,
                "examples_row_line": quote.row_line,
                "feature_says": quote.said, "runbook_file": str(self.runbook),
                "runbook_line": self.runbook_line, "runbook_says": self.runbook_says,
                "section": self.section, "sections": list(quote.sections)}


_KIND_NAMES = {DURATION: "duration", PERCENT: "percentage", WORDS: "such words",
               QUEUE: "such queue"}


@dataclass(frozen=True)
class DriftReport:
    """Every quote of the features checked against the runbook's current text."""

    runbook: Path
    quotes: tuple[Quote, ...]
    drifts: tuple[Drift, ...] = field(default=())

    @property
    def unchanged(self) -> bool:
        """Every quote still says what the runbook says (a report, not a check's record)."""
        return not self.drifts

    @property
    def exit_code(self) -> int:
        """``EXIT_FAILED`` (1, a check failed) when a quote drifted, else 0."""
        return EXIT_OK if self.unchanged else EXIT_FAILED

    def summary_line(self) -> str:
        scenarios = len({(q.feature_file, q.scenario_line) for q in self.quotes})
        return (f"quotes: {len(self.quotes)} checked in {scenarios} scenarios,"
                f" {len(self.drifts)} no longer what the runbook says")

    def lines(self) -> list[str]:
        return [d.line() for d in self.drifts] + [self.summary_line()]

    def to_json(self) -> dict[str, Any]:
        return {"rule": RULE, "quotes": len(self.quotes),
                "drift": [d.to_json() for d in self.drifts]}


@dataclass(frozen=True)
class _Scenario:
    name: str
    path: Path
    line: int
    tags: frozenset[str]
    description: str
    steps: tuple[tuple[int, str], ...]
    rows: tuple[tuple[int, Mapping[str, str]], ...]
    exempt: tuple[Figure, ...]


def _parse(path: Path) -> list[_Scenario]:
    """The scenarios of a feature file with their lines; a file that is not valid Gherkin or
    not UTF-8 is a ``ConfigError`` naming the file (and the line)."""
    parse_feature(path)  # its errors, one line each, as coverage gives them
    text = path.read_text(encoding="utf-8")
    document = Parser().parse(TokenScanner(text))
    feature = document.get("feature")
    if not feature:
        return []
    comments = _directives(sorted((c["location"]["line"], c["text"])
                                  for c in document.get("comments", ())))
    found = list(_walk(feature, path, frozenset(), _tag_names(feature)))
    scenarios = []
    previous = 0
    for scenario in found:
        exempt: list[Figure] = []
        for number, comment in comments:
            match = _NOT_QUOTED.match(comment)
            if match and previous < number < scenario.line:
                exempt += _exempted(match.group(1))
        scenarios.append(replace(scenario, exempt=tuple(exempt)))
        previous = scenario.line
    return scenarios


def _exempted(listed: str) -> list[Figure]:
    """The values a ``# not quoted:`` comment lists: quoted words, then the figures and
    queues outside the quotes and outside the parenthesised reasons."""
    found = [Figure(WORDS, q, _words(q)) for q in _QUOTED.findall(listed)]
    bare = re.sub(r"\([^)]*\)", " ", _QUOTED.sub(" ", listed))
    found += figures(bare)
    found += [Figure(QUEUE, q, q) for q in _QUEUE.findall(bare)]
    return found


def _directives(comments: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """The ``# not quoted:`` comments, each with the comment lines right below it joined."""
    joined: list[tuple[int, str]] = []
    last = -1
    for number, text in comments:
        if _NOT_QUOTED.match(text):
            joined.append((number, text))
        elif joined and number == last + 1 and last >= joined[-1][0]:
            start, before = joined[-1]
            joined[-1] = (start, before + " " + text.strip().lstrip("#").strip())
        else:
            last = -1
            continue
        last = number
    return joined


def _tag_names(node: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(tag["name"].lstrip("@") for tag in node.get("tags", ()))


def _walk(node: Mapping[str, Any], path: Path, inherited: frozenset[str],
          feature: frozenset[str]) -> Iterator[_Scenario]:
    """The scenarios under ``node``; their tags are their own and their rule's, and their
    feature's ``@runbook:`` tags only when they have none of their own."""
    for child in node.get("children", ()):
        if "rule" in child:
            rule = child["rule"]
            yield from _walk(rule, path, inherited | _tag_names(rule), feature)
        elif "scenario" in child:
            scenario = child["scenario"]
            rows = []
            for table in scenario.get("examples", ()):
                header = [c["value"] for c in table.get("tableHeader", {}).get("cells", ())]
                for row in table.get("tableBody", ()):
                    cells = dict(zip(header, (c["value"] for c in row["cells"]), strict=True))
                    rows.append((row["location"]["line"], cells))
            tags = inherited | _tag_names(scenario)
            if not any(t.startswith("runbook:") for t in tags):
                tags |= {t for t in feature if t.startswith("runbook:")}
            tags |= {t for t in feature if not t.startswith("runbook:")}
            yield _Scenario(
                scenario["name"], path, scenario["location"]["line"],
                tags, scenario.get("description") or "",
                tuple((s["location"]["line"], s["text"]) for s in scenario.get("steps", ())),
                tuple(rows), ())


def _fill(text: str, row: Mapping[str, str]) -> str:
    for column, value in row.items():
        text = text.replace(f"<{column}>", value)
    return text


def _named(description: str, runbook: RunbookText) -> list[str]:
    """The sections whose heading's title the description names."""
    said = _words(description)
    return [s.slug for s in runbook.sections if _words(s.title) in said]


def _quoted_in(text: str, *, steps: bool) -> list[Figure]:
    """What ``text`` (a step, with ``steps``, or a name) quotes: its figures but the one
    right after ``allowing``, queue names, a manual step's words."""
    found = figures(_ALLOWING.sub("", text))
    found += [Figure(QUEUE, queue, queue) for queue in _QUEUE.findall(text)]
    manual = _MANUAL_STEP.search(text) if steps else None
    if manual:
        found.append(Figure(WORDS, manual.group(1), _words(manual.group(1))))
    return found


def quotes_of(scenario: _Scenario, runbook: RunbookText) -> list[Quote]:
    """What ``scenario`` quotes (the module's rule), each value once per Examples row. A
    value that comes from a row (its cell, or a step's placeholder) names the row."""
    sections = tuple(dict.fromkeys(
        [t.split(":", 1)[1] for t in sorted(scenario.tags) if t.startswith("runbook:")]
        + _named(scenario.description, runbook)))
    exempt = list(scenario.exempt)
    found: list[Quote] = []
    for row_line, row in scenario.rows or ((0, {}),):
        seen: list[Figure] = []
        sources = [(row_line, cell, "", False) for cell in row.values()]
        sources += [(line, _fill(step, row), step, True) for line, step in scenario.steps]
        sources.append((scenario.line, _fill(scenario.name, row), scenario.name, False))
        for line, text, template, steps in sources:
            general = _quoted_in(template, steps=steps)
            for figure in _quoted_in(text, steps=steps) if steps or line != row_line else (
                    figures(text)):
                if any(figure.matches(f) for f in seen + exempt):
                    continue
                seen.append(figure)
                mine = bool(row) and not any(figure.matches(f) for f in general)
                found.append(Quote(
                    _fill(scenario.name, row) if mine else scenario.name, scenario.path, line,
                    figure, sections,
                    " ".join([text, *row.values(), *scenario.tags, scenario.name,
                              scenario.description]),
                    row_line=row_line if mine else None, scenario_line=scenario.line))
        for text in _description_quotes(scenario.description):
            figure = Figure(WORDS, text, _words(text))
            if not any(figure.matches(f) for f in seen + exempt):
                seen.append(figure)
                found.append(Quote(scenario.name, scenario.path, _line_of(scenario, text),
                                   figure, sections, scenario.description,
                                   scenario_line=scenario.line))
    return found


def _description_quotes(description: str) -> list[str]:
    found = []
    opening = _OPENING_QUOTE.match(description)
    if opening:
        found.append(opening.group(1))
    found += _DEFECT_QUOTE.findall(" ".join(description.split()))
    return found


def _line_of(scenario: _Scenario, text: str) -> int:
    """The feature's line where the quoted ``text`` begins, after the scenario's line."""
    opening = '"' + text.split()[0]
    try:
        lines = scenario.path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return scenario.line
    return next((n for n in range(scenario.line, len(lines) + 1) if opening in lines[n - 1]),
                scenario.line)


# -- checking --------------------------------------------------------------------------------


def _lines_of(runbook: RunbookText, slugs: Sequence[str]) -> list[int]:
    numbers: dict[int, None] = {}
    for slug in slugs:
        section = runbook.section(slug)
        if section is not None:
            numbers.update(dict.fromkeys(section.numbers()))
    return sorted(numbers)


def locate(quote: Quote, runbook: RunbookText) -> int | None:
    """The runbook's line that says ``quote`` now, or None."""
    if quote.kind == QUEUE:
        pattern = re.compile(rf"bull:{re.escape(quote.said)}:|\b{re.escape(quote.said)} queue\b",
                             re.IGNORECASE)
        return next((n for n, line in enumerate(runbook.lines, start=1) if pattern.search(line)),
                    None)
    for number in _lines_of(runbook, quote.sections):
        line = runbook.line(number)
        if quote.kind == WORDS:
            if str(quote.figure.value) in _words(line):
                return number
        elif any(quote.figure.matches(f) for f in figures(line, zeros=True)):
            return number
    return None


def _content(text: str) -> set[str]:
    """The words of ``text`` that say what a line is about (no numbers, no short words)."""
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2 and not w.isdigit()}


def _label(line: str) -> str:
    """What a runbook line is the value of: a table row's first cell, else the words before
    its first figure (``Error rate`` of ``- Error rate > 5%``)."""
    text = line.strip()
    if text.startswith("|"):
        return text.strip("|").split("|")[0].strip().lower()
    first = _FIGURE.search(text) or _ZERO.search(text)
    head = text[:first.start()] if first else text
    return " ".join(_WORD.findall(head.lower()))


def _score(quote: Quote, runbook: RunbookText, number: int) -> int:
    """How much the runbook's line ``number`` looks like where ``quote`` comes from: its
    label named in the quote's context counts most, then the words they share."""
    line = runbook.line(number)
    label = _label(line)
    context = " ".join(_WORD.findall(quote.context.lower()))
    named = 10 if label and len(label) > 2 and f" {label} " in f" {context} " else 0
    return named + len(_content(quote.context) & _content(_group(runbook, number) + " " + line))


def _closest(said: Sequence[Figure], value: float) -> list[Figure]:
    """The figure of ``said`` nearest to ``value`` by ratio (all of them when none is)."""
    sized = [f for f in said if isinstance(f.value, float) and f.value > 0]
    if value <= 0 or not sized:
        return list(said)
    return [min(sized, key=lambda f: abs(math.log(float(f.value) / value)))]


def _nearest(quote: Quote, runbook: RunbookText, others: Sequence[Quote]) -> Drift:
    """The runbook's line most like the quote's context, and what it says there now."""
    best: tuple[int, int] | None = None  # score, line
    numbers = (_lines_of(runbook, quote.sections) if quote.kind != QUEUE else
               [n for n, line in enumerate(runbook.lines, start=1) if _BULL.search(line)])
    for number in numbers:
        line = runbook.line(number)
        if quote.kind in (DURATION, PERCENT) and not any(
                f.kind == quote.kind for f in figures(line, zeros=True)):
            continue
        if line.lstrip().startswith("#") or not line.strip(" -*|[]>`"):
            continue  # a heading or an empty line: not what a quote is said on
        score = _score(quote, runbook, number)
        if best is None or score > best[0]:
            best = (score, number)
    if best is None or best[0] == 0:
        section = _first_section(runbook, quote.sections)
        return Drift(quote, runbook.path, section.line if section else 1, "",
                     section.title if section else "")
    number = best[1]
    line = runbook.line(number)
    if quote.kind in (DURATION, PERCENT):
        said = [f for f in figures(line, zeros=True) if f.kind == quote.kind]
        unexplained = [f for f in said
                       if not any(f.matches(o.figure) for o in others if o is not quote)]
        value = quote.figure.value
        shown = _closest(unexplained or said, value if isinstance(value, float) else 0.0)
        says = ", ".join(dict.fromkeys(f.text for f in shown))
    elif quote.kind == QUEUE:
        says = ", ".join(dict.fromkeys(_BULL.findall(line)))
    else:
        says = line.strip().lstrip("-*#> ").removeprefix("[ ] ").strip()
    return Drift(quote, runbook.path, number, says, _section_at(runbook, number))


def _group(runbook: RunbookText, number: int) -> str:
    """The bold label a bullet stands under (``**Critical (page immediately):**``)."""
    for back in range(number - 1, 0, -1):
        line = runbook.line(back).strip()
        if line.startswith("#"):
            return ""
        if line.startswith("**"):
            return line
    return ""


def _first_section(runbook: RunbookText, slugs: Sequence[str]) -> RunbookSection | None:
    sections = [s for s in (runbook.section(slug) for slug in slugs) if s is not None]
    return min(sections, key=lambda s: (-s.level, s.line)) if sections else None


def _section_at(runbook: RunbookText, number: int) -> str:
    inside = [s for s in runbook.sections if s.line <= number <= s.end]
    return max(inside, key=lambda s: s.level).title if inside else ""


def check(runbook: RunbookText, features: Iterable[Path]) -> DriftReport:
    """Every quote of the scenarios in the ``features`` files looked up in ``runbook``."""
    quotes: list[Quote] = []
    drifts: dict[tuple[Path, int, int | None, str, str], Drift] = {}  # one per value said
    for path in features:
        for scenario in _parse(path):
            mine = quotes_of(scenario, runbook)
            for quote in mine:
                line = locate(quote, runbook)
                key = (quote.feature_file, quote.feature_line, quote.row_line, quote.kind,
                       quote.said)
                if line is None and key not in drifts:
                    drifts[key] = _nearest(quote, runbook, mine)
                quotes.append(replace(quote, found_at=line))
    return DriftReport(runbook.path, tuple(quotes), tuple(drifts.values()))


def measure(runbook: Path, features: Path) -> DriftReport:
    """The drift of every ``*.feature`` under ``features`` from ``runbook``; ``ConfigError``
    (one line) for a missing runbook or features directory."""
    if not features.is_dir():
        raise ConfigError(f"{features}: no such features directory; give the directory of"
                          " the .feature files with --features")
    return check(RunbookText.read(runbook), sorted(features.rglob("*.feature")))
