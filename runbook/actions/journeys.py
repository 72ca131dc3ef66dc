"""What users do, done by a canary: log in, upload a video, request a release, get an e-mail.

Each journey is a synthetic check of the scheduled suite (self-cleaning, bounded by the probe
deadline) that exercises a path no component check sees on its own: the API signing tokens
against its database, the API presigning uploads with ITS S3 credentials, the worker taking
a release with ITS ``API_SECRET``, the worker sending through Resend with ITS key and sender.
A failure's advice names the runbook subsection of what the journey saw:

- ``login``: health, a canary user's login and the user read back (``e2e.round_trip``); an
  answer of HTTP 5xx to the login is Troubleshooting > API Returns 500 Error.
- ``upload``: ``POST /api/videos/upload-url`` as a canary user, the PUT to the presigned URL
  with the web front end's ``Origin``, the object read back: S3's error code says whether
  the signature (the API's credentials) or the bucket's permissions refused it.
- ``release``: a canary user's READY video released through the API; the worker's
  ``process-release`` job must complete (failed with "Invalid or expired token": the
  services disagree on ``API_SECRET``).
- ``email``: a ``send-email`` job to a canary mailbox must be sent and delivered (Resend's
  ``GET /emails/{id}``): the worker's key and sender, not the runbook's, are what it tests.

Everything a journey makes (objects with every version, jobs) is removed whatever happened;
the canary user it acts as (with its rows) too, or, when a run shares one (``CanaryPool``:
the scheduled suite makes one per run), when the run ends. No secret is recorded: tokens and
passwords stay in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from bullmq import Queue
from redis.asyncio import Redis

from runbook import reachability
from runbook.actions import users
from runbook.clients import http_client
from runbook.config import Target
from runbook.probes import Verdict, blocked, canaries, describe_error, e2e, run_probe, storage
from runbook.probes import postgres as postgres_probe
from runbook.probes import queues as queue_probe
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts
from runbook.wait import wait_until_async

#: The file name a canary video is uploaded under (the API adds the user and video ids).
CANARY_VIDEO = "runbook-canary.mp4"
#: How long the worker gets to take a requested release and finish its job.
RELEASE_WITHIN_S = 8.0
#: How long a canary e-mail job may take to be completed or failed.
EMAIL_WITHIN_S = 10.0
#: How long removing a journey's jobs may take (an active job is locked until it ends).
CLEANUP_S = 10.0
#: The reason a job fails with when the API refuses the worker's service token.
INVALID_TOKEN_REASON = "Invalid or expired token"


@contextlib.contextmanager
def _canary(target: Target, timeouts: Timeouts, pool: users.CanaryPool | None
            ) -> Iterator[users.CanaryUser]:
    """The run's shared canary user from ``pool``, else one made and removed around the
    journey. Raises ``UserOperationFailed`` when it cannot be made."""
    if pool is not None:
        yield pool.get(target, timeouts)
        return
    with users.canary_user(target, timeouts) as canary:
        yield canary


def _failed(component: str, check: str, target: Target, timeouts: Timeouts, expected: str,
            problem: str, advice: str) -> ProbeResult:
    return run_probe(component, check, target, timeouts,
                     lambda: Verdict(False, expected, problem, advice=advice),
                     expected=expected)


# -- login -----------------------------------------------------------------------------------


def narrow_500(result: ProbeResult) -> ProbeResult:
    """An end-to-end failure where the API answered a request with 5xx gets the advice of
    Troubleshooting > API Returns 500 Error (``api-500``) rather than the API's in general."""
    statuses = [result.observed.get(name) for name in ("login_status", "me_status")]
    if not result.ok and any(isinstance(s, int) and s >= 500 for s in statuses):
        return replace(result, advice="api-500")
    return result


def user_login_answer(target: Target, timeouts: Timeouts) -> int | None:
    """What the API answers a login for an address no user has (401 when it works): the
    user-facing symptom when no canary could be made. ``None``: no answer. A run asks it as
    soon as the database is suspect (the login step's ``needs(meanwhile=...)``)."""
    try:
        with http_client(timeouts) as client:
            answer = client.post(f"{target.require('API_URL')}{users.LOGIN_PATH}",
                                 json={"email": canaries.canary_email(target),
                                       "password": uuid.uuid4().hex})
    except Exception:
        return None
    return answer.status_code


