"""The embedded LegacyVideo ("the sandbox"): real PostgreSQL, Redis, S3 (moto), the API,
worker, web front page and a Resend stand-in on loopback ports, run by a supervisor
process. See ``docs/sandbox-contract.md``.

``Sandbox(home).up()`` starts it, ``.down()`` stops it, ``.status()`` / ``.env()`` describe
it; ``restart`` / ``stop`` / ``start`` drive one component for drills.

The names below are imported on first use: each service process
(``python -m runbook.sandbox.services.<name>``) imports this package first, and most need
none of the stack's machinery (the web front page and the mail stand-in would otherwise
spend most of their import on it, on every start and restart).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runbook.sandbox.binaries import (
        Binaries,
        PostgresBinaries,
        find_binaries,
        find_postgres,
    )
    from runbook.sandbox.layout import COMPONENTS, Layout, default_home
    from runbook.sandbox.stack import (
        AUTO_RESTARTED,
        STATES,
        ComponentStatus,
        ExitInfo,
        Sandbox,
        SandboxStatus,
    )

#: Where each exported name lives.
_HOMES = {
    **dict.fromkeys(("Binaries", "PostgresBinaries", "find_binaries", "find_postgres"),
                    "runbook.sandbox.binaries"),
    **dict.fromkeys(("COMPONENTS", "Layout", "default_home"), "runbook.sandbox.layout"),
    **dict.fromkeys(("AUTO_RESTARTED", "STATES", "ComponentStatus", "ExitInfo", "Sandbox",
                     "SandboxStatus"), "runbook.sandbox.stack"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


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
