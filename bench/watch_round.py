"""A ``runbook watch`` round (after the first) against the raw floor of the same scenarios,
in wall and CPU time, with the resident pytest and without it.

    .venv/bin/python bench/watch_round.py [--rounds 5] [--history 20000] [--phases] [--json]

Starts a fresh sandbox in a temporary RUNBOOK_HOME (destroyed afterwards), then measures:

* floor: ``synthetic_floor.FLOOR`` in this process, ``--rounds`` times after a warm-up: the
  protocol calls of every scenario a round runs, made plainly, and what a round does once
  as a run does (``synthetic_floor.run_floor``): each component asked once, one canary user
  made (a bcrypt hash of cost 12) and removed at the end; its wall time and this process's
  CPU time (user and system) over them. The rounds run the synthetic scenarios
  ``FLOOR`` mirrors (``-k``); one it does not mirror stops the benchmark;
* watch (resident, the default) and watch ``--no-resident`` (a new pytest process every
  round): ``runbook watch --interval 0 --json`` for 1 + ``--rounds`` rounds each, the first
  round left out (the resident starts there). Before each, the reports' history is seeded
  with ``--history`` entries (the scenarios' own, from a one-round watch, over and over): a
  watch that has run for a day keeps it at its limit, ``HISTORY_LIMIT``, the default; 0
  starts from an empty reports directory. A round's wall time is one start to the next
  (the last: its own elapsed time), so the watch's work between rounds counts; its CPU time
  is the round's own figure, ``cpu_s`` of its JSON line (user and system of its pytest
  process, forked by the resident or not, and of the watch's work for it). The rounds'
  figures together must stay under the whole watch's CPU as this process reaps it (the
  watch, its resident and their rounds), or the benchmark cannot measure.

With ``--phases``, one more resident watch as long, with a plugin timing pytest's phases
(``_round_phases.py``, through ``PYTEST_ADDOPTS``; its figures are not the judged ones):
the median round's CPU split into its start to the end of collection, the scenarios' own
calls (against the floor: what the round would cost with no pytest around them), their
setup and teardown, and the rest (reports, Allure's results, the session's end); the same
CPU split by thread, the main thread's (pytest, the steps, Allure, the evidence) and the
others' (the probes, each run in its own thread under its deadline, and the components asked
ahead; against the floor: the protocol calls as the round makes them); each scenario's
CPU (its whole protocol) over the floor's CPU for its calls, the median of the rounds: the
quartiles, the most (the first scenario also sets the run up) and the sum; and each
scenario's main-thread CPU alone (what pytest, the steps, Allure and the evidence cost it,
apart from its probes), the median of the rounds: the quartiles and the sum; and the
round's system CPU and minor page faults from its fork, against the floor's system CPU, with
the round's user CPU alone over the floor's whole (what a round would cost with its kernel
work, the fork's copied pages among it, gone).

Every round must pass. Prints the figures with the
load average and the ratios round / floor against the goal of 1.5x in wall and in CPU time;
exits 1 when the resident's round misses either, 2 when the benchmark cannot measure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (
    CHECK_TIMEOUT_S,
    BenchError,
    check_env,
    conclude,
    fresh_sandbox,
    load_1min,
    machine,
    print_table,
    runbook_command,
)
from synthetic_floor import FLOOR, Floor, run_floor

from runbook.reporting.summary import HISTORY_LIMIT
from runbook.sandbox import Sandbox

#: The goal: a round after the first within this many times the floor, wall and CPU.
GOAL_RATIO = 1.5


def watch(home: Path, workdir: Path, rounds: int, *options: str,
          history: list[str] | None = None, env: dict[str, str] | None = None
          ) -> dict[str, Any]:
    """Run ``runbook watch --rounds ROUNDS --interval 0 --json OPTIONS`` in ``workdir``,
    its reports directory new but for ``history`` (the lines of its ``history.jsonl``):
    its rounds' documents, the wall seconds of each (start to next start; the last, its
    own), its CPU seconds (itself and what it waited for), the load before it and the
    lines of the history it left."""
    reports = workdir / "reports"
    shutil.rmtree(reports, ignore_errors=True)
    if history:
        reports.mkdir()
        (reports / "history.jsonl").write_text("".join(history), encoding="utf-8")
    (home / "watch-state.json").unlink(missing_ok=True)
    command = [*runbook_command(), "watch", "--rounds", str(rounds), "--interval", "0",
               "--json", "--reports", str(reports), *options]
    load = load_1min()
    process = subprocess.Popen(command, cwd=workdir, env={**check_env(home), **(env or {})},
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, errors="replace")
    try:
        out, err = process.communicate(timeout=CHECK_TIMEOUT_S * rounds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise BenchError(f"runbook watch {' '.join(options)} took over"
                         f" {CHECK_TIMEOUT_S * rounds:g} s") from None
    # communicate() reaped it: its rusage is in this process's RUSAGE_CHILDREN, which the
    # caller reads before and after.
    documents = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    failed = [d for d in documents if d.get("exit_code") != 0 or d.get("failing")]
    if process.returncode != 0 or len(documents) != rounds or failed:
        tail = "\n".join((out + err).strip().splitlines()[-15:])
        raise BenchError(f"runbook watch {' '.join(options)} exited {process.returncode}"
                         f" with {len(documents)} of {rounds} rounds ({len(failed)} failing):"
                         f"\n{tail}")
    summary = json.loads((reports / "summary.json").read_text(encoding="utf-8"))
    ran = sorted(str(s["nodeid"]).split("::", 1)[-1] for s in summary["scenarios"])
    if missing := [name for name in ran if name not in FLOOR]:
        raise BenchError(f"the floor does not mirror {missing}: add them to FLOOR")
    starts = [datetime.fromisoformat(d["started_at"]) for d in documents]
    walls = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    walls.append(float(documents[-1]["elapsed_s"]))
    return {"documents": documents, "walls": walls, "load": load, "ran": ran,
            "history": (reports / "history.jsonl").read_text(
                encoding="utf-8").splitlines(keepends=True)}


def cpu_of_children() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def measured_watch(home: Path, workdir: Path, rounds: int, *options: str,
                   history: list[str]) -> dict[str, Any]:
    """A round after the first of ``runbook watch OPTIONS`` (the reports' history seeded
    with ``history``): median wall and CPU seconds of rounds 2..N (each round's own
    ``cpu_s``)."""
    before = cpu_of_children()
    long = watch(home, workdir, rounds + 1, *options, history=history)
    whole = cpu_of_children() - before
    figures = [float(d["cpu_s"]) for d in long["documents"]]
    if sum(figures) > whole:
        raise BenchError(f"runbook watch {' '.join(options)}: its rounds' CPU figures add up"
                         f" to {sum(figures):.2f} s, more than the {whole:.2f} s it took")
    walls, cpus = long["walls"][1:], figures[1:]
    return {
        "wall_s": round(statistics.median(walls), 3),
        "wall_runs_s": [round(w, 3) for w in walls],
        "first_round_wall_s": round(long["walls"][0], 3),
        "cpu_s": round(statistics.median(cpus), 3),
        "cpu_runs_s": [round(c, 3) for c in cpus],
        "first_round_cpu_s": round(figures[0], 3),
        "cpu_watch_s": round(whole, 3),
        "ran": long["ran"],
        "load_1min": round(long["load"], 2),
    }


def measured_floor(box: Sandbox, rounds: int, scenarios: list[str]) -> dict[str, Any]:
    """The floor of ``scenarios`` (``FLOOR`` keys): median wall seconds and median CPU
    seconds over ``rounds`` runs after a warm-up."""
    floor = Floor(box.env(), box.home)
    walls: list[float] = []
    cpus: list[float] = []
    systems: list[float] = []
    each: dict[str, list[float]] = {name: [] for name in scenarios}
    load = load_1min()
    try:
        for run in range(rounds + 1):
            cpu, started = time.process_time(), time.monotonic()
            system = resource.getrusage(resource.RUSAGE_SELF).ru_stime
            # What a round (a run) does once, the floor does once per round too: each
            # component asked, a canary user made (bcrypt, cost 12) and removed.
            seconds = run_floor(floor, scenarios, clock=time.process_time)
            if run:
                walls.append(time.monotonic() - started)
                cpus.append(time.process_time() - cpu)
                systems.append(resource.getrusage(resource.RUSAGE_SELF).ru_stime - system)
                for name, cpu_s in seconds.items():
                    each[name].append(cpu_s)
    finally:
        floor.close()
    return {"wall_s": round(statistics.median(walls), 3), "wall_runs_s": [round(w, 3)
                                                                          for w in walls],
            "cpu_s": round(statistics.median(cpus), 3), "load_1min": round(load, 2),
            "system_s": round(statistics.median(systems), 3),
            "scenario_cpu_s": {name: statistics.median(runs) for name, runs in each.items()}}


def measured_phases(home: Path, workdir: Path, rounds: int, *options: str,
                    history: list[str]) -> dict[str, Any]:
    """The median round after the first of a resident watch whose pytest runs time their
    phases (``_round_phases.py``): CPU seconds to the end of collection, in the scenarios'
    calls, in their setup and teardown, and the rest; in its main thread and in the others;
    and each scenario's CPU seconds (its whole protocol), the median of the rounds after the
    first."""
    bench_dir = str(Path(__file__).resolve().parent)
    figures = workdir / "phases.jsonl"
    figures.unlink(missing_ok=True)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [bench_dir,
                                                       os.environ.get("PYTHONPATH")])),
           "PYTEST_ADDOPTS": " ".join(filter(None, [os.environ.get("PYTEST_ADDOPTS"),
                                                    "-p _round_phases"])),
           "RUNBOOK_BENCH_PHASES": str(figures)}
    watch(home, workdir, rounds + 1, *options, history=history, env=env)
    runs = [json.loads(line) for line in figures.read_text(encoding="utf-8").splitlines()]
    if len(runs) != rounds + 1:
        raise BenchError(f"--phases: {len(runs)} rounds timed their phases, not {rounds + 1}")
    runs = sorted(runs[1:], key=lambda run: float(run["total"]))
    median = runs[len(runs) // 2]
    parts: dict[str, Any] = {key: round(float(median[key]), 3) for key in (
        "collected", "calls", "setup_teardown", "total", "main_thread", "system")}
    parts["minor_faults"] = int(median["minor_faults"])
    parts["other_threads"] = round(parts["total"] - parts["main_thread"], 3)
    parts["rest"] = round(parts["total"] - parts["collected"] - parts["calls"]
                          - parts["setup_teardown"], 3)
    parts["scenario_cpu_s"] = {name: statistics.median(float(run["scenarios"][name])
                                                       for run in runs)
                               for name in median["scenarios"]}
    # The main thread's share of each scenario: what pytest, the steps, Allure and the
    # evidence cost it, whatever it probes (the median of the rounds, then the quartiles).
    main_ms = [1000 * statistics.median(float(run["scenarios_main"][name]) for run in runs)
               for name in median["scenarios_main"]]
    if len(main_ms) < 2:
        raise BenchError("--phases: fewer than two scenarios timed their main thread")
    parts["scenario_main_ms"] = [round(q, 1) for q in statistics.quantiles(main_ms, n=4)]
    parts["scenario_main_sum"] = round(sum(main_ms) / 1000, 3)
    return parts


def over_floor(round_s: dict[str, float], floor_s: dict[str, float]) -> dict[str, Any]:
    """Each scenario's CPU in a round over its floor's, in ms: the quartiles, the most (the
    first scenario also sets the run up) and the sum over the scenarios."""
    gaps = sorted((1000 * (round_s[name] - floor_s[name]), name)
                  for name in round_s if name in floor_s)
    if len(gaps) < 2:
        raise BenchError("--phases: fewer than two scenarios of the rounds are in the floor")
    quartiles = statistics.quantiles([gap for gap, _ in gaps], n=4)
    return {"quartiles_ms": [round(q, 1) for q in quartiles], "most_ms": round(gaps[-1][0], 1),
            "most": gaps[-1][1], "sum_ms": round(sum(gap for gap, _ in gaps), 1),
            "scenarios": len(gaps)}


def bench(box: Sandbox, rounds: int, workdir: Path, history: int, phases: bool = False
          ) -> dict[str, Any]:
    # The synthetic scenarios the floor mirrors (a scenario it does not is left out of the
    # rounds, and named).
    mirrored = "-k", " or ".join(sorted({name.split("[", 1)[0] for name in FLOOR}))
    seed: list[str] = []
    if history:
        entries = watch(box.home, workdir, 1, *mirrored)["history"]
        seed = list(itertools.islice(itertools.cycle(entries), history))
    resident = measured_watch(box.home, workdir, rounds, *mirrored, history=seed)
    plain = measured_watch(box.home, workdir, rounds, "--no-resident", *mirrored,
                           history=seed)
    if resident["ran"] != plain["ran"]:
        raise BenchError("the watch ran other scenarios with --no-resident")
    floor = measured_floor(box, rounds, resident["ran"])
    split = None
    if phases:
        split = measured_phases(box.home, workdir, rounds, *mirrored, history=seed)
        split["calls_per_floor"] = round(split["calls"] / floor["cpu_s"], 2)
        split["threads_per_floor"] = round(split["other_threads"] / floor["cpu_s"], 2)
        split["user_per_floor"] = round((split["total"] - split["system"]) / floor["cpu_s"], 2)
        split["over_floor"] = over_floor(split.pop("scenario_cpu_s"),
                                         floor["scenario_cpu_s"])
    floor.pop("scenario_cpu_s")
    ratios = {which: {"wall": round(result["wall_s"] / floor["wall_s"], 2),
                      "cpu": round(result["cpu_s"] / floor["cpu_s"], 2)}
              for which, result in (("resident", resident), ("plain", plain))}
    return {
        "rounds": rounds,
        "scenarios": len(resident["ran"]),
        "history": history,
        "floor_not_run": sorted(set(FLOOR) - set(resident["ran"])),
        "cpus": os.cpu_count(),
        "floor": floor,
        "resident": resident,
        "plain": plain,
        "ratios": ratios,
        "goal_ratio": GOAL_RATIO,
        "goal_met": max(ratios["resident"].values()) <= GOAL_RATIO,
        "phases": split,
        "machine": machine(),
    }


def report(result: dict[str, Any]) -> None:
    print(f"runbook watch round vs raw floor: {result['scenarios']} scenarios a round,"
          f" {result['rounds']} rounds after the first, {result['history']:,} entries in the"
          f" reports' history before; now {result['machine']}")
    if result["floor_not_run"]:
        print(f"  (in FLOOR but not a synthetic scenario now: {result['floor_not_run']})")
    floor, resident, plain = result["floor"], result["resident"], result["plain"]
    ratios = result["ratios"]
    print_table([
        ("raw floor (the same protocol calls), wall", f"{floor['wall_s']:.3f} s",
         f"{floor['load_1min']:.2f}"),
        ("raw floor, CPU (this process)", f"{floor['cpu_s']:.3f} s", ""),
        ("watch round, resident, wall", f"{resident['wall_s']:.3f} s",
         f"{resident['load_1min']:.2f}"),
        ("watch round, resident, CPU", f"{resident['cpu_s']:.3f} s", ""),
        ("watch round, --no-resident, wall", f"{plain['wall_s']:.3f} s",
         f"{plain['load_1min']:.2f}"),
        ("watch round, --no-resident, CPU", f"{plain['cpu_s']:.3f} s", ""),
        ("resident round / floor (wall, CPU)",
         f"{ratios['resident']['wall']:.2f}x {ratios['resident']['cpu']:.2f}x", ""),
        ("--no-resident round / floor (wall, CPU)",
         f"{ratios['plain']['wall']:.2f}x {ratios['plain']['cpu']:.2f}x", ""),
    ])
    print("rounds after the first, wall s: resident "
          + " ".join(f"{w:.2f}" for w in resident["wall_runs_s"]) + "; --no-resident "
          + " ".join(f"{w:.2f}" for w in plain["wall_runs_s"]))
    print("rounds after the first, CPU s: resident "
          + " ".join(f"{c:.2f}" for c in resident["cpu_runs_s"]) + "; --no-resident "
          + " ".join(f"{c:.2f}" for c in plain["cpu_runs_s"])
          + f" (whole watches: {resident['cpu_watch_s']:.2f} s and {plain['cpu_watch_s']:.2f} s)")
    if (split := result.get("phases")) is not None:
        print(f"a resident round's CPU by pytest's phases (--phases, its median round of"
              f" {split['total']:.2f} s): to the end of collection {split['collected']:.3f} s;"
              f" the scenarios' calls {split['calls']:.3f} s ({split['calls_per_floor']:.2f}x"
              f" the floor); their setup and teardown {split['setup_teardown']:.3f} s; the"
              f" rest {split['rest']:.3f} s")
        print(f"the same round by thread: the main thread (pytest, the steps, Allure, the"
              f" evidence) {split['main_thread']:.3f} s; the others (the probes, each in its"
              f" own under its deadline, and the components asked ahead)"
              f" {split['other_threads']:.3f} s ({split['threads_per_floor']:.2f}x the floor)")
        print(f"the same round in the kernel: {split['system']:.3f} s of system CPU (the"
              f" floor's: {floor['system_s']:.3f} s), {split['minor_faults']:,} minor page"
              f" faults from its fork; its user CPU alone {split['user_per_floor']:.2f}x the"
              f" floor's whole CPU")
        q1, median, q3 = split["scenario_main_ms"]
        print(f"a scenario's main thread in that round (setup, call, teardown and reports, not"
              f" its probes): quartiles {q1:.1f}, {median:.1f}, {q3:.1f} ms;"
              f" {split['scenario_main_sum']:.3f} s in all")
        gap = split["over_floor"]
        q1, median, q3 = gap["quartiles_ms"]
        print(f"a scenario's CPU in that round over its floor's (setup, call, teardown and"
              f" reports; {gap['scenarios']} scenarios, median of the rounds): quartiles"
              f" {q1:.1f}, {median:.1f}, {q3:.1f} ms; most {gap['most_ms']:.1f} ms"
              f" ({gap['most']}); {gap['sum_ms'] / 1000:.3f} s in all")
    verdict = "met" if result["goal_met"] else "MISSED"
    print(f"goal: a round after the first within {result['goal_ratio']:g}x the raw floor,"
          f" wall and CPU: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5,
                        help="measured rounds after the first (and floor runs)")
    parser.add_argument("--history", type=int, default=HISTORY_LIMIT,
                        help="entries in the reports' history before each watch (default:"
                             " its limit, as a watch's after a day; 0: a new reports"
                             " directory)")
    parser.add_argument("--phases", action="store_true",
                        help="one more resident watch, its rounds' CPU split by pytest's"
                             " phases and by thread, and by scenario over the floor (not"
                             " judged)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.history < 0:
        parser.error(f"--history {args.history}: give a number of entries, 0 or more")

    def measure() -> dict[str, Any]:
        with fresh_sandbox() as box, tempfile.TemporaryDirectory(
                prefix="runbook-bench-") as work:
            return bench(box, max(2, args.rounds), Path(work), args.history, args.phases)

    return conclude(measure, report, as_json=args.json)


if __name__ == "__main__":
    raise SystemExit(main())
