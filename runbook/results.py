"""Frozen records of what a probe or an action observed, with timestamps.

Recovery figures (RTO, RPO, time to detect) are derived from these records, never from
clocks read elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Stopwatch:
    """Started on creation: the wall-clock start plus a monotonic duration, for ``Timing``."""

    def __init__(self) -> None:
        self.started_at = utcnow()
        self._started = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._started

    def timing(self) -> Timing:
        return Timing(self.started_at, utcnow(), self.seconds)


@dataclass(frozen=True)
class Timing:
    """A start and an end, wall-clock UTC, plus the monotonic duration between them."""

    started_at: datetime
    finished_at: datetime
    elapsed_s: float

    @property
    def elapsed_ms(self) -> float:
        return self.elapsed_s * 1000.0


@dataclass(frozen=True)
class ProbeResult:
    """What one read-only check of one component saw.

    ``ok`` is the verdict; ``problem`` says in one line what was wrong when it is false;
    ``observed`` holds the figures and facts worth keeping as evidence (never secrets).
    """

    component: str
    check: str
    target: str
    ok: bool
    timing: Timing
    problem: str = ""
    expected: str = ""
    observed: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: The key of the runbook advice that fits a failure (``runbook.sections.NEXT_STEPS``).
    advice: str = ""

    @property
    def elapsed_s(self) -> float:
        return self.timing.elapsed_s

    def __repr__(self) -> str:
        verdict = "ok" if self.ok else f"FAILED: {self.problem}"
        return f"<{self.component} {self.check}: {verdict} in {self.timing.elapsed_ms:.0f} ms>"

    def evidence(self) -> dict[str, Any]:
        """A JSON-ready summary of this result, for reports and drill records."""
        return {
            "component": self.component,
            "check": self.check,
            "target": self.target,
            "ok": self.ok,
            "problem": self.problem,
            "expected": self.expected,
            "started_at": self.timing.started_at.isoformat(),
            "elapsed_ms": round(self.timing.elapsed_ms, 1),
            "observed": dict(self.observed),
        }


@dataclass(frozen=True)
class Activity:
    """One state-changing (or platform) call: what ran, when, how long, how it ended.

    ``command`` and ``output`` are redacted before they are stored here.
    """

    name: str
    #: The call that really ran: a subprocess's argv, or ``("library", "<module.function>",
    #: args...)`` for a call into a library (never a command that did not run).
    command: tuple[str, ...]
    timing: Timing
    ok: bool
    output: str = ""
    error: str = ""
    #: The runbook's own command for this step, as written there (what an operator on the
    #: real platform would type), when it differs from what ran; "" when none.
    runbook_says: str = ""

    @property
    def elapsed_s(self) -> float:
        return self.timing.elapsed_s

    def evidence(self) -> dict[str, Any]:
        """A JSON-ready summary of this activity, for reports and drill records."""
        return {
            "name": self.name,
            "command": list(self.command),
            "runbook_says": self.runbook_says,
            "started_at": self.timing.started_at.isoformat(),
            "finished_at": self.timing.finished_at.isoformat(),
            "elapsed_s": round(self.elapsed_s, 3),
            "ok": self.ok,
            "output": self.output[-4000:],
            "error": self.error,
        }
