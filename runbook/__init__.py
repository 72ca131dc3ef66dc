"""The LegacyVideo operations runbook as a library: targets, probes, the sandbox, drills.

The library never imports pytest or allure: the pytest side, shipped in the same package
(``runbook.harness``, the plugin, and ``runbook.steps``, the step definitions binding
``runbook/features/``), calls into it, never the other way round.
"""

from __future__ import annotations

__version__ = "0.1.0"
