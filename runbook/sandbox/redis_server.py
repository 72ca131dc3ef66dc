"""Redis for the sandbox: a real ``redis-server`` configured by a 0600 file (the password
never appears on a command line), bound to loopback, append-only, in the foreground."""

from __future__ import annotations

import os
from pathlib import Path

from runbook.sandbox.layout import Layout


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(layout: Layout, port: int, password: str) -> Path:
    """Write ``redis/redis.conf`` (mode 0600) and return its path."""
    layout.redis.mkdir(mode=0o700, exist_ok=True)
    path = layout.redis / "redis.conf"
    lines = [
        f"port {port}",
        "bind 127.0.0.1",
        "protected-mode yes",
        f"requirepass {_quote(password)}",
        f"dir {_quote(str(layout.redis))}",
        f"pidfile {_quote(str(layout.redis / 'redis.pid'))}",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "daemonize no",
        "supervised no",
        'logfile ""',
        "loglevel notice",
    ]
    text = "\n".join(lines) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
    return path


def server_argv(redis_server: Path, config: Path) -> list[str]:
    """``redis-server <config>``: everything, password included, comes from the file."""
    return [str(redis_server), str(config)]
