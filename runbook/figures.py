"""Per-table row counts and checksums, the one module for them: the backup round trip's
(``checksum_query``, ``choose_methods``: see ``actions/backup.py``) and the DR drills'.

Disaster Recovery > Complete Infrastructure Loss, step 5 "Validate data integrity": per-table
row counts and checksums of the application database, before a disaster and after
the recovery, compared table for table.

What is compared: every user table of the database (``runbook.pg.list_tables``:
extension tables left out), each as ``count(*)`` and a checksum of all its rows, read in one
REPEATABLE READ snapshot. A table's checksum is made by one of two methods, recorded with it
(``TableFigure.method``) so the other side is always read the same way (``read_figures(...,
like=before)``):

* ``row-hash-sums`` (figures read since 2026-12-02, every table whose row hash works): the
  server computes, in one sequential pass with no sort, two 64-bit binary hashes of each row
  (``hash_record_extended`` of the row's columns, seeds 0 and 1; enum, domain, composite and
  range columns and OID types cast to text first, since a restore renumbers their OIDs) and
  sums each over the table as exact ``numeric`` (no overflow, no order); the checksum is the
  md5 of the row count and the two sums. Strength: a changed, missing or extra row goes
  unseen only if its hashes cancel exactly in both sums (the count catches a row missing or
  added alone). For accidental damage that is about 2^-64 for one sum; the two seeds make
  two different hash functions, about 2^-128 if they behaved as independent ones, but they
  are one non-cryptographic function (PostgreSQL's Jenkins hash) seeded twice, so count on
  2^-64 at least: weaker on paper than the ordered md5's 2^-128, far beyond any damage a
  restore can do by accident. Neither is a defence against someone forging rows to match.
  The hashes are of values, not of their text: two values a type calls equal (``numeric``
  1.0 and 1.00, ``float8`` 0 and -0) hash alike (LegacyVideo's schema has none of these
  types). About five times faster than the text method (100,000 rows: 0.06 s against 0.3 s).
* ``ordered-md5`` (figures recorded before, and tables whose row hash fails, e.g. a ``json``
  column): the md5 of its rows' text in primary-key order (key columns in the "C" collation)
  with the fixed output settings of ``runbook.pg.COMPARE_SETTINGS``. An older backup's
  figures carry no method: they are this one, and the restored side is read by it too.

``checksum_query`` (the backup round trip's) is not used because a comparison here must
leave out rows written after a point in time (it has no row filter): the recovery's own
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

import contextlib
import json
import queue
import threading
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
#: A table's checksum: two sums of 64-bit row hashes (one pass, no sort; the default).
ROW_HASH_SUMS = "row-hash-sums"
#: A table's checksum: md5 of its rows' text in key order (older figures; types without a
#: row hash).
ORDERED_MD5 = "ordered-md5"
FIGURE_METHODS: tuple[str, ...] = (ROW_HASH_SUMS, ORDERED_MD5)
_ALIAS = sql.Identifier("runbook_row")
_APPLICATION = "legacyvideo-runbook-integrity"


@dataclass(frozen=True)
class TableFigure:
    """One table at one moment: rows up to the cut-off, their checksum by ``method`` (see
    the module doc), and (when asked and small enough) each row's md5 by primary key."""

    rows: int
    checksum: str
    filtered: bool = False
    row_digests: Mapping[str, str] | None = field(default=None, repr=False, compare=False)
    method: str = ORDERED_MD5

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "checksum": self.checksum, "filtered": self.filtered,
                "method": self.method}


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
        """The inverse of ``to_json``; a table without a method (figures recorded before
        methods were) is ``ordered-md5``. Raises ``KeyError``/``ValueError`` when
        malformed."""
        tables = {}
        for name, t in dict(document["tables"]).items():
            method = str(t.get("method", ORDERED_MD5))
            if method not in FIGURE_METHODS:
                raise ValueError(f"unknown checksum method {method!r}")
            tables[str(name)] = TableFigure(int(t["rows"]), str(t["checksum"]),
                                            bool(t.get("filtered")), method=method)
        return cls(
            database=str(document["database"]),
            taken_at=datetime.fromisoformat(str(document["taken_at"])),
            cutoff=datetime.fromisoformat(str(document["cutoff"])),
            tables=tables,
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


def figure_query(table: TableInfo, method: str = ORDERED_MD5) -> tuple[sql.Composed, bool]:
    """``select count(*), checksum`` of ``table`` up to ``%(cutoff)s`` by ``method`` (see
    the module doc); whether the table is filtered by the cut-off."""
    where, filtered = _where(table)
    name = sql.Identifier(table.schema, table.name)
    if method == ROW_HASH_SUMS:
        query = sql.SQL(
            "select count(*), md5(count(*)::text || ':' || coalesce(sum({h0}), 0)::text"
            " || ':' || coalesce(sum({h1}), 0)::text) from {table} as {alias} {where}"
        ).format(h0=_row_hash(table, 0), h1=_row_hash(table, 1), table=name, alias=_ALIAS,
                 where=where)
    elif method == ORDERED_MD5:
        query = sql.SQL(
            "select count(*), md5(coalesce(string_agg(ROW({alias}.*)::text, E'\\n'"
            " ORDER BY {order}), '')) from {table} as {alias} {where}"
        ).format(alias=_ALIAS, order=_order(table), table=name, where=where)
    else:
        raise ValueError(f"unknown checksum method {method!r}")
    return query, filtered


def _hashable(conn: psycopg.Connection[Any], table: TableInfo) -> bool:
    """Whether ``table``'s row hash works, tested on an all-NULL row of its type (reads no
    data; fails for a type without an extended hash function, e.g. json)."""
    probe = sql.SQL("select {} from jsonb_populate_record(null::{}, '{{}}') as {}").format(
        _row_hash(table), sql.Identifier(table.schema, table.name), _ALIAS)
    try:
        with conn.transaction():
            conn.execute(probe)
    except psycopg.Error:
        if conn.broken:
            raise
        return False
    return True


def _digest_query(table: TableInfo) -> sql.Composed:
    where, _ = _where(table)
    key = (sql.SQL("json_build_array({})::text").format(sql.SQL(", ").join(
        sql.SQL("{}.{}").format(_ALIAS, sql.Identifier(c)) for c in table.key))
        if table.key else sql.SQL("md5(ROW({}.*)::text)").format(_ALIAS))
    return sql.SQL("select {key}, md5(ROW({alias}.*)::text) from {table} as {alias} {where}"
                   ).format(key=key, alias=_ALIAS,
                            table=sql.Identifier(table.schema, table.name), where=where)


def read_figures(dsn: str, timeouts: Timeouts, *, cutoff: datetime | None = None,
                 like: Figures | None = None, row_level: bool = False,
                 snapshot: str | None = None, statement_s: float = 60.0,
                 landed: Mapping[str, TableFigure] | None = None) -> Figures:
    """Read every table's figures from ``dsn``'s database, read-only, in one snapshot (the
    exported ``snapshot`` when given, so the figures are a ``pg_dump --snapshot``'s).

    The "before" side: no ``like``; ``cutoff`` ``None`` takes the snapshot's own time. The
    "after" side: ``like=before``, which reads each table by the method ``before`` recorded
    for it and, unless ``cutoff`` is given, up to ``before.cutoff``. ``landed``: figures a
    restore already read as each table's data landed (``LandedFigures``), taken for a table
    still present instead of reading it again. Raises ``psycopg.Error`` when the database
    cannot be read.
    """
    if cutoff is None and like is not None:
        cutoff = like.cutoff
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
            early = (landed or {}).get(table.qualified)
            if early is not None and not row_level:
                tables[table.qualified] = early
                continue
            known = like.tables.get(table.qualified) if like is not None else None
            if known is not None:
                method = known.method
            else:
                method = ROW_HASH_SUMS if _hashable(conn, table) else ORDERED_MD5
            figure = _read_table(conn, table, method, limit)
            if row_level and figure.rows <= ROW_LEVEL_LIMIT:
                figure = replace(figure, row_digests={str(k): str(v) for k, v in conn.execute(
                    _digest_query(table), {"cutoff": limit}).fetchall()})
            tables[table.qualified] = figure
        conn.rollback()
    return Figures(str(database), taken_at, limit, tables)


def _read_table(conn: psycopg.Connection[Any], table: TableInfo, method: str,
                cutoff: datetime) -> TableFigure:
    """``table``'s rows up to ``cutoff`` and their checksum by ``method``."""
    query, filtered = figure_query(table, method)
    found = conn.execute(query, {"cutoff": cutoff}).fetchone()
    assert found is not None  # count(*) always returns a row
    return TableFigure(int(found[0]), str(found[1]), filtered, method=method)


class LandedFigures:
    """The figures of the tables a restore has finished loading, read while it goes on (its
    indexes and constraints still to build), on a connection of their own, in a thread:
    ``landed(name)`` as each table's data is in, ``close()`` for what was read, which
    ``read_figures(landed=...)`` takes instead of reading those tables again.

    Only what a read at the end would give the same: a table ``like`` checksummed by row
    hash sums (no order, so its primary key need not exist yet) and read up to the cut-off
    (rows the application writes after the restore are left out either way). Any other
    table, a name that is not one table, and any read that fails are left to the read at the
    end, so the check is never weaker than reading everything there.
    """

    def __init__(self, dsn: str, timeouts: Timeouts, like: Figures, *,
                 statement_s: float = 60.0) -> None:
        self._endpoint = parse_dsn(dsn)
        self._timeouts = timeouts
        self._like = like
        self._statement_s = statement_s
        self._names: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._figures: dict[str, TableFigure] = {}
        self._thread = threading.Thread(target=self._read, name="landed figures", daemon=True)
        self._thread.start()

    def landed(self, name: str) -> None:
        """Table ``name`` (unqualified, as pg_restore names it) has all its rows."""
        self._names.put(name)

    def close(self, timeout_s: float = 60.0) -> dict[str, TableFigure]:
        """Wait for the tables named so far (up to ``timeout_s``); the figures read, by
        qualified name (none when the reads did not end in time)."""
        self._names.put(None)
        self._thread.join(timeout_s)
        return {} if self._thread.is_alive() else dict(self._figures)

    def _read(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        tables: dict[str, list[TableInfo]] = {}
        try:
            while (name := self._names.get()) is not None:
                if conn is None:
                    conn = open_connection(
                        self._endpoint, connect_timeout_s=self._timeouts.connect,
                        statement_timeout_s=self._statement_s, read_only=True,
                        settings=COMPARE_SETTINGS, application=_APPLICATION)
                    for info in list_tables(conn):
                        tables.setdefault(info.name, []).append(info)
                found = tables.get(name, [])
                if len(found) != 1:
                    continue
                table = found[0]
                known = self._like.tables.get(table.qualified)
                if known is None or known.method != ROW_HASH_SUMS \
                        or CUTOFF_COLUMN not in table.columns:
                    continue
                self._figures[table.qualified] = _read_table(conn, table, ROW_HASH_SUMS,
                                                             self._like.cutoff)
        except psycopg.Error:
            pass  # what was not read here is read at the end
        finally:
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.close()


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
    before_method: str = ORDERED_MD5
    after_method: str = ORDERED_MD5

    @property
    def problems(self) -> tuple[str, ...]:
        """What differs, in one line (none when the table matches)."""
        if self.before_rows is not None and self.after_rows is not None \
                and self.before_method != self.after_method:
            return (f"{self.table}: checksummed by {self.before_method} before and by"
                    f" {self.after_method} after, so not comparable; read the after side"
                    " with read_figures(like=before)",)
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
            missing, added, changed, mine.method if mine else ORDERED_MD5,
            theirs.method if theirs else ORDERED_MD5))
    return IntegrityReport(before.cutoff, tuple(checks), frozenset(expected))


