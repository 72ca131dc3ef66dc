"""Verify a directory of drill records against its ledger (``runbook drill verify``).

A record verifies when its ledger entry is intact and its JSON and Markdown bytes are those
the entry hashed, and its stored verdict is the one ``record.verdict_of_json`` recomputes
from its phases and figures. The ledger verifies when every line is an intact entry chained
to the one before, every ``signed`` entry names a recorded version of a record, and every
recorded file is still there. Anything else is a mismatch, named by file (or ledger line).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.drills import ledger
from runbook.drills.record import verdict_of_json
from runbook.errors import ConfigError
from runbook.results import Result


@dataclass(frozen=True)
class RecordCheck(Result):
    """One record file: what it says (``document``, when it parses; not evidence) and what
    is wrong."""

    file: str
    problems: tuple[str, ...]
    document: Mapping[str, Any] | None = field(default=None, repr=False)
    #: ``who at when`` of each signature of this version of the record.
    signatures: tuple[str, ...] = ()

    def _field(self, *path: str) -> Any:
        value: Any = self.document
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value

    @property
    def drill(self) -> str:
        return str(self._field("drill") or "")

    @property
    def section(self) -> str:
        return str(self._field("runbook_section") or "")

    @property
    def verdict(self) -> str:
        return str(self._field("verdict") or "")

    @property
    def environment(self) -> str:
        return str(self._field("environment") or "")

    @property
    def fingerprint(self) -> str | None:
        value = self._field("provenance", "target", "fingerprint")
        return value if isinstance(value, str) else None

    @property
    def finished_at(self) -> str:
        return str(self._field("finished_at") or "")

    def line(self) -> str:
        if not self.ok:
            return f"FAIL {self.file}: {'; '.join(self.problems)}"
        signed = f"; signed by {', '.join(self.signatures)}" if self.signatures else \
            "; not signed yet"
        return f"ok   {self.file}: {self.verdict} ({self.environment}){signed}"


@dataclass(frozen=True)
class Verification(Result):
    """Every record of a directory, and the ledger's own problems: ok when neither a record
    nor the ledger has one."""

    directory: Path
    records: tuple[RecordCheck, ...]
    ledger_problems: tuple[str, ...]

    @property
    def problems(self) -> tuple[str, ...]:
        return (*(f"{r.file}: {'; '.join(r.problems)}" for r in self.records if not r.ok),
                *self.ledger_problems)

    @property
    def failures(self) -> int:
        return sum(not r.ok for r in self.records) + len(self.ledger_problems)

    def lines(self) -> list[str]:
        """One line per record, then one per ledger problem, then the count."""
        lines = [record.line() for record in self.records]
        lines += [f"FAIL {problem}" for problem in self.ledger_problems]
        if not self.records and not self.ledger_problems:
            lines.append(f"no drill record in {self.directory}")
        elif self.ok:
            lines.append(f"verified {len(self.records)} records and the ledger in"
                         f" {self.directory}")
        else:
            lines.append(f"{self.failures} mismatches in {self.directory}: an edited, missing"
                         " or unrecorded record or ledger entry; see the lines above")
        return lines


def _read(path: Path) -> bytes | None:
    """A file's bytes, ``None`` when it is gone; ``ConfigError`` when it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _document(data: bytes) -> tuple[Mapping[str, Any] | None, str]:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "not JSON"
    if not isinstance(document, dict):
        return None, "not a drill record (not a JSON object)"
    return document, ""


def check_record(path: Path, book: ledger.Ledger) -> RecordCheck:
    """``path`` against its latest ``recorded`` entry in ``book``, and its verdict."""
    data = _read(path)
    if data is None:
        raise ConfigError(f"{path}: no such drill record")
    problems: list[str] = []
    entries = book.recorded(path.name)
    entry = entries[-1] if entries else None
    if entry is None:
        problems.append("not in the ledger (no intact recorded entry names it): written"
                        " by something other than the runbook, or its entry was damaged")
    elif len(entries) > 1:
        problems.append(f"recorded more than once (ledger lines"
                        f" {', '.join(str(e.line) for e in entries)}): an earlier record"
                        " of that name was overwritten")
    if entry is not None and ledger.sha256_hex(data) != entry.record_sha256:
        problems.append(f"its bytes differ from those the ledger recorded (line {entry.line}):"
                        " edited after it was written")
    if entry is not None:
        markdown_name = str(entry.fields.get("markdown") or path.with_suffix(".md").name)
        markdown = _read(path.parent / markdown_name)
        if markdown is None:
            problems.append(f"its Markdown {markdown_name} is missing")
        elif ledger.sha256_hex(markdown) != entry.fields.get("markdown_sha256"):
            problems.append(f"its Markdown {markdown_name} differs from the one the ledger"
                            f" recorded (line {entry.line}): edited after it was written")
    document, wrong = _document(data)
    if document is None:
        problems.append(wrong)
    else:
        try:
            recomputed = verdict_of_json(document)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"not a drill record ({type(exc).__name__}: {exc})")
        else:
            stored = document.get("verdict")
            if stored != recomputed:
                problems.append(f"its stored verdict is {stored!r} but its phases and figures"
                                f" give {recomputed!r}")
    signatures = tuple(f"{e.fields.get('by')} at {e.fields.get('at')}"
                       for e in book.signed(path.name)
                       if entry is not None and e.record_sha256 == entry.record_sha256)
    return RecordCheck(path.name, tuple(problems), document, signatures)


def _orphans(book: ledger.Ledger, directory: Path) -> list[str]:
    """Entries naming records that are gone, and signatures of no recorded version."""
    problems = []
    name = book.path.name
    for entry in book.entries:
        if entry.kind == "recorded" and not (directory / entry.record).exists():
            problems.append(f"{name} line {entry.line} records {entry.record}, which is"
                            " missing: a record was removed")
        if entry.kind == "signed" and not any(
                e.record_sha256 == entry.record_sha256 and e.line < entry.line
                for e in book.recorded(entry.record)):
            problems.append(f"{name} line {entry.line} signs {entry.record}, of which the"
                            " ledger recorded no such version before it")
    return problems


def verify(directory: Path) -> Verification:
    """Every ``*.json`` record in ``directory`` and its ``ledger.jsonl``. Raises
    ``ConfigError`` (exit 2) when the directory is missing or a file cannot be read."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such directory of drill records (the reports'"
                          " drills/, e.g. reports/drills)")
    book = ledger.read(directory / ledger.LEDGER_FILE)
    records = tuple(check_record(path, book) for path in sorted(directory.glob("*.json"))
                    if path.is_file())
    return Verification(directory, records, (*book.problems, *_orphans(book, directory)))
