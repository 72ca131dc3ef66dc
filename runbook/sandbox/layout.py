"""Where the sandbox keeps its state: one directory, ``$RUNBOOK_HOME/sandbox/``.

Also the small file helpers every writer uses: atomic JSON writes (readers never see a
half-written file) and private (0600) files for secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.errors import SandboxError

#: Components in dependency order; ``status --json`` names.
COMPONENTS: tuple[str, ...] = ("postgres", "redis", "s3", "mail", "web", "api", "worker")


def default_home(environ: dict[str, str] | None = None) -> Path:
    """``$RUNBOOK_HOME``, else ``.runbook/`` in the working directory (absolute)."""
    env = os.environ if environ is None else environ
    return Path(env.get("RUNBOOK_HOME") or ".runbook").expanduser().absolute()


@dataclass(frozen=True)
class Layout:
    """The paths of one sandbox's state (nothing is created by constructing it)."""

    home: Path

    @property
    def root(self) -> Path:
        return self.home / "sandbox"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.json"

    @property
    def ports(self) -> Path:
        return self.root / "ports.json"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def supervisor_pid(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def control(self) -> Path:
        return self.root / "control.json"

    @property
    def variables(self) -> Path:
        """The services' stored variables (0600): what ``railway variables --set`` keeps."""
        return self.root / "service-variables.json"

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def seeded(self) -> Path:
        return self.root / "seeded"

    @property
    def redis(self) -> Path:
        return self.root / "redis"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def create(self) -> None:
        """Create the state directory (0700) and its logs directory.

        Raises ``SandboxError`` when it cannot be created.
        """
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            self.root.mkdir(mode=0o700, exist_ok=True)
            self.logs.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise SandboxError(
                f"cannot create the sandbox state directory {self.root} ({exc.strerror});"
                " set RUNBOOK_HOME to a writable directory"
            ) from None


def write_json_atomic(path: Path, data: Any, *, mode: int = 0o644) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and ``os.replace``.

    The file has ``mode`` from its creation on (a 0600 file is never readable by others).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or ``None`` when it does not exist.

    Raises ``SandboxError`` when it exists but is not valid JSON.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SandboxError(f"cannot read {path} ({exc.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise SandboxError(
            f"{path} is not valid JSON; delete it (it is regenerated) or restore it"
        ) from None
