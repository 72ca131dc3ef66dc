"""After a run: ``reports/metrics.prom`` from its summary and drill records, the push to a
Pushgateway, the webhook messages of the tiers that failed, and (for a watch) the Allure
results of rounds older than it keeps.

Nothing here changes a run's exit code: an output that cannot be delivered is one warning.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook.redact import Redactor, url_secrets
from runbook.reporting import alerts, metrics

#: Where a run's Allure results go, under its reports directory (``runner.Selection``
#: spells it out: the pytest process imports the runner, and not this module).
ALLURE_RESULTS = "allure-results"
#: What Allure writes for each result: ``<uuid>-result.json``, ``<uuid>-container.json``,
#: ``<uuid>-attachment.<ext>``. Nothing else in the directory is a run's result.
_ALLURE_RESULT = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"-(result\.json|container\.json|attachment\.[A-Za-z0-9]+)")
#: Where the Pushgateway is when ``--pushgateway`` is not given.
PUSHGATEWAY_VARIABLE = "RUNBOOK_PUSHGATEWAY_URL"
METRICS_FILE = "metrics.prom"

Warn = Callable[[str], None]


@dataclass(frozen=True)
class Delivery:
    """Where a run's outputs go beyond ``reports/``: the Pushgateway and the webhook given
    on the command line (``None``: the environment's, if any)."""

    pushgateway: str | None = None
    webhook: str | None = None

    def pushgateway_url(self) -> str | None:
        return self.pushgateway or os.environ.get(PUSHGATEWAY_VARIABLE) or None

    def problems(self) -> list[str]:
        """One line per URL that cannot work (never the URL of a webhook: it is a secret)."""
        found: list[str] = []
        gateway = self.pushgateway_url()
        if gateway and (problem := metrics.url_problem(gateway)):
            found.append(f"the Pushgateway URL {problem}; give one like http://pushgateway:9091"
                         f" (--pushgateway or {PUSHGATEWAY_VARIABLE})")
        for url in alerts.webhook_urls(self.webhook):
            if (problem := metrics.url_problem(url)):
                found.append(f"a webhook URL {problem}; give one like"
                             f" https://hooks.slack.com/services/... (--webhook or"
                             f" {alerts.WEBHOOK_VARIABLE}[_CRITICAL|_WARNING|_INFO])")
                break
        return found

    def secrets(self) -> list[str]:
        """The webhook URLs (their paths, and the token that ends them) and the credentials
        in any of these URLs: to be masked in anything printed."""
        urls = alerts.webhook_urls(self.webhook)
        paths = [u.split("://", 1)[-1].split("/", 1)[-1] for u in urls if "/" in u]
        tokens = [p.rstrip("/").rsplit("/", 1)[-1] for p in paths]
        gateway = self.pushgateway_url()
        credentials = [s for u in [*urls, *([gateway] if gateway else [])]
                       for s in url_secrets(u)]
        return urls + paths + tokens + credentials


def load_summary(reports: Path, run_id: str) -> dict[str, Any] | None:
    """This run's ``summary.json``; ``None`` when the run wrote none (or another run's is
    there)."""
    try:
        document = json.loads((reports / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("run_id") != run_id:
        return None
    return document


def drill_records(directory: Path, since: datetime) -> list[dict[str, Any]]:
    """The drill records (``<time>-<drill>.json``) of drills started at or after ``since``,
    oldest first; a drill recorded twice counts with its last record."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            started = datetime.fromisoformat(str(record.get("started_at")))
        except (OSError, ValueError):
            continue
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        if isinstance(record, dict) and started >= since:
            records[str(record.get("drill"))] = record
    return list(records.values())


def run_exposition(reports: Path, summary: Mapping[str, Any] | None, *, target: str,
                   code: int, started: datetime) -> metrics.Exposition:
    """The run's metrics: its own gauges, its scenarios, its drills."""
    now = datetime.now(UTC)
    exposition = metrics.Exposition()
    metrics.add_run(exposition, summary, target=target, exit_code=code, finished_at=now,
                    duration_s=(now - started).total_seconds())
    metrics.add_drills(exposition, drill_records(reports / "drills", started), target=target)
    return exposition


def write_and_push(reports: Path, exposition: metrics.Exposition, *, target: str,
                   redact: Redactor, delivery: Delivery, warn: Warn) -> Path:
    """Write ``metrics.prom`` atomically and push the same registry when a Pushgateway is
    configured, label values and the grouping key redacted; a failure of either is one
    warning."""
    registry = exposition.registry(redact)
    path = reports / METRICS_FILE
    try:
        metrics.write_textfile(path, registry)
    except OSError as exc:
        warn(f"cannot write {path}: {exc.strerror or type(exc).__name__}")
    gateway = delivery.pushgateway_url()
    if gateway:
        problem = metrics.push(gateway, redact(target), registry)
        if problem is not None:
            warn(f"{problem}; {path} is written")
    return path


def publish_run(reports: Path, *, run_id: str, code: int, target: str, started: datetime,
                redact: Redactor, delivery: Delivery, warn: Warn) -> None:
    """Everything a finished ``check`` or ``drill`` run gives beyond its summary: metrics
    (written, pushed) and one webhook message per failed alert tier."""
    summary = load_summary(reports, run_id)
    exposition = run_exposition(reports, summary, target=target, code=code, started=started)
    write_and_push(reports, exposition, target=target, redact=redact, delivery=delivery,
                   warn=warn)
    if summary is not None:
        alerts.notify_failures(summary, reports / "junit.xml", redact,
                               explicit=delivery.webhook, warn=warn)


def prune_results(reports: Path, written_before: float) -> int:
    """Remove from ``reports/allure-results`` the Allure results (results, containers,
    attachments) last written before ``written_before`` (seconds since the epoch): a watch
    keeps its last rounds' results, not every round's (about 400 kB a round of the synthetic
    suite). The rest of the directory stays. How many files went."""
    removed = 0
    try:
        entries = list(os.scandir(reports / ALLURE_RESULTS))
    except OSError:
        return 0
    for entry in entries:
        if not _ALLURE_RESULT.fullmatch(entry.name):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < written_before:
                os.unlink(entry.path)
                removed += 1
        except OSError:  # gone meanwhile, or not ours to remove: left as it is
            continue
    return removed
