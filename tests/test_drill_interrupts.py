"""SIGINT, SIGTERM and a timeout in every phase of a drill leave the sandbox healthy.

One engine runs every drill. A game day: its eight phases x the three interruptions,
rotating through three cheap game days whose faults are of different kinds (a component
stopped; the worker stopped with a backlog; the API's stored variable broken), so that each
fault is reverted from every phase (the corrected procedure, which only a game day whose
runbook steps fail has, with that one), on the session's sandbox. A disaster: its ten
phases x the three, with its
cheapest drill (S3 data loss: 30 cells in about 45 s by ``bench/interrupt_matrix.py``; the
API crash costs more run back to back, as the sandbox backs off restarting an API that
keeps crashing), on a sandbox of its own in a background thread from the module's first
test (the two share nothing, and most of a cell is waiting), each cell verified there as it
ends. Each cell is run for real by a drill runner (``tests/interrupts.py``): the drill
paused in its phase, the signal sent to the process or pytest-timeout's timer fired there;
then the record, the progress file, the guard and the sandbox are checked. Interruptions
arriving while a drill restores, or after the first, are held until the restore and the
record are done.

Then the operator's path, ``runbook drill`` interrupted with Ctrl-C or SIGTERM (exit 130),
and the pieces on their own: holding signals, the progress file, a failing phase listener,
a guard disarmed with a fault on its ledger. ``-s`` prints each cell's time to healthy and
a summary per interruption.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook.drills import catalog
from runbook.drills.faults import get
from runbook.drills.guard import DrillInterrupted, Guard, interruptible
from runbook.drills.record import DrillRun, ProgressFile, read_progress, write_record
from runbook.probes import storage
from runbook.redact import Redactor
from runbook.targets import RunSpec
from runbook.wait import wait_until
from tests.conftest import RunningSandbox
from tests.gamedays import assert_healthy
from tests.interrupts import Background, Cell, Runner, matrix, sandbox_context, verify

#: Cheap game days with faults of three kinds (each about 5 s from steady state to restore).
CHEAP_GAMEDAYS = ("service-down", "worker-not-processing", "api-500-missing-variable")
GAMEDAY_CELLS = matrix("gameday", CHEAP_GAMEDAYS)
DR_CELLS = matrix("disaster", ["s3-data-loss"])
DR_TEST = "test_an_interruption_in_any_phase_of_a_dr_drill_leaves_its_sandbox_healthy"


@pytest.fixture(scope="module")
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, list[float]]]:
    """Seconds from the interruption to the sandbox confirmed healthy, per interruption;
    the summary is printed at the end of the module."""
    seen: dict[str, list[float]] = {}
    yield seen
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and seen:
        reporter.write_line("")
        reporter.write_line("Interrupted drills: seconds from the interruption to healthy")
        for interrupt, values in seen.items():
            reporter.write_line(f"  {interrupt:8} cells {len(values):2}  median"
                                f" {statistics.median(values):6.2f}  max {max(values):6.2f}")


@pytest.fixture(scope="module", autouse=True)
def disaster_cells(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Background | None]:
    """The selected DR cells, run in the background from the module's first test."""
    wanted = {item.callspec.params["cell"] for item in request.session.items
              if isinstance(item, pytest.Function) and item.originalname == DR_TEST}
    cells = [c for c in DR_CELLS if c in wanted]
    if not cells:
        yield None
        return
    background = Background(tmp_path_factory.mktemp("disaster-home"),
                            tmp_path_factory.mktemp("disaster-interrupts"), cells)
    try:
        yield background
    finally:
        background.close()


@pytest.fixture(scope="module")
def runner(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Runner]:
    """One drill runner for the module's cells (its pytest start-up paid once)."""
    started = Runner(sandbox.home, tmp_path_factory.mktemp("interrupts"))
    try:
        yield started
    finally:
        started.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cell", GAMEDAY_CELLS, ids=[c.id for c in GAMEDAY_CELLS])
