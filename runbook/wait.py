"""One waiting helper for every "within N seconds" in the runbook.

Every poll in the runbook (repeat a look until a condition holds or a deadline passes) is a
``wait_until`` call, or ``wait_until_async`` inside a coroutine: the deadline, the pace, the
observations and the last value are worked out here once. A loop elsewhere that sleeps is
not a poll (a server's serve loop, a supervisor's main loop, a paced generator) and says so
with a ``# not a poll:`` comment (``tests/test_polls.py`` checks it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: Every exception a probe raises is an observation (the default of ``errors``).
OBSERVED: tuple[type[BaseException], ...] = (Exception,)


@dataclass(frozen=True)
class WaitOutcome(Generic[T]):
    """What ``wait_until`` saw: the final value, how long it took, every distinct problem.

    ``value`` is the last value the probe returned (``None`` when its last call raised);
    ``stopped`` is true when ``stop`` ended the wait before the deadline.

    Not a ``results.Record``: generic over the value waited for and never evidence itself;
    ``ok`` and ``elapsed_s`` are what the wait measured, stored as such."""

    ok: bool
    value: T | None
    elapsed_s: float
    attempts: int
    observations: tuple[str, ...]
    stopped: bool = False

    def summary(self) -> str:
        seen = "; ".join(self.observations) or "nothing"
        return f"after {self.elapsed_s:.1f} s and {self.attempts} attempts, saw: {seen}"


class _Waiting(Generic[T]):
    """The bookkeeping both waits share: attempts, observations, the deadline and the pace."""

    def __init__(self, *, timeout: float | None, deadline: float | None, interval: float,
                 accept: Callable[[T], bool], describe: Callable[[T], str],
                 stop: Callable[[], bool] | None,
                 errors: tuple[type[BaseException], ...]) -> None:
        if (timeout is None) == (deadline is None):
            raise ValueError("wait_until takes exactly one of timeout and deadline")
        self.started = time.monotonic()
        self.deadline = deadline if deadline is not None else self.started + float(timeout or 0)
        self.interval = interval
        self.accept, self.describe, self.stop, self.errors = accept, describe, stop, errors
        self.observations: list[str] = []
        self.attempts = 0
        self.value: T | None = None

    def outcome(self, ok: bool, *, stopped: bool = False) -> WaitOutcome[T]:
        return WaitOutcome(ok, self.value, time.monotonic() - self.started, self.attempts,
                           tuple(self.observations), stopped)

    def raised(self, exc: BaseException) -> None:
        self.value = None
        self.note(f"{type(exc).__name__}: {exc}")

    def note(self, seen: str) -> None:
        if seen not in self.observations:
            self.observations.append(seen)

    def judge(self, value: T) -> bool:
        """Whether ``value`` ends the wait; if not, it is noted (``describe``)."""
        self.value = value
        if self.accept(value):
            return True
        self.note(self.describe(value))
        return False

    def pause(self) -> WaitOutcome[T] | float:
        """After a refused look: the outcome when waiting ends, else how long to sleep."""
        if self.stop is not None and self.stop():
            return self.outcome(False, stopped=True)
        left = self.deadline - time.monotonic()
        if left <= 0:
            return self.outcome(False)
        return min(self.interval, left)


def wait_until(
    probe: Callable[[], T],
    *,
    timeout: float | None = None,
    deadline: float | None = None,
    interval: float = 0.2,
    accept: Callable[[T], bool] = bool,
    describe: Callable[[T], str] = repr,
    stop: Callable[[], bool] | None = None,
    errors: tuple[type[BaseException], ...] = OBSERVED,
) -> WaitOutcome[T]:
    """Call ``probe`` until ``accept`` holds for its value or ``timeout`` seconds pass.

    The probe is called at least once, then every ``interval`` seconds (the last sleep is
    cut to the deadline). Give either ``timeout`` (seconds from now) or ``deadline`` (a
    ``time.monotonic()`` instant, for waits sharing one budget). ``stop``, asked after each
    refused value, ends the wait early when it returns true (a process that exited, a
    caller's abort): the outcome is then not ok and ``stopped``.

    Exceptions from the probe that are instances of ``errors`` (every ``Exception`` by
    default) count as observations, not as the end of waiting; others propagate (pass
    ``errors=()`` for a probe whose failure ends the wait, as a raised error the caller
    reports). The outcome lists every distinct observation in the order first seen, so a
    timeout says what happened, not only that it took too long, and keeps the last value.
    """
    waiting: _Waiting[T] = _Waiting(timeout=timeout, deadline=deadline, interval=interval,
                                    accept=accept, describe=describe, stop=stop,
                                    errors=errors)
    while True:
        waiting.attempts += 1
        try:
            if waiting.judge(probe()):
                return waiting.outcome(True)
        except Exception as exc:  # a failing probe is an observation (``errors``)
            if not isinstance(exc, waiting.errors):
                raise
            waiting.raised(exc)
        pause = waiting.pause()
        if isinstance(pause, WaitOutcome):
            return pause
        time.sleep(pause)


async def wait_until_async(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout: float | None = None,
    deadline: float | None = None,
    interval: float = 0.2,
    accept: Callable[[T], bool] = bool,
    describe: Callable[[T], str] = repr,
    stop: Callable[[], bool] | None = None,
    errors: tuple[type[BaseException], ...] = OBSERVED,
) -> WaitOutcome[T]:
    """``wait_until`` for a coroutine: awaits ``probe()`` and sleeps with ``asyncio.sleep``,
    so the event loop keeps running; the same arguments and outcome."""
    waiting: _Waiting[T] = _Waiting(timeout=timeout, deadline=deadline, interval=interval,
                                    accept=accept, describe=describe, stop=stop,
                                    errors=errors)
    while True:
        waiting.attempts += 1
        try:
            if waiting.judge(await probe()):
                return waiting.outcome(True)
        except Exception as exc:  # a failing probe is an observation (``errors``)
            if not isinstance(exc, waiting.errors):
                raise
            waiting.raised(exc)
        pause = waiting.pause()
        if isinstance(pause, WaitOutcome):
            return pause
        await asyncio.sleep(pause)
