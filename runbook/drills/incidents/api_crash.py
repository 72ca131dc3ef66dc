"""Disaster Recovery > Recovery Time Objectives, "API crash" (5 minutes, no data loss): the
API's process killed with SIGKILL, as a crash does (no graceful shutdown).

``dr-api-killed``: SIGKILL to the API's real pid (the process listening on its port, its
command line checked again just before). The revert starts the API when it is not running.
The platform restarts a crashed service by itself; the runbook's Service Down step 1 checks
the status. No data may be lost: canaries written through the API until the fault must all
be there, and every table identical. Recovery is the platform's (no runbook step is needed):
a platform that does not bring the API back within the RTO fails the drill.
"""

from __future__ import annotations

import os
import signal
from urllib.parse import urlsplit

from runbook.drills.canaries import api_video_writer
from runbook.drills.dr_procedures import (
    START_TIMEOUT_S,
    act,
    cmdline,
    ensure_running,
    listens_on,
)
from runbook.drills.engine import Evidence
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.disaster import SECTION, DisasterIncident
from runbook.drills.incidents.steps import StepLog, output
from runbook.errors import SandboxError
from runbook.figures import compare, read_figures
from runbook.platforms.base import library_call
from runbook.results import Activity
from runbook.wait import wait_until

#: The API's module, looked for in a pid's command line before it is killed.
API_MODULE = "runbook.sandbox.services.api"


@fault("dr-api-killed", "the API process killed with SIGKILL: a crash, no graceful shutdown")
class ApiKilled:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        pid = int(params["pid"])

        def body() -> tuple[bool, str, str]:
            if API_MODULE not in cmdline(pid):
                return False, "", f"pid {pid} is not the API (already gone?)"
            os.kill(pid, signal.SIGKILL)
            return True, f"SIGKILL sent to the API (pid {pid})", ""

        return act(context, "kill the API", library_call("os.kill", pid, "SIGKILL"), body)

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        return ensure_running(context, "api")


class ApiCrash(DisasterIncident):
    name = "api-crash"
    section = f"{SECTION} > Recovery Time Objectives"
    scenario = "API crash"
    fault = "dr-api-killed"
    description = "the API's process killed with SIGKILL; the platform restarts it"
    sandbox_only = ("SIGKILL to the API's own pid needs the process on this machine (on"
                    " Railway or Kubernetes, use the Service Down game day's restart)")
    restores = False

    def prepare(self) -> tuple[str, Evidence]:
        target, timeouts = self.context.target, self.context.timeouts
        self.before = read_figures(target.require("DATABASE_URL"), timeouts, row_level=True)
        port = urlsplit(target.require("API_URL")).port or 80
        serving = wait_until(lambda: self.sandbox.status().components["api"],
                             timeout=START_TIMEOUT_S, interval=0.1,
                             accept=lambda api: api.running and api.pid is not None
                             and listens_on(api.pid, port),
                             describe=lambda api: f"{api.state}, pid {api.pid}")
        api = serving.value
        if api is None or api.pid is None or not serving.ok:
            raise SandboxError(f"no running API process listening on port {port}; nothing to"
                               f" crash ({'; '.join(serving.observations[-2:])})")
        self.run.params["pid"] = api.pid
        writer = self.writer(api_video_writer(target, timeouts, self.run.drill_id))
        writer.start()
        if not writer.wait_for(self.options.canaries, 30 + self.options.canaries * 5):
            raise SandboxError("the API did not acknowledge the canary writes")
        return (f"API pid {api.pid}; figures of {len(self.before.tables)} tables; canaries"
                " acknowledged by the API, writing until the fault"), [
            {"api_pid": api.pid, "figures": self.before.to_json()}]

    def runbook_steps(self) -> list[Activity]:
        book = StepLog(self.context)
        sandbox = self.sandbox

        def status() -> tuple[bool, str, str]:
            api = sandbox.status().components["api"]
            return True, output(f"api {api.state}, restarts {api.restarts}, last exit"
                                f" {api.last_exit.describe() if api.last_exit else '-'}: the"
                                " platform restarts a crashed service by itself"), ""

        book.step("1. check service status", library_call("runbook.sandbox.Sandbox.status"),
                  status, runbook_says="railway status")
        return book.activities

    def integrity(self) -> tuple[bool, str, Evidence]:
        before = self.before
        assert before is not None
        after = read_figures(self.context.target.require("DATABASE_URL"),
                             self.context.timeouts, like=before, row_level=True)
        report = compare(before, after)
        detail = ("every table identical up to the fault's cutoff" if report.ok
                  else report.problem())
        return report.ok, detail, [report.evidence()]
