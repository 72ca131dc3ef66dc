"""The living runbook: one page of the runbook as executed, in Markdown and HTML.

In the runbook's own order, each section with the scenarios that restate it, the last status
of each, when it last ran and what it measured (latencies; time to detect, RTO and RPO against
the runbook's objectives from the drill records); the ``@manual`` steps with who recorded
them, when and the evidence; and the sections no executable scenario restates, as gaps (the
coverage module decides which).

Inputs: ``history.jsonl`` (the latest entry per scenario; ``summary.json`` when there is no
history yet), ``drills/*.json`` and the manual records (``runbook.manual``). Every value is
redacted before it is written, and the whole page again after; the HTML is self-contained
(inline style, no script, no external asset) and everything in it is escaped.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook import manual
from runbook.features import ScenarioInfo
from runbook.redact import MASK, Redactor
from runbook.reporting import plots
from runbook.reporting.coverage import (
    COVERED,
    MANUAL,
    NAVIGATION,
    Coverage,
    Section,
    is_manual,
)
from runbook.reporting.summary import read_history
from runbook.sections import slugify

MARKDOWN_FILE = "living-runbook.md"
HTML_FILE = "living-runbook.html"

HOW_TO_RUN = (
    "`runbook check` (the synthetic checks), `runbook check --tags operation` (the common"
    " operations), `runbook drill` (game days and DR drills, measuring time to detect, RTO and"
    " RPO), `runbook manual record \"<scenario>\" --by NAME --evidence LINK` (the steps only a"
    " person can take), then `runbook docs` again"
)

_STATUS = {
    "passed": "passed",
    "flaky": "flaky (passed on retry)",
    "failed": "FAILED",
    "error": "ERROR",
    "skipped": "skipped",
    "expired": "EXPIRED (due again)",
}


@dataclass(frozen=True)
class Run:
    """A scenario's latest result, from the history or the last summary."""

    feature: str
    name: str
    outcome: str
    finished_at: str
    duration_s: float = 0.0
    message: str = ""
    figures: Mapping[str, float] = field(default_factory=dict)
    target: str = ""
    environment: str = ""
    run_id: str = ""
    last_passed_at: str | None = None
    expired: bool = False

    @classmethod
    def from_json(cls, entry: Mapping[str, Any], defaults: Mapping[str, Any]) -> Run:
        def pick(key: str) -> Any:
            return entry.get(key) or defaults.get(key)

        figures = entry.get("figures")
        return cls(
            feature=str(entry.get("feature", "")), name=str(entry.get("name", "")),
            outcome=str(entry.get("outcome", "")), finished_at=str(pick("finished_at") or ""),
            duration_s=_number(entry.get("duration_s")) or 0.0,
            message=str(entry.get("message") or ""),
            figures={str(k): float(v) for k, v in (figures or {}).items()
                     if _number(v) is not None} if isinstance(figures, dict) else {},
            target=str(pick("target") or ""), environment=str(pick("environment") or ""),
            run_id=str(pick("run_id") or ""),
            last_passed_at=entry.get("last_passed_at"), expired=bool(entry.get("expired")),
        )


@dataclass(frozen=True)
class DrillFigures:
    """What one drill record measured, against the runbook's objectives."""

    drill: str
    section: str  # the record's "Part > Section > ..." path
    slug: str  # the heading it belongs to ("" when none matches)
    started_at: str
    verdict: str
    target: str
    operator: str
    time_to_detect_s: float | None
    rto_s: float | None
    rpo_s: float | None
    rto_objective_s: float | None
    rpo_objective_s: float | None
    file: str
    #: How it was detected: "the scheduled checks ..." or "the drill's own check ...".
    detection: str = ""
    #: The scheduled scenarios whose failure named the incident's section (a game day).
    detected_by: tuple[str, ...] = ()
    #: Every section the failures of the detection rounds named.
    named: tuple[str, ...] = ()
    #: The Recovery Time Objectives row it was judged against ("API crash"), if any.
    scenario: str = ""
    environment: str = ""


