"""Railway (api, worker) and Vercel (web), through their CLIs, with the runbook's commands.

Exactly what runs (``SERVICE`` is ``api`` or ``worker``):

* restart: ``railway restart --service SERVICE --yes``. The runbook's command without
  ``--yes`` refuses to run without a terminal ("Cannot prompt for confirmation in
  non-interactive mode"); the runbook's safety gates stand in for the prompt.
* replace an instance: ``railway redeploy --service SERVICE --yes`` (the latest
  deployment redeployed: Railway starts a new one and retires the old). The CLI returns
  once Railway accepted the redeploy, not when the new deployment serves: the caller's own
  checks measure that. ``--yes`` for the same reason as restart's.
* logs: ``railway logs --service SERVICE --since 1h --lines N`` (``--since``/``--lines``
  fetch history instead of streaming; the Runner's timeout bounds it either way).
* variables: ``railway variables --service SERVICE``; the default table and ``--kv``
  (``NAME=value``) listings are both parsed, then fingerprinted; no value is kept.
* status: ``railway status`` (the CLI has no ``--service`` option for it).
* web: ``vercel --prod`` to redeploy (in the linked checkout of the web app:
  ``RUNBOOK_VERCEL_DIR``, else the working directory, must hold ``.vercel/project.json``),
  ``vercel logs --since 1h --deployment WEB_HOST``, ``vercel inspect WEB_URL`` for status.
  Vercel does not reveal variable values to its CLI, so web variables are not fingerprinted.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from runbook.config import Target
from runbook.errors import ConfigError, SafetyGateError
from runbook.platforms.base import (
    CLI_ENV,
    Completed,
    LogLines,
    PlatformTimeouts,
    Runner,
    Variables,
    check_service,
    error_lines,
    fingerprints,
    not_run,
    parse_since,
    variables_not_settable,
)
from runbook.redact import Redactor
from runbook.results import Activity

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_KV = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)=(.*)$")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour and cursor sequences."""
    return _ANSI.sub("", text)


def parse_variables(text: str) -> dict[str, str]:
    """Names and values from ``railway variables`` output: the default box table (values
    wrapped over several rows are joined), ``--kv`` ``NAME=value`` lines, or ``--json``.

    The values are for fingerprinting only; callers must not keep them. A wrapped value
    that contained spaces where the table broke it comes back without them (use ``--kv``
    for such values)."""
    clean = strip_ansi(text).strip()
    if clean.startswith("{"):
        try:
            document = json.loads(clean)
        except ValueError:
            document = None
        if isinstance(document, dict):
            return {str(k): "" if v is None else str(v) for k, v in document.items()}
    lines = clean.splitlines()
    if any(line.lstrip().startswith("║") for line in lines):
        return _parse_table(lines)
    values: dict[str, str] = {}
    for line in lines:
        match = _KV.match(line.rstrip("\r"))
        if match:
            values[match.group(1)] = match.group(2)
    return values


