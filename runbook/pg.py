"""PostgreSQL, at the bottom of the house: how the runbook connects (a DATABASE_URL split
for libpq and its tools, sessions with bounded connect and statement times, read-only unless
asked) and how it lists a database's tables for checksums. Everything that talks to a
database builds on this: the sandbox's backups, the probes, the actions, the drills.

Passwords never reach a command line: ``PgEndpoint`` keeps the password apart from the
parameters, and the tools get it in ``PGPASSWORD`` (``tool_env``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from runbook.errors import ConfigError
from runbook.redact import Redactor
from runbook.wait import wait_until

#: Prisma's schema when the URL names none.
DEFAULT_SCHEMA = "public"
#: The ``application_name`` of the runbook's own sessions.
APPLICATION_NAME = "legacyvideo-runbook"

#: Query parameters Prisma reads from a DATABASE_URL that libpq rejects.
PRISMA_ONLY_PARAMETERS = frozenset(
    {"schema", "connection_limit", "pool_timeout", "pgbouncer", "statement_cache_size",
     "socket_timeout", "sslaccept", "sslidentity"}
)

#: Above this size on disk a table's text checksum hashes each row first (``text-md5``).
ROWS_METHOD_LIMIT_BYTES = 128 * 1024 * 1024
#: Output settings of every checksum session, so both sides render rows alike.
COMPARE_SETTINGS: tuple[str, ...] = (
    "TimeZone=UTC", "DateStyle=ISO,MDY", "IntervalStyle=postgres", "extra_float_digits=1",
    "bytea_output=hex",
)


# -- connections ------------------------------------------------------------------------


@dataclass(frozen=True)
class PgEndpoint:
    """A PostgreSQL DSN split for libpq and its command-line tools.

    ``params`` never holds the password; ``password`` is kept apart so that a command line
    can carry ``params`` and the password travel in the environment. ``repr`` hides it.
    """

    params: Mapping[str, str]
    password: str | None = field(default=None, repr=False)
    #: The Prisma schema (``?schema=``), ``public`` when the URL names none.
    schema: str = DEFAULT_SCHEMA

    @property
    def dbname(self) -> str:
        """The database named, else what libpq would pick: ``PGDATABASE``, else the user."""
        return (self.params.get("dbname") or os.environ.get("PGDATABASE")
                or self.params.get("user") or os.environ.get("PGUSER")
                or os.environ.get("USER", ""))

    def describe(self) -> str:
        """``user@host:port/db``: no password, safe to print."""
        host = self.params.get("host") or self.params.get("hostaddr") or "localhost"
        port = self.params.get("port") or "5432"
        user = self.params.get("user", "")
        return f"{user}@{host}:{port}/{self.dbname}" if user else f"{host}:{port}/{self.dbname}"

    def with_dbname(self, dbname: str) -> PgEndpoint:
        """The same server and credentials, another database."""
        return replace(self, params={**self.params, "dbname": dbname})

    def conninfo(self, *, options: Iterable[str] = (), **extra: str) -> str:
        """A ``key=value`` conninfo WITHOUT the password, with ``options`` appended to the
        DSN's own ``options`` and ``extra`` parameters where the DSN sets none."""
        params = {**extra, **self.params}
        merged = " ".join(part for part in (self.params.get("options", ""), *options) if part)
        if merged:
            params["options"] = merged
        return make_conninfo("", **params)

    def dsn(self, *, options: Iterable[str] = (), **extra: str) -> str:
        """``conninfo`` plus the password: for psycopg only, never for a command line."""
        info = self.conninfo(options=options, **extra)
        return make_conninfo(info, password=self.password) if self.password else info

    def tool_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for pg_dump, pg_restore, psql: the caller's minus every ``PG*``
        variable (so none points elsewhere), plus ``PGPASSWORD`` when there is one."""
        env = {k: v for k, v in (os.environ if base is None else base).items()
               if not k.startswith("PG")}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


def parse_dsn(dsn: str) -> PgEndpoint:
    """Split a DATABASE_URL (``postgresql://`` URL or ``key=value`` conninfo).

    Prisma-only query parameters (``?schema=``, ``connection_limit`` ...) are dropped, the
    schema kept. Raises ``ConfigError`` (naming no secret) for a DSN libpq cannot read.
    """
    schema = DEFAULT_SCHEMA
    text = dsn.strip()
    if text.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(text)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        schema = next((v for k, v in pairs if k == "schema" and v), DEFAULT_SCHEMA)
        kept = [(k, v) for k, v in pairs if k not in PRISMA_ONLY_PARAMETERS]
        text = urlunsplit(parts._replace(query=urlencode(kept)))
    try:
        raw = conninfo_to_dict(text)
    except psycopg.Error as exc:
        message = Redactor(_password_guess(dsn))(str(exc).strip().splitlines()[0])
        raise ConfigError(f"DATABASE_URL: libpq cannot read it ({message})") from None
    params = {k: str(v) for k, v in raw.items() if v is not None and k != "password"}
    password = raw.get("password")
    return PgEndpoint(params, str(password) if password else None, schema)


def _password_guess(dsn: str) -> list[str]:
    try:
        password = urlsplit(dsn).password
    except ValueError:
        return []
    return [password] if password else []


def session_options(statement_timeout_s: float, *, read_only: bool,
                    settings: Iterable[str] = ()) -> list[str]:
    """``-c name=value`` options every runbook session gets: a statement timeout, and
    read-only transactions unless it must write."""
    options = [f"-c statement_timeout={max(1, int(statement_timeout_s * 1000))}"]
    if read_only:
        options.append("-c default_transaction_read_only=on")
    options.extend(f"-c {setting}" for setting in settings)
    return options


def open_connection(
    endpoint: PgEndpoint,
    *,
    connect_timeout_s: float,
    statement_timeout_s: float,
    read_only: bool = True,
    autocommit: bool = True,
    settings: Iterable[str] = (),
    application: str = APPLICATION_NAME,
) -> psycopg.Connection[Any]:
    """A connection with a bounded connect time and statement time; read-only unless asked.

    Raises ``psycopg.Error`` as psycopg does (callers turn it into a result).
    """
    return psycopg.connect(
        endpoint.dsn(
            options=session_options(statement_timeout_s, read_only=read_only, settings=settings),
            application_name=application,
        ),
        connect_timeout=max(1, math.ceil(connect_timeout_s)),
        autocommit=autocommit,
    )


# -- tables -------------------------------------------------------------------------------


#: Types whose hash is that of an OID, which differs between databases (an enum's value is
#: a pg_enum row): such columns are hashed as text. Domains, composites and ranges too,
#: since they may wrap one.
_OID_TYPES = frozenset({
    "oid", "regclass", "regproc", "regprocedure", "regoper", "regoperator", "regtype",
    "regconfig", "regdictionary", "regnamespace", "regrole", "regcollation", "oidvector",
    "xid", "xid8", "cid", "tid",
})
_WRAPPING_TYPTYPES = frozenset("edcrm")  # enum, domain, composite, range, multirange


def hash_as_text(typtype: str, typname: str, elem_typtype: str = "", elem_typname: str = ""
                 ) -> bool:
    """Whether a column of this type (or array of it) must be cast to text before its
    binary hash, because its hash depends on OIDs that a restore renumbers."""
    return (typtype in _WRAPPING_TYPTYPES or typname in _OID_TYPES
            or elem_typtype in _WRAPPING_TYPTYPES or elem_typname in _OID_TYPES)


@dataclass(frozen=True)
class TableInfo:
    """A table of the source, from the catalog: its primary key (key order, with whether each
    column is collatable), its columns (with whether each is hashed as text), its size, its
    estimated rows, and how it is checksummed."""

    schema: str
    name: str
    key: tuple[str, ...] = ()
    collatable: tuple[bool, ...] = ()
    size_bytes: int = 0
    rows_estimate: int = 0
    method: str = "text"
    columns: tuple[str, ...] = ()
    as_text: tuple[bool, ...] = ()

    @property
    def qualified(self) -> str:
        """``schema.name`` (display and keys only, never SQL)."""
        return f"{self.schema}.{self.name}"


_TABLES_QUERY = """
select c.oid, n.nspname, c.relname, pg_table_size(c.oid), c.reltuples::bigint,
       coalesce(pk.cols, '{}'), coalesce(pk.collatable, '{}')
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
left join lateral (
    select array_agg(a.attname::text order by k.ord) as cols,
           array_agg(a.attcollation <> 0 order by k.ord) as collatable
    from pg_index i
    cross join unnest(i.indkey) with ordinality as k(attnum, ord)
    join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
    where i.indrelid = c.oid and i.indisprimary
) pk on true
where c.relkind in ('r', 'p') and not c.relispartition and c.relpersistence <> 't'
  and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
  and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass
                  and d.objid = c.oid and d.deptype = 'e')
