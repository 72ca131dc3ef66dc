"""A run as Prometheus metrics: ``reports/metrics.prom`` in the text exposition format, and
the optional push of the same text to a Pushgateway.

The format is small enough to write here (``# HELP``, ``# TYPE``, one sample per line, label
values escaped); the tests parse it back with ``prometheus_client``'s own parser. Gauges only:
every value describes the last run, which is what a Pushgateway or a textfile collector holds.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

#: Every outcome ``runbook_scenario_outcome`` enumerates (1 for the scenario's, 0 for the rest).
OUTCOMES = ("passed", "flaky", "failed", "error", "skipped", "expired")
#: Outcomes that count as passing in ``runbook_scenario_passed``.
PASSING = frozenset({"passed", "flaky"})
#: Seconds a Pushgateway push may take, connection included.
PUSH_TIMEOUT_S = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote, newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Family:
    """One metric: its name, help text and samples (label sets with a value)."""

    name: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, labels: Labels, value: float | None) -> None:
        """Add a sample; ``None`` (not measured) adds nothing. A repeated label set replaces
        the earlier sample, so the exposition never holds duplicates."""
        if value is None:
            return
        wanted = dict(labels)
        self.samples = [s for s in self.samples if s[0] != wanted]
        self.samples.append((wanted, float(value)))

    def render(self, redact: Callable[[str], str]) -> list[str]:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} gauge"]
        for labels, value in self.samples:
            inner = ",".join(f'{k}="{escape_label(redact(v))}"' for k, v in labels.items())
            lines.append(f"{self.name}{{{inner}}} {_number(value)}" if inner
                         else f"{self.name} {_number(value)}")
        return lines


class Exposition:
    """Families in the order they were first asked for; ``text()`` is the whole file."""

    def __init__(self) -> None:
        self._families: dict[str, Family] = {}

    def family(self, name: str, help_text: str) -> Family:
        if name not in self._families:
            self._families[name] = Family(name, help_text)
        return self._families[name]

    def text(self, redact: Callable[[str], str] = lambda s: s) -> str:
        """The exposition, families without samples left out, ending in a newline."""
        lines: list[str] = []
        for family in self._families.values():
            if family.samples:
                lines += family.render(redact)
        return "\n".join(lines) + "\n"


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


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory, so a
    collector reading it never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def push_url(base: str, target: str) -> str:
    """``<base>/metrics/job/runbook/instance/<target>``: one group per target, replaced by
    each push (PUT)."""
    return f"{base.rstrip('/')}/metrics/job/runbook/instance/{quote(target, safe='')}"


def describe_endpoint(url: str) -> str:
    """Scheme, host and port of ``url`` for messages: never its credentials or path."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}" if parts.hostname else "the URL given"
    except ValueError:
        return "the URL given"


def push(base: str, target: str, text: str, *, timeout: float = PUSH_TIMEOUT_S) -> str | None:
    """PUT ``text`` to the Pushgateway at ``base``; ``None`` when it took it, else one line
    saying why not (no URL credentials in it)."""
    import httpx

    where = describe_endpoint(base)
    try:
        answer = httpx.put(push_url(base, target), content=text.encode("utf-8"),
                           headers={"Content-Type": CONTENT_TYPE}, timeout=timeout)
    except httpx.HTTPError as exc:
        return f"the Pushgateway at {where} did not take the metrics: {type(exc).__name__}"
    except (httpx.InvalidURL, ValueError):
        return f"the Pushgateway URL ({where}) is not a valid http or https URL"
    if answer.status_code >= 300:
        return f"the Pushgateway at {where} answered HTTP {answer.status_code} to the push"
    return None
