"""Steps about S3: access, canary objects, CORS, presigned uploads."""

from __future__ import annotations

from pytest_bdd import then, when

from runbook.actions import journeys
from runbook.actions.users import CanaryPool
from runbook.checks import require_ok
from runbook.config import Target
from runbook.harness.evidence import Evidence
from runbook.harness.scenarios import needs
from runbook.probes import storage
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts


@when("the on-call engineer tests S3 access", target_fixture="s3_bucket")
@needs("s3")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(storage.bucket(target, timeouts))


@then("the bucket answers with the configured credentials")
def _(s3_bucket: ProbeResult) -> None:
    require_ok(s3_bucket)


@when("the on-call engineer writes, reads and deletes a canary object",
      target_fixture="s3_canary")
@needs("s3")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(storage.canary_object(target, timeouts))


@then("the canary object comes back intact and leaves nothing behind")
def _(s3_canary: ProbeResult) -> None:
    require_ok(s3_canary)


@when("the on-call engineer checks the bucket's CORS configuration", target_fixture="s3_cors")
@needs("s3")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(storage.cors(target, timeouts))


@then("browsers on the web front end may upload to the bucket")
def _(s3_cors: ProbeResult) -> None:
    require_ok(s3_cors)


@when("the on-call engineer uploads a canary through a presigned URL",
      target_fixture="s3_presigned")
@needs("s3")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(storage.presigned_upload(target, timeouts))


@then("the presigned upload is stored and cleaned up")
def _(s3_presigned: ProbeResult) -> None:
    require_ok(s3_presigned)


@when("the on-call engineer uploads a canary video through the API",
      target_fixture="api_upload")
@needs("s3", "database")
def _(target: Target, timeouts: Timeouts, canary_pool: CanaryPool,
      evidence: Evidence) -> ProbeResult:
    return evidence(journeys.upload(target, timeouts, canary_pool))


@then("the upload is stored and cleaned up")
def _(api_upload: ProbeResult) -> None:
    require_ok(api_upload)
