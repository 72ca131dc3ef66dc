"""Loopback ports for the sandbox: chosen by the kernel at the first ``up`` (bind to port 0),
kept in ``ports.json`` and reused while free, so a restart keeps its URLs.

Ports of well-known servers (PostgreSQL 5432, Redis 6379 ...) are never used, even when
free: a sandbox must not look like, or collide with, a server of the machine.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable
from pathlib import Path

from runbook.errors import SandboxError
from runbook.sandbox.layout import read_json, write_json_atomic

#: The components that listen on a port.
PORTED: tuple[str, ...] = ("postgres", "redis", "s3", "mail", "web", "api")
#: Never chosen, even when free.
RESERVED: frozenset[int] = frozenset(
    {80, 443, 3000, 3306, 4566, 5000, 5432, 5555, 6379, 8000, 8080, 9000, 27017}
)
LOOPBACK = "127.0.0.1"


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


def _fresh_port(taken: Iterable[int]) -> int:
    avoid = set(taken)
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid and port not in RESERVED:
            return port
    raise SandboxError("could not find a free loopback port; is the machine out of ports?")


def allocate_ports(path: Path, names: Iterable[str] = PORTED) -> dict[str, int]:
    """The ports of this sandbox: those in ``path`` that are still free, fresh ones for the
    rest; saves the result back to ``path``.

    Call it only while none of this sandbox's servers runs (else their ports look taken).
    Raises ``SandboxError`` when the file is malformed or no port can be found.
    """
    stored = read_json(path) or {}
    if not isinstance(stored, dict):
        raise SandboxError(f"{path} is not a JSON object; delete it (ports are chosen again)")
    ports: dict[str, int] = {}
    for name in names:
        previous = stored.get(name)
        if (
            isinstance(previous, int)
            and previous not in ports.values()
            and port_is_free(previous)
        ):
            ports[name] = previous
        else:
            ports[name] = _fresh_port(ports.values())
    if ports != stored:
        write_json_atomic(path, ports)
    return ports


def load_ports(path: Path) -> dict[str, int]:
    """The ports recorded in ``path`` (empty when the sandbox never started)."""
    stored = read_json(path) or {}
    if not isinstance(stored, dict):
        return {}
    return {k: v for k, v in stored.items() if isinstance(v, int)}
