"""Game days for the runbook's service incidents (``GAMEDAYS``, keyed by slug).

Incident Response > Service Down, > Database Connection Errors (the database stopped; its
connection limit reached), > High Memory/CPU Usage; Troubleshooting > API Returns 500 Error
(a missing variable; a lost database), > Worker Not Processing Jobs, > "Invalid or Expired
Token" Errors. Their faults are sandbox faults (``sandbox_faults``, ``faults_services``).

How a remedy reads: the subsection's steps in the runbook's order, through the platform
adapter, each an ``Activity`` named after the step. A step's ``ok`` says it was carried out
and gave an answer; what it found leads its output (a failing check is a finding, not a
failed step). Restarts are ``ok`` only when the service is back. Where the runbook's steps
cannot restore service, the remedy proves it (the incident's check, run again right after
them, still fails), records ``runbook defect: ...`` with the corrected procedure, applies
the corrected step (``correction: ...``) and ends with ``verify: ...``, whose ``ok`` is the
incident's own check passing again. So a drill record shows the defect, the correction and
the proof, and the game day passes only when service is really back.

Every check and step is bounded (probe deadlines, platform timeouts, ``within_s`` waits).
Nothing here prints or records a secret: variables are compared by fingerprint, the seeded
canary's password is read from the sandbox's secrets into memory only.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from pydantic import SecretStr

from runbook.actions.logs import summarize as recent_logs_summary
from runbook.actions.users import canary_user
from runbook.clients import http_client
from runbook.config import Target
from runbook.drills.faults import DrillContext
from runbook.drills.faults_services import (
    BACKLOG_CLEANUP_S,
    backlog_ids,
    on_queue,
    remove_jobs,
)
from runbook.drills.gameday import GameDay
from runbook.drills.holder import APPLICATION_NAME
from runbook.drills.record import Objective
from runbook.platforms.base import lines_since, record
from runbook.probes import Verdict, combine, describe_error, e2e, run_probe
from runbook.probes import api as api_probe
from runbook.probes import metrics as metrics_probe
from runbook.probes import postgres as postgres_probe
from runbook.probes import queues as queue_probe
from runbook.probes import redis as redis_probe
from runbook.results import Activity, ProbeResult, Stopwatch, Timing
from runbook.sandbox import Sandbox
from runbook.sandbox.services.seeddata import CANARY_EMAIL
from runbook.sections import (
    API_500,
    DATABASE_ERRORS,
    HIGH_USAGE,
    INVALID_TOKEN,
    SERVICE_DOWN,
    WORKER_NOT_PROCESSING,
)
from runbook.timeouts import Timeouts

#: The API process's CPU over the window above which High Memory/CPU Usage is diagnosed
#: (an idle sandbox API uses a few percent; a runaway loop a whole core).
CPU_ALERT_PERCENT = 50.0
#: How long the CPU is measured for (two ``/metrics`` scrapes this far apart).
CPU_WINDOW_S = 1.0
#: How long a verification may wait for service to come back after a step.
VERIFY_WITHIN_S = 20.0
#: How long the worker gets to take a requested release and finish its job.
RELEASE_WITHIN_S = 8.0
#: The queue the worker game day piles jobs on, and how many.
BACKLOG_QUEUE = "email"
BACKLOG_JOBS = 3
#: Error lines newer than this count as the incident's own (older ones are history).
FRESH_ERRORS = timedelta(minutes=1)

#: What the database says when the connection slots a role may use are all taken:
#: "too many clients already" when every slot is, "remaining connection slots are reserved"
#: when only the superuser-reserved ones are left (a non-superuser application role).
CONNECTION_LIMIT = re.compile(r"too many clients|remaining connection slots are reserved",
                              re.IGNORECASE)
INVALID_TOKEN_REASON = "Invalid or expired token"
#: Our own database sessions (never terminated by a correction).
_OWN_APPLICATIONS = frozenset({"legacyvideo-runbook"})


# -- runbook defects (the corrected procedures) ------------------------------------------

DEFECT_DATABASE_DOWN = (
    "Database Connection Errors has no step that brings the database back: step 5 restarts"
    " the API, which cannot reach a database service that is down (measured: the database"
    " still refused connections after step 5). Corrected procedure: when step 2 or 3 shows"
    " the database service down, restart or recover the database service first (railway"
    " restart --service <postgres service>; if it will not start, Disaster Recovery >"
    " Database Corruption), confirm with step 3, then restart the API only if its errors"
    " persist."
)
DEFECT_CONNECTION_LIMIT = (
    "Database Connection Errors step 4 says to check connection limits but not what to do"
    " when they are reached, and step 5 (restart the API) frees no slot held by another"
    " client (measured: still refused after step 5). Corrected procedure for step 4: as the"
    " database's admin user compare count(*) from pg_stat_activity with max_connections"
    " (minus superuser_reserved_connections), group by application_name, usename and state"
    " to find the client holding idle connections, terminate them (select"
    " pg_terminate_backend(pid) from pg_stat_activity where application_name = '<client>'"
    " and state = 'idle'), then fix or stop that client (its pool size or leak) so they do"
    " not come back; restart the API only when it is the one leaking."
)
DEFECT_HIGH_CPU = (
    "High Memory/CPU Usage stops at diagnosis: steps 1-3 find the API process busy with no"
    " slow query and no stuck job, and steps 4-5 (scale vertically/horizontally) only add"
    " headroom around a runaway process (and cannot be done on the sandbox, so they were"
    " not run). Corrected procedure: after steps 1-3, restart the hot service (railway"
    " restart --service api) to stop the runaway, confirm on the metrics that CPU is back to"
    " normal, then find the cause (profile the process, review recent deployments); scale"
    " only for load that is legitimately high."
)
DEFECT_API_500_VARIABLE = (
    "API Returns 500 Error: the quick fix (railway restart --service api) does not add a"
    " missing environment variable; set it first (railway variables --set NAME=<value>"
    " --service api), then restart, and check the logs again. Not measurable on the"
    " sandbox, where a plain restart restores the configured environment, so the drill"
    " exercises the combined 'update and restart'."
)
DEFECT_API_500_DATABASE = (
    "API Returns 500 Error: the quick fix (railway restart --service api) does not help when"
    " the cause is a lost database (measured: still HTTP 500 after the restart). Corrected"
    " procedure: read the error in the logs first; when it is a database connection error,"
    " restore the database service (Incident Response > Database Connection Errors, with"
    " its correction: restart the database service), confirm the API answers, and restart"
    " the API only for a missing variable (after setting it) or an unhandled exception."
)
DEFECT_TOKEN_UPDATE = (
    "\"Invalid or Expired Token\" Errors: the fix as written (railway variables --set"
    " API_SECRET=\"new-secret\" --service worker, then restart the worker) keeps the"
    " mismatch when a new value is set on the worker alone (measured: fingerprints still"
    " differ, releases still fail). Corrected procedure: set the worker's API_SECRET to the"
    " API's current value (better: one shared variable both services reference), restart"
    " the worker, and compare the fingerprints again; rotating the secret means setting the"
    " same new value on both services (which also signs users out)."
)


# -- checks --------------------------------------------------------------------------------


def api_health(context: DrillContext) -> ProbeResult:
    """The API's ``/health`` (Service Down's check)."""
    return api_probe.health(context.target, context.timeouts)


def database_answers(context: DrillContext) -> ProbeResult:
    """A connection and a query with the application's ``DATABASE_URL``."""
    return postgres_probe.answers(context.target, context.timeouts)


