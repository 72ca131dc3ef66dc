"""Faults for the runbook's service incidents, on the sandbox.

- ``service-env-override``: a service restarted with one variable changed for that run only
  (``set`` to a non-secret value, ``unset``, ``random``: a fresh value never recorded, or
  ``drop-password``: a URL variable without its password). The revert is a plain restart,
  which gives the service its configured environment back.
- ``connection-hog``: a separate client process (``python -m runbook.drills.holder``) opens
  connections with the application's own role until PostgreSQL refuses one, and holds them
  idle. Its pid and start time are written under the sandbox's state directory so a revert in
  any process (the drill's ``finally`` or the restoration guard) stops exactly that process,
  then terminates whatever connections of its ``application_name`` are left.
- ``worker-down-backlog``: the worker stopped and held while jobs keep arriving: canary jobs
  with fixed ids (``backlog_ids``) pile up in ``wait``. The revert starts the worker and
  removes those jobs wherever they are.

Parameters are JSON and never hold a secret: an override's value is computed from the target
at inject time (``random`` and ``drop-password``) and never recorded. Every revert is
idempotent and every wait bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from bullmq import Queue
from redis.asyncio import Redis

from runbook.config import SECRET_VARIABLES, Target
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.holder import APPLICATION_NAME
from runbook.drills.processes import read_json, stop_recorded, terminate_sessions
from runbook.errors import ConfigError, SandboxError
from runbook.platforms.base import SERVICES, record
from runbook.probes import describe_error
from runbook.probes import queues as queue_probe
from runbook.results import Activity
from runbook.sandbox import Sandbox
from runbook.sandbox.components import package_root
from runbook.sandbox.procs import start_time
from runbook.timeouts import Timeouts

T = TypeVar("T")

#: How an override changes the variable (``service-env-override``'s ``change``).
CHANGES: Mapping[str, str] = {
    "set": "set to a given (non-secret) value",
    "unset": "removed",
    "random": "set to a fresh random value (never recorded)",
    "drop-password": "without the password in its URL",
}
#: How long a restart may take before the fault (or its revert) is recorded as failed.
RESTART_TIMEOUT_S = 30.0
#: How long the holder may take to fill the server's connection slots.
HOLDER_FILL_TIMEOUT_S = 45.0
#: Grace between SIGTERM and SIGKILL for the holder.
HOLDER_STOP_GRACE_S = 5.0
#: Holders started by this process, so their exit status is collected (no zombie is left).
_STARTED: dict[int, subprocess.Popen[bytes]] = {}
#: Canary jobs of the backlog carry this id prefix (a ``runbook-canary-`` id).
BACKLOG_PREFIX = f"{queue_probe.CANARY_ID_PREFIX}backlog-"
#: How long removing the backlog's jobs may take (an active job is locked until it ends).
BACKLOG_CLEANUP_S = 10.0




# -- service-env-override ------------------------------------------------------------------


def _service(params: Params) -> str:
    service = str(params["service"])
    if service not in SERVICES:
        raise ConfigError(f"service-env-override: unknown service {service!r}; one of"
                          f" {', '.join(SERVICES)}")
    return service


def without_password(url: str) -> str:
    """``url`` with the password left out of its user information (user, host, port,
    path and query kept). Raises ``ConfigError`` when it has none to leave out."""
    parts = urlsplit(url)
    if parts.password is None or "@" not in parts.netloc:
        raise ConfigError("drop-password: the variable's URL holds no password")
    userinfo, hostport = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{hostport}"))


def override_for(target: Target, params: Params) -> dict[str, str | None]:
    """The restart override ``params`` ask for (``variable``, ``change``, ``value`` for
    ``set``). Raises ``ConfigError`` for an unknown change, or a ``set`` of a secret
    variable (its value would sit in the drill's parameters)."""
    variable = str(params["variable"])
    change = str(params["change"])
    if change not in CHANGES:
        raise ConfigError(f"service-env-override: unknown change {change!r}; one of"
                          f" {', '.join(CHANGES)}")
    if change == "unset":
        return {variable: None}
    if change == "random":
        return {variable: secrets.token_hex(32)}
    if change == "drop-password":
        return {variable: without_password(target.require(variable))}
    if variable in SECRET_VARIABLES:
        raise ConfigError(f"service-env-override: {variable} is a secret; its value cannot be"
                          " a drill parameter (use change 'random' or 'drop-password')")
    if "value" not in params:
        raise ConfigError("service-env-override: change 'set' needs a 'value'")
    return {variable: str(params["value"])}


@fault("service-env-override",
       "a service restarted with one variable changed for that run (plain restart reverts)")
class ServiceEnvOverride:
    """``params``: ``service``, ``variable``, ``change`` (see ``CHANGES``), ``value``."""

    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        service = _service(params)
        variable, change = str(params["variable"]), str(params["change"])
        overrides = override_for(context.target, params)
        sandbox = Sandbox(context.home)
        hidden = [v for v in overrides.values() if v]

        def body() -> tuple[bool, str, str]:
            try:
                after = sandbox.restart(service, overrides, timeout=RESTART_TIMEOUT_S)
            except SandboxError as exc:
                return False, "", str(exc)
            return True, (f"{service} running (pid {after.pid}) with {variable}"
                          f" {CHANGES[change]}"), ""

        try:
            return record(f"restart {service} with {variable} {change}",
                          ("runbook", "sandbox", "restart", service, f"{variable}=<{change}>"),
                          body, context.redactor(*hidden))
        finally:
            overrides.clear()

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        service = _service(params)
        sandbox = Sandbox(context.home)

        def body() -> tuple[bool, str, str]:
            current = sandbox.status().components[service]
            if current.running and not current.env_overrides:
                return True, f"{service} already runs as configured (pid {current.pid})", ""
            try:
                after = sandbox.restart(service, timeout=RESTART_TIMEOUT_S)
            except SandboxError as exc:
                return False, "", str(exc)
            if after.env_overrides:
                return False, "", (f"{service} still runs with overrides"
                                   f" {', '.join(after.env_overrides)}")
            return True, f"{service} restarted as configured (pid {after.pid})", ""

        return record(f"restart {service} as configured", ("runbook", "sandbox", "restart",
                                                            service), body, context.redactor())


# -- connection-hog ------------------------------------------------------------------------


def _holder_files(context: DrillContext) -> tuple[Path, Path, Path]:
    directory = context.state_directory()
    return (directory / "connection-holder.json", directory / "connection-holder.state.json",
            directory / "connection-holder.log")


def stop_holder(context: DrillContext) -> str:
    """Stop the holder recorded in the pid file (only if that pid still is the holder
    started then) and remove its files; says what it did. Idempotent."""
    pidfile, state, _ = _holder_files(context)
    said, pid = stop_recorded(pidfile, "runbook.drills.holder", grace=HOLDER_STOP_GRACE_S)
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
                    [sys.executable, "-m", "runbook.drills.holder"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=_holder_environment(dsn, state, application_name, max_s),
                    start_new_session=True, close_fds=True,
                )
            _STARTED[proc.pid] = proc
            pidfile.write_text(json.dumps({"pid": proc.pid, "start": start_time(proc.pid),
                                           "application_name": application_name}),
                               encoding="utf-8")
            deadline = time.monotonic() + HOLDER_FILL_TIMEOUT_S
            report = None
            while time.monotonic() < deadline and proc.poll() is None:
                report = read_json(state)
                if report is not None:
                    break
                time.sleep(0.05)
            if report is None:
                report = read_json(state)
            if report is None:
                why = (f"exited with code {proc.returncode}" if proc.poll() is not None
                       else f"not full within {HOLDER_FILL_TIMEOUT_S:g} s")
                return False, "", f"the connection holder {why}; see {log_path}"
            holding, refused = int(report.get("holding") or 0), str(report.get("refused"))
            output = (f"holder pid {proc.pid} ({application_name}) holds {holding} connections"
                      f" as the application's role; the server refused the next: {refused}"
                      + ("" if stale == "no holder recorded" else f" ({stale} first)"))
            return holding > 0 and bool(refused), output, "" if holding else refused

        return record("hold every connection slot",
                      ("python", "-m", "runbook.drills.holder", f"({application_name})"),
                      body, context.redactor())

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
                      ("kill", "holder", "&&", "select", "pg_terminate_backend(...)"), body,
                      context.redactor())


