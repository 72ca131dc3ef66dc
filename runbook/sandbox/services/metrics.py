"""The sandbox API's metrics through ``prometheus_client``: HTTP request counters and latency
histograms, database query latency and errors, and the library's standard ``process_*``
metrics, in a registry of the API's own.

Every HTTP series carries ``synthetic="true"`` or ``synthetic="false"``: whether the request
came from the executable runbook (its User-Agent starts with ``legacyvideo-runbook``). The
runbook's alerts on error rate and response time count only ``synthetic="false"``, the
application's own traffic; a real LegacyVideo adds the same label (README, "What the target
must expose")."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

#: The User-Agent prefix of the executable runbook's HTTP clients (``runbook/clients.py``).
SYNTHETIC_USER_AGENT = "legacyvideo-runbook"
#: What ``/metrics`` answers with: Prometheus text format 0.0.4.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def is_synthetic(user_agent: str) -> bool:
    """Whether a request's User-Agent is the runbook's own (case-insensitive prefix)."""
    return user_agent.strip().lower().startswith(SYNTHETIC_USER_AGENT)


#: Latency buckets in seconds: 5 ms to 10 s, covering the runbook's p99 > 2 s alert.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


class Metrics:
    """The API's metrics registry. Safe to share between threads (the library's metrics
    are)."""

    def __init__(self) -> None:
        # The exposition keeps the series it always had: no ``*_created`` series beside the
        # counters and histograms (the library's switch is process-wide).
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "http_requests_total",
            'Total HTTP requests by method, route and status; synthetic="true" for the'
            " executable runbook's own.",
            ("method", "route", "status", "synthetic"), registry=self.registry)
        self._durations = Histogram(
            "http_request_duration_seconds",
            'HTTP request latency by route; synthetic="true" for the executable runbook\'s'
            " own.",
            ("route", "synthetic"), buckets=BUCKETS, registry=self.registry)
        self._queries = Histogram("db_query_duration_seconds", "Database query latency.",
                                  buckets=BUCKETS, registry=self.registry)
        self._query_errors = Counter("db_query_errors_total",
                                     "Database queries that raised an error.",
                                     registry=self.registry)
        ProcessCollector(registry=self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float, *,
                        synthetic: bool = False) -> None:
        """Count one HTTP request and record its latency under its route template, labelled
        ``synthetic`` when the executable runbook made it."""
        flag = "true" if synthetic else "false"
        self._requests.labels(method, route, str(status), flag).inc()
        self._durations.labels(route, flag).observe(seconds)

    def observe_query(self, seconds: float, *, failed: bool = False) -> None:
        """Record one database query."""
        self._queries.observe(seconds)
        if failed:
            self._query_errors.inc()

    def render(self) -> str:
        """The whole registry in Prometheus text format 0.0.4."""
        return generate_latest(self.registry).decode("utf-8")
