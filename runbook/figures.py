"""Per-table row counts and checksums, the one module for them: the backup round trip's
(``checksum_query``, ``choose_methods``: see ``actions/backup.py``) and the DR drills'.

Disaster Recovery > Complete Infrastructure Loss, step 5 "Validate data integrity": per-table
row counts and ordered checksums of the application database, before a disaster and after
the recovery, compared table for table.

What is compared: every user table of the database (``runbook.pg.list_tables``:
extension tables left out), each as ``count(*)`` and the md5 of its rows' text in primary-key
order (key columns in the "C" collation), read in one REPEATABLE READ snapshot with the fixed
output settings of ``runbook.pg.COMPARE_SETTINGS``. The row text is used rather
than ``checksum_query``'s binary row hash because a comparison here must leave out rows
written after a point in time (``checksum_query`` has no row filter): the recovery's own
end-to-end checks write audit rows, and so do the drill's canaries.

The cut-off: every table with a ``"createdAt"`` column (all of LegacyVideo's) is read with
``"createdAt" <= cutoff``; the "before" side takes the time of its own snapshot as the
cut-off and the "after" side must be read with the same one. A row created before the
cut-off and changed after it counts as changed (that is a real difference). Tables without
``"createdAt"`` (``_prisma_migrations``) are compared whole.

Row-level digests (``row_level=True``, tables up to ``ROW_LEVEL_LIMIT`` rows) let a
mismatch name the rows missing, added or changed, by primary key; ``IntegrityReport.
unexplained`` then says which differences a drill did not expect.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from runbook.pg import COMPARE_SETTINGS, TableInfo, list_tables, open_connection, parse_dsn
from runbook.results import Result
from runbook.timeouts import Timeouts

#: The column that dates a row in LegacyVideo's schema (Prisma's ``@default(now())``).
CUTOFF_COLUMN = "createdAt"
#: Row-level digests are kept for tables up to this many rows.
ROW_LEVEL_LIMIT = 5000
_ALIAS = sql.Identifier("runbook_row")
_APPLICATION = "legacyvideo-runbook-integrity"


@dataclass(frozen=True)
class TableFigure:
    """One table at one moment: rows up to the cut-off, their ordered checksum, and (when
    asked and small enough) each row's md5 by primary key."""

    rows: int
    checksum: str
    filtered: bool = False
    row_digests: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "checksum": self.checksum, "filtered": self.filtered}


