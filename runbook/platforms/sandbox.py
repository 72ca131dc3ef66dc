"""The sandbox as a platform: its supervisor restarts the services, keeps their logs, and
gives each its environment (``runbook.sandbox.Sandbox``, home from ``target.runbook_home``).

Its records name the library call that really ran (``library_call``): no command line is
run, so none is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from runbook.config import Target
from runbook.errors import SafetyGateError, SandboxError
from runbook.platforms.base import (
    LogLines,
    Variables,
    check_service,
    error_lines,
    fingerprints,
    library_call,
    lines_since,
    parse_since,
    record,
)
from runbook.redact import Redactor
from runbook.results import Activity
from runbook.sandbox import Sandbox, SandboxStatus
from runbook.sandbox import components as sandbox_components
from runbook.sandbox.ports import load_ports
from runbook.sandbox.procs import is_same_process

#: Optional variables the services read besides the contract's required ones.
_OPTIONAL_VARIABLES: tuple[str, ...] = (
    "SLOW_QUERY_MS", "STATEMENT_TIMEOUT_MS", "TOKEN_TTL_S", "MAIL_STORE",
    "MAIL_VERIFIED_DOMAINS",
)


class SandboxPlatform:
    """Adapter over ``runbook.sandbox.Sandbox`` for ``api``, ``worker`` and ``web``.

    ``restart`` raises ``SafetyGateError`` unless built with ``allow_changes=True``.
    """

    name = "sandbox"

    def __init__(self, target: Target, *, allow_changes: bool, sandbox: Sandbox | None = None,
                 restart_timeout_s: float = 60.0) -> None:
        self.target = target
        self.allow_changes = allow_changes
        self.sandbox = sandbox if sandbox is not None else Sandbox(target.runbook_home)
        self.restart_timeout_s = restart_timeout_s
        self.redactor = Redactor(target.secret_values())

    def __repr__(self) -> str:
        return (f"SandboxPlatform({self.sandbox.home}, allow_changes={self.allow_changes})")

    # -- changes -------------------------------------------------------------------------

    def restart(self, service: str) -> Activity:
        """Restart ``service`` through the supervisor and wait until it runs (answers its
        readiness check) again, at most ``restart_timeout_s``. The activity fails, naming the
        component's log, when it dies instead. Raises ``SafetyGateError`` without
        ``allow_changes``."""
        check_service(service)
        if not self.allow_changes:
            raise SafetyGateError(
                f"refused: restarting {service} changes state, and this platform adapter for"
                f" {self.target.describe()} was built without allow_changes"
            )
        before = self.sandbox.status().components[service]

        def body() -> tuple[bool, str, str]:
            try:
                after = self.sandbox.restart(service, timeout=self.restart_timeout_s)
            except SandboxError as exc:
                return False, "", str(exc)
            return True, (f"{service} running again: pid {before.pid} -> {after.pid},"
                          f" launch {after.launches}"), ""

        return record(f"restart {service}",
                      library_call("runbook.sandbox.Sandbox.restart", service), body,
                      self.redactor)

    def replace_instance(self, service: str) -> Activity:
        """The sandbox runs one process per service: replacing its instance is ``restart``
        (the supervisor stops it and starts a new one), recorded under this name. Raises
        ``SafetyGateError`` without ``allow_changes``."""
        return replace(self.restart(service), name=f"replace an instance of {service}")

    def set_variables(self, service: str, changes: Mapping[str, str | None]) -> Activity:
        """Store ``changes`` in ``service``'s variables (``Sandbox.set_variables``: they last
        across restarts, as a platform's do) and restart it with them, waiting until it
        runs. The activity names the variables, never their values. Raises
        ``SafetyGateError`` without ``allow_changes``."""
        check_service(service)
        if not self.allow_changes:
            raise SafetyGateError(
                f"refused: setting {service}'s variables changes state, and this platform"
                f" adapter for {self.target.describe()} was built without allow_changes"
            )
        names = sorted(changes)
        redactor = Redactor([*self.target.secret_values(),
                             *(v for v in changes.values() if v)])

        def body() -> tuple[bool, str, str]:
            try:
                self.sandbox.set_variables(service, changes)
                after = self.sandbox.restart(service, timeout=self.restart_timeout_s)
            except SandboxError as exc:
                return False, "", str(exc)
            shown = ", ".join(f"{n} {'unset' if changes[n] is None else 'set'}" for n in names)
            return True, f"{shown}; {service} running again with them: pid {after.pid}", ""

        return record(f"set variables of {service}",
                      library_call("runbook.sandbox.Sandbox.set_variables", service, *names),
                      body, redactor)

    # -- reads -----------------------------------------------------------------------------

    def logs(self, service: str, *, since: str = "1h", lines: int = 500) -> LogLines:
        """The last ``lines`` lines of ``logs/<service>.log`` stamped within ``since``
        (secrets masked by the sandbox and again with the target's), errors picked out."""
        check_service(service)
        window = parse_since(since)
        kept: list[str] = []

        def body() -> tuple[bool, str, str]:
            try:
                text = self.sandbox.logs(service, lines=max(lines, 0))
            except SandboxError as exc:
                return False, "", str(exc)
            kept.extend(self.redactor(line) for line in lines_since(text.splitlines(), window))
            return True, "\n".join(kept), ""

        activity = record(f"logs {service}",
                          library_call("runbook.sandbox.Sandbox.logs", service), body,
                          self.redactor)
        return LogLines(service, activity, tuple(kept), error_lines(kept))

    def variables(self, service: str) -> Variables:
        """Fingerprints of the variables the supervisor gave ``service``'s running process,
        read from ``/proc/<pid>/environ`` (overrides included). When that cannot be read,
        the environment the supervisor builds from ``Sandbox.env()`` is fingerprinted instead
        and overridden variables are listed as unreadable (their values are not exposed)."""
        check_service(service)
        status = self.sandbox.status()
        component = status.components[service]
        names = self._service_names(service, component.env_overrides)
        environ = _process_environ(component.pid, component.pid_start)
        values: dict[str, str] = {}
        unreadable: tuple[str, ...] = ()
        if environ is not None:
            command: tuple[str, ...] = library_call("open", f"/proc/{component.pid}/environ")
            note = f"read from the running {service} process (pid {component.pid})"

            def body() -> tuple[bool, str, str]:
                values.update({n: environ[n] for n in names if n in environ})
                return True, _summary(values, ()), ""
        else:
            command = library_call("runbook.sandbox.components.service_environment", service)
            unreadable = tuple(sorted(component.env_overrides))
            note = ("the process environment could not be read; fingerprints are of the"
                    " environment the supervisor starts it with"
                    + (f"; overridden values ({', '.join(unreadable)}) are not exposed"
                       if unreadable else ""))

            def body() -> tuple[bool, str, str]:
                try:
                    built = self._configured_environment(service, status)
                except SandboxError as exc:
                    return False, "", str(exc)
                values.update({n: built[n] for n in names
                               if n in built and n not in unreadable})
                return True, _summary(values, unreadable), ""

        activity = record(f"variables {service}", command, body, self.redactor)
        shown = fingerprints(values)
        values.clear()
        return Variables(service, activity, fingerprints=shown, unreadable=unreadable,
                         note=note)

    def status(self, service: str | None = None) -> Activity:
        """The supervisor's view: state, pid, launches and automatic restarts of ``service``
        (or of every component). Ok when it (every one) is running."""
        if service is not None:
            check_service(service)

        def body() -> tuple[bool, str, str]:
            status = self.sandbox.status()
            chosen = {n: c for n, c in status.components.items()
                      if service is None or n == service}
            lines = [
                f"{c.name} {c.state} pid={c.pid} launches={c.launches} restarts={c.restarts}"
                + (f" url={c.url}" if c.url else "")
                + (f" env_overrides={','.join(c.env_overrides)}" if c.env_overrides else "")
                for c in chosen.values()
            ]
            down = [c.name for c in chosen.values() if not c.running]
            if status.supervisor_pid is None:
                return False, "\n".join(lines), "the sandbox supervisor is not running"
            error = f"not running: {', '.join(down)}" if down else ""
            return not down, "\n".join(lines), error

        name = f"status {service}" if service else "status"
        return record(name, library_call("runbook.sandbox.Sandbox.status"), body,
                      self.redactor)

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _service_names(service: str, overrides: tuple[str, ...]) -> tuple[str, ...]:
        names = set(sandbox_components.SERVICE_VARIABLES.get(service, ()))
        if service in sandbox_components.LISTENING_SERVICES:
            names |= {"HOST", "PORT"}
        names |= set(_OPTIONAL_VARIABLES) | set(overrides)
        return tuple(sorted(names))

    def _configured_environment(self, service: str, status: SandboxStatus) -> dict[str, str]:
        targets = dict(status.env) or self.sandbox.env()
        ports = load_ports(self.sandbox.layout.ports)
        return sandbox_components.service_environment(service, targets, ports, environ={})


def _process_environ(pid: int | None, pid_start: int | None) -> dict[str, str] | None:
    """The environment ``pid`` was started with, if it is still the recorded process and
    ``/proc`` lets us read it; else ``None``."""
    if pid is None or not is_same_process(pid, pid_start):
        return None
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    environ: dict[str, str] = {}
    for item in raw.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep:
            environ[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return environ


def _summary(values: Mapping[str, str], unreadable: tuple[str, ...]) -> str:
    shown = ", ".join(sorted(values)) or "none"
    extra = f"; unreadable: {', '.join(unreadable)}" if unreadable else ""
    return f"{len(values)} variables fingerprinted: {shown}{extra}"
