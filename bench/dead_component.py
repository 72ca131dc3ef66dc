"""The synthetic run with one component stopped against the same run on a healthy target:
the moment the checks matter most must not be when they are slowest.

    .venv/bin/python bench/dead_component.py [--runs 3] [--only redis,api] [--json]

Starts a fresh sandbox in a temporary RUNBOOK_HOME (destroyed afterwards). Each run times,
in a rotating order, ``runbook check`` (the @synthetic scenarios without a cadence, as the
quick start runs them, less the checks over a window that outlives a run: ``SELECTION``)
against the healthy sandbox and with each of its components stopped by SIGSTOP (the process
keeps its port and never answers: the worst case for a client, worse than a refused
connection), continued (SIGCONT) right after. One warm-up run of the healthy check is
discarded. A run with a component stopped must fail (exit 1, or 4 when only warning-tier
checks needed it, as the mail provider); a healthy one must pass.

Prints the median wall of each against the healthy median with the load average; exits 1
when a stopped component's median is over ``GOAL`` times the healthy one, 2 when it cannot
measure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (
    BenchError,
    Series,
    conclude,
    fresh_sandbox,
    load_1min,
    machine,
    print_table,
    require_passed,
    runbook_check,
)

from runbook.sandbox import Sandbox
from runbook.wait import wait_until

#: The ratio of a run with one component stopped to the healthy run, at most.
GOAL = 2.0
#: Every run leaves out the checks over a window that outlives the run (the users' traffic
#: over 5 minutes, the e-mail failures of the last day): a stopped mail provider really
#: fails the e-mails sent meanwhile, and the next healthy run would rightly say so.
SELECTION = ("-k", "not (failed_email_delivery or the_users_error_rate or the_users_p99)")
COMPONENTS = ("api", "web", "postgres", "redis", "s3", "worker", "mail")


def _stopped_run(box: Sandbox, component: str, workdir: Path) -> float:
    """One ``runbook check`` with ``component`` stopped; its wall seconds."""
    pid = box.status().components[component].pid
    if not pid:
        raise BenchError(f"the sandbox's {component} has no process to stop")
    os.kill(pid, signal.SIGSTOP)
    try:
        run = runbook_check(box.home, SELECTION, workdir)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the supervisor replaced it meanwhile
            os.kill(pid, signal.SIGCONT)
    if run.code not in (1, 4) or not run.scenarios:  # 4: only warning-tier checks failed
        tail = "\n".join(run.output.strip().splitlines()[-12:])
        raise BenchError(f"with {component} stopped the run exited {run.code}, not 1 or 4;"
                         f" its output ends:\n{tail}")
    back = wait_until(lambda: runbook_check(box.home, ["-k", "quick_health or queue"],
                                            workdir).code == 0, timeout=120, interval=1)
    if not back.ok:
        raise BenchError(f"the sandbox did not come back after {component} was continued")
    return run.seconds


def measure(runs: int, only: tuple[str, ...]) -> dict[str, Any]:
    healthy = Series()
    stopped = {name: Series() for name in only}
    with fresh_sandbox() as box, tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        require_passed(runbook_check(box.home, SELECTION, workdir), "the warm-up check")
        for number in range(runs):
            order = [None, *only]
            shift = number % len(order)
            for name in order[shift:] + order[:shift]:
                load = load_1min()
                if name is None:
                    healthy.add(require_passed(runbook_check(box.home, SELECTION, workdir),
                                               "the healthy check").seconds, load)
                else:
                    stopped[name].add(_stopped_run(box, name, workdir), load)
    ratios = {name: series.median / healthy.median for name, series in stopped.items()}
    return {
        "machine": machine(), "runs": runs, "goal_ratio": GOAL,
        "healthy": healthy.to_json(),
        "stopped": {name: {**series.to_json(), "ratio": round(ratios[name], 2)}
                    for name, series in stopped.items()},
        "goal_met": all(ratio <= GOAL for ratio in ratios.values()),
    }


def report(result: dict[str, Any]) -> None:
    print(f"runbook check with one component stopped (SIGSTOP), {result['runs']} runs;"
          f" {result['machine']}")
    healthy = result["healthy"]
    rows = [("healthy", f"{healthy['median_s']:.2f} s", f"{healthy['load_1min']:.2f}")]
    for name, figures in result["stopped"].items():
        mark = "" if figures["ratio"] <= result["goal_ratio"] else "  <- over the goal"
        rows.append((f"{name} stopped", f"{figures['median_s']:.2f} s ({figures['ratio']:.2f}x)"
                     f"{mark}", f"{figures['load_1min']:.2f}"))
    print_table(rows)
    verdict = "met" if result["goal_met"] else "MISSED"
    print(f"goal: each at most {result['goal_ratio']:g}x the healthy run: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(COMPONENTS),
                        help=f"components to stop, comma-separated (default: {COMPONENTS})")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    only = tuple(n.strip() for n in args.only.split(",") if n.strip())
    unknown = sorted(set(only) - set(COMPONENTS))
    if unknown or args.runs < 1:
        print(f"bench: unknown component(s) {unknown}; choose from {', '.join(COMPONENTS)}"
              if unknown else "bench: --runs must be at least 1", file=sys.stderr)
        return 2
    return conclude(lambda: measure(args.runs, only), report, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
