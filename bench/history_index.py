"""What a run spends on the reports' history at its limit: with the history's index, and
reading the whole history as runs did before it.

    .venv/bin/python bench/history_index.py [--entries 20000] [--runs 11] [--json]

Writes, in a temporary directory, a ``history.jsonl`` of ``--entries`` entries: runs of 38
scenarios shaped as the synthetic suite's (node ids, names, tags, figures, messages), one
after the other. Then, ``--runs`` times each, alternating, measures the CPU time (this
process) of what every run does with the history:

* with the index: ``summary.staleness`` (each scenario's last pass), ``append_history``
  (the run's 38 entries, the index brought up to date) and, for ``--workers``,
  ``parallelism.latest_durations``;
* without it: the same, with ``history.index.json`` removed before each run, so that each
  reads the whole history (staleness) and builds the index anew from it (the append): what
  a run costs the first time, or after something else changed the history. Before the
  index every run read it whole as often: parsed for staleness and for ``--workers``'
  estimate, and read once more to count its entries.

Each run appends to the history, which grows by 38 entries a run (trimmed as runs trim
it). Prints the medians with the load average; the goal: with the index, at most 5% of the
CPU time of reading the whole history (a run's cost that does not grow with the history);
exits 1 when missed, 2 when the benchmark cannot measure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import BenchError, conclude, load_1min, machine, print_table

from runbook import parallelism
from runbook.reporting import summary
from runbook.reporting.summary import HistoryIndex, ScenarioOutcome

#: The goal: a run's history work with the index at most this share of reading it whole.
GOAL_SHARE = 0.05
#: Scenarios a run records (the synthetic suite's).
SCENARIOS = 38
TARGET = "sandbox"


def outcomes(run: int) -> list[ScenarioOutcome]:
    """Run ``run``'s outcomes: one scenario in ten failing, each with a figure."""
    finished = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(minutes=run)
    return [ScenarioOutcome(
        nodeid=f"steps/test_runbook.py::test_the_check_number_{n}_of_the_synthetic_suite",
        name=f"The check number {n} of the synthetic suite answers within its threshold",
        feature="Service Health Checks", sections=("health-checks", "service-health"),
        tier="critical", outcome="failed" if (run + n) % 10 == 0 else "passed",
        duration_s=0.05 + n / 100, tags=("synthetic", "runbook:health-checks"),
        message="" if (run + n) % 10 else "api: GET /health answered 503 (expected 200)",
        finished_at=finished.isoformat(), figures={f"api check {n} ms": 12.5 + n})
        for n in range(SCENARIOS)]


def one_run(history: Path, run: int) -> float:
    """CPU seconds of what run ``run`` does with ``history``."""
    started = time.process_time()
    checked = summary.staleness(outcomes(run), history)
    summary.append_history(history, checked, run_id=f"run-{run}", target=TARGET,
                           environment=TARGET)
    latest = parallelism.latest_durations(history, TARGET)
    spent = time.process_time() - started
    if len(latest) != SCENARIOS:
        raise BenchError(f"the history's latest entries hold {len(latest)} scenarios,"
                         f" not {SCENARIOS}")
    return spent


def bench(entries: int, runs: int, directory: Path) -> dict[str, Any]:
    history = directory / "history.jsonl"
    runs_before = -(-entries // SCENARIOS)
    for run in range(runs_before):
        summary.append_history(history, outcomes(run), run_id=f"run-{run}", target=TARGET,
                               environment=TARGET)
    held = len(history.read_text(encoding="utf-8").splitlines())
    size_mb = history.stat().st_size / 1e6
    indexed: list[float] = []
    whole: list[float] = []
    load = load_1min()
    for n in range(runs):
        run = runs_before + 2 * n
        indexed.append(one_run(history, run))
        HistoryIndex.path(history).unlink()
        whole.append(one_run(history, run + 1))
    if HistoryIndex.of(history) is None:
        raise BenchError("the last run left no index of the history")
    with_index, without = statistics.median(indexed), statistics.median(whole)
    share = with_index / without
    return {"entries": held, "size_mb": round(size_mb, 1), "runs": runs,
            "with_index_ms": round(with_index * 1000, 2),
            "with_index_runs_ms": [round(s * 1000, 2) for s in indexed],
            "whole_ms": round(without * 1000, 1),
            "whole_runs_ms": [round(s * 1000, 1) for s in whole],
            "share": round(share, 4), "goal_share": GOAL_SHARE,
            "goal_met": share <= GOAL_SHARE, "load_1min": round(load, 2),
            "machine": machine()}


def report(result: dict[str, Any]) -> None:
    print(f"a run's work on the reports' history: {result['entries']:,} entries"
          f" ({result['size_mb']} MB), median of {result['runs']} runs each; now"
          f" {result['machine']}")
    print_table([
        ("with the index (staleness, append, --workers' estimate)",
         f"{result['with_index_ms']:.2f} ms", f"{result['load_1min']:.2f}"),
        ("without it (the whole history read, the index built anew)",
         f"{result['whole_ms']:.1f} ms", ""),
        ("with / without", f"{result['share'] * 100:.1f}%", ""),
    ], head=("figure", "median CPU", "load (1 min)"))
    verdict = "met" if result["goal_met"] else "MISSED"
    print(f"goal: with the index at most {result['goal_share'] * 100:g}% of reading the"
          f" whole history: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=summary.HISTORY_LIMIT,
                        help="entries in the history before the runs (default: its limit)")
    parser.add_argument("--runs", type=int, default=11, help="runs measured each way")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.entries < SCENARIOS:
        parser.error(f"--entries {args.entries}: give at least {SCENARIOS} (one run)")
    if args.runs < 1:
        parser.error(f"--runs {args.runs}: give 1 or more")

    def measure() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="runbook-bench-history-") as work:
            return bench(args.entries, args.runs, Path(work))

    return conclude(measure, report, as_json=args.json)


if __name__ == "__main__":
    raise SystemExit(main())
