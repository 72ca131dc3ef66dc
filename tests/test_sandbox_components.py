"""Every component of the session's sandbox, reached over its own protocol, and the secrets
kept where they belong."""

from __future__ import annotations

import json
import stat
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import boto3
import httpx
import psycopg
import pytest
import redis
from botocore.config import Config
from redis.backoff import NoBackoff
from redis.retry import Retry

from runbook.sandbox import COMPONENTS
from runbook.sandbox.procs import is_alive, read_pidfile

if TYPE_CHECKING:  # the root conftest.py may own the module name "conftest" at run time
    from conftest import RunningSandbox

TIMEOUT = httpx.Timeout(5.0)
MIGRATIONS = (
    "20240101120000_init",
    "20240110093000_audit_log",
    "20240115170000_user_token_version",
)


def _redis(url: str) -> redis.Redis:
    """A client with finite timeouts and no retries (redis-py retries 3x by default)."""
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                retry=Retry(NoBackoff(), 0))


def test_status_lists_seven_running_components_with_live_pids(sandbox: RunningSandbox) -> None:
    status = sandbox.sandbox.status()
    assert status.running and status.ready
    assert set(status.components) == set(COMPONENTS)
    for component in status.components.values():
        assert component.state == "running", component
        assert component.pid and is_alive(component.pid), component
    urls = {name: c.url for name, c in status.components.items()}
    assert urls["api"] == sandbox.env["API_URL"]
    assert urls["worker"] is None


def test_the_recorded_pids_are_the_servers_themselves(sandbox: RunningSandbox) -> None:
    components = sandbox.sandbox.status().components
    pgdata = sandbox.home / "sandbox" / "pgdata"
    assert read_pidfile(pgdata / "postmaster.pid") == components["postgres"].pid
    client = _redis(sandbox.env["REDIS_URL"])
    try:
        assert client.info("server")["process_id"] == components["redis"].pid
    finally:
        client.close()


def test_postgres_answers_sql_with_the_prisma_migrations_recorded(
    sandbox: RunningSandbox,
) -> None:
    with psycopg.connect(sandbox.env["DATABASE_URL"], connect_timeout=5) as conn:
        conn.execute("SET statement_timeout = 5000")
        rows = conn.execute(
            "SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NULL,"
            " applied_steps_count FROM _prisma_migrations ORDER BY migration_name"
        ).fetchall()
        roles = dict(conn.execute('SELECT "email", "role"::text FROM "User"').fetchall())
        user = conn.execute("SELECT current_user").fetchone()
    assert [r[0] for r in rows] == list(MIGRATIONS)
    assert all(r[1] and r[2] and r[3] == 1 for r in rows), rows
    assert roles["admin@legacyvideo.test"] == "ADMIN"
    assert user == ("legacyvideo",)


def test_postgres_refuses_a_wrong_password(sandbox: RunningSandbox) -> None:
    parts = urlsplit(sandbox.env["DATABASE_URL"])
    wrong = parts._replace(netloc=f"legacyvideo:wrong@{parts.hostname}:{parts.port}").geturl()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_the_superuser_dsn_reaches_the_same_cluster(sandbox: RunningSandbox) -> None:
    with psycopg.connect(sandbox.sandbox.superuser_dsn("postgres"), connect_timeout=5) as conn:
        is_super = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert is_super.fetchone() == (True,)
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert "legacyvideo" in names
    assert (sandbox.sandbox.bindir / "pg_dump").exists()


def test_redis_answers_ping_only_with_the_password(sandbox: RunningSandbox) -> None:
    url = sandbox.env["REDIS_URL"]
    client = _redis(url)
    try:
        assert client.ping() is True
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        client.close()
    parts = urlsplit(url)
    anonymous = _redis(f"redis://{parts.hostname}:{parts.port}/0")
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
    finally:
        anonymous.close()


