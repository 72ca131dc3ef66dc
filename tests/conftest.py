"""Fixtures for the library's own tests.

``sandbox``: ONE real sandbox for the whole test session, in a temporary ``RUNBOOK_HOME``,
destroyed (processes stopped, state deleted) at the end, or stopped by its own supervisor
when this process dies without the chance to (``RUNBOOK_SANDBOX_OWNER_PID``). Tests that
disturb it (kill, stop, restart with overrides) use ``healthy_sandbox``, which brings every
component back before the next test.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from runbook import runner, shipped
from runbook.actions.users import CanaryUser, canary_user
from runbook.drills.context import context_for
from runbook.drills.faults import DrillContext
from runbook.sandbox import Sandbox, SandboxStatus
from runbook.sandbox.procs import is_alive
from runbook.sandbox.supervisor import OWNER_VARIABLE
from runbook.targets import RunSpec

# A test run started in the background (nohup, `cmd &` in a script) inherits SIGINT ignored,
# and so would every process it starts. The interrupt tests send SIGINT as a user's Ctrl-C
# does: give this process Python's own handler, which its children then start without.
signal.signal(signal.SIGINT, signal.default_int_handler)


def own_sandboxes() -> None:
    """Make this process an owner of every sandbox it starts, itself or through the commands
    it runs, beside the live owners it inherited (an xdist worker: its controller, so that
    the sandbox stops with a killed run even while the worker lingers): the sandbox's
    supervisor brings it down once one of them is gone, even killed with SIGKILL
    (``runbook.sandbox.supervisor.Owner``)."""
    inherited = [p.strip() for p in os.environ.get(OWNER_VARIABLE, "").split(",")]
    live = [p for p in inherited if p.isdigit() and is_alive(int(p))]
    os.environ[OWNER_VARIABLE] = ",".join(dict.fromkeys([*live, str(os.getpid())]))


#: The test modules that take longest on two cores (``./scripts/test --durations=60``), handed
#: out first. xdist gives a worker a whole module at a time (``--dist loadfile``): a long one
#: started last keeps one worker busy after the others have finished (about 55 s between the
#: first and the last worker to finish, measured). ``scripts/test`` passes
#: ``--no-loadscope-reorder``, else xdist hands modules out by their number of tests. The
#: rest follow in collection order; the CPU-hog game days (``cpu_hog_turn``) are apart.
LONGEST_FIRST = (
    "test_safety_matrix.py", "test_drill_interrupts.py", "test_gamedays_app_services.py",
    "test_harness.py", "test_cli_conventions.py", "test_disaster.py", "test_cli.py",
    "test_drill_records.py", "test_real_target_drills.py", "test_probes_traffic.py",
    "test_parallel.py", "test_platform_drills.py", "test_black_holes.py",
    "test_gamedays_engine.py", "test_gamedays_providers.py", "test_resident.py",
    "test_report_html.py", "test_secret_canaries.py", "test_gamedays_database.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a module's order


def pytest_configure(config: pytest.Config) -> None:
    # In the test processes only, not in a helper that imports this module (a process a
    # test kills must not take the sandbox down with it).
    own_sandboxes()


def collect_shipped(where: Path, plugin: str, source: str) -> dict[str, Any]:
    """Collect the shipped scenarios (``--collect-only``, with the runner's configuration) in
    a new pytest that loads ``source`` as the plugin module ``plugin`` (written in ``where``);
    what the plugin wrote as JSON to the file named by ``RUNBOOK_TEST_OUT``."""
    (where / f"{plugin}.py").write_text(source, encoding="utf-8")
    out = where / f"{plugin}.json"
    env = {**runner.environment("x", where), **RunSpec.sandbox(where).to_environ(),
           "PYTHONPATH": str(where), "RUNBOOK_TEST_OUT": str(out)}
    done = subprocess.run(
        [sys.executable, "-P", "-m", "pytest", str(runner.SCENARIOS), "-c",
         str(shipped.PYTEST_INI), "--rootdir", str(shipped.PACKAGE), "-o",
         f"bdd_features_base_dir={runner.features_directory()}", "--runbook-reports",
         str(where / "reports"), "-p", plugin, "-p", "no:cacheprovider", "--collect-only", "-q"],
        cwd=where, capture_output=True, text=True, timeout=120, env=env)
    assert out.exists(), done.stdout + done.stderr
    found: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return found


def write_project(where: Path) -> None:
    """A team's project on the installed package: the shipped ``pytest.ini`` (reading
    ``features/`` beside it), ``steps/test_runbook.py`` and a ``conftest.py`` registering the
    package's harness and steps; a test plants more steps in either module."""
    shutil.copy(shipped.PYTEST_INI, where / "pytest.ini")
    (where / "conftest.py").write_text('pytest_plugins = ["runbook.steps.plugin"]\n')
    (where / "steps").mkdir()
    shutil.copy(shipped.SCENARIOS, where / "steps" / "test_runbook.py")


@dataclass(frozen=True)
class RunningSandbox:
    """The session's sandbox: the library object and its status right after ``up``.

    ``env`` is read afresh on each access (a test may re-mint ``ADMIN_TOKEN``)."""

    sandbox: Sandbox
    status: SandboxStatus

    @property
    def env(self) -> Mapping[str, str]:
        return MappingProxyType(self.sandbox.env())

    @property
    def home(self) -> Path:
        return self.sandbox.home


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A running sandbox shared by the session (started once, destroyed at the end)."""
    home = tmp_path_factory.mktemp("runbook-home")
    box = Sandbox(home)
    try:
        status = box.up(timeout=90)
        yield RunningSandbox(box, status)
    finally:
        box.destroy()


@pytest.fixture
def healthy_sandbox(sandbox: RunningSandbox) -> Iterator[RunningSandbox]:
    """The session's sandbox, with every component running again after the test as
    configured (a plain restart of anything left with environment overrides or stored
    variables, which are forgotten first)."""
    yield sandbox
    box = sandbox.sandbox
    stored = box.stored_variables()
    for service, values in stored.items():
        box.unset_variables(service, list(values))
    status = box.status()
    for name, component in status.components.items():
        if component.env_overrides or name in stored:
            box.restart(name)
    box.up(timeout=60)


# -- game days (tests/test_gamedays_*.py) ---------------------------------------------------


@pytest.fixture(scope="module")
def canary(sandbox: RunningSandbox) -> Iterator[CanaryUser]:
    """A canary user for a game day's steady-state round trip, removed after the module."""
    context = context_for(RunSpec.sandbox(sandbox.home))
    with canary_user(context.target, context.timeouts) as user:
        yield user


@pytest.fixture
def cpu_hog_turn(tmp_path_factory: pytest.TempPathFactory
                 ) -> Callable[[], AbstractContextManager[None]]:
    """Held while a test makes a sandbox's API burn a core (the high-cpu fault): one such test
    at a time across the run's workers. The hog runs at the services' larger CPU share
    (``runbook.sandbox.procs.reserve_cpu_share``); two at once left the rest of the suite
    no core on a 2-core machine, and its slowed rounds kept both hogs burning longer (each
    game day over 75 s in the suite against 15 s alone)."""
    # The parent of this worker's base directory is the run's (xdist: popen-gwN's parent).
    path = tmp_path_factory.getbasetemp().parent / "runbook-cpu-hog.lock"

    @contextmanager
    def turn() -> Iterator[None]:
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
            yield

    return turn


@pytest.fixture
def context(healthy_sandbox: RunningSandbox) -> DrillContext:
    """A game day's drill context on the healthy shared sandbox."""
    return context_for(RunSpec.sandbox(healthy_sandbox.home))
