"""Targets: the set of variables the runbook itself uses, validated into one typed object.

A target comes from one of three places:

* ``sandbox``: the embedded LegacyVideo, started on demand (the default when nothing is set);
* ``env``: the runbook's own variables in the environment (``API_URL``, ``DATABASE_URL`` ...),
  so that ``railway run --service api runbook check`` works;
* a named profile, ``[targets.NAME]`` in ``runbook.toml``.

Every target declares its environment (``sandbox``, ``staging``, ``production``); one given by
variables alone that declares none is treated as production, the safe side. Secrets are held
as ``SecretStr`` and never appear in ``repr``; ``ConfigError`` messages are one line.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator

from runbook.errors import ConfigError
from runbook.redact import redact_url, url_secrets

#: The variables that make a target, as the runbook and LegacyVideo's services name them.
TARGET_VARIABLES: tuple[str, ...] = (
    "API_URL",
    "WEB_URL",
    "DATABASE_URL",
    "REDIS_URL",
    "S3_BUCKET",
    "S3_REGION",
    "S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "RESEND_API_KEY",
    "RESEND_API_URL",
    "FROM_EMAIL",
    "ADMIN_TOKEN",
    "API_SECRET",
)
#: Variables that say where and what a target is, beside the target variables.
META_VARIABLES: tuple[str, ...] = ("PLATFORM", "RUNBOOK_ENVIRONMENT")
#: Variables whose value is a secret (or may hold one, as a DSN's password does).
SECRET_VARIABLES: frozenset[str] = frozenset(
    {
        "DATABASE_URL",
        "REDIS_URL",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "RESEND_API_KEY",
        "ADMIN_TOKEN",
        "API_SECRET",
    }
)

DEFAULT_CONFIG_FILE = "runbook.toml"
_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


#: Where the drills that restore a backup create their scratch database: a DSN, outside the
#: target's variables, whose password is redacted like the target's secrets.
SCRATCH_DATABASE_VARIABLE = "RUNBOOK_SCRATCH_DATABASE_URL"


def setting_secrets(environ: Mapping[str, str]) -> list[str]:
    """The secrets in the run's settings outside the target (the scratch database's DSN),
    for redaction."""
    return url_secrets(environ.get(SCRATCH_DATABASE_VARIABLE, ""))


class Environment(StrEnum):
    """What a target is, which decides what may run against it."""

    SANDBOX = "sandbox"
    STAGING = "staging"
    PRODUCTION = "production"


class Platform(StrEnum):
    """Where the target's services run, which decides how to restart them and read logs."""

    SANDBOX = "sandbox"
    RAILWAY = "railway"
    KUBERNETES = "kubernetes"


def _url_problem(value: str, schemes: tuple[str, ...]) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        article = "an" if schemes[0][0] in "aeiou" or schemes[0] == "http" else "a"
        return f"is not {article} {' or '.join(schemes)} URL"
    try:
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        return "has a malformed port"
    return None


_URL_RULES: dict[str, tuple[tuple[str, ...], str]] = {
    "API_URL": (("http", "https"), "https://api.example.com"),
    "WEB_URL": (("http", "https"), "https://example.com"),
    "S3_ENDPOINT_URL": (("http", "https"), "https://s3.eu-west-1.amazonaws.com"),
    "RESEND_API_URL": (("http", "https"), "https://api.resend.com"),
    "DATABASE_URL": (("postgres", "postgresql"), "postgresql://user:password@host:5432/db"),
    "REDIS_URL": (("redis", "rediss"), "redis://:password@host:6379/0"),
}


