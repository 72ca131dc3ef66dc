"""A client that leaks database connections: the fault of the connection-limit game day.

``python -m runbook.drills.connection_holder`` opens connections to ``RUNBOOK_HOLDER_DSN``
(never on the command line, where ``ps`` would show its password) until the server refuses
one, then holds them all idle, as a leaking connection pool does, until SIGTERM/SIGINT or
``RUNBOOK_HOLDER_MAX_S`` seconds (default 300: a forgotten holder cannot hold forever).

While it holds, it takes every slot another client frees (``TOP_UP_S``), as a leaking pool
under load does: a slot held for a moment by someone else's request when it filled must not
leave the fault half in place. It stops taking slots once one of its own connections is
terminated (the correction's ``pg_terminate_backend``): a leak being dealt with.

Environment:

- ``RUNBOOK_HOLDER_DSN`` (required): the database to exhaust, with the role whose slots to
  take (the application's own role leaves PostgreSQL's superuser-reserved slots free).
- ``RUNBOOK_HOLDER_STATE`` (required): a JSON file written once the holder is full:
  ``{"pid", "holding", "refused"}`` (the server's refusal, one line, no secret).
- ``RUNBOOK_HOLDER_APP``: ``application_name`` of its connections (``runbook-conn-holder``).
- ``RUNBOOK_HOLDER_LIMIT``: at most this many connections (default 1000).
- ``RUNBOOK_HOLDER_MAX_S``: lifetime in seconds (default 300).

Exit code 0 after holding; 1 when not even one connection could be opened; 2 on a usage
error.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

APPLICATION_NAME = "runbook-conn-holder"
CONNECT_TIMEOUT_S = 3
#: Stop opening connections after this long even if the server still accepts them.
FILL_BUDGET_S = 60.0
#: While holding, how often to try for a slot another client freed.
TOP_UP_S = 0.5


def _one_line(exc: BaseException) -> str:
    """The server's message (the last ``FATAL:`` part), without host or credentials."""
    text = " ".join(str(exc).split())
    marker = text.rfind("FATAL:")
    return (text[marker:] if marker >= 0 else f"{type(exc).__name__}: {text}")[:300]


def _write_state(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document), encoding="utf-8")
    tmp.replace(path)


def hold(dsn: str, state: Path, *, application_name: str, limit: int, max_s: float,
         stop: threading.Event) -> int:
    """Open connections until refused (or ``limit``), write ``state``, hold until ``stop``
    or ``max_s``; close them all. Returns the exit code."""
    connections: list[psycopg.Connection[Any]] = []
    refused = ""
    started = time.monotonic()
    try:
        while len(connections) < limit and not stop.is_set():
            if time.monotonic() - started > FILL_BUDGET_S:
                refused = f"stopped filling after {FILL_BUDGET_S:g} s"
                break
            try:
                connections.append(psycopg.connect(
                    dsn, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True,
                    application_name=application_name))
            except psycopg.Error as exc:
                refused = _one_line(exc)
                break
        _write_state(state, {"pid": os.getpid(), "holding": len(connections),
                             "refused": refused})
        print(f"holding {len(connections)} connections; refused: {refused}", flush=True)
        if not connections:
            return 1
        took = _top_up(dsn, connections, application_name=application_name, limit=limit,
                       until=started + max_s, stop=stop)
        print(f"took {took} more connections freed by other clients", flush=True)
        return 0
    finally:
        for conn in connections:
            with contextlib.suppress(Exception):
                conn.close()
        print(f"released {len(connections)} connections", flush=True)


def _top_up(dsn: str, connections: list[psycopg.Connection[Any]], *, application_name: str,
            limit: int, until: float, stop: threading.Event) -> int:
    """Hold ``connections`` until ``stop`` or ``until``, taking each slot another client
    frees meanwhile, until one of ours is terminated. Returns how many it took."""
    took = 0
    dealt_with = False
    while not stop.wait(max(0.0, min(TOP_UP_S, until - time.monotonic()))):
        if time.monotonic() >= until:
            break
        dealt_with = dealt_with or _one_terminated(connections)
        if dealt_with or len(connections) >= limit:
            continue
        try:
            connections.append(psycopg.connect(
                dsn, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True,
                application_name=application_name))
        except psycopg.Error:
            continue  # still full: the fault holds
        took += 1
    return took


def _one_terminated(connections: list[psycopg.Connection[Any]]) -> bool:
    """Whether the server has said something on an idle connection of ours: it only does
    so to end it (``terminating connection due to administrator command``)."""
    poller = select.poll()  # not select(): a holder may have more than 1024 descriptors
    open_ones = [conn for conn in connections if not conn.closed]
    for conn in open_ones:
        poller.register(conn.pgconn.socket, select.POLLIN)
    return bool(poller.poll(0)) or len(open_ones) < len(connections)


def main() -> int:
    """Read the environment, install the stop signals and hold."""
    dsn = os.environ.get("RUNBOOK_HOLDER_DSN", "")
    state = os.environ.get("RUNBOOK_HOLDER_STATE", "")
    if not dsn or not state:
        print("RUNBOOK_HOLDER_DSN and RUNBOOK_HOLDER_STATE are required", file=sys.stderr)
        return 2
    try:
        limit = int(os.environ.get("RUNBOOK_HOLDER_LIMIT", "1000"))
        max_s = float(os.environ.get("RUNBOOK_HOLDER_MAX_S", "300"))
    except ValueError:
        print("RUNBOOK_HOLDER_LIMIT and RUNBOOK_HOLDER_MAX_S must be numbers", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return hold(dsn, Path(state), application_name=os.environ.get(
        "RUNBOOK_HOLDER_APP", APPLICATION_NAME), limit=limit, max_s=max_s, stop=stop)


if __name__ == "__main__":
    sys.exit(main())
