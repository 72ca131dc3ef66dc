"""Disk, memory and CPU usage, where the target's platform exposes them; the API process's
own CPU from its ``/metrics`` wherever it exposes the process counters.

The sandbox runs on this host, so its usage is the host's: the file system holding
``RUNBOOK_HOME`` and the machine's memory. Railway and Kubernetes expose no usage figures to
a command-line client without their metrics APIs; for them this says so, and the checks are
skipped with that reason.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from runbook.config import Platform, Target
from runbook.probes import Verdict, run_probe
from runbook.probes import metrics as metrics_probe
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts

RESOURCES = ("disk", "memory", "cpu")


def unavailable_reason(target: Target, resource: str) -> str | None:
    """Why ``resource`` usage cannot be read on this target, or ``None`` when it can."""
    if resource not in RESOURCES:
        return f"unknown resource {resource!r} (one of {', '.join(RESOURCES)})"
    if target.platform is not Platform.SANDBOX:
        platform = target.platform.value if target.platform else "an unset PLATFORM"
        return f"{platform} exposes no {resource} usage to the runbook; read its dashboard"
    return None


def _memory_used_percent() -> float:
    fields: dict[str, int] = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0])
    return 100.0 * (fields["MemTotal"] - fields["MemAvailable"]) / fields["MemTotal"]


def usage(target: Target, timeouts: Timeouts) -> ProbeResult:
    """Disk used % of the state directory's file system, memory used %, CPU load per core."""
    expected = "disk, memory and CPU usage figures"
    home = target.runbook_home or Path(".")

    def body() -> Verdict:
        disk = shutil.disk_usage(home if home.exists() else Path("."))
        load1, _, _ = os.getloadavg()
        return Verdict(True, expected, observed={
            "disk_used_percent": round(100.0 * disk.used / disk.total, 1),
            "disk_free_bytes": disk.free,
            "memory_used_percent": round(_memory_used_percent(), 1),
            "cpu_load_per_core": round(load1 / (os.cpu_count() or 1), 2),
        })

    return run_probe("metrics", "resource usage", target, timeouts, body, expected=expected)


#: How long the API's CPU is measured for (two ``/metrics`` scrapes this far apart).
CPU_WINDOW_S = 1.0


def api_cpu(target: Target, timeouts: Timeouts, *, limit_percent: float | None = None,
            window_s: float = CPU_WINDOW_S) -> ProbeResult:
    """The API process's CPU over ``window_s`` from its own ``/metrics``
    (``process_cpu_seconds_total`` read twice; 100% is one core busy), as
    ``observed["cpu_percent"]``: fails, with the advice of High Memory/CPU Usage, at
    ``limit_percent`` or more (when given) and as unmeasurable when the API exposes no CPU
    counter (an unmeasured figure is not a pass). Records memory and latency figures too."""
    expected = (f"the API process below {limit_percent:g}% CPU over {window_s:g} s"
                if limit_percent is not None else f"the API process's CPU over {window_s:g} s")
    scraped = metrics_probe.scrape(target, timeouts, window_s=window_s)
    if not scraped.ok:
        return replace(scraped, check="API CPU", expected=expected, advice="metrics")
    kept = ("cpu_percent", "cpu_percent_since_start", "memory_rss_mib", "uptime_s", "window_s",
            "p99_ms", "requests_total")
    observed: dict[str, Any] = {k: scraped.observed[k] for k in kept if k in scraped.observed}
    if limit_percent is not None:
        observed["limit_percent"] = limit_percent
    cpu = observed.get("cpu_percent")
    problem = ""
    if not isinstance(cpu, int | float):
        problem = ("unmeasurable: the API's /metrics has no process_cpu_seconds_total to"
                   " measure CPU with (expose the process metrics of its Prometheus client)")
    elif limit_percent is not None and cpu >= limit_percent:
        problem = (f"the API process used {cpu:.0f}% CPU over {window_s:g} s (alert at"
                   f" {limit_percent:g}%)")
    return ProbeResult(component="metrics", check="API CPU", target=scraped.target,
                       timing=scraped.timing, problem=problem,
                       expected=expected, observed=observed, advice="metrics")
