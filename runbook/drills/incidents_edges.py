"""Game days for Upload Failures, Email Not Sending, Data Breach / Security Incident and
Slow Query Performance: each fault detected by a synthetic check whose advice names the
runbook's subsection, the subsection's steps followed, the corrections the runbook lacks
applied, and the incident's own check green again before recovery is timed.

How a remedy is recorded: every runbook step is an ``Activity`` named after the step
("3. test S3 access ...") whose ``ok`` says the step could be carried out and whose output
starts with what it found ("finding: ..."); a correction the runbook does not have is named
"correction: ..." and is ok when it took effect; the last activity ("verify: ...") waits
for the incident's own check to be green (an upload through the API, an e-mail delivered,
no statement over the threshold) and is ok only then. The same check is each game day's
``verify``, so the engine counts service as recovered only when the end-to-end login round
trip (which exercises neither S3, e-mail nor the slowed table's writes) and it are green
together.

Checks here are synthetic checks like the probes (``ProbeResult``, bounded by the probe
deadline, self-cleaning): an upload through the API's presigned URL as a canary user, a
real ``send-email`` job to a canary mailbox, a burst of failed logins in the audit log, and
statements over the threshold in ``pg_stat_activity`` (``pg_stat_statements`` is not
bundled with the sandbox's fallback PostgreSQL build, so the live view is used).

Game days (``GAMEDAYS``), the fault each injects and its runbook defect:

- ``upload-failures-wrong-credentials``: the API restarted with a wrong
  ``AWS_SECRET_ACCESS_KEY`` (``service-env-override``); S3 answers its presigned URLs 403
  ``SignatureDoesNotMatch``. The runbook's own S3 checks, with the runbook's credentials,
  stay green; only an upload through the API shows it.
- ``upload-failures-bucket-policy``: a bucket policy Deny on ``s3:PutObject``.
- ``upload-failures-cors``: the bucket's CORS configuration deleted.
- ``email-not-sending-invalid-key``: the worker restarted with a wrong ``RESEND_API_KEY``.
- ``email-not-sending-unverified-sender``: the worker restarted with ``FROM_EMAIL`` on a
  domain Resend has not verified.
- ``data-breach``: canary accounts attacked from one address (``security-breach``).
- ``slow-query-performance``: a statement holding a write-blocking lock (``slow-query``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import re
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from bullmq import Queue
from redis.asyncio import Redis

from runbook.actions import queues as queue_actions
from runbook.actions import users
from runbook.clients import http_client
from runbook.config import Target
from runbook.drills import faults_edges
from runbook.drills.faults import DrillContext
from runbook.drills.faults_edges import ATTACKER, ATTACKER_IP
from runbook.drills.gameday import Check, GameDay
from runbook.drills.record import watch_until
from runbook.platforms.base import Variables, fingerprint, record
from runbook.probes import Verdict, combine, describe_error, run_probe, storage
from runbook.probes import email as email_probe
from runbook.probes import queues as queue_probe
from runbook.probes.postgres import connect
from runbook.redact import Redactor
from runbook.results import Activity, ProbeResult, Stopwatch
from runbook.sandbox import Sandbox
from runbook.timeouts import Timeouts

#: The address a canary video upload is made under (the API adds the user and video ids).
CANARY_VIDEO = "runbook-canary.mp4"
#: A non-secret sender on a domain the sandbox's Resend stand-in has not verified.
UNVERIFIED_SENDER = "noreply@legacyvideo-news.test"
#: How long a canary e-mail job may take to be completed or failed.
EMAIL_WITHIN_S = 10.0
#: The API's own slow-query threshold (``SLOW_QUERY_MS``' default): the check uses it too.
SLOW_QUERY_MS = 500
#: Failed logins from one address within the window that make an anomaly.
ANOMALY_FAILURES = 5
ANOMALY_WINDOW_S = 120.0
#: How long a remedy's final verification waits for the incident's check to be green.
VERIFY_WITHIN_S = 20.0
_OUTPUT_DATA_CHARS = 3000
_QUERY_TOOK = re.compile(r"query took (\d+)ms: (.*)$")
#: The API's slow-query threshold when SLOW_QUERY_MS is unset, and how many logins the
#: slow-query game day times to see one over it.
SLOW_QUERY_MS = 500
SYMPTOM_LOGINS = 5


# -- recording helpers -----------------------------------------------------------------------


def _output(finding: str, data: object = None) -> str:
    """``finding: ...`` first, then the evidence as compact JSON (trimmed)."""
    text = f"finding: {finding}"
    if data is not None:
        text += "\n" + json.dumps(data, default=str, separators=(",", ":"))[:_OUTPUT_DATA_CHARS]
    return text


class StepLog:
    """The activities of one remedy, in order. A step that raises is recorded as a failed
    activity (the error, redacted), never raised: the drill goes on to recovery and its
    restoration whatever one step did."""

    def __init__(self, context: DrillContext, *secrets_: str) -> None:
        self.context = context
        self.redact = Redactor([*context.target.secret_values(), *secrets_])
        self.activities: list[Activity] = []

    def step(self, name: str, command: Sequence[str],
             body: Callable[[], tuple[bool, str, str]]) -> Activity:
        """Run ``body`` (``ok, output, error``) as the step ``name`` and keep its record."""
        watch = Stopwatch()
        try:
            activity = record(name, command, body, self.redact)
        except Exception as exc:
            activity = Activity(name=name, command=tuple(self.redact(c) for c in command),
                                timing=watch.timing(), ok=False,
                                error=self.redact(describe_error(exc)))
        self.activities.append(activity)
        return activity

    def probe(self, name: str, command: Sequence[str], check: Callable[[], ProbeResult],
              finding: Callable[[ProbeResult], str]) -> ProbeResult | None:
        """Run a synthetic check as a runbook step: performed (ok) whatever it found; the
        finding and the check's evidence are the output. ``None`` when it raised."""
        seen: list[ProbeResult] = []

        def body() -> tuple[bool, str, str]:
            result = check()
            seen.append(result)
            return True, _output(finding(result), result.evidence()), ""

        self.step(name, command, body)
        return seen[0] if seen else None

    def add(self, activity: Activity, name: str | None = None) -> Activity:
        """Keep an activity made elsewhere (renamed to the runbook's step when given)."""
        if name is not None:
            activity = replace(activity, name=name)
        self.activities.append(activity)
        return activity

    def verify(self, name: str, check: Check, within_s: float = VERIFY_WITHIN_S) -> bool:
        """Wait, at most ``within_s``, for ``check`` to be green; ok only then."""
        def body() -> tuple[bool, str, str]:
            seen = watch_until(lambda: check(self.context), want_ok=True, timeout=within_s,
                               interval=0.2)
            return seen.ok, _output(
                f"green after {seen.elapsed_s:.1f} s ({seen.checks} checks)" if seen.ok
                else f"still failing after {within_s:g} s",
                {"observations": list(seen.observations)}), (
                "" if seen.ok else "; ".join(seen.observations))

        return self.step(name, ("verify", name.removeprefix("verify: ")), body).ok


def _variables(book: StepLog, service: str, step: str) -> Variables | None:
    """The platform's fingerprints of ``service``'s variables, kept as the step ``step``."""
    platform = book.context.platform
    try:
        found = platform.variables(service)
    except Exception as exc:
        error = describe_error(exc)
        book.step(step, ("variables", service), lambda: (False, "", error))
        return None
    return found


def _compare(found: Variables | None, target: Target, names: Iterable[str]
             ) -> tuple[list[str], dict[str, Any]]:
    """The variables among ``names`` whose fingerprint differs from (or is missing next to)
    the target's value, the value the runbook's own checks prove the provider accepts; and
    the evidence (fingerprints only)."""
    differ: list[str] = []
    evidence: dict[str, Any] = {}
    if found is None:  # unreadable: nothing to compare, so nothing to correct
        return differ, {"unreadable": list(names)}
    for name in names:
        mine = found.fingerprints.get(name)
        theirs = fingerprint(target.require(name))
        evidence[name] = {"service": mine, "accepted": theirs}
        if mine != theirs:
            differ.append(name)
    return differ, evidence


