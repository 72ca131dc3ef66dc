"""The bound scenarios' pytest wiring where pytest runs them from the package (``runbook
check``; ``pytest runbook/steps/test_runbook.py``, which finds ``runbook/pytest.ini``): the
harness plugin and the step modules, registered as a root conftest registers them."""

pytest_plugins = ["runbook.steps.plugin"]
