"""Incident Response > High Memory/CPU Usage: a configuration change makes the API burn CPU
from every start (a flag the API reads, ``RUNBOOK_CHAOS_CPU_HOG``, stored in its variables:
it survives restarts, as a bad configuration or deployment does).

The runbook's steps 1-3 only diagnose (metrics, resource-hungry queries in the logs, stuck
jobs), and 4-5 scale the platform, which adds headroom around a runaway process and cannot
be done on the sandbox. So they do not restore service, and the record says what the runbook
should add; the corrected procedure finds the change in the service's variables and rolls
it back.
"""

from __future__ import annotations

from runbook.drills.engine import Incident, fixed
from runbook.drills.incidents.steps import StepLog, output
from runbook.platforms.base import library_call
from runbook.probes import combine, resources
from runbook.probes import queues as queue_probe
from runbook.results import Activity, ProbeResult
from runbook.sandbox.services.common import CHAOS_CPU_HOG
from runbook.sections import HIGH_USAGE

#: The CPU threshold the scheduled check applies (features: the runbook's memory alert, the
#: only resource threshold it gives); the incident's own check uses the same.
CPU_ALERT_PERCENT = 80.0


class HighCpu(Incident):
    name = "high-cpu"
    section = HIGH_USAGE.section
    fault = "service-variable"
    params = fixed(service="api", variable=CHAOS_CPU_HOG, change="set", value="1")
    description = ("a configuration change stored in the API's variables makes it burn CPU"
                   " from every start")
    signal = "the API process's CPU over the alert threshold"
    defect = ("High Memory/CPU Usage stops at diagnosis: steps 1-3 find the API process busy"
              " with no slow query and no stuck job, and steps 4-5 (scale vertically or"
              " horizontally) only add headroom around a runaway process (and cannot be done"
              " on the sandbox, so they were not run). Add: after steps 1-3, find what"
              " changed (recent deployments, the service's variables: railway variables"
              " --service api) and roll it back (railway variables --set ... or railway"
              " redeploy of the previous deployment); a restart alone stops a runaway only"
              " until the same configuration starts it again; confirm on the metrics that"
              " CPU is back to normal; scale only for load that is legitimately high.")

    def runbook_steps(self) -> list[Activity]:
        book = StepLog(self.context)
        target, timeouts = self.context.target, self.context.timeouts
        book.check("1. check the metrics (the API's /metrics: its CPU over 1 s)",
                   "runbook.probes.resources.api_cpu",
                   lambda: resources.api_cpu(target, timeouts, limit_percent=CPU_ALERT_PERCENT),
                   runbook_says="Railway metrics dashboard")
        book.logs("2. identify resource-hungry queries in the logs", "api", count=r"query took",
                  runbook_says="railway logs --service api")

        def stuck() -> tuple[bool, str, str]:
            counts = [queue_probe.counts(target, timeouts, queue) for queue in queue_probe.QUEUES]
            shown = ", ".join(f"{r.observed.get('queue')}: {r.observed.get('active')} active,"
                              f" {r.observed.get('wait')} waiting" for r in counts)
            found = combine("queues", "counts", counts)
            return True, output(shown, found.evidence()), ""

        book.step("3. check for stuck jobs in queues",
                  library_call("runbook.probes.queues.counts", *queue_probe.QUEUES), stuck,
                  runbook_says="redis-cli -u $REDIS_URL LLEN bull:<queue>:active")
        book.step("4-5. scale vertically or horizontally",
                  (), lambda: (True, output(
                      "not possible on the sandbox (one process per service); scaling adds"
                      " headroom around a runaway process, it does not stop it"), ""),
                  runbook_says="upgrade the Railway plan; add replicas")
        return book.activities

    def verify(self) -> ProbeResult:
        return resources.api_cpu(self.context.target, self.context.timeouts,
                                 limit_percent=CPU_ALERT_PERCENT)

    def correction(self) -> list[Activity]:
        book = StepLog(self.context)
        book.variables("api", "find what changed in the API's variables",
                       runbook_says="railway variables --service api")
        book.set_variables(f"roll back the change: {CHAOS_CPU_HOG} unset (the platform"
                           " restarts the API with it)", "api", {CHAOS_CPU_HOG: None},
                           runbook_says=f"railway variables --set {CHAOS_CPU_HOG}= --service api")
        return book.activities
