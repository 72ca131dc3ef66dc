"""Parallel runs with pytest-xdist: workers run the scenarios, the controller reports them.

A worker builds each scenario's ``ScenarioOutcome`` where the scenario ran and sends it with
the test report, as an attribute xdist serializes; the controller gathers them and alone
writes ``summary.json``, ``history.jsonl``, the Allure extras and the runbook summary.
The controller also collects the scenarios itself (the features only: cheap), so the target
and the safety gates are checked once, in the process that hands scenarios out, before the
first one is handed out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from runbook.reporting.summary import ScenarioOutcome

#: The report attribute carrying what a worker learned about a scenario.
ATTRIBUTE = "runbook_outcome"


def is_worker(config: pytest.Config) -> bool:
    """This process is a pytest-xdist worker: it runs scenarios and writes no summary."""
    return hasattr(config, "workerinput")


def is_controller(config: pytest.Config) -> bool:
    """This process hands scenarios out to pytest-xdist workers and runs none itself.

    Reliable from ``pytest_sessionstart`` on: xdist registers its session in
    ``pytest_configure``."""
    return not is_worker(config) and config.pluginmanager.has_plugin("dsession")


@dataclass(frozen=True)
class Sent:
    """A scenario's outcome as its worker sends it, with what the run's Allure environment
    needs: the target as resolved and the server versions the probes saw."""

    outcome: ScenarioOutcome
    target: str | None = None
    versions: dict[str, str] = field(default_factory=dict)


def attach(report: pytest.TestReport, sent: Sent) -> None:
    """Put ``sent`` on the report in plain JSON types, so xdist carries it to the controller
    (reports travel as their ``__dict__``)."""
    outcome = asdict(sent.outcome)
    outcome["figures"] = dict(sent.outcome.figures)
    setattr(report, ATTRIBUTE, {"outcome": outcome, "target": sent.target,
                                "versions": dict(sent.versions)})


def received(report: pytest.TestReport) -> Sent | None:
    """What a worker attached to ``report``, or ``None`` when it is not a scenario's."""
    data: Any = getattr(report, ATTRIBUTE, None)
    if not isinstance(data, dict) or not isinstance(data.get("outcome"), dict):
        return None
    # Sequences may come back as lists; the outcome's are tuples.
    fields: dict[str, Any] = {name: tuple(value) if isinstance(value, list) else value
                              for name, value in data["outcome"].items()}
    return Sent(ScenarioOutcome(**fields), data.get("target"), dict(data.get("versions") or {}))


class Controller:
    """The controller's part, registered on it only (see ``conftest.pytest_sessionstart``)."""

    def __init__(self, receive: Callable[[Sent], None]) -> None:
        self._receive = receive

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> None:
        """Collect here too: xdist's controller collects nothing, so without this the target
        and the gates (``pytest_collection_finish``) would be checked only on the workers,
        where a refusal crashes the run instead of ending it with the runbook's exit code.
        xdist's own hook runs next and keeps pytest from collecting a second time."""
        session.perform_collect()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        sent = received(report)
        if sent is not None:
            self._receive(sent)