def login(target: Target, timeouts: Timeouts, pool: users.CanaryPool | None = None
          ) -> ProbeResult:
    """A canary user (made as the runbook makes users, removed after) logs in and is read
    back with its token (``e2e.round_trip``, ``narrow_500`` applied). When no canary can be
    made, the check fails with the reason, and what a user's login gets then (a login for
    an address nobody has: 401 when the API works, 5xx when it fails) says whether users
    see 500s (the advice of API Returns 500 Error) or the database refused the runbook."""
    expected = "health ok, a login (write) and the user read back with its token (read)"
    # Only a dead API stops the login before it is tried: with the database gone, what a
    # user's login gets then (HTTP 500 from a live API) is the check's finding, the signal of
    # API Returns 500 Error, and is worth its wait.
    stopped = blocked("api", "end to end", target, expected=expected, needs=("api",))
    if stopped is not None:
        return stopped
    # The canary user is made in the database itself: a database the run found unreachable
    # is not waited for again (the user's login below still is).
    gate = reachability.current()
    dead = gate.unreachable("api", "end to end", target, ("database",)) if gate else None
    if dead is not None:
        return _no_canary(target, timeouts, expected, dead.blocked(), database=True)
    try:
        with _canary(target, timeouts, pool) as canary:
            return narrow_500(e2e.round_trip(target, timeouts, canary.email, canary.password))
    except users.UserOperationFailed as exc:
        return _no_canary(target, timeouts, expected, exc.seen,
                          database="row was not created" in exc.seen)


def _no_canary(target: Target, timeouts: Timeouts, expected: str, seen: str, *,
               database: bool) -> ProbeResult:
    """The login check's failure when no canary could be made (``seen`` says why;
    ``database``: the database refused it), with what a user's login gets meanwhile."""
    gate = reachability.current()
    asked = gate.asked(user_login_answer, "database", target) if gate and database else None
    if asked is not None and isinstance(asked.value, int | None):
        status, when = asked.value, f" ({asked.said()})"
    else:
        status, when = user_login_answer(target, timeouts), ""
    five_hundred = re.search(r"HTTP 5\d\d", seen) is not None or (
        status is not None and status >= 500)
    advice = "api-500" if five_hundred else ("database" if database else "api")
    answered = (f"; a login answered HTTP {status}{when}" if status is not None else
                f"; a login got no answer within {timeouts.read:g} s{when}")
    return _failed("api", "end to end", target, timeouts, expected,
                   f"no canary user to log in as: {seen}{answered}", advice)


# -- upload ----------------------------------------------------------------------------------


def _s3_code(text: str) -> str:
    match = re.search(r"<Code>([^<]+)</Code>", text)
    return match.group(1) if match else ""


def upload_advice(code: str) -> str:
    """The advice key for an upload S3 refused with error ``code``: a signature or key
    problem points at the credentials, anything else at the bucket's permissions."""
    return "s3-presign" if code in ("SignatureDoesNotMatch", "InvalidAccessKeyId") \
        else "s3-upload-denied"


def upload(target: Target, timeouts: Timeouts, pool: users.CanaryPool | None = None
           ) -> ProbeResult:
    """A video uploaded as a user does it: a canary user asks the API for an upload URL
    (``POST /api/videos/upload-url``), PUTs bytes to it with the web front end's
    ``Origin``, and the object is read back with the runbook's credentials. Records the
    statuses, S3's error code, the key (never the URL's query); removes the object (every
    version) and the canary (with its video row) whatever happened."""
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
            with _canary(target, timeouts, pool) as canary, http_client(timeouts) as http:
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
                     expected=expected, needs=("api", "s3", "database"))


# -- release ---------------------------------------------------------------------------------

_INSERT_VIDEO = (
    'INSERT INTO "Video" ("id", "ownerId", "title", "s3Key", "contentType", "status",'
    ' "updatedAt") VALUES (%s, %s, %s, %s, %s, \'READY\', now())'
)


async def remove_jobs(bull: Queue, connection: Redis, queue: str, ids: list[str],
                      budget_s: float) -> list[str]:
    """Remove the jobs ``ids`` (an active one is locked: retried until it ends or
    ``budget_s`` passes); returns the ids still present."""
    left = list(ids)

    async def remaining() -> list[str]:
        for job_id in list(left):
            await bull.remove(job_id)
            if not await connection.exists(queue_probe.key(queue, job_id)):
                left.remove(job_id)
        return left

    await wait_until_async(remaining, timeout=budget_s, interval=0.1, accept=lambda ids: not ids,
                           errors=())
    return left


