"""Evidence: what a step attaches to the report, by the step that produced it.

A step that produces a record (a probe's ``ProbeResult``, an operation's record: anything
with ``evidence()``) hands it to the ``evidence`` fixture and returns what it gives back::

    @when("the on-call engineer checks the API health", target_fixture="api_health")
    def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
        return evidence(api.health(target, timeouts))

It is attached to the Allure report once per scenario (redacted JSON), its timing kept as a
figure in the summary, and the server versions it saw kept for the report's environment.
"""

from __future__ import annotations

import json
from typing import Protocol, TypeVar

import allure
import pytest

from runbook.harness import allure_labels, scenarios
from runbook.harness.state import RunState, ScenarioState, run_state, scenario_state
from runbook.results import ProbeResult


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
        body = json.dumps(self._run.redactor.data(record.evidence()), indent=2, default=str)
        allure.attach(body, name=title or type(record).__name__,
                      attachment_type=allure.attachment_type.JSON)
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