# -- Upload Failures: checks -----------------------------------------------------------------


def _s3_code(text: str) -> str:
    match = re.search(r"<Code>([^<]+)</Code>", text)
    return match.group(1) if match else ""


def upload_advice(code: str) -> str:
    """The advice key for an upload S3 refused with error ``code``: a signature or key
    problem points at the credentials, anything else at the bucket's permissions."""
    return "s3-presign" if code in ("SignatureDoesNotMatch", "InvalidAccessKeyId") \
        else "s3-upload-denied"


def api_upload(context: DrillContext) -> ProbeResult:
    """A video uploaded as a user does it: a canary user asks the API for an upload URL
    (``POST /api/videos/upload-url``), PUTs bytes to it with the web front end's
    ``Origin``, and the object is read back with the runbook's credentials. Records the
    statuses, S3's error code, the key (never the URL's query); removes the object (every
    version) and the canary (with its video row) whatever happened."""
    target, timeouts = context.target, context.timeouts
    api = target.require("API_URL")
    bucket = target.require("S3_BUCKET")
    expected = "an upload through a presigned URL from the API is stored"
    payload = f"legacyvideo-runbook canary upload {uuid.uuid4().hex}\n".encode()

    def body() -> Verdict:
        observed: dict[str, Any] = {"bucket": bucket}
        written = False
        key = ""
        s3 = storage.client(target, timeouts)
        try:
            with users.canary_user(target, timeouts) as canary, http_client(timeouts) as http:
                auth = {"Authorization": f"Bearer {canary.token.get_secret_value()}"}
                grant = http.post(f"{api}/api/videos/upload-url", headers=auth, json={
                    "filename": CANARY_VIDEO, "contentType": "video/mp4",
                    "title": "runbook canary (safe to delete)"})
                observed["upload_url_status"] = grant.status_code
                if grant.status_code != 200:
                    return Verdict(False, expected, "the API answered the upload-URL request"
                                   f" HTTP {grant.status_code}", observed, advice="s3-presign")
                answer = grant.json()
                key, url = str(answer["key"]), str(answer["uploadUrl"])
                parts = urlsplit(url)
                observed.update(key=key, url=f"{parts.scheme}://{parts.netloc}{parts.path}")
                headers = {"Content-Type": "video/mp4"}
                if target.web_url:
                    headers["Origin"] = storage.origin_of(target.web_url)
                started = time.monotonic()
                put = http.put(url, content=payload, headers=headers)
                observed["upload_ms"] = round((time.monotonic() - started) * 1000, 1)
                observed["upload_status"] = put.status_code
                written = put.status_code < 300
                if not written:
                    code = _s3_code(put.text)
                    observed["error_code"] = code or None
                    return Verdict(False, expected, "S3 refused the upload through the API's"
                                   f" presigned URL: HTTP {put.status_code}"
                                   f"{f' ({code})' if code else ''}", observed,
                                   advice=upload_advice(code))
                stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                observed["stored_sha256"] = hashlib.sha256(stored).hexdigest()[:16]
                if stored != payload:
                    return Verdict(False, expected, "the uploaded object reads back different",
                                   observed, advice="s3-presign")
                return Verdict(True, expected, observed=observed)
        except users.UserOperationFailed as exc:  # the API, not S3: say so
            return Verdict(False, expected, f"no canary user to upload as: {exc.seen}",
                           observed, advice="api")
        finally:
            if written and key:
                try:
                    observed["versions_deleted"] = storage.remove_all_versions(s3, bucket, key)
                except Exception as exc:
                    observed["left_behind"] = key
                    observed["cleanup_error"] = describe_error(exc)

    return run_probe("s3", "upload through the API", target, timeouts, body,
                     expected=expected)


def presigned_upload(context: DrillContext) -> ProbeResult:
    """``storage.presigned_upload`` (the runbook's credentials, a canary key); a 403 that
    is not a signature problem is advised as a permissions problem (``s3-upload-denied``)."""
    result = storage.presigned_upload(context.target, context.timeouts)
    if not result.ok and result.observed.get("upload_status") == 403:
        code = re.search(r"HTTP 403 \((\w+)\)", result.problem)
        return replace(result, advice=upload_advice(code.group(1) if code else ""))
    return result


def cors(context: DrillContext) -> ProbeResult:
    """``storage.cors``: the bucket's CORS rules let ``WEB_URL`` PUT."""
    return storage.cors(context.target, context.timeouts)


def uploads_work(context: DrillContext) -> ProbeResult:
    """Uploads work end to end: through the API, through a presigned URL of the runbook's
    own, and from the web front end's origin (CORS)."""
    return combine("s3", "uploads", [api_upload(context), presigned_upload(context),
                                      cors(context)])


# -- Upload Failures: the runbook's steps -----------------------------------------------------


def _covers(patterns: object, value: str) -> bool:
    listed = [patterns] if isinstance(patterns, str) else patterns
    return isinstance(listed, list) and any(
        isinstance(p, str) and fnmatch.fnmatchcase(value, p) for p in listed)


def blocks_uploads(statement: Mapping[str, Any], bucket: str) -> bool:
    """An unconditional ``Deny`` of ``s3:PutObject`` on the bucket's upload keys."""
    return (statement.get("Effect") == "Deny" and "Condition" not in statement
            and _covers(statement.get("Action"), "s3:PutObject")
            and _covers(statement.get("Resource"), f"arn:aws:s3:::{bucket}/videos/x"))