# -- worker-down-backlog -------------------------------------------------------------------


def backlog_ids(queue: str, jobs: int) -> list[str]:
    """The fixed job ids of the backlog's canary jobs on ``queue``."""
    return [f"{BACKLOG_PREFIX}{queue}-{index}" for index in range(jobs)]


def on_queue(target: Target, timeouts: Timeouts, queue: str,
             work: Callable[[Queue, Redis], Awaitable[T]]) -> T:
    """``probes.queues.run_async`` on the target's Redis: ``work(queue, client)`` on a
    bounded, retry-free client in a fresh event loop, both closed after."""
    return queue_probe.run_async(target.require("REDIS_URL"), timeouts, queue, work)


async def remove_jobs(bull: Queue, connection: Redis, queue: str, ids: list[str],
                      budget_s: float) -> list[str]:
    """Remove the jobs ``ids`` (an active one is locked: retried until it ends or
    ``budget_s`` passes); returns the ids still present."""
    deadline = time.monotonic() + budget_s
    left = list(ids)
    while True:
        for job_id in list(left):
            await bull.remove(job_id)
            if not await connection.exists(f"{queue_probe.PREFIX}:{queue}:{job_id}"):
                left.remove(job_id)
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.1)


def _backlog(params: Params) -> tuple[str, int]:
    queue = str(params.get("queue") or "email")
    if queue not in queue_probe.QUEUES:
        raise ConfigError(f"worker-down-backlog: unknown queue {queue!r}")
    return queue, max(1, int(params.get("jobs") or 3))


