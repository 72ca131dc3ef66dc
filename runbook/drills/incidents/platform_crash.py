"""Disaster Recovery > Recovery Time Objectives, "API crash" (5 minutes), on a real target
through its own platform: one API instance killed and replaced the way the platform does it
(``PlatformAdapter.replace_instance``):

* Kubernetes: one running pod of the API's Deployment deleted (found by the Deployment's own
  selector), then ``kubectl rollout status`` until the ReplicaSet's replacement is ready;
* Railway: ``railway redeploy --service api --yes`` (the CLI returns once Railway accepted
  the redeploy; it does not wait for the new deployment).

Runs on staging with --allow-drills staging; never on production. Refused, with the reason
and before anything is done, where the target sets no API_URL or its PLATFORM is neither
railway nor kubernetes; on the sandbox the api-crash drill (SIGKILL to the API's process) is
the one to run. Nothing is written but the end-to-end check's own logins (a canary user the
scenario makes and removes); with a DATABASE_URL the drill also proves the database left as
found (per-table checksums before and after), without one it reads no database at all.

What users saw, and so the verdict, comes from one watch of the scenario's end-to-end check
(health, a login that writes, the user read back), every ``WATCH_INTERVAL_S`` from before the
fault to the end of the drill, each check dated when it ran (the platform's command blocks
while the pod is replaced, so a check made only after it returns would miss the outage):

* detected: the first red check within the Gherkin's detection limit of the fault (the
  start of the platform's command);
* recovered: the first of N consecutive green checks after it (the RTO, against 5 minutes);
* no red check within the limit: the replacement was not visible to users (another replica
  served meanwhile, or a redeploy had not switched over yet). Detection then fails, and the
  record says why: the drill does not sign off a recovery from an outage it never saw;
* a red check after the recovery was measured fails the drill (its clean-up phase names
  it): the API was not back for good;
* the restore has nothing to revert (the platform replaces the instance by itself): it only
  verifies that the API answers ``/health`` again (within ``HEALTH_WAIT_S``), and reports
  when the platform did not bring it back. The restoration guard does the same after a
  crash of the drill.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from runbook.config import Environment, Platform
from runbook.drills.engine import Evidence, Incident, Run, broken, fixed, one_line
from runbook.drills.faults import DrillContext, Params, fault
from runbook.drills.incidents.real_target import SECTION, RealTargetDrill, Verdict, probe
from runbook.drills.incidents.steps import StepLog
from runbook.platforms.base import library_call, record
from runbook.probes import api as api_probe
from runbook.results import Activity, ProbeResult
from runbook.wait import wait_until

#: The platforms whose CLI replaces an instance (the fault's and the drill's).
PLATFORMS = ("railway", "kubernetes")
SERVICE = "api"
#: How often the end-to-end check is run from before the fault to the end of the drill.
WATCH_INTERVAL_S = 0.25
#: How long the restore (and the guard) waits for the API's /health before it reports that
#: the platform did not bring it back.
HEALTH_WAIT_S = 60.0


def api_back(context: DrillContext, params: Params) -> tuple[bool, str, str]:
    """Nothing to revert: ``/health`` polled until it answers (at most ``health_wait_s``),
    with the platform's status of the service beside it."""
    service = str(params.get("service", SERVICE))
    wait_s = float(params.get("health_wait_s", HEALTH_WAIT_S))
    health = wait_until(lambda: api_probe.health(context.target, context.timeouts),
                        timeout=wait_s, interval=1.0, accept=lambda h: h.ok,
                        describe=lambda h: h.problem, errors=()).value
    assert health is not None  # errors=(): every look returned a result or raised
    try:
        status = context.platform.status(service)
        said = (f"; the platform's status: {one_line_of(status.output)}" if status.ok
                else f"; the platform's status could not be read: {status.error}")
    except Exception as exc:
        said = f"; the platform's status could not be read: {one_line(exc)}"
    if health.ok:
        return True, (f"nothing to revert: the platform replaces the {service} instance by"
                      f" itself, and the {service} answers /health{said}"), ""
    return False, "", (f"the platform did not bring the {service} back within {wait_s:g} s:"
                       f" /health {health.problem}{said}")


def one_line_of(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "-")