def seeded_canary(context: DrillContext) -> tuple[str, SecretStr]:
    """The sandbox's seeded canary user and its password (read from the sandbox's
    secrets, held in memory only). Raises ``SandboxError`` for a sandbox never started."""
    return CANARY_EMAIL, SecretStr(Sandbox(context.home).secrets().user_password)


def narrow_500(result: ProbeResult) -> ProbeResult:
    """An end-to-end failure where the API answered a request with 5xx gets the advice of
    Troubleshooting > API Returns 500 Error (``api-500``) rather than the API's in general."""
    statuses = [result.observed.get(name) for name in ("login_status", "me_status")]
    if not result.ok and any(isinstance(s, int) and s >= 500 for s in statuses):
        return replace(result, advice="api-500")
    return result


def api_round_trip(context: DrillContext) -> ProbeResult:
    """``e2e.round_trip`` as the seeded canary (``narrow_500`` applied)."""
    email, password = seeded_canary(context)
    return narrow_500(e2e.round_trip(context.target, context.timeouts, email, password))


def api_cpu(target: Target, timeouts: Timeouts, *, limit_percent: float = CPU_ALERT_PERCENT,
            window_s: float = CPU_WINDOW_S) -> ProbeResult:
    """The API process's CPU over ``window_s`` from its own ``/metrics``
    (``process_cpu_seconds_total`` read twice): fails at ``limit_percent`` or more, with the
    advice of High Memory/CPU Usage. Records CPU %, memory and latency figures."""
    expected = f"the API process below {limit_percent:g}% CPU over {window_s:g} s"
    scraped = metrics_probe.scrape(target, timeouts, window_s=window_s)
    if not scraped.ok:
        return scraped
    kept = ("cpu_percent", "cpu_percent_since_start", "memory_rss_mib", "uptime_s", "window_s",
            "p99_ms", "requests_total")
    observed: dict[str, Any] = {k: scraped.observed[k] for k in kept if k in scraped.observed}
    observed["limit_percent"] = limit_percent
    cpu = observed.get("cpu_percent")
    problem = ""
    if not isinstance(cpu, int | float):
        problem = "the API's /metrics has no process_cpu_seconds_total to measure CPU with"
    elif cpu >= limit_percent:
        problem = (f"the API process used {cpu:.0f}% CPU over {window_s:g} s (alert at"
                   f" {limit_percent:g}%)")
    return ProbeResult(component="metrics", check="API CPU", target=scraped.target,
                       ok=not problem, timing=scraped.timing, problem=problem,
                       expected=expected, observed=observed, advice="metrics")


def api_cpu_check(context: DrillContext) -> ProbeResult:
    """``api_cpu`` on the drill's target."""
    return api_cpu(context.target, context.timeouts)


