"""A resident pytest for ``runbook watch``: the interpreter and its imports started once, a
round forked from it, so a round costs about its probes, not a new interpreter.

``Resident.spawn`` returns a ``Round`` that behaves as the ``subprocess.Popen`` of ``python
-m pytest`` it replaces (``stdout``, ``poll``, ``wait``, ``send_signal``, ``kill``), so the
runner's redaction, time limits, signals and exit codes stay one code path. The resident
(``runbook.harness.resident``) starts with a round's environment less the run's own
variables, and configures pytest once for the round's command line in its directory; a round
whose environment differs in anything else, or whose command line or directory differs,
starts a new one, so what a module reads from the environment when imported is what a fresh
process would read. So does a round after a module the resident imported (ahead, or while
configuring pytest) has changed on disk: the resident says so and ends. When it
has died, ``spawn`` raises ``ResidentUnavailable`` (the caller runs that round as a plain
subprocess) and the next round starts a new one; when it cannot start, every round runs as a
plain subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any

#: Variables that change every round (the run's id and its resolved target): the resident
#: starts without them (secrets stay out of its start-up), each round gets them.
RUN_VARIABLES = frozenset({"RUNBOOK_RUN", "RUNBOOK_RUN_ID"})
#: How long the resident may take to import what a run needs, seconds.
START_TIMEOUT_S = 60.0
#: A message's length before it (its JSON), in the protocol both sides speak.
HEADER = struct.Struct("!I")
_MODULE = "runbook.harness.resident"
#: How the runner starts pytest: the resident runs what follows it.
_PYTEST = [sys.executable, "-P", "-m", "pytest"]


def send(channel: socket.socket, message: dict[str, Any], fds: Iterable[int] = ()) -> None:
    """One length-prefixed JSON message, with ``fds`` passed alongside."""
    body = json.dumps(message).encode()
    data = HEADER.pack(len(body)) + body
    sent = socket.send_fds(channel, [data], list(fds))
    if sent < len(data):
        channel.sendall(data[sent:])


class ResidentUnavailable(RuntimeError):
    """The resident could not start, or has died: run the round as a plain subprocess."""


class _Stale(Exception):
    """The resident ended before a round: a module it imported has changed on disk."""


class Round:
    """One round forked by the resident, as a ``Popen`` of its pytest: ``stdout`` (text,
    stdout and stderr together), ``poll``, ``wait``, ``send_signal``, ``kill``,
    ``returncode`` (negative: the signal that ended it)."""

    def __init__(self, resident: Resident, pid: int, stdout: IO[str]) -> None:
        self._resident = resident
        self.pid = pid
        self.stdout = stdout
        self.returncode: int | None = None
        self.args = [_MODULE, str(pid)]

    def poll(self) -> int | None:
        """The exit code when the round has ended, else ``None``."""
        if self.returncode is None:
            self._resident._ended(self, timeout=0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the round to end; ``subprocess.TimeoutExpired`` after ``timeout``."""
        if self.returncode is None and not self._resident._ended(self, timeout=timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Signal the round, unless it has ended."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> Round:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stdout.close()


class Resident:
    """The resident pytest of one watch, started at the first round, ended by ``close``
    (or with the watch, however it ends)."""

    def __init__(self, warn: Callable[[str], None] | None = None) -> None:
        self._warn = warn
        self._warned = False
        #: Set when the resident could not start: the rounds run as plain subprocesses.
        self.broken = False
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        #: What the running resident was started for: environment, arguments, directory.
        self._key: tuple[dict[str, str], list[str], str] | None = None
        self._buffer = b""
        self._lock = threading.Lock()
        self.pid: int | None = None
        #: The CPU seconds of every round forked so far (their processes, as reaped): the
        #: watch counts each round's from it.
        self.rounds_cpu_s = 0.0

    def spawn(self, command: Sequence[str], env: Mapping[str, str]) -> Round:
        """Fork ``command`` (``python -P -m pytest ARGS``) from the resident, with ``env``,
        in this directory. Raises ``ResidentUnavailable`` when it cannot."""
        if list(command[:4]) != _PYTEST:
            raise ResidentUnavailable(f"not a pytest command: {command[:4]}")
        if self.broken:
            raise ResidentUnavailable("the resident pytest could not start")
        key = ({k: v for k, v in env.items() if k not in RUN_VARIABLES}, list(command[4:]),
               os.getcwd())
        for _ in range(2):
            if self._key != key:
                self.close()
                try:
                    self._start(*key)
                except ResidentUnavailable:
                    self.broken = True
                    raise
            try:
                return self._fork(key, dict(env))
            except _Stale:
                # A module it imported has changed: a new resident imports it afresh.
                self.close()
        raise ResidentUnavailable("the resident pytest found its modules changed twice")

    def _fork(self, key: tuple[dict[str, str], list[str], str], env: dict[str, str]
              ) -> Round:
        channel = self._channel
        assert channel is not None
        read, write = os.pipe()
        try:
            self._send({"args": key[1], "env": env, "cwd": key[2]}, fds=[write])
        except OSError as exc:
            os.close(read)
            self.close()
            raise ResidentUnavailable(f"the resident pytest is gone ({exc})") from None
        finally:
            os.close(write)
        answer = self._message(None)
        if answer is not None and "stale" in answer:
            os.close(read)
            raise _Stale(answer["stale"])
        if answer is None or "pid" not in answer:
            os.close(read)
            self.close()
            raise ResidentUnavailable(f"the resident pytest did not fork the round ({answer})")
        # As subprocess.Popen(text=True, errors="replace", bufsize=1) reads it.
        stdout = open(read, encoding=None, errors="replace", buffering=1)  # noqa: SIM115
        return Round(self, int(answer["pid"]), stdout)

    def fallback(self, reason: ResidentUnavailable) -> None:
        """A round runs as a plain subprocess because of ``reason``: said once."""
        if self._warn is not None and not self._warned:
            self._warned = True
            self._warn(f"{reason}; rounds run as plain pytest subprocesses while it is"
                       " unavailable")

    def _start(self, env: dict[str, str], args: list[str], cwd: str) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = subprocess.Popen(
                [sys.executable, "-P", "-m", _MODULE, str(theirs.fileno()), str(os.getpid())],
                env=env, pass_fds=(theirs.fileno(),), stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
        except OSError as exc:
            ours.close()
            raise ResidentUnavailable(f"the resident pytest did not start ({exc})") from None
        finally:
            theirs.close()
        self._process, self._channel, self._buffer = process, ours, b""
        with contextlib.suppress(OSError):  # it ended at once: said below
            self._send({"prepare": {"args": args, "cwd": cwd}})
        ready = self._message(START_TIMEOUT_S)
        if ready is not None and "unprepared" in ready:
            self.close()
            raise ResidentUnavailable("the resident pytest could not configure the run"
                                      f" ({ready['unprepared']})")
        if ready is None or "ready" not in ready:
            self.close()
            raise ResidentUnavailable("the resident pytest did not start (exit code"
                                      f" {process.poll()})")
        self._key = (env, args, cwd)
        self.pid = process.pid

    def _send(self, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
        assert self._channel is not None
        send(self._channel, message, fds)

    def _message(self, timeout: float | None) -> dict[str, Any] | None:
        """The next message from the resident; ``None`` at end of file or after
        ``timeout`` (then nothing is consumed)."""
        channel = self._channel
        if channel is None:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if len(self._buffer) >= HEADER.size:
                (length,) = HEADER.unpack_from(self._buffer)
                end = HEADER.size + length
                if len(self._buffer) >= end:
                    message: dict[str, Any] = json.loads(self._buffer[HEADER.size:end])
                    self._buffer = self._buffer[end:]
                    return message
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                readable, _, _ = select.select([channel], [], [], left)
            except (OSError, ValueError):
                return None
            if not readable:
                return None
            try:
                chunk = channel.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                return None
            self._buffer += chunk

    def _ended(self, round_: Round, timeout: float | None) -> bool:
        """Read the round's exit code into it, waiting up to ``timeout``; whether it has
        ended. A resident that died ends its round as killed."""
        # A poll (a timer's, a signal handler's) never waits for a reader holding the lock.
        if not self._lock.acquire(blocking=timeout != 0.0):
            return round_.returncode is not None
        try:
            if round_.returncode is not None:
                return True
            if self._channel is None:
                round_.returncode = -signal.SIGKILL
                return True
            ended = self._message(timeout)
            if ended is not None and ended.get("pid") == round_.pid:
                round_.returncode = int(ended["returncode"])
                self.rounds_cpu_s += float(ended.get("cpu_s", 0.0))
                return True
            if ended is None and timeout is not None and self._alive():
                return False
            # End of file: the resident (and with it the round) is gone.
            self.close()
            round_.returncode = -signal.SIGKILL
            return True
        finally:
            self._lock.release()

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def close(self) -> None:
        """End the resident (closing its socket ends it) and reap it."""
        channel, process = self._channel, self._process
        self._channel, self._process, self._key, self.pid = None, None, None, None
        if channel is not None:
            channel.close()
        if process is not None:
            try:
                process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> Resident:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
