"""The LegacyVideo API (FastAPI + uvicorn): health, auth, admin operations, presigned
uploads, releases through BullMQ, and Prometheus metrics.

``python -m runbook.sandbox.services.api`` serves on ``HOST``/``PORT``;
``create_app(config)`` builds the same application for tests. Every network call is
bounded: database connect 5 s plus a server-side statement timeout, Redis 3 s connect and
5 s per command, S3 3 s connect and 10 s read, and each request has an overall deadline.
An unhandled error becomes ``500 {"error":"Internal Server Error"}`` and one ERROR line."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, LiteralString

import bcrypt
import psycopg
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runbook.sandbox.procs import RUNAWAY_AUTOGROUP_NICE, reserve_cpu_share
from runbook.sandbox.services.common import (
    CHAOS_CPU_HOG,
    ConfigError,
    env_int,
    iso,
    libpq_url,
    listen_address,
    one_line_error,
    pg_options,
    require,
    setup_logging,
    utc_now_iso,
)
from runbook.sandbox.services.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from runbook.sandbox.services.metrics import Metrics, is_synthetic
from runbook.sandbox.services.tokens import (
    TokenError,
    issue_user_token,
    verify_service_token,
    verify_user_token,
)

if TYPE_CHECKING:
    from bullmq import Queue

log = logging.getLogger("legacyvideo.api")

RELEASE_QUEUE = "release-process"
RELEASE_JOB = "process-release"
#: A cost-12 hash of a random string: checked when the e-mail is unknown, so a failed
#: login takes as long whether or not the account exists.
_DUMMY_HASH = b"$2b$12$SwNccucAbrC4zIA1FxzrJuI8BBWfU1Vz4ozO9X.wMoCquad5oPVMS"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

INVALID_TOKEN = "Invalid or expired token"


@dataclass(frozen=True)
class ApiConfig:
    """Everything the API reads from its environment. Secrets stay out of ``repr``."""

    database_url: str = field(repr=False)
    redis_url: str = field(repr=False)
    api_secret: str = field(repr=False)
    s3_bucket: str
    s3_region: str = "us-east-1"
    s3_endpoint_url: str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    web_url: str | None = None
    slow_query_ms: int = 500
    token_ttl_s: int = 24 * 3600
    upload_url_ttl_s: int = 900
    db_connect_timeout_s: int = 5
    statement_timeout_ms: int = 10_000
    redis_timeout_s: float = 5.0
    request_timeout_s: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiConfig:
        """Read the contract's variables; raises ConfigError for a missing one."""
        env = os.environ if env is None else env
        return cls(
            database_url=require(env, "DATABASE_URL"),
            redis_url=require(env, "REDIS_URL"),
            api_secret=require(env, "API_SECRET"),
            s3_bucket=require(env, "S3_BUCKET"),
            s3_region=env.get("S3_REGION") or "us-east-1",
            s3_endpoint_url=env.get("S3_ENDPOINT_URL") or None,
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            web_url=env.get("WEB_URL") or None,
            slow_query_ms=env_int(env, "SLOW_QUERY_MS", 500),
            token_ttl_s=env_int(env, "TOKEN_TTL_S", 24 * 3600),
            statement_timeout_ms=env_int(env, "STATEMENT_TIMEOUT_MS", 10_000),
        )