def worker_backlog(context: DrillContext, queue: str = BACKLOG_QUEUE) -> ProbeResult:
    """A worker registered on both queues (``queues.workers``) plus ``queue``'s job counts;
    a failure says how many jobs are waiting (``observed["waiting"]``)."""
    target, timeouts = context.target, context.timeouts
    results = [queue_probe.workers(target, timeouts, name) for name in queue_probe.QUEUES]
    counts = queue_probe.counts(target, timeouts, queue)
    combined = combine("worker", "worker processing jobs", [*results, counts])
    waiting = counts.observed.get("wait")
    if isinstance(waiting, int):
        observed = {**combined.observed, "waiting": waiting, "queue": queue}
        problem = (f"{combined.problem}; {waiting} job(s) waiting on {queue}"
                   if not combined.ok else "")
        combined = replace(combined, observed=observed, problem=problem)
    return combined


_INSERT_VIDEO = (
    'INSERT INTO "Video" ("id", "ownerId", "title", "s3Key", "contentType", "status",'
    ' "updatedAt") VALUES (%s, %s, %s, %s, %s, \'READY\', now())'
)


def release_round_trip(target: Target, timeouts: Timeouts, *,
                       within_s: float = RELEASE_WITHIN_S) -> ProbeResult:
    """A release requested through the API is processed by the worker: a canary user
    (``actions.users.canary_user``) with a READY video row of its own requests a release
    (202), and its ``process-release`` job must complete within ``within_s``. A job failed
    with "Invalid or expired token" gets the advice of that Troubleshooting entry
    (``api-secret``). Everything made is removed afterwards: the jobs (the release's and its
    e-mail's), then the canary with its video and release rows."""
    expected = (f"a requested release processed by the worker (process-release completed)"
                f" within {within_s:g} s")
    api = target.require("API_URL")
    dsn = target.require("DATABASE_URL")
    queue = "release-process"

    async def follow(bull: Any, connection: Any, release_id: str) -> dict[str, Any]:
        started = time.monotonic()
        state = "unknown"
        while time.monotonic() - started < within_s:
            state = str(await bull.getJobState(release_id))
            if state in ("completed", "failed"):
                break
            await asyncio.sleep(0.05)
        job = await bull.getJob(release_id)
        reason = str(getattr(job, "failedReason", "") or "") if job is not None else ""
        email_job = f"release-email-{release_id}"
        left = await remove_jobs(bull, connection, queue, [release_id], BACKLOG_CLEANUP_S)
        return {"state": state, "failed_reason": reason, "waited_ms":
                round((time.monotonic() - started) * 1000, 1), "left": left,
                "email_job": email_job if state == "completed" else ""}

    async def remove_email(bull: Any, connection: Any, job_id: str) -> list[str]:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if str(await bull.getJobState(job_id)) in ("completed", "failed", "unknown"):
                break
            await asyncio.sleep(0.05)
        return await remove_jobs(bull, connection, "email", [job_id], BACKLOG_CLEANUP_S)

    def body() -> Verdict:
        observed: dict[str, Any] = {}
        with canary_user(target, timeouts) as user:
            video_id = str(uuid.uuid4())
            with postgres_probe.connect(dsn, timeouts, read_only=False) as conn:
                conn.execute(_INSERT_VIDEO, (video_id, user.id, "Runbook canary release",
                                             f"runbook-canary/{video_id}.mp4", "video/mp4"))
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
            followed = on_queue(target, timeouts, queue,
                                lambda bull, conn: follow(bull, conn, release_id))
            observed.update({k: v for k, v in followed.items() if k != "left"})
            if followed["email_job"]:
                left = on_queue(target, timeouts, "email", lambda bull, conn: remove_email(
                    bull, conn, str(followed["email_job"])))
                followed["left"] = [*followed["left"], *left]
            if followed["left"]:
                observed["left_behind"] = followed["left"]
        state, reason = str(followed["state"]), str(followed["failed_reason"])
        if state == "failed":
            advice = "api-secret" if INVALID_TOKEN_REASON.lower() in reason.lower() else "worker"
            return Verdict(False, expected, f"the worker failed the release's process-release"
                           f" job: {reason or 'no reason given'}", observed, advice=advice)
        if state != "completed":
            return Verdict(False, expected, f"the release's job is {state} after {within_s:g}"
                           " s", observed, advice="worker")
        return Verdict(True, expected, observed=observed)

    budget = replace(timeouts, deadline=within_s + 2 * BACKLOG_CLEANUP_S + timeouts.deadline)
    return run_probe("worker", "release round trip", target, budget, body, expected=expected)


def release_check(context: DrillContext) -> ProbeResult:
    """``release_round_trip`` on the drill's target."""
    return release_round_trip(context.target, context.timeouts)


# -- steps ---------------------------------------------------------------------------------

Check = Callable[[DrillContext], ProbeResult]



