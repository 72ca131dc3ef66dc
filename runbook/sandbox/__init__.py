"""The embedded LegacyVideo ("the sandbox"): real PostgreSQL, Redis, S3 (moto), the API,
worker, web front page and a Resend stand-in on loopback ports, run by a supervisor
process. See ``docs/sandbox-contract.md``.

``Sandbox(home).up()`` starts it, ``.down()`` stops it, ``.status()`` / ``.env()`` describe
it; ``restart`` / ``stop`` / ``start`` drive one component for drills.
"""

from __future__ import annotations

from runbook.sandbox.binaries import Binaries, PostgresBinaries, find_binaries, find_postgres
from runbook.sandbox.layout import COMPONENTS, Layout, default_home
from runbook.sandbox.stack import (
    AUTO_RESTARTED,
    STATES,
    ComponentStatus,
    ExitInfo,
    Sandbox,
    SandboxStatus,
)

__all__ = [
    "AUTO_RESTARTED",
    "COMPONENTS",
    "STATES",
    "Binaries",
    "ComponentStatus",
    "ExitInfo",
    "Layout",
    "PostgresBinaries",
    "Sandbox",
    "SandboxStatus",
    "default_home",
    "find_binaries",
    "find_postgres",
]
