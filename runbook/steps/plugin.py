"""The executable runbook's pytest wiring: the harness plugin and every step module.

``conftest.py`` beside it registers it where pytest runs the shipped scenarios (``runbook
check``); the repository's root ``conftest.py`` registers it for the project's own tests, and a
team's own project on the package registers it the same way.
"""

from __future__ import annotations

import pytest

from runbook import startup

#: The harness and the step modules, registered in this order.
PARTS = (
    "runbook.harness.plugin",
    "runbook.steps.target",
    "runbook.steps.service",
    "runbook.steps.database",
    "runbook.steps.queue",
    "runbook.steps.storage",
    "runbook.steps.email",
    "runbook.steps.metrics",
    "runbook.steps.platform",
    "runbook.steps.users",
    "runbook.steps.drill",
    "runbook.steps.manual",
    "runbook.steps.maintenance",
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the parts as this plugin is registered, as ``pytest_plugins`` would, less
    the search of every installed distribution's entry points pytest makes for each name
    listed there (about 9 ms a name, and these names are modules). The garbage collector
    stays off from here until the scenarios are collected (``runbook.startup``)."""
    startup.pause()
    for name in PARTS:
        pluginmanager.import_plugin(name)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """The start-up is through (every module imported, every scenario bound, the target
    taken): the garbage collector on again, what exists now kept out of its passes."""
    startup.settle()


def pytest_unconfigure(config: pytest.Config) -> None:
    """A session that ended before its collection did (a usage error) leaves the collector
    as it found it too: a test process that runs sessions in itself goes on collecting."""
    startup.settle()
