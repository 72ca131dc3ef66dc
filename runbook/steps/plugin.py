"""The executable runbook's pytest wiring: the harness plugin and every step module.

``conftest.py`` beside it registers it where pytest runs the shipped scenarios (``runbook
check``); the repository's root ``conftest.py`` registers it for the project's own tests, and a
team's own project on the package registers it the same way.
"""

pytest_plugins = [
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
]
