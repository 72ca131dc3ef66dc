"""The LegacyVideo operations runbook as a library: targets, probes, the sandbox, drills.

This package never imports pytest or allure: the harness (``conftest.py``, ``steps/``)
calls into it, never the other way round.
"""

from __future__ import annotations

__version__ = "0.1.0"
