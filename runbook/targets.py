"""From a chosen target to a validated ``Target``, starting the sandbox when it is the one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from runbook.config import Target, TargetChoice


def resolve(choice: TargetChoice, home: Path,
            on_start: Callable[[float], None] | None = None) -> Target:
    """The target of ``choice``. The sandbox is started when it is not running at all;
    a running one is taken as it is, so a check sees a crashed component instead of
    repairing it first. ``on_start`` hears how long a start took.

    Raises ``ConfigError`` for bad variables and ``SandboxError`` when the sandbox fails.
    """
    if choice.kind != "sandbox":
        return Target.from_variables(choice.name, choice.variables, source=choice.source)
    # the sandbox layer is loaded only for a sandbox target
    from runbook.sandbox import Sandbox

    sandbox = Sandbox(home)
    if sandbox.supervisor_pid() is None:
        status = sandbox.up()
        if on_start is not None:
            started = [c.time_to_running_s or 0.0 for c in status.components.values()]
            on_start(max(started, default=0.0))
    return Target.from_variables("sandbox", sandbox.env(), source="sandbox",
                                 environment="sandbox", platform="sandbox")
