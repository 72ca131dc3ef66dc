"""Common Operations > User Management, on canary users only.

The runbook creates an admin "with Prisma Studio" (a row in ``"User"`` with role ``ADMIN``),
locks an account with one ``curl`` to ``POST /api/admin/users/lock``, and resets a password
by writing ``bcrypt.hash(password, 12)`` into the user's row. Each of those is done here on a
canary user (``runbook-canary-<hex>@<FROM_EMAIL's domain>``) and proved through the API:
the new admin's token works on an admin endpoint, a locked account is refused at login with
403 "Account locked", a reset password logs in and the old one no longer does.

Secrets: a canary's password and token live in memory only, as ``SecretStr`` fields left
out of ``repr`` and ``evidence()``; a bcrypt hash is never recorded (only its scheme and
cost, parsed from ``$2b$12$``). Every request is recorded as an ``ApiCall`` (an
``Activity`` with the HTTP status), its command written as the runbook's ``curl`` with the
bearer token and passwords masked.

What removing a canary leaves behind: the ``"AuditLog"`` rows the canary produced or was the
subject of. Their foreign key is ``ON DELETE SET NULL`` (migration
``20240110093000_audit_log``), so the rows stay, detached (``userId`` NULL), with the
canary's e-mail in their ``metadata``: an audit trail is not rewritten by the runbook.
``"Video"`` and ``"Release"`` rows are ``ON DELETE RESTRICT`` and are deleted first (a canary
makes none; their S3 objects, if any, are not touched).
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import bcrypt
import httpx
import psycopg
from pydantic import SecretStr

from runbook.clients import http_client
from runbook.config import Target
from runbook.errors import OperationFailed, SafetyGateError
from runbook.probes import describe_error
from runbook.probes.canaries import (
    CANARY_PREFIX,
    canary_email,
    is_canary_email,
)
from runbook.probes.postgres import connect
from runbook.redact import MASK, Redactor
from runbook.results import Activity, Stopwatch, TimedResult, Timing, failure
from runbook.timeouts import Timeouts

#: The cost the runbook's snippet uses: ``bcrypt.hash('newpassword', 12)``.
BCRYPT_COST = 12
CANARY_NAME = "Runbook canary (safe to delete)"
LOCK_PATH = "/api/admin/users/lock"
LOGIN_PATH = "/api/auth/login"
ME_PATH = "/api/auth/me"
USERS_PATH = "/api/admin/users"

Role = Literal["ADMIN", "USER"]

_BCRYPT_PREFIX = re.compile(r"^\$(2[abxy]?)\$(\d{2})\$")
_OUTPUT_LIMIT = 4000


class UserOperationFailed(OperationFailed):
    """A user-management action did not do what the runbook says; ``activities`` holds
    every call made (redacted), including the cleanup."""

    component_name = "users"
    advice = (
        "Common Operations > User Management: check the API answers"
        " (railway logs --service api --tail)",
        "check the database (railway run --service api npx prisma studio)",
    )


# -- records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiCall(Activity):
    """One request to the API: an ``Activity`` plus the HTTP status and the API's
    ``{"error": ...}`` message (``None``/"" when no answer came)."""

    status_code: int | None = None
    api_error: str = ""


@dataclass(frozen=True)
class Login(ApiCall):
    """A login attempt; ``token`` (in memory only, never in ``repr`` or evidence) when the
    API issued one."""

    token: SecretStr | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class CanaryUser(TimedResult):
    """A canary user that exists on the target until ``remove_canary`` (made, so no
    ``problems``: a canary that could not be made raises ``UserOperationFailed``).

    ``password`` and ``token`` are the canary's own, in memory only: not in ``repr``, not in
    ``evidence()``. ``hash_cost``/``hash_scheme`` are read back from the stored hash."""

    id: str
    email: str
    role: Role
    hash_scheme: str
    hash_cost: int
    timing: Timing
    activities: tuple[Activity, ...]
    password: SecretStr = field(repr=False, compare=False)
    token: SecretStr = field(repr=False, compare=False)
    problems: tuple[str, ...] = ()

    @property
    def is_admin_at_runbook_cost(self) -> bool:
        """An ADMIN whose stored hash has the runbook's bcrypt cost."""
        return self.role == "ADMIN" and self.hash_cost == BCRYPT_COST


