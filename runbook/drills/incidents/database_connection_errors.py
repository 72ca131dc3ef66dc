"""Incident Response > Database Connection Errors: the database stopped, and its connection
slots all taken by a leaking client.

The section's steps 1-5 verify DATABASE_URL, check the database service, test the
connection, check the connection limits and restart the API. Neither fault ends by them:
no step brings a stopped database back, and restarting the API frees no slot held by
another client. The records say what to add; the corrected procedures restart the database
service, and terminate the leaking client's idle connections.

``connection-hog``: a separate client process (``python -m
runbook.drills.connection_holder``) opens connections with the application's own role until
PostgreSQL refuses one, and holds them idle. Its pid and start time are written under the
sandbox's state directory so a revert in any process (the drill's ``finally`` or the
restoration guard) stops exactly that process, then terminates whatever connections of its
``application_name`` are left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

from runbook.drills.component_down import start_component
from runbook.drills.connection_holder import APPLICATION_NAME
from runbook.drills.engine import Incident, fixed
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.steps import StepLog, output
from runbook.drills.processes import read_json, stop_recorded, terminate_sessions
from runbook.errors import SandboxError
from runbook.platforms.base import library_call, record
from runbook.probes import describe_error
from runbook.probes import postgres as postgres_probe
from runbook.results import Activity
from runbook.sandbox import Sandbox
from runbook.sandbox.components import package_root
from runbook.sandbox.procs import is_alive, start_time
from runbook.sections import DATABASE_ERRORS
from runbook.wait import wait_until

#: What the database says when the connection slots a role may use are all taken:
#: "too many clients already" when every slot is, "remaining connection slots are reserved"
#: when only the superuser-reserved ones are left (a non-superuser application role).
CONNECTION_LIMIT = re.compile(r"too many clients|remaining connection slots are reserved",
                              re.IGNORECASE)
#: Our own database sessions (never terminated by a correction).
_OWN_APPLICATIONS = frozenset({"legacyvideo-runbook"})
#: How long the holder may take to fill the server's connection slots.
HOLDER_FILL_TIMEOUT_S = 45.0
#: Grace between SIGTERM and SIGKILL for the holder.
HOLDER_STOP_GRACE_S = 5.0
#: Holders started by this process, so their exit status is collected (no zombie is left).
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


# -- connection use --------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionUse:
    """``pg_stat_activity`` against ``max_connections``, as the database's admin sees it."""

    max_connections: int
    reserved: int
    clients: int
    #: ``(application_name, usename, state, count)``, most connections first.
    groups: tuple[tuple[str, str, str, int], ...]

    @property
    def available(self) -> int:
        """Slots a non-superuser role may use."""
        return self.max_connections - self.reserved

    @property
    def exhausted(self) -> bool:
        return self.clients >= self.available

    def top_idle(self) -> tuple[str, str, int] | None:
        """The client holding the most idle connections (not the runbook's own)."""
        for application, user, state, count in self.groups:
            if state == "idle" and application not in _OWN_APPLICATIONS:
                return application, user, count
        return None

    def describe(self) -> str:
        top = ", ".join(f"{a} ({u}, {s}) {n}" for a, u, s, n in self.groups[:3])
        verdict = "LIMIT REACHED" if self.exhausted else "below the limit"
        return (f"{self.clients} client connections of max_connections {self.max_connections}"
                f" ({self.reserved} reserved for superusers, so {self.available} for"
                f" applications): {verdict}; most: {top or 'none'}")


def connection_use(context: DrillContext) -> ConnectionUse:
    """Measure connection use as the database's admin (the sandbox's superuser, who can
    still connect when the application's slots are gone). Raises ``psycopg.Error``."""
    dsn = Sandbox(context.home).superuser_dsn()
    with postgres_probe.connect(dsn, context.timeouts) as conn:
        limits = conn.execute("select current_setting('max_connections')::int,"
                              " current_setting('superuser_reserved_connections')::int"
                              ).fetchone()
        rows = conn.execute(
            "select coalesce(nullif(application_name, ''), '(none)'),"
            " coalesce(usename::text, '(none)'), coalesce(state, '(none)'), count(*)"
            " from pg_stat_activity where backend_type = 'client backend'"
            " and pid <> pg_backend_pid() group by 1, 2, 3 order by 4 desc, 1"
        ).fetchall()
    assert limits is not None
    groups = tuple((str(a), str(u), str(s), int(n)) for a, u, s, n in rows)
    return ConnectionUse(int(limits[0]), int(limits[1]), sum(g[3] for g in groups), groups)


# -- the connection-hog fault -----------------------------------------------------------------


