"""A misconfiguration where a real one lives: a service's stored variables.

``service-variable`` changes one variable of one service in the sandbox's stored
configuration (``Sandbox.set_variables``: what ``railway variables --set`` keeps on Railway)
and restarts the service with it, as the platform redeploys on a variable change. Like a
real misconfiguration it survives every restart: only setting the variable right (the
runbook's fix) or the drill's revert ends it.

``change``: ``set`` (to a non-secret ``value``), ``unset``, ``random`` (a fresh value never
recorded) or ``drop-password`` (a URL variable without its password). What the variable
held before is kept in a private file under the sandbox's drill state (0600: it may be a
secret), so the revert, in this process or the restoration guard's, puts back exactly what
was there. The fault is still present while the stored value differs from the target's own
(the value the runbook's checks prove works), so a drill can tell a fix from a wait.

Parameters are JSON and never hold a secret. The revert is idempotent and bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from runbook.config import SECRET_VARIABLES, Target
from runbook.drills.faults import DrillContext, Params, fault
from runbook.errors import ConfigError, SandboxError
from runbook.platforms.base import SERVICES, fingerprint, library_call, record
from runbook.results import Activity
from runbook.sandbox import Sandbox

#: How an override changes the variable (``service-variable``'s ``change``).
CHANGES: Mapping[str, str] = {
    "set": "set to a given (non-secret) value",
    "unset": "removed",
    "random": "set to a fresh random value (never recorded)",
    "drop-password": "without the password in its URL",
}
#: How long a restart may take before the fault (or its revert) is recorded as failed.
RESTART_TIMEOUT_S = 30.0


def service_of(params: Params) -> str:
    service = str(params["service"])
    if service not in SERVICES:
        raise ConfigError(f"service-variable: unknown service {service!r}; one of"
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


def value_for(target: Target, params: Params) -> str | None:
    """The value ``params`` ask for (``variable``, ``change``, ``value`` for ``set``;
    ``None``: unset). Raises ``ConfigError`` for an unknown change, or a ``set`` of a secret
    variable (its value would sit in the drill's parameters)."""
    variable = str(params["variable"])
    change = str(params["change"])
    if change not in CHANGES:
        raise ConfigError(f"service-variable: unknown change {change!r}; one of"
                          f" {', '.join(CHANGES)}")
    if change == "unset":
        return None
    if change == "random":
        return secrets.token_hex(32)
    if change == "drop-password":
        return without_password(target.require(variable))
    if variable in SECRET_VARIABLES:
        raise ConfigError(f"service-variable: {variable} is a secret; its value cannot be"
                          " a drill parameter (use change 'random' or 'drop-password')")
    if "value" not in params:
        raise ConfigError("service-variable: change 'set' needs a 'value'")
    return str(params["value"])


def _state_file(context: DrillContext, params: Params) -> Path:
    return context.state_directory() / (
        f"service-variable-{service_of(params)}-{params['variable']}.json")


def _write_private(path: Path, document: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(dict(document), handle)
    tmp.replace(path)


def target_value(target: Target, variable: str) -> str | None:
    """The target's own value of ``variable`` (``None`` when the target has none)."""
    return target.variables().get(variable)


@fault("service-variable",
       "one of a service's stored variables changed; it lasts across restarts")
class ServiceVariable:
    """``params``: ``service``, ``variable``, ``change`` (see ``CHANGES``), ``value``."""

    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        service = service_of(params)
        variable, change = str(params["variable"]), str(params["change"])
        value = value_for(context.target, params)
        sandbox = Sandbox(context.home)
        state = _state_file(context, params)

        def body() -> tuple[bool, str, str]:
            stored = sandbox.stored_variables().get(service, {})
            if not state.exists():  # a revert still due keeps the first "before"
                _write_private(state, {"had": variable in stored,
                                       "value": stored.get(variable)})
            try:
                sandbox.set_variables(service, {variable: value})
                after = sandbox.restart(service, timeout=RESTART_TIMEOUT_S)
            except SandboxError as exc:
                return False, "", str(exc)
            return True, (f"{service}'s stored {variable} {CHANGES[change]}; {service}"
                          f" restarted with it (pid {after.pid})"), ""

        return record(f"set {service}'s {variable} wrong ({change})",
                      library_call("runbook.sandbox.Sandbox.set_variables", service, variable),
                      body, context.redactor(*(v for v in (value,) if v)))

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        service = service_of(params)
        variable = str(params["variable"])
        sandbox = Sandbox(context.home)
        state = _state_file(context, params)

        def body() -> tuple[bool, str, str]:
            try:
                before = json.loads(state.read_text(encoding="utf-8"))
            except FileNotFoundError:
                return True, f"nothing to put back: {service}'s {variable} was reverted", ""
            except (OSError, ValueError) as exc:
                return False, "", f"cannot read what {variable} held before: {exc}"
            try:
                if before.get("had"):
                    sandbox.set_variables(service, {variable: before.get("value")})
                else:
                    sandbox.unset_variables(service, [variable])
                after = sandbox.restart(service, timeout=RESTART_TIMEOUT_S)
            except SandboxError as exc:
                return False, "", str(exc)
            with contextlib.suppress(FileNotFoundError):
                state.unlink()
            return True, (f"{service}'s {variable} as it was before the drill; {service}"
                          f" restarted with it (pid {after.pid})"), ""

        return record(f"put {service}'s {variable} back",
                      library_call("runbook.sandbox.Sandbox.set_variables", service, variable),
                      body, context.redactor())

    @staticmethod
    def present(context: DrillContext, params: Params) -> str | None:
        """What shows the misconfiguration is still there, or ``None``."""
        service, variable = service_of(params), str(params["variable"])
        stored = Sandbox(context.home).stored_variables().get(service, {})
        if variable not in stored:
            return None
        wanted = target_value(context.target, variable)
        value = stored[variable]
        if value == wanted:
            return None
        shown = "unset" if value is None else f"fingerprint {fingerprint(value)}"
        expected = "unset" if wanted is None else f"fingerprint {fingerprint(wanted)}"
        return (f"{service}'s stored {variable} is {shown}, not the target's ({expected})")


__all__ = ["CHANGES", "ServiceVariable", "service_of", "target_value", "value_for",
           "without_password"]