def upload_failures(context: DrillContext) -> list[Activity]:
    """Incident Response > Upload Failures, steps 1-5, then the corrections the findings
    call for (the runbook checks, it never says what to change): the API restarted with
    the IAM user's key, the blocking Deny removed from the bucket policy, the CORS rule
    put back. Ends by verifying that uploads work (``uploads_work``)."""
    book = StepLog(context)
    target, timeouts, platform = context.target, context.timeouts, context.platform
    bucket = target.require("S3_BUCKET")
    credentials = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

    found = _variables(book, "api", "1. verify the S3 credentials")
    differ, evidence = _compare(found, target, credentials)
    if found is not None:
        book.add(replace(found.activity, output=_output(
            f"the API's {' and '.join(differ)} {'differ' if len(differ) > 1 else 'differs'}"
            " from the key S3 accepts (step 3)" if differ
            else "the API's AWS credentials are the key S3 accepts", evidence)),
            name="1. verify the S3 credentials (railway variables --service api)")

    denies: list[dict[str, Any]] = []

    def permissions() -> tuple[bool, str, str]:
        policy = faults_edges.bucket_policy(storage.client(target, timeouts), bucket)
        every = faults_edges.statements(policy)
        denies.extend(s for s in every if blocks_uploads(s, bucket))
        shown = [{k: s.get(k) for k in ("Sid", "Effect", "Action", "Resource")} for s in every]
        return True, _output(
            f"{len(denies)} statement(s) deny s3:PutObject on the uploads" if denies
            else f"no statement denies uploads ({len(every)} statement(s))", shown), ""

    book.step("2. check the S3 bucket permissions",
              ("aws", "s3api", "get-bucket-policy", "--bucket", bucket), permissions)
    book.probe("3. test S3 access (aws s3 ls s3://$S3_BUCKET)",
               ("aws", "s3", "ls", f"s3://{bucket}", "--region", target.s3_region or ""),
               lambda: storage.bucket(target, timeouts),
               lambda r: "the bucket lists with the runbook's credentials" if r.ok
               else r.problem)
    book.probe("3. (correction) test S3 access with a write, not only a listing",
               ("aws", "s3", "cp", "-", f"s3://{bucket}/{storage.CANARY_PREFIX}..."),
               lambda: storage.canary_object(target, timeouts),
               lambda r: "a canary object is written, read and removed" if r.ok
               else f"{r.problem} (listing alone did not show it)")
    cors_result = book.probe("4. check the CORS configuration",
                             ("aws", "s3api", "get-bucket-cors", "--bucket", bucket),
                             lambda: storage.cors(target, timeouts),
                             lambda r: "browsers on WEB_URL may PUT" if r.ok else r.problem)

    def api_logs() -> tuple[bool, str, str]:
        logs = platform.logs("api", since="15m", lines=1000)
        failing = [line for line in logs.lines if "upload-url" in line
                   and re.search(r"status=[45]\d\d", line)]
        errors = [line for line in logs.error_lines if "presign" in line.lower()
                  or "upload" in line.lower()]
        return logs.ok, _output(
            f"{len(failing)} failed upload-URL requests, {len(errors)} presigning errors:"
            " presigning is local to the API, so S3's 403 never reaches its logs"
            if not (failing or errors) else
            f"{len(failing)} failed upload-URL requests, {len(errors)} presigning errors",
            (failing + errors)[-10:]), logs.activity.error

    book.step("5. review API logs for presigned URL generation errors",
              ("railway", "logs", "--service", "api"), api_logs)

    if differ:
        book.add(platform.restart("api"), name="correction: set the API's AWS credentials to"
                 " the IAM user's active key and restart the API (railway variables --set ...;"
                 " railway restart --service api)")
    if denies:
        def lift() -> tuple[bool, str, str]:
            s3 = storage.client(target, timeouts)
            policy = faults_edges.bucket_policy(s3, bucket)
            kept = [s for s in faults_edges.statements(policy) if not blocks_uploads(s, bucket)]
            said = faults_edges.put_statements(s3, bucket, policy, kept)
            return True, _output(f"removed {', '.join(str(d.get('Sid')) for d in denies)}:"
                                 f" {said}"), ""

        book.step("correction: remove the statement denying uploads from the bucket policy",
                  ("aws", "s3api", "put-bucket-policy", "--bucket", bucket), lift)
    if cors_result is not None and not cors_result.ok:
        book.step("4. (correction) put the expected CORS rule back",
                  ("aws", "s3api", "put-bucket-cors", "--bucket", bucket),
                  lambda: (True, _output(faults_edges.restore_cors(target, timeouts)), ""))
    book.verify("verify: uploads work again (through the API, presigned, CORS)", uploads_work)
    return book.activities


# -- Email Not Sending: checks ----------------------------------------------------------------


def email_advice(reason: str) -> str:
    """The advice key for a ``send-email`` job that failed with ``reason``."""
    if "API key" in reason or "(HTTP 401)" in reason:
        return "email-api-key"
    if "not verified" in reason or "(HTTP 403)" in reason:
        return "email-sender-domain"
    return "email"


async def _send_email_job(bull: Queue, job_id: str, to: str, within_s: float
                          ) -> dict[str, Any]:
    """Add a ``send-email`` job addressed to ``to`` and wait, at most ``within_s``, until the
    worker completes or fails it; what BullMQ then says about it."""
    failed_before = int((await bull.getJobCounts("failed")).get("failed", 0))
    await bull.add("send-email", {
        "to": to, "subject": "LegacyVideo runbook canary (safe to ignore)",
        "html": "<p>A synthetic check of LegacyVideo's e-mail; nobody reads this.</p>",
    }, {"jobId": job_id, "attempts": 1})
    started = time.monotonic()
    state = "unknown"
    while time.monotonic() - started < within_s:
        state = str(await bull.getJobState(job_id))
        if state in ("completed", "failed"):
            break
        await asyncio.sleep(0.02)
    job = await bull.getJob(job_id)
    value = job.returnvalue if job is not None else None
    return {
        "job_id": job_id, "state": state, "waited_ms": round((time.monotonic() - started) * 1000),
        "failed_reason": str(getattr(job, "failedReason", "") or "") if job else "",
        "email_id": value.get("id") if isinstance(value, Mapping) else None,
        "failed_before": failed_before,
        "failed_after": int((await bull.getJobCounts("failed")).get("failed", 0)),
    }


async def _remove_job(bull: Queue, connection: Redis, job_id: str, budget_s: float) -> bool:
    """Remove ``job_id`` (an active job is locked: retried until it ends or time is up)."""
    with_key = queue_probe.key("email", job_id)
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        if await bull.remove(job_id) == 1 or not await connection.exists(with_key):
            return not await connection.exists(with_key)
        await asyncio.sleep(0.1)
    return False


def canary_email_job_id() -> str:
    """A fresh canary job id for a ``send-email`` job (``runbook-canary-email-<hex>``)."""
    return f"{queue_probe.CANARY_ID_PREFIX}email-{uuid.uuid4().hex[:16]}"


def send_canary_email(target: Target, timeouts: Timeouts, *, keep: bool = False,
                      job_id: str | None = None, within_s: float = EMAIL_WITHIN_S
                      ) -> dict[str, Any]:
    """A real ``send-email`` job (``job_id``, else a fresh canary id) to a canary mailbox
    (``runbook-canary-<hex>@<FROM_EMAIL's domain>``) through the worker; the outcome as
    ``_send_email_job`` reports it, plus ``removed``. The job is removed afterwards unless
    ``keep`` (then the caller removes it: ``queue_actions.remove_jobs``)."""
    job_id = job_id or canary_email_job_id()
    to = users.canary_email(target)

    async def work(bull: Queue, connection: Redis) -> dict[str, Any]:
        outcome: dict[str, Any] = {"job_id": job_id, "to": to, "removed": False}
        try:
            outcome.update(await _send_email_job(bull, job_id, to, within_s))
        finally:
            if not keep:
                outcome["removed"] = await _remove_job(bull, connection, job_id,
                                                       timeouts.connect + timeouts.read)
        return outcome

    return queue_probe.run_async(target.require("REDIS_URL"), timeouts, "email", work)


def delivered(target: Target, timeouts: Timeouts, email_id: str, to: str) -> tuple[bool, str]:
    """Whether Resend (``GET /emails/{id}``, the target's key) has ``email_id`` delivered
    to ``to``; and what it said."""
    key = target.require("RESEND_API_KEY")
    with http_client(timeouts, headers={"Authorization": f"Bearer {key}"}) as http:
        answer = http.get(f"{target.resend_api_url.rstrip('/')}/emails/{email_id}")
    if answer.status_code != 200:
        return False, f"Resend answered HTTP {answer.status_code} for e-mail {email_id}"
    body = answer.json()
    event = str(body.get("last_event"))
    ok = event == "delivered" and to in (body.get("to") or [])
    return ok, f"e-mail {email_id} to {to}: {event}"


def email_delivery(context: DrillContext) -> ProbeResult:
    """A ``send-email`` job to a canary mailbox is completed by the worker and the e-mail
    is delivered (``GET /emails/{id}``). Records the job's state, the failure reason, BullMQ's
    failed count before and after, the e-mail id; removes the job whatever happened."""
    target, timeouts = context.target, context.timeouts
    expected = "a send-email job to a canary mailbox is sent and delivered"

    def body() -> Verdict:
        outcome = send_canary_email(target, timeouts)
        observed = dict(outcome)
        if outcome["state"] == "failed":
            reason = str(outcome["failed_reason"])
            return Verdict(False, expected, f"the worker failed the send-email job: {reason}"
                           f" (failed jobs {outcome['failed_before']} ->"
                           f" {outcome['failed_after']})", observed,
                           advice=email_advice(reason))
        if outcome["state"] != "completed":
            return Verdict(False, expected, f"the send-email job is {outcome['state']} after"
                           f" {EMAIL_WITHIN_S:g} s", observed, advice="worker")
        ok, said = delivered(target, timeouts, str(outcome["email_id"]), str(outcome["to"]))
        observed["delivery"] = said
        if not ok:
            return Verdict(False, expected, said, observed, advice="email")
        if not outcome["removed"]:
            return Verdict(False, expected, f"the canary job {outcome['job_id']} could not be"
                           " removed", observed, advice="queues")
        return Verdict(True, expected, observed=observed)

    budget = replace(timeouts, deadline=max(timeouts.deadline, EMAIL_WITHIN_S + 2 * (
        timeouts.connect + timeouts.read)))
    return run_probe("email", "delivery", target, budget, body, expected=expected)


