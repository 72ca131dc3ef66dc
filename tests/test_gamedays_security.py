"""The game day of Data Breach / Security Incident, against the real sandbox: accounts under
a password-guessing burst, detected by the scheduled scenario that names the section, the
runbook's steps followed (lock the accounts, revoke the tokens), restored, no secret
recorded (``tests/gamedays.py``). Then the breach as the audit reviews see it, and its
victims as canaries.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from runbook.actions.users import CanaryUser
from runbook.drills import faults
from runbook.drills.faults import DrillContext
from runbook.drills.incidents import data_breach
from runbook.probes import audit, canaries
from runbook.sections import next_steps
from tests import gamedays
from tests.conftest import RunningSandbox

SECURITY_GAMEDAYS = ["data-breach"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", SECURITY_GAMEDAYS)
def test_game_day(name: str, healthy_sandbox: RunningSandbox, context: DrillContext,
                  canary: CanaryUser, tmp_path: Path) -> None:
    secrets = gamedays.secret_values(healthy_sandbox)
    started = time.monotonic()
    record = gamedays.run(name, healthy_sandbox, context, canary, tmp_path)
    gamedays.assert_outcome(name, record)
    report = gamedays.explain(record)
    steps = gamedays.activities(record)
    assert any(n.startswith("1. lock all affected user accounts") for n in steps), report
    assert steps["3. revoke all active access tokens"]["ok"], report
    gamedays.no_secret_in(record, secrets)
    gamedays.assert_healthy(healthy_sandbox, context, canary)
    print("\n" + gamedays.matrix_line(name, record, time.monotonic() - started))


def test_the_breach_is_seen_by_the_audit_reviews_and_its_revert_removes_it(
        context: DrillContext, healthy_sandbox: RunningSandbox) -> None:
    spec = faults.get("security-breach", "sandbox")
    injected = spec.inject(context, {"accounts": 2, "failures_per_account": 5})
    assert injected.ok, injected.error
    ids = data_breach.breach_canaries(context)
    assert len(ids) == 2
    # The same thresholds as the weekly review: the scheduled check and the review both
    # see it (the victims stand for real users; the runbook's own canaries are left out).
    for window in (900.0, 7 * 86400.0):
        seen = audit.login_bursts(context.target, context.timeouts, window_s=window,
                                  failures=10, burst_s=600)
        assert not seen.ok, window
    assert next_steps("security-incident")[0].startswith(
        "Incident Response > Data Breach / Security Incident: 1. lock")
    assert spec.revert(context, {}).ok and spec.revert(context, {}).ok
    assert data_breach.breach_canaries(context) == []
    assert audit.login_bursts(context.target, context.timeouts, window_s=900.0, failures=10,
                              burst_s=600).ok
    token = healthy_sandbox.env["ADMIN_TOKEN"]
    answer = httpx.get(f"{healthy_sandbox.env['API_URL']}/api/admin/users?limit=1",
                       headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert answer.status_code == 200


def test_a_victim_is_a_canary_for_removal_but_counted_by_the_audit_reviews() -> None:
    victim = "runbook-canary-victim-0123456789abcdef@legacyvideo.test"
    assert canaries.is_canary_email(victim)

    assert not re.match(audit.CANARY_EMAIL, victim)
    assert re.match(audit.CANARY_EMAIL, "runbook-canary-0123456789abcdef@legacyvideo.test")