class ApiError(Exception):
    """An expected failure, answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- database


class Tx:
    """One request's database transaction; every query is timed."""

    def __init__(self, conn: psycopg.AsyncConnection[DictRow], db: Database) -> None:
        self.conn = conn
        self.db = db

    async def execute(self, sql: LiteralString, params: tuple[Any, ...] = ()) -> int:
        """Run a statement and return its row count."""
        cur = await self._run(sql, params)
        return cur.rowcount

    async def one(self, sql: LiteralString, params: tuple[Any, ...] = ()) -> DictRow | None:
        """The first row of a query, or None."""
        cur = await self._run(sql, params)
        return await cur.fetchone()

    async def all(self, sql: LiteralString, params: tuple[Any, ...] = ()) -> list[DictRow]:
        """Every row of a query."""
        cur = await self._run(sql, params)
        return await cur.fetchall()

    async def _run(
        self, sql: LiteralString, params: tuple[Any, ...]
    ) -> psycopg.AsyncCursor[DictRow]:
        started = time.perf_counter()
        failed = True
        try:
            cur = await self.conn.execute(sql, params)
            failed = False
            return cur
        finally:
            elapsed = time.perf_counter() - started
            self.db.metrics.observe_query(elapsed, failed=failed)
            elapsed_ms = elapsed * 1000
            if elapsed_ms >= self.db.slow_query_ms:
                log.warning("query took %.0fms: %s", elapsed_ms, " ".join(sql.split())[:200])


class Database:
    """Per-request connections: nothing stale survives a database restart, and a lost
    database fails fast (connect timeout) instead of hanging."""

    def __init__(self, config: ApiConfig, metrics: Metrics) -> None:
        self.url = libpq_url(config.database_url)
        self.connect_timeout_s = config.db_connect_timeout_s
        self.options = pg_options(
            config.database_url, f"-c statement_timeout={config.statement_timeout_ms}"
        )
        self.slow_query_ms = config.slow_query_ms
        self.metrics = metrics

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A connection in a transaction, committed when the block succeeds. On error the
        connection is closed without a rollback round trip (the server rolls back)."""
        conn = await psycopg.AsyncConnection.connect(
            self.url,
            connect_timeout=self.connect_timeout_s,
            options=self.options,
            application_name="legacyvideo-api",
            row_factory=dict_row,
        )
        try:
            yield Tx(conn, self)
            await conn.commit()
        finally:
            await conn.close()


# --------------------------------------------------------------------------- resources


class Services:
    """The API's connections to S3 and Redis, created on first use."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self._s3: Any = None
        self._s3_lock = threading.Lock()
        self._queue: Queue | None = None

    def s3(self) -> Any:
        """A boto3 S3 client: signature v4, path-style, bounded timeouts and retries."""
        with self._s3_lock:
            if self._s3 is None:
                import boto3
                from botocore.config import Config

                self._s3 = boto3.session.Session().client(
                    "s3",
                    region_name=self.config.s3_region,
                    endpoint_url=self.config.s3_endpoint_url,
                    aws_access_key_id=self.config.aws_access_key_id,
                    aws_secret_access_key=self.config.aws_secret_access_key,
                    config=Config(
                        signature_version="s3v4",
                        s3={"addressing_style": "path"},
                        connect_timeout=3,
                        read_timeout=10,
                        retries={"max_attempts": 2, "mode": "standard"},
                    ),
                )
            return self._s3

    def release_queue(self) -> Queue:
        """The ``release-process`` BullMQ queue on a client with finite timeouts."""
        if self._queue is None:
            from bullmq import Queue
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            client = Redis.from_url(
                self.config.redis_url,
                decode_responses=True,
                socket_connect_timeout=3,
                socket_timeout=self.config.redis_timeout_s,
                retry=Retry(NoBackoff(), 1),
                health_check_interval=30,
            )
            self._queue = Queue(RELEASE_QUEUE, {"connection": client})
        return self._queue

    async def close(self) -> None:
        if self._queue is not None:
            queue, self._queue = self._queue, None
            try:
                async with asyncio.timeout(3):
                    await queue.close()
            except Exception as exc:
                log.warning("closing the Redis connection failed: %s", one_line_error(exc))


# --------------------------------------------------------------------------- middleware