# -- Email Not Sending: the runbook's steps ---------------------------------------------------


def _send_directly(target: Target, timeouts: Timeouts) -> tuple[bool, str]:
    """Step 6, "test email manually via Resend": ``POST /emails`` from ``FROM_EMAIL`` with
    the account's key to a canary mailbox, then its delivery."""
    key = target.require("RESEND_API_KEY")
    to = users.canary_email(target)
    with http_client(timeouts, headers={"Authorization": f"Bearer {key}"}) as http:
        answer = http.post(f"{target.resend_api_url.rstrip('/')}/emails", json={
            "from": target.require("FROM_EMAIL"), "to": [to],
            "subject": "LegacyVideo runbook canary (safe to ignore)",
            "html": "<p>Sent by hand in a game day; nobody reads this.</p>"})
    if answer.status_code != 200:
        return False, f"Resend refused it: HTTP {answer.status_code} {answer.text[:200]}"
    return delivered(target, timeouts, str(answer.json().get("id")), to)


def _manual_send(target: Target, timeouts: Timeouts) -> tuple[bool, str, str]:
    sent, said = _send_directly(target, timeouts)
    return True, _output(f"the account {'sends' if sent else 'does NOT send'}: {said}"), ""


def email_not_sending(context: DrillContext) -> list[Activity]:
    """Incident Response > Email Not Sending, steps 1-6, then the corrections: the worker
    restarted with the variables Resend accepts (which does not retry the failed jobs, as
    the runbook claims elsewhere), the failed e-mail retried the BullMQ way and delivered,
    the canary job removed. Ends by verifying a new e-mail is delivered."""
    book = StepLog(context)
    target, timeouts, platform = context.target, context.timeouts, context.platform
    variables = ("RESEND_API_KEY", "FROM_EMAIL")

    def dashboard() -> tuple[bool, str, str]:
        key = email_probe.api_key(target, timeouts)
        domain = email_probe.sender_domain(target, timeouts)
        with http_client(timeouts, headers={
                "Authorization": f"Bearer {target.require('RESEND_API_KEY')}"}) as http:
            listing = http.get(f"{target.resend_api_url.rstrip('/')}/emails",
                               params={"limit": 20})
        recent = listing.json().get("data", []) if listing.status_code == 200 else []
        return True, _output(
            f"the account's key is {'accepted' if key.ok else 'REFUSED'}, FROM_EMAIL's domain"
            f" is {'verified' if domain.ok else 'NOT verified'}; {len(recent)} recent e-mails,"
            " none of them failed ones: rejected sends never reach the list",
            {"api_key": key.evidence(), "sender_domain": domain.evidence(),
             "recent": [{k: e.get(k) for k in ("created_at", "last_event")} for e in recent[:5]]}
        ), ""

    book.step("1. check the Resend dashboard for errors",
              ("curl", f"{target.resend_api_url}/domains", "&&", "curl", "/emails"), dashboard)
    found = _variables(book, "worker", "2. verify RESEND_API_KEY")
    differ, evidence = _compare(found, target, variables)
    if found is not None:
        key_differs = "RESEND_API_KEY" in differ
        book.add(replace(found.activity, output=_output(
            "the worker's RESEND_API_KEY is not the key Resend accepts" if key_differs
            else "the worker's RESEND_API_KEY is the key Resend accepts", evidence)),
            name="2. verify RESEND_API_KEY (railway variables --service worker)")
        book.add(replace(found.activity, output=_output(
            "the worker sends from another address than the verified FROM_EMAIL"
            if "FROM_EMAIL" in differ else "the worker sends from the verified FROM_EMAIL",
            evidence)), name="3. check FROM_EMAIL is verified")

    failing: list[str] = []

    def queue() -> tuple[bool, str, str]:
        failing.append(canary_email_job_id())  # before it exists: the cleanup covers it
        outcome = send_canary_email(target, timeouts, keep=True, job_id=failing[-1])
        llen = queue_probe.runbook_llen_failed(target, timeouts, "email")
        counts = queue_probe.counts(target, timeouts, "email")
        wrongtype = bool(llen.observed.get("wrongtype"))
        return True, _output(
            f"a send-email job {outcome['state']}: {outcome['failed_reason'] or 'no reason'};"
            f" the runbook's LLEN bull:email:failed answered {llen.observed.get('reply')!r}"
            + (" (WRONGTYPE: failed is a sorted set)" if wrongtype else "")
            + f"; BullMQ counts {counts.observed.get('failed')} failed",
            {"job": outcome, "llen": llen.observed, "counts": counts.observed.get(
                "bullmq_counts")}), ""

    book.step("4. check the email queue (redis-cli LLEN bull:email:failed; BullMQ counts)",
              ("redis-cli", "LLEN", "bull:email:failed"), queue)
    try:
        def worker_logs() -> tuple[bool, str, str]:
            logs = platform.logs("worker", since="15m", lines=1000)
            failures = [line for line in logs.error_lines if "queue=email" in line]
            return logs.ok, _output(f"{len(failures)} failed e-mail jobs logged" + (
                f"; the last: {failures[-1].split('reason=', 1)[-1]}" if failures else ""),
                failures[-5:]), logs.activity.error

        book.step("5. review worker logs (railway logs --service worker)",
                  ("railway", "logs", "--service", "worker"), worker_logs)
        book.step("6. test email manually via the Resend dashboard",
                  ("curl", "-X", "POST", f"{target.resend_api_url}/emails"),
                  lambda: _manual_send(target, timeouts))
        if differ:
            def restart() -> tuple[bool, str, str]:
                result = queue_actions.restart_does_not_retry(
                    target, timeouts, "email", failing, lambda: platform.restart("worker"),
                    observe_s=1.0)
                return result.restart.ok and result.worker_after.ok, _output(
                    f"worker restarted; the failed e-mail job is still failed"
                    f" ({len(result.still_failed)}/{len(failing)}): a restart does not retry"
                    " failed jobs" if result.still_failed else "worker restarted",
                    result.evidence()), result.restart.error

            book.step(f"correction: set the worker's {' and '.join(differ)} to what Resend"
                      " accepts and restart the worker (railway variables --set ...;"
                      " railway restart --service worker)",
                      ("railway", "restart", "--service", "worker"), restart)
        if failing:
            def retry() -> tuple[bool, str, str]:
                result = queue_actions.retry_failed(target, timeouts, "email", failing,
                                                    within_s=EMAIL_WITHIN_S)
                done = [i for i, outcome in result.outcomes.items() if outcome == "completed"]
                return len(done) == len(failing), _output(
                    f"{len(done)}/{len(failing)} failed e-mails sent on retry", result.evidence()
                ), "; ".join(result.problems)

            book.step("correction: retry the failed send-email jobs the BullMQ way"
                      " (Queue.retryJobs / Job.retry)", ("BullMQ", "Job.retry", *failing), retry)
    finally:
        if failing:
            book.step("clean up the canary e-mail job", ("BullMQ", "Queue.remove", *failing),
                      lambda: _removed(queue_actions.remove_jobs(target, timeouts, "email",
                                                                 failing)))
    book.verify("verify: a new e-mail is sent and delivered", email_delivery)
    return book.activities


