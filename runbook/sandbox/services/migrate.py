"""Prisma-compatible migrations and the sandbox's seed data.

``deploy`` does what ``prisma migrate deploy`` does: applies the pending
``migrations/<timestamp>_<name>/migration.sql`` files in order and records each in
``_prisma_migrations`` with Prisma's own columns and semantics (checksum = SHA-256 hex of
the file, a row inserted when a migration starts, ``finished_at`` and
``applied_steps_count = 1`` when it succeeds, ``logs`` holding the error when it fails,
a failed migration blocking further deploys). So the runbook's migration checks read the
sandbox exactly as they read a real Prisma database.

CLI: ``python -m runbook.sandbox.services.migrate [deploy|status|seed|all]`` with
``DATABASE_URL`` (and ``SEED_ADMIN_PASSWORD``, ``SEED_USER_PASSWORD`` for seeding)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import bcrypt
import psycopg
from psycopg.types.json import Jsonb

from runbook.sandbox.services import seeddata
from runbook.sandbox.services.common import (
    ConfigError,
    libpq_url,
    pg_options,
    require,
    setup_logging,
)

log = logging.getLogger("legacyvideo.migrate")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: The advisory lock key Prisma's schema engine takes while migrating.
ADVISORY_LOCK_KEY = 72707369
BCRYPT_COST = 12
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 60_000

#: Prisma's own DDL for its bookkeeping table (PostgreSQL flavour).
PRISMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)
"""


class MigrationError(RuntimeError):
    """A migration failed, or an earlier failed one blocks deploying (Prisma's P3009)."""


@dataclass(frozen=True)
class Migration:
    """One ``<timestamp>_<name>/migration.sql`` directory."""

    name: str
    sql: str
    checksum: str


@dataclass(frozen=True)
class MigrationStatus:
    """Local migrations compared with ``_prisma_migrations``."""

    applied: tuple[str, ...]
    pending: tuple[str, ...]
    failed: tuple[str, ...]
    #: Applied, but the local file no longer has the recorded checksum.
    modified: tuple[str, ...] = ()
    #: Recorded in the database, absent locally.
    unknown: tuple[str, ...] = ()

    @property
    def up_to_date(self) -> bool:
        """Nothing pending and nothing failed."""
        return not self.pending and not self.failed


