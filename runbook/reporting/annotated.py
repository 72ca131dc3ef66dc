"""The runbook, annotated: RUNBOOK.md's own text, in its order, with the evidence beside it.

The runbook is parsed with markdown-it and its token stream walked; after each section's
heading, each paragraph and list item, each code block and in each table row an evidence
block is inserted:

* a section: the scenarios that restate it, each with its last status, when and on which
  target, the drills that name it and the manual records; or "no evidence";
* a command (a line of a code block, a code span): how the suite executes it, the call it
  makes and what that returned in the latest run (the records the scenario's steps attached,
  kept under the reports' ``evidence/``), or why it is not executed (``runbook.commands``);
* a defect (``runbook.defects``): the runbook's text struck through, the replacement, what
  is true, and whether a real component demonstrated it (its scenario's latest run passed)
  or the tool's documentation says so;
* a table row: the scenarios whose name holds the row's first cell; for the Recovery Time
  Objectives, the measured RTO and RPO of the latest drill of that row per environment,
  preferring one a reviewer signed off (``runbook drill sign``).

The page is one self-contained HTML file (inline style, no script, no external asset),
every value redacted and escaped; beside it the same in Markdown, its blocks after each
top-level block of the runbook.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from runbook import commands, defects
from runbook.drills import ledger
from runbook.features import ScenarioInfo
from runbook.redact import MASK, Redactor
from runbook.reporting import docs
from runbook.reporting.coverage import NAVIGATION, Section, is_manual
from runbook.reporting.evidence import ScenarioEvidence, read_all
from runbook.sections import slugify

HTML_FILE = "annotated-runbook.html"
MARKDOWN_FILE = "annotated-runbook.md"
PATCH_FILE = "runbook-fixes.patch"

#: The section holding the RTO/RPO table (``@runbook:recovery-time-objectives``).
RTO_SECTION = "recovery-time-objectives"
_VALUE_LIMIT = 160
#: Fields of a record that say when, not what: left out of its summary.
_TIMING = frozenset({"started_at", "finished_at", "elapsed_ms", "elapsed_s", "timing"})


@dataclass(frozen=True)
class Note:
    """One evidence block: its kind (the CSS class), a label, lines, and a redline."""

    kind: str  # section | empty | command | unexecuted | defect | row
    label: str
    items: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    #: The defect's id (``runbook.defects``) for a defect's block.
    finding: str = ""
    #: Whether the defect was demonstrated by the real component's evidence.
    demonstrated: bool = False


@dataclass
class Annotated:
    """The page as built: its HTML body and its Markdown."""

    html_body: str
    markdown: str
    notes: list[Note] = field(default_factory=list)
    #: Findings whose text this runbook does not hold (edited since, or another runbook).
    missing: list[str] = field(default_factory=list)


def signatures(reports: Path) -> dict[str, str]:
    """Who signed off each drill record (file name -> by), from the drill ledger; a ledger
    that does not verify signs nothing."""
    path = reports / "drills" / ledger.LEDGER_FILE
    if not path.is_file():
        return {}
    book = ledger.read(path)
    if book.problems:
        return {}
    return {e.record: str(e.fields.get("by", "")) for e in book.entries if e.kind == "signed"}


class Annotator:
    """Builds the evidence blocks from the gathered results (``docs.gather``), the kept
    evidence of each scenario and the drill ledger's signatures."""

    def __init__(self, inputs: docs.Inputs, kept: Sequence[ScenarioEvidence],
                 signed: dict[str, str]) -> None:
        self.inputs = inputs
        self.kept = {(e.feature, e.name): e for e in kept}
        self.signed = signed
        self.by_name: dict[str, list[ScenarioInfo]] = {}
        for scenario in inputs.coverage.scenarios:
            self.by_name.setdefault(scenario.name, []).append(scenario)

    # -- scenarios and what they returned ---------------------------------------------------

    def runs_of(self, name: str) -> list[docs.Run]:
        scenarios = self.by_name.get(name, [])
        runs = [r for r in self.inputs.runs if any(docs.matches(s, r) for s in scenarios)]
        return sorted(runs, key=lambda r: r.name)

    def status_lines(self, names: Sequence[str], *, replies: bool = False) -> list[str]:
        """Each scenario's latest run (status, when, target); with ``replies``, what the
        calls of that run returned."""
        lines: list[str] = []
        for name in names:
            runs = self.runs_of(name)
            if not runs:
                lines.append(f"{name} — never run")
            for run in runs:
                lines.append(f"{run.name} — {_status(run)}, {docs._when(run.finished_at)}"
                             f" on {docs._target(run)}")
                kept = self.kept.get((run.feature, run.name))
                if replies and kept is not None:
                    lines += [f"returned: {line}" for r in kept.records for line in _summary(r)]
        return lines

    def demonstrated(self, finding: defects.Finding) -> tuple[bool, str]:
        """Whether the finding's scenarios all passed in their latest run, and why not."""
        for name in finding.scenarios:
            runs = self.runs_of(name)
            if not runs:
                return False, f"its scenario \"{name}\" never ran"
            failing = [r for r in runs if r.outcome not in ("passed", "flaky")]
            if failing:
                return False, (f"its scenario \"{name}\" did not pass in its latest run"
                               f" ({_status(failing[0])})")
        return True, ""

    # -- the notes ----------------------------------------------------------------------------

    def section(self, section: Section | None, title: str) -> Note | None:
        if section is None:
            return Note("empty", f"No evidence: \"{title}\" is not a section the features"
                                 " know")
        if section.status == NAVIGATION:
            return None
        below = {s.slug for s in section.subsections}
        own = list({(s.path, s.line): s for s in section.scenarios
                    if not below & set(s.sections)}.values())
        executable = list(dict.fromkeys(s.name for s in own if not is_manual(s)))
        manual = list(dict.fromkeys(s.name for s in own if is_manual(s)))
        drills = [d for d in self.inputs.drills if d.slug == section.slug]
        items = self.status_lines(executable)
        for name in manual:
            mine = [r for r in self.inputs.records if r.scenario == slugify(name)]
            latest = max(mine, key=lambda r: r.at) if mine else None
            items.append(f"manual: {name} — " + (
                f"{latest.result}, recorded by {latest.by} {docs._when(latest.at)},"
                f" evidence {latest.evidence}" if latest else "never recorded (due)"))
        latest_drills: dict[str, docs.DrillFigures] = {}
        for drill in drills:  # newest first
            latest_drills.setdefault(drill.drill, drill)
        for drill in latest_drills.values():
            items.append(_drill_line(drill, self.signed.get(drill.file)))
        if not items:
            if section.subsections:
                return None  # its subsections carry the evidence
            return Note("empty", "No evidence: no scenario restates this section and no"
                                 " drill names it")
        return Note("section", f"Evidence for \"{section.title}\" ({section.status})",
                    tuple(items))

    def command(self, text: str) -> Note:
        use = commands.use_of(text)
        if use is None:
            return Note("unexecuted", f"Not executed: {text}",
                        ("no scenario runs this command; nothing recorded",))
        items = [f"call: {use.call}", *self.status_lines(use.scenarios, replies=True)]
        return Note("command" if use.how in ("executed", "replaced") else "unexecuted",
                    f"{use.how.capitalize()}: {text}", tuple(items))

    def defect(self, edit: defects.Edit) -> Note:
        found = edit.finding
        shown = False
        if found.evidence == "documented":
            label = f"WRONG ({found.id}), documented: the real tool cannot run here"
            items = [f"true: {found.true}", f"source: {found.citation}"]
            if found.instead:
                items.append(f"the suite checks instead: {found.instead}")
        else:
            shown, why = self.demonstrated(found)
            label = (f"WRONG ({found.id}), demonstrated on the real component" if shown else
                     f"WRONG per the catalogue ({found.id}), NOT demonstrated: {why}")
            items = [f"true: {found.true}",
                     *self.status_lines(found.scenarios, replies=True)]
            if found.citation:
                items.append(f"see also: {found.citation}")
        return Note("defect", label, tuple(items), edit.old, edit.new, found.id,
                    found.evidence == "demonstrated" and shown)

    def row(self, section: str, cells: Sequence[str]) -> str:
        """The evidence cell of a table row (plain text, one line per item)."""
        first = cells[0].strip() if cells else ""
        if section == RTO_SECTION:
            return "\n".join(self.rto(first)) or "no drill recorded for this row"
        if not first:
            return "-"
        pattern = re.compile(rf"\b{re.escape(first)}\b")
        names = [n for s in self.inputs.coverage.scenarios if section in s.sections
                 for n in [s.name] if not is_manual(s)]
        runs = [r for n in dict.fromkeys(names) for r in self.runs_of(n)
                if pattern.search(r.name)]
        return "\n".join(f"{r.name} — {_status(r)}, {docs._when(r.finished_at)} on"
                         f" {docs._target(r)}" for r in runs) or "-"

    def rto(self, scenario: str) -> list[str]:
        """Per environment, the latest drill judged against the row ``scenario``,
        preferring a signed one: measured RTO and RPO against the row's objectives."""
        mine = [d for d in self.inputs.drills if d.scenario == scenario]  # newest first
        lines = []
        for environment in dict.fromkeys(d.environment for d in mine):
            here = [d for d in mine if d.environment == environment]
            drill = next((d for d in here if d.file in self.signed), here[0])
            by = self.signed.get(drill.file)
            lines.append(
                f"{environment or '?'}: RTO {docs._against(drill.rto_s, drill.rto_objective_s)},"
                f" RPO {docs._against(drill.rpo_s, drill.rpo_objective_s)};"
                f" {drill.drill} {drill.verdict}, {docs._when(drill.started_at)},"
                + (f" signed off by {by}" if by else " NOT signed off") + f" ({drill.file})")
        return lines


