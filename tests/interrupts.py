"""The interrupt matrix: a drill interrupted in each of its phases by SIGINT, SIGTERM or a
timeout, for real, then checked: the drill ended with the interruption's exception after
restoring, its record written (aborted, or with the interruption noted as held while it
restored), its progress file kept next to it, nothing left for the guard, and the sandbox
healthy (``assert_healthy``: every component running as configured, no holder, no backlog).

Each cell runs in the drill runner (``tests/interrupt_runner.py``), one pytest process for
many cells, so the timeout is pytest-timeout's own and a signal is a real signal to a real
process, as with ``runbook drill``. Shared by ``tests/test_drill_interrupts.py`` (the cheap
drills, in CI) and ``bench/interrupt_matrix.py`` (every drill, for soak runs).
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from runbook.drills.context import context_for
from runbook.drills.faults import DrillContext
from runbook.drills.record import read_progress
from runbook.sandbox import Sandbox
from runbook.targets import RunSpec
from tests.conftest import RunningSandbox
from tests.gamedays import OUTCOMES, assert_healthy

PROJECT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("interrupt_runner.py")

Engine = Literal["gameday", "disaster"]
INTERRUPTS = ("SIGINT", "SIGTERM", "timeout")
PHASES: dict[str, tuple[str, ...]] = {
    "gameday": ("steady state", "inject", "detect", "follow the runbook", "recover",
                "corrected procedure", "restore", "clean up"),
    "disaster": ("steady state", "prepare", "inject", "detect", "follow the runbook",
                 "recover", "validate data integrity", "data loss", "restore", "clean up"),
}
#: The phases that run while the drill restores: an interruption there is held.
HELD_PHASES: dict[str, tuple[str, ...]] = {"gameday": ("restore", "clean up"),
                                           "disaster": ("restore", "clean up")}
#: Only a game day whose runbook steps do not restore service has this phase.
CORRECTED = "corrected procedure"
#: Before these the fault is not in yet: nothing to revert.
BEFORE_FAULT = ("steady state", "prepare")
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
#: The exception a drill ends with, per interruption (pytest-timeout's is ``Failed``).
RAISED = {"SIGINT": "KeyboardInterrupt", "SIGTERM": "DrillInterrupted", "timeout": "Failed"}
#: The signal a held interruption is noted by in the record.
HELD_AS = {"SIGINT": "SIGINT", "SIGTERM": "SIGTERM", "timeout": "SIGALRM"}


@dataclass(frozen=True)
class Cell:
    """One drill, one phase, one interruption."""

    engine: Engine
    drill: str
    phase: str
    interrupt: str

    @property
    def id(self) -> str:
        return f"{self.engine}-{self.drill}-{self.phase.replace(' ', '-')}-{self.interrupt}"

    @property
    def held(self) -> bool:
        return self.phase in HELD_PHASES[self.engine]

    @property
    def fault_in(self) -> bool:
        return self.phase not in BEFORE_FAULT


def matrix(engine: Engine, drills: Sequence[str], *, every: bool = False) -> list[Cell]:
    """Every phase x every interruption. With ``every``, each of ``drills`` in each cell;
    else one drill per cell, rotated so that a drill meets every phase (with a different
    interruption) when there are as many drills as interruptions."""
    cells = []
    for i, phase in enumerate(PHASES[engine]):
        pool = [d for d in drills if OUTCOMES.get(d) == "defect"] if phase == CORRECTED \
            else list(drills)
        if not pool:
            continue
        for j, interrupt in enumerate(INTERRUPTS):
            chosen = pool if every else [pool[(i + j) % len(pool)]]
            cells += [Cell(engine, drill, phase, interrupt) for drill in chosen]
    return cells


@dataclass(frozen=True)
class Outcome:
    """What the runner reported for a cell, and when the parent saw it."""

    cell: Cell
    paused: bool
    ended: str
    message: str
    alarm_handler: str
    directory: Path
    interrupted_at: float | None  # time.monotonic() when the interruption was sent
    ended_at: float

    @property
    def ended_after_s(self) -> float | None:
        """The interruption to the drill's end (restored, record written)."""
        return None if self.interrupted_at is None else self.ended_at - self.interrupted_at

    def restore_s(self) -> float | None:
        """How long the record's ``restore`` phase took (``None``: none recorded)."""
        for record in self.records():
            for phase in record["phases"]:
                if phase["name"] == "restore":
                    return (datetime.fromisoformat(phase["finished_at"])
                            - datetime.fromisoformat(phase["started_at"])).total_seconds()
        return None

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted((self.directory / "drills")
                                                           .glob("*.json"))]

    def explain(self) -> str:
        lines = [f"{self.cell.id}: paused={self.paused} ended={self.ended}: {self.message}"]
        for record in self.records():
            lines += [f"  {p['name']}: ok={p['ok']} {p['detail'][:200]}"
                      for p in record["phases"]]
            lines += [f"  note: {n[:200]}" for n in record["notes"]
                      if not n.startswith("runbook defect")]
        return "\n".join(lines)


