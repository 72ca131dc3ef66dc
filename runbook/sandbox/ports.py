"""Loopback ports for the sandbox: chosen at the first ``up``, kept in ``ports.json`` and
reused while free, so a restart keeps its URLs.

A port is chosen at random below the kernel's ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``): a server that binds to port 0 and an outgoing
connection's local port both come from that range, so neither can take a sandbox's port in
the seconds between choosing it and its server binding it, nor while a component restarts.
Concurrent sandboxes of one user claim their ports in a shared file under the system temp
directory, so two sandboxes starting together never choose the same one.

Ports of well-known servers (PostgreSQL 5432, Redis 6379 ...) are never used, even when
free: a sandbox must not look like, or collide with, a server of the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from runbook.errors import SandboxError
from runbook.sandbox.layout import read_json, write_json_atomic

#: The components that listen on a port.
PORTED: tuple[str, ...] = ("postgres", "redis", "s3", "mail", "web", "api")
#: Never chosen, even when free.
RESERVED: frozenset[int] = frozenset(
    {80, 443, 3000, 3306, 4566, 5000, 5432, 5555, 6379, 8000, 8080, 9000, 27017}
)
LOOPBACK = "127.0.0.1"
#: Sandbox ports are chosen from here up to the kernel's ephemeral range.
FIRST_PORT = 20000
#: Used when ``ip_local_port_range`` cannot be read (Linux's default start).
DEFAULT_EPHEMERAL_START = 32768
#: How long a chosen port stays claimed for its sandbox: longer than any component's start.
CLAIM_S = 180.0


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether nothing listens on ``host:port`` (a bind with SO_REUSEADDR succeeds).

    SO_REUSEADDR ignores connections lingering in TIME_WAIT after a restart, as the
    servers themselves do, but still fails when any socket listens on the port.
    """
    if port in RESERVED or not 1024 <= port <= 65535:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return not port_is_listening(port, host)


def port_is_listening(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def ephemeral_start(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    """The first port the kernel hands out for port 0 and outgoing connections."""
    try:
        return int(path.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_START


def claims_file() -> Path:
    """The claims shared by this user's sandboxes (one file per user: another user's
    file is not ours to write)."""
    return Path(tempfile.gettempdir()) / f"runbook-port-claims-{os.getuid()}.json"


@contextlib.contextmanager
def _claims(owner: str) -> Iterator[tuple[set[int], dict[str, list[Any]]]]:
    """Hold the claims file's lock; yields the ports others claim and the live claims
    (``port -> [owner, until]``), written back on exit."""
    path = claims_file()
    with open(path.with_suffix(".lock"), "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raw = {}
        now = time.time()
        live = {
            port: claim for port, claim in (raw.items() if isinstance(raw, dict) else ())
            if isinstance(claim, list) and len(claim) == 2 and isinstance(claim[1], float)
            and claim[1] > now
        }
        others = {int(port) for port, claim in live.items() if claim[0] != owner}
        yield others, live
        write_json_atomic(path, live, mode=0o600)


def _fresh_port(avoid: set[int], first: int, end: int) -> int:
    """A free port in ``[first, end)`` not in ``avoid``; the kernel's choice (port 0) when
    the range is too small to choose from."""
    for _ in range(200 if end - first >= 1000 else 0):
        port = first + secrets.randbelow(end - first)
        if port not in avoid and port_is_free(port):
            return port
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid and port not in RESERVED:
            return port
    raise SandboxError("could not find a free loopback port; is the machine out of ports?")


def allocate_ports(path: Path, names: Iterable[str] = PORTED) -> dict[str, int]:
    """The ports of this sandbox: those in ``path`` that are still free, fresh ones for the
    rest; claims them for a while and saves the result back to ``path``.

    Call it only while none of this sandbox's servers runs (else their ports look taken).
    Raises ``SandboxError`` when the file is malformed or no port can be found.
    """
    stored = read_json(path) or {}
    if not isinstance(stored, dict):
        raise SandboxError(f"{path} is not a JSON object; delete it (ports are chosen again)")
    owner = str(path.resolve())
    with _claims(owner) as (others, live):
        ports: dict[str, int] = {}
        for name in names:
            previous = stored.get(name)
            if (
                isinstance(previous, int)
                and previous not in ports.values()
                and previous not in others
                and port_is_free(previous)
            ):
                ports[name] = previous
            else:
                ports[name] = _fresh_port(others | set(ports.values()), FIRST_PORT,
                                          ephemeral_start())
        until = time.time() + CLAIM_S
        for port in ports.values():
            live[str(port)] = [owner, until]
    if ports != stored:
        write_json_atomic(path, ports)
    return ports


def load_ports(path: Path) -> dict[str, int]:
    """The ports recorded in ``path`` (empty when the sandbox never started)."""
    stored = read_json(path) or {}
    if not isinstance(stored, dict):
        return {}
    return {k: v for k, v in stored.items() if isinstance(v, int)}