@dataclass(frozen=True)
class Outcome(TimedResult):
    """Common shape of the check records below: calls made, problems found, timing."""

    timing: Timing
    activities: tuple[Activity, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True)
class LockRoundTrip(Outcome):
    """Lock, login refused, unlock, login again, for one user.

    ``time_to_lock_s``/``time_to_unlock_s``: the lock request's round trip;
    ``locked_login_status`` should be 403 and ``unlocked_login_status`` 200;
    ``locked_token_status`` is what the user's existing token got while locked (403).
    ``left_locked`` is true only when even the cleanup could not unlock the user."""

    user_id: str
    time_to_lock_s: float | None
    time_to_unlock_s: float | None
    locked_login_status: int | None
    locked_login_error: str
    locked_token_status: int | None
    unlocked_login_status: int | None
    left_locked: bool


@dataclass(frozen=True)
class AccessChecks(Outcome):
    """The lock endpoint refused a request without a token (``no_token_status``, 401) and
    one with a non-admin's token (``non_admin_status``, 403). ``undone`` is true when a
    wrongly accepted lock had to be reverted with the admin token."""

    user_id: str
    no_token_status: int | None
    no_token_error: str
    non_admin_status: int | None
    non_admin_error: str
    undone: bool


@dataclass(frozen=True)
class PasswordReset(Outcome):
    """A password reset as the runbook does it: a cost-12 bcrypt hash written to the row.

    ``hash_scheme``/``hash_cost`` are parsed from the stored hash (``$2b$12$``);
    ``new_login_status`` should be 200, ``old_login_status`` 401 (``None`` when no old
    password was given). ``old_token_status`` is what a token issued before the reset got
    from ``/api/auth/me`` afterwards: 200 means existing sessions survive a reset (the
    runbook's procedure does not revoke them). The new password is not kept."""

    user_id: str
    hash_scheme: str
    hash_cost: int | None
    hash_ms: float
    new_login_status: int | None
    old_login_status: int | None
    old_token_status: int | None

    @property
    def hashed_at_runbook_cost(self) -> bool:
        """The stored hash has the runbook's bcrypt cost."""
        return self.hash_cost == BCRYPT_COST


@dataclass(frozen=True)
class Removal(Outcome):
    """A canary user removed: the counts deleted, the audit rows left (detached by the
    foreign key, ``audit_rows_detached``; and those naming the canary in ``metadata``,
    ``audit_rows_mentioning``), and ``gone`` verified by a fresh query. ``token_status`` is
    what the canary's token got afterwards (401), when it was known."""

    user_id: str
    email: str
    existed: bool
    deleted_users: int
    deleted_videos: int
    deleted_releases: int
    audit_rows_detached: int
    audit_rows_mentioning: int
    gone: bool
    token_status: int | None


# -- helpers -----------------------------------------------------------------------------