def _as_step(activity: Activity, name: str, *, finding: str = "", ok: bool | None = None,
             output: str | None = None) -> Activity:
    """``activity`` as the runbook step ``name``: ``output`` (default: the activity's) ends
    with ``finding`` (the tail is what evidence keeps); ``ok`` (when given) says whether the
    step was carried out."""
    performed = activity.ok if ok is None else ok
    kept = activity.output if output is None else output
    text = "\n".join(part for part in (kept, finding) if part)
    return replace(activity, name=name, ok=performed, output=text,
                   error="" if performed else activity.error)


def _result_text(result: ProbeResult) -> str:
    verdict = "passes" if result.ok else f"FAILS: {result.problem}"
    return f"{result.component} {result.check} {verdict}"


def _check_step(context: DrillContext, name: str, command: tuple[str, ...],
                result: ProbeResult, *, ok: bool = True) -> Activity:
    """A read-only check run as a runbook step: its verdict is the finding."""
    redact = context.redactor()
    observed = json.dumps(dict(result.observed), default=str, sort_keys=True)[:3000]
    return Activity(name=name, command=command, timing=result.timing, ok=ok,
                    output=redact(f"{observed}\nfound: {_result_text(result)}"),
                    error="" if ok else redact(result.problem))


def _status_step(context: DrillContext, name: str, service: str | None = None) -> Activity:
    """The platform's status; carried out when the platform answered (a service that is not
    running is the finding)."""
    activity = context.platform.status(service)
    answered = activity.ok or activity.error.startswith("not running")
    finding = ("found: everything running" if activity.ok else f"found: {activity.error}")
    return _as_step(activity, name, finding=finding, ok=answered)


def _logs_step(context: DrillContext, name: str, service: str, *, must_show: str = "",
               count: str = "", since: str = "10m") -> Activity:
    """Read ``service``'s recent logs and count their errors (and the lines matching the
    regular expression ``count``). With ``must_show`` (a regular expression) the step is
    carried out only when a fresh error line (within ``FRESH_ERRORS``) matches it: the logs
    must show the incident's error. The output keeps the last error lines, not the log."""
    logs = context.platform.logs(service, since=since, lines=500)
    summary = recent_logs_summary(logs, since=since)
    fresh = lines_since(list(summary.errors), FRESH_ERRORS)
    shown = [line for line in fresh if must_show and re.search(must_show, line, re.IGNORECASE)]
    finding = (f"found: {summary.lines} lines, {summary.error_lines} error lines"
               f" ({len(fresh)} in the last {int(FRESH_ERRORS.total_seconds())} s)")
    if count:
        matching = sum(1 for line in logs.lines if re.search(count, line))
        finding += f", {matching} lines matching /{count}/"
    if summary.error_percent is not None:
        finding += f", {summary.error_percent:g}% of requests answered 5xx"
    latest = (shown or fresh or list(summary.errors) or [""])[-1]
    if latest:
        finding += f"; latest error: {latest}"
    if must_show:
        finding += (f"; the error /{must_show}/ is shown" if shown
                    else f"; NO fresh error line matches /{must_show}/")
    ok = summary.ok and (not must_show or bool(shown))
    return _as_step(summary.activity, name, finding=finding, ok=ok,
                    output="\n".join(summary.errors[-10:]))


def _restart_step(context: DrillContext, name: str, service: str) -> Activity:
    """Restart ``service`` through the platform adapter (ok: it runs again)."""
    return _as_step(context.platform.restart(service), name)


def _compare_step(context: DrillContext, name: str, variable: str,
                  services: tuple[str, str] = ("api", "worker")) -> tuple[Activity, bool | None]:
    """Fingerprints of ``variable`` on two services (never the values): the step and
    whether they match (``None``: cannot tell)."""
    first, second = (context.platform.variables(s) for s in services)
    same = first.matches(second, variable)
    prints = ", ".join(f"{v.service} {v.fingerprints.get(variable, 'unset/unreadable')}"
                       for v in (first, second))
    verdict = {True: "the same", False: "DIFFERENT", None: "cannot tell"}[same]
    finding = f"found: {variable} fingerprints {prints}: {verdict}"
    timing = Timing(first.activity.timing.started_at, second.activity.timing.finished_at,
                    first.activity.elapsed_s + second.activity.elapsed_s)
    activity = Activity(name=name, command=(*first.activity.command, "&&",
                                            *second.activity.command),
                        timing=timing, ok=first.ok and second.ok, output=finding,
                        error="; ".join(v.activity.error for v in (first, second)
                                        if v.activity.error))
    return activity, same


def _verify(context: DrillContext, name: str, check: Check, *,
            within_s: float = VERIFY_WITHIN_S, interval_s: float = 0.25) -> Activity:
    """Run ``check`` until it passes or ``within_s`` passes; ok when it passed."""
    watch = Stopwatch()
    seen: list[str] = []
    checks = 0
    while True:
        checks += 1
        result = check(context)
        if result.ok:
            break
        if result.problem not in seen:
            seen.append(result.problem)
        if watch.seconds >= within_s:
            break
        time.sleep(interval_s)
    elapsed = watch.seconds
    if result.ok:
        output = f"{_result_text(result)} after {elapsed:.2f} s ({checks} checks)"
    else:
        output = f"not within {within_s:g} s ({checks} checks); saw: {'; '.join(seen)}"
    redact = context.redactor()
    return Activity(name=name, command=("check", result.component, result.check),
                    timing=watch.timing(), ok=result.ok,
                    output=redact(output), error="" if result.ok else redact(result.problem))


