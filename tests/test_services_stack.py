"""The sandbox's LegacyVideo end to end: the API, worker, mail, web and S3 processes of the
session's real sandbox, plus the API app and the migrations run in-process against
throw-away schemas of the sandbox's PostgreSQL (for what would disturb the shared sandbox:
revoking every token, a lost database, a failed migration).

The tests create their own user and remove it afterwards; the seed data is only read."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import bcrypt
import httpx
import psycopg
import pytest
from bullmq import Queue, UnrecoverableError

from runbook.sandbox.services import migrate, seeddata, tokens
from runbook.sandbox.services.api import ApiConfig, create_app
from runbook.sandbox.services.common import libpq_url
from runbook.sandbox.services.s3 import s3_client
from runbook.sandbox.services.worker import Jobs, WorkerConfig, queue_client
from tests.exposition import by_key

T = TypeVar("T")
WAIT_S = 20.0


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = WAIT_S) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last  # type: ignore[return-value]
        time.sleep(0.1)
    raise AssertionError(f"{what} not seen within {timeout:g} s (last: {last!r})")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def db_connect(url: str) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), connect_timeout=5, autocommit=True)


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env(sandbox: Any) -> Mapping[str, str]:
    return sandbox.env  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def api(env: Mapping[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=env["API_URL"], timeout=httpx.Timeout(10.0, connect=3.0)) as c:
        yield c


@pytest.fixture(scope="module")
def admin(env: Mapping[str, str]) -> dict[str, str]:
    return bearer(env["ADMIN_TOKEN"])


@dataclass(frozen=True)
class Member:
    id: str
    email: str
    password: str


@pytest.fixture(scope="module")
def member(env: Mapping[str, str]) -> Iterator[Member]:
    """A USER created for this module (bcrypt cost 12), removed with its videos and
    releases afterwards."""
    user = Member(str(uuid.uuid4()), f"svc-test-{secrets.token_hex(4)}@legacyvideo.test",
                  secrets.token_urlsafe(16))
    password_hash = bcrypt.hashpw(user.password.encode(), bcrypt.gensalt(12)).decode()
    with db_connect(env["DATABASE_URL"]) as conn:
        conn.execute(
            'INSERT INTO "User" ("id", "email", "name", "passwordHash", "role", "updatedAt") '
            "VALUES (%s, %s, %s, %s, 'USER', now())",
            (user.id, user.email, "Service Test", password_hash),
        )
    yield user
    with db_connect(env["DATABASE_URL"]) as conn:
        conn.execute('DELETE FROM "Release" WHERE "requestedById" = %s', (user.id,))
        conn.execute('DELETE FROM "Video" WHERE "ownerId" = %s', (user.id,))
        conn.execute('DELETE FROM "User" WHERE "id" = %s', (user.id,))


def login(api: httpx.Client, user: Member, **headers: str) -> httpx.Response:
    return api.post("/api/auth/login", json={"email": user.email, "password": user.password},
                    headers=headers)


def member_token(api: httpx.Client, user: Member) -> str:
    response = login(api, user)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


# ------------------------------------------------------------------------------- health, auth


def test_health_answers_ok_with_a_utc_timestamp(api: httpx.Client) -> None:
    body = api.get("/health").json()
    assert body["status"] == "ok"
    assert body["timestamp"].endswith("Z")


def test_login_issues_a_token_signed_with_the_api_secret(
    api: httpx.Client, env: Mapping[str, str], member: Member
) -> None:
    response = login(api, member)
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {**body["user"], "id": member.id, "email": member.email,
                            "role": "USER", "locked": False}
    claims = tokens.verify_user_token(env["API_SECRET"], body["token"])
    assert (claims.user_id, claims.role) == (member.id, "USER")
    me = api.get("/api/auth/me", headers=bearer(body["token"]))
    assert me.status_code == 200 and me.json()["email"] == member.email


def test_failed_login_is_401_and_audited_with_the_caller_ip(
    api: httpx.Client, env: Mapping[str, str], member: Member
) -> None:
    ip = f"203.0.113.{secrets.randbelow(250) + 1}"
    response = api.post("/api/auth/login", json={"email": member.email, "password": "nope"},
                        headers={"X-Forwarded-For": ip})
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid email or password"}
    with db_connect(env["DATABASE_URL"]) as conn:
        row = conn.execute(
            'SELECT "action", "ip", "metadata"->>\'reason\' FROM "AuditLog" '
            'WHERE "userId" = %s ORDER BY "createdAt" DESC LIMIT 1',
            (member.id,),
        ).fetchone()
    assert row == ("LOGIN_FAILURE", ip, "bad_credentials")


def test_lock_needs_an_admin_token(
    api: httpx.Client, admin: dict[str, str], member: Member
) -> None:
    body = {"userId": member.id, "locked": True}
    assert api.post("/api/admin/users/lock", json=body).status_code == 401
    forged = tokens.issue_user_token("not-the-secret" * 4, member.id, "ADMIN", 0)
    rejected = api.post("/api/admin/users/lock", json=body, headers=bearer(forged))
    assert rejected.status_code == 401
    assert rejected.json() == {"error": "Invalid or expired token"}
    as_user = api.post("/api/admin/users/lock", json=body,
                       headers=bearer(member_token(api, member)))
    assert as_user.status_code == 403
    unknown = api.post("/api/admin/users/lock", json={"userId": "no-such-user", "locked": True},
                       headers=admin)
    assert unknown.status_code == 404
    assert api.get("/api/auth/me", headers=admin).json()["role"] == "ADMIN"


def test_locked_user_cannot_log_in_until_unlocked(
    api: httpx.Client, admin: dict[str, str], member: Member
) -> None:
    earlier = member_token(api, member)
    locked = api.post("/api/admin/users/lock", json={"userId": member.id, "locked": True},
                      headers=admin)
    try:
        assert locked.status_code == 200 and locked.json()["user"]["locked"] is True
        refused = login(api, member)
        assert refused.status_code == 403
        assert refused.json() == {"error": "Account locked"}
        assert api.get("/api/auth/me", headers=bearer(earlier)).status_code == 403
    finally:
        unlocked = api.post("/api/admin/users/lock",
                            json={"userId": member.id, "locked": False}, headers=admin)
    assert unlocked.status_code == 200 and unlocked.json()["user"]["locked"] is False
    assert login(api, member).status_code == 200
    entries = api.get("/api/admin/audit-logs", params={"limit": 200}, headers=admin).json()
    actions = [e["action"] for e in entries["entries"]
               if (e["metadata"] or {}).get("targetUserId") == member.id]
    assert actions[:2] == ["USER_UNLOCKED", "USER_LOCKED"]


def test_revoking_a_users_tokens_rejects_the_earlier_ones(
    api: httpx.Client, admin: dict[str, str], member: Member
) -> None:
    earlier = member_token(api, member)
    revoked = api.post("/api/admin/tokens/revoke-all", json={"userId": member.id},
                       headers=admin)
    assert revoked.status_code == 200 and revoked.json() == {"revoked": 1}
    stale = api.get("/api/auth/me", headers=bearer(earlier))
    assert stale.status_code == 401
    assert stale.json() == {"error": "Invalid or expired token"}
    assert api.get("/api/auth/me", headers=bearer(member_token(api, member))).status_code == 200
    assert api.get("/api/auth/me", headers=admin).status_code == 200


# ------------------------------------------------------------------------------- uploads, releases


def upload(api: httpx.Client, token: str, content: bytes, filename: str) -> dict[str, Any]:
    grant = api.post("/api/videos/upload-url", headers=bearer(token),
                     json={"filename": filename, "contentType": "video/mp4"})
    assert grant.status_code == 200, grant.text
    body: dict[str, Any] = grant.json()
    put = httpx.put(body["uploadUrl"], content=content, headers=body["headers"], timeout=10)
    assert put.status_code == 200, put.text
    return body


def test_presigned_upload_lands_in_the_bucket(
    api: httpx.Client, env: Mapping[str, str], member: Member
) -> None:
    content = secrets.token_bytes(2048)
    grant = upload(api, member_token(api, member), content, "holiday 2003.mp4")
    assert grant["key"].startswith(f"videos/{member.id}/{grant['videoId']}/")
    assert grant["expiresIn"] == 900
    s3 = s3_client(env["S3_ENDPOINT_URL"], env["S3_REGION"], env)
    stored = s3.get_object(Bucket=env["S3_BUCKET"], Key=grant["key"])
    assert stored["Body"].read() == content
    assert stored["ContentType"] == "video/mp4"


def test_release_of_a_video_not_uploaded_yet_is_409(
    api: httpx.Client, member: Member
) -> None:
    token = member_token(api, member)
    grant = api.post("/api/videos/upload-url", headers=bearer(token),
                     json={"filename": "never.mp4", "contentType": "video/mp4"}).json()
    response = api.post("/api/releases", json={"videoId": grant["videoId"]},
                        headers=bearer(token))
    assert response.status_code == 409
    assert api.post("/api/releases", json={"videoId": str(uuid.uuid4())},
                    headers=bearer(token)).status_code == 404


async def _job(redis_url: str, queue_name: str, job_id: str) -> tuple[str, Any]:
    queue = Queue(queue_name, {"connection": queue_client(redis_url)})
    try:
        state = await queue.getJobState(job_id)
        job = await queue.getJob(job_id)
        return str(state), job.returnvalue if job else None
    finally:
        await queue.close()


def test_release_is_processed_by_the_worker_and_mailed(
    api: httpx.Client, env: Mapping[str, str], member: Member
) -> None:
    token = member_token(api, member)
    title = f"clip-{secrets.token_hex(3)}.mp4"
    grant = upload(api, token, b"\x00\x00\x00\x18ftypmp42", title)
    requested = api.post("/api/releases", json={"videoId": grant["videoId"]},
                         headers=bearer(token))
    assert requested.status_code == 202, requested.text
    release = requested.json()
    assert release["status"] == "PENDING" and release["jobId"]

    def completed() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/api/releases/{release['releaseId']}",
                                       headers=bearer(token)).json()
        return body if body["status"] == "COMPLETED" else None

    done = wait_for(completed, "the release COMPLETED")
    assert done["processedAt"] and done["jobId"] == release["jobId"]

    def mailed() -> dict[str, Any] | None:
        inbox = httpx.get(f"{env['RESEND_API_URL']}/emails", timeout=5,
                          headers=bearer(env["RESEND_API_KEY"])).json()["data"]
        return next((m for m in inbox if member.email in m["to"] and title in m["subject"]),
                    None)

    email = wait_for(mailed, f"an e-mail to {member.email} about {title}")
    assert email["from"] == env["FROM_EMAIL"]
    state, result = asyncio.run(_job(env["REDIS_URL"], "release-process", release["jobId"]))
    assert state == "completed"
    assert result["releaseId"] == release["releaseId"]
    state, sent = asyncio.run(_job(env["REDIS_URL"], "email", result["emailJobId"]))
    assert (state, sent["id"]) == ("completed", email["id"])
    video = api.get(f"/api/videos/{grant['videoId']}", headers=bearer(token)).json()
    assert video["status"] == "READY"


def test_canary_jobs_complete_on_both_queues(env: Mapping[str, str]) -> None:
    async def round_trip(queue_name: str) -> tuple[str, Any]:
        queue = Queue(queue_name, {"connection": queue_client(env["REDIS_URL"])})
        try:
            job = await queue.add("canary", {"sentAt": time.time()})
            deadline = time.monotonic() + WAIT_S
            state = ""
            while time.monotonic() < deadline:
                state = str(await queue.getJobState(job.id))
                if state in {"completed", "failed"}:
                    break
                await asyncio.sleep(0.1)
            fetched = await queue.getJob(job.id)
            await queue.remove(job.id)
            return state, fetched.returnvalue if fetched else None
        finally:
            await queue.close()

    for name in ("email", "release-process"):
        assert asyncio.run(round_trip(name)) == ("completed", {"pong": True, "queue": name})


# ------------------------------------------------------------------------------- worker jobs


def _jobs(env: Mapping[str, str], **overrides: Any) -> tuple[Jobs, Callable[[], Any]]:
    config = WorkerConfig(
        redis_url=env["REDIS_URL"], api_secret=env["API_SECRET"], api_url=env["API_URL"],
        resend_api_key=env["RESEND_API_KEY"], resend_api_url=env["RESEND_API_URL"],
        from_email=env["FROM_EMAIL"],
    )
    config = WorkerConfig(**{**config.__dict__, **overrides})
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0))
    queue = Queue("email", {"connection": queue_client(env["REDIS_URL"])})

    async def close() -> None:
        await http.aclose()
        await queue.close()

    return Jobs(config, http, queue), close


def _run_job(env: Mapping[str, str], queue_name: str, name: str, data: dict[str, Any],
             **overrides: Any) -> Any:
    async def go() -> Any:
        jobs, close = _jobs(env, **overrides)
        try:
            return await jobs.processor(queue_name)(SimpleNamespace(name=name, data=data), "t")
        finally:
            await close()

    return asyncio.run(go())


def test_worker_with_a_mismatched_api_secret_fails_release_jobs(
    env: Mapping[str, str],
) -> None:
    with pytest.raises(UnrecoverableError, match="Invalid or expired token"):
        _run_job(env, "release-process", "process-release",
                 {"releaseId": seeddata.RELEASES[0].id}, api_secret="m" * 64)


def test_send_email_fails_on_resend_4xx(env: Mapping[str, str], member: Member) -> None:
    data = {"to": member.email, "subject": "test", "html": "<p>x</p>"}
    with pytest.raises(UnrecoverableError, match="API key is invalid"):
        _run_job(env, "email", "send-email", data, resend_api_key="re_wrong")
    with pytest.raises(UnrecoverableError, match="domain is not verified"):
        _run_job(env, "email", "send-email", data, from_email="noreply@unverified.example")
    sent = _run_job(env, "email", "send-email", data)
    assert sent["to"] == [member.email] and sent["id"]


# ------------------------------------------------------------------------------- metrics, logs


def test_metrics_count_requests_by_route_and_status(api: httpx.Client) -> None:
    def counter(samples: Mapping[Any, float], route: str, status: str) -> float:
        key = ("http_requests_total", frozenset({("method", "GET"), ("route", route),
                                                  ("status", status), ("synthetic", "false")}))
        return samples.get(key, 0.0)

    before = by_key(api.get("/metrics").text)
    for _ in range(3):
        api.get("/health")
    api.get(f"/no-such-page-{secrets.token_hex(3)}")
    response = api.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = by_key(response.text)
    assert counter(after, "/health", "200") - counter(before, "/health", "200") >= 3
    assert counter(after, "unmatched", "404") - counter(before, "unmatched", "404") >= 1
    buckets = sorted(
        (float(dict(labels)["le"]), value) for (name, labels), value in after.items()
        if name == "http_request_duration_seconds_bucket" and ("route", "/health") in labels
        and ("synthetic", "false") in labels
    )
    counts = [value for _, value in buckets]
    assert counts == sorted(counts) and buckets[-1][0] == float("inf")
    total = after[("http_request_duration_seconds_count",
                   frozenset({("route", "/health"), ("synthetic", "false")}))]
    assert buckets[-1][1] == total
    assert after[("process_resident_memory_bytes", frozenset())] > 10_000_000


def test_service_logs_have_request_lines_and_no_secret(
    api: httpx.Client, sandbox: Any, env: Mapping[str, str]
) -> None:
    marker = f"/log-marker-{secrets.token_hex(4)}"
    api.get(marker)
    logs = Path(env.get("RUNBOOK_HOME") or sandbox.home) / "sandbox" / "logs"

    def logged() -> str | None:
        text = (logs / "api.log").read_text(errors="replace")
        return next((line for line in text.splitlines() if f"path={marker} " in line), None)

    line = wait_for(logged, f"the request line for {marker} in api.log", timeout=5)
    assert " INFO " in line and "method=GET" in line and "status=404" in line
    assert "duration_ms=" in line and line[:4].isdigit() and "Z " in line
    secret_values = [env[k] for k in ("API_SECRET", "RESEND_API_KEY", "AWS_SECRET_ACCESS_KEY",
                                      "ADMIN_TOKEN")]
    secret_values += [p for p in (urlsplit(env["DATABASE_URL"]).password,
                                  urlsplit(env["REDIS_URL"]).password) if p]
    for name in ("api", "worker", "web", "mail", "s3"):
        path = logs / f"{name}.log"
        if path.exists():
            text = path.read_text(errors="replace")
            leaked = [i for i, value in enumerate(secret_values) if value in text]
            assert not leaked, f"{name}.log holds secret #{leaked}"


# ------------------------------------------------------------------------------- web, mail


def test_web_front_page_is_legacyvideo(env: Mapping[str, str]) -> None:
    page = httpx.get(env["WEB_URL"], timeout=5)
    assert page.status_code == 200
    assert "<title>LegacyVideo</title>" in page.text
    assert '<meta name="application-name" content="LegacyVideo">' in page.text
    assert httpx.get(f"{env['WEB_URL']}/nope", timeout=5).status_code == 404


def test_from_email_domain_is_verified_at_the_mail_stand_in(env: Mapping[str, str]) -> None:
    domains = httpx.get(f"{env['RESEND_API_URL']}/domains", timeout=5,
                        headers=bearer(env["RESEND_API_KEY"]))
    assert domains.status_code == 200
    verified = {d["name"] for d in domains.json()["data"] if d["status"] == "verified"}
    assert env["FROM_EMAIL"].rpartition("@")[2].rstrip(">") in verified
    assert httpx.get(f"{env['RESEND_API_URL']}/domains", timeout=5).status_code == 401


# ------------------------------------------------------------------------------- migrations, seed


def test_sandbox_migrations_are_recorded_like_prisma(env: Mapping[str, str]) -> None:
    local = migrate.load_migrations()
    assert len(local) >= 2
    state = migrate.status(env["DATABASE_URL"])
    assert state.up_to_date and state.applied == tuple(m.name for m in local)
    assert not state.modified and not state.unknown
    with db_connect(env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            'SELECT "migration_name", "checksum", "finished_at" IS NOT NULL, '
            '"applied_steps_count", "rolled_back_at", "logs" FROM "_prisma_migrations" '
            'ORDER BY "started_at"'
        ).fetchall()
    on_disk = {
        m.name: hashlib.sha256(
            (migrate.MIGRATIONS_DIR / m.name / "migration.sql").read_bytes()
        ).hexdigest()
        for m in local
    }
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        (name, checksum, True, 1, None, None) for name, checksum in on_disk.items()
    ]
    assert migrate.deploy(env["DATABASE_URL"]) == []


def test_sandbox_seed_data_is_there(env: Mapping[str, str]) -> None:
    with db_connect(env["DATABASE_URL"]) as conn:
        admin = conn.execute('SELECT "role"::text, "passwordHash" FROM "User" WHERE "email" = %s',
                             (seeddata.ADMIN_EMAIL,)).fetchone()
        counts = {
            table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # type: ignore[index]
            for table in ("User", "Video", "Release", "AuditLog")
        }
    assert admin is not None and admin[0] == "ADMIN" and admin[1].startswith("$2b$12$")
    assert counts["User"] >= 3 and counts["Video"] >= 3
    assert counts["Release"] >= 2 and counts["AuditLog"] >= 4


def with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    extra = "options=" + quote(f"-c search_path={schema}")
    return urlunsplit(parts._replace(query="&".join(p for p in (parts.query, extra) if p)))


@pytest.fixture
def scratch_url(env: Mapping[str, str]) -> Iterator[str]:
    """The sandbox database seen through a fresh, empty schema (dropped afterwards)."""
    schema = f"svc_test_{secrets.token_hex(4)}"
    with db_connect(env["DATABASE_URL"]) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')  # type: ignore[arg-type]
    try:
        yield with_search_path(env["DATABASE_URL"], schema)
    finally:
        with db_connect(env["DATABASE_URL"]) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')  # type: ignore[arg-type]


def test_deploy_and_seed_into_an_empty_schema_are_idempotent(scratch_url: str) -> None:
    names = [m.name for m in migrate.load_migrations()]
    assert migrate.status(scratch_url).pending == tuple(names)
    assert migrate.deploy(scratch_url) == names
    assert migrate.deploy(scratch_url) == []
    first = migrate.seed(scratch_url, "admin-pass-1", "user-pass-1")
    assert set(first.created_users) == {u.email for u in seeddata.USERS}
    again = migrate.seed(scratch_url, "other-pass", "other-pass")
    assert again.created_users == () and again.admin_id == first.admin_id
    with db_connect(scratch_url) as conn:
        stored = conn.execute('SELECT "passwordHash" FROM "User" WHERE "email" = %s',
                              (seeddata.ADMIN_EMAIL,)).fetchone()
    assert stored is not None and bcrypt.checkpw(b"admin-pass-1", stored[0].encode())


def test_failed_migration_is_recorded_and_blocks_deploy_until_rolled_back(
    scratch_url: str, tmp_path: Path
) -> None:
    first = migrate.load_migrations()[0]
    (tmp_path / first.name).mkdir()
    (tmp_path / first.name / "migration.sql").write_text(first.sql)
    broken = tmp_path / "20990101000000_broken"
    broken.mkdir()
    (broken / "migration.sql").write_text(
        'CREATE TABLE "HalfDone" ("id" INTEGER);\nSELECT 1 / 0;\n'
    )
    with pytest.raises(migrate.MigrationError, match="division by zero"):
        migrate.deploy(scratch_url, migrations_dir=tmp_path)
    state = migrate.status(scratch_url, migrations_dir=tmp_path)
    assert (state.applied, state.failed) == ((first.name,), (broken.name,))
    with db_connect(scratch_url) as conn:
        row = conn.execute(
            'SELECT "finished_at", "applied_steps_count", "logs" FROM "_prisma_migrations" '
            'WHERE "migration_name" = %s', (broken.name,)
        ).fetchone()
        half_done = conn.execute("SELECT to_regclass('\"HalfDone\"')").fetchone()
    assert row is not None and row[0] is None and row[1] == 0 and "division by zero" in row[2]
    assert half_done == (None,), "the failed migration's transaction was not rolled back"
    with pytest.raises(migrate.MigrationError, match="failed migrations"):
        migrate.deploy(scratch_url, migrations_dir=tmp_path)
    (broken / "migration.sql").write_text('CREATE TABLE "HalfDone" ("id" INTEGER);\n')
    with db_connect(scratch_url) as conn:
        conn.execute('UPDATE "_prisma_migrations" SET "rolled_back_at" = now() '
                     'WHERE "migration_name" = %s', (broken.name,))
    assert migrate.deploy(scratch_url, migrations_dir=tmp_path) == [broken.name]
    assert migrate.status(scratch_url, migrations_dir=tmp_path).up_to_date


# ------------------------------------------------------------------------------- in-process API


def _config(env: Mapping[str, str], database_url: str, **overrides: Any) -> ApiConfig:
    base = ApiConfig.from_env({**env, "DATABASE_URL": database_url})
    return ApiConfig(**{**base.__dict__, **overrides})


def _requests(config: ApiConfig, calls: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    """Send ``calls`` (method, path, httpx kwargs) in order to an in-process app; a call's
    ``headers`` may name ``"$token<i>"`` to use the token returned by call ``i``."""

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(config))
        out: list[httpx.Response] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                     timeout=30) as client:
            for method, path, kwargs in calls:
                headers = kwargs.pop("headers", {})
                auth = headers.get("Authorization", "")
                if auth.startswith("$token"):
                    headers = bearer(out[int(auth[6:])].json()["token"])
                out.append(await client.request(method, path, headers=headers, **kwargs))
        return out

    return asyncio.run(go())


def test_revoke_all_rejects_every_token_issued_before(
    env: Mapping[str, str], scratch_url: str
) -> None:
    migrate.deploy(scratch_url)
    migrate.seed(scratch_url, "admin-pass-1", "user-pass-1")
    admin_login = {"json": {"email": seeddata.ADMIN_EMAIL, "password": "admin-pass-1"}}
    user_login = {"json": {"email": seeddata.USER_EMAIL, "password": "user-pass-1"}}
    responses = _requests(_config(env, scratch_url), [
        ("POST", "/api/auth/login", admin_login),
        ("POST", "/api/auth/login", user_login),
        ("POST", "/api/admin/tokens/revoke-all", {"headers": {"Authorization": "$token0"}}),
        ("GET", "/api/auth/me", {"headers": {"Authorization": "$token0"}}),
        ("GET", "/api/auth/me", {"headers": {"Authorization": "$token1"}}),
        ("POST", "/api/auth/login", user_login),
        ("GET", "/api/auth/me", {"headers": {"Authorization": "$token5"}}),
    ])
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 401, 401, 200, 200]
    assert responses[2].json() == {"revoked": len(seeddata.USERS)}
    assert responses[4].json() == {"error": "Invalid or expired token"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_lost_database_gives_500_fast_and_health_stays_up(
    env: Mapping[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql://legacyvideo:hunter2-never-logged@127.0.0.1:{_closed_port()}/legacyvideo"
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="legacyvideo.api"):
        login_, health, scrape = _requests(_config(env, url), [
            ("POST", "/api/auth/login", {"json": {"email": "a@b.test", "password": "x"}}),
            ("GET", "/health", {}),
            ("GET", "/metrics", {}),
        ])
    assert time.monotonic() - started < 6
    assert login_.status_code == 500
    assert login_.json() == {"error": "Internal Server Error"}
    assert health.status_code == 200
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("unhandled error on POST /api/auth/login" in r.getMessage() for r in errors)
    assert "hunter2-never-logged" not in caplog.text
    key = ("http_requests_total", frozenset(
        {("method", "POST"), ("route", "/api/auth/login"), ("status", "500"),
         ("synthetic", "false")}))
    assert by_key(scrape.text)[key] == 1


def test_an_unresponsive_database_times_out_instead_of_hanging(env: Mapping[str, str]) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = f"postgresql://legacyvideo:pw@127.0.0.1:{port}/legacyvideo"
        started = time.monotonic()
        (response,) = _requests(_config(env, url, db_connect_timeout_s=2), [
            ("GET", "/api/auth/me", {"headers": {"Authorization": "Bearer x.y.z"}}),
        ])
        elapsed = time.monotonic() - started
    assert response.status_code == 500
    assert 1.5 < elapsed < 6


def test_a_silent_redis_fails_the_release_in_bounded_time(
    env: Mapping[str, str], scratch_url: str
) -> None:
    migrate.deploy(scratch_url)
    migrate.seed(scratch_url, "admin-pass-1", "user-pass-1")
    video = next(v for v in seeddata.VIDEOS if v.owner_email == seeddata.USER_EMAIL)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        config = _config(env, scratch_url, redis_url=f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
                         redis_timeout_s=1.0)
        started = time.monotonic()
        _, release = _requests(config, [
            ("POST", "/api/auth/login",
             {"json": {"email": seeddata.USER_EMAIL, "password": "user-pass-1"}}),
            ("POST", "/api/releases",
             {"json": {"videoId": video.id}, "headers": {"Authorization": "$token0"}}),
        ])
        elapsed = time.monotonic() - started
    assert release.status_code == 500 and elapsed < 6
    with db_connect(scratch_url) as conn:
        statuses = conn.execute(
            'SELECT "status"::text, "jobId" FROM "Release" WHERE "videoId" = %s '
            'AND NOT ("id" = ANY(%s))', (video.id, [r.id for r in seeddata.RELEASES])
        ).fetchall()
    assert statuses == [("FAILED", None)]


def test_slow_queries_are_logged_as_query_took(
    env: Mapping[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="legacyvideo.api"):
        (response,) = _requests(_config(env, env["DATABASE_URL"], slow_query_ms=0), [
            ("POST", "/api/auth/login",
             {"json": {"email": "nobody@legacyvideo.test", "password": "x"}}),
        ])
    assert response.status_code == 401
    slow = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("query took ") and 'FROM "User"' in m for m in slow), slow
