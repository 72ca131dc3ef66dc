"""Steps about e-mail through Resend (read-only: no mail is sent)."""

from __future__ import annotations

from pytest_bdd import parsers, then, when

from runbook.actions import journeys
from runbook.checks import require_ok
from runbook.config import Target
from runbook.harness.evidence import Evidence
from runbook.harness.scenarios import needs, waits_on_workers
from runbook.probes import email
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts


@when("the on-call engineer checks the Resend API key", target_fixture="resend_key")
@needs("email provider")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(email.api_key(target, timeouts))


@then("Resend accepts the key")
def _(resend_key: ProbeResult) -> None:
    require_ok(resend_key)


@when("the on-call engineer checks the sender's domain", target_fixture="sender_domain")
@needs("email provider")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(email.sender_domain(target, timeouts))


@then("FROM_EMAIL's domain is verified")
def _(sender_domain: ProbeResult) -> None:
    require_ok(sender_domain)


@when(parsers.parse("the on-call engineer has the worker send a canary e-mail, allowing"
                    " {seconds:g} seconds"), target_fixture="email_delivery")
@waits_on_workers
def _(target: Target, timeouts: Timeouts, seconds: float, evidence: Evidence) -> ProbeResult:
    return evidence(journeys.email(target, timeouts, within_s=seconds))


@then("the e-mail is sent and delivered")
def _(email_delivery: ProbeResult) -> None:
    require_ok(email_delivery)
