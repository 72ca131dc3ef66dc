"""Incident Response > Upload Failures: uploads refused for three reasons.

- ``upload-failures-wrong-credentials``: the API's stored ``AWS_SECRET_ACCESS_KEY`` is wrong
  (kept across restarts): S3 answers its presigned URLs 403 ``SignatureDoesNotMatch``. The
  runbook's own S3 checks use the runbook's credentials and stay green; only an upload
  through the API shows it.
- ``upload-failures-bucket-policy``: a bucket policy statement denies ``s3:PutObject``.
- ``upload-failures-cors``: the bucket's CORS configuration deleted.

The section's five steps are checks; each check's fix is the runbook's own (the credentials
it says to verify set to the key S3 accepts, the permissions it says to check put right, the
CORS rule it says to check put back), so all three are restored by following the runbook.
What the runbook gets wrong is recorded as a note: ``aws s3 ls`` (step 3) cannot see a Deny
on PutObject, and presigning errors never reach the API's logs (step 5).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from runbook.actions import journeys
from runbook.config import Target
from runbook.drills.engine import Incident, fixed
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.steps import StepLog, differing, output
from runbook.platforms.base import library_call, record
from runbook.probes import combine, storage
from runbook.results import Activity, ProbeResult
from runbook.sandbox.services.s3 import cors_rule
from runbook.sections import UPLOAD_FAILURES
from runbook.timeouts import Timeouts

#: The ``Sid`` of the statement ``s3-bucket-policy-deny`` adds (and only it is removed).
DENY_SID = "RunbookDrillDenyUploads"
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


# -- the bucket's policy and CORS --------------------------------------------------------------


def bucket_policy(s3: Any, bucket: str) -> dict[str, Any] | None:
    """The bucket's policy document, or ``None`` when it has none. Raises ``ClientError``
    for anything but ``NoSuchBucketPolicy``."""
    try:
        text = s3.get_bucket_policy(Bucket=bucket)["Policy"]
    except ClientError as exc:
        if storage.error_code(exc)[0] == "NoSuchBucketPolicy":
            return None
        raise
    document = json.loads(text)
    return document if isinstance(document, dict) else None


def statements(policy: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The policy's statements as a list (a single statement may be given as an object)."""
    if not policy:
        return []
    found = policy.get("Statement", [])
    return [found] if isinstance(found, dict) else [s for s in found if isinstance(s, dict)]


def put_statements(s3: Any, bucket: str, policy: Mapping[str, Any] | None,
                   kept: list[dict[str, Any]]) -> str:
    """Write ``kept`` back as the bucket's policy, or delete the policy when empty."""
    if not kept:
        s3.delete_bucket_policy(Bucket=bucket)
        return "policy deleted (no statement left)"
    document = {"Version": (policy or {}).get("Version", "2012-10-17"), "Statement": kept}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(document))
    return f"policy written with {len(kept)} statement(s)"


def deny_statement(bucket: str, sid: str = DENY_SID) -> dict[str, Any]:
    """Deny ``s3:PutObject`` on every object of ``bucket`` to every principal."""
    return {"Sid": sid, "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/*"}


def _covers(patterns: object, value: str) -> bool:
    listed = [patterns] if isinstance(patterns, str) else patterns
    return isinstance(listed, list) and any(
        isinstance(p, str) and fnmatch.fnmatchcase(value, p) for p in listed)


def blocks_uploads(statement: Mapping[str, Any], bucket: str) -> bool:
    """An unconditional ``Deny`` of ``s3:PutObject`` on the bucket's upload keys."""
    return (statement.get("Effect") == "Deny" and "Condition" not in statement
            and _covers(statement.get("Action"), "s3:PutObject")
            and _covers(statement.get("Resource"), f"arn:aws:s3:::{bucket}/videos/x"))


