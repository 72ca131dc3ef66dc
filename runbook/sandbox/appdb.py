"""The application database: role and database, Prisma-style migrations, seed data, and the
sandbox's ``ADMIN_TOKEN``.

Migrations and seeding are the services' code (``runbook.sandbox.services.migrate``:
``deploy(database_url) -> list[str]`` and ``seed(database_url, admin_password,
user_password)``); the admin token is minted with ``services.tokens.issue_user_token`` for
the seeded admin, with the user's current token version.
"""

from __future__ import annotations

from pathlib import Path

from runbook.errors import SandboxError
from runbook.sandbox.credentials import Secrets
from runbook.sandbox.postgres import APP_DATABASE, APP_ROLE, bootstrap, dsn

#: ADMIN_TOKEN lifetime: a year (the sandbox re-mints it at every start).
ADMIN_TOKEN_TTL_S = 365 * 24 * 3600


def _migrate_module():  # type: ignore[no-untyped-def]
    try:
        # the services' own modules (and their dependencies) load only when used
        from runbook.sandbox.services import migrate
    except ImportError as exc:
        raise SandboxError(
            f"cannot import runbook.sandbox.services.migrate ({exc}); the sandbox services"
            " are incomplete in this checkout"
        ) from None
    return migrate


def migrate_database(port: int, secrets: Secrets) -> tuple[tuple[str, ...], str]:
    """Create the role and database when missing, then apply pending migrations.

    Returns the migrations applied now and the cluster's system identifier (new with every
    initdb). Raises ``psycopg.Error`` or ``SandboxError``.
    """
    cluster = bootstrap(port, secrets.postgres_password, secrets.db_password)
    url = dsn(port, APP_ROLE, secrets.db_password, APP_DATABASE)
    applied = _migrate_module().deploy(url)
    return tuple(str(name) for name in applied or ()), str(cluster)


def seed_if_new(port: int, secrets: Secrets, marker: Path, cluster: str) -> bool:
    """Seed the database once per cluster (``marker`` holds the seeded cluster's id).

    Returns whether it seeded now. Raises ``psycopg.Error`` or ``SandboxError``.
    """
    try:
        done = marker.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        done = ""
    if done == cluster:
        return False
    url = dsn(port, APP_ROLE, secrets.db_password, APP_DATABASE)
    _migrate_module().seed(url, secrets.admin_password, secrets.user_password)
    marker.write_text(cluster + "\n", encoding="ascii")
    return True


def mint_admin_token(port: int, secrets: Secrets) -> str:
    """A long-lived token for the seeded admin, signed with ``API_SECRET``.

    Raises ``SandboxError`` when the admin is missing, ``psycopg.Error`` on database errors.
    """
    import psycopg

    # the services' own modules (and their dependencies) load only when used
    from runbook.sandbox.services import tokens

    # the services' own modules (and their dependencies) load only when used
    from runbook.sandbox.services.seeddata import ADMIN_EMAIL

    with psycopg.connect(
        host="127.0.0.1", port=port, user=APP_ROLE, password=secrets.db_password,
        dbname=APP_DATABASE, connect_timeout=5, options="-c statement_timeout=10000",
    ) as conn:
        row = conn.execute(
            'SELECT "id", "role"::text, "tokenVersion" FROM "User" WHERE "email" = %s',
            (ADMIN_EMAIL,),
        ).fetchone()
    if row is None:
        raise SandboxError(
            f"the seeded admin {ADMIN_EMAIL} is missing from the sandbox database; run"
            " `runbook sandbox down`, delete the state directory and `runbook sandbox up`"
        )
    user_id, role, version = row
    return tokens.issue_user_token(
        secrets.api_secret, str(user_id), str(role), int(version), ttl_s=ADMIN_TOKEN_TTL_S
    )
