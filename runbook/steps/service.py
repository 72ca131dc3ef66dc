"""Steps about the services' health: the API, the web front end, the Component Status table."""

from __future__ import annotations

from pytest_bdd import parsers, then, when

from runbook.actions import journeys
from runbook.actions.users import CanaryPool
from runbook.checks import require_at_most, require_ok
from runbook.config import Target
from runbook.harness.evidence import Evidence
from runbook.harness.scenarios import needs
from runbook.probes import api, resources, status, web
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts


@when("the on-call engineer checks the API health", target_fixture="api_health")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(api.health(target, timeouts))


@then("the API reports status ok")
def _(api_health: ProbeResult) -> None:
    require_ok(api_health)


@then(parsers.parse("its timestamp is within {seconds:g} seconds of the on-call engineer's clock"))
def _(api_health: ProbeResult, seconds: float) -> None:
    require_at_most(api_health, "clock_skew_s", seconds, "s")


@when("the on-call engineer opens the web front end", target_fixture="web_page")
@needs("web")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(web.front_page(target, timeouts))


@then("the front end answers HTTP 200 with the application's page")
def _(web_page: ProbeResult) -> None:
    require_ok(web_page)


@when(parsers.parse("the on-call engineer checks the {component} as the Component Status table"
                    " says"), target_fixture="component_status")
@needs(by=("component", {"Database": ("database",), "Redis": ("redis",), "Worker": ("redis",),
                        "S3": ("s3",)}))
def _(target: Target, timeouts: Timeouts, component: str, evidence: Evidence) -> ProbeResult:
    return evidence(status.check(component, target, timeouts))


@then(parsers.parse("the {component} gives the expected response"))
def _(component_status: ProbeResult) -> None:
    require_ok(component_status)


@when("the on-call engineer logs in as a canary user and reads it back",
      target_fixture="login_round_trip")
@needs("database", meanwhile=journeys.user_login_answer)
def _(target: Target, timeouts: Timeouts, canary_pool: CanaryPool,
      evidence: Evidence) -> ProbeResult:
    return evidence(journeys.login(target, timeouts, canary_pool))


@then("the login and the read-back succeed")
def _(login_round_trip: ProbeResult) -> None:
    require_ok(login_round_trip)


@when(parsers.re(r"the on-call engineer measures the API process's CPU over"
                 r" (?P<seconds>[\d.]+) seconds?"), converters={"seconds": float},
      target_fixture="api_cpu")
def _(target: Target, timeouts: Timeouts, seconds: float, evidence: Evidence) -> ProbeResult:
    return evidence(resources.api_cpu(target, timeouts, window_s=seconds))


@then(parsers.parse("its CPU is at most {limit:g} percent"))
def _(api_cpu: ProbeResult, limit: float) -> None:
    require_at_most(api_cpu, "cpu_percent", limit, "%")
