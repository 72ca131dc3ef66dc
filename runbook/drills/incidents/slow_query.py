"""Troubleshooting > Slow Query Performance: a statement keeps blocking the API's writes.

``slow-query``: a separate process (``python -m runbook.drills.slow_query_holder``) holds a
``SHARE`` lock (the lock a plain CREATE INDEX takes) on a table the API writes, a second at a
time, in a slow statement; its pid and start time are written under the sandbox's state
directory. The revert stops exactly that process and terminates what is left of its sessions.

The entry's steps (query logging, ``grep "query took"``, "add database indexes if needed")
do not restore service: the log lines show the statements that waited, not the one they
waited on, and an index does nothing for a statement waiting on a lock (a plain CREATE INDEX
takes that very lock). The record says what to add; the corrected procedure finds the
offender in ``pg_stat_activity`` and cancels it (terminates it if it does not stop).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg

from runbook.actions import users
from runbook.config import Target
from runbook.drills.engine import Incident, fixed
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.steps import StepLog, output
from runbook.drills.processes import read_json, stop_recorded, terminate_sessions
from runbook.drills.slow_query_holder import APPLICATION_NAME as SLOW_QUERY_APP
from runbook.platforms.base import library_call, record
from runbook.probes import describe_error
from runbook.probes import postgres as postgres_probe
from runbook.probes.postgres import connect
from runbook.results import Activity, ProbeResult
from runbook.sandbox import Sandbox
from runbook.sandbox.components import package_root
from runbook.sandbox.procs import is_alive, start_time
from runbook.timeouts import Timeouts
from runbook.wait import wait_until

SECTION = "Troubleshooting > Slow Query Performance"
#: The API's slow-query logging threshold (``SLOW_QUERY_MS``' default), which the scheduled
#: check applies too (features/troubleshooting.feature).
SLOW_QUERY_MS = 500
#: What ``postgres_probe.offenders`` finds: slow statements, waiting sessions, blockers.
Offenders = tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], list[int]]
#: How many logins the symptom step times to see one over the threshold.
SYMPTOM_LOGINS = 5
#: How long the holder may take to hold its first lock.
HOLDER_START_TIMEOUT_S = 15.0
#: Grace between SIGTERM and SIGKILL for the holder (it holds a lock at most ``hold_s``).
HOLDER_STOP_GRACE_S = 5.0
_QUERY_TOOK = re.compile(r"query took (\d+)ms: (.*)$")


def holder_files(context: DrillContext) -> tuple[Path, Path, Path]:
    """The holder's pid file, its own state file and its log."""
    directory = context.state_directory()
    return (directory / "slow-query-holder.json", directory / "slow-query-holder.state.json",
            directory / "slow-query-holder.log")


def stop_holder(context: DrillContext) -> str:
    """Stop the holder in the pid file (only if that pid still is the holder started then)
    and remove its files; says what it did. Idempotent."""
    pidfile, state, _ = holder_files(context)
    said, _pid = stop_recorded(pidfile, "runbook.drills.slow_query_holder",
                               grace=HOLDER_STOP_GRACE_S, name="slow-query holder")
    for path in (pidfile, state):
        path.unlink(missing_ok=True)
    return said


def terminate_backends(target: Target, timeouts: Timeouts, application_name: str
                       ) -> tuple[int, int]:
    """Terminate every session named ``application_name`` (the application's role may end
    its own sessions); returns ``(terminated, left)`` after at most a read timeout."""
    return terminate_sessions(target.require("DATABASE_URL"), timeouts, application_name)


def _holder_environment(dsn: str, state: Path, params: Params) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RUNBOOK_SLOW_"))}
    root = str(package_root())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.update(
        RUNBOOK_SLOW_DSN=dsn, RUNBOOK_SLOW_STATE=str(state),
        RUNBOOK_SLOW_APP=str(params.get("application_name") or SLOW_QUERY_APP),
        RUNBOOK_SLOW_TABLE=str(params.get("table") or "AuditLog"),
        RUNBOOK_SLOW_HOLD_S=f"{float(params.get('hold_s') or 1.0):g}",
        RUNBOOK_SLOW_MAX_S=f"{float(params.get('max_s') or 120):g}",
    )
    return env


@fault("slow-query",
       "a long statement holds the SHARE lock a plain CREATE INDEX takes on a table the API"
       " writes, a second at a time: the API's writes to it wait")