def test_an_interruption_in_any_phase_of_a_game_day_leaves_the_sandbox_healthy(
        cell: Cell, runner: Runner, healthy_sandbox: RunningSandbox,
        figures: dict[str, list[float]]) -> None:
    outcome = runner.cell(cell)
    healthy_after = verify(outcome, healthy_sandbox)
    figures.setdefault(cell.interrupt, []).append(healthy_after)
    print(f"\n{cell.id}: drill ended {outcome.ended_after_s:.2f} s and the sandbox was"
          f" confirmed healthy {healthy_after:.2f} s after the {cell.interrupt}")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cell", DR_CELLS, ids=[c.id for c in DR_CELLS])
def test_an_interruption_in_any_phase_of_a_dr_drill_leaves_its_sandbox_healthy(
        cell: Cell, disaster_cells: Background | None, figures: dict[str, list[float]]
        ) -> None:
    assert disaster_cells is not None
    checked = disaster_cells.result(cell, timeout=280)
    if checked.problem is not None:
        raise checked.problem
    assert checked.outcome is not None and checked.healthy_s is not None
    figures.setdefault(cell.interrupt, []).append(checked.healthy_s)
    print(f"\n{cell.id}: drill ended {checked.outcome.ended_after_s:.2f} s and its sandbox"
          f" was confirmed healthy {checked.healthy_s:.2f} s after the {cell.interrupt}")


def test_every_phase_meets_every_interruption_and_each_game_day_every_phase() -> None:
    cells = GAMEDAY_CELLS + DR_CELLS
    assert len(cells) == 8 * 3 + 10 * 3
    for name in CHEAP_GAMEDAYS:
        assert {c.phase for c in GAMEDAY_CELLS if c.drill == name} >= \
            {c.phase for c in GAMEDAY_CELLS} - {"corrected procedure"}
    assert {c.drill for c in GAMEDAY_CELLS if c.phase == "corrected procedure"} == \
        {"api-500-missing-variable"}
    assert len({(c.engine, c.phase, c.interrupt) for c in cells}) == len(cells)


