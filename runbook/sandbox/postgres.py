"""PostgreSQL for the sandbox: data directory, ``initdb``, the server's command line, and the
application role and database.

PostgreSQL refuses to run as root. When the sandbox is started as root, ``initdb`` and
``postgres`` run as ``nobody`` (group ``nogroup``, or nobody's primary group), and the data
directory belongs to that user. ``nobody`` must be able to traverse every directory above
the data directory; when it cannot (``RUNBOOK_HOME`` under a 0700 directory such as
``/root`` or pytest's temporary directories), the data directory is kept in a private
directory under the system temporary directory and ``sandbox/pgdata`` is a symlink to it.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.errors import SandboxError
from runbook.sandbox.binaries import PostgresBinaries

SUPERUSER = "postgres"
APP_ROLE = "legacyvideo"
APP_DATABASE = "legacyvideo"
UNPRIVILEGED_USER = "nobody"
PGDATA_PREFIX = "runbook-pgdata-"


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user PostgreSQL runs as when the sandbox runs as root."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def postgres_user() -> RunAs | None:
    """``nobody`` when this process is root, ``None`` otherwise.

    Raises ``SandboxError`` when root has no ``nobody`` user to drop privileges to.
    """
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        raise SandboxError(
            "running as root, PostgreSQL needs an unprivileged user but there is no 'nobody';"
            " create one (useradd -r nobody) or run the sandbox as a normal user"
        ) from None
    gid = entry.pw_gid
    with contextlib.suppress(KeyError):
        gid = grp.getgrnam("nogroup").gr_gid
    return RunAs(UNPRIVILEGED_USER, entry.pw_uid, gid, (gid,))


def can_traverse(path: Path, user: RunAs) -> bool:
    """Whether ``user`` may search every directory from ``/`` down to ``path`` inclusive
    (permission bits only; ACLs are not consulted)."""
    current = Path(path).absolute()
    chain = [current, *current.parents]
    for directory in chain:
        try:
            info = directory.stat()
        except OSError:
            return False
        if info.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif info.st_gid in user.groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def _chown(path: Path, user: RunAs) -> None:
    os.chown(path, user.uid, user.gid, follow_symlinks=False)


def data_directory(link: Path, state_root: Path, user: RunAs | None) -> Path:
    """The real data directory for ``link`` (``sandbox/pgdata``), creating it when absent.

    Raises ``SandboxError`` when no location reachable by ``user`` can be made.
    """
    if link.is_symlink():
        target = Path(os.readlink(link))
        if target.is_dir():
            return target
        # The private directory was removed (a reboot clears the temp dir): start afresh.
        link.unlink()
    elif link.is_dir():
        if user is not None:
            _chown(link, user)
        return link
    if user is None:
        link.mkdir(mode=0o700)
        return link
    # Root: the state root is ours (0700); let nobody traverse it (not list it), if it can
    # reach it at all. Everything secret inside is 0600.
    if can_traverse(state_root.parent, user):
        os.chmod(state_root, 0o711)
        link.mkdir(mode=0o700)
        _chown(link, user)
        return link
    base = Path(tempfile.mkdtemp(prefix=PGDATA_PREFIX))
    if not can_traverse(base.parent, user):
        shutil.rmtree(base, ignore_errors=True)
        raise SandboxError(
            f"PostgreSQL must run as {user.name!r} (the sandbox runs as root) but"
            f" {user.name!r} cannot reach {state_root} nor {base.parent}; set RUNBOOK_HOME or"
            " TMPDIR to a world-traversable directory, or run as a normal user"
        )
    os.chmod(base, 0o700)
    _chown(base, user)
    data = base / "pgdata"
    data.mkdir(mode=0o700)
    _chown(data, user)
    link.symlink_to(data)
    return data


def remove_data_directory(link: Path) -> None:
    """Delete the data directory (and the private temp directory a symlink points into)."""
    if link.is_symlink():
        target = Path(os.readlink(link))
        link.unlink()
        base = target.parent
        if base.name.startswith(PGDATA_PREFIX):
            shutil.rmtree(base, ignore_errors=True)
        else:
            shutil.rmtree(target, ignore_errors=True)
    elif link.exists():
        shutil.rmtree(link, ignore_errors=True)


def server_major(binaries: PostgresBinaries) -> str:
    """The major version of ``postgres`` (``"15"``). Raises ``SandboxError``."""
    try:
        done = subprocess.run(
            [str(binaries.postgres), "--version"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"cannot run {binaries.postgres} --version ({exc})") from None
    match = re.search(r"(\d+)(?:\.\d+)?", done.stdout)
    if done.returncode != 0 or match is None:
        raise SandboxError(f"{binaries.postgres} --version failed: {done.stderr.strip()}")
    return match.group(1)


def check_data_version(data: Path, binaries: PostgresBinaries) -> None:
    """Raise ``SandboxError`` when ``data`` was made by another major version."""
    version_file = data / "PG_VERSION"
    if not version_file.exists():
        return
    made_by = version_file.read_text(encoding="ascii", errors="replace").strip()
    running = server_major(binaries)
    if made_by != running:
        raise SandboxError(
            f"the sandbox database was created by PostgreSQL {made_by} but the binaries found"
            f" are PostgreSQL {running} ({binaries.bindir}); run `runbook sandbox down` and"
            f" delete {data} to re-create it, or put PostgreSQL {made_by} first on PATH"
        )


def needs_initdb(data: Path) -> bool:
    return not (data / "PG_VERSION").exists()


def run_initdb(
    binaries: PostgresBinaries,
    data: Path,
    password: str,
    user: RunAs | None,
    log: Path,
    timeout: float = 120.0,
) -> None:
    """Create a cluster in ``data``: superuser ``postgres`` with ``password`` (given through a
    0600 file, never on a command line), scram-sha-256 for every connection.

    Raises ``SandboxError`` pointing at ``log`` when initdb fails.
    """
    fd, pwfile = tempfile.mkstemp(prefix=".pwfile-", dir=data.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(password + "\n")
        if user is not None:
            os.chown(pwfile, user.uid, user.gid)
        argv = [
            str(binaries.initdb), "-D", str(data), "-U", SUPERUSER,
            "--auth=scram-sha-256", f"--pwfile={pwfile}",
            "-E", "UTF8", "--locale=C", "--no-sync",
        ]
        with open(log, "ab") as out:
            try:
                done = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=server_env(), cwd=str(data.parent), timeout=timeout, check=False,
                    **drop_privileges(user),
                )
            except subprocess.TimeoutExpired:
                raise SandboxError(
                    f"initdb did not finish within {timeout:.0f}s; see {log}"
                ) from None
        if done.returncode != 0:
            raise SandboxError(f"initdb failed (exit {done.returncode}); see {log}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pwfile)


def server_env() -> dict[str, str]:
    """The environment PostgreSQL programs run with (none of the caller's PG* variables)."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env["LC_ALL"] = "C"
    env["TZ"] = "UTC"
    return env


def server_argv(binaries: PostgresBinaries, data: Path, port: int) -> list[str]:
    """The ``postgres`` command line: loopback TCP only, no unix socket, logs on stderr."""
    return [
        str(binaries.postgres), "-D", str(data), "-p", str(port),
        "-c", "listen_addresses=127.0.0.1",
        "-c", "unix_socket_directories=",
        "-c", "logging_collector=off",
        "-c", "log_timezone=UTC",
        "-c", "timezone=UTC",
        "-c", "log_line_prefix=%m [%p] ",
    ]


def drop_privileges(user: RunAs | None) -> dict[str, Any]:
    """``subprocess`` keyword arguments that run the child as ``user`` (none when ``None``)."""
    if user is None:
        return {}
    return {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)}