class SlowQuery:
    """``params``: ``table`` (default ``AuditLog``), ``hold_s`` (default 1.0), ``max_s``
    (the holder's own lifetime cap, default 120), ``application_name`` (default
    ``runbook-drill-slow-query``)."""

    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        pidfile, state, log_path = holder_files(context)
        dsn = context.target.require("DATABASE_URL")
        table = str(params.get("table") or "AuditLog")

        def body() -> tuple[bool, str, str]:
            stale = stop_holder(context)  # a holder left by an earlier run goes first
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "runbook.drills.slow_query_holder"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=_holder_environment(dsn, state, params), start_new_session=True,
                    close_fds=True,
                )
            pidfile.write_text(json.dumps({"pid": proc.pid, "start": start_time(proc.pid)}),
                               encoding="utf-8")
            report = wait_until(lambda: read_json(state), timeout=HOLDER_START_TIMEOUT_S,
                                interval=0.05, accept=lambda r: r is not None,
                                stop=lambda: proc.poll() is not None, errors=()).value
            if report is None:
                why = (f"exited with code {proc.returncode}" if proc.poll() is not None
                       else f"held no lock within {HOLDER_START_TIMEOUT_S:g} s")
                return False, "", f"the slow-query holder {why}; see {log_path}"
            return True, (f"holder pid {proc.pid} (backend {report.get('backend_pid')})"
                          f" holds SHARE locks on {table!r} {report.get('hold_s')} s at a time"
                          + ("" if stale.startswith("no ") else f" ({stale} first)")), ""

        return record(f"block writes to {table}",
                      (sys.executable, "-m", "runbook.drills.slow_query_holder"), body,
                      context.redactor())

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        application_name = str(params.get("application_name") or SLOW_QUERY_APP)

        def body() -> tuple[bool, str, str]:
            said = stop_holder(context)
            try:
                terminated, left = terminate_backends(context.target, context.timeouts,
                                                      application_name)
            except psycopg.Error as exc:
                down = not Sandbox(context.home).status().components["postgres"].running
                if down:  # a stopped server holds no locks
                    return True, f"{said}; the database is not running", ""
                return False, said, f"cannot check the holder's sessions: {describe_error(exc)}"
            if left:
                return False, said, f"{left} sessions of {application_name} remain"
            return True, f"{said}; {terminated} leftover sessions terminated", ""

        return record("stop the slow query",
                      library_call("runbook.drills.processes.terminate_sessions",
                                   application_name), body, context.redactor())

    @staticmethod
    def present(context: DrillContext, params: Params) -> str | None:
        pidfile, _, _ = holder_files(context)
        recorded = read_json(pidfile)
        if recorded is None or not is_alive(int(recorded.get("pid") or 0)):
            return None
        return f"the blocking statement's process (pid {recorded.get('pid')}) still runs"


def _end_sessions(target: Target, timeouts: Timeouts, pids: Sequence[int]) -> dict[str, Any]:
    """``pg_cancel_backend`` each pid, wait up to 3 s for its statement to end, then
    ``pg_terminate_backend`` what is still there; what happened to each."""
    outcome: dict[str, Any] = {}
    with connect(target.require("DATABASE_URL"), timeouts, read_only=False) as conn:
        for pid in pids:
            cancelled = conn.execute("select pg_cancel_backend(%s)", (pid,)).fetchone()
            outcome[str(pid)] = {"cancelled": bool(cancelled and cancelled[0])}
        left = list(pids)

        def still_active() -> list[int]:
            nonlocal left
            rows = conn.execute("select pid from pg_stat_activity where pid = any(%s)"
                                " and state = 'active'", (list(left),)).fetchall()
            left = [int(r[0]) for r in rows]
            return left

        if left:
            wait_until(still_active, timeout=3.0, interval=0.1, accept=lambda rest: not rest,
                       errors=())
        for pid in left:
            ended = conn.execute("select pg_terminate_backend(%s)", (pid,)).fetchone()
            outcome[str(pid)]["terminated"] = bool(ended and ended[0])
    return outcome