def _holder_files(context: DrillContext) -> tuple[Path, Path, Path]:
    directory = context.state_directory()
    return (directory / "connection-holder.json", directory / "connection-holder.state.json",
            directory / "connection-holder.log")


def stop_holder(context: DrillContext) -> str:
    """Stop the holder recorded in the pid file (only if that pid still is the holder
    started then) and remove its files; says what it did. Idempotent."""
    pidfile, state, _ = _holder_files(context)
    said, pid = stop_recorded(pidfile, "runbook.drills.connection_holder",
                              grace=HOLDER_STOP_GRACE_S)
    proc = _STARTED.pop(pid, None)
    if proc is not None:  # ours: collect its exit status, leave no zombie
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(HOLDER_STOP_GRACE_S)
    for path in (pidfile, state):
        path.unlink(missing_ok=True)
    return said


def terminate_connections(context: DrillContext, application_name: str) -> tuple[int, int]:
    """As the database's superuser, terminate every connection named ``application_name``;
    returns ``(terminated, left)``. Raises ``psycopg.Error`` when the server does not answer."""
    return terminate_sessions(Sandbox(context.home).superuser_dsn(), context.timeouts,
                              application_name)


def _holder_environment(dsn: str, state: Path, application_name: str, max_s: float
                        ) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    root = str(package_root())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.update(RUNBOOK_HOLDER_DSN=dsn, RUNBOOK_HOLDER_STATE=str(state),
               RUNBOOK_HOLDER_APP=application_name, RUNBOOK_HOLDER_MAX_S=f"{max_s:g}")
    return env


@fault("connection-hog",
       "a leaking client holds every connection slot the application's role may use")
class ConnectionHog:
    """``params``: ``application_name`` (default ``runbook-conn-holder``), ``max_hold_s``
    (the holder's own lifetime cap, default 300)."""

    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        application_name = str(params.get("application_name") or APPLICATION_NAME)
        max_s = float(params.get("max_hold_s") or 300)
        pidfile, state, log_path = _holder_files(context)
        dsn = context.target.require("DATABASE_URL")

        def body() -> tuple[bool, str, str]:
            stale = stop_holder(context)  # a holder left by an earlier run goes first
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "runbook.drills.connection_holder"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=_holder_environment(dsn, state, application_name, max_s),
                    start_new_session=True, close_fds=True,
                )
            _STARTED[proc.pid] = proc
            pidfile.write_text(json.dumps({"pid": proc.pid, "start": start_time(proc.pid),
                                           "application_name": application_name}),
                               encoding="utf-8")
            report = wait_until(lambda: read_json(state), timeout=HOLDER_FILL_TIMEOUT_S,
                                interval=0.05, accept=lambda r: r is not None,
                                stop=lambda: proc.poll() is not None, errors=()).value
            if report is None:
                report = read_json(state)
            if report is None:
                why = (f"exited with code {proc.returncode}" if proc.poll() is not None
                       else f"not full within {HOLDER_FILL_TIMEOUT_S:g} s")
                return False, "", f"the connection holder {why}; see {log_path}"
            holding, refused = int(report.get("holding") or 0), str(report.get("refused"))
            said = (f"holder pid {proc.pid} ({application_name}) holds {holding} connections"
                    f" as the application's role; the server refused the next: {refused}"
                    + ("" if stale == "no holder recorded" else f" ({stale} first)"))
            return holding > 0 and bool(refused), said, "" if holding else refused

        return record("hold every connection slot",
                      (sys.executable, "-m", "runbook.drills.connection_holder"), body,
                      context.redactor())

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        application_name = str(params.get("application_name") or APPLICATION_NAME)

        def body() -> tuple[bool, str, str]:
            said = stop_holder(context)
            try:
                terminated, left = terminate_connections(context, application_name)
            except (psycopg.Error, SandboxError) as exc:
                down = not Sandbox(context.home).status().components["postgres"].running
                if down:  # a stopped server holds no connections
                    return True, f"{said}; the database is not running", ""
                return False, said, f"cannot check the holder's connections: {describe_error(exc)}"
            if left:
                return False, said, f"{left} connections of {application_name} remain"
            return True, f"{said}; {terminated} leftover connections terminated", ""

        return record("release the held connections",
                      library_call("runbook.drills.processes.terminate_sessions",
                                   application_name), body, context.redactor())

    @staticmethod
    def present(context: DrillContext, params: Params) -> str | None:
        """The holder still holds connections (its process alive, its connections there)."""
        pidfile, _, _ = _holder_files(context)
        recorded = read_json(pidfile)
        if recorded is None or not is_alive(int(recorded.get("pid") or 0)):
            return None
        application_name = str(params.get("application_name") or APPLICATION_NAME)
        use = connection_use(context)
        held = sum(n for a, _, _, n in use.groups if a == application_name)
        return (f"{application_name} still holds {held} connections ({use.clients} of"
                f" {use.available})" if held else None)