class Observe:
    """Outermost middleware: one log line and the metrics for every request (labelled
    ``synthetic`` when the executable runbook sent it), an overall deadline, and
    ``500 {"error":"Internal Server Error"}`` for anything unhandled."""

    def __init__(self, app: ASGIApp, metrics: Metrics, request_timeout_s: float) -> None:
        self.app = app
        self.metrics = metrics
        self.request_timeout_s = request_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = {"status": 500, "started": False}

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
            await send(message)

        method, path = scope["method"], scope["path"]
        agent = next((value for name, value in scope.get("headers", ())
                      if name == b"user-agent"), b"")
        synthetic = is_synthetic(agent.decode("latin-1"))
        deadline = asyncio.timeout(self.request_timeout_s)
        try:
            async with deadline:
                await self.app(scope, receive, observed_send)
        except Exception as exc:
            if deadline.expired():
                reason = f"no response within the {self.request_timeout_s:g} s request deadline"
            else:
                reason = one_line_error(exc)
            log.error("unhandled error on %s %s: %s", method, path, reason)
            if state["started"]:
                raise
            response = JSONResponse({"error": "Internal Server Error"}, status_code=500)
            await response(scope, receive, observed_send)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            status = int(state["status"])
            self.metrics.observe_request(method, template, status, elapsed,
                                         synthetic=synthetic)
            log.info(
                "request method=%s path=%s status=%d duration_ms=%.1f",
                method, path, status, elapsed * 1000,
            )


# --------------------------------------------------------------------------- bodies


