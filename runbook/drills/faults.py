"""Faults as inject/revert pairs, registered by name.

A fault's parameters are plain JSON values (never secrets), so the restoration guard, a
separate process, can revert it from its ledger alone. ``inject`` and ``revert`` return
``Activity`` records; ``revert`` must be idempotent (it may run twice: once in-process and
once from the guard after a crash in between).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.config import Target
from runbook.errors import ConfigError
from runbook.platforms import PlatformAdapter
from runbook.redact import Redactor
from runbook.results import Activity
from runbook.timeouts import Timeouts


@dataclass(frozen=True)
class DrillContext:
    """What a fault needs to act on the target: set up once per drill."""

    target: Target
    timeouts: Timeouts
    platform: PlatformAdapter
    home: Path

    def redactor(self, *extra: str) -> Redactor:
        """A redactor knowing the target's secrets (and ``extra`` ones)."""
        return Redactor([*self.target.secret_values(), *extra])

    def refreshed(self) -> DrillContext:
        """This context with the target resolved again from the sandbox's state (a rebuilt
        sandbox listens on new ports; ``ADMIN_TOKEN`` may have been minted again). Other
        targets are given back as they are. Raises ``SandboxError`` when the sandbox's state
        is gone."""
        if self.target.platform is None or self.target.platform.value != "sandbox":
            return self
        from runbook.sandbox import Sandbox  # the sandbox layer, only for sandbox targets

        target = Target.from_variables("sandbox", Sandbox(self.home).env(), source="sandbox",
                                       environment="sandbox", platform="sandbox")
        return DrillContext(target, self.timeouts, self.platform, self.home)

    def state_directory(self) -> Path:
        """Where faults keep their own state (ids, pid files, logs): ``sandbox/drills/``."""
        directory = self.home / "sandbox" / "drills"
        directory.mkdir(parents=True, exist_ok=True)
        return directory


Params = Mapping[str, Any]
Action = Callable[[DrillContext, Params], Activity]


#: Whether a fault is still in effect: what shows it (one line), or ``None`` (it is gone, or
#: it cannot be told).
Presence = Callable[[DrillContext, Params], str | None]


@dataclass(frozen=True)
class FaultSpec:
    """A named fault: how to inject it, how to revert it, where it can be done, and (where
    it can be told) whether it is still in effect."""

    name: str
    description: str
    inject: Action
    revert: Action
    platforms: tuple[str, ...]
    present: Presence | None = None


REGISTRY: dict[str, FaultSpec] = {}


def fault(name: str, description: str, *, platforms: tuple[str, ...] = ("sandbox",)
          ) -> Callable[[type], type]:
    """Class decorator registering ``inject``/``revert`` static methods under ``name``."""

    def register(cls: type) -> type:
        REGISTRY[name] = FaultSpec(name, description, cls.inject, cls.revert,  # type: ignore[attr-defined]
                                   platforms, getattr(cls, "present", None))
        return cls

    return register


def get(name: str, platform: str) -> FaultSpec:
    """The fault ``name`` (registered by importing ``runbook.drills.catalog``);
    ``ConfigError`` when unknown or not possible on ``platform``."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise ConfigError(f"unknown fault {name!r}; known: {', '.join(sorted(REGISTRY))}")
    if platform not in spec.platforms:
        raise ConfigError(
            f"fault {name!r} cannot be injected on platform {platform!r} (only on"
            f" {', '.join(spec.platforms)})"
        )
    return spec