@dataclass(frozen=True)
class Figures:
    """Every table of a database at ``taken_at``, rows created after ``cutoff`` left out."""

    database: str
    taken_at: datetime
    cutoff: datetime
    tables: Mapping[str, TableFigure]

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (no row digests: they may be large; no secrets)."""
        return {
            "database": self.database,
            "taken_at": self.taken_at.isoformat(),
            "cutoff": self.cutoff.isoformat(),
            "tables": {name: t.to_json() for name, t in sorted(self.tables.items())},
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Figures:
        """The inverse of ``to_json``. Raises ``KeyError``/``ValueError`` when malformed."""
        return cls(
            database=str(document["database"]),
            taken_at=datetime.fromisoformat(str(document["taken_at"])),
            cutoff=datetime.fromisoformat(str(document["cutoff"])),
            tables={str(name): TableFigure(int(t["rows"]), str(t["checksum"]),
                                           bool(t.get("filtered")))
                    for name, t in dict(document["tables"]).items()},
        )


def _order(table: TableInfo) -> sql.Composable:
    if not table.key:
        return sql.SQL('ROW({}.*)::text COLLATE "C"').format(_ALIAS)
    return sql.SQL(", ").join(
        sql.SQL('{}.{} COLLATE "C"' if collatable else "{}.{}").format(
            _ALIAS, sql.Identifier(column))
        for column, collatable in zip(table.key, table.collatable, strict=True)
    )


def _where(table: TableInfo) -> tuple[sql.Composable, bool]:
    if CUTOFF_COLUMN in table.columns:
        return sql.SQL("where {}.{} <= %(cutoff)s").format(
            _ALIAS, sql.Identifier(CUTOFF_COLUMN)), True
    return sql.SQL(""), False


def figure_query(table: TableInfo) -> tuple[sql.Composed, bool]:
    """``select count(*), md5(rows in key order)`` of ``table`` up to ``%(cutoff)s``;
    whether the table is filtered by the cut-off."""
    where, filtered = _where(table)
    query = sql.SQL(
        "select count(*), md5(coalesce(string_agg(ROW({alias}.*)::text, E'\\n'"
        " ORDER BY {order}), '')) from {table} as {alias} {where}"
    ).format(alias=_ALIAS, order=_order(table), table=sql.Identifier(table.schema, table.name),
             where=where)
    return query, filtered


def _digest_query(table: TableInfo) -> sql.Composed:
    where, _ = _where(table)
    key = (sql.SQL("json_build_array({})::text").format(sql.SQL(", ").join(
        sql.SQL("{}.{}").format(_ALIAS, sql.Identifier(c)) for c in table.key))
        if table.key else sql.SQL("md5(ROW({}.*)::text)").format(_ALIAS))
    return sql.SQL("select {key}, md5(ROW({alias}.*)::text) from {table} as {alias} {where}"
                   ).format(key=key, alias=_ALIAS,
                            table=sql.Identifier(table.schema, table.name), where=where)


def read_figures(dsn: str, timeouts: Timeouts, *, cutoff: datetime | None = None,
                 row_level: bool = False, snapshot: str | None = None,
                 statement_s: float = 60.0) -> Figures:
    """Read every table's figures from ``dsn``'s database, read-only, in one snapshot (the
    exported ``snapshot`` when given, so the figures are a ``pg_dump --snapshot``'s).

    ``cutoff`` ``None``: the snapshot's own time is the cut-off (the "before" side); pass the
    "before" figures' ``cutoff`` when reading the "after" side. Raises ``psycopg.Error``
    when the database cannot be read.
    """
    endpoint = parse_dsn(dsn)
    with open_connection(endpoint, connect_timeout_s=timeouts.connect,
                         statement_timeout_s=statement_s, read_only=True, autocommit=False,
                         settings=COMPARE_SETTINGS, application=_APPLICATION) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        if snapshot is not None:
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        row = conn.execute("select clock_timestamp(), current_database()").fetchone()
        assert row is not None
        taken_at, database = row
        limit = cutoff if cutoff is not None else taken_at
        tables: dict[str, TableFigure] = {}
        for table in list_tables(conn):
            query, filtered = figure_query(table)
            found = conn.execute(query, {"cutoff": limit}).fetchone()
            assert found is not None
            rows, checksum = int(found[0]), str(found[1])
            digests: dict[str, str] | None = None
            if row_level and rows <= ROW_LEVEL_LIMIT:
                digests = {str(k): str(v) for k, v in conn.execute(
                    _digest_query(table), {"cutoff": limit}).fetchall()}
            tables[table.qualified] = TableFigure(rows, checksum, filtered, digests)
        conn.rollback()
    return Figures(str(database), taken_at, limit, tables)


@dataclass(frozen=True)
class TableComparison(Result):
    """One table, before against after (ok: present on both sides, same rows, same
    checksum); row keys named when both sides had digests."""

    table: str
    before_rows: int | None
    after_rows: int | None
    before_checksum: str | None
    after_checksum: str | None
    missing: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @property
    def problems(self) -> tuple[str, ...]:
        """What differs, in one line (none when the table matches)."""
        if (self.before_rows is not None and self.before_rows == self.after_rows
                and self.before_checksum == self.after_checksum):
            return ()
        if self.before_rows is None or self.after_rows is None:
            side = "before" if self.before_rows is None else "after"
            return (f"{self.table}: not present {side}",)
        detail = [f"{n} {what}" for n, what in ((len(self.missing), "missing"),
                                                (len(self.added), "added"),
                                                (len(self.changed), "changed")) if n]
        shown = f" ({', '.join(detail)})" if detail else ""
        if self.before_rows != self.after_rows:
            return (f"{self.table}: {self.before_rows} rows before, {self.after_rows}"
                    f" after{shown}",)
        return (f"{self.table}: same {self.before_rows} rows, contents differ{shown}",)

    def problem(self) -> str:
        """One line on what differs ("" when the table matches)."""
        return "; ".join(self.problems)


@dataclass(frozen=True)
class IntegrityReport(Result):
    """Every table compared; ``expected`` names the row keys a drill knew would differ
    (e.g. writes the audit log cannot replay). Ok when identical, or differing only where
    expected: its problems are the differences not expected (``unexplained``)."""

    cutoff: datetime
    tables: tuple[TableComparison, ...]
    expected: frozenset[str] = frozenset()
    evidence_properties = ("matches",)

    @property
    def matches(self) -> bool:
        """Every table identical."""
        return all(t.ok for t in self.tables)

    @property
    def unexplained(self) -> tuple[str, ...]:
        """Differences not in ``expected``: whole tables when rows could not be named."""
        found: list[str] = []
        for table in self.tables:
            if table.ok:
                continue
            keys = (*table.missing, *table.added, *table.changed)
            if not keys:
                found.append(table.problem())
                continue
            found += [f"{table.table} {key}" for key in keys if key not in self.expected]
        return tuple(found)

    @property
    def problems(self) -> tuple[str, ...]:
        return self.unexplained

    def problem(self) -> str:
        return "; ".join(t.problem() for t in self.tables if not t.ok)


def compare(before: Figures, after: Figures, expected: Iterable[str] = ()) -> IntegrityReport:
    """Pair ``before`` and ``after`` table for table (``after`` read with ``before.cutoff``).
    ``expected``: row keys (``json_build_array`` text of the primary key) allowed to differ."""
    checks = []
    for name in sorted(set(before.tables) | set(after.tables)):
        mine, theirs = before.tables.get(name), after.tables.get(name)
        missing: tuple[str, ...] = ()
        added: tuple[str, ...] = ()
        changed: tuple[str, ...] = ()
        if (mine is not None and theirs is not None and mine.row_digests is not None
                and theirs.row_digests is not None
                and (mine.rows != theirs.rows or mine.checksum != theirs.checksum)):
            a, b = mine.row_digests, theirs.row_digests
            missing = tuple(sorted(k for k in a if k not in b))
            added = tuple(sorted(k for k in b if k not in a))
            changed = tuple(sorted(k for k in a if k in b and a[k] != b[k]))
        checks.append(TableComparison(
            name, mine.rows if mine else None, theirs.rows if theirs else None,
            mine.checksum if mine else None, theirs.checksum if theirs else None,
            missing, added, changed))
    return IntegrityReport(before.cutoff, tuple(checks), frozenset(expected))


def row_key(*values: str) -> str:
    """The key ``compare`` names a row by: its primary key as ``json_build_array`` text."""
    return json.dumps(list(values), separators=(", ", ": "))


__all__ = [
    "CUTOFF_COLUMN",
    "HASH_ORDERED_LIMIT_ROWS",
    "METHODS",
    "ROW_LEVEL_LIMIT",
    "Figures",
    "IntegrityReport",
    "TableComparison",
    "TableFigure",
    "checksum_query",
    "choose_methods",
    "compare",
    "figure_query",
    "read_figures",
    "row_key",
]


# -- the backup round trip's checksums (see ``actions/backup.py``) --------------------------

#: Above this many rows (estimated) a table's binary hashes are summed (``hash-sum``).
HASH_ORDERED_LIMIT_ROWS = 20_000_000
METHODS: tuple[str, ...] = ("hash", "hash-sum", "text", "text-md5")


def _row_hash(table: TableInfo) -> sql.Composed:
    fields = sql.SQL(", ").join(
        sql.SQL("{}.{}::text" if text else "{}.{}").format(_ALIAS, sql.Identifier(column))
        for column, text in zip(table.columns, table.as_text, strict=True)
    )
    return sql.SQL("hash_record_extended(ROW({}), 0)").format(fields)


def choose_methods(conn: psycopg.Connection[Any], tables: Sequence[TableInfo]
                   ) -> list[TableInfo]:
    """``tables`` with ``hash`` (or ``hash-sum``) where the row hash works, tested on an
    all-NULL row of the table's type (reads no data; fails for a type without an extended
    hash function, e.g. json). Needs PostgreSQL 14+; each test in its own (sub)transaction."""
    chosen = []
    for table in tables:
        probe = sql.SQL("select {} from jsonb_populate_record(null::{}, '{{}}') as {}").format(
            _row_hash(table), sql.Identifier(table.schema, table.name), _ALIAS)
        try:
            with conn.transaction():
                conn.execute(probe)
        except psycopg.Error:
            if conn.broken:
                raise
            chosen.append(table)
            continue
        method = "hash-sum" if table.rows_estimate > HASH_ORDERED_LIMIT_ROWS else "hash"
        chosen.append(replace(table, method=method))
    return chosen


def checksum_query(table: TableInfo) -> sql.Composed:
    """``select count(*), md5(...)`` over ``table`` by its ``method`` (see the module doc)."""
    row_text = sql.SQL("ROW({}.*)::text").format(_ALIAS)
    row_hash = _row_hash(table)
    if table.method.startswith("hash"):
        fallback_order, item = row_hash, sql.SQL("{}::text").format(row_hash)
    elif table.method == "text":
        fallback_order, item = sql.SQL('{} COLLATE "C"').format(row_text), row_text
    else:
        fallback_order = item = sql.SQL('md5({}) COLLATE "C"').format(row_text)
    order = sql.SQL(", ").join(
        sql.SQL('{}.{} COLLATE "C"' if collatable else "{}.{}").format(
            _ALIAS, sql.Identifier(column))
        for column, collatable in zip(table.key, table.collatable, strict=True)
    ) if table.key else fallback_order
    separator = sql.Literal("\n" if table.method == "text" else ",")
    if table.method == "hash-sum":
        digest = sql.SQL("md5(sum({}::numeric)::text)").format(row_hash)
    else:
        digest = sql.SQL("md5(string_agg({}, {} ORDER BY {}))").format(item, separator, order)
    return sql.SQL("select count(*), {} from {} as {}").format(
        digest, sql.Identifier(table.schema, table.name), _ALIAS)
