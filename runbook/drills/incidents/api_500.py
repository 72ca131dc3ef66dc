"""Troubleshooting > API Returns 500 Error: its two causes a game day can produce.

- ``api-500-missing-variable``: the API's stored ``DATABASE_URL`` loses its password (a
  misconfiguration on the platform: it survives restarts). The entry's steps read the logs
  and restart the API ("quick fix"); the restart keeps the stored variable, so the API keeps
  answering 500. The entry names "missing environment variable" as a cause but has no step
  that sets it: the record says what to add, and the corrected procedure sets the variable
  back to the value the runbook's own database check proves works.
- ``api-500-lost-database``: PostgreSQL stopped. The quick fix (restart the API) cannot bring
  a database back; the correction restarts the database service.
"""

from __future__ import annotations

from runbook.drills.component_down import start_component
from runbook.drills.engine import Incident, fixed
from runbook.drills.incidents.steps import StepLog
from runbook.drills.service_variables import target_value
from runbook.results import Activity
from runbook.sections import API_500


class _Api500(Incident):
    section = API_500.section
    signal = "a user's request answered HTTP 500 (the canary login)"
    #: The error the logs must show (a regular expression).
    log_error = ""

    def runbook_steps(self) -> list[Activity]:
        book = StepLog(self.context)
        book.logs("check recent logs", "api", must_show=self.log_error,
                  runbook_says="railway logs --service api --tail")
        book.restart("quick fix: restart the API", "api",
                     runbook_says="railway restart --service api")
        return book.activities


class MissingVariable(_Api500):
    name = "api-500-missing-variable"
    fault = "service-variable"
    params = fixed(service="api", variable="DATABASE_URL", change="drop-password")
    description = ("the API's stored DATABASE_URL without its password: a misconfiguration"
                   " on the platform, kept across restarts")
    log_error = r"unhandled error on .*(password|environment variable)"
    defect = ("API Returns 500 Error lists a missing environment variable as a cause but its"
              " only fix is a restart, which keeps the platform's stored variables (measured:"
              " still HTTP 500 after the restart). Add: when the logs show a configuration"
              " error, compare the service's variables with the expected ones (railway"
              " variables --service api) and set the wrong or missing one (railway variables"
              " --set NAME=<value> --service api), which redeploys the service; then check"
              " the logs again.")

    def correction(self) -> list[Activity]:
        book = StepLog(self.context)
        wanted = target_value(self.context.target, "DATABASE_URL")
        book.set_variables("set the API's DATABASE_URL to the value the database check"
                           " accepts (the platform restarts the API with it)", "api",
                           {"DATABASE_URL": wanted},
                           runbook_says="railway variables --set DATABASE_URL=<value>"
                                        " --service api")
        return book.activities


class LostDatabase(_Api500):
    name = "api-500-lost-database"
    fault = "component-down"
    params = fixed(component="postgres")
    description = "PostgreSQL stopped and held down: the API answers 500 to what needs it"
    log_error = r"unhandled error on .*(connect|database|server)"
    defect = ("API Returns 500 Error: the quick fix (railway restart --service api) does not"
              " help when the cause is a lost database (measured: still HTTP 500 after the"
              " restart). Add: read the error in the logs first; when it is a database"
              " connection error, restore the database service (Database Connection Errors,"
              " with its correction: restart the database service), confirm the API answers,"
              " and restart the API only for a missing variable (after setting it) or an"
              " unhandled exception.")

    def correction(self) -> list[Activity]:
        return [start_component(self.context, "postgres",
                                "restart the database service (the cause the logs show)",
                                runbook_says="railway restart --service <postgres service>")]