@fault("worker-down-backlog",
       "the worker stopped and held while jobs keep arriving (canary jobs pile up)")
class WorkerDownBacklog:
    """``params``: ``queue`` (default ``email``), ``jobs`` (canary jobs to enqueue, 3)."""

    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        queue, jobs = _backlog(params)
        ids = backlog_ids(queue, jobs)
        sandbox = Sandbox(context.home)

        async def enqueue(bull: Queue, connection: Redis) -> int:
            stale = await remove_jobs(bull, connection, queue, ids, BACKLOG_CLEANUP_S)
            if stale:
                raise SandboxError(f"backlog jobs of an earlier run remain: {', '.join(stale)}")
            for job_id in ids:
                await bull.add(queue_probe.CANARY_JOB, {"by": "runbook game day"},
                               {"jobId": job_id, "attempts": 1})
            return int(await connection.llen(queue_probe.key(queue, "wait")))

        def body() -> tuple[bool, str, str]:
            try:
                held = sandbox.stop("worker")
                waiting = on_queue(context.target, context.timeouts, queue, enqueue)
            except (SandboxError, OSError) as exc:
                return False, "", str(exc)
            except Exception as exc:
                return False, "", describe_error(exc)
            return held.state == "held", (f"worker {held.state}; {jobs} canary jobs enqueued on"
                                          f" {queue} ({waiting} waiting)"), ""

        return record("stop the worker while jobs arrive",
                      ("runbook", "sandbox", "stop", "worker", "&&", "enqueue", f"{jobs}",
                       f"{queue_probe.CANARY_JOB} jobs on {queue}"), body, context.redactor())

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        queue, jobs = _backlog(params)
        ids = backlog_ids(queue, jobs)
        sandbox = Sandbox(context.home)

        async def clean(bull: Queue, connection: Redis) -> list[str]:
            return await remove_jobs(bull, connection, queue, ids, BACKLOG_CLEANUP_S)

        def body() -> tuple[bool, str, str]:
            said = []
            try:
                current = sandbox.status().components["worker"]
                if current.running:
                    said.append(f"worker already running (pid {current.pid})")
                else:
                    started = sandbox.start("worker", wait=True, timeout=RESTART_TIMEOUT_S)
                    said.append(f"worker running (pid {started.pid})")
                left = on_queue(context.target, context.timeouts, queue, clean)
            except SandboxError as exc:
                return False, "; ".join(said), str(exc)
            except Exception as exc:
                return False, "; ".join(said), describe_error(exc)
            if left:
                return False, "; ".join(said), f"backlog jobs not removed: {', '.join(left)}"
            said.append(f"backlog canary jobs on {queue} removed")
            return True, "; ".join(said), ""

        return record("start the worker and remove the backlog",
                      ("runbook", "sandbox", "start", "worker", "&&", "remove", "canary jobs"),
                      body, context.redactor())


__all__ = [
    "BACKLOG_PREFIX",
    "CHANGES",
    "ConnectionHog",
    "ServiceEnvOverride",
    "WorkerDownBacklog",
    "backlog_ids",
    "on_queue",
    "override_for",
    "remove_jobs",
    "stop_holder",
    "terminate_connections",
    "without_password",
]