def _job_state(bull: Queue, job_id: str) -> Callable[[], Awaitable[str]]:
    """A probe of ``job_id``'s state in BullMQ, for ``wait_until_async``."""

    async def state() -> str:
        return str(await bull.getJobState(job_id))

    return state


def _ended(state: str) -> bool:
    """Whether a job in ``state`` has run: completed or failed."""
    return state in ("completed", "failed")


def release(target: Target, timeouts: Timeouts, *, within_s: float = RELEASE_WITHIN_S,
            pool: users.CanaryPool | None = None) -> ProbeResult:
    """A release requested through the API is processed by the worker: a canary user
    (``actions.users.canary_user``) with a READY video row of its own requests a release
    (202), and its ``process-release`` job must complete within ``within_s``. A job failed
    with "Invalid or expired token" gets the advice of that Troubleshooting entry
    (``api-secret``). Everything made is removed afterwards: the jobs (the release's and its
    e-mail's), then the canary with its video and release rows. It needs the e-mail
    provider too: the worker sends the release's e-mail through it, and with the provider
    not answering that job hangs in the worker and then fails, a failed e-mail the check
    would leave on the target or wait out before removing."""
    expected = (f"a requested release processed by the worker (process-release completed)"
                f" within {within_s:g} s")
    api = target.require("API_URL")
    dsn = target.require("DATABASE_URL")
    redis_url = target.require("REDIS_URL")
    queue = "release-process"

    async def follow(bull: Queue, connection: Redis, release_id: str) -> dict[str, Any]:
        started = time.monotonic()
        waited = await wait_until_async(_job_state(bull, release_id), timeout=within_s,
                                        interval=0.05, accept=_ended, errors=())
        state = waited.value or "unknown"
        job = await bull.getJob(release_id)
        reason = str(getattr(job, "failedReason", "") or "") if job is not None else ""
        email_job = f"release-email-{release_id}"
        left = await remove_jobs(bull, connection, queue, [release_id], CLEANUP_S)
        return {"state": state, "failed_reason": reason, "waited_ms":
                round((time.monotonic() - started) * 1000, 1), "left": left,
                "email_job": email_job if state == "completed" else ""}

    async def remove_email(bull: Queue, connection: Redis, job_id: str) -> list[str]:
        await wait_until_async(_job_state(bull, job_id), timeout=5.0, interval=0.05,
                               accept=lambda s: _ended(s) or s == "unknown", errors=())
        return await remove_jobs(bull, connection, "email", [job_id], CLEANUP_S)

    def body() -> Verdict:
        observed: dict[str, Any] = {}
        try:
            with _canary(target, timeouts, pool) as user:
                video_id = str(uuid.uuid4())
                with postgres_probe.connect(dsn, timeouts, read_only=False) as conn:
                    conn.execute(_INSERT_VIDEO, (video_id, user.id, "Runbook canary release",
                                                 f"runbook-canary/{video_id}.mp4",
                                                 "video/mp4"))
                with http_client(timeouts) as client:
                    answer = client.post(f"{api}/api/releases", json={"videoId": video_id},
                                         headers={"Authorization":
                                                  f"Bearer {user.token.get_secret_value()}"})
                observed["release_status"] = answer.status_code
                if answer.status_code != 202:
                    return Verdict(False, expected, f"requesting a release answered HTTP"
                                   f" {answer.status_code}", observed,
                                   advice="api-500" if answer.status_code >= 500 else "api")
                release_id = str(answer.json().get("releaseId"))
                followed = queue_probe.run_async(
                    redis_url, timeouts, queue,
                    lambda bull, conn: follow(bull, conn, release_id))
                observed.update({k: v for k, v in followed.items() if k != "left"})
                if followed["email_job"]:
                    left = queue_probe.run_async(
                        redis_url, timeouts, "email",
                        lambda bull, conn: remove_email(bull, conn, str(followed["email_job"])))
                    followed["left"] = [*followed["left"], *left]
                if followed["left"]:
                    observed["left_behind"] = followed["left"]
        except users.UserOperationFailed as exc:
            return Verdict(False, expected, f"no canary user to request a release as:"
                           f" {exc.seen}", observed, advice="api")
        state, reason = str(followed["state"]), str(followed["failed_reason"])
        if state == "failed":
            advice = "api-secret" if INVALID_TOKEN_REASON.lower() in reason.lower() else "worker"
            return Verdict(False, expected, f"the worker failed the release's process-release"
                           f" job: {reason or 'no reason given'}", observed, advice=advice)
        if state != "completed":
            return Verdict(False, expected, f"the release's job is {state} after {within_s:g}"
                           " s", observed, advice="worker")
        return Verdict(True, expected, observed=observed)

    budget = replace(timeouts, deadline=within_s + 2 * CLEANUP_S + timeouts.deadline)
    return run_probe("worker", "release round trip", target, budget, body, expected=expected,
                     needs=("api", "redis", "database", reachability.worker("release-process"),
                            "email provider"))