def _removed(cleared: queue_actions.Cleared) -> tuple[bool, str, str]:
    ok = not cleared.keys_left
    return ok, _output(f"removed {', '.join(cleared.removed_ids) or 'nothing'}",
                       cleared.evidence()), "" if ok else f"keys left: {cleared.keys_left}"


# -- Data Breach / Security Incident ----------------------------------------------------------


def _when(value: object) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def audit_entries(target: Target, timeouts: Timeouts, token: str, action: str | None = None,
                  limit: int = 500) -> list[dict[str, Any]]:
    """``GET /api/admin/audit-logs`` (newest first). Raises ``httpx.HTTPError`` and
    ``RuntimeError`` for an answer other than 200."""
    params: dict[str, Any] = {"limit": limit}
    if action:
        params["action"] = action
    with http_client(timeouts, headers={"Authorization": f"Bearer {token}"}) as http:
        answer = http.get(f"{target.require('API_URL')}/api/admin/audit-logs", params=params)
    if answer.status_code != 200:
        raise RuntimeError(f"the audit log answered HTTP {answer.status_code}")
    entries = answer.json().get("entries", [])
    return [e for e in entries if isinstance(e, dict)]


def anomalies(target: Target, timeouts: Timeouts, token: str, *,
              failures: int = ANOMALY_FAILURES, window_s: float = ANOMALY_WINDOW_S
              ) -> list[dict[str, Any]]:
    """Addresses with at least ``failures`` failed logins within the last ``window_s``: the
    address, the count, the first failure's time, the accounts tried (e-mail -> id) and the
    accounts that then logged in from it (``compromised``: e-mail -> id and time)."""
    since = datetime.now(UTC) - timedelta(seconds=window_s)
    failed = [e for e in audit_entries(target, timeouts, token, "LOGIN_FAILURE")
              if (_when(e.get("createdAt")) or since) > since and e.get("ip")]
    by_ip: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in failed:
        by_ip[str(entry["ip"])].append(entry)
    found: list[dict[str, Any]] = []
    bursts = {ip: rows for ip, rows in by_ip.items() if len(rows) >= failures}
    if not bursts:
        return found
    succeeded = audit_entries(target, timeouts, token, "LOGIN_SUCCESS")
    for ip, rows in sorted(bursts.items(), key=lambda item: -len(item[1])):
        first = min(_when(r.get("createdAt")) or since for r in rows)
        accounts = {str((r.get("metadata") or {}).get("email")): r.get("userId") for r in rows}
        logged_in = {str((s.get("metadata") or {}).get("email")): {
                         "userId": s.get("userId"), "at": s.get("createdAt")}
                     for s in succeeded if s.get("ip") == ip
                     and (_when(s.get("createdAt")) or first) >= first}
        found.append({"ip": ip, "failures": len(rows), "first_at": first.isoformat(),
                      "accounts": accounts, "compromised": logged_in})
    return found


def login_anomaly(context: DrillContext) -> ProbeResult:
    """No address made ``ANOMALY_FAILURES`` failed logins within ``ANOMALY_WINDOW_S`` (the
    audit log, read with ``ADMIN_TOKEN``). Records each such address, the accounts tried
    and those that then logged in from it."""
    target, timeouts = context.target, context.timeouts
    expected = (f"fewer than {ANOMALY_FAILURES} failed logins from any one address in"
                f" {ANOMALY_WINDOW_S:g} s")
    token = target.require("ADMIN_TOKEN")

    def body() -> Verdict:
        found = anomalies(target, timeouts, token)
        observed = {"anomalies": found}
        if not found:
            return Verdict(True, expected, observed=observed)
        worst = found[0]
        return Verdict(False, expected, f"{worst['failures']} failed logins from"
                       f" {worst['ip']} against {len(worst['accounts'])} accounts in the last"
                       f" {ANOMALY_WINDOW_S:g} s; {len(worst['compromised'])} of them then"
                       " logged in from there", observed, advice="security-incident")

    return run_probe("security", "login anomaly", target, timeouts, body, expected=expected)


def attacker_shut_out(context: DrillContext) -> ProbeResult:
    """Every account the (simulated) attacker holds is shut: their stolen session is
    rejected (401) and their password is refused (403, locked), from their address. Uses
    what the attacker holds (``faults_edges.ATTACKER``, this process's memory); records
    the statuses only."""
    target, timeouts = context.target, context.timeouts
    expected = "the attacker's sessions rejected (401) and their passwords refused (403)"

    def body() -> Verdict:
        observed: dict[str, Any] = {}
        problems: list[str] = []
        for account in ATTACKER:
            token = account.token.get_secret_value() if account.token else None
            session = _get(target, timeouts, users.ME_PATH, token)()[0] if token else None
            login = _attacker_login(target, timeouts, account)()[0]
            observed[account.email] = {"stolen_session": session, "stolen_password": login}
            if token is not None and session != 401:
                problems.append(f"the stolen session of {account.email} got HTTP {session}")
            if login != 403:
                problems.append(f"the stolen password of {account.email} got HTTP {login}")
        if problems:
            return Verdict(False, expected, "; ".join(problems), observed,
                           advice="security-incident")
        return Verdict(True, expected, observed=observed)

    return run_probe("security", "attacker shut out", target, timeouts, body,
                     expected=expected)


class _Session:
    """The incident responder: a canary admin whose password lives in memory only."""

    def __init__(self, context: DrillContext, book: StepLog) -> None:
        self.context = context
        self.book = book
        admin = users.create_admin(context.target, context.timeouts)
        faults_edges.remember_canary(context, admin.id, "responder")
        self.id, self.email, self.password = admin.id, admin.email, admin.password
        self.token = admin.token.get_secret_value()
        book.redact.add([self.password.get_secret_value(), self.token])

    def login(self, name: str) -> users.Login:
        attempt = users.login(self.context.target, self.context.timeouts, self.email,
                              self.password)
        if attempt.token is not None:
            self.token = attempt.token.get_secret_value()
            self.book.redact.add([self.token])
        return self.book.add(attempt, name=name)  # type: ignore[return-value]