def row_key(*values: str) -> str:
    """The key ``compare`` names a row by: its primary key as ``json_build_array`` text."""
    return json.dumps(list(values), separators=(", ", ": "))


__all__ = [
    "CUTOFF_COLUMN",
    "FIGURE_METHODS",
    "HASH_ORDERED_LIMIT_ROWS",
    "METHODS",
    "ORDERED_MD5",
    "ROW_HASH_SUMS",
    "ROW_LEVEL_LIMIT",
    "Figures",
    "IntegrityReport",
    "LandedFigures",
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


def _row_hash(table: TableInfo, seed: int = 0) -> sql.Composed:
    """The 64-bit hash of a row's columns (OID-dependent types as text) with ``seed``."""
    fields = sql.SQL(", ").join(
        sql.SQL("{}.{}::text" if text else "{}.{}").format(_ALIAS, sql.Identifier(column))
        for column, text in zip(table.columns, table.as_text, strict=True)
    )
    return sql.SQL("hash_record_extended(ROW({}), {})").format(fields, sql.Literal(seed))


def choose_methods(conn: psycopg.Connection[Any], tables: Sequence[TableInfo]
                   ) -> list[TableInfo]:
    """``tables`` with ``hash`` (or ``hash-sum``) where the row hash works, tested on an
    all-NULL row of the table's type (reads no data; fails for a type without an extended
    hash function, e.g. json). Needs PostgreSQL 14+; each test in its own (sub)transaction."""
    chosen = []
    for table in tables:
        if not _hashable(conn, table):
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
