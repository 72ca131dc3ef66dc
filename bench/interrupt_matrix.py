"""The full interrupt matrix, for soak runs outside CI: every game day of the catalogue and
every DR drill x every phase x SIGINT, SIGTERM and a timeout, each cell interrupted for
real in its phase and checked as ``tests/test_drill_interrupts.py`` checks its sample
(``tests/interrupts.py``: the record, the progress file, the guard, the sandbox healthy).

    .venv/bin/python bench/interrupt_matrix.py [--engine gameday|disaster|all]
        [--drill NAME ...] [--interrupt SIGINT|SIGTERM|timeout ...] [--sample N]
        [--seed S] [--max-minutes M] [--json]

Runs against a sandbox of its own in a temporary home (destroyed afterwards): the DR drills
destroy databases and whole deployments. ``--sample N`` runs N cells drawn at random
(``--seed``), ``--max-minutes`` stops starting cells after M minutes. Prints one row per
cell (pass/fail; seconds from the interruption to the drill's end and to the sandbox confirmed
healthy, of the restore phase, and of the whole cell), then the median and maximum per
interruption.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runbook.drills.catalog import DISASTERS, GAME_DAYS
from runbook.sandbox import Sandbox
from tests.conftest import RunningSandbox
from tests.interrupts import INTERRUPTS, Cell, Checked, Runner, check_cell, matrix


def _row(checked: Checked) -> dict[str, Any]:
    cell, outcome = checked.cell, checked.outcome
    problem = str(checked.problem or "").splitlines()
    return {"cell": cell.id, "engine": cell.engine, "drill": cell.drill, "phase": cell.phase,
            "interrupt": cell.interrupt, "ok": checked.problem is None,
            "problem": problem[0][:160] if problem else ("" if checked.problem is None
                                                        else "AssertionError"),
            "ended_s": outcome.ended_after_s if outcome else None,
            "healthy_s": checked.healthy_s,
            "restore_s": outcome.restore_s() if outcome else None, "wall_s": checked.wall_s,
            "details": "\n".join(problem[1:12])}


def _cells(args: argparse.Namespace) -> list[Cell]:
    cells: list[Cell] = []
    if args.engine in ("gameday", "all"):
        cells += matrix("gameday", [d for d in GAMEDAYS if not args.drill or d in args.drill],
                        every=True)
    if args.engine in ("disaster", "all"):
        cells += matrix("disaster", [d for d in DRILLS if not args.drill or d in args.drill],
                        every=True)
    cells = [c for c in cells if c.interrupt in args.interrupt]
    if args.sample and args.sample < len(cells):
        cells = sorted(random.Random(args.seed).sample(cells, args.sample), key=cells.index)
    return cells


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _summary(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["", "interrupt   cells  failed  healthy after (s): median    max"]
    for interrupt in INTERRUPTS:
        mine = [r for r in rows if r["interrupt"] == interrupt]
        times = [r["healthy_s"] for r in mine if r["healthy_s"] is not None]
        if mine:
            lines.append(f"{interrupt:10} {len(mine):6} {sum(not r['ok'] for r in mine):7}"
                         f"  {_seconds(statistics.median(times) if times else None):>22}"
                         f" {_seconds(max(times) if times else None):>6}")
    return lines


GAMEDAYS = [d.name for d in GAME_DAYS]
DRILLS = [d.name for d in DISASTERS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("gameday", "disaster", "all"), default="all")
    parser.add_argument("--drill", action="append", default=[], help="only these drills")
    parser.add_argument("--interrupt", action="append", choices=INTERRUPTS, default=None)
    parser.add_argument("--sample", type=int, default=0, help="N cells drawn at random")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="start no cell after M minutes (0: no cap)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.interrupt = args.interrupt or list(INTERRUPTS)
    unknown = [d for d in args.drill if d not in GAMEDAYS and d not in DRILLS]
    if unknown:
        parser.error(f"unknown drill(s) {', '.join(unknown)}; known: game days"
                     f" {', '.join(GAMEDAYS)}; DR drills {', '.join(DRILLS)}")
    cells = _cells(args)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="runbook-interrupts-") as tmp:
        box = Sandbox(Path(tmp) / "home")
        try:
            running = RunningSandbox(box, box.up(timeout=120))
            runner = Runner(box.home, Path(tmp) / "work")
            try:
                if not args.json:
                    print(f"{len(cells)} cells on a sandbox of its own\n")
                    print(f"{'cell':72} {'result':6} {'ended':>6} {'healthy':>7}"
                          f" {'restore':>7} {'wall':>6}")
                for cell in cells:
                    if args.max_minutes and time.monotonic() - started > args.max_minutes * 60:
                        break
                    row = _row(check_cell(runner, cell, running))
                    rows.append(row)
                    if not args.json:
                        print(f"{cell.id:72} {'pass' if row['ok'] else 'FAIL':6}"
                              f" {_seconds(row['ended_s']):>6} {_seconds(row['healthy_s']):>7}"
                              f" {_seconds(row['restore_s']):>7} {_seconds(row['wall_s']):>6}"
                              + (f"  {row['problem']}" if row["problem"] else ""), flush=True)
                    if row["problem"]:
                        print(textwrap.indent(row["details"], "    "), flush=True)
            finally:
                runner.close()
        finally:
            box.destroy()
    wall = time.monotonic() - started
    if args.json:
        print(json.dumps({"cells": rows, "wall_s": round(wall, 1),
                          "planned": len(cells)}, indent=2))
    else:
        for line in _summary(rows):
            print(line)
        print(f"\n{len(rows)}/{len(cells)} cells run, {sum(not r['ok'] for r in rows)} failed,"
              f" in {wall / 60:.1f} min")
    return 1 if any(not r["ok"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