def _call(target: Target, timeouts: Timeouts, method: str, path: str, token: str | None,
          body: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
          ) -> tuple[int | None, Any]:
    """One API request: its status (``None`` when no answer came) and parsed JSON."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    with http_client(timeouts) as http:
        try:
            answer = http.request(method, f"{target.require('API_URL')}{path}", headers=sent,
                                  json=body)
        except httpx.HTTPError:
            return None, None
    try:
        return answer.status_code, answer.json()
    except ValueError:
        return answer.status_code, None


def _said(finding: str) -> Callable[[], tuple[bool, str, str]]:
    """A step body that only records ``finding``."""
    return lambda: (True, _output(finding), "")


def _get(target: Target, timeouts: Timeouts, path: str, token: str | None
         ) -> Callable[[], tuple[int | None, Any]]:
    """``GET path`` with ``token``, as a call to make later."""
    return lambda: _call(target, timeouts, "GET", path, token)


def _attacker_login(target: Target, timeouts: Timeouts, account: faults_edges.Compromised
                    ) -> Callable[[], tuple[int | None, Any]]:
    """The attacker logging in to ``account`` with its stolen password, from their address."""
    return lambda: _call(target, timeouts, "POST", users.LOGIN_PATH, None,
                         {"email": account.email,
                          "password": account.password.get_secret_value()},
                         {"X-Forwarded-For": ATTACKER_IP})


def _expect(book: StepLog, name: str, command: Sequence[str], want: int,
            call: Callable[[], tuple[int | None, Any]]) -> bool:
    """A proof step: ``call`` must answer HTTP ``want``."""
    seen: list[int | None] = []

    def body() -> tuple[bool, str, str]:
        status, answer = call()
        seen.append(status)
        error = answer.get("error") if isinstance(answer, Mapping) else None
        ok = status == want
        return ok, _output(f"HTTP {status}{f' {error!r}' if error else ''} (expected {want})"), (
            "" if ok else f"HTTP {status}, expected {want}")

    return book.step(name, command, body).ok


def _rotate(context: DrillContext, secret: str) -> tuple[bool, str, str]:
    sandbox = Sandbox(context.home)
    said = []
    for service in ("api", "worker"):
        after = sandbox.restart(service, {"API_SECRET": secret}, timeout=30.0)
        said.append(f"{service} pid {after.pid}")
    return True, _output("API_SECRET rotated in api and worker (the same new value, never"
                         f" recorded): {', '.join(said)}; MASTER_ENCRYPTION_KEY is not used by"
                         " the sandbox (rotating it needs the data migration of the quarterly"
                         " task)"), ""


def timeline_document(activities: Sequence[Activity], anomaly: Mapping[str, Any] | None,
                      detected_by: str) -> str:
    """Step 6: the incident's timeline as Markdown, from the audit log's first failed login
    and the response's own records; manual steps listed as such."""
    lines = ["# Security incident timeline (game day)", "",
             "| time (UTC) | what | who / evidence |", "|---|---|---|"]
    if anomaly:
        lines.append(f"| {anomaly['first_at']} | first of {anomaly['failures']} failed"
                     f" logins from {anomaly['ip']} | audit log LOGIN_FAILURE |")
        for email, login in anomaly.get("compromised", {}).items():
            lines.append(f"| {login.get('at')} | {email} logged in from {anomaly['ip']} |"
                         " audit log LOGIN_SUCCESS |")
    lines.append(f"| (before the response) | detected | {detected_by} |")
    for activity in activities:
        lines.append(f"| {activity.timing.started_at.isoformat()} | {activity.name} |"
                     f" {'ok' if activity.ok else 'FAILED'} ({activity.elapsed_s:.2f} s) |")
    lines += [
        "", "## Left to people (not automated)", "",
        "- 5. Notify affected users (what, when, which accounts; legal deadlines apply)",
        "- Investigation 1-5: audit logs, access logs for unusual IPs, recent deployments,"
        " unauthorized database access, compromised dependencies",
        "- Post-incident 1-4: security measures, threat model, security review, external"
        " audit",
        "- Reset the affected accounts' passwords before unlocking them (not in the runbook)",
        "",
    ]
    return "\n".join(lines)


def data_breach(context: DrillContext) -> list[Activity]:
    """Incident Response > Data Breach / Security Incident, IMMEDIATE STEPS 1-4 and 6 on the
    sandbox, each proved: affected (canary) accounts locked (the attacker's password gets
    403), API_SECRET rotated in api and worker (the stolen session and ``ADMIN_TOKEN`` get
    401), every token revoked (even one issued after the rotation gets 401), a new login
    works, the audit log shows each lock and the revoke with actor and time, and a
    timeline document is written. Step 5 and the investigation are for people."""
    book = StepLog(context, *ATTACKER.secrets())
    target, timeouts = context.target, context.timeouts
    admin_token = target.require("ADMIN_TOKEN")
    started = datetime.now(UTC)
    responder = _Session(context, book)
    found: list[dict[str, Any]] = []

    def affected() -> tuple[bool, str, str]:
        found.extend(anomalies(target, timeouts, admin_token))
        return True, _output(f"{len(found)} address(es) with a burst of failed logins",
                             found), ""

    book.step("identify the affected accounts (the alert's evidence: the audit log)",
              ("curl", "/api/admin/audit-logs?action=LOGIN_FAILURE"), affected)
    victims = {str(uid): email for a in found for email, uid in a["accounts"].items() if uid}
    for user_id, email in sorted(victims.items(), key=lambda item: item[1]):
        if not users.is_canary_email(email):
            book.step(f"1. lock {email}", ("curl", users.LOCK_PATH), _said(
                f"{email} is not a runbook canary: a game day locks canaries only"))
            continue
        book.add(users.lock_user(target, timeouts, responder.token, user_id, True),
                 name=f"1. lock all affected user accounts: {email}")
    attacked = [a for a in ATTACKER if a.user_id in victims]
    for account in attacked:
        _expect(book, f"proof: the attacker's password for {account.email} is refused",
                ("curl", users.LOGIN_PATH), 403, _attacker_login(target, timeouts, account))

    new_secret = secrets.token_hex(32)
    book.redact.add([new_secret])
    book.step("2. rotate all secrets: API_SECRET in api and worker (railway variables --set"
              " API_SECRET=... --service api/worker; restart both)",
              ("runbook", "sandbox", "restart", "api", "worker", "API_SECRET=<new>"),
              lambda: _rotate(context, new_secret))
    stolen = [a for a in attacked if a.token is not None]
    for account in stolen:
        token = account.token.get_secret_value() if account.token else None
        _expect(book, f"proof: the attacker's stolen session of {account.email} is rejected",
                ("curl", users.ME_PATH), 401, _get(target, timeouts, users.ME_PATH, token))
    _expect(book, "proof: ADMIN_TOKEN (signed with the old secret) is rejected",
            ("curl", users.USERS_PATH), 401,
            lambda: _call(target, timeouts, "GET", f"{users.USERS_PATH}?limit=1", admin_token))

    responder.login("3. (responder logs in with the new secret)")
    issued_after_rotation = responder.token
    revoked: list[Any] = []

    def revoke() -> tuple[bool, str, str]:
        status, answer = _call(target, timeouts, "POST", "/api/admin/tokens/revoke-all",
                               issued_after_rotation)
        revoked.append(answer)
        return status == 200, _output(f"HTTP {status}: {answer}"), (
            "" if status == 200 else f"HTTP {status}")

    book.step("3. revoke all active access tokens", ("curl", "-X", "POST",
                                                     "/api/admin/tokens/revoke-all"), revoke)
    _expect(book, "proof: a token issued after the rotation is revoked too",
            ("curl", users.ME_PATH), 401,
            lambda: _call(target, timeouts, "GET", users.ME_PATH, issued_after_rotation))
    responder.login("proof: new logins are accepted")
    _expect(book, "proof: the new session works", ("curl", users.USERS_PATH), 200,
            lambda: _call(target, timeouts, "GET", f"{users.USERS_PATH}?limit=1",
                          responder.token))
    for account in attacked:
        _expect(book, f"proof: {account.email} still cannot log in (locked)",
                ("curl", users.LOGIN_PATH), 403, _attacker_login(target, timeouts, account))

    def review() -> tuple[bool, str, str]:
        entries = [e for e in audit_entries(target, timeouts, responder.token, limit=200)
                   if (_when(e.get("createdAt")) or started) >= started]
        locks = {str((e.get("metadata") or {}).get("targetUserId")): e for e in entries
                 if e.get("action") == "USER_LOCKED"}
        revokes = [e for e in entries if e.get("action") == "TOKENS_REVOKED"]
        wanted = [a.user_id for a in attacked]
        missing = [uid for uid in wanted if uid not in locks]
        shown = [{k: e.get(k) for k in ("action", "userId", "ip", "createdAt", "metadata")}
                 for e in entries if e.get("action") in ("USER_LOCKED", "TOKENS_REVOKED")]
        by_responder = all(locks[uid].get("userId") == responder.id for uid in wanted
                           if uid in locks) and all(r.get("userId") == responder.id
                                                    for r in revokes)
        ok = not missing and bool(revokes) and by_responder
        return ok, _output(
            f"{len(locks)} USER_LOCKED and {len(revokes)} TOKENS_REVOKED entries, each with"
            " its actor (the responder) and time; the secret rotation is a platform change"
            " and not in the application's audit log", shown), (
            "" if ok else f"missing: locks of {missing}, revokes {len(revokes)},"
                          f" by the responder {by_responder}")

    book.step("4. enable audit log review: the response's actions in the audit log",
              ("curl", "/api/admin/audit-logs"), review)

    def document() -> tuple[bool, str, str]:
        text = timeline_document(book.activities, found[0] if found else None,
                                 "synthetic check: login anomaly in the audit log")
        path = context.state_directory() / (
            f"{started.strftime('%Y%m%dT%H%M%SZ')}-security-incident-timeline.md")
        path.write_text(book.redact(text), encoding="utf-8")
        return True, _output(f"written to {path}") + "\n" + text, ""

    book.step("6. document the incident timeline", ("write", "timeline.md"), document)
    return book.activities


