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
  would, so what the suite spends building them per probe counts as its overhead.

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
import shutil
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

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
PG_OPTIONS = "-c statement_timeout=5000 -c default_transaction_read_only=on"


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

    def close(self) -> None:
        self.loop.close()

    # -- HTTP ------------------------------------------------------------------------------

    def http(self, headers: Mapping[str, str] | None = None) -> httpx.Client:
        return httpx.Client(verify=self.tls, timeout=5.0, headers=dict(headers or {}),
                            trust_env=False)

    def get(self, url: str, times: int = 1, headers: Mapping[str, str] | None = None) -> None:
        with self.http(headers) as client:
            for _ in range(times):
                client.get(url).raise_for_status()

    def health(self, times: int = 1) -> None:
        self.get(f"{self.api}/health", times)

    def web(self) -> None:
        self.get(f"{self.env['WEB_URL']}/")

    def metrics(self) -> None:
        self.get(f"{self.api}/metrics", headers={"Accept": "text/plain;version=0.0.4"})

    def resend_domains(self) -> None:
        self.get(f"{self.env['RESEND_API_URL']}/domains",
                 headers={"Authorization": f"Bearer {self.env['RESEND_API_KEY']}"})

    # -- PostgreSQL ------------------------------------------------------------------------

    def sql(self, *statements: str) -> None:
        with psycopg.connect(self.env["DATABASE_URL"], connect_timeout=3, autocommit=True,
                             options=PG_OPTIONS) as conn:
            for statement in statements:
                conn.execute(statement).fetchall()

    def database_answers(self) -> None:
        self.sql("select current_setting('server_version'), current_database(),"
                 " (select count(*) from pg_stat_activity),"
                 " current_setting('max_connections')::int")

    def schema(self) -> None:
        self.sql("select table_name from information_schema.tables"
                 " where table_schema = current_schema() order by table_name")

    def migration_rows(self) -> None:
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
        conn = redis.Redis.from_url(self.env["REDIS_URL"], socket_timeout=5)
        try:
            conn.ping()
            conn.info()
        finally:
            conn.close()

    def bullmq(self, queue: str, work: Callable[[Queue, AsyncRedis], Any]) -> None:
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
        self.s3.head_bucket(Bucket=self.bucket)
        self.s3.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
        self.s3.get_bucket_versioning(Bucket=self.bucket)

    def _remove_versions(self, key: str) -> None:
        listing = self.s3.list_object_versions(Bucket=self.bucket, Prefix=key)
        for entry in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]:
            self.s3.delete_object(Bucket=self.bucket, Key=key, VersionId=entry["VersionId"])
        self.s3.list_object_versions(Bucket=self.bucket, Prefix=key)

    def s3_canary(self) -> None:
        key = f"runbook-canary/bench-{uuid.uuid4().hex}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"bench canary\n",
                           ContentType="text/plain")
        self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        self.s3.delete_object(Bucket=self.bucket, Key=key)
        self._remove_versions(key)

    def s3_cors(self) -> None:
        self.s3.get_bucket_cors(Bucket=self.bucket)
        url = self.s3.generate_presigned_url("put_object", Params={
            "Bucket": self.bucket, "Key": "runbook-canary/bench-preflight"}, ExpiresIn=60)
        with self.http() as client:
            client.options(url.split("?", 1)[0], headers={
                "Origin": self.env["WEB_URL"], "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "content-type"})

    def s3_presigned(self) -> None:
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


def run_floor(floor: Floor) -> dict[str, float]:
    """Seconds of each scenario's protocol calls, made one scenario after the other."""
    seconds: dict[str, float] = {}
    for name, call in FLOOR.items():
        started = time.monotonic()
        call(floor)
        seconds[name] = time.monotonic() - started
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
