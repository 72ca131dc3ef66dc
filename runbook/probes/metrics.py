"""The runbook's key metrics: request rate, error rate (%), response time p50/p95/p99.

Two ways to get them: ``measure`` times N requests to ``/health`` from outside, and
``scrape`` reads the API's own ``/metrics`` (Prometheus text format) and derives the same
figures from ``http_requests_total`` and the ``http_request_duration_seconds`` histogram.
The parsing (``prometheus_client``'s parser) and the quantile arithmetic are pure functions,
tested on fixed text.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from prometheus_client.parser import text_fd_to_metric_families

from runbook.clients import http_client
from runbook.config import Target
from runbook.probes import Verdict, describe_error, run_probe
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts

#: Figures ``measure`` records (all numbers when at least one request was answered).
MEASURED_FIGURES: tuple[str, ...] = (
    "requests_per_s", "error_rate_percent", "p50_ms", "p95_ms", "p99_ms",
)
#: Figures ``scrape`` records when the target has served requests.
SCRAPED_FIGURES: tuple[str, ...] = (
    "requests_total", "error_rate_percent", "p50_ms", "p95_ms", "p99_ms",
)
REQUESTS_METRIC = "http_requests_total"
LATENCY_METRIC = "http_request_duration_seconds"
DB_LATENCY_METRIC = "db_query_duration_seconds"
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


# -- Prometheus text format, read by prometheus_client ----------------------------------


class ExpositionError(ValueError):
    """A Prometheus text exposition that ``prometheus_client``'s parser refuses (says which
    line, in one line)."""


@dataclass(frozen=True)
class Sample:
    """One sample line: metric name, labels, value (and the optional timestamp in ms)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0
    timestamp_ms: int | None = None


def parse_value(text: str) -> float:
    """A sample value: a float, ``NaN``, ``+Inf`` or ``-Inf``."""
    return float(text)


class _Lines:
    """The text's lines for the library's parser, counting those read: the parser reads one
    line, then handles it, so the last one read is the one it refused."""

    def __init__(self, text: str) -> None:
        self._lines = iter(text.splitlines())
        self.read = 0
        self.last = ""

    def __iter__(self) -> Iterator[str]:
        for line in self._lines:
            self.read += 1
            self.last = line
            yield line


#: How much of a refused line a message quotes.
_QUOTED = 80


