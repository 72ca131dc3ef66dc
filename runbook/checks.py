"""Assertions over probe results that read as the runbook does when they fail."""

from __future__ import annotations

from typing import Any

from runbook.config import Target
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


def require_at_least(result: ProbeResult, figure: str, limit: float, unit: str) -> float:
    """Raise ``CheckFailed`` unless the recorded ``figure`` is present and ``>= limit``."""
    __tracebackhide__ = True
    value = result.observed.get(figure)
    if not isinstance(value, int | float) or value < limit:
        shown = "not recorded" if value is None else f"{value:g} {unit}"
        raise CheckFailed(
            component=result.component, target=result.target,
            seen=f"{figure.replace('_', ' ')} {shown}",
            expected=f"{figure.replace('_', ' ')} at least {limit:g} {unit}",
            next_steps=next_steps(result.advice or result.component),
        )
    return float(value)


def require_flag(result: ProbeResult, flag: str) -> None:
    """Raise ``CheckFailed`` unless the probe recorded ``flag`` as true."""
    __tracebackhide__ = True
    if result.observed.get(flag) is not True:
        raise CheckFailed(
            component=result.component, target=result.target,
            seen=f"{flag.replace('_', ' ')}: {result.observed.get(flag)!r}",
            expected=f"{flag.replace('_', ' ')}: true",
            next_steps=next_steps(result.advice or result.component),
        )


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


def _problems_of(record: object) -> str:
    problems = getattr(record, "problems", ()) or (
        (getattr(record, "problem", ""),) if getattr(record, "problem", "") else ())
    if problems:
        return "; ".join(str(p) for p in problems)
    summary = getattr(record, "summary", None)
    if callable(summary):
        return str(summary())
    activity = getattr(record, "activity", None)
    error = getattr(activity, "error", "")
    return str(error) or "the operation did not succeed"


def require_record(
    target: Target,
    record: Any,
    component: str,
    expected: str,
    *,
    within: tuple[str, float] | None = None,
    figures: tuple[str, ...] = (),
    holds: bool = True,
) -> Any:
    """Raise ``CheckFailed`` unless an operation's record (anything with ``ok`` and
    ``problems`` or ``summary()``) succeeded, recorded ``figures`` as numbers, kept
    ``within=(figure, limit)`` and ``holds``: the record's own verdict on what the step
    asks (a property of the record, e.g. ``record.copies_every_table``). The failure names
    ``target``, the one the step acted on."""
    __tracebackhide__ = True
    seen: str | None = None
    if not getattr(record, "ok", True):
        seen = _problems_of(record)
    elif within is not None:
        value = getattr(record, within[0], None)
        if not isinstance(value, int | float) or value > within[1]:
            shown = "not measured" if value is None else f"{value:.3f}"
            seen = f"{within[0].replace('_', ' ')} {shown} (limit {within[1]:g})"
    if seen is None:
        missing = [f for f in figures if not isinstance(getattr(record, f, None), int | float)]
        if missing:
            seen = f"no figure for {', '.join(missing)}"
    if seen is None and not holds:
        seen = f"the record does not show it: {getattr(record, 'evidence', dict)()}"
    if seen is not None:
        raise CheckFailed(component=component, target=target.describe(), seen=seen,
                          expected=expected, next_steps=next_steps(component))
    return record


def _first_failed(record: Any) -> str:
    failed = next((p for p in record.phases if not p.ok), None)
    if failed is not None:
        return f"phase {failed.name!r} failed: {failed.detail}"
    return "; ".join(record.notes) or "no phase failed"


def require_phase(record: Any, phase: str, expected: str, *, contains: str = "",
                  within: tuple[str, float] | None = None) -> None:
    """Raise ``CheckFailed`` unless the drill ``record`` has ``phase``, passed, its detail
    mentions ``contains``, and the record's figure ``within=(name, limit)`` is measured and
    at most the limit. The message tells what the drill saw instead: the phase's detail, or,
    when the drill never reached it, the phase that failed before it."""
    __tracebackhide__ = True
    found = [p for p in record.phases if p.name == phase]
    seen: str | None = None
    if not found:
        done = ", ".join(p.name for p in record.phases) or "none"
        seen = (f"the drill never reached {phase!r} (phases done: {done});"
                f" {_first_failed(record)}")
    elif not found[0].ok or (contains and contains not in found[0].detail):
        seen = f"{phase}: {found[0].detail}"
    elif within is not None:
        value = getattr(record, within[0], None)
        if not isinstance(value, int | float) or value > within[1]:
            shown = "unmeasured" if value is None else f"{value:.3f} s"
            seen = f"{within[0].replace('_', ' ')} {shown} (limit {within[1]:g} s)"
    if seen is not None:
        raise CheckFailed(component="drill", target=record.target, seen=seen,
                          expected=expected, next_steps=(
                              f"read the drill record of {record.drill} under reports/drills/",))


def require_verdict(record: Any) -> None:
    """Raise ``CheckFailed`` unless the drill record's own verdict is ``pass``: the scenario
    fails exactly when its record does, naming the failed phase."""
    __tracebackhide__ = True
    if record.verdict != "pass":
        raise CheckFailed(component="drill", target=record.target,
                          seen=f"the drill record says {record.verdict.upper()}:"
                               f" {_first_failed(record)}",
                          expected="every phase passed, the figures within the limits",
                          next_steps=(f"read the drill record of {record.drill} under"
                                      " reports/drills/",))


def require_observed(result: ProbeResult, **expected: object) -> ProbeResult:
    """Raise ``CheckFailed`` unless the probe recorded each of ``expected``'s values
    (whether or not the probe itself passed: for checks that must refuse)."""
    __tracebackhide__ = True
    wrong = {k: result.observed.get(k) for k, v in expected.items()
             if result.observed.get(k) != v}
    if wrong:
        raise CheckFailed(
            component=result.component, target=result.target,
            seen=", ".join(f"{k} = {v!r}" for k, v in wrong.items())
            + (f" ({result.problem})" if result.problem else ""),
            expected=", ".join(f"{k} = {v!r}" for k, v in expected.items()),
            next_steps=next_steps(result.advice or result.component),
        )
    return result