def cors_rules(s3: Any, bucket: str) -> list[dict[str, Any]] | None:
    """The bucket's CORS rules, ``None`` when it has no CORS configuration."""
    try:
        return list(s3.get_bucket_cors(Bucket=bucket).get("CORSRules", []))
    except ClientError as exc:
        if storage.error_code(exc)[0] == "NoSuchCORSConfiguration":
            return None
        raise


def cors_allows_put(s3: Any, bucket: str, origin: str) -> bool:
    """Whether the bucket's CORS rules let ``origin`` PUT (no configuration: no)."""
    return any(storage.rule_allows_put(rule, origin) for rule in cors_rules(s3, bucket) or [])


def restore_cors(target: Target, timeouts: Timeouts) -> str:
    """Put the rule the bucket is created with (``WEB_URL`` may GET, PUT and HEAD) when no
    rule lets ``WEB_URL`` PUT; says what it did. Raises ``ClientError``."""
    bucket = target.require("S3_BUCKET")
    origin = storage.origin_of(target.require("WEB_URL"))
    s3 = storage.client(target, timeouts)
    if cors_allows_put(s3, bucket, origin):
        return f"CORS already lets {origin} PUT: left as it is"
    rules = [*(cors_rules(s3, bucket) or []), cors_rule(origin)]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    return f"CORS rule added: {origin} may GET, PUT and HEAD (headers *, max age 3000 s)"


# -- the faults ---------------------------------------------------------------------------------


@fault("s3-bucket-policy-deny",
       "a bucket policy statement denies s3:PutObject on the bucket's objects to everyone")
class BucketPolicyDeny:
    """``params``: ``sid`` (default ``RunbookDrillDenyUploads``)."""

    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        bucket = context.target.require("S3_BUCKET")
        sid = str(params.get("sid") or DENY_SID)

        def body() -> tuple[bool, str, str]:
            s3 = storage.client(context.target, context.timeouts)
            policy = bucket_policy(s3, bucket)
            kept = [s for s in statements(policy) if s.get("Sid") != sid]
            said = put_statements(s3, bucket, policy, [*kept, deny_statement(bucket, sid)])
            return True, f"{said}: Deny s3:PutObject on arn:aws:s3:::{bucket}/* ({sid})", ""

        return record("deny uploads in the bucket policy",
                      library_call("boto3 s3.put_bucket_policy", bucket), body,
                      context.redactor())

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        bucket = context.target.require("S3_BUCKET")
        sid = str(params.get("sid") or DENY_SID)

        def body() -> tuple[bool, str, str]:
            s3 = storage.client(context.target, context.timeouts)
            policy = bucket_policy(s3, bucket)
            found = statements(policy)
            kept = [s for s in found if s.get("Sid") != sid]
            if policy is None or len(kept) == len(found):
                return True, f"no statement {sid} in the bucket policy", ""
            return True, put_statements(s3, bucket, policy, kept), ""

        return record("remove the drill's statement from the bucket policy",
                      library_call("boto3 s3.put_bucket_policy", bucket), body,
                      context.redactor())

    @staticmethod
    def present(context: DrillContext, params: Params) -> str | None:
        bucket = context.target.require("S3_BUCKET")
        s3 = storage.client(context.target, context.timeouts)
        denies = [s.get("Sid") for s in statements(bucket_policy(s3, bucket))
                  if blocks_uploads(s, bucket)]
        return f"the bucket policy still denies uploads ({', '.join(map(str, denies))})" \
            if denies else None


