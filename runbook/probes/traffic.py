"""The application's own traffic over an alert's window: how many of its users' requests
failed with 5xx, and how long they took (p50/p95/p99), from the target's own counters.

The runbook's alerts "Error rate > 5%", "Error rate > 1%" and "Response time p99 > 2s" are
about LegacyVideo's users. Timing requests the runbook sends itself says nothing about them,
so the figures here come from what the API counted while serving everyone, and the runbook's
own requests are left out: its HTTP clients say ``User-Agent: legacyvideo-runbook/...``
(``runbook/clients.py``) and the target labels those requests ``synthetic="true"``.

Two sources; the first one configured is used:

* **Prometheus** (``RUNBOOK_PROMETHEUS_URL``, with ``RUNBOOK_PROMETHEUS_SELECTOR`` naming the
  API's series, e.g. ``job="legacyvideo-api"``): ``increase(...[window])`` through its HTTP
  API, as on-call teams run alerts. It holds every replica's counters and survives restarts.
* **The API's own /metrics**: counters are totals since the process started, so a window
  needs two readings. Each reading is kept per target in ``RUNBOOK_HOME/traffic-readings.json``
  and the figures are the increase between now and the youngest kept reading that is at
  least the window old, and at most twice that (a longer span would dilute a burst). The real
  span is recorded (``span_s``); it is never shorter than the window.

Counter resets are handled as Prometheus handles them: a counter lower than at the earlier
reading means the process restarted, and the increase is its value since the restart (what
was counted between the earlier reading and the restart is lost, as in Prometheus). A changed
``process_start_time_seconds`` is taken as a restart too, even when the counters have grown
past their old values; one older than the earlier reading's means another process answered
(replicas behind one URL), whose counters cannot be subtracted: unmeasurable.

Unmeasurable is never a pass: no readable counters, no label that tells the runbook's own
requests apart, no earlier reading in range, no users' requests in the window. The result
is then ``ok=False`` with ``observed["unmeasurable"]`` and a one-line problem starting
``unmeasurable:`` that says what is missing and what to configure.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from runbook.clients import USER_AGENT_PREFIX, http_client
from runbook.config import Target
from runbook.probes import Verdict, blocked, describe_error, run_probe
from runbook.probes.metrics import (
    LATENCY_METRIC,
    QUANTILES,
    REQUESTS_METRIC,
    ExpositionError,
    Sample,
    histogram_quantile,
    parse_exposition,
    parse_value,
)
from runbook.redact import redact_url
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts

#: The label that marks the runbook's own requests on the target's HTTP series.
SYNTHETIC_LABEL = "synthetic"
SYNTHETIC_VALUE = "true"
#: Where the status code may be, as LegacyVideo (``status``) and common middlewares name it.
STATUS_LABELS: tuple[str, ...] = ("status", "code", "status_code")

PROMETHEUS_URL_VARIABLE = "RUNBOOK_PROMETHEUS_URL"
PROMETHEUS_SELECTOR_VARIABLE = "RUNBOOK_PROMETHEUS_SELECTOR"
READINGS_FILE = "traffic-readings.json"
#: A window's earlier reading may be at most this many windows old.
MAX_SPAN_WINDOWS = 2.0
#: Readings closer together than this are not all kept (one run reads several times).
MIN_SPACING_S = 15.0
#: Readings older than this are dropped (so the longest window that works is half of it).
RETAIN_S = 2 * 3600.0
_MATCHERS = re.compile(
    r'\s*[A-Za-z_][A-Za-z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
    r'(,\s*[A-Za-z_][A-Za-z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*)*,?\s*'
)


# -- what a window holds -----------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """The users' requests over one window: increases of the counters, the runbook's own
    requests left out (counted apart in ``own_requests``)."""

    source: str
    window_s: float
    #: The real span the increases cover (at least the window for /metrics).
    span_s: float
    until: float
    requests: float
    server_errors: float
    client_errors: float
    own_requests: float
    buckets: tuple[tuple[float, float], ...] = ()
    #: The counters were reset (the API restarted) within the span.
    reset: bool = False
    notes: tuple[str, ...] = ()

    @property
    def since(self) -> float:
        return self.until - self.span_s

    @property
    def error_rate_percent(self) -> float | None:
        """5xx answers as a share of the users' requests; ``None`` without requests."""
        return 100.0 * self.server_errors / self.requests if self.requests > 0 else None

    @property
    def observations(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0

    def quantile_ms(self, q: float) -> float | None:
        """The ``q``-quantile of the users' response times in ms, as Prometheus'
        ``histogram_quantile`` computes it from the window's buckets."""
        value = histogram_quantile(q, self.buckets) if self.observations > 0 else None
        return None if value is None or math.isinf(value) else value * 1000.0

    def figures(self) -> dict[str, Any]:
        """What the report records: counts, rates and percentiles, and where they came from."""
        figures: dict[str, Any] = {
            "source": self.source,
            "window_s": round(self.window_s, 3),
            "span_s": round(self.span_s, 3),
            "since": _iso(self.since),
            "until": _iso(self.until),
            "requests": round(self.requests, 3),
            "server_errors": round(self.server_errors, 3),
            "client_errors": round(self.client_errors, 3),
            "runbook_requests_excluded": round(self.own_requests, 3),
            "requests_per_s": round(self.requests / self.span_s, 3) if self.span_s else None,
            "reset": self.reset,
        }
        rate = self.error_rate_percent
        figures["error_rate_percent"] = round(rate, 3) if rate is not None else None
        for label, q in QUANTILES:
            value = self.quantile_ms(q)
            figures[f"{label}_ms"] = round(value, 2) if value is not None else None
        if self.notes:
            figures["notes"] = list(self.notes)
        return figures


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def _clock(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%H:%M:%S UTC")


def _minutes(seconds: float) -> str:
    """A window or an age as people say it: ``5 min``, ``4 min 59 s``, ``40 s`` (rounded down,
    so an age just short of the window never reads as the window)."""
    whole = int(seconds)
    if whole < 90:
        return f"{whole} s"
    return f"{whole // 60} min" + (f" {whole % 60} s" if whole % 60 else "")


class Unmeasurable(Exception):
    """The window's figures cannot be had; the message is the one line that says why and
    what to configure (without the ``unmeasurable:`` prefix)."""


def _status(labels: Mapping[str, str]) -> str:
    return next((labels[name] for name in STATUS_LABELS if name in labels), "")


def _is_own(labels: Mapping[str, str]) -> bool:
    return labels.get(SYNTHETIC_LABEL, "").lower() == SYNTHETIC_VALUE


# -- /metrics: readings and the delta between two ----------------------------------------


@dataclass(frozen=True)
class Reading:
    """The API's counters at one moment, summed the way the alerts need them: the users'
    requests by status code and their latency buckets (cumulative, by upper bound), and the
    runbook's own requests. ``at`` is this machine's Unix time."""

    at: float
    process_start: float | None
    requests: Mapping[str, float] = field(default_factory=dict)
    buckets: Mapping[float, float] = field(default_factory=dict)
    own_requests: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "process_start": self.process_start,
            "requests": dict(self.requests),
            "buckets": [["+Inf" if math.isinf(b) else repr(b), c]
                        for b, c in sorted(self.buckets.items())],
            "own_requests": self.own_requests,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reading:
        """Raises ``KeyError``, ``TypeError`` or ``ValueError`` on a malformed entry."""
        start = data.get("process_start")
        return cls(
            at=float(data["at"]),
            process_start=float(start) if start is not None else None,
            requests={str(k): float(v) for k, v in dict(data["requests"]).items()},
            buckets={parse_value(str(b)): float(c) for b, c in data["buckets"]},
            own_requests=float(data.get("own_requests", 0.0)),
        )


def reading_of(samples: Sequence[Sample], at: float, *, exposes_requests: bool = True
               ) -> Reading:
    """Sum ``samples`` (one /metrics answer) into a ``Reading``. Raises ``Unmeasurable`` when
    ``http_requests_total`` is not exposed, or is but no series carries the ``synthetic``
    label (the runbook's own requests could not be told apart). A metric declared (``#
    TYPE``) without series yet is a reading of zeros: ``exposes_requests`` says whether it
    was declared."""
    series = [s for s in samples if s.name == REQUESTS_METRIC]
    if not series and not exposes_requests:
        raise Unmeasurable(
            f"the API's /metrics has no {REQUESTS_METRIC}: count requests by status there"
            f" (and time them in {LATENCY_METRIC}), or set {PROMETHEUS_URL_VARIABLE}")
    if series and not any(SYNTHETIC_LABEL in s.labels for s in series):
        raise Unmeasurable(unlabelled_problem())
    requests: dict[str, float] = {}
    own = 0.0
    for sample in series:
        if _is_own(sample.labels):
            own += sample.value
            continue
        status = _status(sample.labels)
        requests[status] = requests.get(status, 0.0) + sample.value
    buckets: dict[float, float] = {}
    for sample in samples:
        if sample.name != f"{LATENCY_METRIC}_bucket" or "le" not in sample.labels:
            continue
        if _is_own(sample.labels):
            continue
        bound = parse_value(sample.labels["le"])
        buckets[bound] = buckets.get(bound, 0.0) + sample.value
    start = next((s.value for s in samples if s.name == "process_start_time_seconds"), None)
    return Reading(at, start, requests, buckets, own)


def unlabelled_problem() -> str:
    return (f"the API's {REQUESTS_METRIC} does not tell the runbook's own requests apart: label"
            f' requests whose User-Agent starts with {USER_AGENT_PREFIX} {SYNTHETIC_LABEL}='
            f'"{SYNTHETIC_VALUE}" (and the others "false") on it and on {LATENCY_METRIC}'
            " (README: What the target must expose)")


def _restart(before: Reading, after: Reading) -> tuple[bool, str]:
    """Whether the counters were reset between the readings, and a note saying how it
    shows. Raises ``Unmeasurable`` when another process answered than before."""
    if before.process_start is not None and after.process_start is not None \
            and abs(after.process_start - before.process_start) > 0.5:
        if after.process_start < before.process_start:
            raise Unmeasurable(
                "the API's /metrics came from another process than at the earlier reading"
                f" (started {_clock(after.process_start)}, the earlier one"
                f" {_clock(before.process_start)}): API_URL reaches several replicas, whose"
                f" counters cannot be subtracted; set {PROMETHEUS_URL_VARIABLE}")
        return True, f"the API restarted at {_clock(after.process_start)}: counters reset"
    lower = [k for k, v in before.requests.items() if after.requests.get(k, 0.0) < v]
    lower += [str(b) for b, v in before.buckets.items() if after.buckets.get(b, 0.0) < v]
    if after.own_requests < before.own_requests or lower:
        return True, "a counter went down since the earlier reading: counters reset"
    return False, ""


def between(before: Reading, after: Reading, window_s: float) -> Traffic:
    """The users' traffic from ``before`` to ``after``: each counter's increase, or on a reset
    its value since the reset (Prometheus' rule). Raises ``Unmeasurable`` (see ``_restart``)."""
    reset, note = _restart(before, after)
    base_requests = {} if reset else before.requests
    base_buckets = {} if reset else before.buckets
    requests = {k: max(0.0, v - base_requests.get(k, 0.0)) for k, v in after.requests.items()}
    bounds = sorted(after.buckets)
    buckets: list[tuple[float, float]] = []
    for bound in bounds:
        buckets.append((bound, max(0.0, after.buckets[bound] - base_buckets.get(bound, 0.0))))
    if buckets and not math.isinf(buckets[-1][0]):
        buckets = []  # not a histogram Prometheus could take a quantile of
    own = after.own_requests - (0.0 if reset else before.own_requests)
    return Traffic(
        source="/metrics",
        window_s=window_s,
        span_s=after.at - before.at,
        until=after.at,
        requests=math.fsum(requests.values()),
        server_errors=math.fsum(v for k, v in requests.items() if k.startswith("5")),
        client_errors=math.fsum(v for k, v in requests.items() if k.startswith("4")),
        own_requests=max(0.0, own),
        buckets=tuple(buckets),
        reset=reset,
        notes=(note,) if note else (),
    )


# -- kept readings -----------------------------------------------------------------------


def readings_file(home: Path) -> Path:
    """``RUNBOOK_HOME/traffic-readings.json``."""
    return home / READINGS_FILE


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside ``path``: parallel scenarios (``--workers``) and a watch
    running beside a check read and write the file one at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"targets": {}}
    except (OSError, ValueError):
        return {"targets": {}}  # torn or foreign: start afresh rather than fail every run
    return data if isinstance(data, dict) and isinstance(data.get("targets"), dict) \
        else {"targets": {}}


def keep_reading(home: Path, key: str, reading: Reading) -> list[Reading]:
    """Add ``reading`` to the target ``key``'s kept readings (unless one was kept less than
    ``MIN_SPACING_S`` before it), drop those older than ``RETAIN_S`` or from the future (and
    targets with none younger), and return the readings kept before this one, oldest first.
    Raises ``OSError`` when the file cannot be written."""
    path = readings_file(home)
    with _locked(path):
        data = _load(path)
        earlier: list[Reading] = []
        for entry in data["targets"].get(key, {}).get("readings", []):
            try:
                kept = Reading.from_json(entry)
            except (KeyError, TypeError, ValueError):
                continue
            if reading.at - RETAIN_S <= kept.at < reading.at:
                earlier.append(kept)
        earlier.sort(key=lambda r: r.at)
        stored = list(earlier)
        if not stored or reading.at - stored[-1].at >= MIN_SPACING_S:
            stored.append(reading)
        data["targets"][key] = {"readings": [r.to_json() for r in stored]}
        for other, entry in list(data["targets"].items()):  # targets gone (a rebuilt sandbox)
            newest = max((e.get("at", 0) for e in entry.get("readings", [])
                          if isinstance(e, dict) and isinstance(e.get("at"), int | float)),
                         default=0)
            if other != key and newest < reading.at - RETAIN_S:
                del data["targets"][other]
        scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        scratch.write_text(json.dumps(data), encoding="utf-8")
        os.replace(scratch, path)
    return earlier


def baseline(earlier: Sequence[Reading], now: float, window_s: float) -> Reading:
    """The youngest reading at least ``window_s`` old and at most ``MAX_SPAN_WINDOWS``
    windows old. Raises ``Unmeasurable`` saying when a run would find one."""
    longest = window_s * MAX_SPAN_WINDOWS
    usable = [r for r in earlier if window_s <= now - r.at <= longest]
    if usable:
        return max(usable, key=lambda r: r.at)
    how = (f"run the checks at least every {_minutes(window_s)} with RUNBOOK_HOME kept between"
           f" runs (runbook watch, a CronJob with a volume), or set {PROMETHEUS_URL_VARIABLE}")
    if not earlier:
        raise Unmeasurable(
            f"no earlier reading of the API's counters to measure the last {_minutes(window_s)}"
            f" against (this one is kept); a run between {_clock(now + window_s)} and"
            f" {_clock(now + longest)} can measure it: {how}")
    young = [r for r in earlier if now - r.at < window_s]
    if young:
        oldest = min(young, key=lambda r: r.at)
        raise Unmeasurable(
            f"the oldest kept reading of the API's counters is {_minutes(now - oldest.at)}"
            f" old, less than the {_minutes(window_s)} window; a run from"
            f" {_clock(oldest.at + window_s)} can measure it: {how}")
    newest = max(earlier, key=lambda r: r.at)
    raise Unmeasurable(
        f"the newest earlier reading of the API's counters is {_minutes(now - newest.at)} old,"
        f" more than {MAX_SPAN_WINDOWS:g} times the {_minutes(window_s)} window (a longer span"
        f" would hide a burst of errors): {how}")


def _key(target: Target) -> str:
    return f"{target.name} {target.api_url or ''}"


def from_metrics(target: Target, timeouts: Timeouts, window_s: float, home: Path,
                 observed: dict[str, Any]) -> Traffic:
    """Read the API's ``/metrics`` now, keep the reading, and return the users' traffic
    since the kept reading that ``baseline`` picks. Raises ``Unmeasurable``."""
    url = f"{target.require('API_URL')}/metrics"
    with http_client(timeouts, headers={"Accept": "text/plain;version=0.0.4"}) as client:
        try:
            response = client.get(url)
        except httpx.HTTPError as exc:
            raise Unmeasurable(
                f"the API's /metrics did not answer ({describe_error(exc)}) and"
                f" {PROMETHEUS_URL_VARIABLE} is not set: nothing holds its counters") from None
    now = time.time()
    observed["metrics_status"] = response.status_code
    if response.status_code not in (200, 401, 403, 404):
        raise Unmeasurable(
            f"the API's /metrics answered HTTP {response.status_code}: its counters cannot be"
            " read now (if the API is failing, see Service Down and API Returns 500 Error)")
    if response.status_code != 200:
        raise Unmeasurable(
            f"the API has no readable /metrics (HTTP {response.status_code}) and"
            f" {PROMETHEUS_URL_VARIABLE} is not set: expose {REQUESTS_METRIC} and"
            f" {LATENCY_METRIC} on /metrics, or point {PROMETHEUS_URL_VARIABLE} at a Prometheus"
            " that scrapes the API")
    try:
        samples = parse_exposition(response.text)
    except ExpositionError as exc:
        raise Unmeasurable(
            f"the API's /metrics is not Prometheus text ({exc}); expose {REQUESTS_METRIC} in"
            f" the Prometheus text format, or set {PROMETHEUS_URL_VARIABLE}") from None
    declared = re.search(rf"^#\s+TYPE\s+{REQUESTS_METRIC}\s", response.text, re.M) is not None
    reading = reading_of(samples, now, exposes_requests=declared)
    try:
        earlier = keep_reading(home, _key(target), reading)
    except OSError as exc:
        raise Unmeasurable(
            f"cannot keep the reading in {readings_file(home)} ({exc.strerror or exc}): set"
            f" RUNBOOK_HOME to a writable directory kept between runs, or set"
            f" {PROMETHEUS_URL_VARIABLE}") from None
    observed["readings_kept"] = len(earlier) + 1
    return between(baseline(earlier, now, window_s), reading, window_s)


# -- Prometheus --------------------------------------------------------------------------


def _vector(client: httpx.Client, base: str, promql: str) -> list[tuple[dict[str, str], float]]:
    """An instant query's vector as ``(labels, value)``. Raises ``Unmeasurable``."""
    shown = redact_url(base)
    try:
        response = client.get(f"{base}/api/v1/query", params={"query": promql})
    except httpx.HTTPError as exc:
        raise Unmeasurable(f"Prometheus at {shown} did not answer ({describe_error(exc)}):"
                           f" check {PROMETHEUS_URL_VARIABLE}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise Unmeasurable(
            f"Prometheus at {shown} refused the query (HTTP {response.status_code}"
            f"{': ' + str(error)[:160] if error else ''}): check {PROMETHEUS_URL_VARIABLE} and"
            f" {PROMETHEUS_SELECTOR_VARIABLE}")
    data = body.get("data") or {}
    result = data.get("result") if data.get("resultType") == "vector" else None
    if not isinstance(result, list):
        raise Unmeasurable(f"Prometheus at {shown} answered something other than a vector:"
                           f" check {PROMETHEUS_URL_VARIABLE}")
    vector: list[tuple[dict[str, str], float]] = []
    for item in result:
        try:
            vector.append(({str(k): str(v) for k, v in item["metric"].items()},
                           float(item["value"][1])))
        except (KeyError, TypeError, ValueError, IndexError):
            continue
    return vector


def selector_problem(selector: str) -> str | None:
    """Why ``selector`` is not a list of PromQL label matchers, or ``None`` when it is."""
    if not selector.strip():
        return (f"{PROMETHEUS_SELECTOR_VARIABLE} is not set: name the API's series, e.g."
                ' job="legacyvideo-api" (a Prometheus holds other services\' too)')
    if not _MATCHERS.fullmatch(selector):
        return (f"{PROMETHEUS_SELECTOR_VARIABLE} {selector!r} is not a list of label matchers"
                ' like job="legacyvideo-api",env="production"')
    return None


def from_prometheus(base: str, selector: str, timeouts: Timeouts, window_s: float,
                    observed: dict[str, Any]) -> Traffic:
    """The users' traffic over the last ``window_s`` from a Prometheus server: ``increase``
    of the API's counters selected by ``selector``. Raises ``Unmeasurable``."""
    problem = selector_problem(selector)
    if problem:
        raise Unmeasurable(problem)
    sel = selector.strip().rstrip(",")
    window = f"{max(1, round(window_s))}s"
    observed["prometheus"] = redact_url(base)
    observed["selector"] = sel
    with http_client(timeouts) as client:
        covered = _vector(client, base, f"count({REQUESTS_METRIC}{{{sel}}} offset {window})")
        if not covered:
            if not _vector(client, base, f"count({REQUESTS_METRIC}{{{sel}}})"):
                raise Unmeasurable(
                    f"Prometheus at {redact_url(base)} holds no {REQUESTS_METRIC}{{{sel}}}:"
                    f" check {PROMETHEUS_SELECTOR_VARIABLE} and that Prometheus scrapes the API")
            raise Unmeasurable(
                f"Prometheus has held the API's counters for less than the"
                f" {_minutes(window_s)} window: measurable once it has scraped the API that"
                " long")
        by_status = _vector(client, base, (
            f"sum by ({', '.join((*STATUS_LABELS, SYNTHETIC_LABEL))})"
            f" (increase({REQUESTS_METRIC}{{{sel}}}[{window}]))"))
        if by_status and not any(SYNTHETIC_LABEL in labels for labels, _ in by_status):
            raise Unmeasurable(unlabelled_problem())
        buckets = _vector(client, base, (
            f"sum by (le) (increase({LATENCY_METRIC}_bucket"
            f'{{{sel},{SYNTHETIC_LABEL}!="{SYNTHETIC_VALUE}"}}[{window}]))'))
    users = [(labels, v) for labels, v in by_status if not _is_own(labels) and not math.isnan(v)]
    merged: dict[float, float] = {}
    for labels, value in buckets:
        if "le" in labels and not math.isnan(value):
            bound = parse_value(labels["le"])
            merged[bound] = merged.get(bound, 0.0) + value
    return Traffic(
        source="prometheus",
        window_s=window_s,
        span_s=window_s,
        until=time.time(),
        requests=math.fsum(v for _, v in users),
        server_errors=math.fsum(v for labels, v in users if _status(labels).startswith("5")),
        client_errors=math.fsum(v for labels, v in users if _status(labels).startswith("4")),
        own_requests=math.fsum(v for labels, v in by_status if _is_own(labels)),
        buckets=tuple(sorted(merged.items())),
    )


# -- the probe ---------------------------------------------------------------------------


def traffic(target: Target, timeouts: Timeouts, window_s: float, *,
            home: Path | None = None, environ: Mapping[str, str] | None = None) -> ProbeResult:
    """The users' traffic over the last ``window_s`` seconds, from Prometheus when
    ``RUNBOOK_PROMETHEUS_URL`` is set, else from the API's ``/metrics`` against a kept
    reading (``home``: the target's RUNBOOK_HOME). ``ok`` only when the window held users'
    requests; otherwise ``observed["unmeasurable"]`` and a problem saying what is missing."""
    env = os.environ if environ is None else environ
    prometheus = env.get(PROMETHEUS_URL_VARIABLE, "").strip().rstrip("/")
    selector = env.get(PROMETHEUS_SELECTOR_VARIABLE, "")
    where = home or target.runbook_home or Path(env.get("RUNBOOK_HOME", ".runbook")).resolve()
    expected = (f"the error rate and response times of the API's users over the last"
                f" {_minutes(window_s)}, from its own counters (the runbook's requests left out)")

    def body() -> Verdict:
        observed: dict[str, Any] = {"window_s": window_s}
        try:
            if prometheus:
                measured = from_prometheus(prometheus, selector, timeouts, window_s, observed)
            else:
                measured = from_metrics(target, timeouts, window_s, where, observed)
            observed.update(measured.figures())
            if measured.requests <= 0:
                raise Unmeasurable(
                    f"the API counted none of its users' requests in the last"
                    f" {_minutes(measured.span_s)} ({measured.own_requests:.0f} of the runbook's"
                    " own left out): no traffic to measure the alert on; if users should be"
                    " there, see Service Down")
        except Unmeasurable as exc:
            # Not checked, and not a pass: a step skips it with this line (unavailable).
            observed["unmeasurable"] = observed["unavailable"] = True
            return Verdict(False, expected, f"unmeasurable: {exc}", observed,
                           advice="traffic-unmeasurable")
        if measured.observations <= 0:
            line = (f"unmeasurable: no {LATENCY_METRIC} histogram of the users' requests in the"
                    f" window: time requests in it (with the {SYNTHETIC_LABEL} label), or set"
                    f" {PROMETHEUS_URL_VARIABLE}")
            observed["unmeasurable_figures"] = {f"{label}_ms": line for label, _ in QUANTILES}
        return Verdict(True, expected, observed=observed)

    check = f"users' traffic over {_minutes(window_s)}"
    stopped = None if prometheus else blocked("traffic", check, target, expected=expected,
                                              needs=("api",))
    if stopped is not None:  # the counters are the API's own: not measured, as without them
        return replace(stopped, problem=f"unmeasurable: {stopped.problem}",
                       observed={**stopped.observed, "unmeasurable": True, "unavailable": True},
                       advice="traffic-unmeasurable")
    return run_probe("traffic", check, target, timeouts, body, expected=expected)


def for_figure(result: ProbeResult, figure: str) -> ProbeResult:
    """``result`` as a check of ``figure`` sees it: failed, with its one line, when that
    figure alone is unmeasurable (no latency histogram); else, when measured, with the
    runbook's advice for that figure over its threshold: API Returns 500 Error for the error
    rate, Slow Query Performance and High CPU for response times."""
    missing = result.observed.get("unmeasurable_figures", {}).get(figure)
    if result.ok and missing:
        return replace(result, problem=missing, advice="traffic-unmeasurable",
                       observed={**result.observed, "unavailable": True})
    if not result.ok:
        return result
    return replace(result, advice="api-500" if figure.startswith("error") else "traffic-latency")
