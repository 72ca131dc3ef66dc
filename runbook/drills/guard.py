"""The restoration guard: a fault injected is a fault reverted, whatever happens to the drill.

Before a drill injects anything it arms a ``Guard``: a detached process that watches the
drill's process. Every injected fault is written to the guard's ledger (name and JSON
parameters, no secrets) and struck off once its revert is verified. If the drill's process
dies with faults still on the ledger (SIGKILL, a crash, a timeout method that skips
teardown), the guard reverts them itself, newest first, and writes what it did to its log.

In the drill's own process (``interruptible``) SIGTERM is turned into ``DrillInterrupted``
so ``finally`` blocks run for it as they do for Ctrl-C, and once a drill is interrupted, or
while it reverts a fault, further Ctrl-C, SIGTERM and SIGALRM (pytest-timeout's deadline)
wait until the revert and the record are done. A guard disarmed with faults still on its
ledger (a restoration cut short by something else) reverts them before it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the guard process imports this module: not the targets' pydantic
    from runbook.targets import RunSpec

POLL_S = 0.2


class DrillInterrupted(KeyboardInterrupt):
    """SIGTERM arrived during a drill; raised so restoration runs, and whatever runs the
    drill stops as it does for Ctrl-C (pytest ends the session rather than going on to the
    next drill)."""


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2), encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


@dataclass
class Guard:
    """The drill-side handle of a guard process; use as a context manager.

    ``run`` is the run's target as it was resolved: the guard process gets it in its
    environment (``RunSpec.to_environ``, secrets included, as the run itself got them) and
    reverts on exactly that target; the ledger names it without secrets.
    """

    ledger: Path
    run: RunSpec
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def arm(cls, directory: Path, run: RunSpec) -> Guard:
        """Write an empty ledger and start the guard process watching this one."""
        directory.mkdir(parents=True, exist_ok=True)
        ledger = directory / f"guard-{os.getpid()}-{time.time_ns()}.json"
        guard = cls(ledger, run)
        guard._save([])
        log = open(ledger.with_suffix(".log"), "ab")  # noqa: SIM115  (the child keeps it)
        guard.process = subprocess.Popen(
            [sys.executable, "-m", "runbook.drills.restorer", "--ledger", str(ledger)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env={**os.environ, **run.to_environ()},
        )
        log.close()
        return guard

    def _load(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []  # disarmed with nothing on it
        document = json.loads(self.ledger.read_text(encoding="utf-8"))
        return list(document["faults"])

    def _save(self, faults: list[dict[str, Any]], *, disarmed: bool = False) -> None:
        _write_json(self.ledger, {
            "owner_pid": os.getpid(),
            "target": {"name": self.run.name, "kind": self.run.kind,
                       "environment": self.run.environment.value, "home": str(self.run.home)},
            "faults": faults,
            "disarmed": disarmed,
        })

    def record(self, name: str, params: Mapping[str, Any]) -> None:
        """Put a fault on the ledger: call BEFORE injecting, so a crash mid-inject is covered."""
        faults = self._load()
        faults.append({"name": name, "params": dict(params),
                       "at": datetime.now(UTC).isoformat()})
        self._save(faults)

    def strike(self, name: str) -> None:
        """Take a fault off the ledger once its revert has been verified."""
        faults = self._load()
        for index in range(len(faults) - 1, -1, -1):
            if faults[index]["name"] == name:
                del faults[index]
                break
        self._save(faults)

    def pending(self) -> list[str]:
        return [f["name"] for f in self._load()]

    def disarm(self, timeout: float = 5.0, restore_timeout: float = 180.0) -> None:
        """Tell the guard the drill ended. With an empty ledger the ledger is removed here
        (the guard, however slow to start, finds nothing to guard and exits without acting);
        with faults still on it (their restoration was cut short) it reverts them first,
        waited for up to ``restore_timeout`` seconds (it carries on if this one stops)."""
        faults = self._load()
        if faults:
            self._save(faults, disarmed=True)
        else:
            self.ledger.unlink(missing_ok=True)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(restore_timeout if faults else timeout)

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disarm()


#: What interrupts a drill: Ctrl-C, SIGTERM, and SIGALRM (pytest-timeout's ``signal``
#: method: the scenario's deadline).
INTERRUPTIONS = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)


class Interruptions:
    """A drill's interruptions, while ``interruptible()`` is in force (main thread only).

    The first SIGINT, SIGTERM or SIGALRM raises in the drill as it would anyway:
    ``KeyboardInterrupt``; ``DrillInterrupted`` (SIGTERM would otherwise end the process
    before any ``finally``); for SIGALRM whatever the handler it had raises
    (pytest-timeout's: ``Failed``). A signal that was ignored stays ignored. Every one
    after the first, and every one while ``restoring()``, waits in ``held``: a second
    Ctrl-C (a terminal sends one to the CLI and to its pytest, and the CLI forwards one
    more) must not cut short the revert of the fault or the writing of its record. Held
    ones are delivered once restoring ends: SIGINT and SIGTERM unless the drill is already
    ending by one of them; SIGALRM only when nothing else is ending it (the deadline's
    work is done).
    """

    def __init__(self) -> None:
        self.previous: dict[signal.Signals, Any] = {}
        #: Every signal held, in order of arrival (for the record).
        self.held: list[signal.Signals] = []
        self.raised: signal.Signals | None = None
        self._restoring = False
        self._pending: list[signal.Signals] = []

    def handle(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self.previous.get(sig) is signal.SIG_IGN:
            return
        if self.raised is not None or self._restoring:
            self.held.append(sig)
            self._pending.append(sig)
            return
        self.raised = sig
        self._raise(sig, frame)

    def _raise(self, sig: signal.Signals, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM:
            raise DrillInterrupted(f"signal {int(sig)}")
        previous = self.previous.get(sig)
        if callable(previous):  # default_int_handler, pytest-timeout's handler
            previous(int(sig), frame)
        elif sig == signal.SIGINT:
            raise KeyboardInterrupt
        else:  # SIGALRM's default: the process ends, as it would have without us
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    @contextlib.contextmanager
    def restoring(self) -> Iterator[None]:
        """While inside (the fault's revert, the record), every interruption waits."""
        self._restoring = True
        try:
            yield
        finally:
            self._restoring = False
            self.deliver()

    def deliver(self) -> None:
        """Deliver what was held and still matters (see the class)."""
        pending, self._pending = self._pending, []
        ending = sys.exc_info()[1]
        stopping = isinstance(ending, (KeyboardInterrupt, DrillInterrupted))
        for sig in dict.fromkeys(pending):
            if (sig == signal.SIGALRM and ending is None) or (
                    sig != signal.SIGALRM and not stopping):
                self._raise(sig, None)


@contextlib.contextmanager
def interruptible() -> Iterator[Interruptions]:
    """Run a drill under ``Interruptions``' handlers; the previous ones are put back after.
    Outside the main thread no handler can be installed, and nothing is held."""
    interruptions = Interruptions()
    try:
        for sig in INTERRUPTIONS:
            if signal.getsignal(sig) is not None:  # None: a handler Python cannot put back
                interruptions.previous[sig] = signal.signal(sig, interruptions.handle)
    except ValueError:  # not the main thread
        pass
    try:
        yield interruptions
    finally:
        try:
            interruptions.deliver()  # any that came after restoring
        finally:
            for sig, handler in interruptions.previous.items():
                signal.signal(sig, handler)
