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
from datetime import datetime
from pathlib import Path
from typing import Any

from runbook.drills import detection, engine, faults
from runbook.drills.catalog import DRILLS
from runbook.drills.context import context_for
from runbook.drills.faults import DrillContext, Params
from runbook.drills.guard import Guard
from runbook.drills.incidents.disaster import DrillOptions, seeded_check
from runbook.drills.record import DrillRecord, ProgressFile, write_record
from runbook.redact import Redactor
from runbook.results import Activity, utcnow
from runbook.sandbox import Sandbox
from runbook.targets import RunSpec
from tests.gamedays import narrowed

CELL_DEADLINE_S = 240.0
#: The matrix is about interruptions, not figures: one green check makes a recovery, DR
#: drills write two canaries; a game day's detection runs the one scheduled scenario its
#: fault must trip.
LIMITS = engine.Limits(detect_within_s=60, rto_s=300, rpo_s=3600, consecutive=1)
DR_OPTIONS = DrillOptions(canaries=2)


def _stated(context: DrillContext, section: str, fault_at: datetime, within_s: float
            ) -> detection.Detection:
    """Detection outside the matrix's detect cells: what is tested there is the
    interruption, not the scheduled suite (``tests/test_gamedays_*`` test that), so a
    failure naming the section is stated rather than run for."""
    now = utcnow()
    stated = detection.Failure("(interrupt matrix: detection not exercised in this phase)",
                               (), (section,), None, "", now)
    return detection.Detection(section, fault_at, within_s,
                               (detection.Round(now, now, 1, 0, (stated,), ""),))


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
    spec = RunSpec.sandbox(home)
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

    incident = DRILLS[cell["drill"]]
    if cell["engine"] == "disaster":
        incident = type(incident.__name__, (incident,), {"options": DR_OPTIONS})
    fault = incident.fault
    original = faults.REGISTRY[fault]
    if cell["phase"] == "inject":
        faults.REGISTRY[fault] = _pausing_inject(original, pause)
    ended: BaseException | None = None
    alarm = signal.getsignal(signal.SIGALRM)  # pytest-timeout's, for the test's length
    signal.setitimer(signal.ITIMER_REAL, CELL_DEADLINE_S)
    guard = Guard.arm(ledgers, spec)
    try:
        context = context_for(spec)
        engine.run(incident, context, limits=LIMITS, guard=guard, steady=seeded_check(),
                   on_record=on_record, on_phase=on_phase, evidence_dir=directory / "detect",
                   detector=(narrowed(directory / "detect", cell["drill"])
                             if cell["phase"] == "detect" else _stated)
                   if cell["engine"] == "gameday" else None)
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
