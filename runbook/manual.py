"""What a person did: the results of the runbook's manual steps, with who, when and evidence.

Some steps only a person can take ("notify affected users", "penetration testing"). Their
scenarios are tagged ``@manual``; a person records the result with ``runbook manual record``
and the scenario reads it back. A record is valid for the scenario's cadence (quarterly when
it has none): older than that, or missing, the item is *expired*, i.e. due again.

Records are appended to ``records/manual.jsonl`` (``RUNBOOK_RECORDS`` names another
directory): one JSON object per line, never rewritten, so the file is its own audit trail and
belongs in the operations repository next to the drill sign-offs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runbook.errors import ConfigError
from runbook.redact import Redactor
from runbook.reporting.summary import CADENCES
from runbook.sections import slugify

#: How long a record stands for a manual step that has no cadence of its own.
DEFAULT_VALIDITY = CADENCES["quarterly"]
RESULTS = ("pass", "fail")
#: How a @manual scenario's skip begins when its record is missing or too old: the run then
#: reports it as expired (due), not as skipped.
EXPIRED = "expired: "


def records_file() -> Path:
    """``$RUNBOOK_RECORDS/manual.jsonl``, by default ``records/manual.jsonl`` here."""
    return Path(os.environ.get("RUNBOOK_RECORDS", "records")) / "manual.jsonl"


@dataclass(frozen=True)
class ManualRecord:
    """One person's record of one manual step."""

    scenario: str  # the slug of the scenario's name
    name: str
    result: str  # pass | fail
    by: str
    at: str  # ISO 8601, UTC
    evidence: str
    notes: str = ""

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.at)


@dataclass(frozen=True)
class Standing:
    """Where a manual step stands now: its latest record and whether it is still valid."""

    record: ManualRecord | None
    validity: timedelta
    now: datetime

    @property
    def expired(self) -> bool:
        return self.record is None or self.now - self.record.when > self.validity

    def describe(self) -> str:
        if self.record is None:
            return "never recorded"
        record = self.record
        age = self.now - record.when
        days = age.total_seconds() / 86400
        state = "expired" if self.expired else "valid"
        return (f"{record.result} by {record.by} at {record.at} ({days:.1f} days ago, {state}"
                f" for {self.validity.days} days); evidence: {record.evidence}")


def validity_of(cadence: str | None) -> timedelta:
    return CADENCES.get(cadence or "", DEFAULT_VALIDITY)


def record(name: str, *, result: str, by: str, evidence: str, notes: str = "",
           at: datetime | None = None, path: Path | None = None,
           redact: Redactor | None = None) -> ManualRecord:
    """Append a person's record of the manual step ``name``; returns what was written."""
    if result not in RESULTS:
        raise ConfigError(f"result {result!r}: one of {', '.join(RESULTS)}")
    if not by.strip():
        raise ConfigError("--by is empty: say who did it (name or handle)")
    if not evidence.strip():
        raise ConfigError("--evidence is empty: give a link, a ticket or where the proof is")
    when = (at or datetime.now(UTC))
    if when.tzinfo is None:
        raise ConfigError(f"--at {when.isoformat()}: give a time zone, e.g. 2026-11-28T09:00Z")
    if when > datetime.now(UTC) + timedelta(minutes=5):
        raise ConfigError(f"--at {when.isoformat()} is in the future")
    redact = redact or Redactor()
    entry = ManualRecord(scenario=slugify(name), name=name.strip(), result=result,
                         by=redact(by.strip()), at=when.astimezone(UTC).isoformat(),
                         evidence=redact(evidence.strip()), notes=redact(notes.strip()))
    path = path or records_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(entry)) + "\n")
    return entry


def load(path: Path | None = None) -> list[ManualRecord]:
    """Every record, in the order written; a line that does not parse is an error naming it."""
    path = path or records_file()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the manual records: {exc.strerror}") from None
    found: list[ManualRecord] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            found.append(ManualRecord(**json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: not a manual record ({exc}); fix or remove"
                              " that line") from None
    return found


def standing(name: str, cadence: str | None, *, path: Path | None = None,
             now: datetime | None = None) -> Standing:
    """The latest record of the step ``name`` and whether it is within its cadence."""
    slug = slugify(name)
    mine = [r for r in load(path) if r.scenario == slug]
    latest = max(mine, key=lambda r: r.when) if mine else None
    return Standing(latest, validity_of(cadence), now or datetime.now(UTC))
