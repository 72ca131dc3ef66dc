"""What a collected item says about its scenario: bound or not, its sections, tags, cadence,
tier and the drills it runs, read from pytest-bdd's template."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import pytest
from pytest_bdd.parser import ScenarioTemplate
from pytest_bdd.scenario import scenario_wrapper_template_registry
from pytest_bdd.steps import StepFunctionContext, step_function_context_registry

from runbook import features
from runbook.reporting.summary import CADENCES

TIERS = ("critical", "warning", "info")
#: Set on a step definition whose check waits on a queue's worker (``waits_on_workers``).
_WAITS_ON_WORKERS = "__runbook_waits_on_workers__"
#: The components a step definition's check cannot do without (``needs``).
_NEEDS = "__runbook_needs__"
#: An argument of the step and the components each of its values needs (``needs(by=...)``).
_NEEDS_BY = "__runbook_needs_by__"
#: What the check asks while a component it needs is down (``needs(meanwhile=...)``).
_MEANWHILE = "__runbook_meanwhile__"
F = TypeVar("F", bound=Callable[..., object])


def waits_on_workers(step: F) -> F:
    """Mark a step definition (under its ``@when``) whose check waits on a queue's worker:
    a canary job, a journey through a queue. A synthetic run asks every queue's worker as it
    starts and runs the scenarios holding such a step last (``runbook.harness.fixtures``)."""
    setattr(step, _WAITS_ON_WORKERS, True)
    return step


def needs(*components: str, by: tuple[str, Mapping[str, tuple[str, ...]]] | None = None,
          meanwhile: Callable[..., object] | None = None) -> Callable[[F], F]:
    """Mark a step definition (under its ``@when``) whose check cannot do without these
    components (``runbook.reachability.ASKED_WITH``'s names: ``database``, ``web``, ...), or
    (``by``: an argument of the step and what each of its values needs) without those its
    argument names. A synthetic run asks each such component once as its first check starts,
    in a thread of its own, and runs the scenarios holding such a step after the others, so
    with one of them dead its asking overlaps the checks that need none
    (``runbook.harness.fixtures``). A step left unmarked loses nothing but that overlap: its
    check asks when it runs, or waits for what is left of the run's asking.

    ``meanwhile(target, timeouts)``: what the check asks about users' experience when one of
    ``components`` is down (what a user's login gets with the database gone). The run asks it
    as soon as the component is suspect (``Reachability.ask_meanwhile``), and the check takes
    that answer (``Reachability.asked``) instead of waiting for it when it runs."""

    def mark(step: F) -> F:
        setattr(step, _NEEDS, (*getattr(step, _NEEDS, ()), *components))
        if by is not None:
            setattr(step, _NEEDS_BY, by)
        if meanwhile is not None:
            setattr(step, _MEANWHILE, (*getattr(step, _MEANWHILE, ()),
                                       *((component, meanwhile) for component in components)))
        return step

    return mark


def worker_waiting_steps() -> list[StepFunctionContext]:
    """The step definitions registered now that are marked ``waits_on_workers``."""
    return [context for context in list(step_function_context_registry.values())
            if getattr(context.step_func, _WAITS_ON_WORKERS, False)]


def needing_steps() -> list[StepFunctionContext]:
    """The step definitions registered now that are marked with ``needs``."""
    return [context for context in list(step_function_context_registry.values())
            if getattr(context.step_func, _NEEDS, ())
            or getattr(context.step_func, _NEEDS_BY, None)]


def _bound(item: pytest.Item, marked: list[StepFunctionContext]
           ) -> list[tuple[StepFunctionContext, str]]:
    """The scenario's steps (an outline's row filled in) bound to one of the ``marked`` step
    definitions: each definition with the step's text."""
    found = template(item)
    if found is None:
        return []
    return [(context, step.name) for step in found.render(example_row(item)).steps
            for context in marked
            if (context.type is None or context.type == step.type)
            and context.parser.is_matching(step.name)]


def waits_on_a_worker(item: pytest.Item, marked: list[StepFunctionContext]) -> bool:
    """Whether one of the scenario's steps is bound to one of the ``marked`` step
    definitions (``worker_waiting_steps``, listed once per collection)."""
    return bool(_bound(item, marked))


@dataclass(frozen=True)
class Needs:
    """What a scenario's steps are marked as needing (``needs``): the components, in the
    order the marks name them, and what they ask while one of those is down
    (``(component, ask)`` pairs, from ``meanwhile``)."""

    components: tuple[str, ...] = ()
    meanwhile: tuple[tuple[str, Callable[..., object]], ...] = ()


def components_needed(item: pytest.Item, marked: list[StepFunctionContext]) -> Needs:
    """What the scenario's steps are marked as needing (``needs``; ``marked`` is
    ``needing_steps``, listed once per collection), its steps bound once."""
    found: list[str] = []
    meanwhile: list[tuple[str, Callable[..., object]]] = []
    for context, text in _bound(item, marked):
        found += getattr(context.step_func, _NEEDS, ())
        meanwhile += getattr(context.step_func, _MEANWHILE, ())
        by: tuple[str, Mapping[str, tuple[str, ...]]] | None = getattr(
            context.step_func, _NEEDS_BY, None)
        if by is not None:
            argument, needed = by
            value = (context.parser.parse_arguments(text) or {}).get(argument)
            found += needed.get(str(value), ())
    return Needs(tuple(dict.fromkeys(found)), tuple(dict.fromkeys(meanwhile)))


def template(item: pytest.Item) -> ScenarioTemplate | None:
    function = getattr(item, "obj", None)
    return scenario_wrapper_template_registry.get(function) if callable(function) else None


def is_scenario(item: pytest.Item) -> bool:
    return template(item) is not None


def sections(item: pytest.Item) -> tuple[str, ...]:
    """The ``@runbook:`` sections of a scenario, its own before its feature's."""
    found = template(item)
    if found is None:
        return ()
    own = sorted(t.split(":", 1)[1] for t in found.tags if t.startswith("runbook:"))
    inherited = sorted(t.split(":", 1)[1] for t in found.feature.tags
                       if t.startswith("runbook:"))
    return tuple(dict.fromkeys(own + inherited))


def tags(item: pytest.Item) -> tuple[str, ...]:
    """The scenario's own tags, then its feature's, as written (``runbook:...`` included)."""
    found = template(item)
    if found is None:
        return ()
    return tuple(dict.fromkeys(sorted(found.tags) + sorted(found.feature.tags)))


def cadence(item: pytest.Item) -> str | None:
    return next((c for c in CADENCES if item.get_closest_marker(c)), None)


def tier(item: pytest.Item) -> str | None:
    return next((t for t in TIERS if item.get_closest_marker(t)), None)


def example_row(item: pytest.Item) -> dict[str, str]:
    """An outline's example row for this item ({} for a plain scenario)."""
    callspec = getattr(item, "callspec", None)
    row = callspec.params.get("_pytest_bdd_example") if callspec is not None else None
    return dict(row or {})


def drills(item: pytest.Item) -> tuple[str, ...]:
    """The drills a scenario runs (its step's quoted name, an outline's from its row)."""
    found = template(item)
    if found is None:
        return ()
    return features.drill_names((step.name for step in found.steps), example_row(item) or None)


def names(item: pytest.Item) -> tuple[str, str]:
    """(feature, scenario) as the feature file names them, an outline's row filled in."""
    found = template(item)
    if found is None:
        return "", item.name
    return found.feature.name, found.render(example_row(item)).name
