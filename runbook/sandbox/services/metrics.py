"""Prometheus text exposition, written by hand: HTTP request counters and latency
histograms, database query latency, and the standard ``process_*`` metrics.

Every HTTP series carries ``synthetic="true"`` or ``synthetic="false"``: whether the request
came from the executable runbook (its User-Agent starts with ``legacyvideo-runbook``). The
runbook's alerts on error rate and response time count only ``synthetic="false"``, the
application's own traffic; a real LegacyVideo adds the same label (README, "What the target
must expose")."""

from __future__ import annotations

import os
import re
import resource
import threading
import time
from collections.abc import Iterable, Sequence

#: The User-Agent prefix of the executable runbook's HTTP clients (``runbook/clients.py``).
SYNTHETIC_USER_AGENT = "legacyvideo-runbook"


def is_synthetic(user_agent: str) -> bool:
    """Whether a request's User-Agent is the runbook's own (case-insensitive prefix)."""
    return user_agent.strip().lower().startswith(SYNTHETIC_USER_AGENT)


#: Latency buckets in seconds: 5 ms to 10 s, covering the runbook's p99 > 2 s alert.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)

_START_TIME = time.time()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)
    return f"{{{inner}}}" if inner else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Histogram:
    """Cumulative-bucket histogram of observations in seconds."""

    def __init__(self, buckets: Sequence[float] = BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.total += 1
        self.sum += seconds
        for i, bound in enumerate(self.buckets):
            if seconds <= bound:
                self.counts[i] += 1

    def lines(self, name: str, labels: Sequence[tuple[str, str]] = ()) -> list[str]:
        out = []
        for bound, count in zip(self.buckets, self.counts, strict=True):
            out.append(f"{name}_bucket{_labels([*labels, ('le', _number(bound))])} {count}")
        out.append(f"{name}_bucket{_labels([*labels, ('le', '+Inf')])} {self.total}")
        out.append(f"{name}_sum{_labels(labels)} {self.sum!r}")
        out.append(f"{name}_count{_labels(labels)} {self.total}")
        return out


def process_lines() -> list[str]:
    """``process_*`` metrics of the current process (Linux /proc, with fallbacks)."""
    times = os.times()
    rss = 0
    vms = 0
    try:
        with open("/proc/self/statm") as handle:
            fields = handle.read().split()
        page = os.sysconf("SC_PAGE_SIZE")
        vms, rss = int(fields[0]) * page, int(fields[1]) * page
    except (OSError, ValueError, IndexError):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        open_fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = 0
    lines = [
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
        "# TYPE process_cpu_seconds_total counter",
        f"process_cpu_seconds_total {times.user + times.system!r}",
        "# HELP process_resident_memory_bytes Resident memory size in bytes.",
        "# TYPE process_resident_memory_bytes gauge",
        f"process_resident_memory_bytes {rss}",
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
        "# TYPE process_start_time_seconds gauge",
        f"process_start_time_seconds {_START_TIME!r}",
    ]
    if vms:
        lines += [
            "# HELP process_virtual_memory_bytes Virtual memory size in bytes.",
            "# TYPE process_virtual_memory_bytes gauge",
            f"process_virtual_memory_bytes {vms}",
        ]
    if open_fds:
        lines += [
            "# HELP process_open_fds Number of open file descriptors.",
            "# TYPE process_open_fds gauge",
            f"process_open_fds {open_fds}",
        ]
    return lines


class Metrics:
    """The API's metrics registry. Safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str, str], int] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}
        self._queries = Histogram()
        self._query_errors = 0

    def observe_request(self, method: str, route: str, status: int, seconds: float, *,
                        synthetic: bool = False) -> None:
        """Count one HTTP request and record its latency under its route template, labelled
        ``synthetic`` when the executable runbook made it."""
        flag = "true" if synthetic else "false"
        with self._lock:
            key = (method, route, str(status), flag)
            self._requests[key] = self._requests.get(key, 0) + 1
            self._durations.setdefault((route, flag), Histogram()).observe(seconds)

    def observe_query(self, seconds: float, *, failed: bool = False) -> None:
        """Record one database query."""
        with self._lock:
            self._queries.observe(seconds)
            if failed:
                self._query_errors += 1

    def render(self) -> str:
        """The whole registry in Prometheus text format 0.0.4."""
        with self._lock:
            lines = [
                "# HELP http_requests_total Total HTTP requests by method, route and status;"
                " synthetic=\"true\" for the executable runbook's own.",
                "# TYPE http_requests_total counter",
            ]
            for (method, route, status, flag), count in sorted(self._requests.items()):
                labels = _labels([("method", method), ("route", route), ("status", status),
                                  ("synthetic", flag)])
                lines.append(f"http_requests_total{labels} {count}")
            lines += [
                "# HELP http_request_duration_seconds HTTP request latency by route;"
                " synthetic=\"true\" for the executable runbook's own.",
                "# TYPE http_request_duration_seconds histogram",
            ]
            for (route, flag), histogram in sorted(self._durations.items()):
                lines += histogram.lines("http_request_duration_seconds",
                                         [("route", route), ("synthetic", flag)])
            lines += [
                "# HELP db_query_duration_seconds Database query latency.",
                "# TYPE db_query_duration_seconds histogram",
                *self._queries.lines("db_query_duration_seconds"),
                "# HELP db_query_errors_total Database queries that raised an error.",
                "# TYPE db_query_errors_total counter",
                f"db_query_errors_total {self._query_errors}",
            ]
        lines += process_lines()
        return "\n".join(lines) + "\n"


_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\]|\\.)*\",?)*)\})?"
    r" (?P<value>[-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|Inf|NaN))(?: -?[0-9]+)?$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Sample = tuple[str, frozenset[tuple[str, str]]]


def parse(text: str) -> dict[Sample, float]:
    """Parse Prometheus text exposition into ``{(name, labels): value}``; raises
    ValueError naming the first malformed line (strict enough to test our output)."""
    samples: dict[Sample, float] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"line {number} is not a Prometheus sample: {line!r}")
        labels = frozenset(
            (name, value.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
            for name, value in _LABEL.findall(match.group("labels") or "")
        )
        key = (match.group("name"), labels)
        if key in samples:
            raise ValueError(f"line {number} repeats a sample: {line!r}")
        samples[key] = float(match.group("value"))
    return samples
