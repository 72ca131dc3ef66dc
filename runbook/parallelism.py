"""Whether ``--workers N`` pays for a run: pytest-xdist starts N more interpreters, each
importing and collecting everything, before the first scenario; the scenarios then share the
cores. On a selection whose scenarios take a few seconds in all (the synthetic suite), that
start-up costs more than the sharing saves, and N workers are slower than one process.

The estimate reads what the selected scenarios took in their latest runs on this target
(``reports/history.jsonl``; their serial time ``S``): N workers on ``C`` idle cores (the
cores less the load average of the last minute, at least one) save about
``SHARING * S * (1 - 1/min(N, C))`` and cost ``N * WORKER_START_S``: on a busy machine
there is no core to share the work with, and workers only add their start-up. Parallel only when the
saving is larger; with no history for the selection, as asked (nothing to go by), and likewise for a
selection that is not only @synthetic scenarios (the gates refuse drills and operations on
workers, as they always did).
``--workers`` with ``--always-parallel`` skips the estimate. Both constants are measured by
bench/scaling.py on a 2-core machine against the sandbox (docs/measurements.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.reporting.summary import HistoryIndex, read_history

#: What one pytest-xdist worker adds before the first scenario runs, seconds: an interpreter,
#: the imports, a collection of every feature (bench/scaling.py: 2 workers' start-up 2.70 s,
#: one process's 1.52 s).
WORKER_START_S = 0.6
#: The share of the ideal saving that sharing the scenarios actually gives: the probes wait
#: on the target, whose services (the sandbox's, on the same cores) work harder meanwhile
#: (bench/scaling.py: two workers' scenario time 0.81x one's, where 0.50x is ideal).
SHARING = 0.38

_TOKEN = re.compile(r"\(|\)|[^\s()]+")


@dataclass(frozen=True)
class Decision:
    """How many processes a run uses, and why (``reason``: one line, for the user)."""

    workers: int
    asked: int
    reason: str

    @property
    def parallel(self) -> bool:
        return self.workers > 1


def matches(expression: str, present: Callable[[str], bool]) -> bool:
    """Evaluate a pytest ``-m``/``-k`` style expression (``and``, ``or``, ``not``,
    parentheses, names) with ``present(name)`` for each name."""
    tokens = _TOKEN.findall(expression)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def either() -> bool:
        value = both()
        while peek() == "or":
            take()
            value = both() or value
        return value

    def both() -> bool:
        value = negated()
        while peek() == "and":
            take()
            value = negated() and value
        return value

    def negated() -> bool:
        if peek() == "not":
            take()
            return not negated()
        if peek() == "(":
            take()
            value = either()
            if peek() == ")":
                take()
            return value
        token = peek()
        if token is None or token == ")":
            return False
        return present(take())

    return either() if tokens else True


def latest_durations(history: Path, target: str) -> dict[str, Mapping[str, Any]]:
    """Each scenario's latest history line on ``target`` (node id to the line; from the
    history's index, its name, tags and duration, when the index is of the history as it
    is now)."""
    index = HistoryIndex.of(history)
    if index is not None:
        return dict(index.latest.get(target, {}))
    return {str(entry["nodeid"]): entry for entry in read_history(history)
            if entry.get("target") == target and "nodeid" in entry}


def _selected(nodeid: str, entry: Mapping[str, Any], marks: str, match: str | None) -> bool:
    """The scenario of this history line is what ``marks`` and ``match`` select: its tags
    for the marks, its node id and name for the words of ``match`` (as pytest's ``-k``)."""
    tags = set(entry.get("tags", ()))
    words = f"{nodeid} {entry.get('name', '')}".lower()
    return matches(marks, tags.__contains__) and (
        match is None or matches(match, lambda word: word.lower() in words))


def decide(workers: int, *, history: Path, target: str, marks: str, match: str | None,
           cores: int | None = None, load: float | None = None) -> Decision:
    """``workers`` when the selection's recorded serial time makes them pay on the idle
    cores (``cores`` less ``load``; by default this machine's and its 1-minute load
    average), else 1."""
    if workers <= 1:
        return Decision(1, workers, "one process, as asked")
    cores = cores or len(os.sched_getaffinity(0))
    load = os.getloadavg()[0] if load is None else load
    idle = max(1.0, cores - load)
    selected = [entry for nodeid, entry in latest_durations(history, target).items()
                if _selected(nodeid, entry, marks, match)]
    if not selected:
        return Decision(workers, workers, f"{workers} workers, as asked (no earlier run of"
                                          f" these scenarios on {target} to estimate from)")
    if not all("synthetic" in entry.get("tags", ()) for entry in selected):
        # drills and operations never share a run with workers: the gates refuse it, as
        # asked, rather than this estimate quietly running them in one process
        return Decision(workers, workers, f"{workers} workers, as asked (not only @synthetic"
                                          " scenarios)")
    serial_s = sum(float(entry.get("duration_s") or 0.0) for entry in selected)
    saving_s = SHARING * serial_s * (1 - 1 / min(workers, idle))
    cost_s = workers * WORKER_START_S
    figures = (f"the {len(selected)} scenarios took {serial_s:.1f} s in their latest runs on"
               f" {target}; {workers} workers on {idle:.1f} idle cores of {cores} would save about"
               f" {saving_s:.1f} s and cost about {cost_s:.1f} s to start")
    if saving_s > cost_s:
        return Decision(workers, workers, f"{workers} workers: {figures}")
    return Decision(1, workers, f"--workers {workers}: one process instead, faster here:"
                                f" {figures} (--always-parallel to insist)")
