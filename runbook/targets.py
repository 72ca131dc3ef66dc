"""The run's target, resolved once: from a name to a validated ``Target`` and its gates.

``RunSpec.choose`` is the one place a target is chosen (``config.choose_target``) and
validated; ``RunSpec.target`` gives the ``Target`` itself, the sandbox started when it is the
one and is down. The ``runbook`` command does both before it starts pytest and hands the run
the spec, serialized, in the subprocess's environment (``RUNBOOK_RUN``: never on a command
line, as the target's variables always were); the harness, the restoration guard and a
drill's detection rounds read that back (``RunSpec.from_environ``) and never choose again.
Only a bare ``pytest`` run, with no spec in its environment, chooses from its own options,
through the same function (under ``pytest -n``, in each process: choosing starts nothing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from runbook.config import Environment, Target, TargetChoice, choose_target
from runbook.errors import ConfigError

#: The environment variable holding a run's serialized ``RunSpec`` (it holds the target's
#: secrets, as the target's own variables do: environment only, never argv or a file).
RUN_VARIABLE = "RUNBOOK_RUN"
_KINDS = ("sandbox", "env", "profile")


@dataclass(frozen=True)
class RunSpec:
    """What a run is for, decided once: the target as chosen (its variables, or the sandbox
    at ``home``), the environment its gates are judged by, and the gates' permissions."""

    kind: Literal["sandbox", "env", "profile"]
    name: str
    source: str
    environment: Environment
    home: Path
    #: The target's variables (empty for the sandbox, whose addresses are read from
    #: ``home`` each time: a disaster drill may rebuild it on new ports).
    variables: Mapping[str, str] = field(default_factory=dict)
    config_file: Path | None = None
    allow_drills: str | None = None
    allow_operations: str | None = None

    # -- the one resolution --------------------------------------------------------------

    @classmethod
    def choose(
        cls,
        name: str | None,
        *,
        home: Path,
        config_file: Path | None = None,
        allow_drills: str | None = None,
        allow_operations: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> RunSpec:
        """Choose the target ``name`` (``sandbox``, ``env``, a profile, or ``None`` for the
        default) and validate its variables; nothing is started.

        Raises ``ConfigError`` for an unknown target or bad variables.
        """
        choice = choose_target(name, environ=environ, config_file=config_file)
        spec = cls.of_choice(choice, home.resolve(), config_file=config_file,
                             allow_drills=allow_drills, allow_operations=allow_operations)
        if spec.kind != "sandbox":
            spec.target()  # validated now: a bad variable is one line before anything runs
        return spec

    @classmethod
    def of_choice(cls, choice: TargetChoice, home: Path, *, config_file: Path | None = None,
                  allow_drills: str | None = None, allow_operations: str | None = None
                  ) -> RunSpec:
        if choice.kind == "sandbox":
            environment = Environment.SANDBOX
        else:
            raw = choice.variables.get("RUNBOOK_ENVIRONMENT", "production")
            try:
                environment = Environment(raw)
            except ValueError:
                raise ConfigError(
                    f"target {choice.name!r}: RUNBOOK_ENVIRONMENT={raw!r} is not one of"
                    f" {', '.join(e.value for e in Environment)}; set one of them") from None
        return cls(kind=choice.kind, name=choice.name, source=choice.source,
                   environment=environment, home=home, variables=dict(choice.variables),
                   config_file=config_file.resolve() if config_file else None,
                   allow_drills=allow_drills, allow_operations=allow_operations)

    @classmethod
    def sandbox(cls, home: Path) -> RunSpec:
        """The embedded sandbox at ``home``, with no permission beyond the sandbox's own."""
        return cls(kind="sandbox", name="sandbox", source="the embedded sandbox",
                   environment=Environment.SANDBOX, home=home.resolve())

    @classmethod
    def of_target(cls, target: Target, home: Path) -> RunSpec:
        """A run against exactly ``target`` as the ``env`` target (a drill's detection
        rounds against the target it faulted), with no permission to change anything."""
        return cls(kind="env", name="env", source=f"the target of a drill ({target.name})",
                   environment=target.environment, home=home, variables=target.variables())

    # -- the target, now -------------------------------------------------------------------

    def target(self, on_start: Callable[[float], None] | None = None) -> Target:
        """The validated target. The sandbox's is read from its state directory (where it
        runs now), started when it is not running at all; a running one is taken as it is,
        so a check sees a crashed component instead of repairing it first. ``on_start``
        hears how long a start took."""
        if self.kind != "sandbox":
            return Target.from_variables(self.name, self.variables, source=self.source)
        # the sandbox layer is loaded only for a sandbox target
        from runbook.sandbox import Sandbox

        sandbox = Sandbox(self.home)
        if sandbox.supervisor_pid() is None:
            status = sandbox.up()
            if on_start is not None:
                started = [c.time_to_running_s or 0.0 for c in status.components.values()]
                on_start(max(started, default=0.0))
        return Target.from_variables("sandbox", sandbox.env(), source="sandbox",
                                     environment="sandbox", platform="sandbox")

    # -- handing it to the run -------------------------------------------------------------

    def to_environ(self) -> dict[str, str]:
        """The run's description for a subprocess's environment (holds secrets)."""
        document: dict[str, Any] = asdict(self)
        document.update(environment=self.environment.value, home=str(self.home),
                        config_file=str(self.config_file) if self.config_file else None,
                        variables=dict(self.variables))
        return {RUN_VARIABLE: json.dumps(document, sort_keys=True)}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> RunSpec | None:
        """The description the ``runbook`` command handed this process, or ``None``.
        Raises ``ConfigError`` when it is not one (set by hand, or by another version)."""
        raw = (os.environ if environ is None else environ).get(RUN_VARIABLE)
        if not raw:
            return None
        try:
            document = json.loads(raw)
            kind = document["kind"]
            if kind not in _KINDS:
                raise ValueError(f"kind {kind!r}")
            config_file = document.get("config_file")
            return cls(kind=cast(Literal["sandbox", "env", "profile"], kind),
                       name=str(document["name"]), source=str(document["source"]),
                       environment=Environment(document["environment"]),
                       home=Path(document["home"]),
                       variables={str(k): str(v) for k, v in document["variables"].items()},
                       config_file=Path(config_file) if config_file else None,
                       allow_drills=document.get("allow_drills"),
                       allow_operations=document.get("allow_operations"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"{RUN_VARIABLE} does not describe a run ({type(exc).__name__}: {exc}); unset"
                f" it and start the run with the runbook command") from None