def _parse_table(lines: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    current: str | None = None
    for raw in lines:
        line = raw.strip()
        if not line.startswith("║") or "│" not in line:
            continue  # the title bar, separators and the bottom edge
        inner = line[1:]
        if inner.endswith("║"):
            inner = inner[:-1]
        name_part, _, value_part = inner.partition("│")
        name = name_part.strip()
        value = value_part[1:] if value_part.startswith(" ") else value_part
        value = value.rstrip()
        if name:
            current = name
            values[name] = value
        elif current is not None:
            values[current] += value
    return values


def _since_for_cli(since: str) -> str:
    parse_since(since)  # ConfigError for a malformed duration
    return since.strip()


class RailwayPlatform:
    """api and worker on Railway, web on Vercel, driven through their CLIs by a ``Runner``.

    ``restart`` raises ``SafetyGateError`` unless built with ``allow_changes=True``; a CLI
    missing from ``PATH`` raises ``RunbookError`` naming it.
    """

    name = "railway"

    def __init__(self, target: Target, *, allow_changes: bool, runner: Runner | None = None,
                 timeouts: PlatformTimeouts | None = None,
                 vercel_dir: Path | str | None = None) -> None:
        self.target = target
        self.allow_changes = allow_changes
        self.runner = runner if runner is not None else Runner()
        self.timeouts = timeouts if timeouts is not None else PlatformTimeouts()
        chosen = vercel_dir or os.environ.get("RUNBOOK_VERCEL_DIR")
        self.vercel_dir = Path(chosen) if chosen else None
        self.redactor = Redactor(target.secret_values())

    def __repr__(self) -> str:
        return f"RailwayPlatform({self.target.name!r}, allow_changes={self.allow_changes})"

    def _run(self, argv: Sequence[str], timeout: float, *, cwd: Path | None = None
             ) -> Completed:
        return self.runner.run(argv, timeout=timeout, env=CLI_ENV, cwd=cwd)

    # -- changes -------------------------------------------------------------------------

    def restart(self, service: str) -> Activity:
        """``railway restart --service SERVICE --yes`` (the CLI waits for the deployment to
        be healthy), or ``vercel --prod`` for web; bounded by ``timeouts.restart_s``.
        Raises ``SafetyGateError`` without ``allow_changes``, ``ConfigError`` when the
        Vercel checkout is not linked."""
        check_service(service)
        if not self.allow_changes:
            raise SafetyGateError(
                f"refused: restarting {service} changes state, and this platform adapter for"
                f" {self.target.describe()} was built without allow_changes"
            )
        if service == "web":
            where = self._linked_vercel_dir()
            done = self._run(("vercel", "--prod"), self.timeouts.restart_s, cwd=where)
        else:
            done = self._run(("railway", "restart", "--service", service, "--yes"),
                             self.timeouts.restart_s)
        return done.to_activity(f"restart {service}", self.redactor)

    def replace_instance(self, service: str) -> Activity:
        """``railway redeploy --service SERVICE --yes``, bounded by ``timeouts.restart_s``.
        The CLI returns once Railway accepted the redeploy (it prints "The latest deployment
        from service SERVICE has been redeployed"); it does not wait for the new deployment,
        and the activity's output says so. Web (Vercel) has no instance to replace: not
        run. Raises ``SafetyGateError`` without ``allow_changes``, before anything runs."""
        check_service(service)
        if not self.allow_changes:
            raise SafetyGateError(
                f"refused: replacing an instance of {service} changes state, and this"
                f" platform adapter for {self.target.describe()} was built without"
                " allow_changes")
        name = f"replace an instance of {service}"
        if service == "web":
            return not_run(name, "not done: web runs on Vercel, which has no instance of it"
                                 " to replace (a redeploy is `vercel --prod`)")
        done = self._run(("railway", "redeploy", "--service", service, "--yes"),
                         self.timeouts.restart_s)
        said = strip_ansi("\n".join(part for part in (done.stdout.strip(), done.stderr.strip())
                                    if part))
        note = ("railway redeploy returns once Railway accepted the redeploy; it does not wait"
                " for the new deployment to serve")
        return done.to_activity(name, self.redactor,
                                output=f"{said}\n{note}" if done.ok else said)

    def _linked_vercel_dir(self) -> Path:
        where = self.vercel_dir or Path.cwd()
        if not (where / ".vercel" / "project.json").is_file():
            raise ConfigError(
                f"`vercel --prod` deploys the directory it runs in, and {where} is not a"
                f" linked Vercel checkout (no .vercel/project.json); set RUNBOOK_VERCEL_DIR"
                f" to the web app's linked checkout"
            )
        return where

    # -- reads -------------------------------------------------------------------------------

    def logs(self, service: str, *, since: str = "1h", lines: int = 500) -> LogLines:
        """``railway logs --service SERVICE --since SINCE --lines N`` or, for web,
        ``vercel logs --since SINCE [--deployment WEB_HOST]``; the last ``lines`` lines
        kept, redacted, errors picked out. Bounded by ``timeouts.command_s``."""
        check_service(service)
        window = _since_for_cli(since)
        if service == "web":
            argv: tuple[str, ...] = ("vercel", "logs", "--since", window)
            host = urlsplit(self.target.web_url).hostname if self.target.web_url else None
            if host:
                argv += ("--deployment", host)
            done = self._run(argv, self.timeouts.command_s, cwd=self.vercel_dir)
        else:
            done = self._run(("railway", "logs", "--service", service, "--since", window,
                              "--lines", str(max(lines, 0))), self.timeouts.command_s)
        text = strip_ansi(done.stdout)
        kept = [self.redactor(line) for line in text.splitlines() if line.strip()]
        kept = kept[-lines:] if lines > 0 else []
        activity = done.to_activity(f"logs {service}", self.redactor,
                                    output="\n".join([*kept, strip_ansi(done.stderr)]))
        return LogLines(service, activity, tuple(kept), error_lines(kept))

    def set_variables(self, service: str, changes: Mapping[str, str | None]) -> Activity:
        """Not done through the CLI (``variables_not_settable``): raises ``SafetyGateError``
        without ``allow_changes`` first, as every change does."""
        check_service(service)
        if not self.allow_changes:
            raise SafetyGateError(
                f"refused: setting {service}'s variables changes state, and this platform"
                f" adapter for {self.target.describe()} was built without allow_changes")
        return variables_not_settable("railway", service, changes)

    def variables(self, service: str) -> Variables:
        """``railway variables --service SERVICE``, parsed and fingerprinted; the listing
        itself is never stored (the activity's output is a summary of names)."""
        check_service(service)
        if service == "web":
            return Variables(
                service,
                not_run("variables web", "Vercel does not reveal variable values to its CLI"
                        " (`vercel env ls` lists names only); web variables are not"
                        " fingerprinted"),
                note="Vercel keeps web variable values encrypted",
            )
        done = self._run(("railway", "variables", "--service", service),
                         self.timeouts.command_s)
        values = parse_variables(done.stdout) if done.ok else {}
        redactor = Redactor([*self.target.secret_values(), *values.values()])
        summary = (f"{len(values)} variables fingerprinted: {', '.join(sorted(values))}"
                   if done.ok else strip_ansi(done.stderr))
        activity = done.to_activity(f"variables {service}", redactor, output=summary)
        if done.ok and not values:
            activity = replace(activity, error="railway variables printed no variables this"
                               " adapter could read (neither its table nor NAME=value)")
        shown = fingerprints(values)
        values.clear()
        return Variables(service, activity, fingerprints=shown,
                         note="from `railway variables` (values fingerprinted, never kept)")

    def status(self, service: str | None = None) -> Activity:
        """``railway status`` (every Railway service is listed there), or for web
        ``vercel inspect WEB_URL``. Bounded by ``timeouts.command_s``."""
        if service is not None:
            check_service(service)
        if service == "web":
            if not self.target.web_url:
                return not_run("status web", f"target {self.target.name!r} sets no WEB_URL"
                               " to inspect")
            done = self._run(("vercel", "inspect", self.target.web_url),
                             self.timeouts.command_s, cwd=self.vercel_dir)
        else:
            done = self._run(("railway", "status"), self.timeouts.command_s)
        name = f"status {service}" if service else "status"
        return done.to_activity(name, self.redactor,
                                output=strip_ansi(done.stdout + done.stderr))
