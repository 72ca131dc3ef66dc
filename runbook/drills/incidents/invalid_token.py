"""Troubleshooting > "Invalid or Expired Token" Errors: the worker's stored ``API_SECRET``
differs from the API's, so the API refuses the worker's service tokens and releases fail.

The entry's fix as written sets a NEW secret on the worker alone ("new-secret"), which keeps
the mismatch (measured: fingerprints still differ, releases still fail); the record says
what the runbook should say, and the corrected procedure gives the worker the API's value.
"""

from __future__ import annotations

import secrets

from runbook.actions import journeys
from runbook.drills.engine import Incident, fixed
from runbook.drills.incidents.steps import StepLog
from runbook.drills.service_variables import target_value
from runbook.results import Activity, ProbeResult
from runbook.sections import INVALID_TOKEN


class SecretMismatch(Incident):
    name = "invalid-token"
    section = INVALID_TOKEN.section
    fault = "service-variable"
    params = fixed(service="worker", variable="API_SECRET", change="random")
    description = "the worker's stored API_SECRET differs from the API's"
    signal = "a requested release failed with \"Invalid or expired token\""
    defect = ("\"Invalid or Expired Token\" Errors: the fix as written (railway variables"
              " --set API_SECRET=\"new-secret\" --service worker, then restart the worker)"
              " keeps the mismatch when a new value is set on the worker alone (measured:"
              " fingerprints still differ, releases still fail). Say instead: set the"
              " worker's API_SECRET to the API's current value (better: one shared variable"
              " both services reference), restart the worker, and compare the fingerprints"
              " again; rotating the secret means setting the same new value on both services"
              " (which also signs users out).")

    def runbook_steps(self) -> list[Activity]:
        book = StepLog(self.context)
        same = book.compare("verify API_SECRET matches between services", "API_SECRET",
                            runbook_says="railway variables --service api | grep API_SECRET;"
                                         " railway variables --service worker | grep"
                                         " API_SECRET")
        if same is False:
            book.set_variables("if mismatch, update and restart: a new API_SECRET on the"
                               " worker (the platform restarts it)", "worker",
                               {"API_SECRET": secrets.token_hex(32)},
                               runbook_says="railway variables --set API_SECRET=\"new-secret\""
                                            " --service worker; railway restart --service"
                                            " worker")
            book.compare("compare API_SECRET again", "API_SECRET",
                         runbook_says="railway variables --service worker | grep API_SECRET")
        return book.activities

    def verify(self) -> ProbeResult:
        return journeys.release(self.context.target, self.context.timeouts)

    def correction(self) -> list[Activity]:
        book = StepLog(self.context)
        book.set_variables("set the worker's API_SECRET to the API's (the platform restarts"
                           " the worker)", "worker",
                           {"API_SECRET": target_value(self.context.target, "API_SECRET")},
                           runbook_says="railway variables --set API_SECRET=<the api's value>"
                                        " --service worker")
        book.compare("compare API_SECRET after the correction", "API_SECRET",
                     runbook_says="railway variables --service worker | grep API_SECRET")
        return book.activities