class Runner:
    """The drill runner process and its line protocol (see ``tests/interrupt_runner.py``)."""

    def __init__(self, home: Path, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.work = work
        self.stderr = (work / "runner.stderr").open("w")
        env = {**os.environ, "RUNBOOK_HOME": str(home), "INTERRUPT_WORK": str(work),
               "PYTHONUNBUFFERED": "1"}
        env.pop("API_URL", None)  # the sandbox target, not the variables
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest", str(RUNNER), "-s", "-q", "-p", "no:cacheprovider",
             "--noconftest", "--rootdir", str(work), "-c", os.devnull,
             "-o", "timeout_method=signal", "--timeout", "3600"],
            cwd=PROJECT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, text=True, bufsize=1)
        self.count = 0
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.other: collections.deque[str] = collections.deque(maxlen=40)
        threading.Thread(target=self._read, daemon=True).start()
        self._expect("ready", timeout=60)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            at = line.find("CELL {")
            if at >= 0:
                self.messages.put(json.loads(line[at + 5:]))
            else:
                self.other.append(line.rstrip())
        self.messages.put(None)

    def _expect(self, *events: str, timeout: float) -> dict[str, Any]:
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            message = None
        if message is None or message["event"] not in events:
            raise AssertionError(f"the drill runner sent {message} instead of {events}"
                                 f" (exit {self.process.poll()}):\n" + "\n".join(self.other))
        return message

    def _send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def cell(self, cell: Cell, timeout: float = 300.0) -> Outcome:
        """Run ``cell``: its drill paused in its phase, interrupted there, to its end."""
        self.count += 1  # a directory of its own, also when a cell is run again
        self._send(json.dumps({**asdict(cell), "id": f"{self.count:03d}-{cell.id}"}))
        message = self._expect("paused", "ended", timeout=timeout)
        interrupted_at = None
        if message["event"] == "paused":
            interrupted_at = time.monotonic()
            if cell.interrupt in SIGNALS:
                os.kill(self.process.pid, SIGNALS[cell.interrupt])
                self._send("go")
            message = self._expect("ended", timeout=timeout)
        return Outcome(cell, message["paused"], message["ended"], message["message"],
                       message["alarm_handler"], Path(message["directory"]), interrupted_at,
                       time.monotonic())

    def close(self) -> None:
        if self.process.poll() is None:
            self._send("quit")
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.stderr.close()


def sandbox_context(box: RunningSandbox) -> DrillContext:
    return context_for(RunSpec.sandbox(box.home))


def verify(outcome: Outcome, box: RunningSandbox) -> float:
    """Every check of a cell (``AssertionError`` saying which failed); returns the seconds
    from the interruption to the sandbox confirmed healthy."""
    cell = outcome.cell
    why = outcome.explain()
    assert outcome.paused and outcome.interrupted_at is not None, \
        f"the drill never reached {cell.phase!r}:\n{why}"
    assert outcome.ended == RAISED[cell.interrupt], why
    if cell.interrupt == "timeout":
        assert "from pytest-timeout" in outcome.message, why
        assert outcome.alarm_handler == "pytest_timeout", outcome.alarm_handler
    records = outcome.records()
    assert len(records) == 1, f"{len(records)} records written\n{why}"
    record = records[0]
    phases = {p["name"]: p for p in record["phases"]}
    if cell.held:
        assert record["completed"], why
        held = f"{HELD_AS[cell.interrupt]} arrived while the drill was ending or restoring"
        assert any(n.startswith(held) for n in record["notes"]), why
    else:
        assert not record["completed"] and record["verdict"] == "aborted", why
        ended = f"ended early in phase {cell.phase!r} by {RAISED[cell.interrupt]}"
        assert any(n.startswith(ended) for n in record["notes"]), why
    if cell.fault_in:
        assert phases["restore"]["ok"], why
    else:
        assert "inject" not in phases and "restore" not in phases, why
    if "clean up" in phases:  # a drill cut short before the fault has nothing to clean
        assert phases["clean up"]["ok"], why
    _verify_progress(outcome, record)
    _verify_guard(outcome)
    assert_healthy(box, sandbox_context(box))
    assert outcome.interrupted_at is not None
    return time.monotonic() - outcome.interrupted_at