order by pg_table_size(c.oid) desc, n.nspname, c.relname
"""

_COLUMNS_QUERY = """
select a.attrelid, a.attname::text, t.typtype::text, t.typname::text,
       coalesce(e.typtype::text, ''), coalesce(e.typname::text, '')
from pg_attribute a
join pg_type t on t.oid = a.atttypid
left join pg_type e on e.oid = t.typelem and t.typcategory = 'A'
where a.attrelid = any(%s) and a.attnum > 0 and not a.attisdropped
order by a.attrelid, a.attnum
"""


def list_tables(conn: psycopg.Connection[Any]) -> list[TableInfo]:
    """The user tables of the connected database (a partitioned table counts once,
    extension tables are left out), largest first, each with its columns and a text
    method."""
    found = conn.execute(_TABLES_QUERY).fetchall()
    columns: dict[int, list[tuple[str, bool]]] = {}
    if found:
        for relid, name, typtype, typname, elem_typtype, elem_typname in conn.execute(
            _COLUMNS_QUERY, ([row[0] for row in found],)
        ).fetchall():
            columns.setdefault(int(relid), []).append(
                (name, hash_as_text(typtype, typname, elem_typtype, elem_typname)))
    tables = []
    for relid, schema, name, size, tuples, key, collatable in found:
        size = int(size or 0)
        cols = columns.get(int(relid), [])
        tables.append(TableInfo(
            str(schema), str(name), tuple(key), tuple(bool(x) for x in collatable), size,
            # reltuples is -1 before the first ANALYZE: assume small rows then.
            int(tuples) if tuples is not None and tuples >= 0 else size // 40,
            "text" if size <= ROWS_METHOD_LIMIT_BYTES else "text-md5",
            tuple(c for c, _ in cols), tuple(t for _, t in cols),
        ))
    return tables


# -- sessions and databases ----------------------------------------------------------------


def drop_database_statement(conn: psycopg.Connection[Any], name: str) -> sql.Composed:
    """``DROP DATABASE IF EXISTS name``, ending its sessions: ``WITH (FORCE)`` on PostgreSQL
    13 and newer; before that, the other sessions on it are terminated first (here)."""
    identifier = sql.Identifier(name)
    if conn.info.server_version >= 130000:
        return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier)
    conn.execute("select pg_terminate_backend(pid) from pg_stat_activity"
                 " where datname = %s and pid <> pg_backend_pid()", (name,))
    return sql.SQL("DROP DATABASE IF EXISTS {}").format(identifier)


def drop_database(conn: psycopg.Connection[Any], name: str) -> None:
    """Drop ``name`` if it exists, whoever is connected to it (``conn``: autocommit, on
    another database of the same server)."""
    conn.execute(drop_database_statement(conn, name))


def terminate_sessions(conn: psycopg.Connection[Any], application_name: str, *,
                       within_s: float) -> tuple[int, int]:
    """Terminate every other session named ``application_name`` (a helper's connections);
    returns ``(terminated, left)`` once none is left or ``within_s`` passed. Raises
    ``psycopg.Error`` when the server does not answer."""
    row = conn.execute(
        "select count(*) filter (where pg_terminate_backend(pid)) from pg_stat_activity"
        " where application_name = %s and pid <> pg_backend_pid()", (application_name,),
    ).fetchone()
    terminated = int(row[0]) if row else 0

    def left() -> int:
        left_row = conn.execute("select count(*) from pg_stat_activity where"
                                " application_name = %s", (application_name,)).fetchone()
        return int(left_row[0]) if left_row else 0

    waited = wait_until(left, timeout=within_s, interval=0.05, accept=lambda n: n == 0,
                        errors=())
    return terminated, waited.value or 0