def hash_password(password: str) -> str:
    """``bcrypt.hash(password, 12)`` as the runbook's snippet does (``$2b$12$...``)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()


def hash_parameters(password_hash: str) -> tuple[str, int | None]:
    """The scheme and cost of a bcrypt hash (``("2b", 12)``); ``("", None)`` otherwise."""
    match = _BCRYPT_PREFIX.match(password_hash)
    if match is None:
        return "", None
    return match.group(1), int(match.group(2))


def _secret(value: str | SecretStr | None) -> str | None:
    if value is None:
        return None
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _redactor(target: Target, *extra: str | None) -> Redactor:
    return Redactor([*target.secret_values(), *(e for e in extra if e)])


def _api_error(body: Any) -> str:
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        return str(body["error"])
    return ""


def _request(
    client: httpx.Client,
    redact: Redactor,
    name: str,
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Mapping[str, Any] | None = None,
    shown_body: Mapping[str, Any] | None = None,
) -> tuple[ApiCall, Any]:
    """Send one request; record it as the ``curl`` an operator would type (bearer and
    ``shown_body`` masked) with its status and redacted answer. Returns the record and the
    parsed JSON answer (in memory only; ``None`` when there was none)."""
    headers: dict[str, str] = {}
    command: list[str] = ["curl", "-X", method, url]
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
        command += ["-H", f"Authorization: Bearer {MASK}"]
    if body is not None:
        headers["Content-Type"] = "application/json"
        shown = json.dumps(shown_body if shown_body is not None else body,
                           separators=(",", ":"))
        command += ["-H", "Content-Type: application/json", "-d", shown]
    watch = Stopwatch()
    try:
        response = client.request(method, url, headers=headers,
                                  content=None if body is None else json.dumps(body))
    except httpx.HTTPError as exc:
        call = ApiCall(name=name, command=tuple(redact(c) for c in command),
                       timing=watch.timing(), error=redact(describe_error(exc)))
        return call, None
    try:
        parsed: Any = response.json()
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):  # an issued token never reaches the record
        output = json.dumps({k: MASK if k == "token" else v for k, v in parsed.items()},
                            default=str)
    else:
        output = response.text
    error = _api_error(parsed)
    call = ApiCall(
        name=name,
        command=tuple(redact(c) for c in command),
        timing=watch.timing(),
        output=redact(f"HTTP {response.status_code} {output}")[:_OUTPUT_LIMIT],
        error="" if response.is_success else redact(f"HTTP {response.status_code} {error}"),
        status_code=response.status_code,
        api_error=redact(error),
    )
    return call, parsed


def _login(client: httpx.Client, redact: Redactor, api: str, email: str, password: str,
           name: str = "log in") -> Login:
    call, parsed = _request(
        client, redact, name, "POST", f"{api}{LOGIN_PATH}",
        body={"email": email, "password": password},
        shown_body={"email": email, "password": MASK},
    )
    token = parsed.get("token") if isinstance(parsed, dict) and call.status_code == 200 else None
    return Login(**call.__dict__, token=SecretStr(token) if isinstance(token, str) else None)


# -- the API -----------------------------------------------------------------------------


def login(target: Target, timeouts: Timeouts, email: str, password: str | SecretStr) -> Login:
    """``POST /api/auth/login``; records the status (200, 401 "Invalid email or password",
    403 "Account locked") and keeps the issued token in memory only. Never raises for an
    HTTP answer; a network failure is an ``ok=False`` record with the error."""
    api = target.require("API_URL")
    secret = _secret(password) or ""
    redact = _redactor(target, secret)
    with http_client(timeouts) as client:
        return _login(client, redact, api, email, secret)


def lock_user(target: Target, timeouts: Timeouts, admin_token: str | SecretStr | None,
              user_id: str, locked: bool) -> ApiCall:
    """The runbook's request, exactly: ``POST {API_URL}/api/admin/users/lock`` with
    ``Authorization: Bearer ...`` (left out when ``admin_token`` is None),
    ``Content-Type: application/json`` and ``{"userId": ..., "locked": true|false}``.

    Records the status code; ``ok`` only for a 200 whose user has ``locked`` as asked.
    Never raises for an HTTP answer."""
    api = target.require("API_URL")
    token = _secret(admin_token)
    redact = _redactor(target, token)
    with http_client(timeouts) as client:
        return _lock(client, redact, api, token, user_id, locked)


def _lock(client: httpx.Client, redact: Redactor, api: str, token: str | None, user_id: str,
          locked: bool, name: str | None = None) -> ApiCall:
    call, parsed = _request(
        client, redact, name or ("lock user" if locked else "unlock user"), "POST",
        f"{api}{LOCK_PATH}", token=token, body={"userId": user_id, "locked": locked},
    )
    user = parsed.get("user") if isinstance(parsed, dict) else None
    if call.ok and not (isinstance(user, dict) and user.get("locked") is locked):
        return replace(call, error=f"answered 200 but the user's locked is not {locked}")
    return call


def lock_round_trip(target: Target, timeouts: Timeouts, admin_token: str | SecretStr,
                    user: CanaryUser) -> LockRoundTrip:
    """Lock ``user`` through the API, check its login is refused (403 "Account locked") and
    its existing token too, unlock it, check it logs in again.

    Measures the lock and unlock round trips. Always leaves the user unlocked: a failed
    unlock is retried in ``finally`` (``left_locked`` says if even that failed). Records
    problems instead of raising."""
    api = target.require("API_URL")
    token = _secret(admin_token) or ""
    password = user.password.get_secret_value()
    redact = _redactor(target, token, password, user.token.get_secret_value())
    watch = Stopwatch()
    calls: list[Activity] = []
    problems: list[str] = []
    lock = unlock = None
    locked_login = relogin = None
    locked_me = None
    with http_client(timeouts) as client:
        try:
            lock = _lock(client, redact, api, token, user.id, True)
            calls.append(lock)
            if not lock.ok:
                problems.append(f"lock request: {lock.error or lock.output}")
            else:
                locked_login = _login(client, redact, api, user.email, password,
                                      "log in while locked")
                calls.append(locked_login)
                if (locked_login.status_code, locked_login.api_error) != (403, "Account locked"):
                    problems.append(
                        "login while locked answered"
                        f" {locked_login.status_code} {locked_login.api_error!r},"
                        " expected 403 'Account locked'")
                locked_me, _ = _request(client, redact, "existing token while locked", "GET",
                                        f"{api}{ME_PATH}", token=user.token.get_secret_value())
                calls.append(locked_me)
                if locked_me.status_code != 403:
                    problems.append(f"the user's existing token got {locked_me.status_code}"
                                    " while locked, expected 403")
            unlock = _lock(client, redact, api, token, user.id, False)
            calls.append(unlock)
            if not unlock.ok:
                problems.append(f"unlock request: {unlock.error or unlock.output}")
            relogin = _login(client, redact, api, user.email, password, "log in after unlock")
            calls.append(relogin)
            if relogin.status_code != 200:
                problems.append(f"login after unlock answered {relogin.status_code}"
                                f" {relogin.api_error!r}, expected 200")
        finally:
            left_locked = False
            if lock is not None and lock.status_code == 200 and not (unlock and unlock.ok):
                retry = _lock(client, redact, api, token, user.id, False, "cleanup: unlock")
                calls.append(retry)
                left_locked = not retry.ok
                if left_locked:
                    problems.append(f"the user {user.id} could not be unlocked: {retry.error}")
    return LockRoundTrip(
        timing=watch.timing(),
        activities=tuple(calls),
        problems=tuple(problems),
        user_id=user.id,
        time_to_lock_s=lock.elapsed_s if lock is not None and lock.ok else None,
        time_to_unlock_s=unlock.elapsed_s if unlock is not None and unlock.ok else None,
        locked_login_status=locked_login.status_code if locked_login else None,
        locked_login_error=locked_login.api_error if locked_login else "",
        locked_token_status=locked_me.status_code if locked_me else None,
        unlocked_login_status=relogin.status_code if relogin else None,
        left_locked=left_locked,
    )


def access_checks(target: Target, timeouts: Timeouts, *, user_id: str,
                  non_admin_token: str | SecretStr, admin_token: str | SecretStr
                  ) -> AccessChecks:
    """Send the runbook's lock request for ``user_id`` without a token (expects 401) and with
    a non-admin's token (expects 403). A lock wrongly accepted is reverted with
    ``admin_token`` (recorded, ``undone``). Records problems instead of raising."""
    api = target.require("API_URL")
    weak = _secret(non_admin_token) or ""
    admin = _secret(admin_token) or ""
    redact = _redactor(target, weak, admin)
    watch = Stopwatch()
    calls: list[Activity] = []
    problems: list[str] = []
    anonymous = non_admin = None
    undone = False
    with http_client(timeouts) as client:
        try:
            anonymous = _lock(client, redact, api, None, user_id, True, "lock without a token")
            calls.append(anonymous)
            if anonymous.status_code != 401:
                problems.append("without a token the lock request got"
                                f" {anonymous.status_code}, expected 401")
            non_admin = _lock(client, redact, api, weak, user_id, True,
                              "lock with a non-admin token")
            calls.append(non_admin)
            if non_admin.status_code != 403:
                problems.append("with a non-admin token the lock request got"
                                f" {non_admin.status_code}, expected 403")
        finally:
            if any(c is not None and c.status_code == 200 for c in (anonymous, non_admin)):
                revert = _lock(client, redact, api, admin, user_id, False, "cleanup: unlock")
                calls.append(revert)
                undone = revert.ok
                if not undone:
                    problems.append(f"the wrongly locked user {user_id} could not be"
                                    f" unlocked: {revert.error}")
    return AccessChecks(
        timing=watch.timing(),
        activities=tuple(calls),
        problems=tuple(problems),
        user_id=user_id,
        no_token_status=anonymous.status_code if anonymous else None,
        no_token_error=anonymous.api_error if anonymous else "",
        non_admin_status=non_admin.status_code if non_admin else None,
        non_admin_error=non_admin.api_error if non_admin else "",
        undone=undone,
    )


# -- the database ------------------------------------------------------------------------


def _sql_activity(name: str, sql: str, params: Mapping[str, str], watch: Stopwatch,
                  ok: bool, output: str = "", error: str = "") -> Activity:
    """A statement as an ``Activity``: the SQL and its parameters, values already safe."""
    command = ("sql", " ".join(sql.split()), *(f"{k}={v}" for k, v in params.items()))
    return Activity(name=name, command=command, timing=watch.timing(), output=output,
                    error="" if ok else failure(name, error))


_INSERT_USER = (
    'INSERT INTO "User" ("id", "email", "name", "passwordHash", "role", "updatedAt")'
    " VALUES (%s, %s, %s, %s, %s, now())"
    ' RETURNING "passwordHash"'
)


def create_canary(target: Target, timeouts: Timeouts, role: Role = "USER", *,
                  kind: str = "") -> CanaryUser:
    """Create a canary user as the runbook does with Prisma Studio (a ``"User"`` row,
    ``bcrypt.hash(password, 12)`` with a random in-memory password), then prove it through
    the API: it logs in, and its token works on ``/api/admin/users`` (ADMIN) or
    ``/api/auth/me`` (USER).

    Raises ``UserOperationFailed`` (after removing the row again) when any step fails, and
    ``ConfigError`` when the target lacks ``API_URL`` or ``DATABASE_URL``."""
    api = target.require("API_URL")
    dsn = target.require("DATABASE_URL")
    user_id = str(uuid.uuid4())
    email = canary_email(target, kind)
    password = secrets.token_urlsafe(24)
    redact = _redactor(target, password)
    watch = Stopwatch()
    calls: list[Activity] = []
    shown = {"id": user_id, "email": email, "passwordHash": MASK, "role": role}
    step = Stopwatch()
    password_hash = hash_password(password)
    try:
        with connect(dsn, timeouts, read_only=False) as conn:
            row = conn.execute(_INSERT_USER, (user_id, email, CANARY_NAME, password_hash,
                                              role)).fetchone()
    except Exception as exc:
        problem = redact(describe_error(exc))
        calls.append(_sql_activity("create user row", _INSERT_USER, shown, step, False,
                                   error=problem))
        raise UserOperationFailed(target.describe(), f"the user row was not created: {problem}",
                                  f'a {role} canary row in "User"', tuple(calls)) from None
    scheme, cost = hash_parameters(str(row[0]) if row else "")
    calls.append(_sql_activity("create user row", _INSERT_USER, shown, step, True,
                               output=f"stored hash: ${scheme}${cost}$..."))
    try:
        token = _prove_token(target, timeouts, redact, api, user_id, email, password, role,
                             calls)
    except BaseException as exc:
        _remove_after_failure(target, timeouts, user_id, exc)
        raise
    return CanaryUser(
        id=user_id, email=email, role=role, hash_scheme=scheme, hash_cost=cost or 0,
        timing=watch.timing(), activities=tuple(calls),
        password=SecretStr(password), token=SecretStr(token),
    )


def _prove_token(target: Target, timeouts: Timeouts, redact: Redactor, api: str, user_id: str,
                 email: str, password: str, role: Role, calls: list[Activity]) -> str:
    """Log the new canary in and use its token; returns the token. Raises
    ``UserOperationFailed`` (with ``calls`` so far) when either step fails."""
    with http_client(timeouts) as client:
        attempt = _login(client, redact, api, email, password)
        calls.append(attempt)
        if attempt.token is None:
            raise UserOperationFailed(
                target.describe(), f"the new canary could not log in: HTTP"
                f" {attempt.status_code} {attempt.api_error or attempt.error}",
                "login 200 with a token", tuple(calls))
        token = attempt.token.get_secret_value()
        redact.add([token])
        if role == "ADMIN":
            proof, parsed = _request(client, redact, "admin endpoint with the new token",
                                     "GET", f"{api}{USERS_PATH}?email={email}", token=token)
            listed = parsed.get("users") if isinstance(parsed, dict) else None
            seen = listed[0] if isinstance(listed, list) and len(listed) == 1 else {}
            works = proof.ok and seen.get("id") == user_id and seen.get("role") == "ADMIN"
            expected = "200 from /api/admin/users listing the canary as ADMIN"
        else:
            proof, parsed = _request(client, redact, "token works", "GET", f"{api}{ME_PATH}",
                                     token=token)
            works = proof.ok and isinstance(parsed, dict) and parsed.get("id") == user_id
            expected = "200 from /api/auth/me naming the canary"
        calls.append(proof)
        if not works:
            raise UserOperationFailed(
                target.describe(), f"the new canary's token did not work: HTTP"
                f" {proof.status_code} {proof.api_error or proof.error}", expected,
                tuple(calls))
    return token


def _remove_after_failure(target: Target, timeouts: Timeouts, user_id: str,
                          failure: BaseException) -> None:
    """Remove a half-made canary; its record joins ``failure``'s activities, and a removal
    that fails too is added to ``failure`` as a note (the first error is the one raised)."""
    try:
        removal = remove_canary(target, timeouts, user_id)
    except Exception as exc:
        failure.add_note(f"removing the half-made canary {user_id} failed too:"
                         f" {describe_error(exc)}")
        return
    if isinstance(failure, UserOperationFailed):
        failure.activities = (*failure.activities, *removal.activities)
    if not removal.gone:
        failure.add_note(f"the half-made canary {user_id} was not removed:"
                         f" {'; '.join(removal.problems)}")


def create_admin(target: Target, timeouts: Timeouts) -> CanaryUser:
    """Common Operations > User Management > Create Admin User, on a canary: see
    ``create_canary`` (role ADMIN; the proof is an admin endpoint answering its token)."""
    return create_canary(target, timeouts, "ADMIN")


def _canary_row(conn: psycopg.Connection[Any], user_id: str) -> tuple[str, bool]:
    """The user's e-mail and whether the row exists; refuses non-canary users."""
    row = conn.execute('SELECT "email" FROM "User" WHERE "id" = %s', (user_id,)).fetchone()
    if row is None:
        return "", False
    email = str(row[0])
    if not is_canary_email(email):
        raise SafetyGateError(
            f"user {user_id} is not a runbook canary ({CANARY_PREFIX}...@...); the runbook's"
            " password reset and removal are only done on canaries")
    return email, True


