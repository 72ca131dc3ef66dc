"""pytest wiring for the project's own tests: pytester, and the executable runbook's plugin
(``runbook/steps/plugin.py``: the harness, ``runbook/harness/``, and the step modules).

Everything else (options, the target and the safety gates, fixtures, evidence, outcomes,
the summary and the exit code) is the harness plugin; scenarios are bound in
``runbook/steps/test_runbook.py``, which ``runbook check`` runs with ``runbook/pytest.ini``.
"""

pytest_plugins = ["pytester", "runbook.steps.plugin"]
