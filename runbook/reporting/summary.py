"""The run's outcome per scenario, the exit code it implies, and the terminal summary."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

#: Exit codes of ``runbook`` (see the design's command-line contract).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_WARNINGS = 4

#: Alert tiers that do not page: their failures alone give ``EXIT_WARNINGS``.
NON_PAGING_TIERS = frozenset({"warning", "info"})


@dataclass(frozen=True)
class ScenarioOutcome:
    """One scenario's result as the summary and the exit code see it."""

    nodeid: str
    name: str
    feature: str
    sections: tuple[str, ...]
    tier: str | None
    outcome: str  # passed | flaky | failed | skipped | error
    duration_s: float
    message: str = ""
    #: How many times it ran: more than one when retries were allowed and it failed first.
    attempts: int = 1

    @property
    def failed(self) -> bool:
        return self.outcome in {"failed", "error"}


def exit_code(outcomes: Iterable[ScenarioOutcome]) -> int:
    """0 all passed; 4 only warning- or info-tier scenarios failed; 1 otherwise."""
    failed = [o for o in outcomes if o.failed]
    if not failed:
        return EXIT_OK
    if all(o.tier in NON_PAGING_TIERS for o in failed):
        return EXIT_WARNINGS
    return EXIT_FAILED


_MARK = {"passed": "ok  ", "flaky": "FLKY", "failed": "FAIL", "error": "ERR ",
         "skipped": "skip"}


def render(outcomes: Sequence[ScenarioOutcome]) -> list[str]:
    """Lines grouped by runbook section, each scenario with its verdict and duration."""
    by_section: dict[str, list[ScenarioOutcome]] = {}
    for outcome in outcomes:
        key = outcome.sections[0] if outcome.sections else "(no runbook section)"
        by_section.setdefault(key, []).append(outcome)
    lines: list[str] = []
    for section in sorted(by_section):
        lines.append(f"runbook: {section}")
        for o in by_section[section]:
            tier = f" [{o.tier}]" if o.tier else ""
            mark = _MARK.get(o.outcome, o.outcome)
            lines.append(f"  {mark} {o.duration_s:6.2f}s  {o.name}{tier}")
            if (o.failed or o.outcome == "flaky") and o.message:
                prefix = f"passed on attempt {o.attempts}; first: " if o.outcome == "flaky" else ""
                lines.append(f"         {prefix}{o.message}")
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    lines.append(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no scenarios ran")
    return lines


def write_summary(path: Path, outcomes: Sequence[ScenarioOutcome], code: int, target: str,
                  run_id: str = "") -> None:
    """Write ``summary.json``: what ran, how it ended, and the exit code it implies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "run_id": run_id,
        "target": target,
        "exit_code": code,
        "scenarios": [asdict(o) for o in outcomes],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2), encoding="utf-8")
    tmp.replace(path)
