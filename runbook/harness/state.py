"""What the harness keeps between hooks, typed: the run's state and each scenario's.

One object per run (``RunState``, on the config) and one per scenario (``ScenarioState``,
on its item), instead of loose keys: every hook module reads and writes the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runbook import shipped
from runbook.drills.record import DrillRecord
from runbook.redact import Redactor
from runbook.reporting.summary import ScenarioOutcome
from runbook.results import utcnow
from runbook.sections import Heading, parse_headings
from runbook.targets import RunSpec


@dataclass
class RunState:
    """The run, as the harness knows it."""

    redactor: Redactor
    reports: Path
    started_at: str = field(default_factory=lambda: utcnow().isoformat())
    #: The run's target, chosen once (``targets.RunSpec``); ``None`` until the scenarios are
    #: collected, and in a run that collects none (the project's own tests).
    run: RunSpec | None = None
    #: The target as it describes itself (safe to print), once a scenario resolved it.
    target_described: str | None = None
    outcomes: dict[str, ScenarioOutcome] = field(default_factory=dict)
    #: Server versions the probes saw (PostgreSQL, Redis), for the report's environment.
    versions: dict[str, str] = field(default_factory=dict)
    _headings: dict[str, Heading] | None = None

    @property
    def runs_scenarios(self) -> bool:
        return self.run is not None

    @property
    def environment(self) -> str:
        return self.run.environment.value if self.run is not None else "sandbox"

    @property
    def target_name(self) -> str:
        """What a failure and the report name the target by."""
        return self.target_described or (self.run.name if self.run else "the target")

    def headings(self) -> dict[str, Heading]:
        """The runbook's headings by slug (for the report's labels), read once."""
        if self._headings is None:
            runbook_file = shipped.RUNBOOK
            found = parse_headings(runbook_file.read_text()) if runbook_file.exists() else []
            self._headings = {h.slug: h for h in found}
        return self._headings


@dataclass
class ScenarioState:
    """One scenario, as the harness knows it."""

    feature: str = ""
    name: str = ""
    #: The records whose evidence is attached already (by id: once per scenario).
    attached: set[int] = field(default_factory=set)
    #: Figures kept in the summary and history (ms per probe, RTO and RPO per drill).
    figures: dict[str, float] = field(default_factory=dict)
    drill_records: list[DrillRecord] = field(default_factory=list)
    #: The attached records (title and redacted evidence), written to the reports' evidence.
    evidence: list[dict[str, Any]] = field(default_factory=list)


_RUN = pytest.StashKey[RunState]()
_SCENARIO = pytest.StashKey[ScenarioState]()


def start_run(config: pytest.Config, state: RunState) -> RunState:
    config.stash[_RUN] = state
    return state


def run_state(config: pytest.Config) -> RunState:
    return config.stash[_RUN]


def scenario_state(item: pytest.Item) -> ScenarioState:
    return item.stash.setdefault(_SCENARIO, ScenarioState())