# -- Slow Query Performance -------------------------------------------------------------------

_ACTIVITY_SQL = (
    "select pid, application_name, state, wait_event_type,"
    " round(extract(epoch from now() - query_start) * 1000)::bigint as running_ms,"
    " round(extract(epoch from now() - xact_start) * 1000)::bigint as xact_ms,"
    " pg_blocking_pids(pid) as blocked_by,"
    " left(regexp_replace(query, '\\s+', ' ', 'g'), 160) as query"
    " from pg_stat_activity"
    " where datname = current_database() and pid <> pg_backend_pid()"
    " and backend_type = 'client backend' and state is distinct from 'idle'"
)


def sessions(target: Target, timeouts: Timeouts) -> list[dict[str, Any]]:
    """The database's non-idle client sessions from ``pg_stat_activity`` (read-only)."""
    with connect(target.require("DATABASE_URL"), timeouts) as conn:
        cursor = conn.execute(_ACTIVITY_SQL)
        names = [c.name for c in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def offenders(found: Sequence[Mapping[str, Any]], threshold_ms: int = SLOW_QUERY_MS
              ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], list[int]]:
    """Statements running over ``threshold_ms``, sessions waiting on a lock, and the pids
    that block them (the cause when something waits), worst first."""
    slow = sorted((s for s in found if s.get("state") == "active"
                   and int(s.get("running_ms") or 0) >= threshold_ms),
                  key=lambda s: -int(s.get("running_ms") or 0))
    waiting = [s for s in found if s.get("blocked_by")]
    blockers = sorted({int(pid) for s in waiting for pid in s["blocked_by"]})
    return slow, waiting, blockers


def slow_queries(context: DrillContext) -> ProbeResult:
    """No statement runs over ``SLOW_QUERY_MS`` and no session waits on a lock
    (``pg_stat_activity``: duration, ``pg_blocking_pids``). Records each such session's pid,
    application, duration and statement (first 160 characters)."""
    target, timeouts = context.target, context.timeouts
    expected = f"no statement over {SLOW_QUERY_MS} ms, no session waiting on a lock"

    def body() -> Verdict:
        found = sessions(target, timeouts)
        slow, waiting, blockers = offenders(found)
        observed = {"sessions": len(found), "slow": slow[:5], "waiting": waiting[:5],
                    "blockers": blockers}
        if not slow and not waiting:
            return Verdict(True, expected, observed=observed)
        parts = []
        if slow:
            worst = slow[0]
            parts.append(f"{len(slow)} statement(s) over {SLOW_QUERY_MS} ms (longest"
                         f" {worst['running_ms']} ms: pid {worst['pid']}"
                         f" {worst['application_name'] or '-'}: {worst['query']})")
        if waiting:
            parts.append(f"{len(waiting)} session(s) waiting on locks held by pid(s)"
                         f" {', '.join(map(str, blockers))}")
        return Verdict(False, expected, "; ".join(parts), observed, advice="database-slow")

    return run_probe("database", "slow queries", target, timeouts, body, expected=expected)


def _end_sessions(target: Target, timeouts: Timeouts, pids: Sequence[int]) -> dict[str, Any]:
    """``pg_cancel_backend`` each pid, wait up to 3 s for its statement to end, then
    ``pg_terminate_backend`` what is still there; what happened to each."""
    outcome: dict[str, Any] = {}
    with connect(target.require("DATABASE_URL"), timeouts, read_only=False) as conn:
        for pid in pids:
            cancelled = conn.execute("select pg_cancel_backend(%s)", (pid,)).fetchone()
            outcome[str(pid)] = {"cancelled": bool(cancelled and cancelled[0])}
        deadline = time.monotonic() + 3.0
        left = list(pids)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = conn.execute("select pid from pg_stat_activity where pid = any(%s)"
                                " and state = 'active'", (list(left),)).fetchall()
            left = [int(r[0]) for r in rows]
        for pid in left:
            ended = conn.execute("select pg_terminate_backend(%s)", (pid,)).fetchone()
            outcome[str(pid)]["terminated"] = bool(ended and ended[0])
    return outcome


def slow_query_performance(context: DrillContext) -> list[Activity]:
    """Troubleshooting > Slow Query Performance: query logging (on in the sandbox's API),
    a login timed to see the symptom, the runbook's ``grep "query took"``, then what the
    runbook lacks: the offender identified in ``pg_stat_activity`` (the session everything
    waits on, else the longest statement) and cancelled, terminated if it does not stop.
    "Add database indexes" is not done (it cannot help a statement that waits on a lock, and
    a plain CREATE INDEX takes that very lock). Ends by verifying no statement is slow."""
    book = StepLog(context)
    target, timeouts, platform = context.target, context.timeouts, context.platform

    def logging_on() -> tuple[bool, str, str]:
        found = platform.variables("api")
        shown = "SLOW_QUERY_MS set" if "SLOW_QUERY_MS" in found.fingerprints else (
            "SLOW_QUERY_MS not set: the API's default of 500 ms applies")
        return found.ok, _output(f"the API logs every query over its threshold as 'query"
                                 f" took': {shown} (in LegacyVideo: Prisma's log option, a"
                                 " code change and a deploy)"), found.activity.error

    book.step("enable query logging in Prisma (log: ['query', 'info', 'warn', 'error'])",
              ("railway", "variables", "--service", "api"), logging_on)

    def symptom() -> tuple[bool, str, str]:
        # The lock comes and goes (the holder takes it a second at a time): a login that
        # arrives late in a hold waits less than the threshold. Time a few, as a user who
        # reports "sometimes slow" would, until one is over it.
        took: list[str] = []
        with users.canary_user(target, timeouts) as canary:
            for _ in range(SYMPTOM_LOGINS):
                attempt = users.login(target, timeouts, canary.email, canary.password)
                took.append(f"{attempt.elapsed_s * 1000:.0f} ms")
                if attempt.status_code != 200 or attempt.elapsed_s * 1000 >= SLOW_QUERY_MS:
                    break
        return attempt.status_code == 200, _output(
            f"logins took {', '.join(took)} (HTTP {attempt.status_code})"), ""

    book.step("the symptom: time a user's login", ("curl", users.LOGIN_PATH), symptom)

    def grep() -> tuple[bool, str, str]:
        logs = platform.logs("api", since="5m", lines=2000)
        took = [m for m in (_QUERY_TOOK.search(line) for line in logs.lines) if m]
        slowest = max(took, key=lambda m: int(m.group(1)), default=None)
        return logs.ok, _output(
            f"{len(took)} 'query took' lines; the slowest {slowest.group(1)} ms: "
            f"{slowest.group(2)[:120]} (the statement that waited, not the one it waited on)"
            if slowest else "no 'query took' lines", [m.group(0)[:160] for m in took[-5:]]
        ), logs.activity.error

    book.step("review slow queries (railway logs --service api | grep \"query took\")",
              ("railway", "logs", "--service", "api", "|", "grep", "query took"), grep)
    chosen: list[int] = []

    def identify() -> tuple[bool, str, str]:
        deadline = time.monotonic() + 3.0  # a statement is over the threshold part of the time
        while True:
            found = sessions(target, timeouts)
            slow, waiting, blockers = offenders(found)
            if blockers or slow or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        chosen.extend(blockers or [int(s["pid"]) for s in slow[:1]])
        named = [s for s in found if int(s["pid"]) in chosen]
        return True, _output(
            f"offender pid(s) {', '.join(map(str, chosen)) or 'none'}: "
            + "; ".join(f"{s['application_name'] or '-'} {s['state']} for {s['running_ms']} ms:"
                        f" {s['query']}" for s in named)
            + f" ({len(waiting)} session(s) waiting on it)", {"slow": slow[:5],
                                                              "waiting": waiting[:5]}), ""

    book.step("(correction) identify the offender in pg_stat_activity (duration,"
              " pg_blocking_pids)", ("psql", "-c", "select ... from pg_stat_activity"), identify)
    if chosen:
        book.step("(correction) cancel the offending statement, terminate it if it does not"
                  " stop (pg_cancel_backend, pg_terminate_backend)",
                  ("psql", "-c", f"select pg_cancel_backend({chosen[0]})"),
                  lambda: (True, _output("done", _end_sessions(target, timeouts, chosen)), ""))
    book.verify("verify: no statement over the threshold, nothing waiting on a lock",
                slow_queries)
    return book.activities


