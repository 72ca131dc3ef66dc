"""The drill runner of the interrupt matrix (``tests/interrupts.py``): a pytest process, so
that the timeout is pytest-timeout's own (``signal`` method, as ``runbook drill`` runs
scenarios), that runs one drill per command read from stdin and pauses it in the phase the
command names for the parent to interrupt it.

Protocol, one line each way (``CELL {json}`` on stdout; other lines are pytest's):

- in: a ``Cell`` as JSON; ``go`` releases a paused drill; ``quit`` ends the session;
- out: ``paused`` when the drill is in the cell's phase (for ``inject``: once the fault's
  real injection returned, before the phase ends), then ``ended``: the exception the drill
  ended with, where its record and ledgers are.

Pausing: for SIGINT/SIGTERM the drill waits for ``go`` (the parent signals first); for a
timeout pytest-timeout's timer is set to fire 20 ms later, so its own handler raises in the
phase. Each cell has pytest-timeout's timer as a deadline of ``CELL_DEADLINE_S``.

Not collected by the suite (no ``test_`` prefix); run as
``python -m pytest tests/interrupt_runner.py -s --noconftest --timeout N``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from runbook.drills import faults, gameday
from runbook.drills.catalog import GAMEDAYS
from runbook.drills.context import context_for
from runbook.drills.disaster import DRILLS, DrillOptions
from runbook.drills.faults import DrillContext, Params
from runbook.drills.guard import Guard
from runbook.drills.incidents_services import api_round_trip
from runbook.drills.record import DrillRecord, ProgressFile, write_record
from runbook.redact import Redactor
from runbook.results import Activity
from runbook.sandbox import Sandbox

CELL_DEADLINE_S = 240.0
#: The matrix is about interruptions, not figures: one green check makes a recovery, DR
#: drills write two canaries and take the runbook's restart after 1 s without the
#: platform's own (the sandbox backs off up to 5 s when the API keeps crashing).
CONSECUTIVE = 1
DR_OPTIONS: dict[str, Any] = {"canaries": 2, "consecutive": CONSECUTIVE,
                              "auto_restart_grace_s": 1.0}


def _say(event: str, **fields: Any) -> None:
    print("CELL " + json.dumps({"event": event, **fields}), flush=True)


def _pause(interrupt: str, phase: str) -> None:
    """The drill is in its phase: let the interruption land here."""
    _say("paused", phase=phase)
    if interrupt == "timeout":
        # pytest-timeout's deadline, now: its handler raises in here (both clocks are wall
        # clocks, so the alarm comes first), unless held (then the drill carries on)
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        time.sleep(0.2)
        return
    while sys.stdin.readline().strip() not in ("go", ""):  # the signal comes before "go"
        pass


def _pausing_inject(spec: faults.FaultSpec, pause: Callable[[], None]) -> faults.FaultSpec:
    def inject(context: DrillContext, params: Params) -> Activity:
        activity = spec.inject(context, params)
        pause()
        return activity

    return replace(spec, inject=inject)


def run_cell(cell: dict[str, str], home: Path, work: Path) -> dict[str, Any]:
    """Run ``cell``'s drill, paused in its phase; what it ended with and where it wrote."""
    directory = work / cell["id"]
    records, ledgers = directory / "drills", directory / "guards"
    spec = {"name": "sandbox", "config_file": None, "home": str(home)}
    redact = Redactor([s for s in Sandbox(home).secrets().values() if len(s) >= 8])
    progress = ProgressFile(records, cell["drill"])
    paused: list[str] = []

    def pause() -> None:
        paused.append(cell["phase"])
        _pause(cell["interrupt"], cell["phase"])

    def on_phase(name: str) -> None:
        progress(name)
        if name == cell["phase"] and name != "inject":
            pause()

    def on_record(record: DrillRecord) -> None:
        write_record(record, records, redact)

    engine = cell["engine"]
    fault = GAMEDAYS[cell["drill"]].fault if engine == "gameday" else DRILLS[cell["drill"]].fault
    original = faults.REGISTRY[fault]
    if cell["phase"] == "inject":
        faults.REGISTRY[fault] = _pausing_inject(original, pause)
    ended: BaseException | None = None
    alarm = signal.getsignal(signal.SIGALRM)  # pytest-timeout's, for the test's length
    signal.setitimer(signal.ITIMER_REAL, CELL_DEADLINE_S)
    guard = Guard.arm(ledgers, spec)
    try:
        context = context_for(spec)
        if engine == "gameday":
            gameday.run(GAMEDAYS[cell["drill"]], context, steady=api_round_trip, guard=guard,
                        on_record=on_record, on_phase=on_phase, consecutive=CONSECUTIVE)
        else:
            drill = DRILLS[cell["drill"]]
            drill.run(context, guard=guard, on_record=on_record, on_phase=on_phase,
                      options=DrillOptions(recover_within_s=drill.recover_within_s,
                                           **DR_OPTIONS))
    except BaseException as exc:  # the interruption, after the drill restored
        ended = exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faults.REGISTRY[fault] = original
        guard.disarm()
    return {"ended": type(ended).__name__ if ended else "", "message": str(ended or ""),
            "paused": bool(paused), "directory": str(directory),
            "alarm_handler": getattr(alarm, "__module__", str(alarm))}


def test_cells() -> None:
    home, work = Path(os.environ["RUNBOOK_HOME"]), Path(os.environ["INTERRUPT_WORK"])
    _say("ready")
    while True:
        line = sys.stdin.readline()
        if not line or line.strip() == "quit":
            return
        if line.startswith("{"):
            _say("ended", **run_cell(json.loads(line), home, work))