@fault("s3-cors-missing", "the bucket's CORS configuration deleted")
class CorsMissing:
    """No parameters. What the configuration held is kept in the drill's state (it is no
    secret) and put back exactly by the revert."""

    @staticmethod
    def _saved(context: DrillContext) -> Any:
        return context.state_directory() / "s3-cors-before.json"

    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        bucket = context.target.require("S3_BUCKET")
        saved = CorsMissing._saved(context)

        def body() -> tuple[bool, str, str]:
            s3 = storage.client(context.target, context.timeouts)
            if not saved.exists():
                saved.write_text(json.dumps({"rules": cors_rules(s3, bucket)}),
                                 encoding="utf-8")
            s3.delete_bucket_cors(Bucket=bucket)
            return True, f"CORS configuration of {bucket} deleted", ""

        return record("delete the bucket's CORS configuration",
                      library_call("boto3 s3.delete_bucket_cors", bucket), body,
                      context.redactor())

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        bucket = context.target.require("S3_BUCKET")
        saved = CorsMissing._saved(context)

        def body() -> tuple[bool, str, str]:
            s3 = storage.client(context.target, context.timeouts)
            try:
                before = json.loads(saved.read_text(encoding="utf-8")).get("rules")
            except FileNotFoundError:
                return True, restore_cors(context.target, context.timeouts), ""
            if before:
                s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": before})
                said = f"CORS configuration put back as it was ({len(before)} rule(s))"
            else:
                s3.delete_bucket_cors(Bucket=bucket)
                said = "the bucket had no CORS configuration before the drill: none left"
            saved.unlink(missing_ok=True)
            return True, said, ""

        return record("put the bucket's CORS configuration back",
                      library_call("boto3 s3.put_bucket_cors", bucket), body,
                      context.redactor())

    @staticmethod
    def present(context: DrillContext, params: Params) -> str | None:
        bucket = context.target.require("S3_BUCKET")
        origin = storage.origin_of(context.target.require("WEB_URL"))
        s3 = storage.client(context.target, context.timeouts)
        return None if cors_allows_put(s3, bucket, origin) else \
            f"no CORS rule lets {origin} PUT"


# -- the game days ------------------------------------------------------------------------------


def uploads_work(target: Target, timeouts: Timeouts) -> ProbeResult:
    """Uploads work end to end: through the API, through a presigned URL of the runbook's
    own, and from the web front end's origin (CORS)."""
    return combine("s3", "uploads", [journeys.upload(target, timeouts),
                                      storage.presigned_upload(target, timeouts),
                                      storage.cors(target, timeouts)])


