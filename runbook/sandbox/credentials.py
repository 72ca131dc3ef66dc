"""The sandbox's secrets: generated once with ``secrets``, kept in ``secrets.json`` (0600).

Nothing else in the state directory holds a secret; ``state.json``, ``ports.json`` and the
logs are safe to read and attach to reports.
"""

from __future__ import annotations

import os
import secrets
import stat
import string
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path

from runbook.errors import SandboxError
from runbook.sandbox.layout import read_json, write_json_atomic

_ALNUM = string.ascii_letters + string.digits


def _token(length: int = 32, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class Secrets:
    """Every secret of one sandbox. ``repr`` shows names only."""

    postgres_password: str = field(repr=False)
    db_password: str = field(repr=False)
    redis_password: str = field(repr=False)
    api_secret: str = field(repr=False)
    resend_api_key: str = field(repr=False)
    aws_access_key_id: str = field(repr=False)
    aws_secret_access_key: str = field(repr=False)
    admin_password: str = field(repr=False)
    user_password: str = field(repr=False)
    admin_token: str = field(default="", repr=False)

    @classmethod
    def generate(cls) -> Secrets:
        """Fresh random secrets (alphanumeric, so they need no quoting in URLs)."""
        return cls(
            postgres_password=_token(),
            db_password=_token(),
            redis_password=_token(),
            api_secret=secrets.token_hex(32),
            resend_api_key="re_" + _token(32),
            aws_access_key_id="AKIA" + _token(16, string.ascii_uppercase + string.digits),
            aws_secret_access_key=_token(40),
            admin_password=_token(20),
            user_password=_token(20),
        )

    def values(self) -> list[str]:
        """Every secret value, for redaction."""
        return [v for v in (getattr(self, f.name) for f in fields(self)) if v]

    def to_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Tighten rather than refuse: the file is ours and nothing else should read it.
        os.chmod(path, 0o600)


def load_secrets(path: Path) -> Secrets | None:
    """The secrets in ``path``, or ``None`` when it does not exist yet.

    Raises ``SandboxError`` when the file is malformed (it names the file and the fix).
    """
    data = read_json(path)
    if data is None:
        return None
    _check_private(path)
    known = {f.name for f in fields(Secrets)}
    if not isinstance(data, dict) or not known - {"admin_token"} <= set(data):
        raise SandboxError(
            f"{path} is incomplete; stop the sandbox and delete its state directory"
            f" {path.parent} to start afresh"
        )
    return Secrets(**{k: str(v) for k, v in data.items() if k in known})


def save_secrets(path: Path, value: Secrets) -> None:
    """Write ``value`` to ``path`` atomically with mode 0600."""
    write_json_atomic(path, value.to_dict(), mode=0o600)


def ensure_secrets(path: Path) -> Secrets:
    """The secrets of this sandbox, generating and saving them the first time."""
    existing = load_secrets(path)
    if existing is not None:
        return existing
    created = Secrets.generate()
    save_secrets(path, created)
    note_rotation(path, *ROTATED_VARIABLES.values())
    return created


def with_admin_token(path: Path, token: str) -> Secrets:
    """Store a freshly minted ``ADMIN_TOKEN``; returns the updated secrets.

    Raises ``SandboxError`` when the secrets file is missing.
    """
    current = load_secrets(path)
    if current is None:
        raise SandboxError(f"{path} is missing; run `runbook sandbox up` to create it")
    updated = replace(current, admin_token=token)
    save_secrets(path, updated)
    note_rotation(path, "ADMIN_TOKEN")
    return updated


#: The runbook variable each secret stands behind (a password: the DSN holding it).
ROTATED_VARIABLES: dict[str, str] = {
    "api_secret": "API_SECRET",
    "resend_api_key": "RESEND_API_KEY",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "db_password": "DATABASE_URL",
    "redis_password": "REDIS_URL",
}


def rotation_file(secrets_path: Path) -> Path:
    """Beside ``secrets.json``: when each secret was generated or last replaced, by variable
    name (ISO UTC). Holds no secret; the monthly "Rotate secrets" check reads it."""
    return secrets_path.with_name("secrets-rotated.json")


def note_rotation(secrets_path: Path, *variables: str) -> None:
    """Record that the secrets behind ``variables`` were (re)generated now."""
    path = rotation_file(secrets_path)
    known = read_json(path)
    dates = dict(known) if isinstance(known, dict) else {}
    now = datetime.now(UTC).isoformat()
    dates.update({variable: now for variable in variables})
    write_json_atomic(path, dates)


def rotation_dates(secrets_path: Path) -> dict[str, datetime]:
    """When each secret was generated or last replaced, by variable name; empty for a
    sandbox made before these records were kept. Raises ``SandboxError`` for a bad file."""
    known = read_json(rotation_file(secrets_path))
    if not isinstance(known, dict):
        return {}
    try:
        return {str(name): datetime.fromisoformat(str(at)) for name, at in known.items()}
    except ValueError as exc:
        raise SandboxError(f"{rotation_file(secrets_path)}: {exc}; delete it (the rotation"
                           " check then reports the dates as unknown)") from None
