"""One interface over where LegacyVideo runs: restart a service, read its logs, variables
and status (``docs/operations-contract.md``).

``platform_for(target, allow_changes=...)`` picks the adapter the target's ``PLATFORM``
names: ``sandbox`` (the embedded supervisor), ``railway`` (Railway CLI, Vercel CLI for web)
or ``kubernetes`` (kubectl). Read-only calls are always allowed; ``restart`` raises
``SafetyGateError`` unless the adapter was built with ``allow_changes=True``.
"""

from __future__ import annotations

from runbook.config import Platform, Target
from runbook.errors import ConfigError
from runbook.platforms.base import (
    KINDS,
    SERVICES,
    Completed,
    LogLines,
    NoPlatform,
    PlatformAdapter,
    PlatformCall,
    PlatformTimeouts,
    RecordingPlatform,
    RecordingRunner,
    Runner,
    Variables,
    error_lines,
    fingerprint,
    is_error_line,
    request_status,
)


def platform_for(target: Target, *, allow_changes: bool, runner: Runner | None = None
                 ) -> PlatformAdapter:
    """The adapter for ``target.platform``; ``runner`` starts its subprocesses (a default
    ``Runner`` when ``None``; the sandbox starts none). Command timeouts come from
    ``RUNBOOK_PLATFORM_TIMEOUT`` / ``RUNBOOK_RESTART_TIMEOUT``; Kubernetes names from
    ``RUNBOOK_K8S_*``. Raises ``ConfigError`` when the target declares no platform."""
    timeouts = PlatformTimeouts.from_env()
    if target.platform is None:
        raise ConfigError(
            f"target {target.name!r} declares no PLATFORM; set PLATFORM to sandbox, railway"
            " or kubernetes so the runbook knows how to restart services and read logs"
        )
    if target.platform is Platform.SANDBOX:
        # each adapter (and its CLI's helpers) is loaded only for its own platform
        from runbook.platforms.sandbox import SandboxPlatform

        return SandboxPlatform(target, allow_changes=allow_changes,
                               restart_timeout_s=timeouts.restart_s)
    if target.platform is Platform.RAILWAY:
        # each adapter (and its CLI's helpers) is loaded only for its own platform
        from runbook.platforms.railway import RailwayPlatform

        return RailwayPlatform(target, allow_changes=allow_changes, runner=runner,
                               timeouts=timeouts)
    # each adapter (and its CLI's helpers) is loaded only for its own platform
    from runbook.platforms.kubernetes import KubernetesNames, KubernetesPlatform

    return KubernetesPlatform(target, allow_changes=allow_changes, runner=runner,
                              names=KubernetesNames.from_env(), timeouts=timeouts)


__all__ = [
    "KINDS",
    "SERVICES",
    "Completed",
    "LogLines",
    "NoPlatform",
    "PlatformAdapter",
    "PlatformCall",
    "PlatformTimeouts",
    "RecordingPlatform",
    "RecordingRunner",
    "Runner",
    "Variables",
    "error_lines",
    "fingerprint",
    "is_error_line",
    "platform_for",
    "request_status",
]
