"""Safety gates: what may run against which environment.

* ``synthetic``: read-only or self-cleaning; allowed everywhere.
* ``operation``: changes state reversibly; never on production unless explicitly allowed.
* ``drill``: destructive; never on production; on staging only with ``--allow-drills staging``;
  on the sandbox always. A drill tagged ``@read-only`` (the database restore test: it reads
  the primary and writes only to a scratch database it creates) may also run on production
  with ``--allow-operations production``.
"""

from __future__ import annotations

from runbook.config import Environment
from runbook.errors import SafetyGateError

KINDS = ("synthetic", "operation", "drill")


def check_gate(
    kind: str,
    environment: Environment,
    *,
    target_name: str,
    allow_drills: str | None = None,
    allow_operations: str | None = None,
    read_only: bool = False,
) -> None:
    """Raise ``SafetyGateError`` unless a scenario of ``kind`` may run on ``environment``.

    ``allow_drills`` and ``allow_operations`` must name the target's environment exactly:
    a flag naming another environment opens nothing.
    """
    if kind == "synthetic":
        return
    if kind == "drill":
        if environment is Environment.PRODUCTION and read_only:
            if allow_operations != environment.value:
                raise SafetyGateError(
                    f"refused: this drill only reads production target {target_name!r} (a"
                    " restore test into a scratch database); it still needs"
                    " --allow-operations production")
            return
        if environment is Environment.PRODUCTION:
            raise SafetyGateError(
                f"refused: drills never run against production (target {target_name!r});"
                " run them against staging with --allow-drills staging, or the sandbox"
            )
        if environment is Environment.STAGING and allow_drills != environment.value:
            raise SafetyGateError(
                f"refused: drills against staging target {target_name!r} need"
                " --allow-drills staging"
            )
        return
    if kind == "operation":
        if environment is Environment.PRODUCTION and allow_operations != environment.value:
            raise SafetyGateError(
                f"refused: operations change state; against production target {target_name!r}"
                " they need --allow-operations production"
            )
        return
    raise SafetyGateError(f"refused: unknown scenario kind {kind!r}")