_UPDATE_HASH = (
    'UPDATE "User" SET "passwordHash" = %s, "updatedAt" = now()'
    ' WHERE "id" = %s AND "email" LIKE %s RETURNING "email", "passwordHash"'
)


def reset_password(target: Target, timeouts: Timeouts, user_id: str, *,
                   old_password: str | SecretStr | None = None,
                   old_token: str | SecretStr | None = None) -> PasswordReset:
    """Common Operations > User Management > Reset User Password, on a canary: a new random
    password, ``bcrypt.hash(password, 12)`` written to the user's row (what "update via
    Prisma Studio" does), then proof through the API that the new password logs in and
    ``old_password`` (when given) no longer does.

    Records the stored hash's scheme and cost, the hashing time, each login's status and
    what a pre-reset token (``old_token``) gets afterwards. Raises ``SafetyGateError`` for a
    user that is not a canary and ``UserOperationFailed`` when the user does not exist.
    Nothing to undo: the canary keeps its new password until it is removed."""
    api = target.require("API_URL")
    dsn = target.require("DATABASE_URL")
    new_password = secrets.token_urlsafe(24)
    old = _secret(old_password)
    earlier_token = _secret(old_token)
    redact = _redactor(target, new_password, old, earlier_token)
    watch = Stopwatch()
    calls: list[Activity] = []
    problems: list[str] = []
    step = Stopwatch()
    started = time.monotonic()
    password_hash = hash_password(new_password)
    hash_ms = (time.monotonic() - started) * 1000
    with connect(dsn, timeouts, read_only=False) as conn, conn.transaction():
        email, exists = _canary_row(conn, user_id)
        if not exists:
            raise UserOperationFailed(target.describe(), f"no user {user_id}",
                                      "an existing canary user")
        row = conn.execute(_UPDATE_HASH, (password_hash, user_id, f"{CANARY_PREFIX}%")
                           ).fetchone()
    scheme, cost = hash_parameters(str(row[1]) if row else "")
    calls.append(_sql_activity("write the new hash", _UPDATE_HASH, {
        "passwordHash": MASK, "id": user_id}, step, row is not None,
        output=f"stored hash: ${scheme}${cost}$..." if row else "no row updated"))
    if row is None:
        problems.append("the hash was not written (the row changed meanwhile?)")
    if cost != BCRYPT_COST:
        problems.append(f"the stored hash has cost {cost}, the runbook says {BCRYPT_COST}")
    old_status = old_token_status = None
    with http_client(timeouts) as client:
        fresh = _login(client, redact, api, email, new_password, "log in with the new password")
        calls.append(fresh)
        if fresh.status_code != 200:
            problems.append(f"the new password got {fresh.status_code} {fresh.api_error!r},"
                            " expected 200")
        if old is not None:
            stale = _login(client, redact, api, email, old, "log in with the old password")
            calls.append(stale)
            old_status = stale.status_code
            if stale.status_code != 401:
                problems.append(f"the old password got {stale.status_code}, expected 401")
        if earlier_token is not None:
            session, _ = _request(client, redact, "token issued before the reset", "GET",
                                  f"{api}{ME_PATH}", token=earlier_token)
            calls.append(session)
            old_token_status = session.status_code
    return PasswordReset(
        timing=watch.timing(), activities=tuple(calls), problems=tuple(problems),
        user_id=user_id, hash_scheme=scheme, hash_cost=cost, hash_ms=round(hash_ms, 1),
        new_login_status=fresh.status_code, old_login_status=old_status,
        old_token_status=old_token_status,
    )