def _status(run: docs.Run) -> str:
    status = docs._STATUS.get(run.outcome, run.outcome or "unknown")
    if run.message and run.outcome not in ("passed", "flaky"):
        status += f": {docs._shorten(run.message, 200)}"
    return status


def _drill_line(drill: docs.DrillFigures, by: str | None) -> str:
    return (f"drill {drill.drill}: {drill.verdict}, {docs._when(drill.started_at)} on"
            f" {drill.target}; time to detect {docs._seconds(drill.time_to_detect_s)},"
            f" RTO {docs._against(drill.rto_s, drill.rto_objective_s)},"
            f" RPO {docs._against(drill.rpo_s, drill.rpo_objective_s)}; "
            + (f"signed off by {by}" if by else "not signed off") + f" ({drill.file})")


def _short(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 1] + "…"


def _summary(record: Mapping[str, Any]) -> list[str]:
    """What one attached record says: its calls and their output, else its observation's
    plain values, and its problem."""
    title = str(record.get("title", "record"))
    evidence = record.get("evidence")
    if not isinstance(evidence, dict):
        return [f"{title}: {_short(evidence)}"]
    lines = []
    for activity in evidence.get("activities") or ():
        if isinstance(activity, dict):
            call = activity.get("command")
            call = " ".join(str(c) for c in call) if isinstance(call, list) else str(call)
            result = activity.get("error") or activity.get("output") or "ok"
            lines.append(f"{activity.get('name', 'call')}: {_short(call)} -> {_short(result)}")
    observed = evidence.get("observed")
    source = observed if isinstance(observed, dict) else evidence
    plain = [(k, v) for k, v in source.items() if k not in _TIMING and k != "activities"
             and (v is None or isinstance(v, str | int | float | bool))]
    if plain:
        lines.insert(0, f"{title}: " + "; ".join(f"{k} = {_short(v)}" for k, v in plain[:12]))
    if evidence.get("problem"):
        lines.append(f"{title}: problem: {_short(evidence['problem'])}")
    return lines or [f"{title}: (nothing plain to show)"]


