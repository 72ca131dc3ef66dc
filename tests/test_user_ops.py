"""User Management against the real sandbox, on canary users: create an admin and prove its
token, lock (403 at login) and unlock, 401 without a token and 403 for a non-admin, reset a
password (new works, old does not), and remove the canary (the row is gone). Also: nothing
is left behind when a step fails, non-canary users are refused, and no secret reaches a
record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from runbook.actions import users
from runbook.config import Target
from runbook.errors import SafetyGateError
from runbook.probes import canaries
from runbook.timeouts import Timeouts

TIMEOUTS = Timeouts()


@pytest.fixture(scope="module")
def target(sandbox: Any) -> Target:
    return Target.from_variables("sandbox", sandbox.env, source="sandbox",
                                 environment="sandbox")


def _db(target: Target) -> psycopg.Connection[Any]:
    return psycopg.connect(target.require("DATABASE_URL"), connect_timeout=5, autocommit=True)


def _row(target: Target, user_id: str) -> tuple[Any, ...] | None:
    with _db(target) as conn:
        return conn.execute('SELECT "email", "role", "locked", "passwordHash" FROM "User"'
                            ' WHERE "id" = %s', (user_id,)).fetchone()


def _locked(target: Target, user_id: str) -> bool:
    row = _row(target, user_id)
    assert row is not None, f"user {user_id} does not exist"
    return bool(row[2])


def _hash(target: Target, user_id: str) -> str:
    row = _row(target, user_id)
    assert row is not None, f"user {user_id} does not exist"
    return str(row[3])


def _canary_rows(target: Target) -> int:
    with _db(target) as conn:
        row = conn.execute('SELECT count(*) FROM "User" WHERE "email" LIKE %s',
                           (f"{canaries.CANARY_PREFIX}%",)).fetchone()
    assert row is not None
    return int(row[0])


def _no_secrets(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret and secret not in text


@pytest.fixture(scope="module", autouse=True)
def no_canary_left_behind(target: Target) -> Iterator[None]:
    """Every test here removes its canaries: none remain when the module ends."""
    before = _canary_rows(target)
    yield
    assert _canary_rows(target) == before


@pytest.fixture
def admin(target: Target) -> Iterator[users.CanaryUser]:
    with users.canary_user(target, TIMEOUTS, "ADMIN") as user:
        yield user


# -- the whole story ---------------------------------------------------------------------


def test_user_management_story_on_canaries(target: Target) -> None:
    removals: list[users.Removal] = []
    with users.canary_user(target, TIMEOUTS, "ADMIN", on_removed=removals.append) as admin, \
            users.canary_user(target, TIMEOUTS, "USER", on_removed=removals.append) as user:
        # Create Admin User: a row with role ADMIN and a cost-12 bcrypt hash, token works.
        row = _row(target, admin.id)
        assert row is not None
        email, role, locked, password_hash = row
        assert (email, role, locked) == (admin.email, "ADMIN", False)
        assert email.startswith(canaries.CANARY_PREFIX) and email.endswith("@legacyvideo.test")
        assert password_hash.startswith("$2b$12$")
        assert (admin.hash_scheme, admin.hash_cost) == ("2b", 12)
        assert [a.name for a in admin.activities] == [
            "create user row", "log in", "admin endpoint with the new token"]
        assert all(a.ok for a in admin.activities)

        # Lock User Account: 403 "Account locked" at login, unlock restores it.
        trip = users.lock_round_trip(target, TIMEOUTS, admin.token, user)
        assert trip.ok, trip.problems
        assert trip.locked_login_status == 403
        assert trip.locked_login_error == "Account locked"
        assert trip.locked_token_status == 403
        assert trip.unlocked_login_status == 200
        assert trip.time_to_lock_s is not None and trip.time_to_lock_s > 0
        assert trip.time_to_unlock_s is not None and trip.time_to_unlock_s > 0
        assert not trip.left_locked
        assert not _locked(target, user.id)

        # 401 without a token, 403 for a non-admin; the user is left as it was.
        access = users.access_checks(target, TIMEOUTS, user_id=user.id,
                                     non_admin_token=user.token, admin_token=admin.token)
        assert access.ok, access.problems
        assert (access.no_token_status, access.no_token_error) == (
            401, "Authentication required")
        assert (access.non_admin_status, access.non_admin_error) == (
            403, "Admin access required")
        assert not access.undone
        assert not _locked(target, user.id)

        # Reset User Password: cost-12 hash written; the new password works, the old not.
        old_hash = _hash(target, user.id)
        reset = users.reset_password(target, TIMEOUTS, user.id, old_password=user.password,
                                     old_token=user.token)
        assert reset.ok, reset.problems
        assert (reset.hash_scheme, reset.hash_cost) == ("2b", 12)
        assert (reset.new_login_status, reset.old_login_status) == (200, 401)
        new_hash = _hash(target, user.id)
        assert new_hash != old_hash and new_hash.startswith("$2b$12$")
        # Found on the way: a token issued before the reset keeps working.
        assert reset.old_token_status == 200

        evidence = json.dumps([admin.evidence(), user.evidence(), trip.evidence(),
                               access.evidence(), reset.evidence()], default=str)
        shown = evidence + repr((admin, user, trip, access, reset))
        _no_secrets(shown, admin.password.get_secret_value(), admin.token.get_secret_value(),
                    user.password.get_secret_value(), user.token.get_secret_value(),
                    password_hash, old_hash, new_hash, *target.secret_values())
        assert "Authorization: Bearer ***" in evidence
    # The canaries are removed: rows gone, their tokens refused, audit rows detached.
    assert _row(target, admin.id) is None
    assert _row(target, user.id) is None
    assert [r.user_id for r in removals] == [user.id, admin.id]
    for removal in removals:
        assert removal.ok and removal.gone and removal.existed, removal.problems
        assert removal.deleted_users == 1
        assert removal.token_status == 401
        assert removal.audit_rows_detached >= 1  # their logins were audited
    with _db(target) as conn:
        attached = conn.execute('SELECT count(*) FROM "AuditLog" WHERE "userId" IN (%s, %s)',
                                (admin.id, user.id)).fetchone()
    assert attached == (0,)


def test_lock_user_sends_exactly_the_runbooks_request(target: Target) -> None:
    """With the target's ADMIN_TOKEN, as the runbook's curl does."""
    with users.canary_user(target, TIMEOUTS) as user:
        token = target.require("ADMIN_TOKEN")
        locked = users.lock_user(target, TIMEOUTS, token, user.id, True)
        try:
            assert locked.ok and locked.status_code == 200
            assert locked.command == (
                "curl", "-X", "POST", f"{target.api_url}/api/admin/users/lock",
                "-H", "Authorization: Bearer ***", "-H", "Content-Type: application/json",
                "-d", json.dumps({"userId": user.id, "locked": True}, separators=(",", ":")))
            assert _locked(target, user.id)
            refused = users.login(target, TIMEOUTS, user.email, user.password)
            assert (refused.status_code, refused.api_error) == (403, "Account locked")
            assert refused.token is None
        finally:
            unlocked = users.lock_user(target, TIMEOUTS, token, user.id, False)
        assert unlocked.ok and unlocked.status_code == 200
        assert not _locked(target, user.id)
        assert users.login(target, TIMEOUTS, user.email, user.password).status_code == 200
        _no_secrets(json.dumps([locked.evidence(), unlocked.evidence()]) + repr(locked),
                    token, user.password.get_secret_value())


def test_lock_user_records_a_refusal_without_raising(target: Target) -> None:
    anonymous = users.lock_user(target, TIMEOUTS, None, "no-such-user", True)
    assert not anonymous.ok
    assert (anonymous.status_code, anonymous.api_error) == (401, "Authentication required")
    assert not any(part.startswith("Authorization") for part in anonymous.command)
    unknown = users.lock_user(target, TIMEOUTS, target.require("ADMIN_TOKEN"),
                              "no-such-user", True)
    assert (unknown.ok, unknown.status_code, unknown.api_error) == (False, 404,
                                                                    "User not found")


def test_an_unreachable_api_is_a_failed_record_not_a_hang(target: Target) -> None:
    dead = Target.from_variables("dead", {"API_URL": "http://127.0.0.1:9"}, source="test",
                                 environment="sandbox")
    call = users.lock_user(dead, Timeouts(connect=1, read=1), "x" * 20, "someone", True)
    assert not call.ok and call.status_code is None
    assert "connect" in call.error
    assert call.elapsed_s < 3


# -- cleanup, also on failure ------------------------------------------------------------


def test_canary_user_is_removed_when_the_block_fails(target: Target) -> None:
    seen: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), users.canary_user(target, TIMEOUTS) as u:
        seen.append(u.id)
        raise RuntimeError("boom")
    assert len(seen) == 1
    assert _row(target, seen[0]) is None


def test_a_canary_whose_token_cannot_be_proved_is_removed(target: Target, sandbox: Any) -> None:
    """The row is written, then the proof through the API fails (no API there): the row
    must not stay, and the failure carries every call, the cleanup's included."""
    broken = Target.from_variables(
        "broken", {**sandbox.env, "API_URL": "http://127.0.0.1:9"}, source="test",
        environment="sandbox")
    before = _canary_rows(target)
    with pytest.raises(users.UserOperationFailed) as failure:
        users.create_admin(broken, Timeouts(connect=1, read=2))
    assert _canary_rows(target) == before
    names = [a.name for a in failure.value.activities]
    assert names[:2] == ["create user row", "log in"]
    assert "delete the canary and its rows" in names
    assert "the new canary could not log in" in str(failure.value)


