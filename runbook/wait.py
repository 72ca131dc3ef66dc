"""One waiting helper for every "within N seconds" in the runbook."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class WaitOutcome(Generic[T]):
    """What ``wait_until`` saw: the final value, how long it took, every distinct problem.

    Not a ``results.Record``: generic over the value waited for and never evidence itself;
    ``ok`` and ``elapsed_s`` are what the wait measured, stored as such."""

    ok: bool
    value: T | None
    elapsed_s: float
    attempts: int
    observations: tuple[str, ...]

    def summary(self) -> str:
        seen = "; ".join(self.observations) or "nothing"
        return f"after {self.elapsed_s:.1f} s and {self.attempts} attempts, saw: {seen}"


def wait_until(
    probe: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.2,
    accept: Callable[[T], bool] = bool,
    describe: Callable[[T], str] = repr,
) -> WaitOutcome[T]:
    """Call ``probe`` until ``accept`` holds for its value or ``timeout`` seconds pass.

    Exceptions from the probe count as observations, not as the end of waiting. The outcome
    lists every distinct observation in the order first seen, so a timeout says what
    happened, not only that it took too long.
    """
    started = time.monotonic()
    observations: list[str] = []
    attempts = 0
    value: T | None = None
    while True:
        attempts += 1
        try:
            value = probe()
            if accept(value):
                return WaitOutcome(True, value, time.monotonic() - started, attempts,
                                   tuple(observations))
            seen = describe(value)
        except Exception as exc:  # a failing probe is an observation
            value = None
            seen = f"{type(exc).__name__}: {exc}"
        if seen not in observations:
            observations.append(seen)
        elapsed = time.monotonic() - started
        if elapsed >= timeout:
            return WaitOutcome(False, value, elapsed, attempts, tuple(observations))
        time.sleep(min(interval, max(0.0, timeout - elapsed)))