class SlowQueryIncident(Incident):
    name = "slow-query-performance"
    section = SECTION
    fault = "slow-query"
    params = fixed(table="AuditLog", hold_s=1.0, max_s=120)
    description = ("a statement holds the SHARE lock a plain CREATE INDEX takes on a table"
                   " the API writes, a second at a time")
    signal = f"a statement over {SLOW_QUERY_MS} ms, or sessions waiting on a lock"
    defect = ("`grep \"query took\"` shows the statements that waited (INSERT INTO"
              " \"AuditLog\"), not the one that made them wait, and \"add database indexes\""
              " does nothing for a statement waiting on a lock (a plain CREATE INDEX takes"
              " exactly that SHARE lock and causes this). Add: find the offender in"
              " pg_stat_activity (state, now() - query_start, pg_blocking_pids(pid)), cancel"
              " it with pg_cancel_backend(pid), pg_terminate_backend(pid) if it does not stop;"
              " add indexes only for statements that are slow on their own (EXPLAIN), with"
              " CREATE INDEX CONCURRENTLY.")

    def verify(self) -> ProbeResult:
        return postgres_probe.slow_queries(self.context.target, self.context.timeouts,
                                           threshold_ms=SLOW_QUERY_MS)

    def runbook_steps(self) -> list[Activity]:
        book = StepLog(self.context)
        target, timeouts, platform = self.context.target, self.context.timeouts, \
            self.context.platform

        def logging_on() -> tuple[bool, str, str]:
            found = platform.variables("api")
            shown = "SLOW_QUERY_MS set" if "SLOW_QUERY_MS" in found.fingerprints else (
                f"SLOW_QUERY_MS not set: the API's default of {SLOW_QUERY_MS} ms applies")
            return found.ok, output(f"the API logs every query over its threshold as 'query"
                                    f" took': {shown} (in LegacyVideo: Prisma's log option, a"
                                    " code change and a deploy)"), found.activity.error

        book.step("enable query logging in Prisma",
                  library_call("runbook.platforms.PlatformAdapter.variables", "api"),
                  logging_on, runbook_says="log: ['query', 'info', 'warn', 'error']")

        def symptom() -> tuple[bool, str, str]:
            # The lock comes and goes (the holder takes it a second at a time): a login that
            # arrives late in a hold waits less than the threshold. Time a few, as a user who
            # reports "sometimes slow" would, until one is over it.
            took: list[str] = []
            with users.canary_user(target, timeouts) as canary:
                for _ in range(SYMPTOM_LOGINS):
                    attempt = users.login(target, timeouts, canary.email, canary.password)
                    took.append(f"{attempt.elapsed_s * 1000:.0f} ms")
                    if attempt.status_code != 200 or \
                            attempt.elapsed_s * 1000 >= SLOW_QUERY_MS:
                        break
            return attempt.status_code == 200, output(
                f"logins took {', '.join(took)} (HTTP {attempt.status_code})"), ""

        book.step("the symptom: time a user's login",
                  library_call("runbook.actions.users.login"), symptom)

        def grep() -> tuple[bool, str, str]:
            logs = platform.logs("api", since="5m", lines=2000)
            took = [m for m in (_QUERY_TOOK.search(line) for line in logs.lines) if m]
            slowest = max(took, key=lambda m: int(m.group(1)), default=None)
            return logs.ok, output(
                f"{len(took)} 'query took' lines; the slowest {slowest.group(1)} ms: "
                f"{slowest.group(2)[:120]} (the statement that waited, not the one it waited"
                " on)" if slowest else "no 'query took' lines",
                [m.group(0)[:160] for m in took[-5:]]), logs.activity.error

        book.step("review slow queries",
                  library_call("runbook.platforms.PlatformAdapter.logs", "api"), grep,
                  runbook_says="railway logs --service api | grep \"query took\"")
        book.step("add database indexes if needed", (), lambda: (True, output(
            "not done: no statement here is slow on its own, they wait on a lock; a plain"
            " CREATE INDEX would take that very lock"), ""),
            runbook_says="railway run --service api npx prisma studio")
        return book.activities

    def correction(self) -> list[Activity]:
        book = StepLog(self.context)
        target, timeouts = self.context.target, self.context.timeouts
        chosen: list[int] = []

        def identify() -> tuple[bool, str, str]:
            def look() -> tuple[list[dict[str, Any]], Offenders]:
                found = postgres_probe.sessions(target, timeouts)
                return found, postgres_probe.offenders(found, SLOW_QUERY_MS)

            # A statement is over the threshold part of the time: look for up to 3 s.
            seen = wait_until(look, timeout=3.0, interval=0.1,
                              accept=lambda s: bool(s[1][2] or s[1][0]),
                              describe=lambda _: "no offender", errors=()).value
            assert seen is not None  # errors=(): every look returned or raised
            found, (slow, waiting, blockers) = seen
            chosen.extend(blockers or [int(s["pid"]) for s in slow[:1]])
            named = [s for s in found if int(s["pid"]) in chosen]
            return True, output(
                f"offender pid(s) {', '.join(map(str, chosen)) or 'none'}: "
                + "; ".join(f"{s['application_name'] or '-'} {s['state']} for"
                            f" {s['running_ms']} ms: {s['query']}" for s in named)
                + f" ({len(waiting)} session(s) waiting on it)",
                {"slow": slow[:5], "waiting": waiting[:5]}), ""

        book.step("identify the offender in pg_stat_activity (duration, pg_blocking_pids)",
                  library_call("runbook.probes.postgres.sessions"), identify,
                  runbook_says="(not in the runbook)")
        if chosen:
            book.step("cancel the offending statement, terminate it if it does not stop",
                      library_call("psycopg.Connection.execute",
                                   f"select pg_cancel_backend({chosen[0]})"),
                      lambda: (True, output("done", _end_sessions(target, timeouts, chosen)),
                               ""), runbook_says="(not in the runbook)")
        return book.activities


__all__ = ["SECTION", "SLOW_QUERY_MS", "SlowQuery", "SlowQueryIncident", "holder_files",
           "stop_holder"]
