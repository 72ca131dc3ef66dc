"""Helper processes a fault starts (connection holders, slow-query holders): their pid files
and how they are stopped, by the drill or by the guard after a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runbook import pg
from runbook.probes.postgres import connect
from runbook.sandbox.procs import is_alive, stop_process
from runbook.timeouts import Timeouts


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; ``None`` when it is missing, unreadable or not an object."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def runs_module(pid: int, module: str) -> bool:
    """Whether process ``pid`` is ``python -m module`` (so a reused pid is never stopped)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return module.encode() in handle.read()
    except OSError:
        return False


def stop_recorded(pidfile: Path, module: str, *, grace: float, name: str = "holder"
                  ) -> tuple[str, int]:
    """Stop the process recorded in ``pidfile`` (``{"pid", "start"}``) if it still is the
    ``module`` process started then. Returns what was done and the pid (0 when none was
    recorded). Idempotent; the caller removes its files."""
    recorded = read_json(pidfile)
    if recorded is None:
        return f"no {name} recorded", 0
    pid = int(recorded.get("pid") or 0)
    started = recorded.get("start")
    if pid and is_alive(pid) and runs_module(pid, module) and stop_process(
            pid, int(started) if started is not None else None, grace=grace):
        return f"{name} pid {pid} stopped", pid
    return f"{name} pid {pid} already gone", pid


def terminate_sessions(dsn: str, timeouts: Timeouts, application_name: str) -> tuple[int, int]:
    """Connected to ``dsn``, terminate every other session named ``application_name`` (a
    helper's connections); returns ``(terminated, left)`` after at most a read timeout.
    Raises ``psycopg.Error`` when the server does not answer."""
    with connect(dsn, timeouts, read_only=False) as conn:
        return pg.terminate_sessions(conn, application_name, within_s=timeouts.read)
