"""The sandbox as a library: ``Sandbox(home).up()``, ``.status()``, ``.env()``, ``.down()``,
``.restart(component, env_overrides)``, ``.stop(component)``, ``.start(component)``,
``.logs(component)``; ``superuser_dsn()`` and ``bindir`` for the backup drills.

Every method raises ``runbook.errors.SandboxError`` with one line naming what is wrong and
what to do; none prints anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runbook.errors import SandboxError
from runbook.redact import Redactor
from runbook.sandbox import components, control, extra
from runbook.sandbox.appdb import mint_admin_token
from runbook.sandbox.binaries import find_binaries, find_postgres
from runbook.sandbox.control import ControlEndpoint
from runbook.sandbox.credentials import Secrets, load_secrets, with_admin_token
from runbook.sandbox.layout import COMPONENTS, Layout, default_home, read_json, write_json_atomic
from runbook.sandbox.ports import load_ports, port_is_listening
from runbook.sandbox.postgres import SUPERUSER, dsn, remove_data_directory
from runbook.sandbox.procs import is_alive, is_same_process, read_pidfile, stop_process
from runbook.wait import wait_until

#: The components that are services with variables of their own (as on Railway).
_SERVICES: tuple[str, ...] = ("api", "worker", "web")

STATES: tuple[str, ...] = ("running", "starting", "stopped", "crashed", "held")
#: Components whose death the supervisor answers with a restart.
AUTO_RESTARTED: frozenset[str] = frozenset(
    n for n, s in components.SPECS.items() if s.auto_restart
)
_POLL_S = 0.05


class PortTaken(SandboxError):
    """A component could not start because another process listens on its port."""

    def __init__(self, component: str, port: int, failure: str) -> None:
        super().__init__(
            f"{failure}; another process took its port {port} (find it with"
            f" `ss -ltnp 'sport = :{port}'`)"
        )
        self.component = component
        self.port = port


@dataclass(frozen=True)
class ExitInfo:
    """How a component's last process ended."""

    at: str
    code: int | None
    signal: str | None = None
    error: str | None = None
    #: Which launch of the component this was (``ComponentStatus.launches`` counts them).
    launch: int = 0

    def describe(self) -> str:
        """``killed by SIGKILL``, ``exit code 2``, or the supervisor's note."""
        if self.signal:
            how = f"killed by {self.signal}"
        elif self.code is not None:
            how = f"exit code {self.code}"
        else:
            return self.error or "did not start"
        return f"{how}: {self.error}" if self.error else how


@dataclass(frozen=True)
class ComponentStatus:
    """One component as the supervisor last recorded it."""

    name: str
    state: str
    pid: int | None
    url: str | None
    restarts: int = 0
    launches: int = 0
    auto_restart: bool = False
    last_exit: ExitInfo | None = None
    started_at: str | None = None
    ready_at: str | None = None
    time_to_running_s: float | None = None
    env_overrides: tuple[str, ...] = ()
    pid_start: int | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @classmethod
    def from_state(cls, name: str, raw: Mapping[str, Any]) -> ComponentStatus:
        exit_raw = raw.get("last_exit")
        last_exit = None
        if isinstance(exit_raw, dict):
            last_exit = ExitInfo(
                at=str(exit_raw.get("at", "")), code=exit_raw.get("code"),
                signal=exit_raw.get("signal"), error=exit_raw.get("error"),
                launch=int(exit_raw.get("launch") or 0),
            )
        return cls(
            name=name,
            state=str(raw.get("state", "stopped")),
            pid=raw.get("pid"),
            url=raw.get("url"),
            restarts=int(raw.get("restarts") or 0),
            launches=int(raw.get("launches") or 0),
            auto_restart=bool(raw.get("auto_restart", name in AUTO_RESTARTED)),
            last_exit=last_exit,
            started_at=raw.get("started_at"),
            ready_at=raw.get("ready_at"),
            time_to_running_s=raw.get("time_to_running_s"),
            env_overrides=tuple(raw.get("env_overrides") or ()),
            pid_start=raw.get("pid_start"),
        )


