"""Read-only checks, one module per component. Each returns a ``ProbeResult``; none raises
for a failing check, and none runs longer than its deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runbook import reachability
from runbook.clients import describe_error
from runbook.config import Target
from runbook.results import ProbeResult, Timing, utcnow
from runbook.timeouts import DeadlineExceeded, Timeouts, call_with_deadline


@dataclass(frozen=True)
class Verdict:
    """What a probe body concludes: ok or the one-line problem, plus evidence. Not a record:
    ``run_probe`` turns it into the ``ProbeResult`` (whose ``ok`` is "no problem"; a
    problem given with ``ok`` true is dropped there)."""

    ok: bool
    expected: str
    problem: str = ""
    observed: Mapping[str, Any] = field(default_factory=dict)
    #: Which runbook advice fits this failure, when it is narrower than the component's.
    advice: str = ""


def run_probe(
    component: str,
    check: str,
    target: Target,
    timeouts: Timeouts,
    body: Callable[[], Verdict],
    *,
    expected: str,
    needs: tuple[str, ...] | None = None,
) -> ProbeResult:
    """Time ``body`` under the probe deadline and turn whatever happens into a result.

    Inside a run's ``reachability.active``, the components the probe ``needs`` (default:
    ``reachability.NEEDS[component]``) are asked first, each once for the run: when one
    does not answer, the probe fails at once naming it, instead of waiting out its own
    timeouts on it."""
    started_at = utcnow()
    started = time.monotonic()
    stopped = blocked(component, check, target, expected=expected, needs=needs)
    if stopped is not None:
        return stopped
    try:
        verdict = call_with_deadline(body, timeouts.deadline)
    except DeadlineExceeded:
        verdict = Verdict(
            False, expected,
            f"no answer within the {timeouts.deadline:g} s deadline (timeout)",
            {"timeout": True},
        )
    except Exception as exc:
        verdict = Verdict(False, expected, describe_error(exc), {"error": type(exc).__name__})
    elapsed = time.monotonic() - started
    return ProbeResult(
        component=component,
        check=check,
        target=target.describe(),
        timing=Timing(started_at, utcnow(), elapsed),
        problem=(verdict.problem or "the check failed") if not verdict.ok else "",
        expected=verdict.expected or expected,
        observed=dict(verdict.observed),
        advice=verdict.advice or component,
    )


#: The runbook advice for a probe stopped by an unreachable component: that component's.
ADVICE_WHEN_UNREACHABLE = {"api": "api", "web": "web", "database": "database",
                           "redis": "redis", "s3": "s3", "email provider": "email",
                           reachability.WORKER: "worker"}


def blocked(component: str, check: str, target: Target, *, expected: str,
            needs: tuple[str, ...] | None = None) -> ProbeResult | None:
    """The failed result of a probe that needs a component the run found unreachable
    (``reachability``: asked once per run, the first time a probe needs it), else ``None``
    (reachable, not yet known to be dead, or no run's gate active). ``run_probe`` asks it
    first; a check that does work before its probe (making a canary user) asks it itself."""
    gate = reachability.current()
    started_at = utcnow()
    started = time.monotonic()
    dead = gate.unreachable(component, check, target, needs) if gate is not None else None
    if dead is None:
        return None
    return ProbeResult(
        component=component, check=check, target=target.describe(),
        timing=Timing(started_at, utcnow(), time.monotonic() - started),
        problem=dead.blocked(), expected=expected,
        observed={"unreachable": dead.component, "asked_at": dead.asked_at,
                  "found_by": dead.found_by},
        advice=ADVICE_WHEN_UNREACHABLE.get(dead.component.partition(":")[0], component))


def combine(component: str, check: str, results: list[ProbeResult]) -> ProbeResult:
    """One result standing for several: ok when all are, problems joined, evidence kept."""
    problems = [f"{r.check}: {r.problem}" for r in results if not r.ok]
    first, last = results[0].timing, results[-1].timing
    return ProbeResult(
        component=component,
        check=check,
        target=results[0].target,
        timing=Timing(first.started_at, last.finished_at, sum(r.elapsed_s for r in results)),
        problem="; ".join(problems),
        expected="; ".join(dict.fromkeys(r.expected for r in results)),
        observed={r.check: dict(r.observed) for r in results},
        advice=next((r.advice for r in results if not r.ok), results[0].advice),
    )


#: ``describe_error`` lives with the clients whose failures it describes; probes hand it on.
__all__ = ["Verdict", "blocked", "combine", "describe_error", "run_probe"]
