"""The drill ledger: ``ledger.jsonl`` beside the records, append-only, one JSON line an entry.

``write_record`` appends a ``recorded`` entry for every record it writes (the record's file
name, the sha256 of its JSON and of its Markdown as written, the drill, verdict, environment,
target fingerprint and time); ``runbook drill sign`` appends a ``signed`` entry (the record,
its sha256, who signed and the evidence). Each entry holds ``prev``, the ``sha256`` of the
entry before it (``GENESIS`` for the first), and its own ``sha256``: the hash of its other
fields as canonical JSON (sorted keys, no spaces, ASCII), which is also exactly how the line
is written. So changing any byte of an entry, removing one or inserting one is seen by
``read``, and changing any byte of a record is seen by comparing it with its entry.

One writer at a time is enough: an append takes an exclusive ``flock``, reads the ledger,
writes one line with ``O_APPEND`` and fsyncs. A line cut short (a crash mid-write, a full
disk) is reported by ``read``, never skipped. ``append`` still records what it is given,
since the record it stands for is already written and the drill that wrote it may be
ending on an interruption: it ends the torn line with a newline, so it stays a line of its
own that ``read`` keeps reporting, and chains to the entry before it, so deleting the torn
line by hand is the whole repair.
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
from runbook.errors import ConfigError
from runbook.results import Result, utcnow

LEDGER_FILE = "ledger.jsonl"
#: What the first entry chains to.
GENESIS = "0" * 64
KINDS = ("recorded", "signed")
#: Fields every entry has, with their type.
_REQUIRED: dict[str, type] = {"kind": str, "record": str, "record_sha256": str, "at": str,
                              "prev": str, "sha256": str}


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
class Ledger(Result):
    """What ``read`` found: the intact entries, and one line per problem."""

    path: Path
    entries: tuple[Entry, ...]
    problems: tuple[str, ...]

    def recorded(self, name: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == "recorded" and e.record == name]

    def signed(self, name: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == "signed" and e.record == name]


def _damage(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """The entry on ``raw`` (one line without its newline) and what is wrong with it ("")."""
    try:
        entry = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None, "is not a JSON entry (cut short by a crash, or edited)"
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
                        " write was cut short); it is no entry: delete it")
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


def _head(lines: list[bytes]) -> str:
    """What the next entry chains to: the ``sha256`` of the last of the complete ``lines``
    that is an entry at all (a torn fragment is passed over, as ``parse`` does), else
    ``GENESIS``."""
    for raw in reversed(lines):
        entry, _ = _damage(raw)
        if entry is not None and isinstance(entry.get("sha256"), str):
            return str(entry["sha256"])
    return GENESIS


def append(path: Path, body: Mapping[str, Any]) -> dict[str, Any]:
    """Append ``body`` (without ``prev`` and ``sha256``) as one sealed line chained to the
    last entry; returns the entry written. A torn last line is first ended with a
    newline, so it stays a line of its own (``read`` reports it) rather than swallowing
    this entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            handle.seek(0)
            data = handle.read()
            complete = data.split(b"\n")[:-1]
            torn = bool(data) and not data.endswith(b"\n")
            sealed = seal(body, _head(complete))
            line = (b"\n" if torn else b"") + canonical(sealed) + b"\n"
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