# -- the game days -----------------------------------------------------------------------------

UPLOAD = "Incident Response > Upload Failures"
EMAIL = "Incident Response > Email Not Sending"
BREACH = "Incident Response > Data Breach / Security Incident"
SLOW = "Troubleshooting > Slow Query Performance"

_UPLOAD_DEFECT = (
    "The runbook's Upload Failures steps only check; none changes anything, and steps 3 and 5"
    " cannot see this fault. Corrected procedure: 1. compare the API's AWS_ACCESS_KEY_ID/"
    "AWS_SECRET_ACCESS_KEY with the IAM user's active key (S3's 403 body says which:"
    " SignatureDoesNotMatch = wrong secret, InvalidAccessKeyId = unknown key, AccessDenied ="
    " permissions); 2. read the bucket policy and remove an explicit Deny on s3:PutObject;"
    " 3. test with a write (a presigned PUT), not only `aws s3 ls`, which a Deny on"
    " PutObject leaves working; 4. compare the CORS rules with the web origin and put the"
    " PUT rule back; 5. presigning is local to the API: a wrong secret produces valid-looking"
    " URLs and no API log line, so test an upload through the API; then fix the variable"
    " and restart the API (railway variables --set ... --service api; railway restart"
    " --service api), and verify an upload end to end."
)


def _gameday(name: str, section: str, fault: str, params: Mapping[str, Any], detect: Check,
             remedy: Callable[[DrillContext], Sequence[Activity]], verify: Check, defect: str,
             *, detect_within_s: float = 30.0, recover_within_s: float = 90.0) -> GameDay:
    return GameDay(name=name, section=section, fault=fault, params=dict(params),
                   detect=detect, diagnosis=section, remedy=remedy,
                   detect_within_s=detect_within_s, recover_within_s=recover_within_s,
                   defect=defect, verify=verify)


GAMEDAYS: dict[str, GameDay] = {
    "upload-failures-wrong-credentials": _gameday(
        "upload-failures-wrong-credentials", UPLOAD, "service-env-override",
        {"service": "api", "variable": "AWS_SECRET_ACCESS_KEY", "change": "random"},
        api_upload, upload_failures, uploads_work,
        _UPLOAD_DEFECT + " Here: the runbook's own S3 checks (its credentials) stay green; the"
        " API's presigned URLs get 403 SignatureDoesNotMatch."),
    "upload-failures-bucket-policy": _gameday(
        "upload-failures-bucket-policy", UPLOAD, "s3-bucket-policy-deny",
        {"sid": faults_edges.DENY_SID}, presigned_upload, upload_failures, uploads_work,
        _UPLOAD_DEFECT + " Here: `aws s3 ls` (step 3) passes while every upload is denied."),
    "upload-failures-cors": _gameday(
        "upload-failures-cors", UPLOAD, "s3-cors-missing", {}, cors, upload_failures,
        uploads_work,
        _UPLOAD_DEFECT + " Here: step 4 finds it; the fix is `aws s3api put-bucket-cors` with"
        " AllowedOrigins = the web origin, AllowedMethods GET/PUT/HEAD, AllowedHeaders *,"
        " ExposeHeaders ETag."),
    "email-not-sending-invalid-key": _gameday(
        "email-not-sending-invalid-key", EMAIL, "service-env-override",
        {"service": "worker", "variable": "RESEND_API_KEY", "change": "random"},
        email_delivery, email_not_sending, email_delivery,
        "Step 4's `LLEN bull:email:failed` answers WRONGTYPE once a job has failed (failed"
        " is a sorted set): count with BullMQ (getJobCounts) or ZCARD. Step 1 shows nothing:"
        " Resend lists accepted e-mails, not refused requests. The runbook has no fix step:"
        " set RESEND_API_KEY to an active key (railway variables --set ... --service worker),"
        " restart the worker, then retry the failed send-email jobs the BullMQ way"
        " (Queue.retryJobs({state: 'failed'})): the restart alone leaves them failed, and"
        " each is an e-mail a user never got."),
    "email-not-sending-unverified-sender": _gameday(
        "email-not-sending-unverified-sender", EMAIL, "service-env-override",
        {"service": "worker", "variable": "FROM_EMAIL", "change": "set",
         "value": UNVERIFIED_SENDER},
        email_delivery, email_not_sending, email_delivery,
        "Step 3 says to check FROM_EMAIL is verified but not how: the failed job's reason"
        " (\"The <domain> domain is not verified\") and Resend's GET /domains name the"
        " domain; set FROM_EMAIL to an address on a verified domain (or verify the domain's"
        " DNS records), restart the worker, retry the failed send-email jobs the BullMQ way;"
        " step 4's LLEN answers WRONGTYPE (count with getJobCounts)."),
    "data-breach": _gameday(
        "data-breach", BREACH, "security-breach",
        {"accounts": 2, "failures_per_account": 3, "attacker_ip": ATTACKER_IP},
        login_anomaly, data_breach, attacker_shut_out,
        "Immediate steps 1-4 and 6 are automated and proved; step 5 (notify affected users),"
        " the Investigation and Post-Incident lists are for people (@manual). Corrections:"
        " rotating API_SECRET already invalidates every token, so step 3 matters for tokens"
        " issued after the rotation, and must come after it; rotate it in api AND worker"
        " together (the worker signs service tokens with it); ADMIN_TOKEN and any other"
        " long-lived token must be re-issued afterwards; the locked accounts' passwords must"
        " be reset before they are unlocked (the attacker knows them: unlocking re-opens the"
        " account); the rotation is a platform change the application's audit log does not"
        " show, so the timeline must record it.", recover_within_s=120.0),
    "slow-query-performance": _gameday(
        "slow-query-performance", SLOW, "slow-query",
        {"table": "AuditLog", "hold_s": 1.0, "max_s": 120},
        slow_queries, slow_query_performance, slow_queries,
        "`grep \"query took\"` shows the statements that waited (INSERT INTO \"AuditLog\"),"
        " not the one that made them wait, and \"add database indexes\" does nothing for a"
        " statement waiting on a lock (a plain CREATE INDEX takes exactly that SHARE lock"
        " and causes this). Corrected procedure: find the offender in pg_stat_activity"
        " (state, now() - query_start, pg_blocking_pids(pid)), cancel it with"
        " pg_cancel_backend(pid), pg_terminate_backend(pid) if it does not stop; add indexes"
        " only for statements that are slow on their own (EXPLAIN), with CREATE INDEX"
        " CONCURRENTLY."),
}

__all__ = [
    "GAMEDAYS",
    "StepLog",
    "anomalies",
    "api_upload",
    "attacker_shut_out",
    "blocks_uploads",
    "cors",
    "data_breach",
    "email_delivery",
    "email_not_sending",
    "login_anomaly",
    "presigned_upload",
    "send_canary_email",
    "slow_queries",
    "slow_query_performance",
    "timeline_document",
    "upload_failures",
    "uploads_work",
]
