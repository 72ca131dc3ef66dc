"""Steps about the services' health: the API, the web front end."""

from __future__ import annotations

from pytest_bdd import given, parsers, then, when

from runbook.checks import require_at_most, require_ok
from runbook.config import Target
from runbook.probes import api, web
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts
from steps.support import require_variables


@given("the target has an API")
def _(target: Target) -> None:
    require_variables(target, "API_URL")


@when("the on-call engineer checks the API health", target_fixture="api_health")
def _(target: Target, timeouts: Timeouts) -> ProbeResult:
    return api.health(target, timeouts)


@then("the API reports status ok")
def _(api_health: ProbeResult) -> None:
    require_ok(api_health)


@then(parsers.parse("its timestamp is within {seconds:g} seconds of the on-call engineer's clock"))
def _(api_health: ProbeResult, seconds: float) -> None:
    require_at_most(api_health, "clock_skew_s", seconds, "s")


@given("the target has a web front end")
def _(target: Target) -> None:
    require_variables(target, "WEB_URL")


@when("the on-call engineer opens the web front end", target_fixture="web_page")
def _(target: Target, timeouts: Timeouts) -> ProbeResult:
    return web.front_page(target, timeouts)


@then("the front end answers HTTP 200 with the application's page")
def _(web_page: ProbeResult) -> None:
    require_ok(web_page)