#: Restored means green this many checks in a row (as the recovery phase counts it): one
#: lucky sample (a starved CPU hog reading under its alert) is not a recovery.
RESTORED_CHECKS = 3


def _after_runbook(context: DrillContext, check: Check, defect: str, headline: str
                   ) -> tuple[Activity, bool]:
    """The incident's check right after the runbook's own steps, up to ``RESTORED_CHECKS``
    times. Failing once: an activity named ``runbook defect: <headline>`` whose output ends
    with ``defect`` (the corrected procedure), and True (a correction is needed). Passing
    every time: the runbook's steps restored service, and False."""
    for _ in range(RESTORED_CHECKS):
        result = check(context)
        if not result.ok:
            break
    if result.ok:
        return _check_step(context, "after the runbook's steps: service restored",
                           ("check", result.component, result.check), result), False
    activity = _check_step(context, f"runbook defect: {headline} (the check still fails)",
                           ("check", result.component, result.check), result)
    return replace(activity, output=f"{activity.output}\nrunbook defect: {defect}"), True


def _start_database_step(context: DrillContext, name: str) -> Activity:
    """Restart the database service (the sandbox's PostgreSQL) and wait until it runs."""
    sandbox = Sandbox(context.home)

    def body() -> tuple[bool, str, str]:
        current = sandbox.status().components["postgres"]
        if current.running:
            return True, f"postgres already running (pid {current.pid})", ""
        try:
            started = sandbox.start("postgres", wait=True, timeout=60)
        except Exception as exc:
            return False, "", describe_error(exc)
        return True, f"postgres running (pid {started.pid})", ""

    return record(name, ("runbook", "sandbox", "restart", "postgres"), body, context.redactor())


# -- connection use ------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionUse:
    """``pg_stat_activity`` against ``max_connections``, as the database's admin sees it."""

    max_connections: int
    reserved: int
    clients: int
    #: ``(application_name, usename, state, count)``, most connections first.
    groups: tuple[tuple[str, str, str, int], ...]

    @property
    def available(self) -> int:
        """Slots a non-superuser role may use."""
        return self.max_connections - self.reserved

    @property
    def exhausted(self) -> bool:
        return self.clients >= self.available

    def top_idle(self) -> tuple[str, str, int] | None:
        """The client holding the most idle connections (not the runbook's own)."""
        for application, user, state, count in self.groups:
            if state == "idle" and application not in _OWN_APPLICATIONS:
                return application, user, count
        return None

    def describe(self) -> str:
        top = ", ".join(f"{a} ({u}, {s}) {n}" for a, u, s, n in self.groups[:3])
        verdict = "LIMIT REACHED" if self.exhausted else "below the limit"
        return (f"{self.clients} client connections of max_connections {self.max_connections}"
                f" ({self.reserved} reserved for superusers, so {self.available} for"
                f" applications): {verdict}; most: {top or 'none'}")


def connection_use(context: DrillContext) -> ConnectionUse:
    """Measure connection use as the database's admin (the sandbox's superuser, who can
    still connect when the application's slots are gone). Raises ``psycopg.Error``."""
    dsn = Sandbox(context.home).superuser_dsn()
    with postgres_probe.connect(dsn, context.timeouts) as conn:
        limits = conn.execute("select current_setting('max_connections')::int,"
                              " current_setting('superuser_reserved_connections')::int"
                              ).fetchone()
        rows = conn.execute(
            "select coalesce(nullif(application_name, ''), '(none)'),"
            " coalesce(usename::text, '(none)'), coalesce(state, '(none)'), count(*)"
            " from pg_stat_activity where backend_type = 'client backend'"
            " and pid <> pg_backend_pid() group by 1, 2, 3 order by 4 desc, 1"
        ).fetchall()
    assert limits is not None
    groups = tuple((str(a), str(u), str(s), int(n)) for a, u, s, n in rows)
    return ConnectionUse(int(limits[0]), int(limits[1]), sum(g[3] for g in groups), groups)


def _limits_step(context: DrillContext, name: str) -> tuple[Activity, ConnectionUse | None]:
    """Step 4, check connection limits: ``connection_use`` recorded with its verdict."""
    measured: list[ConnectionUse] = []

    def body() -> tuple[bool, str, str]:
        try:
            measured.append(connection_use(context))
        except Exception as exc:
            return True, f"found: cannot measure: {describe_error(exc)}", ""
        use = measured[0]
        return True, f"found: {use.describe()}", ""

    activity = record(name, ("psql", "<database admin>", "-c",
                             "select count(*) from pg_stat_activity; show max_connections"),
                      body, context.redactor())
    return activity, (measured[0] if measured else None)


