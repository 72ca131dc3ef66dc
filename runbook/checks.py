"""Assertions over probe results that read as the runbook does when they fail."""

from __future__ import annotations

from runbook.errors import CheckFailed, ProbeTimeout
from runbook.results import ProbeResult
from runbook.sections import next_steps


def require_ok(result: ProbeResult) -> ProbeResult:
    """Raise ``CheckFailed`` (``ProbeTimeout`` for a timeout) unless the probe passed."""
    __tracebackhide__ = True
    if not result.ok:
        error = ProbeTimeout if result.observed.get("timeout") else CheckFailed
        raise error(
            component=result.component,
            target=result.target,
            seen=result.problem,
            expected=result.expected,
            next_steps=next_steps(result.advice or result.component),
        )
    return result


def require_at_most(result: ProbeResult, figure: str, limit: float, unit: str) -> float:
    """Raise ``CheckFailed`` unless the recorded ``figure`` is present and ``<= limit``."""
    __tracebackhide__ = True
    require_ok(result)
    value = result.observed.get(figure)
    if not isinstance(value, int | float) or value > limit:
        shown = "not recorded" if value is None else f"{value:g} {unit}"
        raise CheckFailed(
            component=result.component,
            target=result.target,
            seen=f"{figure.replace('_', ' ')} {shown}",
            expected=f"{figure.replace('_', ' ')} at most {limit:g} {unit}",
            next_steps=next_steps(result.advice or result.component),
        )
    return float(value)


def require_figures(result: ProbeResult, figures: tuple[str, ...]) -> ProbeResult:
    """Raise ``CheckFailed`` unless the probe passed and recorded every one of ``figures``."""
    __tracebackhide__ = True
    require_ok(result)
    missing = [f for f in figures if not isinstance(result.observed.get(f), int | float)]
    if missing:
        raise CheckFailed(
            component=result.component,
            target=result.target,
            seen=f"no figure for {', '.join(missing)}",
            expected=f"figures for {', '.join(figures)}",
            next_steps=next_steps(result.advice or result.component),
        )
    return result
