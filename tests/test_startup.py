"""A run's start-up without the garbage collector (``runbook.startup``): off while the harness
and the steps are imported and the scenarios bound, on again once they are collected, with
what the start-up made frozen out of its passes."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook import runner, shipped, startup
from runbook.targets import RunSpec

#: Loaded into the collecting pytest: the collector's state as the harness configures, and
#: as the session ends.
OBSERVE = '''
import gc, json, os

seen = {}


def pytest_configure(config):
    seen["configure"] = gc.isenabled()


def pytest_sessionfinish(session):
    seen["finish"] = gc.isenabled()
    seen["frozen"] = gc.get_freeze_count()
    with open(os.environ["GC_OUT"], "w") as out:
        json.dump(seen, out)
'''


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector as this test process had it, afterwards."""
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_a_run_collects_with_the_collector_off_and_runs_with_it_on(tmp_path: Path) -> None:
    (tmp_path / "observe_gc.py").write_text(OBSERVE, encoding="utf-8")
    out = tmp_path / "gc.json"
    env = {**runner.environment("x", tmp_path), **RunSpec.sandbox(tmp_path).to_environ(),
           "PYTHONPATH": str(tmp_path), "GC_OUT": str(out)}
    done = subprocess.run(
        [sys.executable, "-P", "-m", "pytest", str(runner.SCENARIOS), "-c",
         str(shipped.PYTEST_INI), "--rootdir", str(shipped.PACKAGE), "-o",
         f"bdd_features_base_dir={runner.features_directory()}", "--runbook-reports",
         str(tmp_path / "reports"), "-p", "observe_gc", "-p", "no:cacheprovider",
         "--collect-only", "-q"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert out.exists(), done.stdout + done.stderr
    seen = json.loads(out.read_text(encoding="utf-8"))
    # Configured after the steps plugin paused it; on again once collected, with the
    # start-up's objects frozen (tens of thousands).
    assert seen["configure"] is False, seen
    assert seen["finish"] is True, seen
    assert seen["frozen"] > 10_000, seen


def test_settle_turns_on_only_what_pause_turned_off(collector: None) -> None:
    gc.disable()
    startup.pause()
    startup.settle()
    assert not gc.isenabled(), "settle turned on a collector that was off before the pause"
    gc.enable()
    startup.pause()
    assert not gc.isenabled()
    startup.settle()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
