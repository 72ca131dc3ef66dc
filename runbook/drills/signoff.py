"""A reviewer's sign-off of a drill record (``runbook drill sign``): a ``signed`` entry in the
drill ledger, appended only when the record and the ledger verify, so a signature always
names the bytes the drill wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runbook.drills import ledger
from runbook.drills.verify import check_record
from runbook.errors import ConfigError, RunbookError
from runbook.redact import redact_url


class SignRefused(RunbookError):
    """The record or the ledger does not verify: nothing was signed (exit 1)."""


def _one_line(value: str, option: str) -> str:
    text = value.strip()
    if "\n" in text or "\r" in text:
        raise ConfigError(f"{option}: one line, please")
    return text


def sign(record: Path, *, by: str, evidence: str = "") -> dict[str, Any]:
    """Append a ``signed`` entry for ``record`` (its ``.json``, or its ``.md``) by ``by``
    with ``evidence`` to the ledger beside it; returns the entry.

    Raises ``ConfigError`` (exit 2) for a missing record or an empty ``by``, and
    ``SignRefused`` when the record or the ledger does not verify."""
    path = record.with_suffix(".json") if record.suffix == ".md" else record
    if path.suffix != ".json" or not path.is_file():
        raise ConfigError(f"{record}: no such drill record (give its .json under the reports'"
                          " drills/)")
    who = _one_line(by, "--by")
    if not who:
        raise ConfigError("--by: name who signs the record off")
    link = redact_url(_one_line(evidence, "--evidence"))
    book = ledger.read(path.parent / ledger.LEDGER_FILE)
    if book.problems:
        raise SignRefused(f"refused: the drill ledger does not verify ({book.problems[0]});"
                          " run 'runbook drill verify'")
    checked = check_record(path, book)
    if not checked.ok:
        raise SignRefused(f"refused: {path.name} does not verify: {'; '.join(checked.problems)}")
    entry = book.recorded(path.name)[-1]
    return ledger.append(book.path, ledger.signed_body(
        record=path.name, record_sha256=entry.record_sha256, by=who, evidence=link))