class LoginBody(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class LockBody(BaseModel):
    userId: str = Field(min_length=1, max_length=64)
    locked: bool


class RevokeBody(BaseModel):
    userId: str | None = Field(default=None, min_length=1, max_length=64)


class UploadBody(BaseModel):
    filename: str = Field(min_length=1, max_length=255)
    contentType: str = Field(min_length=3, max_length=100)
    title: str | None = Field(default=None, max_length=200)


class ReleaseBody(BaseModel):
    videoId: str = Field(min_length=1, max_length=64)


# --------------------------------------------------------------------------- helpers


def client_ip(request: Request) -> str:
    """The caller's address: the first ``X-Forwarded-For`` hop (LegacyVideo runs behind
    its platform's proxy), else the socket peer."""
    forwarded = request.headers.get("x-forwarded-for", "")
    first = forwarded.split(",")[0].strip()
    if first:
        return first[:64]
    return request.client.host if request.client else "unknown"


def bearer(request: Request) -> str | None:
    """The bearer token of the request, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def public_user(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "email": row["email"],
        "name": row["name"],
        "role": row["role"],
        "locked": row["locked"],
        "createdAt": iso(row.get("createdAt")),
    }


def public_release(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "releaseId": row["id"],
        "videoId": row["videoId"],
        "requestedById": row["requestedById"],
        "status": row["status"],
        "jobId": row["jobId"],
        "createdAt": iso(row["createdAt"]),
        "processedAt": iso(row["processedAt"]),
    }


def public_video(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "videoId": row["id"],
        "ownerId": row["ownerId"],
        "title": row["title"],
        "key": row["s3Key"],
        "contentType": row["contentType"],
        "status": row["status"],
        "createdAt": iso(row["createdAt"]),
    }


USER_COLUMNS: LiteralString = (
    '"id", "email", "name", "passwordHash", "role", "locked", "tokenVersion", "createdAt"'
)


async def audit(
    tx: Tx, action: str, *, user_id: str | None, ip: str, metadata: dict[str, Any]
) -> None:
    """Append an ``AuditLog`` row."""
    await tx.execute(
        'INSERT INTO "AuditLog" ("id", "userId", "action", "ip", "metadata") '
        "VALUES (%s, %s, %s, %s, %s)",
        (str(uuid.uuid4()), user_id, action, ip, Jsonb(metadata)),
    )


async def check_password(password: str, password_hash: bytes) -> bool:
    """bcrypt check off the event loop (a cost-12 check takes about 250 ms)."""
    try:
        return await asyncio.to_thread(bcrypt.checkpw, password.encode(), password_hash)
    except ValueError:  # over bcrypt's 72 bytes, or a malformed hash
        return False


# --------------------------------------------------------------------------- application


def create_app(config: ApiConfig) -> FastAPI:
    """The LegacyVideo API for ``config``. Connections to Redis and S3 open on first use,
    so the app also works under an ASGI test transport that skips the lifespan."""
    metrics = Metrics()
    db = Database(config, metrics)
    services = Services(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Build the S3 client (a few hundred ms of model loading) off the startup path.
        warmup = asyncio.create_task(asyncio.to_thread(services.s3))
        try:
            yield
        finally:
            warmup.cancel()
            await services.close()

    app = FastAPI(title="LegacyVideo API", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.config = config
    app.state.metrics = metrics
    app.state.db = db
    app.state.services = services
    if config.web_url:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[config.web_url.rstrip("/")],
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(Observe, metrics=metrics, request_timeout_s=config.request_timeout_s)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
        return JSONResponse(
            {"error": "Invalid request body", "details": problems}, status_code=400
        )

    async def authenticate(request: Request, tx: Tx, *, admin: bool = False) -> DictRow:
        """The calling user: 401 without a valid, unrevoked token; 403 when locked, or
        when ``admin`` and the user (per the database, not the token) is not an ADMIN."""
        token = bearer(request)
        if token is None:
            raise ApiError(401, "Authentication required")
        try:
            claims = verify_user_token(config.api_secret, token)
        except TokenError:
            raise ApiError(401, INVALID_TOKEN) from None
        user = await tx.one(
            f'SELECT {USER_COLUMNS} FROM "User" WHERE "id" = %s',
            (claims.user_id,),
        )
        if user is None or user["tokenVersion"] != claims.token_version:
            raise ApiError(401, INVALID_TOKEN)
        if user["locked"]:
            raise ApiError(403, "Account locked")
        if admin and user["role"] != "ADMIN":
            raise ApiError(403, "Admin access required")
        return user

    # ---------------------------------------------------------------- health, metrics

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness only: no database or Redis call (the runbook checks those itself)."""
        return {"status": "ok", "timestamp": utc_now_iso()}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(
            metrics.render(), media_type=METRICS_CONTENT_TYPE
        )

    # ---------------------------------------------------------------- auth

    @app.post("/api/auth/login")
    async def login(body: LoginBody, request: Request) -> JSONResponse:
        ip = client_ip(request)
        email = body.email.strip().lower()
        async with db.transaction() as tx:
            user = await tx.one(
                f'SELECT {USER_COLUMNS} FROM "User" WHERE "email" = %s',
                (email,),
            )
            stored = user["passwordHash"].encode() if user else _DUMMY_HASH
            valid = await check_password(body.password, stored) and user is not None
            if not valid or user is None:
                await audit(tx, "LOGIN_FAILURE", user_id=user["id"] if user else None, ip=ip,
                            metadata={"email": email, "reason": "bad_credentials"})
                return JSONResponse({"error": "Invalid email or password"}, status_code=401)
            if user["locked"]:
                await audit(tx, "LOGIN_FAILURE", user_id=user["id"], ip=ip,
                            metadata={"email": email, "reason": "locked"})
                return JSONResponse({"error": "Account locked"}, status_code=403)
            token = issue_user_token(
                config.api_secret, user["id"], user["role"], user["tokenVersion"],
                config.token_ttl_s,
            )
            await audit(tx, "LOGIN_SUCCESS", user_id=user["id"], ip=ip,
                        metadata={"email": email})
        return JSONResponse({"token": token, "user": public_user(user)})

    @app.get("/api/auth/me")
    async def me(request: Request) -> dict[str, Any]:
        async with db.transaction() as tx:
            user = await authenticate(request, tx)
        return public_user(user)

    # ---------------------------------------------------------------- admin

    @app.post("/api/admin/users/lock")
    async def lock_user(body: LockBody, request: Request) -> dict[str, Any]:
        async with db.transaction() as tx:
            admin = await authenticate(request, tx, admin=True)
            target = await tx.one(
                'UPDATE "User" SET "locked" = %s, "updatedAt" = now() WHERE "id" = %s '
                f"RETURNING {USER_COLUMNS}",
                (body.locked, body.userId),
            )
            if target is None:
                raise ApiError(404, "User not found")
            await audit(
                tx, "USER_LOCKED" if body.locked else "USER_UNLOCKED",
                user_id=admin["id"], ip=client_ip(request),
                metadata={"targetUserId": target["id"], "targetEmail": target["email"]},
            )
        return {"user": public_user(target)}

    @app.post("/api/admin/tokens/revoke-all")
    async def revoke_all(request: Request, body: RevokeBody | None = None) -> dict[str, Any]:
        """Bump the token version of every user (or of ``userId`` only): every token
        issued before is rejected afterwards, the caller's included."""
        scope_user = body.userId if body else None
        async with db.transaction() as tx:
            admin = await authenticate(request, tx, admin=True)
            if scope_user is None:
                revoked = await tx.execute(
                    'UPDATE "User" SET "tokenVersion" = "tokenVersion" + 1, "updatedAt" = now()'
                )
            else:
                revoked = await tx.execute(
                    'UPDATE "User" SET "tokenVersion" = "tokenVersion" + 1, "updatedAt" = now() '
                    'WHERE "id" = %s',
                    (scope_user,),
                )
                if revoked == 0:
                    raise ApiError(404, "User not found")
            await audit(
                tx, "TOKENS_REVOKED", user_id=admin["id"], ip=client_ip(request),
                metadata={"scope": "user" if scope_user else "all", "userId": scope_user,
                          "revoked": revoked},
            )
        return {"revoked": revoked}

    @app.get("/api/admin/users")
    async def list_users(
        request: Request, email: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        async with db.transaction() as tx:
            await authenticate(request, tx, admin=True)
            rows = await tx.all(
                f'SELECT {USER_COLUMNS} FROM "User" '
                'WHERE (%s::text IS NULL OR "email" = lower(%s::text)) '
                'ORDER BY "createdAt", "email" LIMIT %s',
                (email, email, max(1, min(limit, 1000))),
            )
        return {"users": [public_user(row) for row in rows]}

    @app.get("/api/admin/audit-logs")
    async def audit_logs(
        request: Request, action: str | None = None, userId: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        async with db.transaction() as tx:
            await authenticate(request, tx, admin=True)
            rows = await tx.all(
                'SELECT "id", "userId", "action", "ip", "metadata", "createdAt" FROM "AuditLog" '
                'WHERE (%s::text IS NULL OR "action" = %s::text) '
                'AND (%s::text IS NULL OR "userId" = %s::text) '
                'ORDER BY "createdAt" DESC LIMIT %s',
                (action, action, userId, userId, max(1, min(limit, 500))),
            )
        return {
            "entries": [
                {**row, "createdAt": iso(row["createdAt"])} for row in rows
            ]
        }

    # ---------------------------------------------------------------- videos

    @app.post("/api/videos/upload-url")
    async def upload_url(body: UploadBody, request: Request) -> dict[str, Any]:
        content_type = body.contentType.strip().lower()
        if not content_type.startswith("video/"):
            raise ApiError(400, "contentType must be a video/* type")
        filename = _SAFE_NAME.sub("_", body.filename.strip()).strip("._") or "video"
        video_id = str(uuid.uuid4())
        async with db.transaction() as tx:
            user = await authenticate(request, tx)
            key = f"videos/{user['id']}/{video_id}/{filename}"
            await tx.execute(
                'INSERT INTO "Video" ("id", "ownerId", "title", "s3Key", "contentType", '
                '"status", "updatedAt") VALUES (%s, %s, %s, %s, %s, %s, now())',
                (video_id, user["id"], body.title or filename, key, content_type,
                 "PENDING_UPLOAD"),
            )
            s3 = await asyncio.to_thread(services.s3)
            url = s3.generate_presigned_url(
                "put_object",
                Params={"Bucket": config.s3_bucket, "Key": key, "ContentType": content_type},
                ExpiresIn=config.upload_url_ttl_s,
            )
        return {
            "videoId": video_id,
            "key": key,
            "uploadUrl": url,
            "expiresIn": config.upload_url_ttl_s,
            "method": "PUT",
            "headers": {"Content-Type": content_type},
        }

    @app.get("/api/videos/{video_id}")
    async def get_video(video_id: str, request: Request) -> dict[str, Any]:
        async with db.transaction() as tx:
            user = await authenticate(request, tx)
            video = await tx.one('SELECT * FROM "Video" WHERE "id" = %s', (video_id,))
        if video is None or (video["ownerId"] != user["id"] and user["role"] != "ADMIN"):
            raise ApiError(404, "Video not found")
        return public_video(video)

    async def object_exists(key: str) -> bool:
        s3 = await asyncio.to_thread(services.s3)
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(s3.head_object, Bucket=config.s3_bucket, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    # ---------------------------------------------------------------- releases

    @app.post("/api/releases", status_code=202)
    async def request_release(body: ReleaseBody, request: Request) -> JSONResponse:
        """Record a PENDING release and enqueue ``process-release``. A video still waiting
        for its upload is checked in S3 first (409 while its object is missing)."""
        release_id = str(uuid.uuid4())
        async with db.transaction() as tx:
            user = await authenticate(request, tx)
            video = await tx.one('SELECT * FROM "Video" WHERE "id" = %s', (body.videoId,))
            if video is None or (video["ownerId"] != user["id"] and user["role"] != "ADMIN"):
                raise ApiError(404, "Video not found")
            if video["status"] == "PENDING_UPLOAD":
                if not await object_exists(video["s3Key"]):
                    raise ApiError(409, "Video has not been uploaded yet")
                await tx.execute(
                    'UPDATE "Video" SET "status" = \'UPLOADED\', "updatedAt" = now() '
                    'WHERE "id" = %s',
                    (video["id"],),
                )
            await tx.execute(
                'INSERT INTO "Release" ("id", "videoId", "requestedById", "status", '
                '"updatedAt") VALUES (%s, %s, %s, \'PENDING\', now())',
                (release_id, video["id"], user["id"]),
            )
            await audit(tx, "RELEASE_REQUESTED", user_id=user["id"], ip=client_ip(request),
                        metadata={"releaseId": release_id, "videoId": video["id"]})
        # Committed before enqueueing, so the worker always finds the release.
        limit_s = config.redis_timeout_s + 1
        try:
            async with asyncio.timeout(limit_s):
                job = await services.release_queue().add(
                    RELEASE_JOB,
                    {"releaseId": release_id},
                    {"jobId": release_id, "attempts": 3,
                     "backoff": {"type": "exponential", "delay": 1000}},
                )
        except Exception as exc:
            async with db.transaction() as tx:
                await tx.execute(
                    'UPDATE "Release" SET "status" = \'FAILED\', "updatedAt" = now() '
                    'WHERE "id" = %s',
                    (release_id,),
                )
            reason = (f"no answer from Redis within {limit_s:g} s"
                      if isinstance(exc, TimeoutError) else one_line_error(exc))
            raise RuntimeError(
                f"could not enqueue {RELEASE_JOB} for release {release_id}: {reason}"
            ) from exc
        job_id = str(job.id)
        async with db.transaction() as tx:
            await tx.execute(
                'UPDATE "Release" SET "jobId" = %s, "updatedAt" = now() WHERE "id" = %s',
                (job_id, release_id),
            )
        return JSONResponse(
            {"releaseId": release_id, "status": "PENDING", "jobId": job_id}, status_code=202
        )

    @app.get("/api/releases/{release_id}")
    async def get_release(release_id: str, request: Request) -> dict[str, Any]:
        async with db.transaction() as tx:
            user = await authenticate(request, tx)
            release = await tx.one('SELECT * FROM "Release" WHERE "id" = %s', (release_id,))
        if release is None or (
            release["requestedById"] != user["id"] and user["role"] != "ADMIN"
        ):
            raise ApiError(404, "Release not found")
        return public_release(release)

    @app.post("/api/internal/releases/{release_id}/processed")
    async def release_processed(release_id: str, request: Request) -> dict[str, Any]:
        """Called by the worker with a service token: marks the release COMPLETED and its
        video READY, and returns what the notification e-mail needs. Idempotent."""
        token = bearer(request)
        try:
            if token is None:
                raise TokenError("no token")
            claims = verify_service_token(config.api_secret, token)
        except TokenError:
            raise ApiError(401, INVALID_TOKEN) from None
        async with db.transaction() as tx:
            release = await tx.one(
                'UPDATE "Release" SET "status" = \'COMPLETED\', '
                '"processedAt" = COALESCE("processedAt", now()), "updatedAt" = now() '
                'WHERE "id" = %s RETURNING *',
                (release_id,),
            )
            if release is None:
                raise ApiError(404, "Release not found")
            video = await tx.one(
                'UPDATE "Video" SET "status" = \'READY\', "updatedAt" = now() '
                'WHERE "id" = %s RETURNING "id", "title"',
                (release["videoId"],),
            )
            owner = await tx.one(
                'SELECT "id", "email", "name" FROM "User" WHERE "id" = %s',
                (release["requestedById"],),
            )
            await audit(tx, "RELEASE_PROCESSED", user_id=None, ip=client_ip(request),
                        metadata={"releaseId": release_id, "service": claims.service})
        return {
            **public_release(release),
            "video": dict(video) if video else None,
            "user": dict(owner) if owner else None,
        }

    return app


def start_cpu_hog(env: Mapping[str, str]) -> threading.Thread | None:
    """With ``RUNBOOK_CHAOS_CPU_HOG=1`` in ``env``, start a daemon thread that spins in pure
    Python for the life of the process and log one WARN line saying so; otherwise do nothing.
    One thread holding the GIL is a runaway in a single-threaded server (a Node event loop,
    a Python worker): one core busy and the requests slowed behind it, never more than a
    core, so the machine keeps the rest. The supervisor gives the API a CPU share of its own
    (``procs.reserve_cpu_share``); the hog raises it to a runaway's, the largest. Only a
    drill sets it (the supervisor strips ``RUNBOOK_*`` from the services' environment, so it
    arrives only as a stored variable or a restart override); a plain restart with it stored
    starts it again."""
    if env.get(CHAOS_CPU_HOG, "").strip() != "1":
        return None

    def spin() -> None:
        counter = 0
        while True:
            counter = (counter + 1) % 1_000_003

    thread = threading.Thread(target=spin, name="chaos-cpu-hog", daemon=True)
    thread.start()
    # On a platform the runaway burns its container's vCPU; on a machine shared with other
    # sandboxes and test runs, the other services' equal shares left it under the alert
    # threshold for minutes (three detection rounds read 80% or less, the fourth 92%).
    reserve_cpu_share(os.getpid(), RUNAWAY_AUTOGROUP_NICE)
    log.warning("chaos: %s=1, a thread burns a core in this process (game day)", CHAOS_CPU_HOG)
    return thread


def main() -> int:
    """Serve the API on HOST/PORT until SIGTERM/SIGINT. Exit 2 on a configuration error."""
    setup_logging("api")
    try:
        config = ApiConfig.from_env()
        host, port = listen_address(os.environ, 3001)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    log.info("starting LegacyVideo API (%r)", config)
    start_cpu_hog(os.environ)
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=3,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