def _terminate_idle_step(context: DrillContext, name: str, use: ConnectionUse | None
                         ) -> Activity:
    """Terminate the idle connections of the client step 4 found holding the most."""
    top = use.top_idle() if use is not None else None

    def body() -> tuple[bool, str, str]:
        if top is None:
            return False, "", "step 4 found no client holding idle connections"
        application, user, count = top
        dsn = Sandbox(context.home).superuser_dsn()
        try:
            with postgres_probe.connect(dsn, context.timeouts, read_only=False) as conn:
                row = conn.execute(
                    "select count(*) filter (where pg_terminate_backend(pid))"
                    " from pg_stat_activity where application_name = %s and usename = %s"
                    " and state = 'idle' and pid <> pg_backend_pid()", (application, user),
                ).fetchone()
        except Exception as exc:
            return False, "", describe_error(exc)
        terminated = int(row[0]) if row else 0
        return terminated > 0, (f"terminated {terminated} idle connections of {application}"
                                f" ({user}); step 4 counted {count}"), ""

    return record(name, ("psql", "<database admin>", "-c", "select pg_terminate_backend(pid)"
                         " from pg_stat_activity where application_name = ... and state ="
                         " 'idle'"), body, context.redactor())


# -- remedies --------------------------------------------------------------------------------


def _database_steps(context: DrillContext) -> tuple[list[Activity], ConnectionUse | None]:
    """Database Connection Errors, steps 1-5 as written."""
    steps = [_compare_step(context, "1. verify DATABASE_URL (railway variables --service"
                           " api; compared with the worker's)", "DATABASE_URL")[0],
             _status_step(context, "2. check the database service (railway status)")]
    steps.append(_check_step(context, "3. test the connection (railway run --service api npx"
                             " prisma db pull; read-only here)", ("check", "database",
                                                                 "answers"),
                             database_answers(context)))
    limits, use = _limits_step(context, "4. check connection limits (PostgreSQL"
                               " max_connections)")
    steps.append(limits)
    steps.append(_restart_step(context, "5. restart the API (railway restart --service api)",
                               "api"))
    return steps, use


def service_down_remedy(context: DrillContext) -> list[Activity]:
    """Incident Response > Service Down, steps 1-5."""
    target, timeouts = context.target, context.timeouts
    return [
        _status_step(context, "1. check service status (railway status)"),
        _logs_step(context, "2. check logs (railway logs --service api --tail)", "api"),
        _check_step(context, "3. check the database (railway run --service api npx prisma db"
                    " pull; read-only here)", ("check", "database", "answers"),
                    postgres_probe.answers(target, timeouts)),
        _check_step(context, "4. check Redis (redis-cli -u $REDIS_URL ping)",
                    ("redis-cli", "-u", "$REDIS_URL", "ping"), redis_probe.ping(target, timeouts)),
        _restart_step(context, "5. restart the service (railway restart --service api)", "api"),
        _verify(context, "verify: the API's health check passes", api_health),
    ]


def database_down_remedy(context: DrillContext) -> list[Activity]:
    """Database Connection Errors, steps 1-5; then, as the database still refuses, the
    correction: restart the database service."""
    steps, _ = _database_steps(context)
    after, needed = _after_runbook(
        context, database_answers, DEFECT_DATABASE_DOWN,
        "no step brings the database back; step 5 (restart the API) leaves it down")
    steps.append(after)
    if needed:
        steps.append(_start_database_step(context, "correction: restart the database service"
                                          " (railway restart --service <postgres service>)"))
    steps.append(_verify(context, "verify: the database answers the application",
                         database_answers))
    return steps


def connection_limit_remedy(context: DrillContext) -> list[Activity]:
    """Database Connection Errors, steps 1-5 (step 4 finds the limit reached); then the
    correction: terminate the idle connections of the client step 4 found holding them."""
    steps, use = _database_steps(context)
    after, needed = _after_runbook(
        context, database_answers, DEFECT_CONNECTION_LIMIT,
        "step 4 finds the limit reached but no step frees a slot; step 5 does not either")
    steps.append(after)
    if needed:
        steps.append(_terminate_idle_step(context, "correction: terminate the idle"
                                          " connections of the client holding them", use))
    steps.append(_verify(context, "verify: the database answers the application",
                         database_answers))
    return steps


def high_cpu_remedy(context: DrillContext) -> list[Activity]:
    """High Memory/CPU Usage, steps 1-3 (4-5, scaling, cannot be done on the sandbox); then
    the correction: restart the API."""
    target, timeouts = context.target, context.timeouts
    cpu = api_cpu(target, timeouts)
    steps = [_check_step(context, "1. check the metrics (the API's /metrics: CPU over"
                         f" {CPU_WINDOW_S:g} s)", ("GET", "/metrics", "x2"), cpu)]
    steps.append(_logs_step(context, "2. identify resource-hungry queries in logs (railway"
                            " logs --service api)", "api", count=r"query took"))
    counts = [queue_probe.counts(target, timeouts, queue) for queue in queue_probe.QUEUES]
    stuck = ", ".join(f"{r.observed.get('queue')}: {r.observed.get('active')} active,"
                      f" {r.observed.get('wait')} waiting" for r in counts)
    steps.append(replace(_check_step(context, "3. check for stuck jobs in queues",
                                     ("check", "queues", "counts"),
                                     combine("queues", "counts", counts)),
                         output=f"found: {stuck}"))
    after, needed = _after_runbook(
        context, api_cpu_check, DEFECT_HIGH_CPU,
        "steps 1-3 only diagnose; scaling (4-5) does not stop a runaway process")
    steps.append(after)
    if needed:
        steps.append(_restart_step(context, "correction: restart the hot service (railway"
                                   " restart --service api); scaling (steps 4-5) is not"
                                   " possible on the sandbox", "api"))
    steps.append(_verify(context, f"verify: the API's CPU is below {CPU_ALERT_PERCENT:g}%",
                         api_cpu_check))
    return steps


