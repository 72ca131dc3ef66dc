"""Disaster Recovery > Data Loss Scenarios > S3 Data Loss on the target's own bucket, limited to
canary objects: written under a reserved prefix (``runbook-canary/dr-<drill id>/``), half of
them deleted and half overwritten, then brought back from their versions (step 2, "check S3
versioning"). Judged against the "Database failure" row (the runbook's table has no S3 row).

A bucket without versioning fails the drill before anything is written, naming the gap: the
runbook's step 2 assumes versioning, and without it a deleted video is gone. Objects outside
the prefix are never touched; the "left as found" phase compares their listing (keys,
version ids, ETags) before and after, and every canary version is removed at the end.
"""

from __future__ import annotations

import time
from typing import Any

from runbook.drills.canaries import (
    CanaryReport,
    put_s3_canary,
    remove_s3_canaries,
    s3_prefix,
)
from runbook.drills.engine import Evidence
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.real_target import SECTION, RealTargetDrill
from runbook.drills.incidents.restore_test import ALL_PLATFORMS
from runbook.drills.incidents.s3_data_loss import (
    canary_objects,
    lose_objects,
    objects_lost,
    restore_version,
)
from runbook.drills.incidents.steps import StepLog, output
from runbook.errors import SandboxError
from runbook.platforms.base import library_call, record
from runbook.probes import storage as s3_probe
from runbook.results import Activity, ProbeResult

CANARIES = 4


@fault("dr-s3-canaries-lost", "the drill's canary objects deleted and overwritten in the"
       " target's bucket", platforms=ALL_PLATFORMS)
class CanaryObjectsLost:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            s3 = s3_probe.client(context.target, context.timeouts)
            bucket = str(params["bucket"])
            lose_objects(s3, bucket, params["deleted"], params["overwritten"])
            return True, (f"{len(params['deleted'])} canary objects deleted,"
                          f" {len(params['overwritten'])} overwritten (under"
                          f" {params['prefix']} only)"), ""

        return record("lose the canary objects", library_call(
            "boto3 s3.delete_object, s3.put_object", params["prefix"]), body,
            context.redactor())

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            if "bucket" not in params:
                return True, "no canary object was written", ""
            s3 = s3_probe.client(context.target, context.timeouts)
            removed = remove_s3_canaries(s3, str(params["bucket"]), str(params["prefix"]))
            return True, f"{removed} canary versions removed", ""

        return record("remove the canary objects", library_call(
            "runbook.drills.canaries.remove_s3_canaries", params.get("prefix")), body,
            context.redactor())


class S3CanaryLoss(RealTargetDrill):
    name = "s3-canary-loss"
    section = f"{SECTION} > Data Loss Scenarios > S3 Data Loss"
    fault = "dr-s3-canaries-lost"
    description = ("canary objects in the target's bucket deleted and overwritten; restored"
                   " from their versions")
    needs = ("DATABASE_URL", "S3_BUCKET")
    uses_bucket = True
    notes = ("the runbook's RTO/RPO table has no S3 row: judged against the 'Database"
             " failure' row (the nearest data store); add an S3 row to the runbook",)

    def _s3(self) -> Any:
        return s3_probe.client(self.context.target, self.context.timeouts)

    def prepare(self) -> tuple[str, Evidence]:
        target, run = self.context.target, self.run
        bucket = target.require("S3_BUCKET")
        s3 = self._s3()
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status") or "never enabled"
        run.drill.evidence["versioning"] = status
        if status != "Enabled":
            raise SandboxError(
                f"the bucket {bucket} has no versioning (status: {status}): a deleted or"
                " overwritten object cannot come back, and the runbook's S3 Data Loss step 2"
                " (check S3 versioning) assumes it; enable versioning on the bucket (nothing"
                " was written)")
        run.params.update(bucket=bucket, prefix=s3_prefix(run.drill_id))
        canaries = []
        for _ in range(CANARIES):
            canaries.append(run.ledger.add(put_s3_canary(s3, bucket, run.drill_id,
                                                         run.ledger.next_seq())))
            time.sleep(0.05)
        keys = [c.key for c in canaries]
        run.params.update(deleted=keys[0::2], overwritten=keys[1::2])
        return (f"{len(canaries)} canary objects under s3://{bucket}/{run.params['prefix']}"
                f" (versioning {status})"), [{"canaries": [c.evidence() for c in canaries]}]

    def _objects(self) -> ProbeResult:
        return canary_objects(self.context, self.run.ledger.canaries, self.run.params["bucket"])

    def detect(self) -> ProbeResult:
        return self._objects()

    def verify(self) -> ProbeResult:
        return self._objects()

    def runbook_steps(self) -> list[Activity]:
        s3, bucket = self._s3(), self.run.params["bucket"]
        canaries = self.run.ledger.canaries
        book = StepLog(self.context)
        restored: list[dict[str, Any]] = []

        def versions() -> tuple[bool, str, str]:
            status = s3.get_bucket_versioning(Bucket=bucket).get("Status", "never enabled")
            restored.extend(restore_version(s3, bucket, canary) for canary in canaries)
            self.run.facts["versions"] = restored
            done = sum(1 for r in restored if r.get("intact"))
            return True, output(f"versioning {status} on {bucket}: {done} of {len(canaries)}"
                                " canary objects back as written (previous versions)"), ""

        book.step("2. check S3 versioning and restore the previous versions",
                  library_call("boto3 s3.list_object_versions, s3.delete_object,"
                               " s3.copy_object", self.run.params["prefix"]), versions,
                  runbook_says="check S3 versioning if enabled")
        book.step("3. notify affected users (who they are)", (), lambda: (True, output(
            "none: only the drill's canary objects were lost"), ""),
            runbook_says="notify affected users")
        return book.activities

    def integrity(self) -> tuple[bool, str, Evidence]:
        found = self._objects()
        versions = self.run.facts.get("versions", [])
        return found.ok, (f"{len(versions)} canary objects: SHA-256 as written, version ids"
                          " recorded" if found.ok else found.problem), [
            {"objects": found.observed.get("objects"), "restorations": versions}]

    def data_loss(self) -> CanaryReport | None:
        return objects_lost(self.run, self.run.params["bucket"])

    def cleanup(self) -> list[str]:
        params = self.run.params
        if "bucket" not in params:
            return []
        self.run.facts["canary_versions_removed"] = remove_s3_canaries(
            self._s3(), params["bucket"], params["prefix"])
        return []


__all__ = ["CanaryObjectsLost", "S3CanaryLoss"]
