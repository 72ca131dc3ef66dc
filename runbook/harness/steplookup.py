"""pytest-bdd's search for the definitions of a step, indexed once per session.

pytest-bdd (9.0) looks up each step of each scenario as it runs: it asks pytest, for every
fixture name registered (about 180 in a run of the runbook), which definitions the
scenario's node sees, keeps the step definitions among them and tries each one's parser on
the step's text. A run of 38 scenarios asks about 22,000 times, for a third of the CPU the
run spends outside its probes (a round of ``runbook watch`` most of all).

This part answers the same question from an index, installed in pytest-bdd's place
(``pytest_bdd.scenario.find_fixturedefs_for_step``) for the session:

* the step definitions a scenario's parent node (its module, or class) sees are listed once
  per parent, in the order pytest-bdd finds them. Step definitions are registered on
  modules, classes or the session, never on a single scenario, so a scenario sees what its
  parent sees;
* each step's answer (its kind and text, under that parent) is kept for the session;
* both are listed again when a step definition is registered after they were made.

``tests/test_step_lookup.py`` compares the answers with pytest-bdd's own for every step of
every shipped scenario.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pytest
from pytest_bdd.compat import get_fixture_names, getfixturedefs
from pytest_bdd.steps import StepFunctionContext, step_function_context_registry

if TYPE_CHECKING:
    from _pytest.fixtures import FixtureDef, FixtureManager
    from _pytest.nodes import Node
    from pytest_bdd.parser import Step

# The module (``pytest_bdd.scenario`` as an attribute is the function it exports), typed
# loosely: its search is replaced for the session.
bdd_scenario: Any = importlib.import_module("pytest_bdd.scenario")
#: pytest-bdd's own search, put back when the session ends.
UNINDEXED: Callable[..., Iterable[FixtureDef[object]]] = bdd_scenario.find_fixturedefs_for_step


class StepIndex:
    """The step definitions each parent node sees, and each step's matches, for one
    session (``find`` answers as ``pytest_bdd.scenario.find_fixturedefs_for_step``)."""

    def __init__(self) -> None:
        self._registered = -1
        self._visible: dict[str, list[tuple[FixtureDef[object], StepFunctionContext]]] = {}
        self._matches: dict[tuple[str, str | None, str], list[FixtureDef[object]]] = {}

    def find(self, step: Step, fixturemanager: FixtureManager,
             node: Node) -> Iterable[FixtureDef[object]]:
        """The definitions (fixture definitions of step functions) that can parse ``step``
        and that ``node`` sees, in pytest-bdd's order."""
        registered = len(step_function_context_registry)
        if registered != self._registered:
            self._visible.clear()
            self._matches.clear()
            self._registered = registered
        parent = node.parent if node.parent is not None else node
        key = (parent.nodeid, step.type, step.name)
        found = self._matches.get(key)
        if found is None:
            found = [fixturedef for fixturedef, context in self._seen_by(parent, fixturemanager)
                     if (context.type is None or context.type == step.type)
                     and context.parser.is_matching(step.name)]
            self._matches[key] = found
        return list(found)

    def _seen_by(self, parent: Node, fixturemanager: FixtureManager
                 ) -> list[tuple[FixtureDef[object], StepFunctionContext]]:
        seen = self._visible.get(parent.nodeid)
        if seen is None:
            seen = []
            for name in get_fixture_names(fixturemanager=fixturemanager):
                for fixturedef in getfixturedefs(fixturemanager, name, parent) or []:
                    context = step_function_context_registry.get(fixturedef.func)
                    if context is not None:
                        seen.append((fixturedef, context))
            self._visible[parent.nodeid] = seen
        return seen


def pytest_configure(config: pytest.Config) -> None:
    bdd_scenario.find_fixturedefs_for_step = StepIndex().find


def pytest_unconfigure(config: pytest.Config) -> None:
    bdd_scenario.find_fixturedefs_for_step = UNINDEXED