def api_500_variable_remedy(context: DrillContext) -> list[Activity]:
    """API Returns 500 Error for a missing variable: the logs must show the error; then
    "update and restart" (a plain restart restores the configured environment)."""
    return [
        _logs_step(context, "check recent logs (railway logs --service api --tail)", "api",
                   must_show=r"unhandled error on .*(password|environment variable)"),
        _restart_step(context, "update and restart: the variable as configured, then"
                      " railway restart --service api", "api"),
        _verify(context, "verify: the end-to-end round trip passes", api_round_trip),
    ]


def api_500_database_remedy(context: DrillContext) -> list[Activity]:
    """API Returns 500 Error for a lost database: the logs, the quick fix (restart the API);
    then, as the API still answers 500, the correction: restart the database service."""
    steps = [
        _logs_step(context, "check recent logs (railway logs --service api --tail)", "api",
                   must_show=r"unhandled error on .*(connect|database|server)"),
        _restart_step(context, "quick fix: railway restart --service api", "api"),
    ]
    after, needed = _after_runbook(
        context, api_round_trip, DEFECT_API_500_DATABASE,
        "the quick fix (restart the API) leaves a lost database lost")
    steps.append(after)
    if needed:
        steps.append(_start_database_step(context, "correction: restart the database service"
                                          " (the cause the logs show)"))
    steps.append(_verify(context, "verify: the end-to-end round trip passes", api_round_trip))
    return steps


def _drain_step(context: DrillContext, name: str, queue: str = BACKLOG_QUEUE,
                jobs: int = BACKLOG_JOBS, within_s: float = VERIFY_WITHIN_S) -> Activity:
    """The piled-up canary jobs completed and ``queue``'s wait list empty, then the jobs
    removed (ok: all three)."""
    ids = backlog_ids(queue, jobs)

    async def work(bull: Any, connection: Any) -> tuple[dict[str, str], int, float, list[str]]:
        started = time.monotonic()
        while True:
            states = {job_id: str(await bull.getJobState(job_id)) for job_id in ids}
            waiting = int(await connection.llen(queue_probe.key(queue, "wait")))
            done = all(s == "completed" for s in states.values()) and waiting == 0
            if done or time.monotonic() - started > within_s:
                break
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        left = await remove_jobs(bull, connection, queue, ids, BACKLOG_CLEANUP_S)
        return states, waiting, elapsed, left

    def body() -> tuple[bool, str, str]:
        try:
            states, waiting, elapsed, left = on_queue(context.target, context.timeouts, queue,
                                                      work)
        except Exception as exc:
            return False, "", describe_error(exc)
        completed = sum(1 for s in states.values() if s == "completed")
        output = (f"{completed} of {jobs} piled-up jobs completed; {queue} wait now {waiting}"
                  f" (checked for {elapsed:.2f} s); canary jobs"
                  f" {'removed' if not left else 'NOT removed: ' + ', '.join(left)}")
        ok = completed == jobs and waiting == 0 and not left
        return ok, output, "" if ok else "the backlog did not drain"

    return record(name, ("check", "queues", f"{queue} backlog"), body, context.redactor())


def worker_remedy(context: DrillContext) -> list[Activity]:
    """Worker Not Processing Jobs: status, logs, Redis, restart; verified by the backlog
    draining (wait back to 0)."""
    return [
        _status_step(context, "check the worker is running (railway status --service worker)",
                     "worker"),
        _logs_step(context, "check logs (railway logs --service worker --tail)", "worker"),
        _check_step(context, "check the Redis connection (redis-cli -u $REDIS_URL ping)",
                    ("redis-cli", "-u", "$REDIS_URL", "ping"),
                    redis_probe.ping(context.target, context.timeouts)),
        _restart_step(context, "restart the worker (railway restart --service worker)",
                      "worker"),
        _drain_step(context, "verify: the piled-up jobs drained (wait back to 0)"),
    ]


def _update_as_written_step(context: DrillContext) -> Activity:
    """The runbook's update as written: a new API_SECRET on the worker alone, then a
    worker restart (the new value is random and never recorded)."""
    sandbox = Sandbox(context.home)

    def body() -> tuple[bool, str, str]:
        try:
            after = sandbox.restart("worker", {"API_SECRET": secrets.token_hex(32)},
                                    timeout=30)
        except Exception as exc:
            return False, "", describe_error(exc)
        return True, f"worker running (pid {after.pid}) with a new API_SECRET", ""

    return record("update and restart as written (railway variables --set"
                  " API_SECRET=\"new-secret\" --service worker; railway restart --service"
                  " worker)", ("railway", "variables", "--set", "API_SECRET=<new>", "--service",
                               "worker", "&&", "railway", "restart", "--service", "worker"),
                  body, context.redactor())