@fault("platform-instance-replaced", "one API instance killed and replaced by the target's"
       " own platform (Kubernetes: a pod of its Deployment deleted; Railway: its latest"
       " deployment redeployed)", platforms=PLATFORMS)
class InstanceReplaced:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        service = str(params.get("service", SERVICE))
        try:
            return context.platform.replace_instance(service)
        except Exception as exc:  # a missing CLI, a refusal: not injected, said in one line
            return broken(f"replace an instance of {service}", exc, context.redactor())

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        return record(f"verify the {params.get('service', SERVICE)} is back (nothing to"
                      " revert)", library_call("runbook.probes.api.health", "API_URL"),
                      lambda: api_back(context, params), context.redactor())


class Watch:
    """``check`` run every ``interval_s`` on a thread of its own, every result kept in order
    (see the module doc)."""

    def __init__(self, check: Callable[[], ProbeResult], interval_s: float) -> None:
        self.check = check
        self.interval_s = interval_s
        self._results: list[ProbeResult] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="platform-crash-watch",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            result = self.check()
            with self._changed:
                self._results.append(result)
                self._changed.notify_all()
            self._stop.wait(self.interval_s)

    @property
    def results(self) -> list[ProbeResult]:
        with self._changed:
            return list(self._results)

    def at(self, index: int, timeout: float) -> ProbeResult | None:
        """The ``index``-th result, waiting for it at most ``timeout`` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._results) > index or self._stop.is_set(),
                                   timeout)
            return self._results[index] if len(self._results) > index else None


class PlatformApiCrash(RealTargetDrill):
    name = "platform-api-crash"
    section = f"{SECTION} > Recovery Time Objectives"
    scenario = "API crash"
    fault = "platform-instance-replaced"
    description = ("one API instance killed and replaced by the target's own platform;"
                   " measured from the platform's command to the first of N consecutive"
                   " green end-to-end checks")
    needs = ("API_URL",)
    params = fixed(service=SERVICE, health_wait_s=HEALTH_WAIT_S)
    notes = (
        "acted on the target only through its platform's CLI: one API instance replaced"
        " (Kubernetes: a pod of the Deployment deleted, the rollout awaited; Railway: the"
        " latest deployment redeployed); the runbook's Service Down steps do not apply, the"
        " recovery is the platform's own",
        f"detection and recovery come from one watch of the end-to-end check (every"
        f" {WATCH_INTERVAL_S:g} s from before the fault to the end of the drill, each check"
        " dated when it ran): detected at the first red check within the limit, recovered at"
        " the first of N consecutive green checks after it; no red check within the limit"
        " fails detection (the replacement was not visible to users)",
    )
    #: The scenario's end-to-end check is the steady state, not the data services'.
    steady_check = Incident.steady_check

    @classmethod
    def refusal(cls, context: DrillContext) -> str | None:
        target = context.target
        if target.environment is Environment.PRODUCTION:
            return (f"refused: the {cls.name} drill kills an API instance; it never runs"
                    f" against production ({target.describe()})")
        if target.platform is Platform.SANDBOX or context.platform.name == "sandbox":
            return (f"refused: the {cls.name} drill replaces an API instance through Railway's"
                    f" or Kubernetes' CLI; {target.describe()} is the sandbox, whose API crash"
                    " is the api-crash drill (SIGKILL to the API's process); nothing was done")
        missing = [f"{v} (the API the end-to-end check reaches)" for v in target.has(*cls.needs)]
        if target.platform is None or context.platform.name not in PLATFORMS:
            missing.append("PLATFORM=railway or PLATFORM=kubernetes (the platform that"
                           " replaces the instance)")
        if missing:
            return (f"refused: the {cls.name} drill needs {' and '.join(missing)}, which"
                    f" {target.describe()} does not set; nothing was done")
        return None

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        self.watch: Watch | None = None
        self.detected: int | None = None
        self.cursor: int | None = None
        run.drill.evidence.update(target_kind=(
            "a real target: acted on only through its platform's CLI (one API instance"
            " replaced) and the end-to-end check"))

    # -- before the fault --------------------------------------------------------------------

    def footprint(self) -> Mapping[str, Any] | None:
        """The database's checksums where the target sets DATABASE_URL; none otherwise (the
        drill writes nothing there but the end-to-end check's logins)."""
        if self.context.target.has("DATABASE_URL"):
            return None
        return super().footprint()

    def prepare(self) -> tuple[str, Evidence]:
        self.watch = Watch(lambda: self._checked(), WATCH_INTERVAL_S)
        self.watch.start()
        platform = self.context.platform.name
        return (f"the end-to-end check watched every {WATCH_INTERVAL_S:g} s from before the"
                f" fault; {platform} will replace one {SERVICE} instance"), [
            {"service": SERVICE, "platform": platform, "watch_interval_s": WATCH_INTERVAL_S}]

    def _checked(self) -> ProbeResult:
        try:
            return self.run.steady(self.context)
        except Exception as exc:  # a check that raises is a red check, never a dead watch
            problem = one_line(exc)
            return probe(self.context, "api", "end to end", "the end-to-end check",
                         lambda: Verdict(False, "the end-to-end check", problem))

    # -- detection and recovery, from the watch --------------------------------------------------

    def _watched(self) -> Watch:
        assert self.watch is not None, "prepare starts the watch"
        return self.watch

    def detect(self) -> ProbeResult:
        """The first red check within the detection limit of the fault, else the newest
        check (green: nothing seen yet)."""
        watch, drill = self._watched(), self.run.drill
        assert drill.fault_at is not None
        until = drill.fault_at + timedelta(seconds=self.run.limits.detect_within_s)
        results = watch.results
        for index, result in enumerate(results):
            finished = result.timing.finished_at
            if not result.ok and drill.fault_at < finished <= until:
                self.detected = index
                return result
        newest = watch.at(len(results) - 1 if results else 0,
                          self.context.timeouts.deadline + 5.0)
        return newest if newest is not None else self._checked()

    def runbook_steps(self) -> list[Activity]:
        drill = self.run.drill
        if drill.detected_at is None:
            drill.notes.append(
                f"not visible to users: no end-to-end check was red within"
                f" {self.run.limits.detect_within_s:g} s of the fault, though the platform's"
                " command ran (see the inject phase); another instance served meanwhile, or"
                " the replacement had not happened yet. Detection fails: the drill signs off"
                " no recovery from an outage it did not see")
        book = StepLog(self.context)
        book.status(f"the platform's own recovery: its status of the {SERVICE}", SERVICE,
                    runbook_says="")
        return book.activities

    def recovered_check(self) -> ProbeResult:
        """The watch's checks after the detected one (after the fault when none was), in
        the order they ran, with their own times: the engine counts N consecutive greens
        among them as it does among live checks."""
        watch, drill = self._watched(), self.run.drill
        if self.cursor is None:
            if self.detected is not None:
                self.cursor = self.detected + 1
            else:
                fault_at = drill.fault_at
                results = watch.results
                self.cursor = next((i for i, r in enumerate(results)
                                    if fault_at is None or r.timing.started_at >= fault_at),
                                   len(results))
        result = watch.at(self.cursor, self.context.timeouts.deadline + 5.0)
        if result is None:  # the watch stopped: a check of its own
            return self._checked()
        self.cursor += 1
        return result

    # -- after ---------------------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        if self.watch is None:
            return []
        self.watch.stop()
        drill = self.run.drill
        fault_at = drill.fault_at
        after = [r for r in self.watch.results
                 if fault_at is not None and r.timing.finished_at > fault_at]
        red = [r for r in after if not r.ok]
        late = [r for r in red if drill.recovered_at is not None
                and r.timing.started_at > drill.recovered_at]
        seen: dict[str, Any] = {
            "checks_after_fault": len(after), "red_after_fault": len(red),
            "first_red_at": red[0].timing.finished_at.isoformat() if red else None,
            "last_red_at": red[-1].timing.finished_at.isoformat() if red else None,
            "problems": list(dict.fromkeys(r.problem for r in red))[:3],
            "red_after_recovery": len(late), "watch_interval_s": WATCH_INTERVAL_S}
        drill.evidence["user_visible"] = seen
        self.run.facts["end_to_end_watch"] = seen
        if late:  # the recovery measured was not one: the verdict must not pass on it
            return [f"{len(late)} end-to-end checks were red AFTER the recovery was measured"
                    f" (first: {late[0].problem}): the API was not back for good"]
        return []


__all__ = ["HEALTH_WAIT_S", "PLATFORMS", "InstanceReplaced", "PlatformApiCrash", "Watch",
           "api_back"]
