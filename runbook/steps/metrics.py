"""Steps about key metrics and alert thresholds."""

from __future__ import annotations

from pytest_bdd import parsers, then, when

from runbook.checks import require_at_most, require_figures
from runbook.config import Target
from runbook.harness.evidence import Evidence
from runbook.probes import metrics, resources, traffic
from runbook.results import ProbeResult
from runbook.steps.support import skip_if_unavailable
from runbook.timeouts import Timeouts


@when(parsers.parse("the on-call engineer measures the API over {requests:d} requests"),
      target_fixture="api_measurement")
def _(target: Target, timeouts: Timeouts, requests: int, evidence: Evidence) -> ProbeResult:
    return evidence(metrics.measure(target, timeouts, requests=requests))


@then("the request rate, error rate and response time percentiles are recorded")
def _(api_measurement: ProbeResult) -> None:
    require_figures(api_measurement, metrics.MEASURED_FIGURES)


@when("the on-call engineer reads the API's metrics endpoint", target_fixture="api_metrics")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return skip_if_unavailable(evidence(metrics.scrape(target, timeouts)))


@then("the request count, error rate and response time percentiles are recorded")
def _(api_metrics: ProbeResult) -> None:
    require_figures(api_metrics, metrics.SCRAPED_FIGURES)


@when(parsers.parse("the on-call engineer reads the API's traffic of the last {minutes:g}"
                    " minutes"), target_fixture="api_traffic")
def _(target: Target, timeouts: Timeouts, minutes: float, evidence: Evidence) -> ProbeResult:
    return skip_if_unavailable(evidence(traffic.traffic(target, timeouts, window_s=minutes * 60)))


@then(parsers.parse("at most {limit:g} percent of the users' requests failed"))
def _(api_traffic: ProbeResult, limit: float) -> None:
    figure = "error_rate_percent"
    require_at_most(skip_if_unavailable(traffic.for_figure(api_traffic, figure)), figure,
                    limit, "%")


@then(parsers.parse("the users' p99 response time is at most {seconds:g} seconds"))
def _(api_traffic: ProbeResult, seconds: float) -> None:
    require_at_most(skip_if_unavailable(traffic.for_figure(api_traffic, "p99_ms")), "p99_ms",
                    seconds * 1000, "ms")


@when("the on-call engineer reads the platform's resource usage", target_fixture="usage")
def _(target: Target, timeouts: Timeouts, evidence: Evidence) -> ProbeResult:
    return evidence(resources.usage(target, timeouts))


@then(parsers.parse("{resource} usage is at most {limit:g} percent"))
def _(usage: ProbeResult, resource: str, limit: float) -> None:
    require_at_most(usage, f"{resource}_used_percent", limit, "%")