@dataclass(frozen=True)
class SeedResult:
    """What the database holds for the seed users after :func:`seed` (part of the
    stand-in LegacyVideo, not a runbook record).

    ``admin_token_version`` is the admin's *current* token version: mint ``ADMIN_TOKEN``
    with it (a global revoke-all bumps it)."""

    admin_id: str
    admin_email: str
    admin_token_version: int
    user_ids: Mapping[str, str] = field(default_factory=dict)
    created_users: tuple[str, ...] = ()
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class _Row:
    id: str
    checksum: str
    migration_name: str
    finished_at: datetime | None
    rolled_back_at: datetime | None


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migrations under ``directory`` (default: the bundled ones), oldest first."""
    root = directory or MIGRATIONS_DIR
    found = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        script = path / "migration.sql"
        if not script.is_file():
            continue
        data = script.read_bytes()
        found.append(Migration(path.name, data.decode(), hashlib.sha256(data).hexdigest()))
    return found


def connect(database_url: str, *, application: str = "legacyvideo-migrate") -> psycopg.Connection:
    """An autocommit connection with a 5 s connect timeout and a statement timeout."""
    return psycopg.connect(
        libpq_url(database_url),
        connect_timeout=CONNECT_TIMEOUT_S,
        options=pg_options(database_url, f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"),
        application_name=application,
        autocommit=True,
    )


def _recorded(conn: psycopg.Connection) -> list[_Row]:
    # Unqualified: found through the search_path, where deploy creates it.
    exists = conn.execute("SELECT to_regclass('_prisma_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute(
        'SELECT "id", "checksum", "migration_name", "finished_at", "rolled_back_at" '
        'FROM "_prisma_migrations" ORDER BY "started_at", "migration_name"'
    ).fetchall()
    return [_Row(*row) for row in rows]


def _failed(rows: Sequence[_Row]) -> list[_Row]:
    return [r for r in rows if r.finished_at is None and r.rolled_back_at is None]


def _applied_names(rows: Sequence[_Row]) -> set[str]:
    return {
        r.migration_name for r in rows if r.finished_at is not None and r.rolled_back_at is None
    }


def _apply(conn: psycopg.Connection, migration: Migration) -> None:
    row_id = str(uuid.uuid4())
    conn.execute(
        'INSERT INTO "_prisma_migrations" ("id", "checksum", "migration_name", "started_at", '
        '"applied_steps_count") VALUES (%s, %s, %s, now(), 0)',
        (row_id, migration.checksum, migration.name),
    )
    try:
        with conn.transaction():
            # No parameters: psycopg sends the script with the simple query protocol,
            # so a multi-statement migration runs as Prisma runs it.
            conn.execute(migration.sql.encode())
            conn.execute(
                'UPDATE "_prisma_migrations" SET "finished_at" = clock_timestamp(), '
                '"applied_steps_count" = 1 WHERE "id" = %s',
                (row_id,),
            )
    except psycopg.Error as exc:
        detail = str(exc).strip() or type(exc).__name__
        conn.execute(
            'UPDATE "_prisma_migrations" SET "logs" = %s WHERE "id" = %s', (detail, row_id)
        )
        raise MigrationError(f"migration {migration.name} failed: {detail}") from None


def deploy(database_url: str, *, migrations_dir: Path | None = None) -> list[str]:
    """Apply every pending migration, each in its own transaction, and return the names
    applied by this call (empty when already up to date). Raises MigrationError when a
    migration fails or a failed one is recorded (resolve it as with Prisma: mark it
    rolled back, i.e. set ``rolled_back_at``)."""
    migrations = load_migrations(migrations_dir)
    applied: list[str] = []
    with connect(database_url) as conn:
        # Serialise concurrent deploys as Prisma does, then create its table.
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            conn.execute(PRISMA_MIGRATIONS_DDL)
            rows = _recorded(conn)
            failed = _failed(rows)
            if failed:
                names = ", ".join(f"`{r.migration_name}`" for r in failed)
                raise MigrationError(
                    f"migrate found failed migrations in the target database, new "
                    f"migrations will not be applied: {names}"
                )
            done = _applied_names(rows)
            for migration in migrations:
                if migration.name in done:
                    continue
                started = time.monotonic()
                _apply(conn, migration)
                log.info(
                    "applied migration %s in %.0f ms",
                    migration.name, (time.monotonic() - started) * 1000,
                )
                applied.append(migration.name)
        finally:
            if not conn.closed and not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return applied


def status(database_url: str, *, migrations_dir: Path | None = None) -> MigrationStatus:
    """Compare the local migrations with ``_prisma_migrations`` (read-only)."""
    local = load_migrations(migrations_dir)
    with connect(database_url) as conn:
        rows = _recorded(conn)
    done = _applied_names(rows)
    checksums = {r.migration_name: r.checksum for r in rows if r.migration_name in done}
    local_names = {m.name for m in local}
    return MigrationStatus(
        applied=tuple(m.name for m in local if m.name in done),
        pending=tuple(m.name for m in local if m.name not in done),
        failed=tuple(r.migration_name for r in _failed(rows)),
        modified=tuple(m.name for m in local if m.name in done and checksums[m.name] != m.checksum),
        unknown=tuple(sorted(done - local_names)),
    )


def hash_passwords(passwords: Sequence[str], cost: int = BCRYPT_COST) -> list[str]:
    """bcrypt hashes of ``passwords``, computed in parallel threads (bcrypt releases the
    GIL; one cost-12 hash takes about a quarter of a second)."""
    if not passwords:
        return []

    def one(password: str) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()

    with ThreadPoolExecutor(max_workers=len(passwords)) as pool:
        return list(pool.map(one, passwords))


def seed(database_url: str, admin_password: str, user_password: str) -> SeedResult:
    """Insert the seed users (an ADMIN and two USERs), videos, releases and audit rows
    that are missing; never overwrites an existing row. Run after :func:`deploy`."""
    started = time.monotonic()
    emails = [u.email for u in seeddata.USERS]
    with connect(database_url, application="legacyvideo-seed") as conn:
        existing = {
            row[0]
            for row in conn.execute('SELECT "email" FROM "User" WHERE "email" = ANY(%s)', (emails,))
        }
        missing = [u for u in seeddata.USERS if u.email not in existing]
        hashes = hash_passwords(
            [admin_password if u.role == "ADMIN" else user_password for u in missing]
        )
        created: list[str] = []
        with conn.transaction():
            for user, password_hash in zip(missing, hashes, strict=True):
                cur = conn.execute(
                    'INSERT INTO "User" ("id", "email", "name", "passwordHash", "role", '
                    '"updatedAt") VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT DO NOTHING',
                    (user.id, user.email, user.name, password_hash, user.role),
                )
                if cur.rowcount:
                    created.append(user.email)
            ids: dict[str, str] = dict(
                conn.execute(
                    'SELECT "email", "id" FROM "User" WHERE "email" = ANY(%s)', (emails,)
                ).fetchall()
            )
            for video in seeddata.VIDEOS:
                conn.execute(
                    'INSERT INTO "Video" ("id", "ownerId", "title", "s3Key", "contentType", '
                    '"status", "updatedAt") VALUES (%s, %s, %s, %s, %s, %s, now()) '
                    "ON CONFLICT DO NOTHING",
                    (video.id, ids[video.owner_email], video.title, video.s3_key,
                     video.content_type, video.status),
                )
            for release in seeddata.RELEASES:
                conn.execute(
                    'INSERT INTO "Release" ("id", "videoId", "requestedById", "status", '
                    '"processedAt", "updatedAt") VALUES (%s, %s, %s, %s, '
                    "CASE WHEN %s = 'COMPLETED' THEN now() END, now()) ON CONFLICT DO NOTHING",
                    (release.id, release.video_id, ids[release.requested_by_email],
                     release.status, release.status),
                )
            for entry in seeddata.AUDIT:
                conn.execute(
                    'INSERT INTO "AuditLog" ("id", "userId", "action", "ip", "metadata") '
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (entry.id, ids.get(entry.user_email or ""), entry.action, entry.ip,
                     Jsonb(entry.metadata)),
                )
        admin = conn.execute(
            'SELECT "id", "tokenVersion" FROM "User" WHERE "email" = %s', (seeddata.ADMIN_EMAIL,)
        ).fetchone()
    if admin is None:  # pragma: no cover - the insert above guarantees it
        raise RuntimeError("the seed admin is missing after seeding")
    return SeedResult(
        admin_id=admin[0],
        admin_email=seeddata.ADMIN_EMAIL,
        admin_token_version=int(admin[1]),
        user_ids=ids,
        created_users=tuple(created),
        elapsed_s=round(time.monotonic() - started, 3),
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """CLI: ``deploy``, ``status`` (JSON on stdout), ``seed`` or ``all`` (the default:
    deploy, then seed when the seed passwords are set). Exit 1 on a migration error,
    2 on a configuration error."""
    env = os.environ if env is None else env
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else "all"
    setup_logging("migrate", env)
    try:
        database_url = require(env, "DATABASE_URL")
        if command == "status":
            print(json.dumps(asdict(status(database_url)), indent=2))
            return 0
        if command not in {"deploy", "seed", "all"}:
            log.error("unknown command %r (deploy, status, seed, all)", command)
            return 2
        if command in {"deploy", "all"}:
            names = deploy(database_url)
            log.info("migrations up to date (%d applied now)", len(names))
        if command == "seed" or (command == "all" and env.get("SEED_ADMIN_PASSWORD")):
            result = seed(
                database_url,
                require(env, "SEED_ADMIN_PASSWORD"),
                require(env, "SEED_USER_PASSWORD"),
            )
            log.info(
                "seed done in %.2f s (users created: %s)",
                result.elapsed_s, ", ".join(result.created_users) or "none",
            )
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    except (MigrationError, psycopg.Error) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