# -- walking the runbook -----------------------------------------------------------------------


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _inline_text(token: Token) -> str:
    return token.content.strip()


def annotate(runbook: str, annotator: Annotator, redact: Redactor) -> Annotated:
    """The runbook's tokens with evidence blocks inserted, rendered to HTML, and the same
    blocks spliced into the runbook's Markdown after each top-level block."""
    md = _parser()
    runbook = redact.known(runbook)
    tokens = md.parse(runbook)
    lines = runbook.split("\n")
    edits = defects.locate(lines, strict=False)  # any runbook: a finding may not apply
    sections = {s.slug: s for s in annotator.inputs.coverage.sections}
    out: list[Token] = []
    after_line: dict[int, list[Note]] = {}  # Markdown: notes after this line (0-based end)
    notes: list[Note] = []
    top_end = 0
    slug = ""
    row_cells: list[str] = []
    in_head = False

    def place(new: Sequence[Note], where: list[Token]) -> None:
        for note in new:
            notes.append(note)
            after_line.setdefault(top_end, []).append(note)
            block = Token("html_block", "", 0)
            block.content = note_html(note, redact)
            where.append(block)

    def defects_in(start: int, end: int) -> list[Note]:
        return [annotator.defect(e) for e in edits if start <= e.start < end]

    for index, token in enumerate(tokens):
        if token.level == 0 and token.nesting >= 0 and token.map:
            top_end = token.map[1]
        out.append(token)
        if token.type == "heading_close" and token.tag in ("h2", "h3"):
            title = _inline_text(tokens[index - 1])
            slug = slugify(title)
            note = annotator.section(sections.get(slug), title)
            place([note] if note else [], out)
        elif token.type in ("fence", "code_block") and token.map:
            first = token.map[0] + (1 if token.type == "fence" else 0)
            new = defects_in(*token.map)
            for offset, text in commands.commands_of(token.content):
                if any(e.start <= first + offset < e.end for e in edits):
                    continue  # its defect's note says what it does
                new.append(annotator.command(text))
            place(new, out)
        elif token.type == "paragraph_close":
            inline = tokens[index - 1]
            spans = [c.content for c in inline.children or () if c.type == "code_inline"
                     and commands.is_command(c.content)]
            paragraph = next(t for t in reversed(tokens[:index]) if t.type == "paragraph_open")
            start, end = paragraph.map or (0, 0)
            found = defects_in(start, end)
            fixed = {line for n in found for line in n.removed}
            new = found + [annotator.command(s) for s in spans
                           if not any(s in line for line in fixed)]
            place(new, out)
        elif token.type == "thead_open":
            in_head = True
        elif token.type == "thead_close":
            in_head = False
        elif token.type == "tr_open":
            row_cells = []
        elif token.type == "inline" and tokens[index - 1].type in ("td_open", "th_open"):
            row_cells.append(token.content)
        elif token.type == "tr_close":
            out.pop()
            cell = Token("html_block", "", 0)
            if in_head:
                label = ("Measured (latest drill per environment, signed off first)"
                         if slug == RTO_SECTION else "Evidence (latest runs)")
                cell.content = f'<th class="evidence">{html.escape(label)}</th>\n'
            else:
                text = annotator.row(slug, row_cells)
                note = Note("row", f"row {row_cells[0].strip() if row_cells else ''}",
                            tuple(text.split("\n")))
                notes.append(note)
                if text != "-":  # the Markdown lists only rows with evidence
                    after_line.setdefault(top_end, []).append(note)
                cell.content = ('<td class="evidence">' + "<br>".join(
                    html.escape(redact(line)) for line in note.items) + "</td>\n")
            out.append(cell)
            out.append(token)
    body = md.renderer.render(out, md.options, {})
    return Annotated(body, _markdown(lines, after_line, redact), notes,
                     [f.id for f in defects.missing(lines)])


