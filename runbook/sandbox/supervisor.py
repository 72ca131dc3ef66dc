"""The sandbox supervisor: ``python -m runbook.sandbox.supervisor --home RUNBOOK_HOME``.

One detached process that owns every component of one sandbox:

* starts them in dependency order with as much overlap as the order allows (postgres'
  initdb, redis, s3, mail and web at once; api and worker once the database is migrated and
  Redis answers), and calls a component *running* only once it answers over its own
  protocol (SQL, PING, HTTP, BullMQ registration);
* records everything in ``state.json`` (atomically; no secrets) and appends each
  component's output to ``logs/<name>.log``;
* restarts api, worker and web when they die, with a short counted backoff, as the hosting
  platform does; leaves postgres, redis, s3 and mail down when they die;
* obeys restart / stop (held down) / start / restart-with-environment-overrides over its
  control channel (``runbook.sandbox.control``);
* backs up the application database into ``sandbox/backups/`` once it is seeded at every
  start, then every ``RUNBOOK_SANDBOX_BACKUP_INTERVAL`` seconds (``runbook.sandbox.backups``);
* on SIGTERM, SIGINT or ``/shutdown`` stops every child (PostgreSQL with a fast shutdown)
  and exits. If it is killed instead, its children get a parent-death signal (Linux) and
  ``Sandbox.down`` sweeps whatever is left using the pids in ``state.json``;
* with ``RUNBOOK_SANDBOX_OWNER_PID`` in its environment (one pid or several, separated by
  commas; the test suite sets it), shuts down the same way once one of those processes is
  gone, however it ended (SIGKILL included): a sandbox a test run started never outlives the
  run. Without it (``runbook sandbox up``) the sandbox runs until it is brought down.

Exit codes: 0 after a clean shutdown, 1 when it cannot start, 2 when another supervisor
already owns this state directory.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from runbook.errors import SandboxError
from runbook.sandbox import appdb, backups, components, postgres, redis_server
from runbook.sandbox.binaries import Binaries, find_binaries
from runbook.sandbox.components import APP_SERVICES, SPECS, ComponentSpec
from runbook.sandbox.control import MAX_BODY, ControlEndpoint
from runbook.sandbox.credentials import Secrets, ensure_secrets, with_admin_token
from runbook.sandbox.layout import COMPONENTS, Layout, write_json_atomic
from runbook.sandbox.ports import allocate_ports
from runbook.sandbox.procs import (
    is_same_process,
    parent_death_preexec,
    reserve_cpu_share,
    start_time,
)
from runbook.timeouts import Timeouts
from runbook.wait import wait_until

log = logging.getLogger("runbook.sandbox.supervisor")

#: Delay before an automatic restart, by consecutive crash number (then the last value).
BACKOFF_S: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0)
#: A process that ran this long before dying starts the backoff afresh.
STABLE_AFTER_S = 30.0
READY_POLL_S = 0.05
#: Stop order on shutdown: the apps first, then what they use.
SHUTDOWN_TIERS: tuple[tuple[str, ...], ...] = (
    ("api", "worker", "web", "mail", "s3"),
    ("redis", "postgres"),
)
#: The processes whose end brings the sandbox down (set by the test suite; see ``Owner``).
OWNER_VARIABLE = "RUNBOOK_SANDBOX_OWNER_PID"
#: How often the supervisor looks at its owners.
OWNER_POLL_S = 0.25


def utc_iso(moment: float | None = None) -> str:
    stamp = datetime.fromtimestamp(time.time() if moment is None else moment, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = {"WARNING": "WARN", "CRITICAL": "ERROR"}.get(record.levelname, record.levelname)
        message = " | ".join(
            part for part in record.getMessage().splitlines() if part.strip()
        )
        return f"{utc_iso(record.created)} {level} supervisor: {message}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class Owner:
    """The processes a sandbox lives for (a test run: its xdist controller and the worker;
    a process a test starts adds itself): the supervisor shuts the sandbox down once one of
    them is gone.

    Each is identified by its pid and its start time, read when the supervisor starts, so a
    pid the kernel hands to another process after an owner died never keeps the sandbox up.
    """

    pids: tuple[int, ...]
    started: tuple[int | None, ...]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Owner | None:
        """The owners named by ``RUNBOOK_SANDBOX_OWNER_PID`` (pids separated by commas),
        ``None`` when it is unset or empty. Raises ``SandboxError`` when one is not a pid."""
        raw = environ.get(OWNER_VARIABLE, "")
        words = [word.strip() for word in raw.split(",") if word.strip()]
        if not words:
            return None
        if not all(word.isdigit() and int(word) > 0 for word in words):
            raise SandboxError(
                f"{OWNER_VARIABLE}={raw!r} is not a list of process ids; set the pids whose"
                " exit stops the sandbox, or unset it for a sandbox that runs until"
                " `runbook sandbox down`"
            )
        pids = tuple(dict.fromkeys(int(word) for word in words))
        return cls(pids, tuple(start_time(pid) for pid in pids))

    def gone(self) -> int | None:
        """The pid of the first owner no longer running, ``None`` while they all run."""
        return next((pid for pid, started in zip(self.pids, self.started, strict=True)
                     if not is_same_process(pid, started)), None)


class _SpawnRequest:
    def __init__(self, argv: list[str], kwargs: dict[str, Any]) -> None:
        self.argv = argv
        self.kwargs = kwargs
        self.future: Future[subprocess.Popen[bytes]] = Future()


class Runner:
    """One component's life: launch, wait until ready, watch, react to its exit.

    Every attribute but ``spec``/``thread`` is guarded by the supervisor's condition.
    """

    def __init__(self, supervisor: Supervisor, spec: ComponentSpec) -> None:
        self.sup = supervisor
        self.spec = spec
        self.name = spec.name
        self.state = "starting"
        self.desired = "up"
        self.overrides: dict[str, str | None] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.pid_start: int | None = None
        self.launches = 0
        self.restarts = 0
        self.failures = 0
        self.pending_auto_restart = False
        self.action: str | None = None
        self.kick = False
        self.last_exit: dict[str, Any] | None = None
        self.started_at: str | None = None
        self.ready_at: str | None = None
        self.time_to_running_s: float | None = None
        self._ready_mono: float | None = None
        self.thread = threading.Thread(target=self._run, name=f"runner-{self.name}", daemon=True)

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # a bug here must not leave the component silently unmanaged
            log.exception("runner for %s failed", self.name)
            with self.sup.cond:
                self.state = "crashed"
                self.last_exit = {"at": utc_iso(), "error": "supervisor runner failed"}
                self.sup.cond.notify_all()
            self.sup.write_state()

    def _loop(self) -> None:
        sup = self.sup
        first = True
        while True:
            with sup.cond:
                while not sup.stopping and not (
                    self.desired == "up" and (not first or sup.dependencies_met(self.spec))
                ):
                    sup.cond.wait(0.5)
                if sup.stopping:
                    return
                self.launches += 1
                if self.pending_auto_restart:
                    self.restarts += 1
                    self.pending_auto_restart = False
                self.kick = False
                self.action = None
                overrides = dict(self.overrides)
                self.state = "starting"
                self.pid = None
                self.pid_start = None
                self.ready_at = None
                self._ready_mono = None
                self.time_to_running_s = None
                self.started_at = utc_iso()
                launch = self.launches
            first = False
            launched_mono = time.monotonic()
            sup.write_state()
            try:
                proc = sup.launch(self.name, overrides)
            except Exception as exc:
                self._on_exit(None, f"could not start: {_one_line(exc)}")
                continue
            with sup.cond:
                self.proc = proc
                self.pid = proc.pid
                self.pid_start = start_time(proc.pid)
                # A command that came while the process was being launched saw no process
                # to stop: honour it now.
                if sup.stopping or self.desired != "up":
                    self.action = "stop"
                elif self.kick:
                    self.action = "restart"
                superseded = self.action is not None
                sup.cond.notify_all()
            shown = f", env overrides: {', '.join(sorted(overrides))}" if overrides else ""
            sup.event(self.name, "INFO", f"started {self.name} (pid {proc.pid}, launch {launch}"
                      f"{shown})")
            sup.write_state()
            note: str | None = None
            if superseded:
                self._kill_own(proc)
            elif self._await_ready(proc):
                elapsed = time.monotonic() - launched_mono
                with sup.cond:
                    self.state = "running"
                    self.ready_at = utc_iso()
                    self._ready_mono = time.monotonic()
                    self.time_to_running_s = round(elapsed, 3)
                    sup.cond.notify_all()
                sup.event(self.name, "INFO", f"{self.name} is running ({elapsed:.2f}s)")
                sup.write_state()
                sup.on_running(self)
            elif proc.poll() is None and self.action is None:
                note = f"not ready within {self.spec.start_timeout_s:.0f}s"
                sup.event(self.name, "ERROR", f"{self.name} {note}; stopping it")
                self._kill_own(proc)
            code = proc.wait()
            self._on_exit(code, note)

    def _kill_own(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop this runner's own process: the component's signal, SIGKILL after grace."""
        self._signal(proc, self.spec.stop_signal)
        try:
            proc.wait(self.spec.stop_grace_s)
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGKILL)

    def _await_ready(self, proc: subprocess.Popen[bytes]) -> bool:
        check = self.sup.ready_check(self.name)

        def ready() -> bool:
            if proc.poll() is not None:
                return False  # ``stop`` ends the wait
            try:
                return bool(check())
            except Exception as exc:  # a readiness probe must never kill the runner
                log.debug("readiness of %s: %s", self.name, _one_line(exc))
                return False

        waited = wait_until(ready, timeout=self.spec.start_timeout_s, interval=READY_POLL_S,
                            stop=lambda: proc.poll() is not None, errors=())
        return waited.ok and proc.poll() is None

    def _on_exit(self, code: int | None, note: str | None) -> None:
        sup = self.sup
        delay = 0.0
        with sup.cond:
            self.proc = None
            self.pid = None
            self.pid_start = None
            exit_info: dict[str, Any] = {"at": utc_iso(), "launch": self.launches, "code": code}
            if code is not None and code < 0:
                with contextlib.suppress(ValueError):
                    exit_info["signal"] = signal.Signals(-code).name
            if note:
                exit_info["error"] = note
            self.last_exit = exit_info
            action, self.action = self.action, None
            if sup.stopping:
                self.state = "stopped"
                what = "stopped"
            elif action == "stop" or self.desired == "held":
                self.state = "held"
                what = "stopped and held down"
            elif action == "restart":
                self.state = "starting"
                what = "stopped for a restart"
            else:
                ran = time.monotonic() - self._ready_mono if self._ready_mono else 0.0
                if ran >= STABLE_AFTER_S:
                    self.failures = 0
                self.failures += 1
                self.state = "crashed"
                if self.spec.auto_restart and self.desired == "up":
                    delay = BACKOFF_S[min(self.failures, len(BACKOFF_S)) - 1]
                    self.pending_auto_restart = True
                    what = f"died; restarting in {delay:.1f}s (crash {self.failures})"
                else:
                    self.desired = "down"
                    what = "died; left down until restarted"
            sup.cond.notify_all()
        how = exit_info.get("signal") or f"exit code {code}" if code is not None else note
        level = "INFO" if action or sup.stopping else "WARN"
        sup.event(self.name, level, f"{self.name} {what} ({how})")
        sup.write_state()
        if delay:
            with sup.cond:
                sup.cond.wait_for(
                    lambda: sup.stopping or self.kick or self.desired != "up", timeout=delay
                )

    # -- commands (from the control thread) ---------------------------------------------

    def _signal(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop ``proc`` with the component's signal, SIGKILL after its grace period; waits
        until the runner has seen the exit."""
        sup = self.sup
        self._signal(proc, self.spec.stop_signal)
        with sup.cond:
            gone = sup.cond.wait_for(lambda: self.proc is not proc, timeout=self.spec.stop_grace_s)
        if not gone:
            sup.event(self.name, "WARN", f"{self.name} ignored {self.spec.stop_signal!r}; killing")
            self._signal(proc, signal.SIGKILL)
            with sup.cond:
                sup.cond.wait_for(lambda: self.proc is not proc, timeout=5.0)

    def command(self, action: str, overrides: dict[str, str | None] | None) -> None:
        """Apply ``restart``, ``stop`` or ``start``; returns once the old process is gone
        and (for restart/start) the new one has been launched."""
        sup = self.sup
        with sup.cond:
            if sup.stopping:
                raise SandboxError("the sandbox is shutting down")
            proc = self.proc
            before = self.launches
            kill = False
            if action == "stop":
                self.desired = "held"
                self.pending_auto_restart = False
                if proc is not None:
                    self.action = "stop"
                    kill = True
                else:
                    self.state = "held"
            elif action in {"start", "restart"}:
                already_up = proc is not None and self.desired == "up"
                if action == "start" and already_up:
                    return
                self.overrides = dict(overrides or {})
                self.desired = "up"
                self.kick = True
                if proc is not None:
                    self.action = "restart"
                    kill = True
                else:
                    self.state = "starting"
            else:
                raise SandboxError(f"unknown action {action!r}; use restart, stop or start")
            sup.cond.notify_all()
        sup.write_state()
        if kill and proc is not None:
            shown = f" with env overrides: {', '.join(sorted(overrides))}" if overrides else ""
            sup.event(self.name, "INFO", f"{action} of {self.name} requested{shown}")
            self._terminate(proc)
        if action != "stop":
            with sup.cond:
                sup.cond.wait_for(lambda: sup.stopping or self._launched_since(before),
                                  timeout=10.0)
        sup.write_state()  # so that state.json shows the outcome once the caller has it

    def _launched_since(self, launches: int) -> bool:
        return self.launches > launches and (self.pid is not None or self.state != "starting")

    def stop_for_shutdown(self) -> None:
        with self.sup.cond:
            proc = self.proc
        if proc is not None:
            self._terminate(proc)

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "url": components.component_url(self.name, self.sup.ports),
            "restarts": self.restarts,
            "launches": self.launches,
            "auto_restart": self.spec.auto_restart,
            "last_exit": self.last_exit,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "time_to_running_s": self.time_to_running_s,
            "env_overrides": sorted(self.overrides),
        }


class Supervisor:
    """Owns the components of the sandbox in ``layout``."""

    def __init__(self, layout: Layout, binaries: Binaries, secrets: Secrets,
                 ports: dict[str, int], owner: Owner | None = None) -> None:
        self.layout = layout
        self.owner = owner
        self.binaries = binaries
        self.secrets = secrets
        self.ports = ports
        self.cond = threading.Condition()
        self.stopping = False
        self.shutdown_requested = threading.Event()
        self.db_prepared = False
        self.admin_token_ready = False
        self.ready = False
        self.error: str | None = None
        self.started_at = utc_iso()
        self.started_mono = time.monotonic()
        self.ready_after_s: float | None = None
        self.pg_user = postgres.postgres_user()
        self.pgdata: Path | None = None
        self.targets = components.target_variables(secrets, ports, layout.home)
        self.runners = {name: Runner(self, SPECS[name]) for name in COMPONENTS}
        self._spawns: queue.Queue[_SpawnRequest] = queue.Queue()
        self.backup_keep = backups.DEFAULT_KEEP
        self.backup_schedule: backups.BackupSchedule | None = None
        self._write_lock = threading.Lock()
        self._event_lock = threading.Lock()

    # -- bookkeeping ---------------------------------------------------------------------

    def event(self, name: str, level: str, message: str) -> None:
        """Log ``message`` to the supervisor log and append it to the component's log."""
        log.log(logging.WARNING if level == "WARN" else getattr(logging, level), message)
        line = f"{utc_iso()} {level} supervisor: {message}\n"
        with self._event_lock, contextlib.suppress(OSError), open(
            self.layout.log(name), "a", encoding="utf-8"
        ) as handle:
            handle.write(line)

    def snapshot(self) -> dict[str, Any]:
        with self.cond:
            return {
                "version": 1,
                "updated_at": utc_iso(),
                "supervisor": {
                    "pid": os.getpid(),
                    "started_at": self.started_at,
                    "ready": self.ready,
                    "ready_after_s": self.ready_after_s,
                    "stopping": self.stopping,
                    "error": self.error,
                    "postgres_bindir": str(self.binaries.postgres.bindir),
                    "redis_server": str(self.binaries.redis_server),
                    "pgdata": str(self.pgdata) if self.pgdata else None,
                    "postgres_user": self.pg_user.name if self.pg_user else None,
                    "owner_pids": list(self.owner.pids) if self.owner else [],
                },
                "components": {name: r.snapshot() for name, r in self.runners.items()},
            }

    def write_state(self) -> None:
        with self._write_lock:
            write_json_atomic(self.layout.state, self.snapshot())

    def dependencies_met(self, spec: ComponentSpec) -> bool:
        """Called with the condition held: may ``spec`` have its first start now?"""
        if "postgres" in spec.depends_on and not self.db_prepared:
            return False
        return all(self.runners[d].state == "running" for d in spec.depends_on)

    def _update_ready(self) -> None:
        with self.cond:
            if self.ready:
                return
            if self.admin_token_ready and all(
                r.state == "running" for r in self.runners.values()
            ):
                self.ready = True
                self.ready_after_s = round(time.monotonic() - self.started_mono, 3)
                log.info("sandbox ready in %.2fs", self.ready_after_s)
                self.cond.notify_all()

    # -- launching -----------------------------------------------------------------------

    def spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a child from the main thread (parent-death signals are per thread)."""
        if threading.current_thread() is threading.main_thread():
            return subprocess.Popen(argv, **kwargs)
        with self.cond:
            if self.stopping:
                raise SandboxError("the sandbox is shutting down")
        request = _SpawnRequest(argv, kwargs)
        self._spawns.put(request)
        return request.future.result(timeout=60)

    def launch(self, name: str, overrides: dict[str, str | None]) -> subprocess.Popen[bytes]:
        """Start component ``name``'s process (preparing PostgreSQL's data first)."""
        spec = SPECS[name]
        extra: dict[str, Any] = {}
        cwd = str(self.layout.root)
        if name == "postgres":
            argv, env, extra, cwd = self._postgres_launch(overrides)
        elif name == "redis":
            config = redis_server.write_config(
                self.layout, self.ports["redis"], self.secrets.redis_password
            )
            argv = redis_server.server_argv(self.binaries.redis_server, config)
            env = components.base_environment()
            cwd = str(self.layout.redis)
            env.update({k: v for k, v in overrides.items() if v is not None})
        else:
            argv = components.service_argv(name)
            # Stored variables (``Sandbox.set_variables``: the platform's configuration) last
            # across restarts; a restart's own overrides go on top, for that run only.
            stored = components.stored_variables(self.layout.variables).get(name, {})
            env = components.service_environment(name, self.targets, self.ports,
                                                 {**stored, **overrides})
        with open(self.layout.log(name), "ab") as out:
            proc = self.spawn(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                close_fds=True,
                # A session of its own: the kernel's autogroup scheduler shares the CPU out
                # per session, so each component gets its own share, as a container would,
                # instead of all of them splitting the supervisor's one share.
                start_new_session=True,
                preexec_fn=parent_death_preexec(spec.stop_signal),
                **extra,
            )
        if name in APP_SERVICES:
            reserve_cpu_share(proc.pid)
        return proc

    def _postgres_launch(
        self, overrides: dict[str, str | None]
    ) -> tuple[list[str], dict[str, str], dict[str, Any], str]:
        pg = self.binaries.postgres
        if self.pg_user is not None and not postgres.can_traverse(pg.bindir, self.pg_user):
            raise SandboxError(
                f"PostgreSQL must run as {self.pg_user.name!r} (the sandbox runs as root) but"
                f" {self.pg_user.name!r} cannot reach {pg.bindir}; install PostgreSQL"
                " system-wide (apt-get install postgresql) or run as a normal user"
            )
        data = postgres.data_directory(self.layout.pgdata, self.layout.root, self.pg_user)
        with self.cond:
            self.pgdata = data
        postgres.check_data_version(data, pg)
        if postgres.needs_initdb(data):
            started = time.monotonic()
            postgres.run_initdb(pg, data, self.secrets.postgres_password, self.pg_user,
                                self.layout.log("postgres"))
            self.event("postgres", "INFO",
                       f"initdb done in {time.monotonic() - started:.2f}s ({data})")
        env = postgres.server_env()
        env.update({k: v for k, v in overrides.items() if v is not None})
        return (
            postgres.server_argv(pg, data, self.ports["postgres"]),
            env,
            postgres.drop_privileges(self.pg_user),
            str(data),
        )

    def ready_check(self, name: str) -> Callable[[], bool]:
        ports, secrets = self.ports, self.secrets
        checks: dict[str, Callable[[], bool]] = {
            "postgres": lambda: postgres.is_ready(ports["postgres"], secrets.postgres_password),
            "redis": lambda: components.redis_ready(ports["redis"], secrets.redis_password),
            "s3": lambda: components.s3_ready(ports["s3"], components.S3_BUCKET),
            "mail": lambda: components.mail_ready(ports["mail"], secrets.resend_api_key),
            "web": lambda: components.web_ready(ports["web"]),
            "api": lambda: components.api_ready(ports["api"]),
            "worker": lambda: components.worker_ready(ports["redis"], secrets.redis_password),
        }
        return checks[name]

    def on_running(self, runner: Runner) -> None:
        """A component became ready: prepare the database the first time postgres is up."""
        if runner.name == "postgres" and not self.db_prepared and self.error is None:
            self._prepare_database()
        self._update_ready()
        self.write_state()

    def _prepare_database(self) -> None:
        port = self.ports["postgres"]
        try:
            started = time.monotonic()
            applied, cluster = appdb.migrate_database(port, self.secrets)
            self.event("postgres", "INFO", "migrations: "
                       + (", ".join(applied) + " applied" if applied else "none pending")
                       + f" ({time.monotonic() - started:.2f}s)")
            with self.cond:
                self.db_prepared = True
                self.cond.notify_all()
            started = time.monotonic()
            if appdb.seed_if_new(port, self.secrets, self.layout.seeded, cluster):
                self.event("postgres", "INFO",
                           f"seed data loaded ({time.monotonic() - started:.2f}s)")
            self._start_backups()
            token = appdb.mint_admin_token(port, self.secrets)
            self.secrets = with_admin_token(self.layout.secrets, token)
            with self.cond:
                self.admin_token_ready = True
                self.cond.notify_all()
        except Exception as exc:
            message = f"preparing the database failed: {_one_line(exc)}"
            self.event("postgres", "ERROR", message)
            with self.cond:
                self.error = f"{message}; see {self.layout.log('postgres')}"
                self.cond.notify_all()

    def _backup(self, reason: str) -> backups.BackupInfo:
        """Dump the application database into ``sandbox/backups`` (see ``backups``)."""

        admin = postgres.dsn(self.ports["postgres"], postgres.SUPERUSER,
                             self.secrets.postgres_password, postgres.APP_DATABASE)
        return backups.take_backup_at(admin, self.binaries.postgres.bindir,
                                      backups.backups_dir(self.layout.home), Timeouts(),
                                      reason=reason, keep=self.backup_keep)

    def _start_backups(self) -> None:
        """The backup taken at every ``up`` (the database is seeded: the sandbox is not
        ready before it), then the schedule. A failed backup is logged, never fatal."""
        interval, self.backup_keep, problems = backups.schedule_from_env()
        for problem in problems:
            self.event("postgres", "WARN", problem)
        started = time.monotonic()
        try:
            info = self._backup("up")
            self.event("postgres", "INFO", f"backup {info.name} taken"
                       f" ({info.size_bytes} bytes, {time.monotonic() - started:.2f}s)")
        except Exception as exc:
            self.event("postgres", "ERROR", f"backup at start failed: {_one_line(exc)}")
        if self.backup_schedule is None:
            self.backup_schedule = backups.BackupSchedule(
                self._backup, interval,
                lambda level, message: self.event("postgres", level, message),
                lambda: self.runners["postgres"].state == "running" and not self.stopping,
            )
            self.backup_schedule.start()

    # -- control -------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Serve one control request; returns (HTTP status, JSON answer)."""
        parts = [p for p in path.split("?")[0].split("/") if p]
        if method == "GET" and parts == ["status"]:
            return 200, self.snapshot()
        if method == "POST" and parts == ["shutdown"]:
            self.shutdown_requested.set()
            return 202, {"shutting_down": True}
        if method == "POST" and len(parts) == 3 and parts[0] == "components":
            name, action = parts[1], parts[2]
            if name not in self.runners:
                return 404, {"error": f"unknown component {name!r}; one of {', '.join(COMPONENTS)}"}
            env = body.get("env") or {}
            if not isinstance(env, dict) or not all(
                isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in env.items()
            ):
                return 400, {"error": "env must map variable names to strings or null"}
            try:
                self.runners[name].command(action, env)
            except SandboxError as exc:
                return 409, {"error": str(exc)}
            return 200, self.snapshot()["components"][name]
        return 404, {"error": f"no such control request: {method} {path}"}

    def _serve_control(self) -> ThreadingHTTPServer:
        token = ControlEndpoint.new_token()
        supervisor = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "runbook-sandbox-supervisor"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("control: " + format, *args)

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _serve(self, method: str) -> None:
                import hmac

                given = self.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                    self._answer(401, {"error": "bad or missing control token"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413, {"error": "request too large"})
                    return
                try:
                    body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                except ValueError:
                    self._answer(400, {"error": "body is not JSON"})
                    return
                status, payload = supervisor.handle(method, self.path, body or {})
                self._answer(status, payload)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.timeout = 5
        threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
        ControlEndpoint(os.getpid(), int(server.server_address[1]), token).save(
            self.layout.control
        )
        return server

    # -- main ----------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything, serve until asked to stop, stop everything. Returns 0."""
        signal.signal(signal.SIGTERM, lambda *_: self.shutdown_requested.set())
        signal.signal(signal.SIGINT, lambda *_: self.shutdown_requested.set())
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.write_state()
        control = self._serve_control()
        log.info(
            "supervising %s (postgres from %s, redis-server %s%s)",
            self.layout.root, self.binaries.postgres.bindir, self.binaries.redis_server,
            f"; postgres runs as {self.pg_user.name}" if self.pg_user else "",
        )
        if self.owner is not None:
            log.info("the sandbox stops when one of its owners is gone (pid %s)",
                     ", ".join(map(str, self.owner.pids)))
        for runner in self.runners.values():
            runner.thread.start()
        owner_checked = 0.0
        while not self.shutdown_requested.is_set():
            if self.owner is not None and time.monotonic() - owner_checked >= OWNER_POLL_S:
                owner_checked = time.monotonic()
                gone = self.owner.gone()
                if gone is not None:
                    log.info("the sandbox's owner (pid %d) is gone; shutting the sandbox down",
                             gone)
                    break
            try:
                request = self._spawns.get(timeout=0.05)
            except queue.Empty:
                continue
            self._run_spawn(request)
        self.shutdown()
        control.shutdown()
        control.server_close()
        return 0

    def _run_spawn(self, request: _SpawnRequest) -> None:
        try:
            request.future.set_result(subprocess.Popen(request.argv, **request.kwargs))
        except BaseException as exc:
            request.future.set_exception(exc)

    def shutdown(self) -> None:
        """Stop every child (apps first, PostgreSQL with a fast shutdown last)."""
        log.info("shutting down")
        if self.backup_schedule is not None:
            self.backup_schedule.stop()
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        while True:
            try:
                self._spawns.get_nowait().future.set_exception(
                    SandboxError("the sandbox is shutting down")
                )
            except queue.Empty:
                break
        for tier in SHUTDOWN_TIERS:
            stoppers = [
                threading.Thread(target=self.runners[name].stop_for_shutdown, daemon=True)
                for name in tier
            ]
            for thread in stoppers:
                thread.start()
            for thread in stoppers:
                thread.join(timeout=30)
        for runner in self.runners.values():
            runner.thread.join(timeout=runner.spec.stop_grace_s + 6)
        with self.cond:
            for runner in self.runners.values():
                runner.state = "stopped"
                runner.pid = None
                runner.pid_start = None
        self.write_state()
        with contextlib.suppress(FileNotFoundError):
            self.layout.control.unlink()
        log.info("all components stopped")


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("psycopg", "urllib3", "botocore", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _lock(layout: Layout) -> int | None:
    """Take the supervisor lock (``supervisor.pid``); ``None`` when another holds it."""
    fd = os.open(layout.supervisor_pid, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m runbook.sandbox.supervisor``."""
    parser = argparse.ArgumentParser(prog="python -m runbook.sandbox.supervisor")
    parser.add_argument("--home", required=True, type=Path, help="RUNBOOK_HOME")
    args = parser.parse_args(argv)
    _configure_logging()
    layout = Layout(args.home.expanduser().absolute())
    try:
        layout.create()
    except SandboxError as exc:
        log.error("%s", exc)
        return 1
    lock = _lock(layout)
    if lock is None:
        log.error("another supervisor already runs for %s; use `runbook sandbox status`",
                  layout.root)
        return 2
    try:
        try:
            binaries = find_binaries()
            secrets = ensure_secrets(layout.secrets)
            owner = Owner.from_environ(os.environ)
            ports = allocate_ports(layout.ports)
            supervisor = Supervisor(layout, binaries, secrets, ports, owner)
        except SandboxError as exc:
            log.error("%s", exc)
            write_json_atomic(layout.state, {
                "version": 1, "updated_at": utc_iso(), "components": {},
                "supervisor": {"pid": os.getpid(), "ready": False, "error": str(exc)},
            })
            return 1
        return supervisor.run()
    finally:
        with contextlib.suppress(FileNotFoundError):
            layout.supervisor_pid.unlink()
        os.close(lock)


if __name__ == "__main__":
    sys.exit(main())