_COUNT_AUDIT = (
    'SELECT (SELECT count(*) FROM "AuditLog" WHERE "userId" = %(id)s),'
    ' (SELECT count(*) FROM "AuditLog" WHERE "createdAt" >='
    ' (SELECT "createdAt" FROM "User" WHERE "id" = %(id)s)'
    ' AND ("metadata"::text LIKE %(by_id)s OR "metadata"::text LIKE %(by_email)s))'
)
_REMOVE_STATEMENTS: tuple[tuple[str, str], ...] = (
    ("releases", 'DELETE FROM "Release" WHERE "requestedById" = %(id)s OR "videoId" IN'
                 ' (SELECT "id" FROM "Video" WHERE "ownerId" = %(id)s)'),
    ("videos", 'DELETE FROM "Video" WHERE "ownerId" = %(id)s'),
    ("users", 'DELETE FROM "User" WHERE "id" = %(id)s AND "email" LIKE %(pattern)s'),
)


def remove_canary(target: Target, timeouts: Timeouts, user: CanaryUser | str) -> Removal:
    """Delete a canary user and the rows that reference it (releases, videos: ``RESTRICT``
    foreign keys), in one transaction; audit rows stay, detached by their ``SET NULL`` key.

    Records what was deleted and kept, verifies with a fresh query that the row is gone and,
    for a ``CanaryUser``, that its token is now refused (401). Removing a user that no
    longer exists is not an error (``existed`` false). Raises ``SafetyGateError`` for a user
    that is not a canary."""
    dsn = target.require("DATABASE_URL")
    user_id = user if isinstance(user, str) else user.id
    watch = Stopwatch()
    calls: list[Activity] = []
    problems: list[str] = []
    deleted = {"releases": 0, "videos": 0, "users": 0}
    step = Stopwatch()
    with connect(dsn, timeouts, read_only=False) as conn, conn.transaction():
        email, existed = _canary_row(conn, user_id)
        detached = mentioning = 0
        if existed:
            # Both counts use indexes ("userId"; "createdAt" since the canary was made), so
            # a large audit log cannot push this past the statement timeout.
            counted = conn.execute(_COUNT_AUDIT, {
                "id": user_id, "by_id": f"%{user_id}%", "by_email": f"%{email}%"}).fetchone()
            detached, mentioning = (int(counted[0]), int(counted[1])) if counted else (0, 0)
            for what, sql in _REMOVE_STATEMENTS:
                deleted[what] = conn.execute(
                    sql, {"id": user_id, "pattern": f"{CANARY_PREFIX}%"}).rowcount
    calls.append(_sql_activity(
        "delete the canary and its rows", "; ".join(s for _, s in _REMOVE_STATEMENTS),
        {"id": user_id}, step, True,
        output=json.dumps({**deleted, "audit_rows_detached": detached,
                           "audit_rows_mentioning": mentioning})))
    step = Stopwatch()
    with connect(dsn, timeouts) as conn:
        left = conn.execute(
            'SELECT (SELECT count(*) FROM "User" WHERE "id" = %(id)s),'
            ' (SELECT count(*) FROM "AuditLog" WHERE "userId" = %(id)s)',
            {"id": user_id},
        ).fetchone()
    users_left, audit_attached = (int(left[0]), int(left[1])) if left else (1, 1)
    gone = users_left == 0 and audit_attached == 0
    calls.append(_sql_activity("verify the row is gone", 'SELECT count(*) FROM "User" ...',
                               {"id": user_id}, step, gone,
                               output=f"users={users_left} audit_rows_attached={audit_attached}"))
    if not gone:
        problems.append(f"after removal {users_left} user row(s) and {audit_attached} attached"
                        " audit row(s) remain")
    token_status = None
    if isinstance(user, CanaryUser) and target.api_url:
        token = user.token.get_secret_value()
        redact = _redactor(target, token, user.password.get_secret_value())
        with http_client(timeouts) as client:
            check, _ = _request(client, redact, "the removed canary's token", "GET",
                                f"{target.api_url}{ME_PATH}", token=token)
        calls.append(check)
        token_status = check.status_code
        if check.status_code != 401:
            problems.append(f"the removed canary's token got {check.status_code},"
                            " expected 401")
    return Removal(
        timing=watch.timing(), activities=tuple(calls), problems=tuple(problems),
        user_id=user_id, email=email, existed=existed, deleted_users=deleted["users"],
        deleted_videos=deleted["videos"], deleted_releases=deleted["releases"],
        audit_rows_detached=detached, audit_rows_mentioning=mentioning, gone=gone,
        token_status=token_status,
    )


