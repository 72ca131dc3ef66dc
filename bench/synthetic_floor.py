"""The synthetic suite's wall time against the raw floor: the same protocol calls made by a
plain script, plus the suite's fixed start-up.

    .venv/bin/python bench/synthetic_floor.py [--runs 5] [--json]

Starts a fresh sandbox in a temporary RUNBOOK_HOME (destroyed afterwards). Each run measures,
in a rotating order:

* suite: ``runbook check`` (the @synthetic scenarios without a cadence) against it;
* start-up: ``runbook check -k <nothing>``: the interpreter, the CLI, pytest and its
  plugins, collecting and deselecting every scenario, the run's reports; no scenario runs;
* floor: ``FLOOR`` below, in this process: for each scenario the suite runs, the HTTP
  requests, PostgreSQL connections and queries, Redis commands, BullMQ calls, S3 requests
  and file reads its probes make, in their order, with plain clients and no checking
  beyond the status. A connection is opened wherever a probe opens one; client objects
  (one boto3 client, one TLS context, one event loop) are built once, as a plain script
  would, so what the suite spends building them per probe counts as its overhead. What the
  suite does once per run the floor does once per run too: each component asked once
  (``runbook.reachability``), one canary user made (bcrypt, cost 12) by the first journey
  and removed at the end. Where a probe waits for an event (a worker ending a job) the floor
  polls for the same event at the probe's interval; where it waits out a window (the CPU
  over a second, the slow-query looks) the floor waits the same. SQL is the probes' own
  statements, imported.

One warm-up run of each is discarded. Prints the medians, the per-scenario overhead
``(suite - start-up - floor) / scenarios``, how much of the suite is spent inside the
scenarios (setup, call, teardown) and which scenarios exceed their floor most, and the
ratio ``(suite - start-up) / floor`` (the median of each run's own ratio) against the goal
of 1.5x and the start-up against 2 s (issue 17), with the load average; exits 1 when either
goal is missed, 2 when the benchmark cannot
measure (a check failed, or the floor no longer mirrors the scenarios the suite runs).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import shutil
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bcrypt
import boto3
import httpx
import psycopg
import redis
from _support import (
    NO_SCENARIO,
    BenchError,
    Series,
    conclude,
    fresh_sandbox,
    load_1min,
    machine,
    print_table,
    require_nothing_ran,
    require_passed,
    runbook_check,
)
from botocore.config import Config
from bullmq import Queue
from redis.asyncio import Redis as AsyncRedis

from runbook.actions.database import SANDBOX_MIGRATIONS_DIR
from runbook.actions.journeys import _INSERT_VIDEO
from runbook.actions.users import _COUNT_AUDIT, _INSERT_USER, _REMOVE_STATEMENTS, BCRYPT_COST
from runbook.probes.audit import _BURSTS, _CANARY_FAILURES, _FAILURES_IN_WINDOW, CANARY_EMAIL
from runbook.probes.postgres import _ACTIVITY_SQL
from runbook.sandbox import Sandbox
from runbook.sandbox.backups import backups_dir
from runbook.sandbox.layout import Layout

#: The goals (issue 17): the suite, less its fixed start-up, within this many times the
#: floor; the start-up itself (``runbook check`` selecting nothing) within STARTUP_GOAL_S.
GOAL_RATIO = 1.5
STARTUP_GOAL_S = 2.0
QUEUES = ("email", "release-process")
STATES = ("wait", "active", "paused", "failed", "completed", "delayed", "prioritized")
LIST_STATES = ("wait", "active", "paused")
PG_WRITE_OPTIONS = "-c statement_timeout=5000"
PG_OPTIONS = f"{PG_WRITE_OPTIONS} -c default_transaction_read_only=on"
ENDED = ("completed", "failed")
#: Where ``runbook.reachability`` asks each component reached over HTTP (its address itself).
ADDRESS = {"api": "API_URL", "web": "WEB_URL", "s3": "S3_ENDPOINT_URL",
           "email provider": "RESEND_API_URL"}


async def _until(bull: Queue, job_id: str, states: tuple[str, ...], interval_s: float,
                 within_s: float = 10.0) -> None:
    """Poll ``job_id``'s state every ``interval_s`` (the journey's own interval) until it is
    one of ``states``: the floor waits for the same event, not a fixed time."""
    started = time.monotonic()
    while await bull.getJobState(job_id) not in states:
        if time.monotonic() - started > within_s:
            raise BenchError(f"the job {job_id} did not end within {within_s:g} s")
        await asyncio.sleep(interval_s)


async def _remove(bull: Queue, connection: AsyncRedis, queue: str, job_id: str) -> None:
    """Remove ``job_id``, again every 0.1 s while its key is there (an active job is locked)."""
    while True:
        await bull.remove(job_id)
        if not await connection.exists(f"bull:{queue}:{job_id}"):
            return
        await asyncio.sleep(0.1)


class Floor:
    """The protocol calls of the synthetic scenarios, made plainly against one sandbox."""

    def __init__(self, env: Mapping[str, str], home: Path) -> None:
        self.env = env
        self.home = home
        self.api = env["API_URL"]
        self.bucket = env["S3_BUCKET"]
        self.tls = ssl.create_default_context()
        self.loop = asyncio.Runner()
        self.s3 = boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["S3_REGION"],
        ).client("s3", endpoint_url=env["S3_ENDPOINT_URL"], config=Config(
            signature_version="s3v4", s3={"addressing_style": "path"},
            connect_timeout=3, read_timeout=5, retries={"total_max_attempts": 1}))
        self.asked: set[str] = set()
        #: The run's canary user (id, e-mail, password, token), made on first use.
        self.user: tuple[str, str, str, str] | None = None

    def close(self) -> None:
        self.loop.close()

    # -- once per run ----------------------------------------------------------------------

    def ask(self, *components: str) -> None:
        """The run's one question to each component not yet asked (``runbook.reachability``:
        connect and one round trip), made where the suite's first probe needing it makes it."""
        for component in components:
            if component in self.asked:
                continue
            self.asked.add(component)
            if component == "database":
                self.sql("SELECT 1")
            elif component == "redis":
                conn = redis.Redis.from_url(self.env["REDIS_URL"], socket_timeout=5)
                try:
                    conn.execute_command("PING")
                finally:
                    conn.close()
            else:
                with self.http() as client:
                    client.get(self.env[ADDRESS[component]])  # any status

    def canary_user(self) -> tuple[str, str, str, str]:
        """The run's canary user (``CanaryPool``), made by the first journey needing it: a
        bcrypt hash of cost 12, the row inserted, a login and ``/api/auth/me`` with the token."""
        if self.user is None:
            user_id, email = str(uuid.uuid4()), self.canary_email()
            password = secrets.token_urlsafe(24)
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_COST))
            self.write(_INSERT_USER, (user_id, email, "Runbook canary (safe to delete)",
                                      hashed.decode(), "USER"))
            with self.http() as client:
                token = client.post(f"{self.api}/api/auth/login", json={
                    "email": email, "password": password}).raise_for_status().json()["token"]
                client.get(f"{self.api}/api/auth/me", headers=self.bearer(token)
                           ).raise_for_status()
            self.user = (user_id, email, password, token)
        return self.user

    def remove_canary(self) -> None:
        """``CanaryPool.close`` at the run's end: the rows in one transaction, a fresh count,
        the removed user's token refused."""
        if self.user is None:
            return
        user_id, email, _, token = self.user
        with self.pg(read_only=False) as conn, conn.transaction():
            conn.execute('SELECT "email" FROM "User" WHERE "id" = %s', (user_id,)).fetchone()
            conn.execute(_COUNT_AUDIT, {"id": user_id, "by_id": f"%{user_id}%",
                                        "by_email": f"%{email}%"}).fetchone()
            for _, statement in _REMOVE_STATEMENTS:
                conn.execute(statement, {"id": user_id, "pattern": "runbook-canary-%"})
        self.sql('SELECT (SELECT count(*) FROM "User" WHERE "id" = %(id)s),'
                 ' (SELECT count(*) FROM "AuditLog" WHERE "userId" = %(id)s)',
                 params={"id": user_id})
        with self.http() as client:
            if client.get(f"{self.api}/api/auth/me", headers=self.bearer(token)
                          ).status_code != 401:
                raise BenchError("the removed canary's token still works")
        self.user = None

    def canary_email(self) -> str:
        return f"runbook-canary-{uuid.uuid4().hex[:16]}@{self.env['FROM_EMAIL'].split('@')[1]}"

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    # -- HTTP ------------------------------------------------------------------------------

    def http(self, headers: Mapping[str, str] | None = None) -> httpx.Client:
        return httpx.Client(verify=self.tls, timeout=5.0, headers=dict(headers or {}),
                            trust_env=False)

    def get(self, url: str, times: int = 1, headers: Mapping[str, str] | None = None) -> None:
        with self.http(headers) as client:
            for _ in range(times):
                client.get(url).raise_for_status()

    def health(self, times: int = 1) -> None:
        self.ask("api")
        self.get(f"{self.api}/health", times)

    def web(self) -> None:
        self.ask("web")
        self.get(f"{self.env['WEB_URL']}/")

    def metrics(self) -> None:
        self.ask("api")
        self.get(f"{self.api}/metrics", headers={"Accept": "text/plain;version=0.0.4"})

    def api_cpu(self) -> None:
        """Two scrapes a second apart: the window is the measurement, so the floor waits it."""
        self.metrics()
        time.sleep(1.0)
        self.metrics()

    def login(self) -> None:
        self.ask("api")
        _, email, password, _ = self.canary_user()
        with self.http() as client:
            client.get(f"{self.api}/health").raise_for_status()
            token = client.post(f"{self.api}/api/auth/login", json={
                "email": email, "password": password}).raise_for_status().json()["token"]
            client.get(f"{self.api}/api/auth/me", headers=self.bearer(token)).raise_for_status()

    def resend_domains(self) -> None:
        self.ask("email provider")
        self.get(f"{self.env['RESEND_API_URL']}/domains",
                 headers={"Authorization": f"Bearer {self.env['RESEND_API_KEY']}"})

    # -- PostgreSQL ------------------------------------------------------------------------

    def pg(self, read_only: bool = True) -> psycopg.Connection[Any]:
        return psycopg.connect(self.env["DATABASE_URL"], connect_timeout=3, autocommit=True,
                               options=PG_OPTIONS if read_only else PG_WRITE_OPTIONS)

    def sql(self, *statements: str, params: Mapping[str, Any] | None = None) -> None:
        with self.pg() as conn:
            for statement in statements:
                conn.execute(statement, params).fetchall()  # type: ignore[arg-type]

    def write(self, statement: str, params: tuple[Any, ...]) -> None:
        with self.pg(read_only=False) as conn:
            conn.execute(statement, params)  # type: ignore[arg-type]

    def slow_queries(self) -> None:
        """Six looks at ``pg_stat_activity`` over a second, each on its own connection: the
        looks are spread because a statement is over the threshold only late in its run."""
        self.ask("database")
        for index in range(6):
            if index:
                time.sleep(0.2)
            self.sql(_ACTIVITY_SQL)

    def password_guessing(self) -> None:
        self.ask("database")
        since = (datetime.now(UTC) - timedelta(minutes=15)).replace(tzinfo=None)
        params = {"since": since, "canary": CANARY_EMAIL, "burst_s": 600.0, "failures": 10,
                  "kept": 10}
        for statement in (_BURSTS, _FAILURES_IN_WINDOW, _CANARY_FAILURES):
            self.sql(statement, params=params)

    def database_answers(self) -> None:
        self.ask("database")
        self.sql("select current_setting('server_version'), current_database(),"
                 " (select count(*) from pg_stat_activity),"
                 " current_setting('max_connections')::int")

    def schema(self) -> None:
        self.ask("database")
        self.sql("select table_name from information_schema.tables"
                 " where table_schema = current_schema() order by table_name")

    def migration_rows(self) -> None:
        self.ask("database")
        self.sql("select to_regclass('\"public\"._prisma_migrations') is not null",
                 "select id, migration_name, checksum, started_at, finished_at, rolled_back_at,"
                 ' applied_steps_count, logs from "public"."_prisma_migrations"'
                 " order by started_at, migration_name")

    def migrations(self) -> None:
        for script in sorted(SANDBOX_MIGRATIONS_DIR.glob("*/migration.sql")):
            hashlib.sha256(script.read_bytes()).hexdigest()
        self.migration_rows()

    # -- files -----------------------------------------------------------------------------

    def logs(self, service: str) -> None:
        with open(Layout(self.home).log(service), "rb") as handle:
            handle.read().splitlines()[-500:]

    def backup_age(self) -> None:
        newest = max(backups_dir(self.home).glob("*.json"), key=lambda p: p.name)
        document = json.loads(newest.read_text(encoding="utf-8"))
        hashlib.sha256(newest.with_name(document["file"]).read_bytes()).hexdigest()

    def usage(self) -> None:
        shutil.disk_usage(self.home)
        Path("/proc/meminfo").read_text()
        os.getloadavg()

    # -- Redis and BullMQ ------------------------------------------------------------------

    def ping(self) -> None:
        self.ask("redis")
        conn = redis.Redis.from_url(self.env["REDIS_URL"], socket_timeout=5)
        try:
            conn.ping()
            conn.info()
        finally:
            conn.close()

    def bullmq(self, queue: str, work: Callable[[Queue, AsyncRedis], Any]) -> None:
        self.ask("redis")

        async def main() -> None:
            connection = AsyncRedis.from_url(self.env["REDIS_URL"], socket_timeout=5,
                                             decode_responses=True)
            bull = Queue(queue, {"connection": connection, "prefix": "bull"})
            try:
                await work(bull, connection)
            finally:
                await bull.close()

        self.loop.run(main())

    def counts(self, queue: str) -> None:
        async def work(bull: Queue, connection: AsyncRedis) -> None:
            async with connection.pipeline(transaction=False) as pipe:
                for state in STATES:
                    pipe.type(f"bull:{queue}:{state}")
                kinds = await pipe.execute()
            async with connection.pipeline(transaction=True) as pipe:
                for state, kind in zip(STATES, kinds, strict=True):
                    if kind != "none":
                        (pipe.llen if state in LIST_STATES else pipe.zcard)(f"bull:{queue}:{state}")
                await pipe.execute()
            await bull.getJobCounts("waiting", *STATES[1:])
            await connection.info("memory")

        self.bullmq(queue, work)

    def workers(self) -> None:
        async def work(bull: Queue, connection: AsyncRedis) -> None:
            if not await bull.get_workers():
                raise BenchError("a queue has no worker listening")

        for queue in QUEUES:
            self.bullmq(queue, work)

    def canary(self, queue: str) -> None:
        job_id = f"runbook-canary-bench-{uuid.uuid4().hex}"

        async def work(bull: Queue, connection: AsyncRedis) -> None:
            await bull.add("canary", {"by": "runbook-bench"}, {"jobId": job_id, "attempts": 1})
            started = time.monotonic()
            while await bull.getJobState(job_id) not in ("completed", "failed"):
                if time.monotonic() - started > 10:
                    raise BenchError(f"the canary job on {queue} did not complete in 10 s")
                await asyncio.sleep(0.02)  # the probe's polling interval
            await bull.getJob(job_id)
            while await bull.remove(job_id) != 1 or await connection.exists(
                    f"bull:{queue}:{job_id}"):
                await asyncio.sleep(0.1)

        self.bullmq(queue, work)

    # -- S3 --------------------------------------------------------------------------------

    def s3_bucket(self) -> None:
        self.ask("s3")
        self.s3.head_bucket(Bucket=self.bucket)
        self.s3.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
        self.s3.get_bucket_versioning(Bucket=self.bucket)

    def _remove_versions(self, key: str, recount: bool = True) -> None:
        listing = self.s3.list_object_versions(Bucket=self.bucket, Prefix=key)
        for entry in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]:
            self.s3.delete_object(Bucket=self.bucket, Key=key, VersionId=entry["VersionId"])
        if recount:
            self.s3.list_object_versions(Bucket=self.bucket, Prefix=key)

    def s3_canary(self) -> None:
        self.ask("s3")
        key = f"runbook-canary/bench-{uuid.uuid4().hex}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"bench canary\n",
                           ContentType="text/plain")
        self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        self.s3.delete_object(Bucket=self.bucket, Key=key)
        self._remove_versions(key)

    def s3_cors(self) -> None:
        self.ask("s3")
        self.s3.get_bucket_cors(Bucket=self.bucket)
        url = self.s3.generate_presigned_url("put_object", Params={
            "Bucket": self.bucket, "Key": "runbook-canary/bench-preflight"}, ExpiresIn=60)
        with self.http() as client:
            client.options(url.split("?", 1)[0], headers={
                "Origin": self.env["WEB_URL"], "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "content-type"})

    def s3_presigned(self) -> None:
        self.ask("s3")
        key = f"runbook-canary/bench-presigned-{uuid.uuid4().hex}"
        url = self.s3.generate_presigned_url("put_object", Params={
            "Bucket": self.bucket, "Key": key, "ContentType": "application/octet-stream"},
            ExpiresIn=300)
        with self.http() as client:
            client.put(url, content=b"bench presigned canary\n", headers={
                "Content-Type": "application/octet-stream",
                "Origin": self.env["WEB_URL"]}).raise_for_status()
        self.s3.head_object(Bucket=self.bucket, Key=key)
        self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        self._remove_versions(key)

    def api_upload(self) -> None:
        """The API presigns, the canary PUTs from the web's origin, the object is read back
        and every version removed (its video row goes with the canary at the run's end)."""
        self.ask("api", "s3", "database")
        token = self.canary_user()[3]
        with self.http() as client:
            grant = client.post(f"{self.api}/api/videos/upload-url", headers=self.bearer(token),
                                json={"filename": "runbook-canary.mp4", "contentType":
                                      "video/mp4", "title": "runbook canary (safe to delete)"}
                                ).raise_for_status().json()
            client.put(grant["uploadUrl"], content=b"bench canary upload\n", headers={
                "Content-Type": "video/mp4", "Origin": self.env["WEB_URL"]}).raise_for_status()
        self.s3.get_object(Bucket=self.bucket, Key=grant["key"])["Body"].read()
        self._remove_versions(grant["key"], recount=False)

    # -- journeys through the worker -------------------------------------------------------

    def release(self) -> None:
        """A READY video row, ``POST /api/releases``, its process-release job followed every
        50 ms until it ends, then removed; the release's e-mail job waited for and removed."""
        self.ask("api", "redis", "database")
        user_id, _, _, token = self.canary_user()
        video_id = str(uuid.uuid4())
        self.write(_INSERT_VIDEO, (video_id, user_id, "Runbook canary release",
                                   f"runbook-canary/{video_id}.mp4", "video/mp4"))
        with self.http() as client:
            release_id = str(client.post(f"{self.api}/api/releases", json={"videoId": video_id},
                                         headers=self.bearer(token)
                                         ).raise_for_status().json()["releaseId"])

        async def follow(bull: Queue, connection: AsyncRedis) -> None:
            await _until(bull, release_id, ENDED, 0.05)
            await bull.getJob(release_id)
            await _remove(bull, connection, "release-process", release_id)

        async def email_job(bull: Queue, connection: AsyncRedis) -> None:
            job_id = f"release-email-{release_id}"
            await _until(bull, job_id, (*ENDED, "unknown"), 0.05, within_s=5.0)
            await _remove(bull, connection, "email", job_id)

        self.bullmq("release-process", follow)
        self.bullmq("email", email_job)

    def email(self) -> None:
        """A send-email job to a canary mailbox, followed every 20 ms until the worker ends
        it, removed, then Resend's record of the e-mail (``GET /emails/{id}``)."""
        self.ask("redis", "email provider")
        job_id, to = f"runbook-canary-email-{uuid.uuid4().hex[:16]}", self.canary_email()
        sent: dict[str, Any] = {}

        async def work(bull: Queue, connection: AsyncRedis) -> None:
            await bull.getJobCounts("failed")
            await bull.add("send-email", {"to": to, "subject": "bench canary",
                                          "html": "<p>bench canary</p>"},
                           {"jobId": job_id, "attempts": 1})
            await _until(bull, job_id, ENDED, 0.02)
            sent.update((await bull.getJob(job_id)).returnvalue)
            await bull.getJobCounts("failed")
            await _remove(bull, connection, "email", job_id)

        self.bullmq("email", work)
        self.get(f"{self.env['RESEND_API_URL'].rstrip('/')}/emails/{sent['id']}",
                 headers=self.bearer(self.env["RESEND_API_KEY"]))


def _call(method: Callable[..., None], *args: Any) -> Callable[[Floor], None]:
    """``method(floor, *args)`` for a floor given later."""
    def run(floor: Floor) -> None:
        method(floor, *args)
    return run


def _both(*calls: Callable[[Floor], None]) -> Callable[[Floor], None]:
    def run(floor: Floor) -> None:
        for call in calls:
            call(floor)
    return run


#: Each synthetic scenario ``runbook check`` runs (its pytest node id, less the file) and the
#: protocol calls its steps make, read from runbook/steps/ and runbook/probes/.
FLOOR: dict[str, Callable[[Floor], None]] = {
    **{f"test_the_services_logs_of_the_last_hour_can_be_read[{s}]":
       _call(Floor.logs, s) for s in ("api", "worker", "web")},
    "test_every_migration_is_applied_and_none_failed": Floor.migrations,
    **{f"test_the_queue_queues_status_is_read_through_bullmq[{q}]":
       _call(Floor.counts, q) for q in QUEUES},
    "test_the_newest_database_backup_is_younger_than_the_database_rpo_of_1_hour":
        Floor.backup_age,
    "test_s3_access_works_with_the_configured_credentials":
        _both(Floor.s3_bucket, Floor.s3_canary),
    "test_browsers_can_upload_through_presigned_urls": _both(Floor.s3_cors, Floor.s3_presigned),
    "test_resend_accepts_the_key_and_the_senders_domain_is_verified":
        _both(Floor.resend_domains, Floor.resend_domains),
    "test_the_applications_key_metrics_are_measured_from_outside": _call(Floor.health, 20),
    "test_the_applications_key_metrics_are_read_from_its_metrics_endpoint": Floor.metrics,
    # One GET /metrics each (the reading kept between runs is the runbook's own overhead).
    **{f"test_the_users_error_rate_over_5_minutes_stays_under_the_tier_threshold_of_limit"
       f"_percent[{p}]": Floor.metrics for p in ("critical-5", "warning-1")},
    "test_the_users_p99_response_time_over_5_minutes_stays_under_2_seconds": Floor.metrics,
    "test_failed_email_delivery_stays_under_10_percent": _call(Floor.counts, "email"),
    **{f"test_resource_usage_stays_under_the_tier_threshold_of_limit_percent[{p}]":
       Floor.usage for p in ("disk-critical-90", "memory-warning-80")},
    **{f"test_failed_jobs_on_the_queue_queue_are_counted_the_way_bullmq_counts_them[{q}]":
       _call(Floor.counts, q) for q in QUEUES},
    "test_a_users_upload_through_the_apis_presigned_url_is_stored": Floor.api_upload,
    "test_the_api_processs_cpu_stays_under_80_percent": Floor.api_cpu,
    "test_an_email_the_worker_sends_is_delivered": Floor.email,
    "test_no_address_is_guessing_passwords": Floor.password_guessing,
    "test_a_user_can_log_in_and_be_read_back": Floor.login,
    "test_a_requested_release_is_processed_by_the_worker": Floor.release,
    "test_no_query_runs_over_500_milliseconds_and_none_waits_on_a_lock": Floor.slow_queries,
    "test_the_api_reports_status_ok_with_a_current_timestamp": Floor.health,
    "test_the_web_front_end_answers_http_200": Floor.web,
    "test_the_database_answers": _both(Floor.database_answers, Floor.schema),
    "test_redis_answers_pong": Floor.ping,
    **{f"test_the_component_gives_the_component_status_tables_expected_response[{c}]": call
       for c, call in (("API", Floor.health), ("Database", Floor.schema),
                       ("Redis", Floor.ping), ("Worker", Floor.workers),
                       ("S3", Floor.s3_bucket))},
    **{f"test_the_worker_completes_a_canary_job_on_the_queue_queue[{q}]":
       _call(Floor.canary, q) for q in QUEUES},
}


def run_floor(floor: Floor, names: list[str] | None = None,
              clock: Callable[[], float] = time.monotonic) -> dict[str, float]:
    """Seconds of each scenario's protocol calls (``names``, in ``FLOOR``'s order; all of
    them by default), made one scenario after the other, by ``clock`` (wall time; this
    process's CPU time with ``time.process_time``). Each component is asked once per run;
    the run's canary user is removed at its end, counted with the scenario that made it (the
    suite removes it after its last scenario)."""
    seconds: dict[str, float] = {}
    floor.asked.clear()
    made_by = ""
    for name, call in FLOOR.items():
        if names is not None and name not in names:
            continue
        started = clock()
        call(floor)
        seconds[name] = clock() - started
        made_by = made_by or (name if floor.user is not None else "")
    if made_by:
        started = clock()
        floor.remove_canary()
        seconds[made_by] += clock() - started
    return seconds


def mirrored(scenarios: list[Mapping[str, Any]]) -> dict[str, float]:
    """Each scenario's duration in the suite (setup, call, teardown) by ``FLOOR`` key;
    ``BenchError`` unless ``FLOOR`` holds exactly the scenarios the suite ran."""
    ran = {str(s["nodeid"]).split("::", 1)[-1]: float(s["duration_s"]) for s in scenarios}
    missing, extra = sorted(ran.keys() - FLOOR.keys()), sorted(FLOOR.keys() - ran.keys())
    if missing or extra:
        raise BenchError("the floor no longer mirrors the synthetic scenarios: add to FLOOR"
                         f" {missing or 'nothing'}, remove {extra or 'nothing'}")
    return ran


def breakdown(floor: Mapping[str, list[float]], suite: Mapping[str, list[float]]
              ) -> list[dict[str, Any]]:
    """Per scenario, the median floor and suite seconds, the largest gap first."""
    rows = [{"scenario": name, "floor_ms": round(1000 * statistics.median(floor[name]), 1),
             "suite_ms": round(1000 * statistics.median(suite[name]), 1)} for name in FLOOR]
    return sorted(rows, key=lambda r: r["floor_ms"] - r["suite_ms"])


def bench(box: Sandbox, runs: int, workdir: Path) -> dict[str, Any]:
    floor = Floor(box.env(), box.home)
    series = {"floor": Series(), "startup": Series(), "suite": Series(), "inside": Series()}
    per_floor: dict[str, list[float]] = {name: [] for name in FLOOR}
    per_suite: dict[str, list[float]] = {name: [] for name in FLOOR}
    ratios: list[float] = []
    scenarios = 0
    try:
        for run in range(runs + 1):
            measured = ("floor", "startup", "suite")
            seconds: dict[str, float] = {}
            for which in measured[run % 3:] + measured[:run % 3]:
                load = load_1min()
                if which == "floor":
                    each = run_floor(floor)
                    seconds[which] = sum(each.values())
                elif which == "startup":
                    seconds[which] = require_nothing_ran(runbook_check(
                        box.home, ["-k", NO_SCENARIO], workdir), "the start-up run").seconds
                else:
                    suite = require_passed(runbook_check(box.home, [], workdir), "the suite")
                    durations = mirrored(suite.scenarios)
                    scenarios = len(durations)
                    seconds[which] = suite.seconds
                    seconds["inside"] = sum(durations.values())
                if run:  # the first run warms caches up and is discarded
                    series[which].add(seconds[which], load)
                    if which == "suite":
                        series["inside"].add(seconds["inside"], load)
            if run:
                ratios.append((seconds["suite"] - seconds["startup"]) / seconds["floor"])
                for name in FLOOR:
                    per_floor[name].append(each[name])
                    per_suite[name].append(durations[name])
    finally:
        floor.close()
    floor_s, startup_s, suite_s = (series[k].median for k in ("floor", "startup", "suite"))
    ratio = statistics.median(ratios)
    return {
        "runs": runs,
        "scenarios": scenarios,
        "cpus": os.cpu_count(),
        **{k: v.to_json() for k, v in series.items()},
        "per_scenario_overhead_ms": round(1000 * (suite_s - startup_s - floor_s) / scenarios, 1),
        "ratio_runs": [round(r, 2) for r in ratios],
        "ratio": round(ratio, 2),
        "goal_ratio": GOAL_RATIO,
        "startup_goal_s": STARTUP_GOAL_S,
        "goal_met": ratio <= GOAL_RATIO and startup_s <= STARTUP_GOAL_S,
        "scenario_breakdown": breakdown(per_floor, per_suite),
    }


def report(result: dict[str, Any]) -> None:
    print(f"synthetic suite vs raw floor: {result['scenarios']} scenarios, median of"
          f" {result['runs']} runs; now {machine()}")
    floor, startup, suite = result["floor"], result["startup"], result["suite"]
    per_run = " ".join(f"{r:.2f}" for r in result["ratio_runs"])
    print_table([
        ("raw floor (the same protocol calls)", f"{floor['median_s']:.3f} s",
         f"{floor['load_1min']:.2f}"),
        ("start-up (runbook check -k <nothing>)", f"{startup['median_s']:.3f} s",
         f"{startup['load_1min']:.2f}"),
        ("suite (runbook check)", f"{suite['median_s']:.3f} s", f"{suite['load_1min']:.2f}"),
        ("suite - start-up", f"{suite['median_s'] - startup['median_s']:.3f} s", ""),
        ("  inside scenarios (their summed durations)",
         f"{result['inside']['median_s']:.3f} s", ""),
        ("per-scenario overhead", f"{result['per_scenario_overhead_ms']:.1f} ms", ""),
        ("(suite - start-up) / floor", f"{result['ratio']:.2f}x", f"runs: {per_run}"),
    ])
    print("largest gaps, suite vs floor per scenario (median ms):")
    for row in result["scenario_breakdown"][:6]:
        print(f"  {row['suite_ms']:8.1f} vs {row['floor_ms']:7.1f}  {row['scenario']}")
    ratio_met = result["ratio"] <= result["goal_ratio"]
    startup_met = result["startup"]["median_s"] <= result["startup_goal_s"]
    print(f"goal: suite within {result['goal_ratio']:g}x the raw floor plus the start-up:"
          f" {'met' if ratio_met else 'MISSED'}; start-up within"
          f" {result['startup_goal_s']:g} s: {'met' if startup_met else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs (after a warm-up)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    def measure() -> dict[str, Any]:
        with fresh_sandbox() as box, tempfile.TemporaryDirectory(
                prefix="runbook-bench-") as work:
            return bench(box, max(1, args.runs), Path(work))

    return conclude(measure, report, as_json=args.json)


if __name__ == "__main__":
    raise SystemExit(main())
