"""The drill ledger: ``ledger.jsonl`` beside the records, append-only, one JSON line an entry.

``write_record`` appends a ``recorded`` entry for every record it writes (the record's file
name, the sha256 of its JSON and of its Markdown as written, the drill, verdict, environment,
target fingerprint and time); ``runbook drill sign`` appends a ``signed`` entry (the record,
its sha256, who signed and the evidence). Each entry holds ``prev``, the ``sha256`` of the
entry before it (``GENESIS`` for the first), and its own ``sha256``: the hash of its other
fields as canonical JSON (sorted keys, no spaces, ASCII), which is also exactly how the line
is written. So changing any byte of an entry, removing one or inserting one is seen by
``read``, and changing any byte of a record is seen by comparing it with its entry.

One writer at a time is enough: an append takes an exclusive ``flock``, reads the last line,
writes one line with ``O_APPEND`` and fsyncs. A line cut short (a crash mid-write, a full
disk) is reported by ``read`` and refused by ``append``, never skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.drills.provenance import canonical
from runbook.errors import ConfigError, RunbookError
from runbook.results import utcnow

LEDGER_FILE = "ledger.jsonl"
#: What the first entry chains to.
GENESIS = "0" * 64
KINDS = ("recorded", "signed")
#: Fields every entry has, with their type.
_REQUIRED: dict[str, type] = {"kind": str, "record": str, "record_sha256": str, "at": str,
                              "prev": str, "sha256": str}


class LedgerError(RunbookError):
    """The ledger cannot be appended to (its last line is torn or damaged)."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seal(body: Mapping[str, Any], prev: str) -> dict[str, Any]:
    """``body`` chained to ``prev``, with its own ``sha256``: the entry as written."""
    entry = {**body, "prev": prev}
    entry.pop("sha256", None)
    return {**entry, "sha256": sha256_hex(canonical(entry))}


@dataclass(frozen=True)
class Entry:
    """One intact entry and its line number (from 1)."""

    line: int
    fields: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.fields["kind"])

    @property
    def record(self) -> str:
        return str(self.fields["record"])

    @property
    def record_sha256(self) -> str:
        return str(self.fields["record_sha256"])

    @property
    def sha256(self) -> str:
        return str(self.fields["sha256"])


@dataclass(frozen=True)
class Ledger:
    """What ``read`` found: the intact entries, and one line per problem."""

    path: Path
    entries: tuple[Entry, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def recorded(self, name: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == "recorded" and e.record == name]

    def signed(self, name: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == "signed" and e.record == name]


def _damage(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """The entry on ``raw`` (one line without its newline) and what is wrong with it ("")."""
    try:
        entry = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None, "not a JSON entry"
    if not isinstance(entry, dict):
        return None, "not a JSON object"
    for name, kind in _REQUIRED.items():
        if not isinstance(entry.get(name), kind):
            return entry, f"has no {name}"
    if entry["kind"] not in KINDS:
        return entry, f"kind {entry['kind']!r} is not one of {', '.join(KINDS)}"
    if canonical(entry) != raw:
        return entry, "is not written as the ledger writes its entries: edited"
    if seal(entry, entry["prev"])["sha256"] != entry["sha256"]:
        return entry, "does not match its own sha256: edited after it was written"
    return entry, ""


def parse(data: bytes, path: Path) -> Ledger:
    """The entries of a ledger's bytes, each checked and chained (pure)."""
    name = path.name
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    entries: list[Entry] = []
    problems: list[str] = []
    expected: str | None = GENESIS
    for number, raw in enumerate(complete, start=1):
        entry, wrong = _damage(raw)
        if not wrong and entry is not None and expected is not None \
                and entry["prev"] != expected:
            wrong = (f"does not chain to the entry before it (prev {entry['prev'][:12]}...,"
                     f" expected {expected[:12]}...): an entry before it was changed, removed"
                     " or inserted")
        if wrong:
            problems.append(f"{name} line {number} {wrong}")
        elif entry is not None:
            entries.append(Entry(number, entry))
        sealed = entry.get("sha256") if entry is not None else None
        expected = sealed if isinstance(sealed, str) else None
    if tail:
        problems.append(f"{name} line {len(complete) + 1} is torn: it has no end of line (a"
                        " write was cut short); it is no entry, and nothing may be appended"
                        " until it is repaired")
    return Ledger(path, tuple(entries), tuple(problems))


def read(path: Path) -> Ledger:
    """The ledger at ``path`` (empty when there is none). Raises ``ConfigError`` when it
    exists but cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Ledger(path, (), ())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the drill ledger ({exc.strerror or exc})"
                          ) from None
    return parse(data, path)


def append(path: Path, body: Mapping[str, Any]) -> dict[str, Any]:
    """Append ``body`` (without ``prev`` and ``sha256``) as one sealed line, chained to the
    last entry; returns the entry written. Raises ``LedgerError`` when the last line is torn
    or damaged: a chain is never extended from a line that cannot be trusted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            handle.seek(0)
            data = handle.read()
            prev = GENESIS
            if data:
                if not data.endswith(b"\n"):
                    raise LedgerError(f"{path}: its last line is torn (no end of line); nothing"
                                      " appended. Run 'runbook drill verify' and repair the"
                                      " ledger by hand")
                last = data[:-1].rsplit(b"\n", 1)[-1]
                entry, wrong = _damage(last)
                if wrong or entry is None:
                    raise LedgerError(f"{path}: its last line {wrong or 'is damaged'}; nothing"
                                      " appended. Run 'runbook drill verify'")
                prev = entry["sha256"]
            sealed = seal(body, prev)
            line = canonical(sealed) + b"\n"
            written = 0
            while written < len(line):
                written += os.write(handle.fileno(), line[written:])
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return sealed


def recorded_body(*, record: str, record_sha256: str, markdown: str, markdown_sha256: str,
                  drill: str, verdict: str, environment: str, fingerprint: str | None
                  ) -> dict[str, Any]:
    """A ``recorded`` entry's fields."""
    return {"kind": "recorded", "record": record, "record_sha256": record_sha256,
            "markdown": markdown, "markdown_sha256": markdown_sha256, "drill": drill,
            "verdict": verdict, "environment": environment, "fingerprint": fingerprint,
            "at": utcnow().isoformat()}


def signed_body(*, record: str, record_sha256: str, by: str, evidence: str
                ) -> dict[str, Any]:
    """A ``signed`` entry's fields."""
    return {"kind": "signed", "record": record, "record_sha256": record_sha256, "by": by,
            "evidence": evidence, "at": utcnow().isoformat()}