@dataclass(frozen=True)
class Inputs:
    """Everything the page is made of."""

    coverage: Coverage
    runs: tuple[Run, ...]
    runs_from: str  # "history.jsonl", "summary.json" or "" (nothing ran yet)
    drills: tuple[DrillFigures, ...]
    records: tuple[manual.ManualRecord, ...]
    records_file: Path
    reports: Path
    unreadable: tuple[str, ...] = ()  # drill record files that did not parse


# -- reading ---------------------------------------------------------------------------------


def latest_runs(reports: Path) -> tuple[list[Run], str]:
    """The latest result of every scenario: from ``history.jsonl`` (the latest entry per
    feature and name), else from ``summary.json``; ``([], "")`` when nothing ran yet."""
    latest: dict[tuple[str, str], Run] = {}
    for entry in read_history(reports / "history.jsonl"):
        run = Run.from_json(entry, {})
        key = (run.feature, run.name)
        if key not in latest or run.finished_at >= latest[key].finished_at:
            latest[key] = run
    if latest:
        return list(latest.values()), "history.jsonl"
    try:
        document = json.loads((reports / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], ""
    if not isinstance(document, dict):
        return [], ""
    runs = [Run.from_json(s, document) for s in document.get("scenarios", ())
            if isinstance(s, dict)]
    return runs, "summary.json" if runs else ""


def read_drills(reports: Path, coverage: Coverage) -> tuple[list[DrillFigures], list[str]]:
    """Every drill record under ``reports/drills`` (newest first) and the files that did not
    parse (a record torn by a killed run must not stop the page)."""
    slugs = {s.slug for s in coverage.sections}
    found: list[DrillFigures] = []
    unreadable: list[str] = []
    for path in sorted((reports / "drills").glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            found.append(_drill(document, path.name, slugs))
        except (OSError, ValueError, TypeError, AttributeError):
            unreadable.append(path.name)
    found.sort(key=lambda d: d.started_at, reverse=True)
    return found, unreadable


def _drill(document: Mapping[str, Any], name: str, slugs: set[str]) -> DrillFigures:
    section = str(document.get("runbook_section", ""))
    # "Disaster Recovery > Data Loss Scenarios > Database Corruption": the deepest heading.
    slug = next((slugify(part) for part in reversed(section.split(">"))
                 if slugify(part) in slugs), "")
    objective = document.get("objective") or {}
    detection = (document.get("evidence") or {}).get("detection") or {}
    failures = [f for r in detection.get("rounds", ()) for f in r.get("failed", ())]
    return DrillFigures(
        drill=str(document.get("drill", name)), section=section, slug=slug,
        started_at=str(document.get("started_at", "")),
        verdict=str(document.get("verdict", "")), target=str(document.get("target", "")),
        operator=str(document.get("operator", "")),
        time_to_detect_s=_number(document.get("time_to_detect_s")),
        rto_s=_number(document.get("rto_s")), rpo_s=_number(document.get("rpo_s")),
        rto_objective_s=_number(objective.get("rto_s")),
        rpo_objective_s=_number(objective.get("rpo_s")), file=name,
        detection=str(detection.get("method", "")),
        detected_by=tuple(dict.fromkeys(str(f.get("scenario")) for f in
                                        detection.get("detected_by", ()))),
        named=tuple(dict.fromkeys(str(n) for f in failures for n in f.get("named", ()))),
        scenario=str((document.get("evidence") or {}).get("scenario") or ""),
        environment=str(document.get("environment", "")),
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def gather(coverage: Coverage, reports: Path, records_file: Path | None = None) -> Inputs:
    """Read the runs, drill records and manual records the page shows. A malformed manual
    record is a ``ConfigError`` naming its line (that file is a person's audit trail)."""
    runs, source = latest_runs(reports)
    drills, unreadable = read_drills(reports, coverage)
    records_file = records_file or manual.records_file()
    return Inputs(coverage, tuple(runs), source, tuple(drills),
                  tuple(manual.load(records_file)), records_file, reports, tuple(unreadable))


# -- the page --------------------------------------------------------------------------------


def matches(scenario: ScenarioInfo, run: Run) -> bool:
    """Whether ``run`` is of ``scenario``: same feature and name, where an outline's runs
    carry its name with each example's values in place of its ``<placeholders>``."""
    if run.feature != scenario.feature:
        return False
    if run.name == scenario.name:
        return True
    if not re.search(r"<[^<>]+>", scenario.name):
        return False
    parts = re.split(r"<[^<>]+>", scenario.name)
    return re.fullmatch(".+?".join(re.escape(p) for p in parts), run.name) is not None


def markdown_text(value: str) -> str:
    """``value`` on one line with what would make Markdown syntax escaped, so that no value
    becomes a link, an image, HTML, emphasis, a heading, a list or a table cell."""
    flat = " ".join(value.split())
    flat = re.sub(r"([\\`*_\[\]<|#])", r"\\\1", flat)
    flat = re.sub(r"&(?=#?\w+;)", r"\\&", flat)  # an entity such as &lt;
    flat = re.sub(r"^(\d+)([.)])(?=\s|$)", r"\1\\\2", flat)  # "1. " would start a list
    return re.sub(r"^(>|[+-](?=\s|$))", r"\\\1", flat)  # so would "- " or a quote


class Page:
    """Builds the Markdown of the living runbook; every value goes through ``text``."""

    def __init__(self, inputs: Inputs, redact: Redactor, now: datetime) -> None:
        self.inputs = inputs
        self.redact = redact
        self.now = now
        self.lines: list[str] = []
        self.shown: set[tuple[str, str]] = set()  # runs placed under a section
        self.figures: dict[str, str] = {}  # figure file name -> its SVG (figures_over_time)

    def text(self, value: object) -> str:
        """A value as Markdown text: redacted, on one line, escaped (``markdown_text``)."""
        return markdown_text(self.redact(str(value)))

    def render(self) -> str:
        inputs = self.inputs
        self.lines = ["# LegacyVideo runbook, as executed", ""]
        self._header()
        for section in inputs.coverage.sections:
            if section.status != NAVIGATION:
                self._section(section)
        self._detection_matrix()
        self.lines += figures_over_time(self.inputs.reports, self.figures, self.text)
        self._gaps()
        self._orphans()
        return "\n".join(self.lines).rstrip() + "\n"

    def _detection_matrix(self) -> None:
        """For the latest record of each drill: what detected it (for a game day, the
        scheduled scenarios that failed naming its section), the sections the failures
        named, the time to detect, the verdict."""
        out = self.lines
        out += ["## Detection matrix", "",
                "How each drill's fault was seen, from its latest record. A game day counts as"
                " detected only when a scheduled synthetic check (what `runbook check` runs)"
                " failed naming its runbook section; the disasters are silent to those checks"
                " and detect their loss with a check of the data; a restore test or an isolated"
                " rebuild declares the loss and breaks nothing, so it has nothing to detect."
                " Time to detect runs from the start of the injection to that failure.", ""]
        latest: dict[str, DrillFigures] = {}
        for drill in self.inputs.drills:  # newest first
            latest.setdefault(drill.drill, drill)
        if not latest:
            out += [f"No drill recorded yet: {HOW_TO_RUN}.", ""]
            return
        out += ["| drill | incident (runbook section) | detected by | sections the failures"
                " named | time to detect | verdict |", "|---|---|---|---|---|---|"]
        for name, d in sorted(latest.items(), key=lambda item: item[1].section):
            scheduled = d.detection.startswith("the scheduled checks")
            declared = d.detection.startswith("none: the loss is declared")
            if scheduled:
                by = ", ".join(d.detected_by) or "NOT DETECTED by the scheduled checks"
            elif declared:
                by = "nothing to detect: the loss was declared, nothing was broken"
            else:
                by = "the drill's own check" if d.detection else "-"
            detect = "-" if declared else _seconds(d.time_to_detect_s)
            out.append(f"| {self.text(name)} | {self.text(d.section)} | {self.text(by)} |"
                       f" {self.text('; '.join(d.named) or '-')} |"
                       f" {self.text(detect)} |"
                       f" {self.text(d.verdict.upper() if d.verdict != 'pass' else 'pass')} |")
        out.append("")

    def _header(self) -> None:
        inputs = self.inputs
        coverage = inputs.coverage
        out = self.lines
        out.append(f"Generated {self.text(_when(self.now.isoformat()))} from"
                   f" {self.text(coverage.runbook.name)} and the features in"
                   f" {self.text(coverage.features.name)}/.")
        out.append("")
        out.append(f"- Coverage: {self.text(coverage.summary_line())}"
                   f" (leaves counted; a part is covered when all its subsections are)")
        if inputs.runs:
            newest = max(inputs.runs, key=lambda r: r.finished_at)
            counts: dict[str, int] = {}
            for run in inputs.runs:
                counts[run.outcome] = counts.get(run.outcome, 0) + 1
            tally = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            out.append(f"- Results: the latest of each scenario from"
                       f" {self.text(inputs.runs_from)} ({self.text(tally)}); last run"
                       f" {self.text(_when(newest.finished_at))} on"
                       f" {self.text(_target(newest))}")
        else:
            out.append("- Results: **no run recorded yet** in"
                       f" {self.text(inputs.reports)}: every scenario below shows never run."
                       f" To produce results: {HOW_TO_RUN}.")
        out.append(f"- Drill records: {len(inputs.drills)}"
                   + (f" ({len(inputs.unreadable)} unreadable:"
                      f" {self.text(', '.join(inputs.unreadable))})" if inputs.unreadable
                      else ""))
        out.append(f"- Manual records: {len(inputs.records)} in"
                   f" {self.text(inputs.records_file)}")
        out.append("")

    def _section(self, section: Section) -> None:
        out = self.lines
        hashes = "#" * section.heading.level
        out += [f"{hashes} {self.text(section.title)}", ""]
        out.append(f"Coverage: **{self.text(_coverage_word(section))}**")
        out.append("")
        scenarios = self._own_scenarios(section)
        executable = [s for s in scenarios if not is_manual(s)]
        if executable:
            self._scenario_table(executable)
        drills = [d for d in self.inputs.drills if d.slug == section.slug]
        if drills:
            self._drill_table(drills)
        manual_steps = [s for s in scenarios if is_manual(s)]
        if manual_steps:
            self._manual_table(manual_steps)
        if section.gap:
            why = ("only steps a person records (@manual)" if section.status == MANUAL
                   else "no scenario restates it")
            out += [f"**Gap:** no executable scenario: {why}.", ""]

    def _own_scenarios(self, section: Section) -> list[ScenarioInfo]:
        """Its scenarios, distinct; for a part, only those tagged with no subsection of it
        (a feature-level tag would otherwise list the whole feature under the part)."""
        below = {s.slug for s in section.subsections}
        seen: set[tuple[Path, int]] = set()
        found = []
        for scenario in section.scenarios:
            if below & set(scenario.sections) or (scenario.path, scenario.line) in seen:
                continue
            seen.add((scenario.path, scenario.line))
            found.append(scenario)
        return found

    def _runs_of(self, scenario: ScenarioInfo) -> list[Run]:
        runs = [r for r in self.inputs.runs if matches(scenario, r)]
        self.shown |= {(r.feature, r.name) for r in runs}
        return sorted(runs, key=lambda r: r.name)

    def _scenario_table(self, scenarios: Sequence[ScenarioInfo]) -> None:
        out = self.lines
        out += ["| scenario | last status | last run | figures |", "|---|---|---|---|"]
        for scenario in scenarios:
            runs = self._runs_of(scenario)
            if not runs:
                out.append(f"| {self.text(scenario.name)} | never run | - | - |")
            for run in runs:
                status = _STATUS.get(run.outcome, run.outcome or "unknown")
                if run.expired and run.outcome != "expired":
                    status += ", overdue for its cadence"
                detail = f": {_shorten(run.message)}" if run.message and run.outcome != (
                    "passed") else ""
                out.append(f"| {self.text(run.name)} | {self.text(status + detail)} |"
                           f" {self.text(_when(run.finished_at))} on {self.text(_target(run))}"
                           f" ({run.duration_s:.2f} s) | {self.text(_figures(run.figures))} |")
        out.append("")

    def _drill_table(self, drills: Sequence[DrillFigures]) -> None:
        """The latest record of each drill of the section (how many earlier ones too)."""
        out = self.lines
        out += ["Drill records (the latest of each drill):", "",
                "| drill | when | verdict | time to detect | RTO (objective) |"
                " RPO (objective) | record |", "|---|---|---|---|---|---|---|"]
        by_drill: dict[str, list[DrillFigures]] = {}
        for drill in drills:  # newest first
            by_drill.setdefault(drill.drill, []).append(drill)
        for name, records in by_drill.items():
            d = records[0]
            earlier = f" (+{len(records) - 1} earlier)" if len(records) > 1 else ""
            out.append(
                f"| {self.text(name)} | {self.text(_when(d.started_at))} on"
                f" {self.text(d.target)} by {self.text(d.operator)} |"
                f" {self.text(d.verdict.upper() if d.verdict != 'pass' else 'pass')} |"
                f" {self.text(_seconds(d.time_to_detect_s))} |"
                f" {self.text(_against(d.rto_s, d.rto_objective_s))} |"
                f" {self.text(_against(d.rpo_s, d.rpo_objective_s))} |"
                f" {self.text(d.file + earlier)} |")
        out.append("")

    def _manual_table(self, scenarios: Sequence[ScenarioInfo]) -> None:
        out = self.lines
        out += ["Manual steps (a person records the result):", "",
                "| step | result | recorded by | when | evidence | notes |",
                "|---|---|---|---|---|---|"]
        for scenario in scenarios:
            slug = slugify(scenario.name)
            mine = [r for r in self.inputs.records if r.scenario == slug]
            runs = self._runs_of(scenario)
            if not mine:
                out.append(f"| {self.text(scenario.name)} | never recorded (due) | - | - | - |"
                           " - |")
                continue
            latest = max(mine, key=lambda r: r.at)
            cadence = next((c for c in ("daily", "weekly", "monthly", "quarterly")
                            if c in scenario.tags), None)
            standing = manual.Standing(latest, manual.validity_of(cadence), self.now)
            state = "expired, due again" if standing.expired else "valid"
            if any(r.outcome == "expired" for r in runs):
                state = "expired, due again"
            out.append(f"| {self.text(scenario.name)} | {self.text(latest.result)} ({state}) |"
                       f" {self.text(latest.by)} | {self.text(_when(latest.at))} |"
                       f" {self.text(latest.evidence)} | {self.text(latest.notes or '-')} |")
        out.append("")

    def _gaps(self) -> None:
        gaps = self.inputs.coverage.gaps()
        out = self.lines
        out += ["## Gaps: sections with no executable scenario", ""]
        if not gaps:
            out += ["None: every section is restated by at least one executable scenario.", ""]
            return
        for section in gaps:
            why = "manual steps only" if section.status == MANUAL else "uncovered"
            out.append(f"- {self.text(section.path)} ({why})")
        out.append("")

    def _orphans(self) -> None:
        """Results no section shows: of scenarios the features no longer have (renamed or
        removed), of scenarios tagged with no heading, drill records naming no heading."""
        scenarios = self.inputs.coverage.scenarios
        unshown = [r for r in self.inputs.runs if (r.feature, r.name) not in self.shown]
        lines = []
        for run in unshown:
            why = ("tagged with no heading of this runbook" if any(matches(s, run)
                   for s in scenarios) else "no such scenario in the features now")
            lines.append(f"- {self.text(run.feature)}: {self.text(run.name)}:"
                         f" {self.text(_STATUS.get(run.outcome, run.outcome))} ({why})")
        for drill in self.inputs.drills:
            if not drill.slug:
                lines.append(f"- drill {self.text(drill.drill)}"
                             f" ({self.text(drill.section or 'no section')}):"
                             f" {self.text(drill.verdict)}, {self.text(drill.file)}"
                             " (names no heading of this runbook)")
        if lines:
            self.lines += ["## Results outside the runbook's sections", "", *lines, ""]


def _coverage_word(section: Section) -> str:
    if section.subsections:
        counted = [s for s in section.subsections if s.counted]
        done = sum(1 for s in counted if s.status == COVERED)
        return f"{section.status} ({done}/{len(counted)} subsections covered)"
    return section.status


def _when(iso: str | None) -> str:
    """``2026-03-01T10:15:02.123+00:00`` -> ``2026-03-01 10:15:02 UTC``."""
    if not iso:
        return "-"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _target(run: Run) -> str:
    if run.environment and run.environment != run.target:
        return f"{run.target or '?'} ({run.environment})"
    return run.target or "?"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} s" if value < 10 else f"{value:.0f} s"


def _against(measured: float | None, objective: float | None) -> str:
    if objective is None:
        return _seconds(measured)
    met = "" if measured is None else " met" if measured <= objective else " MISSED"
    return f"{_seconds(measured)} ({_seconds(objective)}){met}"


#: Figure names the drills use, as a reader says them.
_FIGURE_NAMES = {"time_to_detect_s": "time to detect", "rto_s": "RTO", "rpo_s": "RPO"}


def _figures(figures: Mapping[str, float]) -> str:
    """``{"api health ms": 12.3, "rto_s": 1.2, "rto_objective_s": 900}`` ->
    ``api health 12.3 ms; RTO 1.2 s (900 s) met``."""
    if not figures:
        return "-"
    parts = []
    for name, value in figures.items():
        if name.endswith("_objective_s"):
            continue
        if name in _FIGURE_NAMES:
            objective = figures.get(name.replace("_s", "_objective_s"))
            shown = (_against(value, objective) if name != "time_to_detect_s"
                     else _seconds(value))
            parts.append(f"{_FIGURE_NAMES[name]} {shown}")
        elif name.endswith(" ms"):
            parts.append(f"{name[:-3]} {value:g} ms")
        else:
            parts.append(f"{name} {value:g}")
    return "; ".join(parts) or "-"


def _shorten(text: str, limit: int = 240) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- HTML and writing ------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 70rem; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; width: 100%; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .5rem; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; }
code { background: #f6f8fa; padding: 0 .2rem; }
"""


def render_html(markdown: str, title: str = "LegacyVideo runbook, as executed") -> str:
    """The Markdown as one self-contained HTML page: raw HTML in the Markdown is escaped,
    not passed through, and the page has no script and no external asset."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )


@dataclass(frozen=True)
class Written:
    """Where the page went and what it says, for the command's last line."""

    markdown: Path
    html: Path
    scenarios: int
    never_run: int
    gaps: int


def write(inputs: Inputs, output: Path, redact: Redactor, now: datetime | None = None
          ) -> Written:
    """Write ``living-runbook.md`` and ``.html`` under ``output``, both redacted."""
    page = Page(inputs, redact, now or datetime.now(UTC))
    # Every value was redacted on its own; the whole page again, in case, and the masks that
    # pass makes escaped like the others (a bare "***" is Markdown emphasis).
    markdown = redact(page.render()).replace(MASK, markdown_text(MASK))
    document = redact(inline_figures(render_html(markdown), page.figures))
    output.mkdir(parents=True, exist_ok=True)
    write_figures(output, {name: redact(svg) for name, svg in page.figures.items()})
    md_path, html_path = output / MARKDOWN_FILE, output / HTML_FILE
    _replace(md_path, markdown)
    _replace(html_path, document)
    executable = _distinct(s for s in inputs.coverage.scenarios if not is_manual(s))
    ran = _distinct(s for s in inputs.coverage.scenarios if not is_manual(s)
                    and any(matches(s, r) for r in inputs.runs))
    return Written(md_path, html_path, executable, executable - ran,
                   len(inputs.coverage.gaps()))


# -- figures over time (runbook.reporting.plots) ------------------------------------------

#: Where the page's figures go, next to it: the Markdown shows them as images from there;
#: the HTML carries them inline (self-contained).
FIGURES_DIR = "living-runbook-figures"


def figures_over_time(reports: Path, figures: dict[str, str],
                      text: Callable[[object], str]) -> list[str]:
    """The "Figures over time" section: per drill its RTO, RPO and time to detect over its
    records (``reports/drills``) against the objectives, per synthetic scenario its latencies
    over the runs (``reports/history.jsonl``). Each figure's SVG goes into ``figures`` under
    its file name; the Markdown shows it as an image of ``FIGURES_DIR``."""
    lines = ["## Figures over time", "",
             "Per drill, its RTO, RPO and time to detect across its records, the runbook's"
             " objective as a dashed line, a red point where a figure missed it or the record"
             " failed; per synthetic scenario, what it measured (ms) across the runs.", ""]
    drills = plots.read_drill_histories(reports / "drills")
    latencies = plots.latency_histories(read_history(reports / "history.jsonl"))
    if not drills and not latencies:
        return [*lines, f"Nothing recorded yet: {HOW_TO_RUN}.", ""]
    for drill in drills:
        name = f"drill-{slugify(drill.drill)}.svg"
        figures[name] = plots.drill_svg(drill)
        lines += [f"### Drill {text(drill.drill)}", "",
                  f"{len(drill.points)} record(s) of {text(drill.section or 'no section')}.",
                  "", f"![RTO, RPO and time to detect of {text(drill.drill)}]"
                  f"({FIGURES_DIR}/{name})", ""]
    if latencies:
        lines += ["### Synthetic checks: latency", ""]
    for index, latency in enumerate(latencies, 1):
        name = f"latency-{index:03d}-{slugify(latency.scenario)[:60]}.svg"
        figures[name] = plots.latency_svg(latency)
        lines += [f"![Latency of {text(latency.scenario)} ({text(latency.feature)})]"
                  f"({FIGURES_DIR}/{name})", ""]
    return lines


def inline_figures(document: str, figures: Mapping[str, str]) -> str:
    """The HTML with each figure's image replaced by its SVG, inline: no external file."""
    def inline(found: re.Match[str]) -> str:
        svg = figures.get(found["name"])
        if svg is None:
            return found[0]
        return (f'<figure style="margin:.5rem 0 1.5rem" aria-label="{found["alt"]}">'
                f"{svg}</figure>")

    return re.sub(rf'<img src="{FIGURES_DIR}/(?P<name>[^"/]+)" alt="(?P<alt>[^"]*)" />',
                  inline, document)


def write_figures(output: Path, figures: Mapping[str, str]) -> None:
    """The figures as SVG files under ``output/FIGURES_DIR`` (the Markdown's images)."""
    if not figures:
        return
    directory = output / FIGURES_DIR
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.svg"):
        if stale.name not in figures:
            stale.unlink()
    for name, svg in figures.items():
        _replace(directory / name, svg)


def _distinct(scenarios: Iterable[ScenarioInfo]) -> int:
    return len({(s.path, s.line) for s in scenarios})


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