@dataclass(frozen=True)
class SandboxStatus:
    """Every component plus the target variables. ``repr`` never shows the variables."""

    home: Path
    supervisor_pid: int | None
    ready: bool
    components: Mapping[str, ComponentStatus]
    env: Mapping[str, str] = field(repr=False)
    error: str | None = None

    @property
    def running(self) -> bool:
        """The supervisor is up and every component is running."""
        return self.supervisor_pid is not None and all(
            c.running for c in self.components.values()
        )

    def to_json(self, *, redact: bool = False) -> dict[str, Any]:
        """``{"components": {name: {"state", "pid", "url"}}, "env": {...}}`` as
        ``runbook sandbox status --json`` prints it; ``redact=True`` masks the secrets."""
        env = dict(self.env)
        if redact:
            redactor = Redactor(_secret_values(env))
            env = {k: redactor(v) for k, v in env.items()}
        return {
            "components": {
                name: {"state": c.state, "pid": c.pid, "url": c.url}
                for name, c in self.components.items()
            },
            "env": env,
        }


def _secret_values(env: Mapping[str, str]) -> list[str]:
    from urllib.parse import urlsplit

    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RESEND_API_KEY", "ADMIN_TOKEN",
             "API_SECRET")
    values = [env[n] for n in names if env.get(n)]
    for name in ("DATABASE_URL", "REDIS_URL"):
        if env.get(name):
            password = urlsplit(env[name]).password
            if password:
                values.append(password)
    return values


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


