"""A run's start-up without the garbage collector (``runbook.startup``): off while the harness
and the steps are imported and the scenarios bound, on again once they are collected, with
what the start-up made frozen out of its passes."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook import startup
from tests.conftest import collect_shipped

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
    with open(os.environ["RUNBOOK_TEST_OUT"], "w") as out:
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
    seen = collect_shipped(tmp_path, "observe_gc", OBSERVE)
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
