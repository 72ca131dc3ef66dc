"""Steps about key metrics and alert thresholds."""

from __future__ import annotations

from pytest_bdd import parsers, then, when

from runbook.checks import require_at_most, require_figures
from runbook.config import Target
from runbook.probes import metrics, resources
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts
from steps.support import skip_if_unavailable


@when(parsers.parse("the on-call engineer measures the API over {requests:d} requests"),
      target_fixture="api_measurement")
def _(target: Target, timeouts: Timeouts, requests: int) -> ProbeResult:
    return metrics.measure(target, timeouts, requests=requests)


@then("the request rate, error rate and response time percentiles are recorded")
def _(api_measurement: ProbeResult) -> None:
    require_figures(api_measurement, metrics.MEASURED_FIGURES)


@when("the on-call engineer reads the API's metrics endpoint", target_fixture="api_metrics")
def _(target: Target, timeouts: Timeouts) -> ProbeResult:
    return skip_if_unavailable(metrics.scrape(target, timeouts))


@then("the request count, error rate and response time percentiles are recorded")
def _(api_metrics: ProbeResult) -> None:
    require_figures(api_metrics, metrics.SCRAPED_FIGURES)


@then(parsers.parse("the error rate is at most {limit:g} percent"))
def _(api_measurement: ProbeResult, limit: float) -> None:
    require_at_most(api_measurement, "error_rate_percent", limit, "%")


@then(parsers.parse("the p99 response time is at most {seconds:g} seconds"))
def _(api_measurement: ProbeResult, seconds: float) -> None:
    require_at_most(api_measurement, "p99_ms", seconds * 1000, "ms")


@when("the on-call engineer reads the platform's resource usage", target_fixture="usage")
def _(target: Target, timeouts: Timeouts) -> ProbeResult:
    return resources.usage(target, timeouts)


@then(parsers.parse("{resource} usage is at most {limit:g} percent"))
def _(usage: ProbeResult, resource: str, limit: float) -> None:
    require_at_most(usage, f"{resource}_used_percent", limit, "%")
