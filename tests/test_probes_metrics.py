"""Key metrics: the Prometheus parser and quantile arithmetic on fixed text, then ``measure``
and ``scrape`` against the real sandbox API (and a target without ``/metrics``)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from runbook.config import Target
from runbook.probes import metrics
from runbook.probes.metrics import (
    ExpositionError,
    Sample,
    derive,
    histogram_buckets,
    histogram_quantile,
    metric_sum,
    parse_exposition,
    percentile,
)
from runbook.results import ProbeResult
from runbook.sandbox.services.metrics import Metrics
from runbook.timeouts import Timeouts

EXPOSITION = r"""
# HELP http_requests_total Total HTTP requests by method, route and status.
# TYPE http_requests_total counter
http_requests_total{method="GET",route="/health",status="200"} 90
http_requests_total{method="POST",route="/api/releases",status="500"} 6
http_requests_total{method="GET",route="/api/videos",status="404"} 4
http_requests_total{method="GET",route="/a \"quoted\" \\ path\nline",status="200"} 0 1700000000000
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route="/health",le="0.1"} 50
http_request_duration_seconds_bucket{route="/health",le="0.5"} 80
http_request_duration_seconds_bucket{route="/health",le="1"} 90
http_request_duration_seconds_bucket{route="/health",le="+Inf"} 90
http_request_duration_seconds_sum{route="/health"} 12.5
http_request_duration_seconds_count{route="/health"} 90
http_request_duration_seconds_bucket{route="/api/releases",le="0.1"} 0
http_request_duration_seconds_bucket{route="/api/releases",le="0.5"} 0
http_request_duration_seconds_bucket{route="/api/releases",le="1"} 4
http_request_duration_seconds_bucket{route="/api/releases",le="+Inf"} 10
process_resident_memory_bytes 1.048576e+08
process_cpu_seconds_total 30
process_start_time_seconds 1000
"""


# -- parser ------------------------------------------------------------------------------


def test_the_parser_reads_names_labels_values_and_timestamps() -> None:
    samples = parse_exposition(EXPOSITION)
    assert len(samples) == 17
    first = samples[0]
    assert first == Sample("http_requests_total",
                           {"method": "GET", "route": "/health", "status": "200"}, 90.0)
    assert samples[-3].name == "process_resident_memory_bytes"
    assert samples[-3].value == 104857600.0


def test_escaped_quotes_backslashes_and_newlines_in_label_values() -> None:
    escaped = parse_exposition(EXPOSITION)[3]
    assert escaped.labels["route"] == '/a "quoted" \\ path\nline'
    assert escaped.labels["status"] == "200"
    assert escaped.timestamp_ms == 1700000000000


def test_special_values_trailing_commas_spaces_and_comments() -> None:
    text = (
        'a_metric{x="1",} NaN\n'
        "b_metric +Inf\n"
        "c_metric -Inf\n"
        'd_metric{ x = "a,b}" , y="" } 2.5e-3\n'
        "# EOF\n"
    )
    a, b, c, d = parse_exposition(text)
    assert a.labels == {"x": "1"} and math.isnan(a.value)
    assert b.value == math.inf and c.value == -math.inf
    assert d.labels == {"x": "a,b}", "y": ""} and d.value == pytest.approx(0.0025)
    assert d.timestamp_ms is None


def test_a_counter_declared_without_its_suffix_is_read_with_it() -> None:
    # prometheus_client's parser names a counter's samples with "_total", as Prometheus
    # does since OpenMetrics: what derive() looks for is found either way.
    samples = parse_exposition("# TYPE http_requests counter\n"
                               'http_requests{status="500"} 2\n')
    assert samples == [Sample("http_requests_total", {"status": "500"}, 2.0)]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('m{a="1" 2', 1, "could not convert string to float"),
        ("m{a=1} 2", 1, "Invalid labels: a=1"),
        ("# HELP m ok\n\nm twelve", 3, "could not convert string to float: 'twelve'"),
        ("m", 1, "invalid metric name"),
        ('ok 1\n{a="1"} 2', 2, "not a sample, a comment or blank"),
        ("<html><body>" + "x" * 200, 1, "invalid metric name"),
    ],
)
def test_malformed_lines_are_named_in_one_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(ExpositionError) as raised:
        parse_exposition(text)
    message = str(raised.value)
    assert message.startswith(f"line {line}: ") and reason in message, message
    assert "\n" not in message and len(message) < 250, message
    assert repr(text.splitlines()[line - 1][:20])[:-1] in message  # the line, quoted


def test_the_sandbox_registry_renders_what_the_parser_reads() -> None:
    registry = Metrics()
    registry.observe_request("GET", '/weird "route"\\x', 200, 0.003)
    registry.observe_request("GET", "/health", 503, 0.2)
    samples = parse_exposition(registry.render())
    routes = {s.labels["route"] for s in samples if s.name == "http_requests_total"}
    assert routes == {'/weird "route"\\x', "/health"}
    assert metric_sum(samples, "http_requests_total", status="503") == 1.0


# -- quantiles ---------------------------------------------------------------------------


def test_histogram_quantile_interpolates_linearly_inside_the_bucket() -> None:
    buckets = [(0.1, 50.0), (0.5, 80.0), (1.0, 90.0), (math.inf, 90.0)]
    # rank 45 of 90 falls in the first bucket (0..0.1): 0.1 * 45/50
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.09)
    # rank 85.5: bucket (0.5, 1], 5.5 of its 10 observations
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.5 + 0.5 * 5.5 / 10)
    assert histogram_quantile(1.0, buckets) == pytest.approx(1.0)


def test_histogram_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    buckets = [(0.1, 0.0), (0.5, 0.0), (1.0, 4.0), (math.inf, 10.0)]
    assert histogram_quantile(0.99, buckets) == 1.0
    assert histogram_quantile(0.2, buckets) == pytest.approx(0.5 + 0.5 * 2 / 4)


def test_histogram_quantile_edge_cases_follow_prometheus() -> None:
    assert histogram_quantile(0.5, [(0.1, 1.0), (1.0, 2.0)]) is None  # no +Inf bucket
    assert histogram_quantile(0.5, [(math.inf, 3.0)]) is None  # fewer than two buckets
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None  # no observations
    assert histogram_quantile(-0.1, [(0.1, 1.0), (math.inf, 1.0)]) == -math.inf
    assert histogram_quantile(1.1, [(0.1, 1.0), (math.inf, 1.0)]) == math.inf
    assert histogram_quantile(math.nan, [(0.1, 1.0), (math.inf, 1.0)]) is None
    # out-of-order and non-monotonic input is sorted and made monotonic, as Prometheus does
    shuffled = [(math.inf, 10.0), (1.0, 10.0), (0.5, 3.0), (0.25, 4.0)]
    assert histogram_quantile(0.5, shuffled) == pytest.approx(0.5 + 0.5 * 1 / 6)


def test_buckets_are_summed_over_routes_by_le() -> None:
    buckets = histogram_buckets(parse_exposition(EXPOSITION), "http_request_duration_seconds")
    assert buckets == [(0.1, 50.0), (0.5, 80.0), (1.0, 94.0), (math.inf, 100.0)]


def test_raw_percentiles_interpolate_between_closest_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == pytest.approx(50.5)
    assert percentile(values, 0.99) == pytest.approx(99.01)
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.5) is None


# -- derived figures ---------------------------------------------------------------------


def test_derive_gives_the_runbooks_key_figures() -> None:
    figures = derive(parse_exposition(EXPOSITION), now=1300.0)
    assert figures["requests_total"] == 100
    assert figures["server_errors"] == 6 and figures["client_errors"] == 4
    assert figures["error_rate_percent"] == pytest.approx(6.0)
    # rank 50 of 100: the first bucket is full at 50 -> its upper bound
    assert figures["p50_ms"] == pytest.approx(100.0)
    assert figures["p95_ms"] == pytest.approx(1000.0)
    assert figures["p99_ms"] == pytest.approx(1000.0)
    assert figures["memory_rss_mib"] == pytest.approx(100.0)
    assert figures["uptime_s"] == pytest.approx(300.0)
    assert figures["cpu_percent_since_start"] == pytest.approx(10.0)


def test_derive_over_a_window_uses_only_what_happened_in_it() -> None:
    before = parse_exposition(EXPOSITION)
    after = parse_exposition(
        EXPOSITION.replace('status="200"} 90', 'status="200"} 110')
        .replace('status="500"} 6', 'status="500"} 26')
        .replace('le="0.1"} 50', 'le="0.1"} 90')
        .replace('le="0.5"} 80', 'le="0.5"} 120')
        .replace('route="/health",le="1"} 90', 'route="/health",le="1"} 130')
        .replace('route="/health",le="+Inf"} 90', 'route="/health",le="+Inf"} 130')
        .replace("process_cpu_seconds_total 30", "process_cpu_seconds_total 32")
    )
    figures = derive(after, before=before, window_s=10.0)
    assert figures["requests_total"] == 40
    assert figures["requests_per_s"] == pytest.approx(4.0)
    assert figures["error_rate_percent"] == pytest.approx(50.0)
    assert figures["p50_ms"] == pytest.approx(50.0)  # rank 20 of 40 within (0, 0.1]
    assert figures["cpu_percent"] == pytest.approx(20.0)


def test_derive_of_an_idle_target_has_no_latency_figures() -> None:
    figures = derive([Sample("process_cpu_seconds_total", {}, 1.0)])
    assert figures["requests_total"] == 0 and figures["error_rate_percent"] == 0.0
    assert figures["p99_ms"] is None


# -- probes against the sandbox ----------------------------------------------------------


@pytest.fixture(scope="module")
def target(sandbox: Any) -> Target:
    return Target.from_variables("sandbox", sandbox.env, source="sandbox",
                                 environment="sandbox")


def _no_secrets(result: ProbeResult, target: Target) -> None:
    text = json.dumps(result.evidence(), default=str)
    for secret in target.secret_values():
        assert secret not in text


def test_measure_records_rate_error_rate_and_percentiles(target: Target) -> None:
    result = metrics.measure(target, Timeouts(), requests=30)
    assert result.ok, result.problem
    for figure in metrics.MEASURED_FIGURES:
        assert isinstance(result.observed[figure], int | float), figure
    assert result.observed["sent"] == result.observed["answered"] == 30
    assert result.observed["error_rate_percent"] == 0.0
    assert 0 < result.observed["p50_ms"] <= result.observed["p95_ms"] <= result.observed["p99_ms"]
    assert result.observed["requests_per_s"] > 1
    _no_secrets(result, target)


def test_scrape_derives_the_figures_from_the_apis_metrics(target: Target) -> None:
    metrics.measure(target, Timeouts(), requests=5)  # traffic to measure
    result = metrics.scrape(target, Timeouts())
    assert result.ok, result.problem
    for figure in metrics.SCRAPED_FIGURES:
        assert isinstance(result.observed[figure], int | float), figure
    assert result.observed["requests_total"] >= 5
    assert result.observed["memory_rss_bytes"] > 0
    assert "missing" not in result.observed
    _no_secrets(result, target)


def test_scrape_over_a_window_gives_rates(target: Target) -> None:
    result = metrics.scrape(target, Timeouts(), window_s=0.5)
    assert result.ok, result.problem
    assert result.observed["window_s"] >= 0.5
    assert result.observed["requests_total"] >= 1  # our own first scrape
    assert result.observed["requests_per_s"] > 0
    assert result.elapsed_s >= 0.5


def test_a_target_without_metrics_is_unavailable_not_broken(sandbox: Any) -> None:
    # The web front end answers 404 for every path but "/": an API without /metrics.
    no_metrics = Target.from_variables(
        "no-metrics", {**sandbox.env, "API_URL": sandbox.env["WEB_URL"]}, source="test",
        environment="sandbox")
    result = metrics.scrape(no_metrics, Timeouts())
    assert not result.ok
    assert result.observed["unavailable"] is True
    assert result.observed["status_code"] == 404
    assert "no /metrics endpoint (HTTP 404)" in result.problem
