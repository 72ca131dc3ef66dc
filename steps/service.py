"""Steps about the services' health: the API, the web front end, the Component Status table."""

from __future__ import annotations

from pytest_bdd import parsers, then, when

from runbook.checks import require_at_most, require_ok
from runbook.config import Target
from runbook.probes import api, status, web
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts


@when("the on-call engineer checks the API health", target_fixture="api_health")
def _(target: Target, timeouts: Timeouts) -> ProbeResult:
    return api.health(target, timeouts)


@then("the API reports status ok")
def _(api_health: ProbeResult) -> None:
    require_ok(api_health)


@then(parsers.parse("its timestamp is within {seconds:g} seconds of the on-call engineer's clock"))
def _(api_health: ProbeResult, seconds: float) -> None:
    require_at_most(api_health, "clock_skew_s", seconds, "s")


@when("the on-call engineer opens the web front end", target_fixture="web_page")
def _(target: Target, timeouts: Timeouts) -> ProbeResult:
    return web.front_page(target, timeouts)


@then("the front end answers HTTP 200 with the application's page")
def _(web_page: ProbeResult) -> None:
    require_ok(web_page)


@when(parsers.parse("the on-call engineer checks the {component} as the Component Status table"
                    " says"), target_fixture="component_status")
def _(target: Target, timeouts: Timeouts, component: str) -> ProbeResult:
    return status.check(component, target, timeouts)


@then(parsers.parse("the {component} gives the expected response"))
def _(component_status: ProbeResult) -> None:
    require_ok(component_status)