# -- rendering -----------------------------------------------------------------------------


def note_html(note: Note, redact: Redactor) -> str:
    """One evidence block as HTML, every value redacted and escaped."""
    def esc(value: str) -> str:
        return html.escape(redact(value))

    parts = [f'<aside class="note note-{note.kind}">',
             f'<div class="label">{esc(note.label)}</div>']
    if note.removed or note.added:
        parts.append('<div class="redline">')
        parts += [f"<del>{esc(line)}</del>" for line in note.removed]
        parts += [f"<ins>{esc(line)}</ins>" for line in note.added]
        parts.append("</div>")
    if note.items:
        parts.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in note.items)
                     + "</ul>")
    parts.append("</aside>\n")
    return "\n".join(parts)


#: How a Markdown evidence block starts, by kind (no emphasis: a value may end in ``*``).
_MARK = {"defect": "✗", "empty": "∅", "unexecuted": "○", "command": "✓", "section": "▸"}


def note_markdown(note: Note, redact: Redactor) -> list[str]:
    """One evidence block as a Markdown quote, every value redacted and escaped."""
    def text(value: str) -> str:
        return docs.markdown_text(redact(value))

    out = [f"> {_MARK.get(note.kind, '▸')} {text(note.label)}", ">"]
    out += [f"> - runbook says: {text(line)}" for line in note.removed if line.strip()]
    out += [f"> - should say: {text(line)}" for line in note.added if line.strip()]
    out += [f"> - {text(item)}" for item in note.items]
    return [*out, ""]


def _markdown(lines: Sequence[str], after: dict[int, list[Note]], redact: Redactor) -> str:
    out: list[str] = []
    for number, line in enumerate(lines, start=1):
        out.append(line)
        if number in after:
            out.append("")
            for note in after[number]:
                out += note_markdown(note, redact)
    return "\n".join(out).rstrip() + "\n"


