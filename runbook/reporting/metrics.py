"""A run as Prometheus metrics: ``reports/metrics.prom`` in the text exposition format, and
the optional push of the same metrics to a Pushgateway, both through ``prometheus_client``.

The figures come from another process's files (``summary.json``, the drill records), so
an ``Exposition`` is collected as a custom collector yielding ``GaugeMetricFamily``
objects, the library's way of exposing figures it did not measure itself (a ``Gauge`` would
also follow ``PROMETHEUS_MULTIPROC_DIR`` into shared files); ``Exposition.registry`` puts it
in a ``CollectorRegistry`` of its own with every label value passed through the redactor.
Gauges only: every value describes the last run, which is what a Pushgateway or a textfile
collector holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, push_to_gateway, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.registry import Collector

#: Every outcome ``runbook_scenario_outcome`` enumerates (1 for the scenario's, 0 for the rest).
OUTCOMES = ("passed", "flaky", "failed", "error", "skipped", "expired")
#: Outcomes that count as passing in ``runbook_scenario_passed``.
PASSING = frozenset({"passed", "flaky"})
#: Seconds a Pushgateway push may take, connection included.
PUSH_TIMEOUT_S = 5.0
#: The Pushgateway grouping key: one group per target, replaced by each push (PUT).
PUSH_JOB = "runbook"
PUSH_INSTANCE_LABEL = "instance"

Labels = Mapping[str, str]
Redact = Callable[[str], str]


def _unchanged(text: str) -> str:
    return text


@dataclass
class Family:
    """One gauge: its name, help text and samples (label sets with a value)."""

    name: str
    help: str
    samples: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    def add(self, labels: Labels, value: float | None) -> None:
        """Add a sample; ``None`` (not measured) adds nothing. A repeated label set replaces
        the earlier sample, so the exposition never holds duplicates."""
        if value is None:
            return
        self.samples[tuple(labels.items())] = float(value)

    def metric(self, redact: Redact) -> GaugeMetricFamily:
        """The family for the library, every label value redacted (two label sets the same
        once redacted give one sample, the later one)."""
        names = [name for name, _ in next(iter(self.samples), ())]
        redacted = {tuple(redact(v) for _, v in labels): value
                    for labels, value in self.samples.items()}
        gauge = GaugeMetricFamily(self.name, self.help, labels=names)
        for values, value in redacted.items():
            gauge.add_metric(list(values), value)
        return gauge


class Exposition:
    """Families in the order they were first asked for; families without samples are left
    out. ``registry`` hands them to ``prometheus_client``."""

    def __init__(self) -> None:
        self._families: dict[str, Family] = {}

    def family(self, name: str, help_text: str) -> Family:
        if name not in self._families:
            self._families[name] = Family(name, help_text)
        return self._families[name]

    def metrics(self, redact: Redact = _unchanged) -> Iterator[Metric]:
        for family in self._families.values():
            if family.samples:
                yield family.metric(redact)

    def registry(self, redact: Redact = _unchanged) -> CollectorRegistry:
        """A registry holding these families alone, label values passed through ``redact``."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collected(self, redact))
        return registry


class _Collected(Collector):
    """An exposition as a custom collector: the families it holds when collected."""

    def __init__(self, exposition: Exposition, redact: Redact) -> None:
        self._exposition = exposition
        self._redact = redact

    def collect(self) -> Iterable[Metric]:
        return list(self._exposition.metrics(self._redact))