def test_s3_has_the_bucket_versioned_with_cors_for_the_web(sandbox: RunningSandbox) -> None:
    env = sandbox.env
    s3 = boto3.session.Session().client(
        "s3", endpoint_url=env["S3_ENDPOINT_URL"], region_name=env["S3_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(connect_timeout=5, read_timeout=5, retries={"max_attempts": 1}),
    )
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert env["S3_BUCKET"] in buckets
    assert s3.get_bucket_versioning(Bucket=env["S3_BUCKET"])["Status"] == "Enabled"
    rules = s3.get_bucket_cors(Bucket=env["S3_BUCKET"])["CORSRules"]
    assert any(
        env["WEB_URL"] in r["AllowedOrigins"] and {"PUT", "GET", "HEAD"} <= set(r["AllowedMethods"])
        for r in rules
    ), rules
    listed = s3.list_objects_v2(Bucket=env["S3_BUCKET"])
    assert listed.get("KeyCount", 0) >= 1


def test_the_api_is_healthy(sandbox: RunningSandbox) -> None:
    response = httpx.get(f"{sandbox.env['API_URL']}/health", timeout=TIMEOUT)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["timestamp"]


def test_the_admin_token_is_accepted_by_the_api(sandbox: RunningSandbox) -> None:
    response = httpx.get(
        f"{sandbox.env['API_URL']}/api/auth/me",
        headers={"Authorization": f"Bearer {sandbox.env['ADMIN_TOKEN']}"}, timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert "ADMIN" in response.text


def test_the_web_front_page_answers(sandbox: RunningSandbox) -> None:
    response = httpx.get(sandbox.env["WEB_URL"], timeout=TIMEOUT)
    assert response.status_code == 200
    assert "LegacyVideo" in response.text


def test_the_mail_stand_in_answers_domains_with_the_key_only(sandbox: RunningSandbox) -> None:
    url = f"{sandbox.env['RESEND_API_URL']}/domains"
    keyed = httpx.get(url, headers={"Authorization": f"Bearer {sandbox.env['RESEND_API_KEY']}"},
                      timeout=TIMEOUT)
    assert keyed.status_code == 200
    assert "legacyvideo.test" in keyed.text
    assert httpx.get(url, timeout=TIMEOUT).status_code == 401


def test_the_worker_is_registered_on_both_queues(sandbox: RunningSandbox) -> None:
    client = _redis(sandbox.env["REDIS_URL"])
    try:
        names = {c.get("name", "") for c in client.client_list()}
    finally:
        client.close()
    for queue in ("email", "release-process"):
        assert any(n == f"bull:{queue}" or n.startswith(f"bull:{queue}:") for n in names), names


def test_env_is_a_complete_sandbox_target(sandbox: RunningSandbox) -> None:
    env = sandbox.sandbox.env()
    expected = {
        "API_URL", "WEB_URL", "DATABASE_URL", "REDIS_URL", "S3_BUCKET", "S3_REGION",
        "S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RESEND_API_KEY",
        "RESEND_API_URL", "FROM_EMAIL", "ADMIN_TOKEN", "API_SECRET", "PLATFORM",
        "RUNBOOK_ENVIRONMENT", "RUNBOOK_HOME",
    }
    assert set(env) == expected
    assert env["PLATFORM"] == env["RUNBOOK_ENVIRONMENT"] == "sandbox"
    assert env["RUNBOOK_HOME"] == str(sandbox.home)
    for name in ("API_URL", "WEB_URL", "S3_ENDPOINT_URL", "RESEND_API_URL"):
        parts = urlsplit(env[name])
        assert parts.hostname == "127.0.0.1" and parts.port not in (5432, 6379, None)


def test_secrets_live_only_in_the_private_secrets_file(sandbox: RunningSandbox) -> None:
    root = sandbox.home / "sandbox"
    secrets = sandbox.sandbox.secrets()
    assert stat.S_IMODE((root / "secrets.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "control.json").stat().st_mode) == 0o600
    public = [root / "state.json", root / "ports.json", *sorted((root / "logs").glob("*.log"))]
    assert len(public) >= 9
    for path in public:
        text = path.read_text(encoding="utf-8", errors="replace")
        for value in secrets.values():
            assert value not in text, f"a secret is in {path.name}"
    state = json.loads((root / "state.json").read_text())
    assert set(state["components"]) == set(COMPONENTS)