def dsn(port: int, user: str, password: str, database: str) -> str:
    return f"postgresql://{user}:{password}@127.0.0.1:{port}/{database}"


def bootstrap(port: int, superuser_password: str, app_password: str) -> int:
    """Create (or re-key) role ``legacyvideo`` and database ``legacyvideo``.

    Returns the cluster's system identifier (new after every initdb), so the caller knows
    whether this cluster has been seeded. Raises ``psycopg.Error`` on failure.
    """
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host="127.0.0.1", port=port, user=SUPERUSER, password=superuser_password,
        dbname="postgres", connect_timeout=5, autocommit=True,
        options="-c statement_timeout=60000",
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(APP_ROLE), sql.Literal(app_password)
            )
        )
        has_db = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (APP_DATABASE,)
        ).fetchone()
        if not has_db:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(APP_DATABASE), sql.Identifier(APP_ROLE)
                )
            )
        row = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
        return int(row[0]) if row else 0


def is_ready(port: int, superuser_password: str) -> bool:
    """Whether the server accepts an authenticated SQL query (``SELECT 1``)."""
    import psycopg

    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user=SUPERUSER, password=superuser_password,
            dbname="postgres", connect_timeout=2, autocommit=True,
        ) as conn:
            conn.execute("SET statement_timeout = 2000")
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error:
        return False
