"""The synthetic run with one component stopped against the same run on a healthy target:
the moment the checks matter most must not be when they are slowest.

    .venv/bin/python bench/dead_component.py [--runs 3] [--only redis,api]
        [--kinds stopped,dropped] [--json]

Starts a fresh sandbox in a temporary RUNBOOK_HOME (destroyed afterwards). Each run times,
in a rotating order, ``runbook check`` (the @synthetic scenarios without a cadence, as the
quick start runs them, less the checks over a window that outlives a run: ``SELECTION``):

* stopped: against the healthy sandbox and with each of its components stopped by SIGSTOP
  (the process keeps its port and never answers: the worst case for a client, worse than a
  refused connection), continued (SIGCONT) right after;
* dropped: ``--target env`` with the sandbox's own variables, healthy and with one
  component's address (``DROPPED``) replaced by a black hole that drops every connection
  attempt (``tests.network.Dropper``: a firewall that drops, a host gone), each against the
  healthy ``--target env`` run. The worker has no address: it is only stopped.

One warm-up run of each healthy check is discarded. A run with a component stopped or
dropped must fail (exit 1, or 4 when only warning-tier checks needed it, as the mail
provider); a healthy one must pass.

Prints the median wall of each against its healthy median with the load average; exits 1
when a component's median is over ``GOAL`` times the healthy one, 2 when it cannot
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
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.network

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
from tests.network import Dropper

#: The ratio of a run with one component stopped to the healthy run, at most.
GOAL = 2.0
#: Every run leaves out the checks over a window that outlives the run (the users' traffic
#: over 5 minutes, the e-mail failures of the last day): a stopped mail provider really
#: fails the e-mails sent meanwhile, and the next healthy run would rightly say so.
SELECTION = ("-k", "not (failed_email_delivery or the_users_error_rate or the_users_p99)")
COMPONENTS = ("api", "web", "postgres", "redis", "s3", "worker", "mail")
#: The variable that holds each component's address, for the dropped kind.
DROPPED = {"api": "API_URL", "web": "WEB_URL", "postgres": "DATABASE_URL",
           "redis": "REDIS_URL", "s3": "S3_ENDPOINT_URL", "mail": "RESEND_API_URL"}
KINDS = ("stopped", "dropped")
ENV_TARGET = ("--target", "env")


def _at_port(url: str, port: int) -> str:
    """``url`` with its port replaced (its user, password and path kept)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2].rpartition(":")[0] or parts.hostname or ""
    credentials = parts.netloc.rpartition("@")[0]
    netloc = (f"{credentials}@" if credentials else "") + f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _dropped_run(box: Sandbox, component: str, workdir: Path) -> float:
    """One ``runbook check --target env`` with ``component``'s address dropping every
    connection attempt; its wall seconds."""
    variables = box.env()
    hole = Dropper()
    try:
        variables[DROPPED[component]] = _at_port(variables[DROPPED[component]], hole.port)
        run = runbook_check(box.home, [*ENV_TARGET, *SELECTION], workdir, variables=variables)
    finally:
        hole.close()
    if run.code not in (1, 4) or not run.scenarios:
        tail = "\n".join(run.output.strip().splitlines()[-12:])
        raise BenchError(f"with {component} dropped the run exited {run.code}, not 1 or 4;"
                         f" its output ends:\n{tail}")
    return run.seconds


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


def measure(runs: int, only: tuple[str, ...], kinds: tuple[str, ...]) -> dict[str, Any]:
    healthy = {kind: Series() for kind in kinds}
    dead = {kind: {name: Series() for name in only if kind == "stopped" or name in DROPPED}
            for kind in kinds}
    with fresh_sandbox() as box, tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)

        def healthy_run(kind: str) -> float:
            args = SELECTION if kind == "stopped" else (*ENV_TARGET, *SELECTION)
            variables = box.env() if kind == "dropped" else None
            return require_passed(runbook_check(box.home, args, workdir, variables=variables),
                                  f"the healthy check ({kind})").seconds

        for kind in kinds:
            healthy_run(kind)  # the warm-up, discarded
        for number in range(runs):
            order: list[tuple[str, str | None]] = [
                (kind, name) for kind in kinds for name in (None, *dead[kind])]
            shift = number % len(order)
            for kind, name in order[shift:] + order[:shift]:
                load = load_1min()
                if name is None:
                    healthy[kind].add(healthy_run(kind), load)
                elif kind == "stopped":
                    dead[kind][name].add(_stopped_run(box, name, workdir), load)
                else:
                    dead[kind][name].add(_dropped_run(box, name, workdir), load)
    ratios = {kind: {name: series.median / healthy[kind].median
                     for name, series in dead[kind].items()} for kind in kinds}
    return {
        "machine": machine(), "runs": runs, "goal_ratio": GOAL,
        "healthy": {kind: healthy[kind].to_json() for kind in kinds},
        **{kind: {name: {**series.to_json(), "ratio": round(ratios[kind][name], 2)}
                  for name, series in dead[kind].items()} for kind in kinds},
        "goal_met": all(ratio <= GOAL for kind in kinds for ratio in ratios[kind].values()),
    }


def report(result: dict[str, Any]) -> None:
    kinds = tuple(result["healthy"])
    print(f"runbook check with one component {' or '.join(kinds)}, {result['runs']} runs;"
          f" {result['machine']}")
    rows = []
    for kind in kinds:
        healthy = result["healthy"][kind]
        rows.append((f"healthy ({'the sandbox' if kind == 'stopped' else '--target env'})",
                     f"{healthy['median_s']:.2f} s", f"{healthy['load_1min']:.2f}"))
        for name, figures in result[kind].items():
            mark = "" if figures["ratio"] <= result["goal_ratio"] else "  <- over the goal"
            rows.append((f"  {name} {kind}",
                         f"{figures['median_s']:.2f} s ({figures['ratio']:.2f}x){mark}",
                         f"{figures['load_1min']:.2f}"))
    print_table(rows)
    verdict = "met" if result["goal_met"] else "MISSED"
    print(f"goal: each at most {result['goal_ratio']:g}x its healthy run: {verdict}"
          " (stopped: SIGSTOP; dropped: its address drops every connection attempt)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(COMPONENTS),
                        help=f"components to stop, comma-separated (default: {COMPONENTS})")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"how a component is dead, comma-separated (default: {KINDS})")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    only = tuple(n.strip() for n in args.only.split(",") if n.strip())
    kinds = tuple(n.strip() for n in args.kinds.split(",") if n.strip())
    unknown = sorted(set(only) - set(COMPONENTS))
    unknown_kinds = sorted(set(kinds) - set(KINDS))
    problem = (
        f"unknown component(s) {unknown}; choose from {', '.join(COMPONENTS)}" if unknown
        else "--only names no component; name one or more" if not only
        else f"unknown kind(s) {unknown_kinds}; choose from {', '.join(KINDS)}"
        if unknown_kinds
        else "--kinds names no kind; name one or more" if not kinds
        else "--runs must be at least 1" if args.runs < 1
        else f"--kinds dropped applies to {', '.join(DROPPED)}, and --only names none of them"
        if kinds == ("dropped",) and not set(only) & set(DROPPED) else "")
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    # The worker alone has no address to drop: its dropped kind would measure nothing.
    kinds = tuple(k for k in kinds if k == "stopped" or set(only) & set(DROPPED))
    return conclude(lambda: measure(args.runs, only, kinds), report, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
