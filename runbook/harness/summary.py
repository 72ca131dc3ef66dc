"""The run's end: the exit code, ``summary.json``, ``history.jsonl``, the Allure environment
and the runbook summary in the terminal. The exit code is computed here and nowhere else
(``reporting.summary.exit_code``); the ``runbook`` command reads it from ``summary.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runbook.harness import allure_labels, parallel
from runbook.harness.outcomes import UNDEFINED
from runbook.harness.state import run_state
from runbook.reporting.summary import (
    EXIT_USAGE,
    append_history,
    exit_code,
    render,
    staleness,
    write_summary,
)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = run_state(config)
    outcomes = list(state.outcomes.values())
    if not outcomes or state.run is None or parallel.is_worker(config):
        return
    if parallel.is_controller(config):  # outcomes came in as workers finished: collection order
        order = {item.nodeid: index for index, item in enumerate(session.items)}
        outcomes.sort(key=lambda o: order.get(o.nodeid, len(order)))
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        undefined = any(o.outcome == "error" and UNDEFINED in o.message for o in outcomes)
        session.exitstatus = EXIT_USAGE if undefined else exit_code(
            outcomes, environment=state.environment)
    results = getattr(config.option, "allure_report_dir", None)
    if results:
        allure_labels.write_extras(Path(results), {
            "target": state.target_name,
            **{f"{name}.version": v for name, v in state.versions.items()},
        })
    outcomes = staleness(outcomes, state.reports / "history.jsonl")
    state.outcomes = {o.nodeid: o for o in outcomes}
    run_id = os.environ.get("RUNBOOK_RUN_ID", "")
    write_summary(state.reports / "summary.json", outcomes, int(session.exitstatus),
                  state.run.name, run_id, environment=state.environment,
                  started_at=state.started_at)
    append_history(state.reports / "history.jsonl", outcomes, run_id=run_id,
                   target=state.run.name, environment=state.environment)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    state = run_state(config)
    outcomes = list(state.outcomes.values())
    if not outcomes or state.run is None or parallel.is_worker(config):
        return
    terminalreporter.write_sep("=", "runbook summary")
    for line in render(outcomes, environment=state.environment):
        terminalreporter.write_line(line)
