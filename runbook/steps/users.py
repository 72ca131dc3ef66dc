"""Steps about user management, on canary users that are always removed."""

from __future__ import annotations

from collections.abc import Iterator

from pytest_bdd import given, then, when

from runbook.actions import users
from runbook.actions.users import (
    AccessChecks,
    CanaryUser,
    LockRoundTrip,
    PasswordReset,
    Removal,
)
from runbook.checks import require_record
from runbook.config import Target
from runbook.harness.evidence import Evidence
from runbook.timeouts import Timeouts


@given("a canary admin", target_fixture="canary_admin")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> Iterator[CanaryUser]:
    with users.canary_user(target, timeouts, role="ADMIN") as admin:
        yield evidence(admin)


@given("a canary user", target_fixture="canary")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> Iterator[CanaryUser]:
    with users.canary_user(target, timeouts, role="USER") as user:
        yield evidence(user)


@when("the on-call engineer creates an admin user as the runbook describes",
      target_fixture="new_admin")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> Iterator[CanaryUser]:
    admin = users.create_admin(target, timeouts)
    yield evidence(admin)
    users.remove_canary(target, timeouts, admin)  # idempotent: the scenario removes it too


@then("the new admin's token is accepted by the admin API")
def _(target: Target, new_admin: CanaryUser) -> None:
    require_record(target, new_admin, "api", "the admin's token accepted by an admin endpoint",
                   holds=new_admin.is_admin_at_runbook_cost)


@when("the on-call engineer removes the canary admin", target_fixture="removal")
def _(target: Target, timeouts: Timeouts, new_admin: CanaryUser, evidence: Evidence) -> Removal:
    return evidence(users.remove_canary(target, timeouts, new_admin))


@then("the canary admin is gone")
def _(target: Target, removal: Removal) -> None:
    require_record(target, removal, "database", "the canary's row gone and its token refused")


@when("the admin locks the user's account with the runbook's request, then unlocks it",
      target_fixture="lock_round_trip")
def _(target: Target, timeouts: Timeouts, canary_admin: CanaryUser, canary: CanaryUser,
      evidence: Evidence) -> LockRoundTrip:
    return evidence(users.lock_round_trip(target, timeouts, canary_admin.token, canary))


@then("the user could not log in while locked and can log in again")
def _(target: Target, lock_round_trip: LockRoundTrip) -> None:
    require_record(target, lock_round_trip, "api", "login refused (403) while locked, 200 after")


@when("the lock request is sent without a token and with a non-admin's token",
      target_fixture="access")
def _(target: Target, timeouts: Timeouts, canary_admin: CanaryUser, canary: CanaryUser,
      evidence: Evidence) -> AccessChecks:
    return evidence(users.access_checks(target, timeouts, user_id=canary.id,
                                        non_admin_token=canary.token,
                                        admin_token=canary_admin.token))


@then("it is refused with 401 and 403 and the user stays unlocked")
def _(target: Target, access: AccessChecks) -> None:
    require_record(target, access, "api", "401 without a token, 403 with a non-admin's")


@when("the on-call engineer resets the user's password with a cost 12 bcrypt hash",
      target_fixture="reset")
def _(target: Target, timeouts: Timeouts, canary: CanaryUser, evidence: Evidence) -> PasswordReset:
    return evidence(users.reset_password(target, timeouts, canary.id, old_password=canary.password,
                                         old_token=canary.token))


@then("the new password logs in and the old one does not")
def _(target: Target, reset: PasswordReset) -> None:
    require_record(target, reset, "api", "new password 200, old password 401, hash cost 12",
                   holds=reset.hashed_at_runbook_cost)