# -- through the CLI -----------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["Ctrl-C", "SIGTERM"])
def test_runbook_drill_interrupted_restores_records_and_exits_130(
        how: str, healthy_sandbox: RunningSandbox, tmp_path: Path) -> None:
    """Ctrl-C reaches the whole foreground process group: the CLI and its pytest both get
    SIGINT, and the CLI forwards one more, which the drill holds while it restores. SIGTERM
    (a scheduler stopping the job) reaches the CLI alone: it passes it on, and its pytest
    stops after restoring instead of going on with the next drill."""
    reports = tmp_path / "reports"
    env = {**os.environ, "RUNBOOK_HOME": str(healthy_sandbox.home)}
    env.pop("API_URL", None)
    cli = subprocess.Popen([str(Path(sys.executable).with_name("runbook")), "drill",
                            "service-down", "--target", "sandbox", "--reports", str(reports)],
                           cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    progress = reports / "drills" / "service-down.progress"
    try:
        seen = wait_until(lambda: "recover" in [p for _, p in read_progress(progress)],
                          timeout=90, interval=0.05)
        assert seen.ok, f"the drill never reached recover: {read_progress(progress)}"
        sent = time.monotonic()
        if how == "Ctrl-C":
            os.killpg(cli.pid, signal.SIGINT)
        else:
            os.kill(cli.pid, signal.SIGTERM)
        output, _ = cli.communicate(timeout=90)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait(10)
    ended = time.monotonic() - sent
    assert cli.returncode == 130, output
    assert "runbook: interrupted" in output
    [path] = (reports / "drills").glob("*-service-down.json")
    record = json.loads(path.read_text())
    assert record["verdict"] == "aborted", record["notes"]
    assert any(n.startswith("ended early in phase 'recover' by") for n in record["notes"]), \
        record["notes"]
    assert next(p for p in record["phases"] if p["name"] == "restore")["ok"], record["phases"]
    assert path.with_suffix(".progress").exists() and not progress.exists()
    guards = reports / "drills" / "guards"
    assert not list(guards.glob("guard-*.json"))
    assert "pending" not in "".join(p.read_text() for p in guards.glob("*.log"))
    assert_healthy(healthy_sandbox, sandbox_context(healthy_sandbox))
    print(f"\nrunbook drill: {how} in recover; exit 130 {ended:.2f} s later, healthy")


# -- the pieces ----------------------------------------------------------------------------


def test_the_first_interruption_raises_and_the_next_ones_wait() -> None:
    """A second Ctrl-C while the drill ends (the CLI forwards one) is held, and dropped
    after the restore since the drill is already stopping."""
    reached: list[str] = []
    with pytest.raises(KeyboardInterrupt), interruptible() as interruptions:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # not raised in here
            with interruptions.restoring():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                reached.append("restored")
    assert reached == ["restored"]
    assert interruptions.raised == signal.SIGINT
    assert interruptions.held == [signal.SIGINT, signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interruption_while_restoring_is_delivered_after_it() -> None:
    reached: list[str] = []
    with pytest.raises(DrillInterrupted), interruptible() as interruptions:
        with interruptions.restoring():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            reached.append("restored")
        reached.append("not reached")
    assert reached == ["restored"]
    assert interruptions.raised is None and interruptions.held == [signal.SIGTERM]


def test_a_held_alarm_is_dropped_when_an_exception_already_ends_the_drill() -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        with pytest.raises(ValueError), interruptible() as interruptions:
            try:
                raise ValueError("the drill failed")
            finally:
                with interruptions.restoring():
                    os.kill(os.getpid(), signal.SIGALRM)
                    time.sleep(0.05)
        assert interruptions.held == [signal.SIGALRM] and fired == []
        with interruptible() as interruptions, interruptions.restoring():
            os.kill(os.getpid(), signal.SIGALRM)
        assert fired == [signal.SIGALRM]  # nothing ending it: the handler it had ran
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_the_progress_file_follows_the_phases_and_is_kept_with_the_record(
        tmp_path: Path) -> None:
    directory = tmp_path / "drills"
    progress = ProgressFile(directory, "service-down")
    progress.path.parent.mkdir()
    progress.path.write_text("an earlier run's line\n")
    drill = DrillRun("service-down", "Incident Response > Service Down", "sandbox", "sandbox",
                     on_phase=progress)
    started = drill.begin("steady state")
    drill.phase("steady state", started, True)
    drill.begin("inject")
    assert [p for _, p in read_progress(progress.path)] == ["steady state", "inject"]
    drill.ended_early(KeyboardInterrupt())
    json_path, _ = write_record(drill.finish(), directory, Redactor([]))
    kept = json_path.with_suffix(".progress")
    assert not progress.path.exists()
    assert [p for _, p in read_progress(kept)] == ["steady state", "inject",
                                                   "recorded: aborted"]
    assert json.loads(json_path.read_text())["notes"] == [
        "ended early in phase 'inject' by KeyboardInterrupt: "]


def test_a_failing_phase_listener_is_noted_and_an_interruption_in_it_goes_through() -> None:
    def broken(phase: str) -> None:
        if phase == "restore":
            raise KeyboardInterrupt
        raise OSError("disk full")

    drill = DrillRun("d", "s", "sandbox", "sandbox", on_phase=broken)
    drill.begin("inject")
    assert drill.notes == ["phase listener failed at 'inject': OSError: disk full"]
    with pytest.raises(KeyboardInterrupt):
        drill.begin("restore")


def test_a_guard_disarmed_with_a_fault_on_its_ledger_reverts_it(
        sandbox: RunningSandbox, tmp_path: Path) -> None:
    """A restoration cut short, then the drill's teardown disarms the guard: it reverts."""
    context = sandbox_context(sandbox)
    assert catalog.DRILLS  # every fault registered
    fault = get("s3-cors-missing", "sandbox")
    guard = Guard.arm(tmp_path, RunSpec.sandbox(sandbox.home))
    try:
        guard.record(fault.name, {})
        assert fault.inject(context, {}).ok
        assert not storage.cors(context.target, context.timeouts).ok
        guard.disarm()
    finally:
        fault.revert(context, {})  # idempotent: nothing to do when the guard did its work
    assert guard.process is not None and guard.process.returncode == 0
    log = next(tmp_path.glob("*.log")).read_text()
    assert "was disarmed with faults pending: s3-cors-missing" in log, log
    assert "reverted s3-cors-missing: ok" in log, log
    assert storage.cors(context.target, context.timeouts).ok
    assert not guard.ledger.exists()
