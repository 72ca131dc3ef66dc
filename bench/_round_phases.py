"""A pytest plugin for ``bench/watch_round.py --phases``: where a run's CPU goes, by pytest's
phases, appended as one JSON line to the file ``RUNBOOK_BENCH_PHASES`` names when the run
ends. Figures are this process's CPU seconds (user and system, every thread's), so a round
forked from the resident counts from its fork:

* ``collected``: from the start to the end of collection (configuration, the session's
  start, collecting and selecting the scenarios);
* ``calls``: the scenarios' own calls, summed (their steps: the probes, the evidence);
* ``setup_teardown``: their fixtures' setup and teardown, summed;
* ``total``: from the start to the end of the run (``pytest_unconfigure``);
* ``main_thread``: the part of ``total`` the main thread spent (pytest, the steps, Allure,
  the evidence); the rest went in other threads, ended by then: the probes, each run in its
  own under its deadline (``timeouts.call_with_deadline``), and the components asked ahead.
  A round forked from the resident starts its main thread's count at the fork, as its own;
* ``scenarios``: each scenario's whole protocol (setup, call, teardown, its reports), by its
  node id less the file (the first holds the run's own setup of its session fixtures);
* ``scenarios_main``: the same, the main thread's part alone;
* ``system``: the part of ``total`` spent in the kernel (a forked round's pages copied on
  first write, its sockets, its threads), and ``minor_faults``, the pages it faulted in
  without reading a file, both counted from the fork.

Passed as ``-p _round_phases`` with this directory on ``PYTHONPATH``; not shipped.
"""

from __future__ import annotations

import json
import os
import resource
from collections.abc import Generator
from typing import Any

import pytest

_FIGURES: dict[str, float] = {"collected": 0.0, "calls": 0.0, "setup_teardown": 0.0}
_SCENARIOS: dict[str, float] = {}
_SCENARIOS_MAIN: dict[str, float] = {}


def _cpu(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def pytest_collection_finish(session: pytest.Session) -> None:
    _FIGURES["collected"] = _cpu()


def _timed(key: str) -> Generator[None, Any, Any]:
    started = _cpu()
    try:
        return (yield)
    finally:
        _FIGURES[key] += _cpu() - started


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, Any, Any]:
    started, main = _cpu(), _cpu(resource.RUSAGE_THREAD)
    try:
        return (yield)
    finally:
        name = item.nodeid.split("::", 1)[-1]
        _SCENARIOS[name] = _cpu() - started
        _SCENARIOS_MAIN[name] = _cpu(resource.RUSAGE_THREAD) - main


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _timed("setup_teardown"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _timed("calls"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _timed("setup_teardown"))


def pytest_unconfigure(config: pytest.Config) -> None:
    path = os.environ.get("RUNBOOK_BENCH_PHASES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            out.write(json.dumps({**_FIGURES, "total": _cpu(),
                                  "system": usage.ru_stime,
                                  "minor_faults": usage.ru_minflt,
                                  "main_thread": _cpu(resource.RUSAGE_THREAD),
                                  "scenarios": _SCENARIOS,
                                  "scenarios_main": _SCENARIOS_MAIN}) + "\n")
