"""Sandbox start-up times: cold (empty RUNBOOK_HOME: initdb, migrations, seed) and warm
(data kept), plus each component's time to running and the API's recovery after a kill.

    .venv/bin/python bench/sandbox_start.py [--runs 3] [--json]

Every run uses fresh temporary homes that are destroyed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runbook.sandbox import COMPONENTS, Sandbox


def _figures(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def _component_times(box: Sandbox) -> dict[str, float]:
    return {
        name: c.time_to_running_s
        for name, c in box.status().components.items()
        if c.time_to_running_s is not None
    }


def _api_recovery(box: Sandbox) -> float:
    """Seconds from SIGKILL of the API to the supervisor reporting it running again."""
    before = box.status().components["api"]
    assert before.pid is not None
    os.kill(before.pid, signal.SIGKILL)
    killed = time.monotonic()
    while time.monotonic() - killed < 30:
        now = box.status().components["api"]
        if now.running and now.pid != before.pid:
            return time.monotonic() - killed
        time.sleep(0.02)
    raise RuntimeError("the API did not come back within 30 s")


def bench(runs: int) -> dict[str, object]:
    cold: list[float] = []
    warm: list[float] = []
    recovery: list[float] = []
    per_component: dict[str, dict[str, list[float]]] = {"cold": {}, "warm": {}}
    base = Path(tempfile.mkdtemp(prefix="runbook-bench-"))
    os.chmod(base, 0o755)
    try:
        for run in range(runs):
            box = Sandbox(base / f"home{run}")
            try:
                started = time.monotonic()
                box.up(timeout=120)
                cold.append(time.monotonic() - started)
                for name, seconds in _component_times(box).items():
                    per_component["cold"].setdefault(name, []).append(seconds)
                recovery.append(_api_recovery(box))
                box.down()
                started = time.monotonic()
                box.up(timeout=120)
                warm.append(time.monotonic() - started)
                for name, seconds in _component_times(box).items():
                    per_component["warm"].setdefault(name, []).append(seconds)
            finally:
                box.destroy()
    finally:
        for leftover in base.iterdir():
            Sandbox(leftover).destroy()
        shutil.rmtree(base, ignore_errors=True)
    return {
        "runs": runs,
        "cpus": os.cpu_count(),
        "as_root": os.geteuid() == 0,
        "cold_s": _figures(cold),
        "warm_s": _figures(warm),
        "api_restart_after_kill_s": _figures(recovery),
        "time_to_running_s": {
            kind: {n: _figures(v) for n in COMPONENTS if (v := times.get(n))}
            for kind, times in per_component.items()
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    result = bench(max(1, args.runs))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"sandbox start-up, {result['runs']} runs, {result['cpus']} CPUs,"
          f" as {'root' if result['as_root'] else 'a normal user'}")
    for key, label in (("cold_s", "cold up"), ("warm_s", "warm up"),
                       ("api_restart_after_kill_s", "API back after kill")):
        f = result[key]
        assert isinstance(f, dict)
        print(f"  {label:<20} median {f['median']:.2f}s  min {f['min']:.2f}s  max {f['max']:.2f}s")
    times = result["time_to_running_s"]
    assert isinstance(times, dict)
    for kind, components in times.items():
        print(f"  time to running ({kind}, median):  " + ", ".join(
            f"{name} {f['median']:.2f}s" for name, f in components.items()
        ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