def parse_exposition(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition (format 0.0.4), in order, read by
    ``prometheus_client.parser``. Comments (``# HELP``, ``# TYPE``, ``# EOF``) and blank
    lines are skipped. A counter declared without its ``_total`` suffix has its samples
    named with it, as the library reads them. Raises ``ExpositionError`` naming the line."""
    lines = _Lines(text)
    samples: list[Sample] = []
    try:
        for family in text_fd_to_metric_families(lines):  # type: ignore[arg-type]
            for sample in family.samples:
                stamp = None if sample.timestamp is None else round(float(sample.timestamp)
                                                                     * 1000)
                samples.append(Sample(sample.name, dict(sample.labels), float(sample.value),
                                      stamp))
    except (ValueError, IndexError) as exc:
        quoted = lines.last.strip()
        if len(quoted) > _QUOTED:
            quoted = quoted[:_QUOTED] + "..."
        reason = " ".join(str(exc).split())[:_QUOTED] or "not a sample, a comment or blank"
        raise ExpositionError(f"line {lines.read}: {reason} ({quoted!r})") from None
    return samples


def metric_sum(samples: Iterable[Sample], name: str, **match: str) -> float | None:
    """The sum of ``name``'s samples whose labels include ``match``; ``None`` when none."""
    values = [s.value for s in samples if s.name == name
              and all(s.labels.get(k) == v for k, v in match.items())]
    return math.fsum(values) if values else None


def histogram_buckets(samples: Iterable[Sample], name: str) -> list[tuple[float, float]]:
    """``name``'s cumulative buckets summed over every other label (``sum by (le)``), as
    ``(upper bound, count)`` sorted by bound."""
    totals: dict[float, float] = {}
    for sample in samples:
        if sample.name != f"{name}_bucket" or "le" not in sample.labels:
            continue
        bound = parse_value(sample.labels["le"])
        totals[bound] = totals.get(bound, 0.0) + sample.value
    return sorted(totals.items())


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q``-quantile of a histogram from its cumulative ``(upper bound, count)`` buckets,
    interpolating linearly inside the bucket as Prometheus' ``histogram_quantile`` does
    (the highest finite bound when the rank falls in the ``+Inf`` bucket). ``None`` where
    Prometheus gives NaN: no ``+Inf`` bucket, fewer than two buckets, no observations."""
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    merged: dict[float, float] = {}
    for bound, count in buckets:
        merged[bound] = merged.get(bound, 0.0) + count
    ordered = sorted(merged.items())
    if len(ordered) < 2 or ordered[-1][0] != math.inf:
        return None
    bounds = [b for b, _ in ordered]
    counts: list[float] = []
    for _, count in ordered:  # counts must not decrease (Prometheus' ensureMonotonic)
        counts.append(max(count, counts[-1]) if counts else count)
    observations = counts[-1]
    if observations == 0 or math.isnan(observations):
        return None
    rank = q * observations
    index = next(i for i, c in enumerate(counts) if c >= rank)
    if index == len(counts) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[index], counts[index]
    if index > 0:
        start = bounds[index - 1]
        count -= counts[index - 1]
        rank -= counts[index - 1]
    if count == 0:
        return start
    return start + (end - start) * (rank / count)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) of raw values, interpolating between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * min(max(q, 0.0), 1.0)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def _delta_buckets(after: list[tuple[float, float]], before: list[tuple[float, float]]
                   ) -> list[tuple[float, float]]:
    earlier = dict(before)
    if any(count < earlier.get(bound, 0.0) for bound, count in after):
        return after  # a counter reset: the process restarted in between
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]


def _ms(seconds: float | None) -> float | None:
    if seconds is None or math.isinf(seconds):
        return None
    return round(seconds * 1000, 2)


def derive(samples: Sequence[Sample], *, before: Sequence[Sample] | None = None,
           window_s: float | None = None, now: float | None = None) -> dict[str, Any]:
    """The runbook's key figures from a scrape: total and 5xx requests, error rate %,
    p50/p95/p99 latency (ms), database query p95/p99, process memory and CPU.

    With ``before`` (an earlier scrape) and ``window_s``, counts and quantiles cover only the
    window between the two, and ``requests_per_s`` and ``cpu_percent`` are rates over it.
    ``now`` (epoch seconds) gives the process's uptime and average CPU % since start."""
    requests = [s for s in samples if s.name == REQUESTS_METRIC]
    total = math.fsum(s.value for s in requests)
    errors = math.fsum(s.value for s in requests if s.labels.get("status", "").startswith("5"))
    client_errors = math.fsum(s.value for s in requests
                              if s.labels.get("status", "").startswith("4"))
    latency = histogram_buckets(samples, LATENCY_METRIC)
    db_latency = histogram_buckets(samples, DB_LATENCY_METRIC)
    figures: dict[str, Any] = {}
    if before is not None:
        earlier = [s for s in before if s.name == REQUESTS_METRIC]
        before_total = math.fsum(s.value for s in earlier)
        before_errors = math.fsum(s.value for s in earlier
                                  if s.labels.get("status", "").startswith("5"))
        before_client = math.fsum(s.value for s in earlier
                                  if s.labels.get("status", "").startswith("4"))
        if total >= before_total:
            total, errors = total - before_total, errors - before_errors
            client_errors -= before_client
        latency = _delta_buckets(latency, histogram_buckets(before, LATENCY_METRIC))
        db_latency = _delta_buckets(db_latency, histogram_buckets(before, DB_LATENCY_METRIC))
        if window_s:
            figures["window_s"] = round(window_s, 3)
            figures["requests_per_s"] = round(total / window_s, 3)
    figures["requests_total"] = int(total)
    figures["server_errors"] = int(errors)
    figures["client_errors"] = int(client_errors)
    figures["error_rate_percent"] = round(100.0 * errors / total, 3) if total else 0.0
    for label, q in QUANTILES:
        figures[f"{label}_ms"] = _ms(histogram_quantile(q, latency))
    if db_latency and db_latency[-1][1] > 0:
        for label, q in QUANTILES[1:]:
            figures[f"db_query_{label}_ms"] = _ms(histogram_quantile(q, db_latency))
    memory = metric_sum(samples, "process_resident_memory_bytes")
    if memory is not None:
        figures["memory_rss_bytes"] = int(memory)
        figures["memory_rss_mib"] = round(memory / 2**20, 1)
    cpu = metric_sum(samples, "process_cpu_seconds_total")
    if cpu is not None:
        figures["cpu_seconds_total"] = round(cpu, 3)
        cpu_before = metric_sum(before, "process_cpu_seconds_total") if before else None
        if cpu_before is not None and window_s and cpu >= cpu_before:
            figures["cpu_percent"] = round(100.0 * (cpu - cpu_before) / window_s, 2)
        start = metric_sum(samples, "process_start_time_seconds")
        if start is not None and now is not None and now > start:
            figures["uptime_s"] = round(now - start, 1)
            figures["cpu_percent_since_start"] = round(100.0 * cpu / (now - start), 2)
    return figures


# -- probes ------------------------------------------------------------------------------


def measure(target: Target, timeouts: Timeouts, requests: int = 20) -> ProbeResult:
    """Time ``requests`` sequential ``GET /health`` from outside. Records error rate %
    (network failures and HTTP >= 400), p50/p95/p99 latency (ms) of the answered ones, and
    requests/s (sequential, one connection: a floor, not capacity). Stops early, recorded,
    rather than overrun the deadline; fails only when no request was answered."""
    expected = f"{requests} GET /health requests measured"
    api_url = target.require("API_URL")

    def body() -> Verdict:
        started = time.monotonic()
        stop_at = started + timeouts.deadline - 0.5
        worst = timeouts.connect + timeouts.read
        latencies: list[float] = []
        statuses: Counter[str] = Counter()
        problems: list[str] = []
        errors = sent = 0
        with http_client(timeouts) as client:
            for _ in range(requests):
                if sent and time.monotonic() + worst > stop_at:
                    break
                sent += 1
                began = time.monotonic()
                try:
                    response = client.get(f"{api_url}/health")
                except httpx.HTTPError as exc:
                    errors += 1
                    statuses["error"] += 1
                    if describe_error(exc) not in problems:
                        problems.append(describe_error(exc))
                    continue
                latencies.append((time.monotonic() - began) * 1000)
                statuses[str(response.status_code)] += 1
                if response.status_code >= 400:
                    errors += 1
        wall = time.monotonic() - started
        observed: dict[str, Any] = {
            "requests": requests,
            "sent": sent,
            "answered": len(latencies),
            "errors": errors,
            "error_rate_percent": round(100.0 * errors / sent, 2) if sent else 100.0,
            "requests_per_s": round(sent / wall, 2) if wall > 0 else None,
            "statuses": dict(statuses),
            "elapsed_s": round(wall, 3),
        }
        for label, q in QUANTILES:
            value = percentile(latencies, q)
            observed[f"{label}_ms"] = round(value, 2) if value is not None else None
        if latencies:
            observed["max_ms"] = round(max(latencies), 2)
        if problems:
            observed["network_errors"] = problems[:5]
        if sent < requests:
            observed["stopped_early"] = True
        if not latencies:
            return Verdict(False, expected, f"no answer to any of {sent} request(s):"
                           f" {'; '.join(problems[:3])}", observed, advice="api")
        return Verdict(True, expected, observed=observed)

    return run_probe("metrics", "measured", target, timeouts, body, expected=expected)


def _get_metrics(url: str, timeouts: Timeouts) -> tuple[httpx.Response, float]:
    with http_client(timeouts, headers={"Accept": "text/plain;version=0.0.4"}) as client:
        started = time.monotonic()
        response = client.get(url)
        return response, (time.monotonic() - started) * 1000


def scrape(target: Target, timeouts: Timeouts, *, window_s: float = 0.0) -> ProbeResult:
    """Read the API's ``/metrics`` and derive the key figures (see ``derive``). With
    ``window_s`` it reads twice, that far apart, and gives rates over the window.

    A target without ``/metrics`` (404, or 401/403: not readable by us) or whose answer is
    not Prometheus text gives ``ok=False`` with ``observed["unavailable"]``, so a step can
    skip with the reason. The deadline is extended by ``window_s``."""
    expected = "the API's /metrics in Prometheus text format"
    api_url = target.require("API_URL")
    url = f"{api_url}/metrics"

    def read(observed: dict[str, Any]) -> list[Sample] | Verdict:
        response, latency_ms = _get_metrics(url, timeouts)
        observed.update(status_code=response.status_code, latency_ms=round(latency_ms, 1))
        if response.status_code in (401, 403, 404):
            observed["unavailable"] = True
            reason = "no /metrics endpoint" if response.status_code == 404 else \
                "/metrics is not readable without credentials"
            return Verdict(False, expected, f"the target has {reason} (HTTP"
                           f" {response.status_code}): metrics unavailable", observed,
                           advice="metrics")
        if response.status_code != 200:
            return Verdict(False, expected, f"/metrics answered HTTP {response.status_code}",
                           observed, advice="api")
        try:
            samples = parse_exposition(response.text)
        except ExpositionError as exc:
            observed["unavailable"] = True
            return Verdict(False, expected, f"/metrics is not Prometheus text ({exc}):"
                           " metrics unavailable", observed, advice="metrics")
        if not samples:
            observed["unavailable"] = True
            return Verdict(False, expected, "/metrics holds no samples: metrics unavailable",
                           observed, advice="metrics")
        observed["samples"] = len(samples)
        return samples

    def body() -> Verdict:
        observed: dict[str, Any] = {}
        first = read(observed)
        if isinstance(first, Verdict):
            return first
        before: list[Sample] | None = None
        started = time.monotonic()
        if window_s > 0:
            time.sleep(window_s)
            before, second = first, read(observed)
            if isinstance(second, Verdict):
                return second
            first = second
        window = time.monotonic() - started if window_s > 0 else None
        observed.update(derive(first, before=before, window_s=window, now=time.time()))
        if not any(s.name == REQUESTS_METRIC for s in first):
            observed["missing"] = [REQUESTS_METRIC]
        if not any(s.name == f"{LATENCY_METRIC}_bucket" for s in first):
            observed.setdefault("missing", []).append(LATENCY_METRIC)
        return Verdict(True, expected, observed=observed)

    budget = replace(timeouts, deadline=timeouts.deadline + max(0.0, window_s))
    return run_probe("metrics", "scraped", target, budget, body, expected=expected)