# -- e-mail ----------------------------------------------------------------------------------


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
    waited = await wait_until_async(_job_state(bull, job_id), timeout=within_s, interval=0.02,
                                    accept=_ended, errors=())
    state = waited.value or "unknown"
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

    async def removed() -> bool:
        return await bull.remove(job_id) == 1 or not await connection.exists(with_key)

    waited = await wait_until_async(removed, timeout=budget_s, interval=0.1, errors=())
    return waited.ok and not await connection.exists(with_key)


def canary_email_job_id() -> str:
    """A fresh canary job id for a ``send-email`` job (``runbook-canary-email-<hex>``)."""
    return f"{queue_probe.CANARY_ID_PREFIX}email-{uuid.uuid4().hex[:16]}"


def send_canary_email(target: Target, timeouts: Timeouts, *, keep: bool = False,
                      job_id: str | None = None, within_s: float = EMAIL_WITHIN_S
                      ) -> dict[str, Any]:
    """A real ``send-email`` job (``job_id``, else a fresh canary id) to a canary mailbox
    (``runbook-canary-<hex>@<FROM_EMAIL's domain>``) through the worker; the outcome as
    ``_send_email_job`` reports it, plus ``removed``. The job is removed afterwards unless
    ``keep`` (then the caller removes it: ``actions.queues.remove_jobs``)."""
    job_id = job_id or canary_email_job_id()
    to = canaries.canary_email(target)

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


def email(target: Target, timeouts: Timeouts, *, within_s: float = EMAIL_WITHIN_S
          ) -> ProbeResult:
    """A ``send-email`` job to a canary mailbox is completed by the worker and the e-mail
    is delivered (``GET /emails/{id}``). Records the job's state, the failure reason, BullMQ's
    failed count before and after, the e-mail id; removes the job whatever happened."""
    expected = "a send-email job to a canary mailbox is sent and delivered"

    def body() -> Verdict:
        outcome = send_canary_email(target, timeouts, within_s=within_s)
        observed = dict(outcome)
        if outcome["state"] == "failed":
            reason = str(outcome["failed_reason"])
            return Verdict(False, expected, f"the worker failed the send-email job: {reason}"
                           f" (failed jobs {outcome['failed_before']} ->"
                           f" {outcome['failed_after']})", observed,
                           advice=email_advice(reason))
        if outcome["state"] != "completed":
            return Verdict(False, expected, f"the send-email job is {outcome['state']} after"
                           f" {within_s:g} s", observed, advice="worker")
        ok, said = delivered(target, timeouts, str(outcome["email_id"]), str(outcome["to"]))
        observed["delivery"] = said
        if not ok:
            return Verdict(False, expected, said, observed, advice="email")
        if not outcome["removed"]:
            return Verdict(False, expected, f"the canary job {outcome['job_id']} could not be"
                           " removed", observed, advice="queues")
        return Verdict(True, expected, observed=observed)

    budget = replace(timeouts, deadline=max(timeouts.deadline, within_s + 2 * (
        timeouts.connect + timeouts.read)))
    result = run_probe("email", "delivery", target, budget, body, expected=expected,
                       needs=("redis", "email provider", reachability.worker("email")))
    # A send-email job no worker took answers for the e-mail queue's worker, as its canary
    # would: the checks after it that need that worker do not wait for it again.
    queue_probe.answer_for_the_worker(target, "email", result, by="email delivery",
                                      job="send-email job")
    return result