_STYLE = docs._STYLE + """
.note { border-left: 4px solid #8c959f; background: #f6f8fa; margin: .4rem 0 1rem;
        padding: .35rem .7rem; font-size: .88rem; }
.note .label { font-weight: 600; }
.note ul { margin: .2rem 0; padding-left: 1.2rem; }
.note-section { border-color: #0969da; }
.note-command { border-color: #1a7f37; }
.note-unexecuted { border-color: #9a6700; }
.note-empty { border-color: #cf222e; background: #fff8f8; }
.note-defect { border-color: #cf222e; background: #ffebe9; }
.redline del { display: block; color: #82071e; background: #ffcecb; font-family: monospace;
               white-space: pre-wrap; }
.redline ins { display: block; color: #116329; background: #dafbe1; font-family: monospace;
               text-decoration: none; white-space: pre-wrap; }
td.evidence, th.evidence { background: #f6f8fa; font-size: .86rem; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; }
pre code { padding: 0; background: none; }
"""


def header(inputs: docs.Inputs, annotated: Annotated, now: datetime) -> list[str]:
    """The lines above the runbook: what the page is and where its evidence comes from."""
    places = [n for n in annotated.notes if n.kind == "defect"]
    findings = {n.finding: n for n in places}
    demonstrated = sum(1 for n in findings.values() if n.demonstrated)
    documented = sum(1 for f in findings if defects.finding(f).evidence == "documented")
    runs = (f"the latest result of each scenario from {inputs.runs_from}" if inputs.runs
            else f"no run recorded yet in {inputs.reports} ({docs.HOW_TO_RUN})")
    return [
        f"Generated {docs._when(now.isoformat())}: the runbook's own text, with beside each"
        " section, command and table row what the executable runbook found.",
        f"Evidence: {runs}; {len(inputs.drills)} drill records; {len(inputs.records)} manual"
        " records.",
        f"Marked WRONG: {len(places)} places, {len(findings)} findings ({demonstrated}"
        f" demonstrated on the real component by their scenario's latest run, {documented}"
        " documented from the tool's documentation, the rest not demonstrated yet);"
        " `runbook docs --propose-fixes` writes their fixes as a patch.",
    ] + ([f"Findings whose text this runbook does not hold (not shown, and the patch refuses"
          f" them): {', '.join(annotated.missing)}."] if annotated.missing else [])


def render_page(annotated: Annotated, head: Sequence[str], redact: Redactor) -> str:
    """The annotated body as one self-contained HTML page (inline style, no script)."""
    intro = "".join(f"<p class=\"intro\">{html.escape(redact(line))}</p>\n" for line in head)
    title = "LegacyVideo runbook, annotated with its evidence"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<header>\n{intro}</header>\n<main>\n{annotated.html_body}</main>\n"
        "</body>\n</html>\n"
    )


@dataclass(frozen=True)
class Written:
    """Where the annotated runbook went."""

    markdown: Path
    html: Path
    defects: int
    unexecuted: int


def write(inputs: docs.Inputs, runbook: str, output: Path, redact: Redactor,
          now: datetime | None = None) -> Written:
    """Write ``annotated-runbook.html`` and ``.md`` under ``output``, both redacted.
    Raises ``ConfigError`` when a defect's text is no longer in the runbook."""
    moment = now or datetime.now(UTC)
    annotator = Annotator(inputs, read_all(inputs.reports), signatures(inputs.reports))
    annotated = annotate(runbook, annotator, redact)
    head = header(inputs, annotated, moment)
    # Every value was redacted on its own; the whole page again for the known secrets (the
    # runbook's own text is a document, where the credential patterns only misfire).
    markdown = redact.known("\n\n".join(docs.markdown_text(redact(line)) for line in head)
                            + "\n\n" + annotated.markdown).replace(
        MASK, docs.markdown_text(MASK))
    page = redact.known(render_page(annotated, head, redact))
    output.mkdir(parents=True, exist_ok=True)
    md_path, html_path = output / MARKDOWN_FILE, output / HTML_FILE
    docs._replace(md_path, markdown)
    docs._replace(html_path, page)
    return Written(md_path, html_path, sum(1 for n in annotated.notes if n.kind == "defect"),
                   sum(1 for n in annotated.notes if n.kind == "unexecuted"))