class Target(BaseModel):
    """One LegacyVideo deployment the runbook checks, with its variables validated.

    Fields are ``None`` when the target does not set that variable: the checks that need it
    are then skipped with the reason.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    source: str
    environment: Environment
    platform: Platform | None = None
    api_url: str | None = None
    web_url: str | None = None
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    s3_bucket: str | None = None
    s3_region: str | None = None
    s3_endpoint_url: str | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    resend_api_key: SecretStr | None = None
    resend_api_url: str = "https://api.resend.com"
    from_email: str | None = None
    admin_token: SecretStr | None = None
    api_secret: SecretStr | None = None
    runbook_home: Path | None = None

    @field_validator("from_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", value):
            raise ValueError("is not an e-mail address (e.g. noreply@example.com)")
        return value

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def from_variables(
        cls,
        name: str,
        variables: Mapping[str, str],
        *,
        source: str,
        environment: str | None = None,
        platform: str | None = None,
    ) -> Target:
        """Validate the runbook's variables into a target.

        Raises ``ConfigError`` naming the first bad variable and what to do about it.
        """
        values = {k: v for k, v in variables.items() if v != ""}
        env_name = environment or values.get("RUNBOOK_ENVIRONMENT") or "production"
        if env_name not in {e.value for e in Environment}:
            raise ConfigError(
                f"RUNBOOK_ENVIRONMENT: {env_name!r} is not one of sandbox, staging, production"
                f" (target {name!r}, from {source})"
            )
        platform_name = platform or values.get("PLATFORM")
        if platform_name is not None and platform_name not in {p.value for p in Platform}:
            raise ConfigError(
                f"PLATFORM: {platform_name!r} is not one of sandbox, railway, kubernetes"
                f" (target {name!r}, from {source})"
            )
        for variable, (schemes, example) in _URL_RULES.items():
            raw = values.get(variable)
            if raw is None:
                continue
            problem = _url_problem(raw, schemes)
            if problem:
                shown = redact_url(raw) if variable in SECRET_VARIABLES else raw
                raise ConfigError(
                    f"{variable}: {shown!r} {problem}; set it like {example}"
                    f" (target {name!r}, from {source})"
                )
        fields: dict[str, object] = {
            "name": name,
            "source": source,
            "environment": env_name,
            "platform": platform_name,
        }
        for variable in TARGET_VARIABLES:
            if variable in values:
                fields[variable.lower()] = values[variable].rstrip("/") if variable.endswith(
                    "_URL"
                ) and variable not in SECRET_VARIABLES else values[variable]
        if "RUNBOOK_HOME" in values:
            fields["runbook_home"] = Path(values["RUNBOOK_HOME"])
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            error = exc.errors()[0]
            variable = str(error["loc"][0]).upper() if error["loc"] else "target"
            message = str(error["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"{variable}: {message} (target {name!r}, from {source})") from None

    # -- views ---------------------------------------------------------------------------

    def secret_values(self) -> list[str]:
        """Every secret this target holds, for redaction: keys and tokens whole, and the
        passwords inside DSNs (a DSN without a password is not a secret)."""
        found: list[str] = []
        for url in (self.database_url, self.redis_url):
            if url is not None:
                password = urlsplit(url.get_secret_value()).password
                if password:
                    found.append(password)
        for value in (
            self.aws_access_key_id,
            self.aws_secret_access_key,
            self.resend_api_key,
            self.admin_token,
            self.api_secret,
        ):
            if value is not None and value.get_secret_value():
                found.append(value.get_secret_value())
        return found

    def __repr__(self) -> str:
        return f"Target({self.describe()})"

    __str__ = __repr__

    def describe(self) -> str:
        """One line naming the target, safe to print."""
        where = self.api_url or (
            redact_url(self.database_url.get_secret_value()) if self.database_url else "-"
        )
        return f"{self.name} ({self.environment.value}, {where})"

    def variables(self) -> dict[str, str]:
        """The target as the runbook's variables (``PLATFORM``, ``RUNBOOK_ENVIRONMENT`` and
        ``RUNBOOK_HOME`` included), so ``from_variables`` gives it back: for a subprocess's
        environment only (secrets revealed; never a command line, a log or a record)."""
        found: dict[str, str] = {"RUNBOOK_ENVIRONMENT": self.environment.value}
        if self.platform is not None:
            found["PLATFORM"] = self.platform.value
        if self.runbook_home is not None:
            found["RUNBOOK_HOME"] = str(self.runbook_home)
        for variable in TARGET_VARIABLES:
            value = getattr(self, variable.lower(), None)
            if value is not None and value != "":
                found[variable] = (value.get_secret_value() if isinstance(value, SecretStr)
                                   else str(value))
        return found

    def require(self, variable: str) -> str:
        """The value of ``variable`` (secrets revealed: for building clients only).

        Raises ``ConfigError`` when the target leaves it unset."""
        value = getattr(self, variable.lower(), None)
        if value is None or value == "":
            raise ConfigError(f"target {self.name!r} sets no {variable}")
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)

    def has(self, *variables: str) -> list[str]:
        """The variables among ``variables`` this target leaves unset."""
        return [v for v in variables if getattr(self, v.lower(), None) in (None, "")]


@dataclass(frozen=True)
class TargetChoice:
    """Which target a run is for, before anything is started."""

    kind: Literal["sandbox", "env", "profile"]
    name: str
    variables: Mapping[str, str]
    source: str


def _interpolate(value: str, environ: Mapping[str, str], where: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        variable = match.group(1)
        if variable not in environ:
            raise ConfigError(
                f"{where}: refers to ${{{variable}}}, which is not set in the environment;"
                f" export {variable} or write the value into the file"
            )
        return environ[variable]

    return _INTERPOLATION.sub(substitute, value)


def load_profiles(path: Path, environ: Mapping[str, str]) -> dict[str, TargetChoice]:
    """Read the ``[targets.NAME]`` tables of a ``runbook.toml``.

    Values may refer to environment variables as ``${NAME}`` so that secrets stay out of
    the file. Raises ``ConfigError`` on malformed TOML, unknown keys or bad values.
    """
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    targets = document.get("targets", {})
    if not isinstance(targets, dict):
        raise ConfigError(f"{path}: 'targets' must be a table of [targets.NAME] tables")
    known = {v.lower(): v for v in (*TARGET_VARIABLES, *META_VARIABLES)}
    known["environment"] = "RUNBOOK_ENVIRONMENT"
    known["platform"] = "PLATFORM"
    profiles: dict[str, TargetChoice] = {}
    for name, table in targets.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [targets.{name}] must be a table")
        variables: dict[str, str] = {}
        for key, raw in table.items():
            variable = known.get(key.lower())
            if variable is None:
                raise ConfigError(
                    f"{path}: [targets.{name}] has unknown key {key!r}; known keys are"
                    f" environment, platform and the runbook's variables (API_URL, ...)"
                )
            if not isinstance(raw, str):
                raise ConfigError(f"{path}: [targets.{name}] {key} must be a string")
            variables[variable] = _interpolate(raw, environ, f"{path}: [targets.{name}] {key}")
        if "RUNBOOK_ENVIRONMENT" not in variables:
            raise ConfigError(
                f"{path}: [targets.{name}] declares no environment; add"
                f' environment = "staging" (or "production", "sandbox")'
            )
        profiles[name] = TargetChoice("profile", name, variables, f"{path}")
    return profiles


def choose_target(
    name: str | None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> TargetChoice:
    """Decide which target a run is for.

    ``name`` is ``sandbox``, ``env`` or a profile of ``runbook.toml``; without one, ``env``
    when any of the runbook's variables is set, else ``sandbox``. Raises ``ConfigError``.
    """
    environ = os.environ if environ is None else environ
    variables = {
        v: environ[v] for v in (*TARGET_VARIABLES, *META_VARIABLES) if environ.get(v)
    }
    if name is None:
        has_target_vars = any(v in variables for v in TARGET_VARIABLES)
        name = "env" if has_target_vars else "sandbox"
    if name == "sandbox":
        return TargetChoice("sandbox", "sandbox", {}, "the embedded sandbox")
    if name == "env":
        if not any(v in variables for v in TARGET_VARIABLES):
            raise ConfigError(
                "target 'env': none of the runbook's variables is set (API_URL, DATABASE_URL,"
                " REDIS_URL, ...); export them or use --target sandbox"
            )
        return TargetChoice("env", "env", variables, "environment variables")
    path = config_file or Path(environ.get("RUNBOOK_CONFIG", DEFAULT_CONFIG_FILE))
    if not path.exists():
        raise ConfigError(
            f"target {name!r}: no {path} to define it; add [targets.{name}] to {path}"
            f" or use --target sandbox / --target env"
        )
    profiles = load_profiles(path, environ)
    if name not in profiles:
        listed = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(
            f"target {name!r} is not defined in {path} (defined: {listed}); add"
            f" [targets.{name}] or pick one of those"
        )
    return profiles[name]
