"""Step definitions: thin adapters from the runbook's Gherkin to the ``runbook`` library.

Modules are split by domain (service, database, queue, storage, platform, drill), registered
once from ``conftest.py``. Every step parses, calls one library function, and asserts or
returns a ``target_fixture``.
"""
