"""Faults the sandbox can suffer: components stopped and kept down until restored.

Each revert is idempotent and brings the component back the way the platform would, so the
guard can run it after a crash even if the drill already did.
"""

from __future__ import annotations

from runbook.drills.faults import DrillContext, Params, fault
from runbook.platforms.base import record
from runbook.results import Activity
from runbook.sandbox import Sandbox


def _stop(context: DrillContext, component: str) -> Activity:
    sandbox = Sandbox(context.home)
    return record(f"stop {component}", ("sandbox", "stop", component),
                  lambda: (sandbox.stop(component) is not None, "", ""), context.redactor())


def _start(context: DrillContext, component: str) -> Activity:
    sandbox = Sandbox(context.home)

    def body() -> tuple[bool, str, str]:
        state = sandbox.status().components[component]
        if state.running:
            return True, f"{component} already running (pid {state.pid})", ""
        started = sandbox.start(component, wait=True, timeout=60)
        return started.running, f"{component} running (pid {started.pid})", ""

    return record(f"start {component}", ("sandbox", "start", component), body,
                  context.redactor())


@fault("component-down", "a component stopped and held down (no automatic restart)")
class ComponentDown:
    @staticmethod
    def inject(context: DrillContext, params: Params) -> Activity:
        return _stop(context, str(params["component"]))

    @staticmethod
    def revert(context: DrillContext, params: Params) -> Activity:
        return _start(context, str(params["component"]))
