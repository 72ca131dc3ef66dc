"""The executable runbook's pytest plugin (``harness.plugin``) and the helpers that need
pytest or allure (the library, ``runbook/``, never imports them)."""
