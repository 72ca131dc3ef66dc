"""Incident Response > Email Not Sending: the worker's stored Resend key is wrong, or it
sends from a domain Resend has not verified (each kept across restarts).

The section's steps 2 and 3 say to verify the key and the sender; their fix (set the one
that is wrong to what Resend accepts: the value the runbook's own Resend checks prove) is
the runbook's, and it restores sending. What the runbook gets wrong is recorded: step 1
shows nothing (Resend lists accepted e-mails, not refused requests), step 4's ``LLEN
bull:email:failed`` answers WRONGTYPE once a job has failed (a sorted set), and no step
retries the e-mails that failed meanwhile: users never get them.
"""

from __future__ import annotations

import json

from runbook.actions import journeys
from runbook.actions import queues as queue_actions
from runbook.clients import http_client
from runbook.config import Target
from runbook.drills.engine import Incident, fixed
from runbook.drills.incidents.steps import StepLog, differing, output
from runbook.platforms.base import library_call
from runbook.probes import canaries
from runbook.probes import email as email_probe
from runbook.probes import queues as queue_probe
from runbook.results import Activity, ProbeResult
from runbook.sections import EMAIL_NOT_SENDING
from runbook.timeouts import Timeouts

VARIABLES = ("RESEND_API_KEY", "FROM_EMAIL")
#: A non-secret sender on a domain the sandbox's Resend stand-in has not verified.
UNVERIFIED_SENDER = "noreply@legacyvideo-news.test"


def send_directly(target: Target, timeouts: Timeouts) -> tuple[bool, str]:
    """Step 6, "test email manually via Resend": ``POST /emails`` from ``FROM_EMAIL`` with
    the account's key to a canary mailbox, then its delivery."""
    key = target.require("RESEND_API_KEY")
    to = canaries.canary_email(target)
    with http_client(timeouts, headers={"Authorization": f"Bearer {key}"}) as http:
        answer = http.post(f"{target.resend_api_url.rstrip('/')}/emails", json={
            "from": target.require("FROM_EMAIL"), "to": [to],
            "subject": "LegacyVideo runbook canary (safe to ignore)",
            "html": "<p>Sent by hand in a game day; nobody reads this.</p>"})
    if answer.status_code != 200:
        return False, f"Resend refused it: HTTP {answer.status_code} {answer.text[:200]}"
    return journeys.delivered(target, timeouts, str(answer.json().get("id")), to)