def _verify_progress(outcome: Outcome, record: dict[str, Any]) -> None:
    drills = outcome.directory / "drills"
    assert not (drills / f"{outcome.cell.drill}.progress").exists(), "progress not moved"
    kept = list(drills.glob("*.progress"))
    assert len(kept) == 1, kept
    lines = [phase for _, phase in read_progress(kept[0])]
    assert outcome.cell.phase in lines, lines
    assert lines[-1] == f"recorded: {record['verdict']}", lines
    recorded = [p["name"] for p in record["phases"]]
    assert [p for p in lines[:-1] if p in recorded] == recorded, (lines, recorded)


def _verify_guard(outcome: Outcome) -> None:
    """The drill restored by itself: the guard exited without a fault to revert."""
    guards = outcome.directory / "guards"
    assert not list(guards.glob("guard-*.json")), "a ledger left behind"
    log = "".join(p.read_text() for p in guards.glob("guard-*.log"))
    assert "pending" not in log, log


@dataclass(frozen=True)
class Checked:
    """A cell run and verified: ``problem`` is the failed check (``None``: it passed)."""

    cell: Cell
    outcome: Outcome | None
    healthy_s: float | None
    problem: AssertionError | None
    wall_s: float


def check_cell(runner: Runner, cell: Cell, box: RunningSandbox) -> Checked:
    """Run ``cell`` and ``verify`` it; after a failure the sandbox is healed for the next."""
    started = time.monotonic()
    outcome = None
    try:
        outcome = runner.cell(cell)
        healthy_s = verify(outcome, box)
        return Checked(cell, outcome, healthy_s, None, time.monotonic() - started)
    except AssertionError as exc:
        heal(box.sandbox)
        return Checked(cell, outcome, None, exc, time.monotonic() - started)


def heal(box: Sandbox) -> None:
    """Every component back as configured (what the ``healthy_sandbox`` fixture does)."""
    stored = box.stored_variables()
    for service, values in stored.items():
        box.unset_variables(service, list(values))
    for name, component in box.status().components.items():
        if component.env_overrides or name in stored:
            box.restart(name)
    box.up(timeout=120)


class Background:
    """Cells checked one after another in a thread, on a sandbox of their own started in
    ``home`` (so they share nothing with what runs meanwhile); ``result`` waits for one.
    ``close`` stops the runner and destroys the sandbox."""

    def __init__(self, home: Path, work: Path, cells: Sequence[Cell]) -> None:
        self.cells = list(cells)
        self.results: dict[str, Future[Checked]] = {c.id: Future() for c in self.cells}
        self.box = Sandbox(home)
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self.thread.start()

    def _run(self, work: Path) -> None:
        runner: Runner | None = None
        try:
            running = RunningSandbox(self.box, self.box.up(timeout=120))
            runner = Runner(self.box.home, work)
            for cell in self.cells:
                if self.closing.is_set():
                    break
                self.results[cell.id].set_result(check_cell(runner, cell, running))
        except BaseException as exc:  # every cell still waiting hears why
            for future in self.results.values():
                if not future.done():
                    future.set_exception(exc)
        finally:
            if runner is not None:
                runner.close()

    def result(self, cell: Cell, timeout: float) -> Checked:
        return self.results[cell.id].result(timeout)

    def close(self) -> None:
        self.closing.set()
        self.thread.join(300)
        self.box.destroy()
