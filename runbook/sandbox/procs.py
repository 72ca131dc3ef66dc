"""Process helpers: parent-death signals, identity of a pid, and stopping a process.

A pid alone is not an identity (the kernel reuses them), so the sandbox records each pid
with its start time from ``/proc/<pid>/stat`` and never signals a pid whose start time
differs: ``down`` after a crashed supervisor kills our servers and nothing else.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable

from runbook.wait import wait_until

PR_SET_PDEATHSIG = 1


def parent_death_preexec(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies.

    Linux only (``None`` elsewhere). The ``prctl`` runs after ``subprocess`` has switched
    uid/gid (which would clear it). If the parent died before the ``prctl``, the child exits.
    The signal is tied to the *thread* that forks: spawn from a thread that lives as long as
    the process (the supervisor spawns from its main thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


#: The autogroup nice value of LegacyVideo's own services (``reserve_cpu_share``).
SERVICE_AUTOGROUP_NICE = -10
#: A service running away with a core (the high-cpu game day's hog): the largest share, the
#: nearest a shared machine comes to the vCPU a platform gives the runaway's container.
RUNAWAY_AUTOGROUP_NICE = -20


def reserve_cpu_share(pid: int, nice: int = SERVICE_AUTOGROUP_NICE) -> bool:
    """Give the session of ``pid`` (its own, ``start_new_session``) a larger CPU share.

    Linux with ``sched_autogroup_enabled`` shares the CPU out per session, not per thread:
    on a busy machine a service would get a sliver, and a runaway API would read as idle as
    a healthy one. A platform gives each container its own vCPU; the nearest here is the
    session's autogroup weight. Best effort: ``False`` where the kernel has no autogroups
    or raising the weight needs a privilege this process lacks (the service then runs with
    the default share).
    """
    try:
        with open(f"/proc/{pid}/autogroup", "w") as handle:
            handle.write(str(nice))
    except OSError:
        return False
    return True


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or ``None`` (no /proc, no pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(")") + 2 :].split()
    try:
        return int(rest[19])  # field 22 overall
    except (IndexError, ValueError):
        return None


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return False
    return raw[raw.rfind(")") + 2 :][:1] in {"Z", "X"}


def is_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a live process (a zombie is dead; our own zombie is reaped)."""
    if not pid or pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return not _is_zombie(pid)
    return not _is_zombie(pid)


def is_same_process(pid: int | None, started: int | None) -> bool:
    """Whether ``pid`` is alive and is the process that had start time ``started``.

    With no recorded start time (or no /proc) only liveness can be checked.
    """
    if not is_alive(pid):
        return False
    assert pid is not None
    if started is None:
        return True
    now = start_time(pid)
    return now is None or now == started


def stop_process(
    pid: int,
    started: int | None,
    sig: int = signal.SIGTERM,
    grace: float = 10.0,
) -> bool:
    """Send ``sig`` to ``pid`` (if it is still the recorded process), wait ``grace`` seconds,
    then SIGKILL it. Returns whether a process was signalled.
    """
    if not is_same_process(pid, started):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if wait_until(lambda: not is_alive(pid), timeout=grace, interval=0.02).ok:
        return True
    if is_same_process(pid, started):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not is_alive(pid), timeout=5.0, interval=0.02)
    return True


def read_pidfile(path: os.PathLike[str] | str) -> int | None:
    """The pid on the first line of ``path`` (postmaster.pid, redis.pid), or ``None``."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            first = handle.readline().strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None
