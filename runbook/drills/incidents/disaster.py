"""What the Disaster Recovery drills share: sandbox-only, canaries around a backup the drill
takes itself, the RPO measured from the canaries that survived, integrity against the
backup's figures, clean-up of every canary.

Every disaster here acts on what only the sandbox lets the runbook reach (the API's real
pid, the database's data directory and backups, the bucket's versions, the whole state
directory): each refuses any other target with ``SafetyGateError`` before anything is done.

Backups and the RPO: the drill writes ``canaries_before_backup`` canaries, takes a backup,
writes ``canaries`` more, and the fault comes. The canaries written before the backup
survive its restore and date the recovery point (the newest of them); those written after
it are lost, counted exactly. The backup's snapshot time is shown beside the RPO, not used
for it. When no canary survives the RPO is unmeasured, and the drill fails.

The end-to-end check: the seeded canary user (``canary@legacyvideo.test``, the sandbox's seed
password), who is in every backup (seeded before the first one).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import SecretStr

from runbook.config import Environment, Platform
from runbook.drills import dr_storage
from runbook.drills.canaries import (
    CanaryReport,
    CanaryWriter,
    Write,
    assess,
    remove_canaries,
    surviving_keys,
)
from runbook.drills.engine import DISASTER_RECOVERY, Check, Evidence, Incident, Run
from runbook.drills.faults import DrillContext
from runbook.errors import SafetyGateError, SandboxError
from runbook.figures import Figures, compare, read_figures
from runbook.probes import Verdict, e2e, run_probe
from runbook.results import ProbeResult
from runbook.sandbox import Sandbox
from runbook.sandbox.backups import BackupInfo, take_backup

SECTION = "Disaster Recovery"
#: The seeded user the default end-to-end check logs in as.
SEEDED_CANARY = "canary@legacyvideo.test"


@dataclass(frozen=True)
class DrillOptions:
    """How a disaster recovery drill writes its canaries: ``canaries_before_backup`` before
    the backup it takes, ``canaries`` after it (lost by the restore), one every
    ``canary_interval_s``."""

    canaries: int = 5
    canaries_before_backup: int = 2
    canary_interval_s: float = 0.1


def refuse_unless_sandbox(name: str, why: str, context: DrillContext) -> None:
    """Raise ``SafetyGateError`` (nothing touched) unless ``context`` is the sandbox."""
    target = context.target
    if target.environment is Environment.PRODUCTION:
        raise SafetyGateError(f"refused: the {name} drill never runs against production"
                              f" ({target.describe()})")
    if (target.environment is not Environment.SANDBOX or target.platform is not Platform.SANDBOX
            or context.platform.name != "sandbox"):
        raise SafetyGateError(f"refused: the {name} drill is sandbox-only ({why}); nothing"
                              f" was done to {target.describe()}")


def _failed(context: DrillContext, component: str, check: str, problem: str) -> ProbeResult:
    return run_probe(component, check, context.target, context.timeouts,
                     lambda: Verdict(False, check, problem), expected=check)


def seeded_check() -> Check:
    """The end-to-end check as the seeded canary user, the seed password read once (while
    the sandbox's state exists) and kept in memory: during a complete outage the check then
    sees the service down, not a missing secrets file."""
    kept: list[SecretStr] = []

    def check(context: DrillContext) -> ProbeResult:
        if not kept:
            try:
                kept.append(SecretStr(Sandbox(context.home).secrets().user_password))
            except SandboxError as exc:
                return _failed(context, "api", "end to end", str(exc))
        return e2e.round_trip(context.target, context.timeouts, SEEDED_CANARY, kept[0])

    return check


class DisasterIncident(Incident):
    """A data loss scenario of the runbook, rehearsed on the sandbox (see the module doc)."""

    kind = DISASTER_RECOVERY
    #: Why it can only run on the sandbox (said when refused).
    sandbox_only: ClassVar[str]
    #: The runbook's Recovery Time Objectives row it is judged by.
    scenario: ClassVar[str]
    #: Whether the drill restores a backup (which may bring back earlier drills' canaries).
    restores: ClassVar[bool] = True
    options: ClassVar[DrillOptions] = DrillOptions()

    @classmethod
    def refusal(cls, context: DrillContext) -> str | None:
        try:
            refuse_unless_sandbox(cls.name, cls.sandbox_only, context)
        except SafetyGateError as exc:
            return str(exc)
        return None

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        refuse_unless_sandbox(self.name, self.sandbox_only, run.context)
        run.params["drill_id"] = run.drill_id  # the revert, wherever it runs, finds its rows
        self.backup: BackupInfo | None = None
        self.before: Figures | None = None
        run.drill.evidence.update(scenario=self.scenario, objective_source=(
            f"RUNBOOK.md > Disaster Recovery > Recovery Time Objectives: {self.scenario}"),
            options={k: getattr(self.options, k) for k in (
                "canaries", "canaries_before_backup", "canary_interval_s")})

    @property
    def sandbox(self) -> Sandbox:
        return Sandbox(self.context.home)

    @property
    def work(self) -> Path:
        """This drill's private directory (0700) under the backup storage."""
        path = dr_storage.storage_root(self.context.home) / self.run.drill_id
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        os.chmod(path, 0o700)
        return path

    # -- canaries and the backup -------------------------------------------------------------

    def writer(self, write: Write) -> CanaryWriter:
        self.run.writer = CanaryWriter(self.run.ledger, write, self.options.canary_interval_s)
        return self.run.writer

    def backup_with_canaries(self, write: Write,
                             between: Callable[[], None] | None = None) -> None:
        """Canaries, a backup the drill takes, ``between`` (if any), more canaries."""
        writer = self.writer(write)
        writer.write_exactly(self.options.canaries_before_backup, first=True)
        self.backup = take_backup(self.sandbox, reason=f"drill {self.run.drill_id}",
                                  timeouts=self.context.timeouts)
        if between is not None:
            between()
        writer.write_exactly(self.options.canaries, first=False)
        damaged = self.backup.verify()
        if damaged:
            raise SandboxError(f"{damaged}: nothing to restore from, so nothing is injected")
        self.run.params["backup"] = str(self.backup.path)

    def backup_evidence(self) -> Evidence:
        assert self.backup is not None
        return [{"backup": self.backup.evidence(),
                 "canaries": [c.evidence() for c in self.run.ledger.canaries]}]

    def integrity_against_backup(self) -> tuple[bool, str, Evidence]:
        assert self.backup is not None
        after = read_figures(self.context.target.require("DATABASE_URL"), self.context.timeouts,
                             like=self.backup.figures)
        report = compare(self.backup.figures, after)
        detail = (f"{len(after.tables)} tables, {after.rows} rows up to the backup's snapshot"
                  " match its figures" if report.ok else report.problem())
        return report.ok, detail, [report.evidence()]

    # -- the engine's parts ------------------------------------------------------------------

    def data_loss(self) -> CanaryReport | None:
        fault_at = self.run.drill.fault_at
        assert fault_at is not None
        alive = surviving_keys(self.context.target, self.context.timeouts, self.run.drill_id)
        point = self.backup.taken_at if self.backup is not None else None
        return assess(self.run.drill_id, self.run.ledger.canaries, alive, fault_at,
                      recovery_point=point, failures=self.run.ledger.failures)

    def cleanup(self) -> list[str]:
        """Remove the canaries (after a restore, every drill's: a backup may have brought
        old ones back) and the backup this drill took itself (it holds canaries)."""
        removed = remove_canaries(self.context.target, self.context.timeouts,
                                  None if self.restores else self.run.drill_id)
        self.run.facts["canary_rows_removed"] = removed
        backup = self.backup
        if backup is not None and backup.reason == f"drill {self.run.drill_id}":
            backup.path.unlink(missing_ok=True)
            backup.metadata_path.unlink(missing_ok=True)
            self.run.facts["drill_backup_removed"] = backup.name
        return []

    def detect(self) -> ProbeResult:
        return self.run.steady(self.context)


__all__ = ["SEEDED_CANARY", "DisasterIncident", "DrillOptions", "refuse_unless_sandbox",
           "seeded_check"]
