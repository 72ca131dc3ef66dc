"""Common Operations > Database Operations, the read-only part: the state of Prisma's
migrations and the preconditions of the runbook's "Rollback Migration (DANGEROUS)".

Everything here reads ``_prisma_migrations`` exactly as Prisma means it:

* applied: ``finished_at`` set, ``rolled_back_at`` null;
* failed: ``finished_at`` null and ``rolled_back_at`` null: started, never finished. Prisma's
  ``migrate deploy`` refuses to apply anything while one exists (P3009);
* rolled back: ``rolled_back_at`` set (``prisma migrate resolve --rolled-back``); Prisma
  ignores the row, so the migration is pending again;
* ``checksum``: SHA-256 hex of ``migration.sql`` when it was applied. Prisma also accepts the
  file with CRLF/LF line endings swapped, and old checksums that were not zero-padded.

Which migrations are *expected* comes from a Prisma migrations directory
(``<timestamp>_<name>/migration.sql``): the sandbox's own (``runbook/sandbox/services/
migrations``), or for any other target the directory named by ``RUNBOOK_MIGRATIONS_DIR``
(a checkout of LegacyVideo's ``prisma/migrations``). Without one, only failed and rolled-back
migrations are judged and the result records that pending ones could not be.

``prisma migrate resolve --rolled-back <name>`` (the runbook's "Rollback Migration") only
accepts a FAILED migration (Prisma: "This command can only be used with a failed
migration"; an applied one gives P3012, an unknown one P3011). It runs no SQL and undoes
nothing: it only stamps ``rolled_back_at``. ``rollback_preconditions`` says so in its result.

Also here, shared with ``runbook.actions.backup``: ``parse_dsn`` (a DATABASE_URL split for
libpq and its tools, password apart, Prisma-only parameters removed) and
``open_connection`` (connect and statement timeouts always set).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from runbook.config import Environment, Target
from runbook.defects import finding
from runbook.errors import ConfigError
from runbook.pg import (
    DEFAULT_SCHEMA,
    open_connection,
    parse_dsn,
)
from runbook.probes import Verdict, run_probe
from runbook.redact import Redactor
from runbook.results import ProbeResult, Record, Result
from runbook.sandbox.services.migrate import MIGRATIONS_DIR as SANDBOX_MIGRATIONS_DIR
from runbook.timeouts import Timeouts

#: The variable naming a Prisma migrations directory for targets other than the sandbox.
MIGRATIONS_DIR_VARIABLE = "RUNBOOK_MIGRATIONS_DIR"
#: Prisma's bookkeeping table.
MIGRATIONS_TABLE = "_prisma_migrations"
#: What the runbook gets wrong in "Rollback Migration (DANGEROUS)", for results and reports
#: (the documented finding of ``runbook.defects``).
RUNBOOK_ROLLBACK_DEFECT = ("the runbook's 'Rollback Migration' is wrong: "
                           + finding("resolve-rolled-back").true)
#: What Prisma's command does to the one state it accepts.
RESOLVE_ROLLED_BACK_DOES = (
    "marks the failed migration's rows rolled back (rolled_back_at = now()); no SQL of the"
    " migration is undone, so whatever it changed before failing is still there; the next"
    " `migrate deploy` applies the migration again"
)
#: Why the backup precondition is recorded, not judged.
BACKUP_PRECONDITION = (
    "not judged here (out of scope): confirm a backup newer than the migration exists"
    " (Railway dashboard > Backups, or a verified backup round trip) before resolving"
)


# -- migrations on disk -------------------------------------------------------------------


def expected_migrations(directory: Path) -> list[str]:
    """The migration names of a Prisma migrations directory (``<timestamp>_<name>/``
    holding ``migration.sql``), in the order Prisma applies them.

    Raises ``ConfigError`` when ``directory`` is not a directory.
    """
    return list(migration_scripts(directory))


def migration_scripts(directory: Path) -> dict[str, bytes]:
    """Each migration's ``migration.sql`` bytes by name, in Prisma's order (by name).

    Raises ``ConfigError`` when ``directory`` is not a directory.
    """
    if not directory.is_dir():
        raise ConfigError(
            f"{MIGRATIONS_DIR_VARIABLE}: {directory} is not a directory; point it at"
            f" LegacyVideo's prisma/migrations"
        )
    scripts: dict[str, bytes] = {}
    for path in sorted(p for p in directory.iterdir() if p.is_dir()):
        script = path / "migration.sql"
        if script.is_file():
            scripts[path.name] = script.read_bytes()
    return scripts


def migrations_dir_for(target: Target, environ: Mapping[str, str] | None = None) -> Path | None:
    """Where the target's expected migrations live: ``RUNBOOK_MIGRATIONS_DIR`` when set,
    the bundled directory for the sandbox, else ``None`` (pending cannot be judged)."""
    env = os.environ if environ is None else environ
    configured = env.get(MIGRATIONS_DIR_VARIABLE, "").strip()
    if configured:
        return Path(configured).expanduser()
    if target.environment is Environment.SANDBOX:
        return SANDBOX_MIGRATIONS_DIR
    return None


def prisma_checksum(script: bytes) -> str:
    """The checksum Prisma records for a ``migration.sql``: SHA-256, lower-case hex."""
    return hashlib.sha256(script).hexdigest()


def checksum_matches(script: bytes, recorded: str) -> bool:
    """Whether ``script`` matches a recorded checksum as Prisma decides it: the file as is,
    or with CRLF made LF, or LF made CRLF; non-zero-padded hex for old rows."""
    variants = (script, script.replace(b"\r\n", b"\n"), script.replace(b"\n", b"\r\n"))
    for variant in variants:
        digest = hashlib.sha256(variant).digest()
        rendered = digest.hex() if len(recorded) in (0, 64) else "".join(
            f"{byte:x}" for byte in digest
        )
        if rendered == recorded:
            return True
    return False


# -- migrations in the database -------------------------------------------------------------


@dataclass(frozen=True)
class MigrationRow(Record):
    """One row of ``_prisma_migrations``. ``log_text`` (Prisma's log of a failed migration,
    which may quote data) is not evidence; its first line is (``logs``), redacted through
    ``redacted``."""

    id: str
    migration_name: str
    checksum: str
    started_at: datetime | None
    finished_at: datetime | None
    rolled_back_at: datetime | None
    applied_steps_count: int
    log_text: str | None = field(repr=False)
    evidence_properties = ("state", "logs")

    @property
    def state(self) -> str:
        """``applied``, ``failed`` or ``rolled back``, as Prisma reads the row."""
        if self.rolled_back_at is not None:
            return "rolled back"
        return "applied" if self.finished_at is not None else "failed"

    @property
    def logs(self) -> str:
        """The first line of ``log_text`` (at most 300 characters), "" when none."""
        lines = (self.log_text or "").strip().splitlines()
        return lines[0][:300] if lines else ""

    def redacted(self, redact: Redactor) -> MigrationRow:
        """This row with ``log_text`` redacted."""
        return replace(self, log_text=None if self.log_text is None else redact(self.log_text))


def read_migration_rows(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA
                        ) -> list[MigrationRow] | None:
    """Every row of ``<schema>._prisma_migrations`` oldest first, or ``None`` when the
    table does not exist (Prisma Migrate never ran there)."""
    table = sql.Identifier(schema, MIGRATIONS_TABLE)
    found = conn.execute(
        "select to_regclass(%s) is not null",
        (f"{sql.Identifier(schema).as_string(conn)}.{MIGRATIONS_TABLE}",),
    ).fetchone()
    if not found or not found[0]:
        return None
    rows = conn.execute(
        sql.SQL(
            "select id, migration_name, checksum, started_at, finished_at, rolled_back_at,"
            " applied_steps_count, logs from {} order by started_at, migration_name"
        ).format(table)
    ).fetchall()
    return [MigrationRow(str(r[0]), str(r[1]), str(r[2]), r[3], r[4], r[5], int(r[6]), r[7])
            for r in rows]


@dataclass(frozen=True)
class MigrationAssessment(Result):
    """Recorded migrations judged against the expected ones: ok when all expected are
    applied, none failed and (``strict_checksums``) none modified after it was applied.

    ``pending`` and ``unknown`` are ``None`` when no expected list was available.
    """

    applied: tuple[str, ...]
    failed: tuple[MigrationRow, ...]
    rolled_back: tuple[str, ...]
    pending: tuple[str, ...] | None
    unknown: tuple[str, ...] | None
    #: Applied, but the local ``migration.sql`` no longer has the recorded checksum.
    modified: tuple[str, ...]
    #: Applied and expected, but no local script to compare the checksum with.
    checksum_unchecked: tuple[str, ...]
    #: Whether a migration modified after it was applied is a problem.
    strict_checksums: bool = True

    @property
    def failed_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.migration_name for r in self.failed))

    @property
    def problems(self) -> tuple[str, ...]:
        found: list[str] = []
        if self.failed:
            found.append(
                f"failed migration {_shown(self.failed_names)} (started, never finished):"
                " it blocks `prisma migrate deploy` (P3009) until it is resolved"
            )
        if self.pending:
            found.append(f"pending (not applied): {_shown(self.pending)}")
        if self.strict_checksums and self.modified:
            found.append(
                f"modified after it was applied (checksum differs from migration.sql):"
                f" {_shown(self.modified)}"
            )
        return tuple(found)


def assess_migrations(
    rows: Sequence[MigrationRow],
    expected: Sequence[str] | None,
    scripts: Mapping[str, bytes],
    *,
    strict_checksums: bool = True,
) -> MigrationAssessment:
    """Judge ``rows`` as Prisma does: a name is applied when any row of it is; failed rows
    are listed whatever else exists; rolled-back names that are not applied again are
    pending when expected. Checksums are compared for applied names with a local script
    (a modified one is a problem only when ``strict_checksums``)."""
    applied_rows: dict[str, MigrationRow] = {}
    for row in rows:
        if row.state == "applied":
            applied_rows.setdefault(row.migration_name, row)
    failed = tuple(r for r in rows if r.state == "failed")
    rolled_back = tuple(dict.fromkeys(
        r.migration_name for r in rows
        if r.state == "rolled back" and r.migration_name not in applied_rows
    ))
    applied = tuple(applied_rows)
    pending: tuple[str, ...] | None = None
    unknown: tuple[str, ...] | None = None
    if expected is not None:
        wanted = set(expected)
        pending = tuple(n for n in expected if n not in applied_rows)
        unknown = tuple(n for n in applied if n not in wanted)
    modified = tuple(
        name for name, row in applied_rows.items()
        if name in scripts and not checksum_matches(scripts[name], row.checksum)
    )
    unchecked = tuple(
        name for name in applied
        if name not in scripts and (expected is None or name in set(expected))
    )
    return MigrationAssessment(applied, failed, rolled_back, pending, unknown, modified,
                               unchecked, strict_checksums)


def _shown(names: Sequence[str], limit: int = 5) -> str:
    head = ", ".join(names[:limit])
    return head + (f" and {len(names) - limit} more" if len(names) > limit else "")


def migration_status(
    target: Target,
    timeouts: Timeouts,
    expected: Sequence[str] | None = None,
    *,
    migrations_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    strict_checksums: bool = True,
) -> ProbeResult:
    """Read ``_prisma_migrations`` (read-only) and judge it against the expected migrations.

    ``expected`` defaults to the names in ``migrations_dir`` (default: ``RUNBOOK_MIGRATIONS_DIR``,
    or the bundled directory on the sandbox); the directory's scripts also give the
    checksums. ok when every expected migration is applied, none failed and (with
    ``strict_checksums``) none modified after it was applied. Records applied, failed,
    rolled back, pending, unknown and modified names. Never raises for what it finds;
    raises ``ConfigError`` when the target has no DATABASE_URL or the directory is missing.
    """
    dsn = target.require("DATABASE_URL")
    endpoint = parse_dsn(dsn)
    directory = migrations_dir or migrations_dir_for(target, environ)
    scripts = migration_scripts(directory) if directory is not None else {}
    wanted: list[str] | None = list(expected) if expected is not None else (
        list(scripts) if directory is not None else None
    )
    redact = Redactor(target.secret_values())
    expectation = (
        f"every expected migration applied ({len(wanted)}), none failed"
        + (", none modified after it was applied" if strict_checksums else "")
        if wanted is not None else "no failed migration (pending not judged: no migrations"
        f" directory; set {MIGRATIONS_DIR_VARIABLE})"
    )

    def body() -> Verdict:
        with open_connection(endpoint, connect_timeout_s=timeouts.connect,
                             statement_timeout_s=timeouts.read) as conn:
            rows = read_migration_rows(conn, endpoint.schema)
        observed: dict[str, Any] = {
            "schema": endpoint.schema,
            "migrations_dir": str(directory) if directory is not None else None,
            "pending_judged": wanted is not None,
        }
        if rows is None:
            observed["table"] = "missing"
            return Verdict(
                False, expectation,
                f"no {endpoint.schema}.{MIGRATIONS_TABLE} table: Prisma Migrate never ran on"
                " this database, or DATABASE_URL names another database or schema",
                observed, advice="database-schema",
            )
        found = assess_migrations(rows, wanted, scripts, strict_checksums=strict_checksums)
        observed.update({
            "rows": len(rows),
            "expected": wanted,
            "applied": list(found.applied),
            "failed": [r.redacted(redact).evidence() for r in found.failed],
            "rolled_back": list(found.rolled_back),
            "pending": None if found.pending is None else list(found.pending),
            "unknown": None if found.unknown is None else list(found.unknown),
            "modified": list(found.modified),
            "checksums_compared": len(found.applied) - len(found.checksum_unchecked),
            "checksum_unchecked": list(found.checksum_unchecked),
        })
        if wanted is None:
            observed["note"] = (
                f"pending migrations not judged: no migrations directory for this target"
                f" (set {MIGRATIONS_DIR_VARIABLE} to LegacyVideo's prisma/migrations)"
            )
        if found.problems:
            advice = "database-migrations" if found.failed or found.modified else (
                "database-schema")
            return Verdict(False, expectation, "; ".join(found.problems), observed,
                           advice=advice)
        return Verdict(True, expectation, observed=observed)

    return run_probe("database", "migration status", target, timeouts, body,
                     expected=expectation)


# -- Rollback Migration (DANGEROUS) -------------------------------------------------------------


def migration_state(rows: Sequence[MigrationRow], name: str) -> str:
    """The state of migration ``name`` as ``prisma migrate resolve`` decides it:
    ``failed`` when any of its rows is, else ``applied``, else ``rolled back``; ``absent``
    when it has no row."""
    states = {r.state for r in rows if r.migration_name == name}
    for state in ("failed", "applied", "rolled back"):
        if state in states:
            return state
    return "absent"


#: The error Prisma gives ``resolve --rolled-back`` in each state it refuses.
PRISMA_REFUSAL: Mapping[str, str] = {
    "absent": "P3011: cannot be rolled back because it was never applied to the database",
    "applied": "P3012: cannot be rolled back because it is not in a failed state",
    "rolled back": "P3012: cannot be rolled back because it is not in a failed state"
                   " (it is already rolled back)",
}


def rollback_preconditions(
    target: Target,
    timeouts: Timeouts,
    migration_name: str,
    *,
    migrations_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ProbeResult:
    """Check, read-only, what ``prisma migrate resolve --rolled-back <migration_name>``
    needs: the migration is recorded in ``_prisma_migrations`` and FAILED, the only state
    Prisma accepts. Records its rows and state, what the command would do (or the Prisma
    error it would give), whether a local script exists, and that the "backup newer than
    the migration" precondition is out of scope. ok only for a failed migration. Raises
    ``ConfigError`` when the target has no DATABASE_URL.
    """
    dsn = target.require("DATABASE_URL")
    endpoint = parse_dsn(dsn)
    directory = migrations_dir or migrations_dir_for(target, environ)
    redact = Redactor(target.secret_values())
    expectation = (
        f"migration {migration_name} recorded in {MIGRATIONS_TABLE} and failed (the only"
        " state `prisma migrate resolve --rolled-back` accepts)"
    )

    def body() -> Verdict:
        with open_connection(endpoint, connect_timeout_s=timeouts.connect,
                             statement_timeout_s=timeouts.read) as conn:
            rows = read_migration_rows(conn, endpoint.schema)
        local: bool | None = None
        if directory is not None and directory.is_dir():
            local = (directory / migration_name / "migration.sql").is_file()
        mine = [r for r in rows or [] if r.migration_name == migration_name]
        state = migration_state(mine, migration_name) if rows is not None else "absent"
        accepted = state == "failed"
        observed: dict[str, Any] = {
            "migration": migration_name,
            "table": "present" if rows is not None else "missing",
            "exists": bool(mine),
            "state": state,
            "rows": [r.redacted(redact).evidence() for r in mine],
            "resolve_rolled_back_accepts": accepted,
            "prisma_error": None if accepted else PRISMA_REFUSAL[state],
            "resolve_rolled_back_does": RESOLVE_ROLLED_BACK_DOES,
            "in_migrations_dir": local,
            "backup_newer_than_migration": BACKUP_PRECONDITION,
            "read_only": True,
            "runbook_defect": RUNBOOK_ROLLBACK_DEFECT,
        }
        if accepted:
            failed = next(r for r in mine if r.state == "failed")
            observed["partial_changes"] = (
                f"{failed.applied_steps_count} step(s) recorded as applied before it failed;"
                " check what it changed and revert that by hand (or with a down migration"
                " through `prisma db execute`) before resolving and redeploying"
            )
            return Verdict(True, expectation, observed=observed)
        if state == "absent":
            seen = (f"migration {migration_name} is not recorded in {MIGRATIONS_TABLE}"
                    if rows is not None else f"there is no {MIGRATIONS_TABLE} table")
            problem = (f"{seen}: `prisma migrate resolve --rolled-back` would fail with"
                       f" {PRISMA_REFUSAL['absent']}")
        else:
            problem = (
                f"migration {migration_name} is {state}, not failed: `prisma migrate resolve"
                f" --rolled-back` would fail with {PRISMA_REFUSAL[state]}; it never undoes"
                " an applied migration (revert with a new migration after a verified backup)"
            )
        return Verdict(False, expectation, problem, observed, advice="database-migrations")

    return run_probe("database", "rollback preconditions", target, timeouts, body,
                     expected=expectation)


__all__ = [
    "BACKUP_PRECONDITION",
    "MIGRATIONS_DIR_VARIABLE",
    "RUNBOOK_ROLLBACK_DEFECT",
    "MigrationAssessment",
    "MigrationRow",
    "assess_migrations",
    "checksum_matches",
    "expected_migrations",
    "migration_scripts",
    "migration_state",
    "migration_status",
    "migrations_dir_for",
    "prisma_checksum",
    "read_migration_rows",
    "rollback_preconditions",
]