class Sandbox:
    """The embedded LegacyVideo of one ``RUNBOOK_HOME`` (state in ``home/sandbox``)."""

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home).expanduser().absolute() if home is not None else default_home()
        self.layout = Layout(self.home)
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Sandbox({str(self.home)!r})"

    # -- facts -----------------------------------------------------------------------------

    @property
    def bindir(self) -> Path:
        """The PostgreSQL bindir the sandbox's server runs from (pg_dump, pg_restore, psql
        of the same version are there): as the supervisor recorded it, else as discovered.

        Raises ``SandboxError`` when no PostgreSQL is installed.
        """
        recorded = (self._raw_state().get("supervisor") or {}).get("postgres_bindir")
        if recorded and (Path(recorded) / "pg_dump").exists():
            return Path(recorded)
        return find_postgres().bindir

    def _secrets(self) -> Secrets:
        secrets = load_secrets(self.layout.secrets)
        if secrets is None:
            raise SandboxError(
                f"the sandbox in {self.layout.root} was never started; run `runbook sandbox up`"
            )
        return secrets

    def _ports(self) -> dict[str, int]:
        ports = load_ports(self.layout.ports)
        if not ports:
            raise SandboxError(
                f"the sandbox in {self.layout.root} was never started; run `runbook sandbox up`"
            )
        return ports

    def env(self) -> dict[str, str]:
        """The target variables (API_URL ... ADMIN_TOKEN, PLATFORM, RUNBOOK_ENVIRONMENT,
        RUNBOOK_HOME). Raises ``SandboxError`` when the sandbox was never started."""
        return components.target_variables(self._secrets(), self._ports(), self.home)

    def superuser_dsn(self, database: str = "legacyvideo") -> str:
        """A DSN for the ``postgres`` superuser (for backup and restore drills).

        Raises ``SandboxError`` when the sandbox was never started.
        """
        return dsn(self._ports()["postgres"], SUPERUSER, self._secrets().postgres_password,
                   database)

    def refresh_admin_token(self) -> str:
        """Mint ``ADMIN_TOKEN`` again for the seeded admin's current token version (after a
        revoke-all drill), store it in ``secrets.json`` and return it.

        Raises ``SandboxError`` when the sandbox was never started or its database is down.
        """
        import psycopg


        port = self._ports()["postgres"]
        try:
            token = mint_admin_token(port, self._secrets())
        except psycopg.Error as exc:
            raise SandboxError(
                f"cannot mint ADMIN_TOKEN: the sandbox database does not answer"
                f" ({type(exc).__name__}); run `runbook sandbox up`"
            ) from None
        with_admin_token(self.layout.secrets, token)
        return token

    def secrets(self) -> Secrets:
        """The generated secrets, seed passwords included (never print them).

        Raises ``SandboxError`` when the sandbox was never started.
        """
        return self._secrets()

    # -- supervisor --------------------------------------------------------------------------

    def supervisor_pid(self) -> int | None:
        """The pid of the running supervisor, or ``None``.

        Uses the supervisor's lock on ``supervisor.pid``, so a stale file or a reused pid
        never counts as running.
        """
        try:
            fd = os.open(self.layout.supervisor_pid, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raw = os.read(fd, 32).decode("ascii", "replace").strip()
                pid = int(raw) if raw.isdigit() else None
                return pid if is_alive(pid) else None
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def _endpoint(self) -> ControlEndpoint:
        endpoint = ControlEndpoint.load(self.layout.control)
        if endpoint is None or self.supervisor_pid() is None:
            raise SandboxError(
                f"the sandbox in {self.layout.root} is not running; run `runbook sandbox up`"
            )
        return endpoint

    def _raw_state(self) -> dict[str, Any]:
        try:
            state = read_json(self.layout.state)
        except SandboxError:
            state = None
        return state if isinstance(state, dict) else {}

    def _spawn_supervisor(self) -> None:
        self.layout.create()
        env = dict(os.environ)
        root = str(components.package_root())
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (root, env.get("PYTHONPATH", "")) if p
        )
        with open(self.layout.log("supervisor"), "ab") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "runbook.sandbox.supervisor", "--home", str(self.home)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=str(self.layout.root), env=env, start_new_session=True, close_fds=True,
            )

    # -- lifecycle -----------------------------------------------------------------------------

    def up(self, timeout: float = 60.0) -> SandboxStatus:
        """Start the sandbox (or finish starting it) and wait until all seven components run.

        Returns at once when it already runs; on a running sandbox, starts what is held or
        crashed and plainly restarts what runs with environment overrides but is not up.
        Raises ``SandboxError`` naming the component that failed and its log; a sandbox this
        call started is then stopped again.
        """
        deadline = time.monotonic() + timeout
        extra.require()  # fail before anything starts when the [sandbox] extra is missing
        find_binaries()  # likewise when PostgreSQL or Redis is missing
        if self.supervisor_pid() is None:
            return self._start(deadline, timeout)
        status = self.status()
        if status.running and status.ready:
            return status
        for name, component in status.components.items():
            if component.running:
                continue
            # Bring it back as configured: a drill's overrides end with a plain restart.
            action = "restart" if component.env_overrides else "start"
            if action == "restart" or component.state in {"held", "crashed", "stopped"}:
                with contextlib.suppress(SandboxError):
                    self._command(name, action)
        return self._wait_until_up(deadline, timeout)

    def _start(self, deadline: float, timeout: float) -> SandboxStatus:
        """Start a supervisor and wait for the sandbox; stop it again when the start fails.

        A component whose port another process took before it could bind it (found
        listening while the component is down) gets the whole start again, once per
        component: the new supervisor sees the port taken and chooses another.
        """
        moved: set[str] = set()
        while True:
            self._sweep()
            self._spawn_supervisor()
            try:
                return self._wait_until_up(deadline, timeout)
            except PortTaken as exc:
                with contextlib.suppress(SandboxError):
                    self.down(foreign={exc.port})
                if exc.component in moved:
                    raise
                moved.add(exc.component)
            except SandboxError:
                with contextlib.suppress(SandboxError):
                    self.down()
                raise

    def _wait_until_up(self, deadline: float, timeout: float) -> SandboxStatus:
        def look() -> SandboxStatus:
            """The status; raises ``SandboxError`` when the start failed for good."""
            pid = self.supervisor_pid()
            state = self._raw_state()
            supervisor = state.get("supervisor") or {}
            booting = self._proc is not None and self._proc.poll() is None
            if pid is None and not booting:
                problem = supervisor.get("error") or self._last_line("supervisor") or "no output"
                raise SandboxError(
                    f"the sandbox supervisor exited during start: {problem};"
                    f" see {self.layout.log('supervisor')}"
                )
            if supervisor.get("error"):
                raise SandboxError(f"sandbox start failed: {supervisor['error']}")
            status = self.status()
            if status.ready and status.running:
                return status
            if pid is not None:
                for component in status.components.values():
                    if component.state != "crashed":
                        continue
                    # The supervisor chooses the ports: read them once it has.
                    port = load_ports(self.layout.ports).get(component.name)
                    if port is not None and port_is_listening(port, timeout=0.2):
                        raise PortTaken(component.name, port, self._failure(component))
                    if not component.auto_restart or component.restarts >= 3:
                        raise SandboxError(self._failure(component))
            return status

        waited = wait_until(look, deadline=deadline, interval=_POLL_S,
                            accept=lambda s: s.ready and s.running, describe=_waiting_for,
                            errors=())
        status = waited.value
        assert status is not None  # errors=(): every look returned a status or raised
        if waited.ok:
            return status
        late = [c for c in status.components.values() if not c.running]
        waiting = [f"{c.name} {c.state}" for c in late] or [
            "the database setup (migrations, seed, ADMIN_TOKEN)"
        ]
        log = self.layout.log(late[0].name if late else "postgres")
        raise SandboxError(
            f"the sandbox did not start within {timeout:.0f}s (waiting for:"
            f" {', '.join(waiting)}); see {log}"
        )

    def _failure(self, component: ComponentStatus) -> str:
        how = component.last_exit.describe() if component.last_exit else "died"
        last = self._last_line(component.name)
        shown = f"; last log line: {last}" if last else ""
        return (
            f"{component.name} failed to start ({how}); see {self.layout.log(component.name)}"
            f"{shown}"
        )

    def _last_line(self, name: str) -> str:
        """The most telling recent line of a log: the component's own last error, else its
        last line (the supervisor's notes are skipped, they repeat the state)."""
        if not self.layout.log(name).exists():
            return ""
        lines = [
            line for line in self.logs(name, lines=50).splitlines()
            if line.strip() and (name == "supervisor" or " supervisor: " not in line)
        ]
        errors = [
            line for line in lines
            if any(word in line for word in (" ERROR", "FATAL", "Error", "PANIC"))
        ]
        chosen = (errors or lines or [""])[-1]
        return chosen.strip()[:300]

    def down(self, timeout: float = 30.0, *, foreign: Iterable[int] = ()) -> bool:
        """Stop every component and the supervisor; leaves no process and no listening port
        (but the ``foreign`` ones, known to be another process's).

        Returns False when nothing was running. Also cleans up after a supervisor that
        crashed. Raises ``SandboxError`` when a port stays open after everything stopped.
        """
        deadline = time.monotonic() + timeout
        did = False
        pid = self.supervisor_pid()
        if pid is not None:
            did = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            # The supervisor releases its lock, then its interpreter exits: wait for both.
            def gone(pid: int = pid) -> bool:
                if self.supervisor_pid() is None and not is_alive(pid):
                    return True
                self._reap()
                return False

            wait_until(gone, deadline=deadline - 2, interval=_POLL_S, errors=())
            if is_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                wait_until(lambda: not is_alive(pid), deadline=deadline, interval=_POLL_S)
        self._reap()
        did = self._sweep() or did
        self._mark_stopped()
        self._wait_ports_closed(max(2.0, deadline - time.monotonic()), set(foreign))
        return did

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None

    def _sweep(self) -> bool:
        """Stop what a crashed supervisor left: the pids in state.json (checked against
        their recorded start times) and the servers' own pid files."""
        did = False
        state = self._raw_state()
        recorded = state.get("components") or {}
        order = [n for n in reversed(COMPONENTS) if n in recorded]
        for name in order:
            raw = recorded[name]
            pid, started = raw.get("pid"), raw.get("pid_start")
            if isinstance(pid, int) and is_same_process(pid, started):
                sig = components.SPECS[name].stop_signal
                did = stop_process(pid, started, sig, components.SPECS[name].stop_grace_s) or did
        pgdata = self.layout.pgdata
        postmaster = read_pidfile(pgdata / "postmaster.pid") if pgdata.exists() else None
        if postmaster and str(pgdata.resolve()) in _cmdline(postmaster):
            did = stop_process(postmaster, None, signal.SIGINT, 20.0) or did
        redis_pid = read_pidfile(self.layout.redis / "redis.pid")
        ports = load_ports(self.layout.ports)
        if redis_pid and ports.get("redis") and f":{ports['redis']}" in _cmdline(redis_pid):
            did = stop_process(redis_pid, None, signal.SIGTERM, 10.0) or did
        return did

    def _mark_stopped(self) -> None:
        state = self._raw_state()
        if not state:
            return
        changed = False
        for raw in (state.get("components") or {}).values():
            if raw.get("state") != "stopped" or raw.get("pid") is not None:
                raw.update(state="stopped", pid=None, pid_start=None)
                changed = True
        supervisor = state.get("supervisor") or {}
        if supervisor.get("ready"):
            supervisor["ready"] = False
            changed = True
        if changed:
            write_json_atomic(self.layout.state, state)
        with contextlib.suppress(FileNotFoundError):
            self.layout.control.unlink()

    def _wait_ports_closed(self, timeout: float, foreign: set[int]) -> None:
        open_ports = {n: p for n, p in load_ports(self.layout.ports).items() if p not in foreign}

        def still_open() -> dict[str, int]:
            """The ports still listening (one found closed is not looked at again)."""
            nonlocal open_ports
            open_ports = {n: p for n, p in open_ports.items() if port_is_listening(p, timeout=0.2)}
            return open_ports

        wait_until(still_open, timeout=timeout, interval=_POLL_S, accept=lambda o: not o,
                   errors=())
        if open_ports:
            shown = ", ".join(f"{n} {p}" for n, p in open_ports.items())
            raise SandboxError(
                f"ports still accept connections after the sandbox stopped ({shown}); find the"
                f" process with `ss -ltnp` and stop it"
            )

    def destroy(self, timeout: float = 30.0) -> None:
        """``down``, then delete all sandbox state (a data directory kept under the
        system temp dir included, and ``home`` itself when that leaves it empty).
        Raises ``SandboxError`` as ``down`` does."""
        import shutil

        self.down(timeout)
        remove_data_directory(self.layout.pgdata)
        shutil.rmtree(self.layout.root, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.home.rmdir()  # only when nothing else lives there

    # -- observation ---------------------------------------------------------------------

    def status(self) -> SandboxStatus:
        """What the supervisor last recorded; when it is not running, components whose
        process is gone are ``stopped``. Never raises for a sandbox that never started."""
        pid = self.supervisor_pid()
        state = self._raw_state()
        recorded = state.get("components") or {}
        ports = load_ports(self.layout.ports)
        result: dict[str, ComponentStatus] = {}
        for name in COMPONENTS:
            raw = recorded.get(name)
            if not isinstance(raw, dict):
                raw = {"state": "stopped", "url": components.component_url(name, ports)}
            component = ComponentStatus.from_state(name, raw)
            if pid is None and not (
                component.pid and is_same_process(component.pid, component.pid_start)
            ):
                component = ComponentStatus(
                    **{**component.__dict__, "state": "stopped", "pid": None, "pid_start": None}
                )
            result[name] = component
        try:
            env = self.env()
        except SandboxError:
            env = {}
        supervisor = state.get("supervisor") or {}
        return SandboxStatus(
            home=self.home,
            supervisor_pid=pid,
            ready=bool(pid and supervisor.get("ready")),
            components=MappingProxyType(result),
            env=MappingProxyType(env),
            error=supervisor.get("error"),
        )

    def logs(self, component: str, lines: int = 200) -> str:
        """The last ``lines`` lines of ``logs/<component>.log`` (also ``supervisor``), with
        the sandbox's secrets masked. Raises ``SandboxError`` for an unknown component."""
        if component not in (*COMPONENTS, "supervisor"):
            raise SandboxError(
                f"unknown component {component!r}; one of {', '.join(COMPONENTS)}, supervisor"
            )
        path = self.layout.log(component)
        wanted = max(lines, 0)
        try:
            with open(path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                chunk = max(wanted, 1) * 256
                while True:
                    start = max(0, size - chunk)
                    handle.seek(start)
                    raw = handle.read(size - start)
                    if start == 0 or raw.count(b"\n") > wanted:
                        break
                    chunk *= 4
        except FileNotFoundError:
            return ""
        text = raw.decode("utf-8", "replace")
        tail = "\n".join(text.splitlines()[-wanted:]) if wanted else ""
        secrets = load_secrets(self.layout.secrets)
        return Redactor(secrets.values() if secrets else ())(tail)

    # -- commands ------------------------------------------------------------------------

    def _command(self, component: str, action: str,
                 env_overrides: Mapping[str, str | None] | None = None) -> ComponentStatus:
        if component not in COMPONENTS:
            raise SandboxError(f"unknown component {component!r}; one of {', '.join(COMPONENTS)}")
        answer = control.call(
            self._endpoint(), "POST", f"/components/{component}/{action}",
            {"env": dict(env_overrides or {})}, timeout=60.0,
        )
        return ComponentStatus.from_state(component, answer)

    def _wait_running(self, component: str, launches: int, timeout: float) -> ComponentStatus:
        def look() -> ComponentStatus:
            """The component's status; raises ``SandboxError`` when this launch ended."""
            current = self.status().components[component]
            if current.launches >= launches and current.running:
                return current
            ended = current.last_exit is not None and current.last_exit.launch >= launches
            if current.launches >= launches and (ended or current.state in {"crashed", "held"}):
                raise SandboxError(self._failure(current))
            return current

        waited = wait_until(look, timeout=timeout, interval=_POLL_S,
                            accept=lambda c: c.launches >= launches and c.running,
                            describe=lambda c: c.state, errors=())
        current = waited.value
        assert current is not None  # errors=(): every look returned a status or raised
        if waited.ok:
            return current
        raise SandboxError(
            f"{component} is {current.state}, not running, {timeout:.0f}s after the"
            f" request; see {self.layout.log(component)}"
        )

    def restart(self, component: str, env_overrides: Mapping[str, str | None] | None = None,
                *, wait: bool = True, timeout: float = 30.0) -> ComponentStatus:
        """Restart ``component`` (also a held or crashed one). ``env_overrides`` change its
        environment for this run (``None`` removes a variable); a plain restart clears them.

        With ``wait`` returns once it runs again; raises ``SandboxError`` if it dies
        instead (use ``wait=False`` for drills that expect it to fail).
        """
        answer = self._command(component, "restart", env_overrides)
        return self._wait_running(component, answer.launches, timeout) if wait else answer

    # -- the services' stored variables (the platform's configuration) -------------------

    def stored_variables(self) -> dict[str, dict[str, str | None]]:
        """Every service's stored variables (``service -> {name: value}``, ``None``: removed
        from its environment), on top of the sandbox's own. They last across restarts, as a
        platform's service variables do. Values are secrets: never print them."""
        return components.stored_variables(self.layout.variables)

    def set_variables(self, service: str, changes: Mapping[str, str | None]) -> None:
        """Store ``changes`` for ``service`` (``None``: remove the variable from its
        environment), as ``railway variables --set`` does; they apply from its next start
        (``restart`` it). Raises ``SandboxError`` for a component that is not a service."""
        if service not in _SERVICES:
            raise SandboxError(f"{service!r} has no variables to set; one of"
                               f" {', '.join(_SERVICES)}")
        stored = self.stored_variables()
        stored.setdefault(service, {}).update(dict(changes))
        self.layout.create()
        write_json_atomic(self.layout.variables, stored, mode=0o600)

    def unset_variables(self, service: str, names: Iterable[str]) -> None:
        """Forget ``names`` of ``service``'s stored variables: the sandbox's own values apply
        again from its next start."""
        stored = self.stored_variables()
        values = stored.get(service, {})
        for name in names:
            values.pop(name, None)
        if not values:
            stored.pop(service, None)
        if stored or self.layout.variables.exists():
            write_json_atomic(self.layout.variables, stored, mode=0o600)

    def stop(self, component: str) -> ComponentStatus:
        """Stop ``component`` and hold it down: the supervisor does not restart it until
        ``start`` or ``restart``. Raises ``SandboxError`` when the sandbox is not running."""
        return self._command(component, "stop")

    def start(self, component: str, *, wait: bool = True, timeout: float = 30.0
              ) -> ComponentStatus:
        """Start a held or crashed ``component`` (no-op when it runs). Raises
        ``SandboxError`` as ``restart`` does."""
        answer = self._command(component, "start")
        return self._wait_running(component, answer.launches, timeout) if wait else answer


__all__ = [
    "STATES",
    "ComponentStatus",
    "ExitInfo",
    "Sandbox",
    "SandboxStatus",
]


def _waiting_for(status: SandboxStatus) -> str:
    """What a starting sandbox still waits for, as a wait's observation."""
    late = [f"{c.name} {c.state}" for c in status.components.values() if not c.running]
    return f"waiting for {', '.join(late) or 'the database setup'}"
