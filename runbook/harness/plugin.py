"""The executable runbook's pytest plugin: register it with
``pytest_plugins = ["runbook.harness.plugin"]``.

Its parts, each a pytest plugin module:

* ``options``: the runbook's options, the run's state, tags as marks, selection by section
  or drill;
* ``gates``: the run's target, taken once (as the ``runbook`` command resolved it), and the
  safety gates, before any scenario runs;
* ``fixtures``: the target, its platform, timeouts, the canary pool, what drills act
  through;
* ``evidence``: what a step attaches to the report (``evidence(record)``), and the labels;
* ``outcomes``: each scenario's outcome in the runbook's words;
* ``summary``: the exit code, ``summary.json``, history and the terminal summary;
* ``steplookup``: pytest-bdd's search for a step's definitions, indexed once per session;
* ``parallel`` (used by ``gates``): pytest-xdist's controller gathers what workers ran.
"""

from __future__ import annotations

import pytest

#: The parts, registered in this order.
PARTS = (
    "runbook.harness.options",
    "runbook.harness.gates",
    "runbook.harness.fixtures",
    "runbook.harness.evidence",
    "runbook.harness.outcomes",
    "runbook.harness.summary",
    "runbook.harness.steplookup",
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the parts as this plugin is registered, as ``pytest_plugins`` would, less
    the search of every installed distribution's entry points pytest makes for each name
    listed there (about 9 ms a name, and these names are modules)."""
    for name in PARTS:
        pluginmanager.import_plugin(name)