def test_removing_a_canary_twice_is_not_an_error(target: Target) -> None:
    with users.canary_user(target, TIMEOUTS) as user:
        first = users.remove_canary(target, TIMEOUTS, user.id)
        assert first.existed and first.gone and first.deleted_users == 1
    again = users.remove_canary(target, TIMEOUTS, user.id)
    assert again.ok and not again.existed and again.deleted_users == 0


# -- safety ------------------------------------------------------------------------------


def _seed_user_id(target: Target, email: str) -> str:
    with _db(target) as conn:
        row = conn.execute('SELECT "id" FROM "User" WHERE "email" = %s', (email,)).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize("email", ["admin@legacyvideo.test", "canary@legacyvideo.test"])
def test_real_users_are_never_reset_or_removed(target: Target, email: str) -> None:
    user_id = _seed_user_id(target, email)
    before = _row(target, user_id)
    with pytest.raises(SafetyGateError, match="not a runbook canary"):
        users.reset_password(target, TIMEOUTS, user_id)
    with pytest.raises(SafetyGateError, match="not a runbook canary"):
        users.remove_canary(target, TIMEOUTS, user_id)
    assert _row(target, user_id) == before


def test_canary_addresses() -> None:
    target = Target.from_variables("t", {"FROM_EMAIL": "noreply@mail.example.com"},
                                   source="test", environment="staging")
    email = canaries.canary_email(target)
    assert email.startswith(canaries.CANARY_PREFIX) and email.endswith("@mail.example.com")
    assert canaries.is_canary_email(email)
    bare = Target.from_variables("t", {"API_URL": "http://x"}, source="test",
                                 environment="staging")
    assert canaries.canary_email(bare).endswith("@legacyvideo.test")
    for other in ("canary@legacyvideo.test", "runbook-canary-@x.test",
                  "runbook-canary-ZZZZZZZZ@x.test", "evil+runbook-canary-abcdef12@x.test"):
        assert not canaries.is_canary_email(other)


def test_hash_parameters_are_parsed_not_recorded() -> None:
    assert users.hash_parameters(users.hash_password("correct horse")) == ("2b", 12)
    assert users.hash_parameters("$2a$10$abcdefghijklmnopqrstuv") == ("2a", 10)
    assert users.hash_parameters("plaintext") == ("", None)
