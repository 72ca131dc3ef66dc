"""What every platform adapter shares: the interface, its records, and the one Runner.

* ``PlatformAdapter``: ``restart``, ``replace_instance``, ``logs``, ``variables``,
  ``status`` for the services ``api``, ``worker`` and ``web``
  (``docs/operations-contract.md``).
* ``LogLines`` and ``Variables``: frozen records around the ``Activity`` that produced them.
  ``Variables`` holds sha256 fingerprints only; no value is ever stored or printed.
* ``Runner``: the only place a subprocess starts. Every run has a timeout; a process that
  overruns is stopped (its whole process group) and the run is recorded as failed; a missing
  executable is a one-line ``RunbookError``.
* Error-line classification for logs (``ERROR``, ``level=error``, tracebacks, 5xx request
  lines), shared by every adapter and by ``runbook.probes.logs``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Literal, Protocol, TypeVar, runtime_checkable

from runbook.errors import ConfigError, RunbookError
from runbook.redact import Redactor
from runbook.results import Activity, Result, TimedResult, Timing, failure, utcnow

#: The services the runbook restarts and reads logs of.
SERVICES: tuple[str, ...] = ("api", "worker", "web")
#: Activity output is kept to this many bytes (its tail), redacted.
MAX_OUTPUT_BYTES = 64 * 1024
#: Length of a variable fingerprint: the first 12 hex digits of sha256.
FINGERPRINT_HEX = 12
#: Variables given to every CLI run, so that its output is plain text to parse.
CLI_ENV: Mapping[str, str] = MappingProxyType({"NO_COLOR": "1", "FORCE_COLOR": "0"})

T = TypeVar("T")


def check_service(service: str) -> str:
    """``service`` itself when it is one of ``SERVICES``; ``ConfigError`` otherwise."""
    if service not in SERVICES:
        raise ConfigError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    return service


# -- records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLines(Result):
    """Recent log lines of one service, redacted, with the ones a person would call errors.

    ok when the logs could be read (its ``activity``'s problems are its own); ``lines`` are
    oldest first.
    """

    service: str
    activity: Activity
    lines: tuple[str, ...]
    error_lines: tuple[str, ...]

    @property
    def problems(self) -> tuple[str, ...]:
        return self.activity.problems

    def __repr__(self) -> str:
        return (f"LogLines({self.service}: {len(self.lines)} lines,"
                f" {len(self.error_lines)} errors, ok={self.ok})")


@dataclass(frozen=True)
class Variables(Result):
    """A service's variable names with the sha256 fingerprint (first 12 hex) of each value.

    ``unreadable`` names variables that exist but whose values this platform does not show
    (Kubernetes ``valueFrom`` secrets, a sandbox override the supervisor does not expose);
    ``note`` says why in a sentence. No value is held here. ok when they could be read
    (its ``activity``'s problems are its own).
    """

    service: str
    activity: Activity
    fingerprints: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    unreadable: tuple[str, ...] = ()
    note: str = ""

    @property
    def problems(self) -> tuple[str, ...]:
        return self.activity.problems

    @property
    def names(self) -> tuple[str, ...]:
        """Every variable name seen, readable or not, sorted."""
        return tuple(sorted({*self.fingerprints, *self.unreadable}))

    def matches(self, other: Variables, name: str) -> bool | None:
        """Whether ``name`` has the same value here and in ``other``; ``None`` when either
        side cannot tell (the variable is missing or unreadable)."""
        mine, theirs = self.fingerprints.get(name), other.fingerprints.get(name)
        if mine is None or theirs is None:
            return None
        return mine == theirs


def fingerprint(value: str) -> str:
    """The first 12 hex digits of the sha256 of ``value`` (UTF-8): equal values compare equal
    without either being shown."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:FINGERPRINT_HEX]


def fingerprints(values: Mapping[str, str]) -> Mapping[str, str]:
    """``fingerprint`` of every value, keyed by name, sorted, read-only."""
    return MappingProxyType({name: fingerprint(values[name]) for name in sorted(values)})


# -- the interface -----------------------------------------------------------------------


@runtime_checkable
class PlatformAdapter(Protocol):
    """Restart a service, read its logs, variables and status, wherever it runs."""

    name: str

    def restart(self, service: str) -> Activity:
        """Restart ``service`` and return once the platform says it is back (or failed).
        Raises ``SafetyGateError`` unless the adapter was built with ``allow_changes``."""
        ...

    def set_variables(self, service: str, changes: Mapping[str, str | None]) -> Activity:
        """Store ``changes`` in ``service``'s variables (``None``: unset one) and restart it
        with them, as ``railway variables --set`` does; they last across restarts. No value
        is recorded. Raises ``SafetyGateError`` unless built with ``allow_changes``."""
        ...

    def replace_instance(self, service: str) -> Activity:
        """Kill one running instance of ``service`` the way the platform does (Kubernetes:
        one pod of its Deployment deleted; Railway: its latest deployment redeployed) and
        return once the platform reports its replacement rolled out, or failed (a platform
        whose CLI does not wait says so in the activity's output). Raises
        ``SafetyGateError`` unless built with ``allow_changes``."""
        ...

    def logs(self, service: str, *, since: str = "1h", lines: int = 500) -> LogLines:
        """At most ``lines`` recent log lines of ``service`` from the last ``since``."""
        ...

    def variables(self, service: str) -> Variables:
        """The names of ``service``'s variables with fingerprints of their values."""
        ...

    def status(self, service: str | None = None) -> Activity:
        """What the platform says about ``service`` (or every service)."""
        ...


# -- log classification ----------------------------------------------------------------

_ERROR_WORD = re.compile(r"\b(?:ERROR|FATAL|CRITICAL|PANIC)\b")
_LEVEL_ERROR = re.compile(
    r"""(?ix)
    \blevel\s*=\s*"?(?:error|fatal|critical|panic)\b          # level=error
    | "(?:level|severity)"\s*:\s*"(?:error|fatal|critical|panic)"   # JSON logs
    | @level:error\b
    """
)
_TRACEBACK = re.compile(r"^\s*Traceback \(most recent call last\):")
_REQUEST_STATUS: tuple[re.Pattern[str], ...] = (
    # key=value request lines: ``request method=GET path=/x status=500``
    re.compile(r"\bstatus(?:_code|Code)?\s*[=:]\s*\"?([1-5]\d\d)\b"),
    # JSON request lines: ``"status": 500`` / ``"responseStatusCode": 502``
    re.compile(r"\"(?:status|statusCode|status_code|responseStatusCode)\"\s*:\s*\"?([1-5]\d\d)\b"),
    # access logs: ``"GET /x HTTP/1.1" 500``
    re.compile(r"\"[A-Z]+ \S+ HTTP/\d(?:\.\d)?\" ([1-5]\d\d)\b"),
)


#: Text every one of ``_REQUEST_STATUS`` needs one of ("status", "Status", an access log's
#: protocol); most log lines hold none, and ``in`` finds that faster than the expressions.
_REQUEST_NEEDS = ("tatus", "HTTP/")
#: What ``_ERROR_WORD`` and ``_TRACEBACK`` each need, as plain text.
_ERROR_WORDS = ("ERROR", "FATAL", "CRITICAL", "PANIC")
_TRACEBACK_TEXT = "Traceback (most recent call last):"


def _may_name_a_level(line: str) -> bool:
    """Whether ``line`` may match ``_LEVEL_ERROR``, which needs "level" or "severity" in any
    case (ASCII text lowered; other text is left to the expression)."""
    if not line.isascii():
        return True
    lowered = line.lower()
    return "level" in lowered or "severity" in lowered


def request_status(line: str) -> int | None:
    """The HTTP status of a request line (``status=500``, ``"status":500``, access-log
    form), or ``None`` when ``line`` is not a request line."""
    if not any(needle in line for needle in _REQUEST_NEEDS):
        return None
    for pattern in _REQUEST_STATUS:
        match = pattern.search(line)
        if match:
            return int(match.group(1))
    return None


def is_error_line(line: str) -> bool:
    """Whether a person would call ``line`` an error: an ``ERROR`` (``FATAL``, ``CRITICAL``,
    ``PANIC``) level word, ``level=error`` or its JSON form, the first line of a Python
    traceback, or a request line answered 5xx."""
    if ((any(word in line for word in _ERROR_WORDS) and _ERROR_WORD.search(line))
            or (_may_name_a_level(line) and _LEVEL_ERROR.search(line))
            or (_TRACEBACK_TEXT in line and _TRACEBACK.search(line))):
        return True
    status = request_status(line)
    return status is not None and status >= 500


def error_lines(lines: Iterable[str]) -> tuple[str, ...]:
    """The lines of ``lines`` that ``is_error_line`` accepts, in order."""
    return tuple(line for line in lines if is_error_line(line))


_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(since: str) -> timedelta:
    """``30s``, ``5m``, ``1h``, ``2d``, ``1w`` as a duration; ``ConfigError`` otherwise."""
    match = _SINCE.match(since)
    if not match:
        raise ConfigError(f"since: {since!r} is not a duration like 30s, 5m, 1h, 2d or 1w")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def line_time(line: str) -> datetime | None:
    """The ISO-8601 timestamp a log line starts with (timezone-aware), or ``None``."""
    head = line.split(" ", 1)[0]
    if len(head) < 19 or not head[:4].isdigit():
        return None
    try:
        stamp = datetime.fromisoformat(head.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else None


def lines_since(lines: Sequence[str], since: timedelta, now: datetime | None = None
                ) -> list[str]:
    """The lines stamped within ``since`` of ``now``; an unstamped line (a traceback's
    continuation) goes with the stamped line before it."""
    cutoff = (now or utcnow()) - since
    kept: list[str] = []
    keep = True
    for line in lines:
        stamp = line_time(line)
        if stamp is not None:
            keep = stamp >= cutoff
        if keep:
            kept.append(line)
    return kept


# -- activities --------------------------------------------------------------------------


def one_line(text: str, limit: int = 300) -> str:
    """The most telling line of ``text`` (its first non-empty one), at most ``limit``
    characters."""
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


def clip_output(text: str) -> str:
    """The tail of ``text`` that fits in ``MAX_OUTPUT_BYTES`` (UTF-8)."""
    raw = text.encode("utf-8")
    if len(raw) <= MAX_OUTPUT_BYTES:
        return text
    return raw[-MAX_OUTPUT_BYTES:].decode("utf-8", "ignore")


def record(name: str, command: Sequence[str], body: Callable[[], tuple[bool, str, str]],
           redactor: Redactor, *, runbook_says: str = "") -> Activity:
    """Time ``body`` (returning ``ok, output, error``) into a redacted ``Activity``.
    ``command`` is what ``body`` really runs (``library_call`` for a library call);
    ``runbook_says`` the runbook's own command for the step, when it differs.

    An exception from ``body`` propagates; nothing is recorded then."""
    started_at = utcnow()
    started = time.monotonic()
    ok, output, error = body()
    elapsed = time.monotonic() - started
    return Activity(
        name=name,
        command=tuple(redactor(part) for part in command),
        timing=Timing(started_at, utcnow(), elapsed),
        output=clip_output(redactor(output)),
        error="" if ok else failure(name, one_line(redactor(error))),
        runbook_says=redactor(runbook_says),
    )


def library_call(function: str, *args: object) -> tuple[str, ...]:
    """An ``Activity.command`` for a call into a library rather than a command line:
    ``("library", "<module.function>", args...)``, so a record never names a CLI that did
    not run."""
    return ("library", function, *(str(a) for a in args))


def chained(*commands: Sequence[str]) -> tuple[str, ...]:
    """Several calls one step made, in order, as one ``Activity.command`` (``&&`` between)."""
    joined: list[str] = []
    for command in commands:
        if joined:
            joined.append("&&")
        joined.extend(command)
    return tuple(joined)


def variables_not_settable(platform: str, service: str, changes: Mapping[str, str | None]
                           ) -> Activity:
    """What ``set_variables`` gives on a platform whose CLI takes a variable's value on its
    command line (where ``ps`` shows it to every user of the machine): nothing is run."""
    return not_run(f"set variables {', '.join(sorted(changes))} of {service}",
                   f"not done: {platform}'s CLI takes the value on its command line, where"
                   " other users of this machine could read it; set it in the platform's"
                   " dashboard")


def not_run(name: str, error: str) -> Activity:
    """A failed ``Activity`` for an operation this platform cannot do (nothing was run)."""
    now = utcnow()
    return Activity(name=name, command=(), timing=Timing(now, now, 0.0),
                    error=failure(name, error))


# -- the Runner ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Completed(TimedResult):
    """How one subprocess run ended: ok when it exited 0 in time (``problem()`` says
    otherwise). ``timed_out`` runs were stopped by the Runner."""

    argv: tuple[str, ...]
    returncode: int | None
    #: What the run printed, unredacted: never evidence (``to_activity`` redacts it).
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)
    timing: Timing = field()
    timeout_s: float
    timed_out: bool = False

    @property
    def problems(self) -> tuple[str, ...]:
        problem = self.problem()
        return (problem,) if problem else ()

    @property
    def program(self) -> str:
        return Path(self.argv[0]).name if self.argv else "?"

    def problem(self) -> str:
        """One line saying what went wrong ("" when the run succeeded)."""
        if self.timed_out:
            return (f"{self.program} did not finish within {self.timeout_s:g} s; the Runner"
                    f" stopped it (timeout)")
        if self.returncode != 0:
            said = one_line(self.stderr) or one_line(self.stdout) or "no output"
            return f"{self.program} exited with code {self.returncode}: {said}"
        return ""

    def to_activity(self, name: str, redactor: Redactor, *, output: str | None = None
                    ) -> Activity:
        """This run as a redacted ``Activity``; ``output`` replaces stdout+stderr when given
        (callers pass a summary for output that holds values, such as variable listings)."""
        shown = output if output is not None else "\n".join(
            part for part in (self.stdout.rstrip("\n"), self.stderr.rstrip("\n")) if part
        )
        return Activity(
            name=name,
            command=tuple(redactor(part) for part in self.argv),
            timing=self.timing,
            output=clip_output(redactor(shown)),
            error=one_line(redactor(self.problem())),
        )


class Runner:
    """Starts subprocesses: ``run(argv, timeout=..., env=..., cwd=...) -> Completed``.

    The child gets no stdin, its own session (so a timeout stops its whole process group:
    SIGTERM, then SIGKILL after ``kill_grace_s``), and this process's environment updated
    with ``env``. Raises ``RunbookError`` (one line) when the executable is not on ``PATH``.
    """

    def __init__(self, *, kill_grace_s: float = 2.0) -> None:
        self.kill_grace_s = kill_grace_s

    def run(self, argv: Sequence[str], *, timeout: float,
            env: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> Completed:
        """Run ``argv`` for at most ``timeout`` seconds and return how it ended."""
        if not argv:
            raise RunbookError("nothing to run: empty command")
        merged = dict(os.environ)
        merged.update(env or {})
        program = argv[0]
        executable = shutil.which(program, path=merged.get("PATH"))
        if executable is None:
            raise RunbookError(missing_cli(program))
        started_at = utcnow()
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                list(argv), executable=executable, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=merged,
                cwd=str(cwd) if cwd is not None else None, start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            raise RunbookError(missing_cli(program)) from None
        except PermissionError:
            raise RunbookError(f"{program} at {executable} is not executable; fix its"
                               f" permissions or set PLATFORM") from None
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            out, err = self._stop(proc)
        except BaseException:  # Ctrl-C while waiting: leave nothing running
            self._stop(proc)
            raise
        elapsed = time.monotonic() - started
        return Completed(
            argv=tuple(argv),
            returncode=proc.returncode,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            timing=Timing(started_at, utcnow(), elapsed),
            timeout_s=timeout,
            timed_out=timed_out,
        )

    def _stop(self, proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
        """SIGTERM the child's process group, SIGKILL it after the grace period; return
        whatever output was collected (bounded: pipes held open by a stray grandchild are
        abandoned)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                out, err = proc.communicate(timeout=self.kill_grace_s)
                return out or b"", err or b""
            except subprocess.TimeoutExpired:
                continue
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=self.kill_grace_s)
        return b"", b""


def missing_cli(program: str) -> str:
    """The one-line error for a CLI that is not installed."""
    return f"{Path(program).name} CLI not found on PATH; install it or set PLATFORM"


@dataclass(frozen=True)
class RunCall:
    """One call a ``RecordingRunner`` saw."""

    argv: tuple[str, ...]
    timeout: float
    cwd: str | None
    env_names: tuple[str, ...]


class RecordingRunner(Runner):
    """A ``Runner`` that records every argv it is asked to run (never the environment's
    values), then runs it, or answers from ``reply`` when one is given (for tests)."""

    def __init__(self, reply: Callable[[Sequence[str]], tuple[int, str, str]] | None = None,
                 *, kill_grace_s: float = 2.0) -> None:
        super().__init__(kill_grace_s=kill_grace_s)
        self.reply = reply
        self._calls: list[RunCall] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> tuple[RunCall, ...]:
        with self._lock:
            return tuple(self._calls)

    def run(self, argv: Sequence[str], *, timeout: float,
            env: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> Completed:
        with self._lock:
            self._calls.append(RunCall(tuple(argv), timeout, str(cwd) if cwd else None,
                                       tuple(sorted(env or {}))))
        if self.reply is None:
            return super().run(argv, timeout=timeout, env=env, cwd=cwd)
        code, out, err = self.reply(argv)
        now = utcnow()
        return Completed(tuple(argv), code, out, err, Timing(now, now, 0.0), timeout)


# -- timeouts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlatformTimeouts:
    """Seconds a platform command may take: ``command_s`` for reads (logs, variables,
    status), ``restart_s`` for a restart or redeploy and the wait for it to be healthy."""

    command_s: float = 60.0
    restart_s: float = 300.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PlatformTimeouts:
        """``RUNBOOK_PLATFORM_TIMEOUT`` and ``RUNBOOK_RESTART_TIMEOUT`` (seconds)."""
        env = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for name, key in (("RUNBOOK_PLATFORM_TIMEOUT", "command_s"),
                          ("RUNBOOK_RESTART_TIMEOUT", "restart_s")):
            raw = env.get(name)
            if raw:
                try:
                    value = float(raw)
                except ValueError:
                    value = -1.0
                if value <= 0:
                    raise ConfigError(f"{name}: {raw!r} is not a positive number of seconds")
                values[key] = value
        return cls(**values)


# -- the recording wrapper -----------------------------------------------------------------

CallKind = Literal["read", "destructive"]
#: What each adapter method is, for the safety-gate checks.
KINDS: Mapping[str, CallKind] = MappingProxyType(
    {"restart": "destructive", "set_variables": "destructive",
     "replace_instance": "destructive", "logs": "read", "variables": "read",
     "status": "read"}
)


@dataclass(frozen=True)
class PlatformCall:
    """One call a ``RecordingPlatform`` passed on: which, on what, its kind, how it ended
    (``ok``, ``failed``, or the exception's class name such as ``SafetyGateError``)."""

    method: str
    service: str | None
    kind: CallKind
    at: datetime
    outcome: str


class RecordingPlatform:
    """Wraps an adapter and records every call with its kind (``read`` or ``destructive``),
    so a test can prove that a scenario touched nothing, or was refused."""

    def __init__(self, inner: PlatformAdapter) -> None:
        self.inner = inner
        self.name = inner.name
        self._calls: list[PlatformCall] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RecordingPlatform({self.inner!r}, {len(self.calls)} calls)"

    @property
    def calls(self) -> tuple[PlatformCall, ...]:
        with self._lock:
            return tuple(self._calls)

    @property
    def destructive_calls(self) -> tuple[PlatformCall, ...]:
        return tuple(c for c in self.calls if c.kind == "destructive")

    def _call(self, method: str, service: str | None, fn: Callable[[], T]) -> T:
        outcome = "error"
        try:
            result = fn()
            ok = getattr(result, "ok", True)
            outcome = "ok" if ok else "failed"
            return result
        except BaseException as exc:
            outcome = type(exc).__name__
            raise
        finally:
            with self._lock:
                self._calls.append(PlatformCall(method, service, KINDS[method], utcnow(),
                                                outcome))

    def restart(self, service: str) -> Activity:
        return self._call("restart", service, lambda: self.inner.restart(service))

    def set_variables(self, service: str, changes: Mapping[str, str | None]) -> Activity:
        return self._call("set_variables", service,
                          lambda: self.inner.set_variables(service, changes))

    def replace_instance(self, service: str) -> Activity:
        return self._call("replace_instance", service,
                          lambda: self.inner.replace_instance(service))

    def logs(self, service: str, *, since: str = "1h", lines: int = 500) -> LogLines:
        return self._call("logs", service,
                          lambda: self.inner.logs(service, since=since, lines=lines))

    def variables(self, service: str) -> Variables:
        return self._call("variables", service, lambda: self.inner.variables(service))

    def status(self, service: str | None = None) -> Activity:
        return self._call("status", service, lambda: self.inner.status(service))


def json_summary(value: object) -> str:
    """Compact JSON for an activity's output."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class NoPlatform:
    """The adapter of a target that declares no ``PLATFORM`` (its data services only): every
    call is an operation it cannot do, said in one line, nothing run. Drills that need no
    platform (a restore test, canary data) run on it; those that do are refused first."""

    name = "none"

    def __init__(self, target_name: str) -> None:
        self.target_name = target_name

    def __repr__(self) -> str:
        return f"NoPlatform({self.target_name!r})"

    def _refused(self, what: str) -> Activity:
        return not_run(what, f"target {self.target_name!r} declares no PLATFORM: nothing"
                             " can restart or reconfigure its services")

    def restart(self, service: str) -> Activity:
        return self._refused(f"restart {check_service(service)}")

    def set_variables(self, service: str, changes: Mapping[str, str | None]) -> Activity:
        return self._refused(f"set variables of {check_service(service)}")

    def replace_instance(self, service: str) -> Activity:
        return self._refused(f"replace an instance of {check_service(service)}")

    def logs(self, service: str, *, since: str = "1h", lines: int = 500) -> LogLines:
        return LogLines(service=check_service(service), activity=self._refused(
            f"logs of {service}"), lines=(), error_lines=())

    def variables(self, service: str) -> Variables:
        return Variables(service=check_service(service),
                         activity=self._refused(f"variables of {service}"))

    def status(self, service: str | None = None) -> Activity:
        return self._refused(f"status of {service or 'every service'}")
