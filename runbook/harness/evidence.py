"""Evidence: what a step attaches to the report, by the step that produced it.

A step that produces a record (a probe's ``ProbeResult``, an operation's record: anything
with ``evidence()``) hands it to the ``evidence`` fixture and returns what it gives back::

    @when("the on-call engineer checks the API health", target_fixture="api_health")
    def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
        return evidence(api.health(target, timeouts))

It is attached to the Allure report once per scenario (redacted JSON), its timing kept as a
figure in the summary, the server versions it saw kept for the report's environment, and the
scenario's records written under the reports' ``evidence/`` (``runbook.reporting.evidence``)
for the annotated runbook to show what each command returned.
"""

from __future__ import annotations

import json
from typing import Protocol, TypeVar

import allure
import pytest

from runbook.harness import allure_labels, scenarios
from runbook.harness.state import RunState, ScenarioState, run_state, scenario_state
from runbook.reporting import evidence as kept
from runbook.results import ProbeResult, utcnow


class Evident(Protocol):
    def evidence(self) -> object: ...


R = TypeVar("R", bound=Evident)

#: What a probe's observation names a server's version by, and the name the report uses.
VERSIONS = (("server_version", "PostgreSQL"), ("redis_version", "Redis"))


class Evidence:
    """The step's handle on the report: ``evidence(record)`` attaches ``record`` (once per
    scenario) and returns it; ``title`` names the attachment (default: the probe's
    component and check, or the record's class)."""

    def __init__(self, run: RunState, scenario: ScenarioState) -> None:
        self._run = run
        self._scenario = scenario

    def __call__(self, record: R, title: str | None = None) -> R:
        if id(record) in self._scenario.attached:
            return record
        self._scenario.attached.add(id(record))
        if isinstance(record, ProbeResult):
            key = f"{record.component} {record.check} ms"
            self._scenario.figures[key] = round(record.timing.elapsed_ms, 1)
            for observed, name in VERSIONS:
                if record.observed.get(observed):
                    self._run.versions[name] = str(record.observed[observed])
            title = title or f"{record.component}: {record.check}"
        data = self._run.redactor.data(record.evidence())
        name = title or type(record).__name__
        allure.attach(json.dumps(data, indent=2, default=str), name=name,
                      attachment_type=allure.attachment_type.JSON)
        self._scenario.evidence.append({"title": name, "evidence": data})
        if self._run.runs_scenarios and self._scenario.name:
            kept.write(self._run.reports, self._scenario.feature, self._scenario.name,
                       target=self._run.target_name, environment=self._run.environment,
                       recorded_at=utcnow().isoformat(), records=self._scenario.evidence)
        return record


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Evidence:
    """Attach a record a step produced to the scenario's report (see the module doc)."""
    return Evidence(run_state(request.config), scenario_state(request.node))


@pytest.hookimpl(trylast=True)  # after allure-pytest-bdd has opened the test case
def pytest_bdd_before_scenario(request: pytest.FixtureRequest, feature: object,
                               scenario: object) -> None:
    """Name the scenario as its feature file does, and label it with its runbook section."""
    item = request.node
    state = scenario_state(item)
    state.feature, state.name = getattr(feature, "name", ""), getattr(scenario, "name", "")
    allure_labels.label(state.feature, scenarios.sections(item),
                        run_state(request.config).headings(), scenarios.tier(item))