# -- the game days ---------------------------------------------------------------------------


class _DatabaseErrors(Incident):
    section = DATABASE_ERRORS.section
    signal = "the database refusing the application's connections"

    def _limits_step(self, book: StepLog) -> ConnectionUse | None:
        measured: list[ConnectionUse] = []

        def body() -> tuple[bool, str, str]:
            try:
                measured.append(connection_use(self.context))
            except Exception as exc:
                return True, output(f"cannot measure: {describe_error(exc)}"), ""
            return True, output(measured[0].describe()), ""

        book.step("4. check connection limits (PostgreSQL max_connections)",
                  library_call("runbook.drills.incidents.database_connection_errors"
                               ".connection_use"), body,
                  runbook_says="PostgreSQL max_connections")
        return measured[0] if measured else None

    def runbook_steps(self) -> list[Activity]:
        book = StepLog(self.context)
        target, timeouts = self.context.target, self.context.timeouts
        book.compare("1. verify DATABASE_URL (compared between the api and the worker)",
                     "DATABASE_URL", runbook_says="railway variables --service api")
        book.status("2. check the database service", runbook_says="railway status")
        book.check("3. test the connection (read-only: prisma db pull rewrites the schema"
                   " file)", "runbook.probes.postgres.answers",
                   lambda: postgres_probe.answers(target, timeouts),
                   runbook_says="railway run --service api npx prisma db pull")
        self.use = self._limits_step(book)
        book.restart("5. restart the API", "api", runbook_says="railway restart --service api")
        return book.activities


class DatabaseDown(_DatabaseErrors):
    name = "database-connection-errors"
    fault = "component-down"
    params = fixed(component="postgres")
    description = "PostgreSQL stopped and held down"
    defect = ("Database Connection Errors has no step that brings the database back: step 5"
              " restarts the API, which cannot reach a database service that is down"
              " (measured: the database still refused connections after step 5). Add: when"
              " step 2 or 3 shows the database service down, restart or recover the database"
              " service first (railway restart --service <postgres service>; if it will not"
              " start, Disaster Recovery > Database Corruption), confirm with step 3, then"
              " restart the API only if its errors persist.")

    def correction(self) -> list[Activity]:
        return [start_component(self.context, "postgres", "restart the database service",
                                runbook_says="railway restart --service <postgres service>")]


class ConnectionLimit(_DatabaseErrors):
    name = "connection-limit-exhausted"
    fault = "connection-hog"
    params = fixed(application_name=APPLICATION_NAME, max_hold_s=300)
    description = "a leaking client holds every connection slot of the application's role"
    defect = ("Database Connection Errors step 4 says to check connection limits but not"
              " what to do when they are reached, and step 5 (restart the API) frees no slot"
              " held by another client (measured: still refused after step 5). Add to step 4:"
              " as the database's admin user compare count(*) from pg_stat_activity with"
              " max_connections (minus superuser_reserved_connections), group by"
              " application_name, usename and state to find the client holding idle"
              " connections, terminate them (select pg_terminate_backend(pid) from"
              " pg_stat_activity where application_name = '<client>' and state = 'idle'),"
              " then fix or stop that client (its pool size or leak) so they do not come"
              " back; restart the API only when it is the one leaking.")

    def correction(self) -> list[Activity]:
        use = getattr(self, "use", None)
        top = use.top_idle() if isinstance(use, ConnectionUse) else None
        book = StepLog(self.context)

        def body() -> tuple[bool, str, str]:
            if top is None:
                return False, "", "step 4 found no client holding idle connections"
            application, user, count = top
            dsn = Sandbox(self.context.home).superuser_dsn()
            with postgres_probe.connect(dsn, self.context.timeouts, read_only=False) as conn:
                row = conn.execute(
                    "select count(*) filter (where pg_terminate_backend(pid))"
                    " from pg_stat_activity where application_name = %s and usename = %s"
                    " and state = 'idle' and pid <> pg_backend_pid()", (application, user),
                ).fetchone()
            terminated = int(row[0]) if row else 0
            return terminated > 0, (f"terminated {terminated} idle connections of"
                                    f" {application} ({user}); step 4 counted {count}"), ""

        book.step("terminate the idle connections of the client holding them",
                  library_call("psycopg.Connection.execute",
                               "select pg_terminate_backend(pid) from pg_stat_activity where"
                               " application_name = %s and state = 'idle'"), body,
                  runbook_says="(not in the runbook)")
        return book.activities