def _timestamp(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def scenario_labels(target: str, scenario: Mapping[str, Any]) -> dict[str, str]:
    """``target``, ``scenario``, ``feature``, ``section`` (its own runbook section) and
    ``tier`` of a ``summary.json`` scenario: the labels every per-scenario metric carries."""
    sections = scenario.get("sections") or []
    return {
        "target": target,
        "scenario": str(scenario.get("name", "")),
        "feature": str(scenario.get("feature", "")),
        "section": str(sections[0]) if sections else "",
        "tier": str(scenario.get("tier") or ""),
    }


def add_run(exposition: Exposition, summary: Mapping[str, Any] | None, *, target: str,
            exit_code: int, finished_at: datetime, duration_s: float | None) -> None:
    """The run's own gauges and one set per scenario of ``summary`` (``summary.json`` of this
    run; ``None`` when the run wrote none, e.g. a usage error: then only the run's gauges)."""
    run = {"target": target}
    finished = _timestamp(summary.get("finished_at") if summary else None)
    exposition.family("runbook_run_timestamp_seconds",
                      "When the last run finished (Unix time).").add(
        run, finished if finished is not None else finished_at.timestamp())
    exposition.family("runbook_run_exit_code",
                      "The last run's exit code: 0 passed, 1 failed, 2 usage, 3 refused,"
                      " 4 only warnings failed.").add(run, exit_code)
    exposition.family("runbook_run_duration_seconds",
                      "How long the last run took.").add(run, duration_s)
    scenarios: Sequence[Mapping[str, Any]] = summary.get("scenarios", []) if summary else []
    counts = dict.fromkeys(OUTCOMES, 0)
    for scenario in scenarios:
        outcome = str(scenario.get("outcome", ""))
        counts[outcome] = counts.get(outcome, 0) + 1
        _add_scenario(exposition, scenario_labels(target, scenario), scenario, outcome)
    if summary is not None:
        totals = exposition.family("runbook_run_scenarios",
                                   "Scenarios of the last run by outcome.")
        for outcome, count in counts.items():
            totals.add({**run, "outcome": outcome}, count)


def _add_scenario(exposition: Exposition, labels: dict[str, str],
                  scenario: Mapping[str, Any], outcome: str) -> None:
    if outcome != "skipped":
        exposition.family("runbook_scenario_passed",
                          "1 when the scenario passed in the last run (flaky included), 0 when"
                          " it failed, errored or expired; skipped scenarios are left out.").add(
            labels, 1.0 if outcome in PASSING else 0.0)
    status = exposition.family("runbook_scenario_outcome",
                               "1 for the scenario's outcome in the last run, 0 for the others.")
    for name in OUTCOMES if outcome in OUTCOMES else (*OUTCOMES, outcome):
        status.add({**labels, "outcome": name}, 1.0 if name == outcome else 0.0)
    exposition.family("runbook_scenario_duration_seconds",
                      "How long the scenario took in the last run, retries included.").add(
        labels, float(scenario.get("duration_s") or 0.0))
    exposition.family("runbook_scenario_expired",
                      "1 when the scenario's cadence has gone by since it last passed.").add(
        labels, 1.0 if scenario.get("expired") else 0.0)
    exposition.family("runbook_scenario_last_passed_timestamp_seconds",
                      "When the scenario last passed, this run or an earlier one (Unix time).").add(
        labels, _timestamp(scenario.get("last_passed_at")))
    figures = exposition.family("runbook_scenario_figure",
                                "What the scenario measured (probe latencies in ms, drill"
                                " seconds), by the figure's name.")
    for name, value in (scenario.get("figures") or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            figures.add({**labels, "figure": str(name)}, float(value))


#: Drill record field -> (metric, help).
_DRILL_GAUGES = (
    ("rto_s", "runbook_drill_rto_seconds",
     "Measured recovery time: fault to the first of N consecutive green checks."),
    ("rpo_s", "runbook_drill_rpo_seconds", "Measured data loss window in seconds."),
    ("time_to_detect_s", "runbook_drill_time_to_detect_seconds",
     "Fault to the first failing check."),
)


def add_drills(exposition: Exposition, records: Iterable[Mapping[str, Any]], *,
               target: str) -> None:
    """Measured RTO, RPO and time to detect per drill, the runbook's objectives as separate
    gauges, and whether the drill passed (records as ``reports/drills/*.json`` hold them)."""
    for record in records:
        labels = {"target": target, "drill": str(record.get("drill", "")),
                  "section": str(record.get("runbook_section", ""))}
        for key, name, help_text in _DRILL_GAUGES:
            exposition.family(name, help_text).add(labels, _seconds(record.get(key)))
        objective = record.get("objective") or {}
        exposition.family("runbook_drill_rto_objective_seconds",
                          "The runbook's RTO for the drill.").add(
            labels, _seconds(objective.get("rto_s")))
        exposition.family("runbook_drill_rpo_objective_seconds",
                          "The runbook's RPO for the drill.").add(
            labels, _seconds(objective.get("rpo_s")))
        exposition.family("runbook_drill_passed",
                          "1 when the drill's verdict was pass, else 0.").add(
            labels, 1.0 if record.get("verdict") == "pass" else 0.0)


def _seconds(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def write_textfile(path: Path, registry: CollectorRegistry) -> None:
    """Write ``registry`` to ``path`` with ``prometheus_client.write_to_textfile``: a
    temporary file beside it renamed over it, so a collector never reads half a file (the
    temporary file removed on failure). Raises ``OSError``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an http(s) endpoint (one phrase), or ``None`` when it can."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http or https URL with a host"
    return None


def describe_endpoint(url: str) -> str:
    """Scheme, host and port of ``url`` for messages: never its credentials or path."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}" if parts.hostname else "the URL given"
    except ValueError:
        return "the URL given"


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without its user and password, and the two (percent-decoded; ``None`` when
    absent). Raises ``ValueError`` on a URL that cannot be split."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, unquote(parts.username or ""), unquote(parts.password or "")


def push(base: str, target: str, registry: CollectorRegistry, *,
         timeout: float = PUSH_TIMEOUT_S) -> str | None:
    """Replace the group ``job=runbook, instance=<target>`` on the Pushgateway at ``base``
    with ``registry`` (``prometheus_client.push_to_gateway``: a PUT, the grouping key
    encoded by the library, base64 where ``target`` holds a ``/``). Credentials in ``base``
    go as HTTP Basic auth. ``None`` when the Pushgateway took the metrics, else one line
    saying why not (no URL credentials in it)."""
    where = describe_endpoint(base)
    try:
        gateway, user, password = _split_credentials(base)
    except ValueError:
        return f"the Pushgateway URL ({where}) is not a valid http or https URL"

    def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]],
                data: bytes) -> Callable[[], None]:
        if user is None:
            return default_handler(url, method, timeout, headers, data)
        return basic_auth_handler(url, method, timeout, headers, data, user, password)

    try:
        push_to_gateway(gateway, job=PUSH_JOB, registry=registry,
                        grouping_key={PUSH_INSTANCE_LABEL: target}, timeout=timeout,
                        handler=handler)
    except HTTPError as exc:
        return f"the Pushgateway at {where} answered HTTP {exc.code} to the push"
    except URLError as exc:
        reason = exc.reason if isinstance(exc.reason, BaseException) else exc
        return f"the Pushgateway at {where} did not take the metrics: {type(reason).__name__}"
    except (OSError, HTTPException) as exc:
        return f"the Pushgateway at {where} did not take the metrics: {type(exc).__name__}"
    except ValueError:
        return f"the Pushgateway URL ({where}) is not a valid http or https URL"
    return None
