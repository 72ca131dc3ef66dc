"""What each scenario's steps observed, kept in the reports for the annotated runbook.

The harness writes, for every scenario that attaches evidence, ``evidence/<feature>/<name>.json``
under the reports directory (the names slugified): the redacted records its steps produced
(a probe's observation, an operation's activities: the calls made and what they returned),
the target and when. A later run of the scenario replaces the file, so it holds the latest
run, as ``history.jsonl``'s latest entry does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.sections import slugify

EVIDENCE_DIR = "evidence"


def path_of(reports: Path, feature: str, name: str) -> Path:
    """Where the evidence of scenario ``name`` of ``feature`` is kept."""
    return reports / EVIDENCE_DIR / (slugify(feature) or "feature") / f"{slugify(name)}.json"


def write(reports: Path, feature: str, name: str, *, target: str, environment: str,
          recorded_at: str, records: Sequence[Mapping[str, Any]]) -> Path:
    """Replace the scenario's evidence file with ``records`` (already redacted)."""
    path = path_of(reports, feature, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"feature": feature, "name": name, "target": target,
                "environment": environment, "recorded_at": recorded_at,
                "records": list(records)}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class ScenarioEvidence:
    """The records one scenario's latest run attached."""

    feature: str
    name: str
    target: str
    environment: str
    recorded_at: str
    records: tuple[Mapping[str, Any], ...]


def read_all(reports: Path) -> list[ScenarioEvidence]:
    """Every evidence file under ``reports``; a file that does not parse is left out (a run
    killed mid-write leaves only its ``.tmp``)."""
    found = []
    for path in sorted((reports / EVIDENCE_DIR).glob("*/*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            records = tuple(r for r in document.get("records", ()) if isinstance(r, dict))
            found.append(ScenarioEvidence(
                str(document.get("feature", "")), str(document.get("name", "")),
                str(document.get("target", "")), str(document.get("environment", "")),
                str(document.get("recorded_at", "")), records))
        except (OSError, ValueError, AttributeError):
            continue
    return found