@contextmanager
def canary_user(target: Target, timeouts: Timeouts, role: Role = "USER",
                on_removed: Callable[[Removal], None] | None = None) -> Iterator[CanaryUser]:
    """Create a canary (``create_canary``), yield it, and always remove it afterwards.

    ``on_removed`` (a callable taking the ``Removal``) receives the removal's record. Raises
    ``UserOperationFailed`` when the removal does not leave the row gone; when the block
    itself raised, that error is kept and the removal's failure is added to it as a note."""
    user = create_canary(target, timeouts, role)
    failure: BaseException | None = None
    try:
        yield user
    except BaseException as exc:
        failure = exc
        raise
    finally:
        try:
            removal = remove_canary(target, timeouts, user)
            if on_removed is not None:
                on_removed(removal)
            if not removal.gone:
                raise UserOperationFailed(target.describe(), "; ".join(removal.problems),
                                          f"canary {user.id} removed", removal.activities)
        except Exception as exc:
            if failure is None:
                raise
            failure.add_note(f"removing canary user {user.id} also failed: {exc}")


class CanaryPool:
    """One canary user per target for a whole run of checks (the scheduled suite's canary
    journeys share it: one user made and proved per run, not one per journey), made on
    first use and removed by ``close``. A failed creation is not kept: the next ``get``
    tries again, and raises ``UserOperationFailed`` as ``create_canary`` does."""

    def __init__(self) -> None:
        self._users: dict[str, tuple[Target, Timeouts, CanaryUser]] = {}

    def get(self, target: Target, timeouts: Timeouts) -> CanaryUser:
        key = target.describe()
        if key not in self._users:
            self._users[key] = (target, timeouts, create_canary(target, timeouts))
        return self._users[key][2]

    def close(self) -> list[str]:
        """Remove every canary made; the problems left (an empty list: all gone)."""
        problems: list[str] = []
        for target, timeouts, user in self._users.values():
            try:
                removal = remove_canary(target, timeouts, user)
            except Exception as exc:
                problems.append(f"canary {user.id}: {describe_error(exc)}")
                continue
            if not removal.gone:
                problems.append(f"canary {user.id}: {'; '.join(removal.problems)}")
        self._users.clear()
        return problems
