"""The safety gates as a matrix: every target environment (production, staging, sandbox) x
the drill flag (absent, naming it, naming another environment) x the steady state (green,
red), run as a user runs it (``runbook drill``) against the real sandbox declared as each
environment. What the run did to the target is read from its own audit trail
(``reports/platform-calls.jsonl``) and drill records, and from the sandbox's process ids.

A destructive act (a fault injected, a restart) happens only when every gate holds: the
environment allows drills, the flag names it where one is needed, and the steady state is
green. Everywhere else: nothing, and the documented exit code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunningSandbox
from tests.test_cli import runbook

ENVIRONMENTS = ("production", "staging", "sandbox")
FLAGS = ("absent", "right", "wrong")
#: The quickest game day: its fault holds the worker and its remedy restarts it.
SECTION = "worker-not-processing-jobs"


def _flag(flag: str, environment: str) -> tuple[str, ...]:
    if flag == "absent":
        return ()
    other = "production" if environment != "production" else "staging"
    return ("--allow-drills", environment if flag == "right" else other)


def _gates_hold(environment: str, flag: str) -> bool:
    return environment == "sandbox" or (environment == "staging" and flag == "right")


@dataclass(frozen=True)
class Cell:
    environment: str
    flag: str
    code: int
    output: str
    destructive_calls: int
    injected: bool
    drill_records: int


def _attempt(box: RunningSandbox, directory: Path, environment: str, flag: str) -> Cell:
    directory.mkdir(parents=True)
    env = {**box.env, "RUNBOOK_HOME": str(box.home), "RUNBOOK_ENVIRONMENT": environment}
    done = runbook("drill", SECTION, "--target", "env", *_flag(flag, environment),
                   cwd=directory, env=env)
    reports = directory / "reports"
    trail = reports / "platform-calls.jsonl"
    calls = [json.loads(line) for line in trail.read_text().splitlines()] if trail.exists() else []
    records = [json.loads(p.read_text()) for p in (reports / "drills").glob("*.json")] \
        if (reports / "drills").exists() else []
    injected = any(phase["name"] == "inject" for r in records for phase in r["phases"])
    return Cell(environment, flag, done.returncode, done.stdout + done.stderr,
                sum(1 for c in calls if c["kind"] == "destructive"), injected, len(records))


def _pids(box: RunningSandbox) -> dict[str, int | None]:
    return {name: c.pid for name, c in box.sandbox.status().components.items()}


@pytest.fixture
def api_held_down(healthy_sandbox: RunningSandbox) -> Iterator[RunningSandbox]:
    """The sandbox with its API stopped and held down: the steady state is red."""
    healthy_sandbox.sandbox.stop("api")
    yield healthy_sandbox


def test_refused_cells_touch_nothing_whatever_the_steady_state(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    refused = [(e, f) for e in ENVIRONMENTS for f in FLAGS if not _gates_hold(e, f)]
    assert len(refused) == 5
    before = _pids(sandbox)
    with ThreadPoolExecutor(max_workers=3) as pool:
        cells = list(pool.map(lambda ef: _attempt(sandbox, tmp_path / f"{ef[0]}-{ef[1]}", *ef),
                              refused))
    for cell in cells:
        where = f"{cell.environment} with the flag {cell.flag}: {cell.output[-600:]}"
        assert cell.code == 3, where
        assert "refused: drills" in cell.output, where
        assert (cell.destructive_calls, cell.injected, cell.drill_records) == (0, False, 0), where
    assert _pids(sandbox) == before, "a refused drill changed the sandbox's processes"


def test_a_red_steady_state_stops_an_allowed_drill_before_anything_is_injected(
    api_held_down: RunningSandbox, tmp_path: Path
) -> None:
    allowed = [(e, f) for e in ENVIRONMENTS for f in FLAGS if _gates_hold(e, f)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        cells = list(pool.map(
            lambda ef: _attempt(api_held_down, tmp_path / f"{ef[0]}-{ef[1]}", *ef), allowed))
    for cell in cells:
        where = f"{cell.environment} with the flag {cell.flag}: {cell.output[-800:]}"
        assert cell.code == 1, where
        assert "steady state red" in cell.output, where
        assert not cell.injected and cell.destructive_calls == 0, where


@pytest.mark.parametrize(("environment", "flag"),
                         [(e, f) for e in ENVIRONMENTS for f in FLAGS if _gates_hold(e, f)])
def test_only_when_every_gate_holds_does_the_drill_act(
    healthy_sandbox: RunningSandbox, tmp_path: Path, environment: str, flag: str
) -> None:
    cell = _attempt(healthy_sandbox, tmp_path / "cell", environment, flag)
    assert cell.code == 0, cell.output[-1500:]
    assert cell.injected and cell.drill_records == 1
    assert cell.destructive_calls >= 1  # the runbook's remedy: restart the worker
