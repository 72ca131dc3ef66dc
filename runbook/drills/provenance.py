"""Where a drill record came from, so a reviewer can tell which code, which runbook and which
deployment it speaks for.

A record carries:

* the suite: the ``legacyvideo-runbook`` package version (``importlib.metadata``) and, when
  the source tree is a git checkout of its own (its top level is the project root), the
  commit (``git rev-parse HEAD``) and whether tracked files differ from it (``git status
  --porcelain --untracked-files=no``: untracked files do not count, as for ``git describe
  --dirty``); each git call is bounded by ``GIT_TIMEOUT_S``;
* the sha256 of the runbook file (``runbook.shipped.RUNBOOK``: ``docs/RUNBOOK.md`` as shipped);
* the target's name, environment and endpoint fingerprint (``fingerprint``);
* the versions of python and of the libraries a drill goes through (``TOOLS``).

The fingerprint is the sha256 of ``canonical(endpoints(target))``: a JSON object with sorted
keys and no spaces holding, each ``null`` when the target leaves it unset,

* ``api_url``, ``web_url``: scheme and host lowercased, the port always written (80 or 443
  when the URL gives none), the path without its trailing ``/``; no user, password, query
  or fragment;
* ``database``: ``{"host", "port", "dbname"}`` of ``DATABASE_URL`` (host lowercased, port
  5432 when none is given, the database name from the path); never its user or password;
* ``redis``: ``{"host", "port", "db"}`` of ``REDIS_URL`` (port 6379 when none is given, the
  db number from the path, else ``?db=``, else 0); never its password;
* ``s3``: ``{"bucket", "region", "endpoint"}`` (the endpoint normalised like ``api_url``).

So two targets with the same endpoints have the same fingerprint whatever their credentials,
and a target moved to another database, Redis, bucket or URL gets another one. Nothing in it
is a secret, and nothing secret is hashed into it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from runbook import shipped
from runbook.config import Target
from runbook.sections import RUNBOOK_FILE

#: Where the ``runbook`` package sits: a source checkout's root (its commit is recorded), or
#: ``site-packages`` (none is).
PROJECT_ROOT = shipped.SOURCE
#: The suite's distribution name (pyproject.toml).
DISTRIBUTION = "legacyvideo-runbook"
#: What a record names the tools by, and their distribution names.
TOOLS: tuple[tuple[str, str], ...] = (
    ("pytest", "pytest"),
    ("pytest-bdd", "pytest-bdd"),
    ("psycopg", "psycopg"),
    ("redis-py", "redis"),
    ("boto3", "boto3"),
    ("bullmq", "bullmq"),
)
GIT_TIMEOUT_S = 5.0

#: Runs a command and returns its standard output, or None when it fails or times out.
Runner = Callable[[list[str], Path], str | None]


@dataclass(frozen=True)
class Suite:
    """The code that ran the drill. ``commit`` and ``dirty`` are ``None`` outside a git
    checkout of the project (an installed package, an image built without ``.git``)."""

    version: str | None
    commit: str | None = None
    dirty: bool | None = None


@dataclass(frozen=True)
class TargetIdentity:
    """The deployment drilled: its name, environment and endpoint fingerprint."""

    name: str
    environment: str
    fingerprint: str


@dataclass(frozen=True)
class Provenance:
    """Where a record came from. ``target`` is ``None`` when its writer named no target (a
    library caller that passed none to ``write_record``): such a record counts for none."""

    suite: Suite
    runbook_sha256: str | None
    tools: Mapping[str, str | None] = field(default_factory=dict)
    target: TargetIdentity | None = None

    def lines(self) -> list[str]:
        """What the Markdown record shows, one fact a line."""
        suite = self.suite
        if suite.commit is None:
            where = "not a git checkout"
        else:
            where = f"commit {suite.commit}" + (", with uncommitted changes" if suite.dirty
                                                else ", clean")
        target = ("not recorded (the record was written without its target; it counts for"
                  " no target)" if self.target is None else
                  f"{self.target.name} ({self.target.environment}), endpoints fingerprint"
                  f" {self.target.fingerprint}")
        tools = ", ".join(f"{name} {version or 'not installed'}"
                          for name, version in self.tools.items())
        return [
            f"Suite: {DISTRIBUTION} {suite.version or 'version unknown'}, {where}",
            f"Runbook: {RUNBOOK_FILE} sha256 {self.runbook_sha256 or 'unreadable'}",
            f"Target: {target}",
            f"Tools: {tools}",
        ]


# -- the target's fingerprint (pure) --------------------------------------------------------


def _web_url(value: str | None) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"


def _database(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    parts = urlsplit(value)
    return {"host": (parts.hostname or "").lower(), "port": parts.port or 5432,
            "dbname": parts.path.lstrip("/")}


def _redis(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    parts = urlsplit(value)
    path = parts.path.strip("/")
    query = parse_qs(parts.query).get("db", ["0"])[0]
    db = path if path.isdigit() else query if query.isdigit() else "0"
    return {"host": (parts.hostname or "").lower(), "port": parts.port or 6379, "db": int(db)}


def endpoints(target: Target) -> dict[str, Any]:
    """The target's endpoints, normalised as the module docstring says; no secret."""
    database = target.database_url.get_secret_value() if target.database_url else None
    redis = target.redis_url.get_secret_value() if target.redis_url else None
    s3 = None
    if target.s3_bucket or target.s3_region or target.s3_endpoint_url:
        s3 = {"bucket": target.s3_bucket, "region": target.s3_region,
              "endpoint": _web_url(target.s3_endpoint_url)}
    return {"api_url": _web_url(target.api_url), "web_url": _web_url(target.web_url),
            "database": _database(database), "redis": _redis(redis), "s3": s3}


def canonical(document: Mapping[str, Any]) -> bytes:
    """``document`` as JSON with sorted keys and no spaces: the bytes that get hashed."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("ascii")


def fingerprint(target: Target) -> str:
    """The sha256 (hex) of the target's normalised endpoints."""
    return hashlib.sha256(canonical(endpoints(target))).hexdigest()


def identify(target: Target) -> TargetIdentity:
    return TargetIdentity(target.name, target.environment.value, fingerprint(target))


# -- the suite, the runbook, the tools ------------------------------------------------------


def _git(args: list[str], root: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def suite(root: Path = PROJECT_ROOT, *, git: Runner = _git) -> Suite:
    """The package version, and the commit and dirtiness of ``root`` when it is the top
    level of a git checkout (not a directory inside some other repository)."""
    try:
        version: str | None = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        version = None
    top = git(["rev-parse", "--show-toplevel"], root)
    if top is None or Path(top.strip()).resolve() != root.resolve():
        return Suite(version)
    commit = git(["rev-parse", "HEAD"], root)
    status = git(["status", "--porcelain", "--untracked-files=no"], root)
    return Suite(version, commit.strip() if commit else None,
                 None if status is None else bool(status.strip()))


def file_sha256(path: Path) -> str | None:
    """The sha256 (hex) of a file's bytes; ``None`` when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def tools() -> dict[str, str | None]:
    """python's version and each of ``TOOLS``' (``None``: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name, distribution in TOOLS:
        try:
            found[name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def collect(target: Target | None = None, *, root: Path = PROJECT_ROOT) -> Provenance:
    """Everything above, now; the target's identity when ``target`` is given."""
    return Provenance(suite(root), file_sha256(shipped.RUNBOOK), tools(),
                      identify(target) if target is not None else None)