class _UploadFailures(Incident):
    section = UPLOAD_FAILURES.section
    notes = ("runbook: step 3 (aws s3 ls) lists with the runbook's credentials and cannot see"
             " a Deny on PutObject or the API's wrong key: test with a write (a presigned"
             " PUT); step 5: presigning is local to the API, so a wrong secret produces"
             " valid-looking URLs and no API log line: test an upload through the API",)

    def runbook_steps(self) -> list[Activity]:
        book = StepLog(self.context)
        target, timeouts = self.context.target, self.context.timeouts
        bucket = target.require("S3_BUCKET")
        accepted = target.variables()
        found = book.variables("api", "1. verify the S3 credentials",
                               runbook_says="railway variables --service api")
        differ, evidence = differing(found, accepted, CREDENTIALS)
        if found is not None:
            book.add(found.activity, "1. verify the S3 credentials",
                     runbook_says="railway variables --service api",
                     finding=(f"the API's {' and '.join(differ)} differ(s) from the key S3"
                              " accepts (the runbook's own S3 checks use it)" if differ else
                              "the API's AWS credentials are the key S3 accepts")
                     + f" {json.dumps(evidence)}")
        if differ:
            book.set_variables("1. (the fix) set the API's AWS credentials to the key S3"
                               " accepts (the platform restarts the API)", "api",
                               {name: accepted.get(name) for name in differ},
                               runbook_says="railway variables --set AWS_SECRET_ACCESS_KEY=..."
                                            " --service api")
        denies: list[dict[str, Any]] = []

        def permissions() -> tuple[bool, str, str]:
            policy = bucket_policy(storage.client(target, timeouts), bucket)
            every = statements(policy)
            denies.extend(s for s in every if blocks_uploads(s, bucket))
            shown = [{k: s.get(k) for k in ("Sid", "Effect", "Action", "Resource")}
                     for s in every]
            return True, output(f"{len(denies)} statement(s) deny s3:PutObject on the uploads"
                                if denies else f"no statement denies uploads ({len(every)}"
                                " statement(s))", shown), ""

        book.step("2. check the S3 bucket permissions",
                  library_call("boto3 s3.get_bucket_policy", bucket), permissions,
                  runbook_says="S3 bucket permissions (aws s3api get-bucket-policy)")
        if denies:
            def lift() -> tuple[bool, str, str]:
                s3 = storage.client(target, timeouts)
                policy = bucket_policy(s3, bucket)
                kept = [s for s in statements(policy) if not blocks_uploads(s, bucket)]
                said = put_statements(s3, bucket, policy, kept)
                return True, output(f"removed {', '.join(str(d.get('Sid')) for d in denies)}:"
                                    f" {said}"), ""

            book.step("2. (the fix) remove the statement denying uploads",
                      library_call("boto3 s3.put_bucket_policy", bucket), lift,
                      runbook_says="aws s3api put-bucket-policy")
        book.check("3. test S3 access", "runbook.probes.storage.bucket",
                   lambda: storage.bucket(target, timeouts),
                   lambda r: "the bucket lists with the runbook's credentials" if r.ok
                   else r.problem,
                   runbook_says="aws s3 ls s3://$S3_BUCKET --region $S3_REGION")
        cors = book.check("4. check the CORS configuration", "runbook.probes.storage.cors",
                          lambda: storage.cors(target, timeouts),
                          lambda r: "browsers on WEB_URL may PUT" if r.ok else r.problem,
                          runbook_says="aws s3api get-bucket-cors --bucket $S3_BUCKET")
        if cors is not None and not cors.ok:
            book.step("4. (the fix) put the CORS rule for the web front end back",
                      library_call("boto3 s3.put_bucket_cors", bucket),
                      lambda: (True, output(restore_cors(target, timeouts)), ""),
                      runbook_says="aws s3api put-bucket-cors")

        def api_logs() -> tuple[bool, str, str]:
            logs = self.context.platform.logs("api", since="15m", lines=1000)
            failing = [line for line in logs.lines if "upload-url" in line
                       and re.search(r"status=[45]\d\d", line)]
            errors = [line for line in logs.error_lines if "presign" in line.lower()
                      or "upload" in line.lower()]
            return logs.ok, output(
                f"{len(failing)} failed upload-URL requests, {len(errors)} presigning errors"
                + ("" if failing or errors else ": presigning is local to the API, so S3's"
                   " 403 never reaches its logs"), (failing + errors)[-10:]), logs.activity.error

        book.step("5. review API logs for presigned URL generation errors",
                  library_call("runbook.platforms.PlatformAdapter.logs", "api"), api_logs,
                  runbook_says="railway logs --service api")
        return book.activities

    def verify(self) -> ProbeResult:
        return uploads_work(self.context.target, self.context.timeouts)


class WrongCredentials(_UploadFailures):
    name = "upload-failures-wrong-credentials"
    fault = "service-variable"
    params = fixed(service="api", variable="AWS_SECRET_ACCESS_KEY", change="random")
    description = "the API's stored AWS_SECRET_ACCESS_KEY is wrong (kept across restarts)"
    signal = "an upload through the API's presigned URL refused (SignatureDoesNotMatch)"


class BucketPolicy(_UploadFailures):
    name = "upload-failures-bucket-policy"
    fault = "s3-bucket-policy-deny"
    params = fixed(sid=DENY_SID)
    description = "a bucket policy statement denies s3:PutObject to everyone"
    signal = "uploads through presigned URLs refused (AccessDenied)"


class Cors(_UploadFailures):
    name = "upload-failures-cors"
    fault = "s3-cors-missing"
    description = "the bucket's CORS configuration deleted"
    signal = "the bucket's CORS rules not letting the web front end PUT"
