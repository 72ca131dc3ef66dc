"""Disaster Recovery > Data Loss Scenarios > S3 Data Loss: canary objects deleted and
overwritten in the versioned bucket, restored from their previous versions; an object in an
unversioned bucket shown unrecoverable. The runbook's table has no S3 row: judged against
the "Database failure" row (the nearest data store), noted in the record.

``dr-s3-objects-lost``: the canaries under the drill's prefix deleted or overwritten, and
the one in the drill's own unversioned bucket deleted. The revert removes every canary
version and the unversioned bucket.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from runbook.drills.canaries import (
    Canary,
    CanaryReport,
    assess,
    object_state,
    put_s3_canary,
    remove_s3_canaries,
    s3_prefix,
)
from runbook.drills.dr_procedures import act, remove_bucket
from runbook.drills.engine import Evidence, Run
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.disaster import SECTION, DisasterIncident
from runbook.drills.incidents.steps import StepLog, output
from runbook.errors import SandboxError
from runbook.platforms.base import library_call
from runbook.probes import Verdict, run_probe
from runbook.probes import storage as s3_probe
from runbook.results import Activity, ProbeResult


@fault("dr-s3-objects-lost", "canary objects deleted and overwritten in S3")
class ObjectsLost:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            s3 = s3_probe.client(context.target, context.timeouts)
            bucket = str(params["bucket"])
            lose_objects(s3, bucket, params["deleted"], params["overwritten"])
            if params.get("unversioned_bucket"):
                s3.delete_object(Bucket=params["unversioned_bucket"],
                                 Key=params["unversioned_key"])
            return True, (f"{len(params['deleted'])} deleted, {len(params['overwritten'])}"
                          " overwritten in the versioned bucket; 1 deleted in the unversioned"
                          " one"), ""

        return act(context, "lose S3 objects",
                   library_call("boto3 s3.delete_object, s3.put_object", params["bucket"]),
                   body)

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        def body() -> tuple[bool, str, str]:
            s3 = s3_probe.client(context.target, context.timeouts)
            removed = remove_s3_canaries(s3, str(params["bucket"]), str(params["prefix"]))
            other = params.get("unversioned_bucket")
            if other:
                remove_bucket(s3, str(other))
            return True, f"{removed} canary versions removed; unversioned bucket gone", ""

        return act(context, "remove the S3 canaries",
                   library_call("runbook.drills.canaries.remove_s3_canaries",
                                params.get("prefix")), body)


def restore_version(s3: Any, bucket: str, canary: Canary) -> dict[str, Any]:
    """Bring ``canary``'s key back to the version it was written as: a delete marker on top
    is deleted (the original becomes current again, same version id); a newer version is
    covered by a copy of the original (``copy_object``: a new version, same bytes)."""
    listing = s3.list_object_versions(Bucket=bucket, Prefix=canary.key)
    versions = [v for v in listing.get("Versions", []) if v["Key"] == canary.key]
    markers = [m for m in listing.get("DeleteMarkers", []) if m["Key"] == canary.key]
    latest = next((v for v in (*versions, *markers) if v.get("IsLatest")), None)
    original = next((v for v in versions if v.get("VersionId") == canary.version_id), None)
    entry: dict[str, Any] = {"key": canary.key, "original_version_id": canary.version_id,
                             "sha256": canary.sha256,
                             "versions_seen": len(versions), "delete_markers": len(markers)}
    if original is None:
        entry["action"] = "none possible"
        return entry
    if latest is not None and latest in markers:
        s3.delete_object(Bucket=bucket, Key=canary.key, VersionId=latest["VersionId"])
        entry.update(action="delete marker removed", after_fault="deleted")
    elif latest is not None and latest.get("VersionId") != canary.version_id:
        s3.copy_object(Bucket=bucket, Key=canary.key, CopySource={
            "Bucket": bucket, "Key": canary.key, "VersionId": canary.version_id})
        entry.update(action="previous version copied over", after_fault="overwritten")
    else:
        entry.update(action="none needed", after_fault="intact")
    now = object_state(s3, bucket, canary.key)
    entry.update(restored_version_id=now.version_id, restored_sha256=now.sha256,
                 intact=now.intact(canary))
    return entry


def lose_objects(s3: Any, bucket: str, deleted: Sequence[str], overwritten: Sequence[str]
                 ) -> None:
    """The loss both S3 drills inject on canary keys: ``deleted`` deleted (a delete marker
    in a versioned bucket), ``overwritten`` covered by a new version."""
    for key in deleted:
        s3.delete_object(Bucket=bucket, Key=key)
    for key in overwritten:
        s3.put_object(Bucket=bucket, Key=key, Body=b"overwritten by the DR drill\n",
                      ContentType="text/plain")


def canary_objects(context: DrillContext, canaries: Sequence[Canary], bucket: str
                   ) -> ProbeResult:
    """Every canary object intact in ``bucket`` (its current version's SHA-256 as written)."""
    expected = f"{len(canaries)} canary objects intact (SHA-256 as written)"

    def body() -> Verdict:
        s3 = s3_probe.client(context.target, context.timeouts)
        states = {c.key: object_state(s3, bucket, c.key) for c in canaries}
        bad = [c.key for c in canaries if not states[c.key].intact(c)]
        return Verdict(not bad, expected, f"{len(bad)} canary objects missing or changed",
                       {"objects": [s.evidence() for s in states.values()]},
                       advice="s3-bucket")

    return run_probe("s3", "canary objects", context.target, context.timeouts, body,
                     expected=expected)


def objects_lost(run: Run, bucket: str) -> CanaryReport:
    """The canary objects lost (not intact now) and the RPO they measure."""
    fault_at = run.drill.fault_at
    assert fault_at is not None
    s3 = s3_probe.client(run.context.target, run.context.timeouts)
    alive = {c.key for c in run.ledger.canaries if object_state(s3, bucket, c.key).intact(c)}
    return assess(run.drill_id, run.ledger.canaries, alive, fault_at)


class S3DataLoss(DisasterIncident):
    name = "s3-data-loss"
    section = f"{SECTION} > Data Loss Scenarios > S3 Data Loss"
    scenario = "Database failure"
    fault = "dr-s3-objects-lost"
    description = ("canary objects deleted and overwritten; restored from their previous"
                   " versions; an object in an unversioned bucket shown unrecoverable")
    sandbox_only = ("it creates and deletes a bucket, which an application's S3 credentials"
                    " should not be allowed to do")
    restores = False
    notes = ("the runbook's RTO/RPO table has no S3 row: judged against the 'Database"
             " failure' row (the nearest data store); add an S3 row to the runbook",)

    def _s3(self) -> Any:
        return s3_probe.client(self.context.target, self.context.timeouts)

    def prepare(self) -> tuple[str, Evidence]:
        target, timeouts = self.context.target, self.context.timeouts
        run = self.run
        bucket_check = s3_probe.bucket(target, timeouts, require_versioning=True)
        if not bucket_check.ok:
            raise SandboxError(f"S3 bucket not ready for the drill: {bucket_check.problem}")
        bucket = target.require("S3_BUCKET")
        s3 = self._s3()
        canaries = []
        for _ in range(max(2, self.options.canaries)):
            canaries.append(run.ledger.add(put_s3_canary(s3, bucket, run.drill_id,
                                                         run.ledger.next_seq())))
            time.sleep(self.options.canary_interval_s)
        other = f"runbook-canary-unversioned-{run.drill_id}"
        region = target.s3_region or "us-east-1"
        config = ({} if region == "us-east-1"
                  else {"CreateBucketConfiguration": {"LocationConstraint": region}})
        run.params.update(bucket=bucket, prefix=s3_prefix(run.drill_id))
        s3.create_bucket(Bucket=other, **config)
        run.params["unversioned_bucket"] = other
        unversioned = put_s3_canary(s3, other, run.drill_id, 0, prefix=s3_prefix(run.drill_id))
        run.facts["unversioned"] = {**unversioned.evidence(), "bucket": other,
                                    "versioning": s3.get_bucket_versioning(Bucket=other)
                                    .get("Status", "never enabled")}
        keys = [c.key for c in canaries]
        run.params.update(deleted=keys[0::2], overwritten=keys[1::2],
                          unversioned_key=unversioned.key)
        return (f"{len(canaries)} canary objects in {bucket} (versioning"
                f" {bucket_check.observed.get('versioning')}), 1 in the unversioned bucket"
                f" {other}"), [{"bucket": bucket_check.evidence(),
                                 "canaries": [c.evidence() for c in canaries],
                                 "unversioned": run.facts["unversioned"]}]

    def _objects(self) -> ProbeResult:
        return canary_objects(self.context, self.run.ledger.canaries, self.run.params["bucket"])

    def detect(self) -> ProbeResult:
        return self._objects()

    def verify(self) -> ProbeResult:
        return self._objects()

    def runbook_steps(self) -> list[Activity]:
        s3 = self._s3()
        bucket, other = self.run.params["bucket"], self.run.params["unversioned_bucket"]
        canaries = self.run.ledger.canaries
        book = StepLog(self.context)
        book.step("1. videos are unrecoverable if not backed up", (), lambda: (True, output(
            "no S3 backup copy exists for this bucket: only versioning can bring objects"
            " back"), ""), runbook_says="videos are unrecoverable if not backed up")
        restored: list[dict[str, Any]] = []
        unrecoverable: list[tuple[str, str]] = []

        def versions() -> tuple[bool, str, str]:
            status = s3.get_bucket_versioning(Bucket=bucket).get("Status", "never enabled")
            for canary in canaries:
                restored.append(restore_version(s3, bucket, canary))
            other_status = s3.get_bucket_versioning(Bucket=other).get("Status",
                                                                       "never enabled")
            key = self.run.params["unversioned_key"]
            listing = s3.list_object_versions(Bucket=other, Prefix=key)
            if not [v for v in listing.get("Versions", []) if v["Key"] == key]:
                unrecoverable.append((other, key))
            self.run.facts["versions"] = restored
            self.run.facts["unrecoverable"] = [f"s3://{b}/{k}" for b, k in unrecoverable]
            done = sum(1 for r in restored if r.get("intact"))
            return True, output(f"versioning {status} on {bucket}: {done} of {len(canaries)}"
                                f" objects back as written (previous versions); versioning"
                                f" {other_status} on {other}: {len(unrecoverable)} object(s)"
                                " unrecoverable"), ""

        book.step("2. check S3 versioning and restore previous versions",
                  library_call("boto3 s3.list_object_versions, s3.delete_object,"
                               " s3.copy_object", bucket), versions,
                  runbook_says="check S3 versioning if enabled")

        def notify() -> tuple[bool, str, str]:
            # A video's key is videos/<owner id>/<video id>/<file>: its owner is affected.
            owners = sorted({k.split("/")[1] for _, k in unrecoverable
                             if k.startswith("videos/") and k.count("/") >= 2})
            shown = ", ".join(f"s3://{b}/{k}" for b, k in unrecoverable) or "none"
            return True, output(f"{len(unrecoverable)} unrecoverable object(s) to report:"
                                f" {shown}; users to notify: "
                                f"{', '.join(owners) or 'none (runbook canaries only)'}"), ""

        book.step("3. notify affected users (who they are)", (), notify,
                  runbook_says="notify affected users")
        return book.activities

    def integrity(self) -> tuple[bool, str, Evidence]:
        found = self._objects()
        versions = self.run.facts.get("versions", [])
        return found.ok, (f"{len(versions)} objects: SHA-256 as written, version ids recorded"
                          if found.ok else found.problem), [
            {"objects": found.observed.get("objects"), "restorations": versions,
             "unrecoverable": self.run.facts.get("unrecoverable", []),
             "unversioned": self.run.facts.get("unversioned")}]

    def data_loss(self) -> CanaryReport | None:
        return objects_lost(self.run, self.run.params["bucket"])

    def cleanup(self) -> list[str]:
        params = self.run.params
        if "bucket" not in params:
            return []
        s3 = self._s3()
        self.run.facts["canary_versions_removed"] = remove_s3_canaries(
            s3, params["bucket"], params["prefix"])
        if params.get("unversioned_bucket"):
            remove_bucket(s3, params["unversioned_bucket"])
        return []


__all__ = ["ObjectsLost", "S3DataLoss", "canary_objects", "lose_objects", "objects_lost",
           "restore_version"]
