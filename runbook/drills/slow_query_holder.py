"""A statement that keeps blocking writes: the fault of the slow-query game day.

``python -m runbook.drills.slow_query_holder`` connects to ``RUNBOOK_SLOW_DSN`` (never on the
command line, where ``ps`` would show its password) and, in a loop, opens a transaction,
takes a ``SHARE`` lock on ``RUNBOOK_SLOW_TABLE`` (the lock a plain ``CREATE INDEX`` holds for
the whole index build) and keeps it for ``RUNBOOK_SLOW_HOLD_S`` seconds in a slow statement
before committing. Every write to the table waits behind it: the API's queries on it are
slow (its log says "query took ..."), not failing, and the holder's own statement is the
one running over the threshold in ``pg_stat_activity``.

It stops on SIGTERM/SIGINT, after ``RUNBOOK_SLOW_MAX_S`` seconds (default 120: a forgotten
holder cannot block for long), or when its statement is cancelled or its backend terminated
(``pg_cancel_backend``/``pg_terminate_backend``: the on-call engineer's fix). It never
reconnects.

Environment:

- ``RUNBOOK_SLOW_DSN`` (required): the database, with the application's own role.
- ``RUNBOOK_SLOW_STATE`` (required): a JSON file written once the first lock is held:
  ``{"pid", "backend_pid", "table", "hold_s"}`` (no secret).
- ``RUNBOOK_SLOW_APP``: ``application_name`` of its connection (``runbook-drill-slow-query``).
- ``RUNBOOK_SLOW_TABLE``: the table to lock (``AuditLog``, written by every login).
- ``RUNBOOK_SLOW_HOLD_S``: seconds each lock is held (default 1.0).
- ``RUNBOOK_SLOW_MAX_S``: lifetime in seconds (default 120).

Exit codes: 0 stopped by a signal or its lifetime; 3 its statement was cancelled or its
backend terminated; 1 it could not connect or lock; 2 a usage error.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import psycopg
from psycopg import sql

APPLICATION_NAME = "runbook-drill-slow-query"
DEFAULT_TABLE = "AuditLog"
CONNECT_TIMEOUT_S = 3


def _one_line(exc: BaseException) -> str:
    """The server's message on one line, without host or credentials."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300]


def _write_state(path: Path, document: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document), encoding="utf-8")
    tmp.replace(path)


def block(dsn: str, state: Path, *, table: str, hold_s: float, max_s: float,
          application_name: str, stop: threading.Event) -> int:
    """Hold the table's SHARE lock ``hold_s`` at a time until ``stop``, ``max_s`` or an
    error; returns the exit code (see the module docstring)."""
    started = time.monotonic()
    timeout_ms = int((hold_s + 5) * 1000)
    try:
        conn = psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name=application_name,
                               options=f"-c statement_timeout={timeout_ms}"
                                       f" -c lock_timeout={timeout_ms}")
    except psycopg.Error as exc:
        print(f"cannot connect: {_one_line(exc)}", flush=True)
        return 1
    lock = sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(table))
    written = False
    cycles = 0
    try:
        while not stop.is_set() and time.monotonic() - started < max_s:
            with conn.transaction():
                conn.execute(lock)
                if not written:
                    _write_state(state, {"pid": os.getpid(), "backend_pid": conn.info.backend_pid,
                                         "table": table, "hold_s": hold_s})
                    print(f"holding SHARE locks on {table!r}, {hold_s:g} s at a time", flush=True)
                    written = True
                conn.execute("SELECT pg_sleep(%s)", (hold_s,))
            cycles += 1
    except psycopg.Error as exc:
        print(f"stopped after {cycles} cycles: {_one_line(exc)}", flush=True)
        return 3 if written else 1
    finally:
        conn.close()
    print(f"stopped after {cycles} cycles ({'signal' if stop.is_set() else 'lifetime'})",
          flush=True)
    return 0


def main() -> int:
    try:
        dsn = os.environ["RUNBOOK_SLOW_DSN"]
        state = Path(os.environ["RUNBOOK_SLOW_STATE"])
        hold_s = float(os.environ.get("RUNBOOK_SLOW_HOLD_S") or 1.0)
        max_s = float(os.environ.get("RUNBOOK_SLOW_MAX_S") or 120)
    except (KeyError, ValueError) as exc:
        print(f"usage: set RUNBOOK_SLOW_DSN and RUNBOOK_SLOW_STATE ({exc})", file=sys.stderr)
        return 2
    if not (math.isfinite(hold_s) and 0 < hold_s <= 60 and math.isfinite(max_s) and max_s > 0):
        print("usage: RUNBOOK_SLOW_HOLD_S in (0, 60], RUNBOOK_SLOW_MAX_S > 0", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return block(dsn, state, table=os.environ.get("RUNBOOK_SLOW_TABLE") or DEFAULT_TABLE,
                 hold_s=hold_s, max_s=max_s,
                 application_name=os.environ.get("RUNBOOK_SLOW_APP") or APPLICATION_NAME,
                 stop=stop)


if __name__ == "__main__":
    sys.exit(main())
