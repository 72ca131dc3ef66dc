"""``--workers N`` only where it pays: the estimate from the selected scenarios' latest runs
(runbook.parallelism), and the command line's choice on a real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runbook.parallelism import SHARING, WORKER_START_S, decide, matches
from runbook.runner import SYNTHETIC


@pytest.mark.parametrize(("expression", "tags", "expected"), [
    ("synthetic", {"synthetic"}, True),
    ("synthetic", {"operation"}, False),
    (SYNTHETIC, {"synthetic"}, True),
    (SYNTHETIC, {"synthetic", "daily"}, False),
    ("(synthetic or manual) and weekly", {"manual", "weekly"}, True),
    ("(synthetic or manual) and weekly", {"manual", "daily"}, False),
    ("not not operation", {"operation"}, True),
    ("a and b or c", {"c"}, True),
    ("a and (b or c)", {"c"}, False),
])
def test_a_mark_expression_selects_as_pytest_does(expression: str, tags: set[str],
                                                  expected: bool) -> None:
    assert matches(expression, tags.__contains__) is expected


def _history(path: Path, durations: dict[str, float], *, target: str = "sandbox",
             tags: tuple[str, ...] = ("synthetic",)) -> Path:
    lines = [json.dumps({"nodeid": f"steps/test_runbook.py::test_{name}", "name": name,
                         "target": target, "tags": list(tags), "duration_s": seconds})
             for name, seconds in durations.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_short_selection_runs_in_one_process_and_says_why(tmp_path: Path) -> None:
    history = _history(tmp_path / "history.jsonl", {f"s{i}": 0.1 for i in range(40)})
    decision = decide(2, history=history, target="sandbox", marks=SYNTHETIC, match=None,
                      cores=2, load=0.0)
    assert decision.workers == 1 and not decision.parallel
    assert "the 40 scenarios took 4.0 s" in decision.reason
    assert f"cost about {2 * WORKER_START_S:.1f} s" in decision.reason
    assert "--always-parallel" in decision.reason


def test_a_long_selection_runs_on_the_workers_asked_for(tmp_path: Path) -> None:
    history = _history(tmp_path / "history.jsonl", {f"s{i}": 2.0 for i in range(40)})
    decision = decide(2, history=history, target="sandbox", marks=SYNTHETIC, match=None,
                      cores=2, load=0.0)
    assert decision.workers == 2
    assert f"would save about {SHARING * 40:.1f} s" in decision.reason
    # on one core, or two busy ones, workers share nothing: never worth starting
    assert decide(2, history=history, target="sandbox", marks=SYNTHETIC, match=None,
                  cores=1, load=0.0).workers == 1
    busy = decide(2, history=history, target="sandbox", marks=SYNTHETIC, match=None,
                  cores=2, load=1.5)
    assert busy.workers == 1 and "on 1.0 idle cores of 2" in busy.reason


def test_only_this_targets_selected_scenarios_count(tmp_path: Path) -> None:
    history = _history(tmp_path / "history.jsonl", {f"s{i}": 2.0 for i in range(40)},
                       target="staging")
    unknown = decide(2, history=history, target="sandbox", marks=SYNTHETIC, match=None,
                     cores=2, load=0.0)
    assert unknown.workers == 2 and "no earlier run" in unknown.reason
    assert decide(2, history=history, target="staging", marks="operation", match=None,
                  cores=2, load=0.0).workers == 2  # nothing selected: as asked
    few = decide(2, history=history, target="staging", marks=SYNTHETIC, match="s1",
                 cores=2, load=0.0)  # -k s1: s1 and s10-s19, 22 s
    assert "the 11 scenarios took 22.0 s" in few.reason
    assert decide(2, history=tmp_path / "absent.jsonl", target="sandbox", marks=SYNTHETIC,
                  match=None).workers == 2


def test_drills_and_operations_are_left_to_the_gates(tmp_path: Path) -> None:
    history = _history(tmp_path / "history.jsonl", {"restart": 0.1}, tags=("operation",))
    decision = decide(2, history=history, target="sandbox", marks="operation", match=None,
                      cores=2, load=0.0)
    assert decision.workers == 2 and "not only @synthetic" in decision.reason