def invalid_token_remedy(context: DrillContext) -> list[Activity]:
    """"Invalid or Expired Token" Errors: compare API_SECRET's fingerprints; update and
    restart the worker as written (a new value on the worker: still a mismatch); then the
    correction: the worker gets the API's value (a plain restart) and releases work again."""
    compare_name = ("verify API_SECRET matches between services (railway variables --service"
                    " api | grep API_SECRET; ... --service worker | grep API_SECRET)")
    compare, same = _compare_step(context, compare_name, "API_SECRET")
    steps = [compare]
    if same is False:
        steps.append(_update_as_written_step(context))
        again, same_after = _compare_step(context, "compare API_SECRET again", "API_SECRET")
        steps.append(again)
        after, needed = _after_runbook(
            context, release_check, DEFECT_TOKEN_UPDATE,
            "a new API_SECRET set on the worker alone keeps the mismatch")
        steps.append(after)
        if needed or same_after is False:
            steps.append(_restart_step(context, "correction: set the worker's API_SECRET to"
                                       " the API's value and restart the worker (sandbox: the"
                                       " configured value, a plain restart)", "worker"))
            steps.append(_compare_step(context, "compare API_SECRET after the correction",
                                       "API_SECRET")[0])
    steps.append(_verify(context, "verify: a requested release is processed", release_check))
    return steps


# -- the game days -------------------------------------------------------------------------

GAMEDAYS: dict[str, GameDay] = {
    "service-down": GameDay(
        name="service-down", section=SERVICE_DOWN.section, fault="component-down",
        params={"component": "api"}, detect=api_health, diagnosis=SERVICE_DOWN.section,
        remedy=service_down_remedy, detect_within_s=10, recover_within_s=30,
        objective=Objective(rto_s=300),  # Recovery Time Objectives: API crash, 5 minutes
    ),
    "database-connection-errors": GameDay(
        name="database-connection-errors", section=DATABASE_ERRORS.section,
        fault="component-down", params={"component": "postgres"}, detect=database_answers,
        diagnosis=DATABASE_ERRORS.section, remedy=database_down_remedy,
        detect_within_s=15, recover_within_s=45,
        objective=Objective(rto_s=1800),  # Database failure, 30 minutes
        defect=DEFECT_DATABASE_DOWN,
    ),
    "connection-limit-exhausted": GameDay(
        name="connection-limit-exhausted", section=DATABASE_ERRORS.section,
        fault="connection-hog",
        params={"application_name": APPLICATION_NAME, "max_hold_s": 300},
        detect=database_answers, diagnosis=DATABASE_ERRORS.section,
        remedy=connection_limit_remedy, detect_within_s=15, recover_within_s=30,
        objective=Objective(rto_s=1800), defect=DEFECT_CONNECTION_LIMIT,
    ),
    "high-cpu": GameDay(
        name="high-cpu", section=HIGH_USAGE.section, fault="service-env-override",
        params={"service": "api", "variable": "RUNBOOK_CHAOS_CPU_HOG", "change": "set",
                "value": "1"},
        detect=api_cpu_check, diagnosis=HIGH_USAGE.section, remedy=high_cpu_remedy,
        detect_within_s=15, recover_within_s=30, defect=DEFECT_HIGH_CPU,
        verify=api_cpu_check,
    ),
    "api-500-missing-variable": GameDay(
        name="api-500-missing-variable", section=API_500.section,
        fault="service-env-override",
        params={"service": "api", "variable": "DATABASE_URL", "change": "drop-password"},
        detect=api_round_trip, diagnosis=API_500.section, remedy=api_500_variable_remedy,
        detect_within_s=15, recover_within_s=30, objective=Objective(rto_s=300),
        defect=DEFECT_API_500_VARIABLE,
    ),
    "api-500-lost-database": GameDay(
        name="api-500-lost-database", section=API_500.section, fault="component-down",
        params={"component": "postgres"}, detect=api_round_trip, diagnosis=API_500.section,
        remedy=api_500_database_remedy, detect_within_s=15, recover_within_s=45,
        objective=Objective(rto_s=1800), defect=DEFECT_API_500_DATABASE,
    ),
    "worker-not-processing": GameDay(
        name="worker-not-processing", section=WORKER_NOT_PROCESSING.section,
        fault="worker-down-backlog", params={"queue": BACKLOG_QUEUE, "jobs": BACKLOG_JOBS},
        detect=worker_backlog, diagnosis=WORKER_NOT_PROCESSING.section, remedy=worker_remedy,
        detect_within_s=15, recover_within_s=30, verify=worker_backlog,
    ),
    "invalid-token": GameDay(
        name="invalid-token", section=INVALID_TOKEN.section, fault="service-env-override",
        params={"service": "worker", "variable": "API_SECRET", "change": "random"},
        detect=release_check, diagnosis=INVALID_TOKEN.section, remedy=invalid_token_remedy,
        detect_within_s=20, recover_within_s=30, defect=DEFECT_TOKEN_UPDATE,
        verify=release_check,
    ),
}
