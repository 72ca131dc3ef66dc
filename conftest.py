"""pytest wiring for the executable runbook: the harness plugin and the step modules.

Everything else (options, the target and the safety gates, fixtures, evidence, outcomes,
the summary and the exit code) is the plugin, ``harness/plugin.py``; scenarios are bound in
``steps/test_runbook.py``.
"""

pytest_plugins = [
    "pytester",
    "harness.plugin",
    "steps.target",
    "steps.service",
    "steps.database",
    "steps.queue",
    "steps.storage",
    "steps.email",
    "steps.metrics",
    "steps.platform",
    "steps.users",
    "steps.drill",
    "steps.manual",
    "steps.maintenance",
]
