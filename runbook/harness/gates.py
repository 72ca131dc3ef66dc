"""The run's target, taken once, and the safety gates, checked before any scenario runs.

The ``runbook`` command hands the run its target chosen and validated (``RunSpec`` in
``RUNBOOK_RUN``); a bare ``pytest`` run chooses it here from its own options, through the
same ``RunSpec.choose``. A misconfigured target exits 2 and a refused scenario exits 3,
before any scenario runs, not half-way through.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runbook.config import setting_secrets
from runbook.errors import ConfigError, RunbookError
from runbook.harness import parallel, scenarios
from runbook.harness.state import RunState, run_state
from runbook.redact import redact_log_records
from runbook.reporting.summary import EXIT_USAGE
from runbook.safety import KINDS, check_gate
from runbook.targets import RUN_VARIABLE, RunSpec

#: The options a bare pytest run chooses its target by (the command's run has it resolved).
TARGET_OPTIONS = ("--target", "--runbook-config", "--allow-drills", "--allow-operations")


def home() -> Path:
    """The sandbox's state directory (``RUNBOOK_HOME``, default ``.runbook``)."""
    return Path(os.environ.get("RUNBOOK_HOME", ".runbook")).resolve()


def _spec(config: pytest.Config) -> RunSpec:
    """The run's target: as the ``runbook`` command resolved it, else chosen from this run's
    options."""
    given = RunSpec.from_environ()
    if given is not None:
        stray = [o for o in TARGET_OPTIONS if config.getoption(o) is not None]
        if stray:
            raise ConfigError(f"{', '.join(stray)} given to a run whose target is resolved"
                              f" already ({RUN_VARIABLE}); pass them to the runbook command")
        return given
    config_file = config.getoption("--runbook-config")
    return RunSpec.choose(config.getoption("--target"), home=home(), config_file=config_file,
                          allow_drills=config.getoption("--allow-drills"),
                          allow_operations=config.getoption("--allow-operations"))


def _check_gates(state: RunState, run: RunSpec, items: list[pytest.Item]) -> None:
    for item in items:
        for kind in KINDS:
            if item.get_closest_marker(kind) is None:
                continue
            try:
                check_gate(kind, run.environment, target_name=run.name,
                           allow_drills=run.allow_drills, allow_operations=run.allow_operations,
                           read_only=item.get_closest_marker("read-only") is not None)
            except RunbookError as exc:
                pytest.exit(f"{exc} [{item.name}]", returncode=exc.exit_code)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under pytest-xdist the controller checks the target and the gates on its own
    collection and gathers the outcomes its workers send (see harness/parallel.py)."""
    config = session.config
    if not parallel.is_controller(config):
        return
    state = run_state(config)

    def received(sent: parallel.Sent) -> None:
        state.outcomes[sent.outcome.nodeid] = sent.outcome
        if sent.target:
            state.target_described = sent.target
        state.versions.update(sent.versions)

    config.pluginmanager.register(parallel.Controller(received), "runbook-parallel")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Take the run's target, then apply the safety gates to every collected scenario."""
    config = session.config
    items = [item for item in session.items if scenarios.is_scenario(item)]
    if not items:
        return
    state = run_state(config)
    state.redactor.add(setting_secrets(os.environ))
    try:
        run = _spec(config)
    except ConfigError as exc:
        if parallel.is_worker(config):
            return  # the xdist controller said so, once, and hands out no scenario
        pytest.exit(f"configuration error: {exc}", returncode=exc.exit_code)
    if run.kind != "sandbox":
        # Known now, so redaction holds from the first line the run prints.
        state.redactor.add(run.target().secret_values())
    state.run = run
    # Log records too, whoever writes them (captured, live, --log-file): client libraries
    # log credentials at DEBUG, botocore its Authorization header.
    config.add_cleanup(redact_log_records(state.redactor))
    if parallel.is_worker(config):
        return  # the controller checked the gates on its own collection (harness/parallel.py)
    _check_gates(state, run, items)
    # Only a drill the gates allow gets this far; it still never shares the target.
    if parallel.is_controller(config):
        changing = next((item for item in items if item.get_closest_marker("drill")
                         or item.get_closest_marker("operation")), None)
        if changing is not None:
            pytest.exit(f"drills and operations never run in parallel: each changes the target"
                        f" (a fault, a restart) the other scenarios would be checking; run them"
                        f" without --workers (pytest -n) [{changing.name}]",
                        returncode=EXIT_USAGE)
