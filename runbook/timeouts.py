"""Finite time limits for every network call, and a hard deadline around any probe.

Defaults are the clients' worst cases made bounded: redis-py waits forever by default,
psycopg 130 s to connect, and httpx's read timeout is per chunk, not per response.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Timeouts:
    """Seconds. ``connect`` and ``read`` are per operation; ``deadline`` bounds a whole probe."""

    connect: float = 3.0
    read: float = 5.0
    deadline: float = 10.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Timeouts:
        """``RUNBOOK_CONNECT_TIMEOUT``, ``RUNBOOK_READ_TIMEOUT``, ``RUNBOOK_PROBE_DEADLINE``."""
        import os

        env = os.environ if environ is None else environ
        return cls(
            connect=float(env.get("RUNBOOK_CONNECT_TIMEOUT", cls.connect)),
            read=float(env.get("RUNBOOK_READ_TIMEOUT", cls.read)),
            deadline=float(env.get("RUNBOOK_PROBE_DEADLINE", cls.deadline)),
        )


class DeadlineExceeded(Exception):
    """``call_with_deadline`` gave up waiting."""


def call_with_deadline(fn: Callable[[], T], deadline_s: float) -> T:
    """Run ``fn`` in a daemon thread and wait at most ``deadline_s`` for it.

    Raises ``DeadlineExceeded`` when it has not returned by then; the thread is left to end
    by its own (finite) client timeouts. Exceptions from ``fn`` propagate unchanged.
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="runbook-probe", daemon=True)
    worker.start()
    worker.join(deadline_s)
    if worker.is_alive():
        raise DeadlineExceeded(f"no answer within {deadline_s:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
