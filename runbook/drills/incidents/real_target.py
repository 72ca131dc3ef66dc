"""What the disaster recovery drills that may run on a real target (staging; the restore test
also production) share: they act only through the interfaces the runbook itself uses (a
``pg_dump``, a restore into a scratch database, canary rows and objects), refuse with the
reason where the target lacks what they need, and leave the target as found.

Left as found: before anything is done the drill reads the target's footprint, and after its
clean-up reads it again, whatever the outcome (the engine's "left as found" phase):

* the database: every table's row count and checksum (``dr_integrity``), rows
  created after the drill began left out (the users' own writes on a live staging), plus the
  canary rows left in it (none may be);
* the bucket (drills that use it): every version and delete marker outside the canary
  prefix (key, version id, ETag, latest or not) as a count and a digest, versions written
  after the drill began left out, plus the versions left under the canary prefix (none).

A row or object the users change during the drill shows as a difference: run these on
staging in a quiet window.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from runbook.config import Environment, Platform
from runbook.drills.canaries import CANARY_ACTION, S3_CANARY_PREFIX
from runbook.drills.engine import DISASTER_RECOVERY, Incident, Run
from runbook.drills.faults import DrillContext
from runbook.drills.restores import SCRATCH_VARIABLE, digest, scratch_for
from runbook.errors import SafetyGateError
from runbook.figures import read_figures
from runbook.probes import Verdict, combine, run_probe
from runbook.probes import storage as s3_probe
from runbook.probes.postgres import answers, connect
from runbook.results import ProbeResult

SECTION = "Disaster Recovery"


class RealTargetDrill(Incident):
    """A disaster recovery drill a real target can take (see the module doc)."""

    kind = DISASTER_RECOVERY
    #: The target's variables it needs (refused without them).
    needs: ClassVar[tuple[str, ...]] = ("DATABASE_URL",)
    #: Whether it restores into a scratch database (refused without one).
    needs_scratch: ClassVar[bool] = False
    #: Whether it reads (and leaves as found) the target's bucket.
    uses_bucket: ClassVar[bool] = False
    #: Whether it only reads the target (may run on production with
    #: --allow-operations production; its scenario is tagged @read-only).
    read_only: ClassVar[bool] = False
    #: The runbook's Recovery Time Objectives row it is judged by.
    scenario: ClassVar[str] = "Database failure"

    @classmethod
    def refusal(cls, context: DrillContext) -> str | None:
        target = context.target
        if target.environment is Environment.PRODUCTION and not cls.read_only:
            return (f"refused: the {cls.name} drill writes canaries; it never runs against"
                    f" production ({target.describe()})")
        missing = target.has(*cls.needs)
        if missing:
            return (f"refused: the {cls.name} drill needs {', '.join(missing)}, which"
                    f" {target.describe()} does not set; nothing was done")
        if cls.needs_scratch:
            try:
                scratch = scratch_for(target)
            except SafetyGateError as exc:
                return str(exc)
            if scratch is None:
                return (f"refused: the {cls.name} drill restores into a scratch database:"
                        f" set {SCRATCH_VARIABLE} (a runbook_restore_... database on a server"
                        f" the drill may create it on); nothing was done")
        return None

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        run.params["drill_id"] = run.drill_id
        self.began: datetime | None = None
        run.drill.evidence.update(
            scenario=self.scenario, objective_source=(
                f"RUNBOOK.md > Disaster Recovery > Recovery Time Objectives: {self.scenario}"),
            target_kind=("the embedded sandbox" if context_is_sandbox(run.context)
                         else "a real target: acted on only through pg_dump, a scratch"
                              " database and canary rows and objects"))

    # -- steady state and footprint -------------------------------------------------------

    def steady_check(self, context: DrillContext) -> ProbeResult | None:
        """The target's data services answer (read-only): its database, and its bucket when
        the drill uses it."""
        results = [answers(context.target, context.timeouts)]
        if self.uses_bucket:
            results.append(s3_probe.bucket(context.target, context.timeouts))
        if len(results) == 1:
            return results[0]
        return combine("data services", "the database and the bucket answer", results)

    def footprint(self) -> Mapping[str, Any] | None:
        target, timeouts = self.context.target, self.context.timeouts
        dsn = target.require("DATABASE_URL")
        if self.began is None:
            with connect(dsn, timeouts) as conn:
                row = conn.execute("select clock_timestamp()").fetchone()
            assert row is not None
            self.began = row[0]
        assert self.began is not None
        figures = read_figures(dsn, timeouts, cutoff=self.began)
        found: dict[str, Any] = {f"table {name}": f"{t.rows} rows, {t.checksum}"
                                 for name, t in sorted(figures.tables.items())}
        with connect(dsn, timeouts) as conn:
            row = conn.execute('SELECT count(*) FROM "AuditLog" WHERE "action" = %s',
                               (CANARY_ACTION,)).fetchone()
        found["canary rows left"] = int(row[0]) if row else None
        if self.uses_bucket:
            found.update(bucket_footprint(self.context, self.began))
        return found


def context_is_sandbox(context: DrillContext) -> bool:
    return (context.target.platform is Platform.SANDBOX
            and context.target.environment is Environment.SANDBOX)


def bucket_footprint(context: DrillContext, began: datetime) -> dict[str, Any]:
    """The bucket outside the canary prefix (versions and delete markers written before
    ``began``: count and digest) and the versions left under it."""
    s3 = s3_probe.client(context.target, context.timeouts)
    bucket = context.target.require("S3_BUCKET")
    entries: dict[str, str] = {}
    canaries = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for kind, listed in (("version", page.get("Versions", [])),
                             ("delete marker", page.get("DeleteMarkers", []))):
            for entry in listed:
                key = str(entry["Key"])
                if key.startswith(S3_CANARY_PREFIX):
                    canaries += 1
                    continue
                if entry["LastModified"] > began:
                    continue
                entries[f"{key}@{entry.get('VersionId')}"] = (
                    f"{kind} {entry.get('ETag', '')} latest={entry.get('IsLatest')}")
    return {"objects outside the canary prefix": f"{len(entries)} versions, digest"
                                                 f" {digest(entries)}",
            "canary versions left": canaries}


def probe(context: DrillContext, component: str, check: str, expected: str,
          body: Any) -> ProbeResult:
    """``run_probe`` on the drill's target."""
    return run_probe(component, check, context.target, context.timeouts, body,
                     expected=expected)


__all__ = ["SECTION", "RealTargetDrill", "Verdict", "bucket_footprint", "context_is_sandbox",
           "probe"]
