"""The ``component-down`` fault: a sandbox component stopped and kept down until restored
(``start_component`` brings one back, for this fault's revert and the drills' steps).

Each revert is idempotent and brings the component back the way the platform would, so the
guard can run it after a crash even if the drill already did.
"""

from __future__ import annotations

from runbook.drills.faults import DrillContext, Params, fault
from runbook.platforms.base import library_call, record
from runbook.results import Activity
from runbook.sandbox import Sandbox


def _stop(context: DrillContext, component: str) -> Activity:
    sandbox = Sandbox(context.home)
    return record(f"stop {component}", library_call("runbook.sandbox.Sandbox.stop", component),
                  lambda: (sandbox.stop(component) is not None, f"{component} held down", ""),
                  context.redactor())


def start_component(context: DrillContext, component: str, name: str | None = None, *,
                    runbook_says: str = "") -> Activity:
    """Start ``component`` when it is not running, and wait until it runs (60 s at most)."""
    sandbox = Sandbox(context.home)

    def body() -> tuple[bool, str, str]:
        state = sandbox.status().components[component]
        if state.running:
            return True, f"{component} already running (pid {state.pid})", ""
        started = sandbox.start(component, wait=True, timeout=60)
        return started.running, f"{component} running (pid {started.pid})", ""

    return record(name or f"start {component}",
                  library_call("runbook.sandbox.Sandbox.start", component), body,
                  context.redactor(), runbook_says=runbook_says)


@fault("component-down", "a component stopped and held down (no automatic restart)")
class ComponentDown:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        return _stop(context, str(params["component"]))

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        return start_component(context, str(params["component"]))

    @staticmethod
    def present(context: DrillContext, params: Params) -> str | None:
        component = str(params["component"])
        state = Sandbox(context.home).status().components[component]
        return None if state.running else f"{component} is {state.state}, not running"