class _EmailNotSending(Incident):
    section = EMAIL_NOT_SENDING.section
    fault = "service-variable"
    signal = "an e-mail the worker sends failed or not delivered"
    notes = ("runbook: step 1 shows nothing (Resend lists accepted e-mails, not refused"
             " requests); step 4's LLEN bull:email:failed answers WRONGTYPE once a job has"
             " failed (failed is a sorted set: count with BullMQ's getJobCounts or ZCARD);"
             " no step retries the e-mails that failed meanwhile, and Common Operations'"
             " 'restart worker (will retry failed jobs)' does not retry them: retry them the"
             " BullMQ way (Queue.retryJobs({state: 'failed'})) once the cause is fixed",)

    def runbook_steps(self) -> list[Activity]:
        book = StepLog(self.context)
        target, timeouts, platform = self.context.target, self.context.timeouts, \
            self.context.platform

        def dashboard() -> tuple[bool, str, str]:
            key = email_probe.api_key(target, timeouts)
            domain = email_probe.sender_domain(target, timeouts)
            with http_client(timeouts, headers={
                    "Authorization": f"Bearer {target.require('RESEND_API_KEY')}"}) as http:
                listing = http.get(f"{target.resend_api_url.rstrip('/')}/emails",
                                   params={"limit": 20})
            recent = listing.json().get("data", []) if listing.status_code == 200 else []
            return True, output(
                f"the account's key is {'accepted' if key.ok else 'REFUSED'}, FROM_EMAIL's"
                f" domain is {'verified' if domain.ok else 'NOT verified'}; {len(recent)}"
                " recent e-mails, none of them failed ones: rejected sends never reach the"
                " list", {"api_key": key.evidence(), "sender_domain": domain.evidence()}), ""

        book.step("1. check the Resend dashboard for errors",
                  library_call("httpx.get", f"{target.resend_api_url}/domains",
                               f"{target.resend_api_url}/emails"), dashboard,
                  runbook_says="Resend dashboard")
        accepted = target.variables()
        found = book.variables("worker", "2. verify RESEND_API_KEY",
                               runbook_says="railway variables --service worker")
        differ, evidence = differing(found, accepted, VARIABLES)
        if found is not None:
            book.add(found.activity, "2. verify RESEND_API_KEY",
                     runbook_says="railway variables --service worker",
                     finding=("the worker's RESEND_API_KEY is not the key Resend accepts"
                              if "RESEND_API_KEY" in differ else "the worker's RESEND_API_KEY"
                              " is the key Resend accepts") + f" {json.dumps(evidence)}")
            book.add(found.activity, "3. check FROM_EMAIL is verified",
                     runbook_says="Resend dashboard > Domains",
                     finding=("the worker sends from another address than the verified"
                              " FROM_EMAIL" if "FROM_EMAIL" in differ
                              else "the worker sends from the verified FROM_EMAIL"))
        failing = self.run.facts.setdefault("failed_email_jobs", [])

        def queue() -> tuple[bool, str, str]:
            failing.append(journeys.canary_email_job_id())  # before it exists: cleanup covers it
            outcome = journeys.send_canary_email(target, timeouts, keep=True,
                                                 job_id=failing[-1])
            llen = queue_probe.runbook_llen_failed(target, timeouts, "email")
            counts = queue_probe.counts(target, timeouts, "email")
            wrongtype = bool(llen.observed.get("wrongtype"))
            return True, output(
                f"a send-email job {outcome['state']}: {outcome['failed_reason'] or 'no reason'};"
                f" the runbook's LLEN bull:email:failed answered {llen.observed.get('reply')!r}"
                + (" (WRONGTYPE: failed is a sorted set)" if wrongtype else "")
                + f"; BullMQ counts {counts.observed.get('failed')} failed",
                {"job": outcome, "llen": llen.observed}), ""

        book.step("4. check the email queue (a send-email job through the worker; the"
                  " runbook's LLEN; BullMQ's counts)",
                  library_call("redis.Redis.llen", "bull:email:failed"), queue,
                  runbook_says="redis-cli -u $REDIS_URL LLEN bull:email:failed")

        def worker_logs() -> tuple[bool, str, str]:
            logs = platform.logs("worker", since="15m", lines=1000)
            failures = [line for line in logs.error_lines if "queue=email" in line]
            return logs.ok, output(f"{len(failures)} failed e-mail jobs logged" + (
                f"; the last: {failures[-1].split('reason=', 1)[-1]}" if failures else ""),
                failures[-5:]), logs.activity.error

        book.step("5. review worker logs",
                  library_call("runbook.platforms.PlatformAdapter.logs", "worker"),
                  worker_logs, runbook_says="railway logs --service worker")

        def manual() -> tuple[bool, str, str]:
            sent, said = send_directly(target, timeouts)
            return True, output(f"the account {'sends' if sent else 'does NOT send'}:"
                                f" {said}"), ""

        book.step("6. test email manually",
                  library_call("httpx.post", f"{target.resend_api_url}/emails"), manual,
                  runbook_says="Resend dashboard (send a test e-mail)")
        if differ:
            book.set_variables(f"2./3. (the fix) set the worker's {' and '.join(differ)} to"
                               " what Resend accepts (the platform restarts the worker)",
                               "worker", {name: accepted.get(name) for name in differ},
                               runbook_says="railway variables --set ... --service worker")
        return book.activities

    def verify(self) -> ProbeResult:
        return journeys.email(self.context.target, self.context.timeouts)

    def cleanup(self) -> list[str]:
        failing = self.run.facts.get("failed_email_jobs") or []
        if not failing:
            return []
        cleared = queue_actions.remove_jobs(self.context.target, self.context.timeouts,
                                            "email", failing)
        self.run.facts["failed_email_jobs_removed"] = cleared.evidence()
        return [f"canary e-mail job keys left: {cleared.keys_left}"] if cleared.keys_left \
            else []


class InvalidKey(_EmailNotSending):
    name = "email-not-sending-invalid-key"
    params = fixed(service="worker", variable="RESEND_API_KEY", change="random")
    description = "the worker's stored RESEND_API_KEY is not a key Resend accepts"


class UnverifiedSender(_EmailNotSending):
    name = "email-not-sending-unverified-sender"
    params = fixed(service="worker", variable="FROM_EMAIL", change="set",
              value=UNVERIFIED_SENDER)
    description = "the worker's stored FROM_EMAIL is on a domain Resend has not verified"
