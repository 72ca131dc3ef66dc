"""Disk, memory and CPU usage, where the target's platform exposes them.

The sandbox runs on this host, so its usage is the host's: the file system holding
``RUNBOOK_HOME`` and the machine's memory. Railway and Kubernetes expose no usage figures to
a command-line client without their metrics APIs; for them this says so, and the checks are
skipped with that reason.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from runbook.config import Platform, Target
from runbook.probes import Verdict, run_probe
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
