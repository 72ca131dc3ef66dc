"""What the benchmark scripts share: a fresh sandbox in a temporary ``RUNBOOK_HOME``,
``runbook check`` run the way a user runs it, medians, the load average, the printed table.

Every figure the scripts judge is a ratio of two things measured in the same run, so the
load other processes put on the machine cancels out as far as it can; the load average is
printed with every figure so a reader can tell a quiet run from a busy one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runbook.config import META_VARIABLES, TARGET_VARIABLES
from runbook.sandbox import Sandbox

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: Exit codes of the benchmark scripts: a goal missed; the benchmark could not measure.
EXIT_GOAL_MISSED = 1
EXIT_BENCH_FAILED = 2
#: Seconds one ``runbook check`` may take before the benchmark gives up on it.
CHECK_TIMEOUT_S = 900.0


class BenchError(RuntimeError):
    """The benchmark could not measure (a check failed, the sandbox did not start)."""


def load_1min() -> float:
    """The 1-minute load average now."""
    return os.getloadavg()[0]


def machine() -> str:
    """``2 CPUs, load 7.38 9.49 6.36 (1/5/15 min)``."""
    one, five, fifteen = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min)"


@dataclass
class Series:
    """Seconds of repeated runs of one measurement, with the 1-minute load before each."""

    seconds: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)

    def add(self, seconds: float, load: float) -> None:
        self.seconds.append(seconds)
        self.loads.append(load)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def load(self) -> float:
        """The median 1-minute load average before the runs."""
        return statistics.median(self.loads)

    def to_json(self) -> dict[str, Any]:
        return {"median_s": round(self.median, 3), "runs_s": [round(s, 3) for s in self.seconds],
                "load_1min": round(self.load, 2)}


def print_table(rows: Sequence[tuple[str, str, str]], head: tuple[str, str, str] = (
        "figure", "median", "load (1 min)")) -> None:
    """A plain three-column table: name, value, load average."""
    width = max(len(r[0]) for r in (head, *rows))
    value_width = max(len(r[1]) for r in (head, *rows))
    for name, value, load in (head, *rows):
        print(f"  {name:<{width}}  {value:>{value_width}}  {load}")


@contextlib.contextmanager
def fresh_sandbox() -> Iterator[Sandbox]:
    """A sandbox started in a new temporary ``RUNBOOK_HOME``, destroyed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="runbook-bench-home-"))
    os.chmod(base, 0o755)  # PostgreSQL runs as another user when we are root
    box = Sandbox(base / "home")
    try:
        box.up(timeout=120)
        yield box
    finally:
        box.destroy()
        shutil.rmtree(base, ignore_errors=True)


def check_env(home: Path, features: Path | None = None) -> dict[str, str]:
    """This process's environment minus every target variable, so ``runbook check`` picks
    the sandbox of ``home`` as its target, with ``RUNBOOK_FEATURES`` when given."""
    env = {k: v for k, v in os.environ.items()
           if k not in (*TARGET_VARIABLES, *META_VARIABLES, "RUNBOOK_FEATURES")}
    env["RUNBOOK_HOME"] = str(home)
    if features is not None:
        env["RUNBOOK_FEATURES"] = str(features)
    return env


def runbook_command() -> list[str]:
    """The ``runbook`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "runbook"
    return [str(script)] if script.exists() else [sys.executable, "-m", "runbook.cli"]


@dataclass(frozen=True)
class CheckRun:
    """One ``runbook check``: wall seconds, exit code, output, and its ``summary.json``."""

    seconds: float
    code: int
    output: str
    summary: Mapping[str, Any] | None

    @property
    def scenarios(self) -> list[Mapping[str, Any]]:
        return list(self.summary.get("scenarios", [])) if self.summary else []

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for scenario in self.scenarios:
            counts[str(scenario.get("outcome"))] = counts.get(str(scenario.get("outcome")), 0) + 1
        return counts


def runbook_check(home: Path, args: Sequence[str], workdir: Path, *,
                  features: Path | None = None, kept: str = "",
                  variables: Mapping[str, str] | None = None) -> CheckRun:
    """Run ``runbook check ARGS --reports <dir>`` in ``workdir`` against the sandbox of
    ``home`` and time it from start to exit. The reports directory is emptied first, unless
    ``kept`` names it (then it is ``reports-<kept>``, holding the earlier runs of that name
    and their history, as a user's). ``variables`` go into its environment (a ``--target
    env`` run's target)."""
    reports = workdir / (f"reports-{kept}" if kept else "reports")
    if not kept:
        shutil.rmtree(reports, ignore_errors=True)
    command = [*runbook_command(), "check", *args, "--reports", str(reports)]
    started = time.monotonic()
    done = subprocess.run(command, cwd=workdir, env={**check_env(home, features),
                                                     **(variables or {})},
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace",
                          timeout=CHECK_TIMEOUT_S, check=False)
    seconds = time.monotonic() - started
    summary = None
    with contextlib.suppress(OSError, ValueError):
        summary = json.loads((reports / "summary.json").read_text(encoding="utf-8"))
    return CheckRun(seconds, done.returncode, done.stdout, summary)


#: A scenario's line in ``runbook check``'s output that failed or errored (``FAIL``, ``ERR``:
#: ``runbook.reporting.summary``'s marks).
_NOT_PASSED = re.compile(r"^\s+(FAIL|ERR)\s")
#: A line of a scenario's details (its reason, its evidence), below the scenario's line.
_DETAIL = re.compile(r"^\s{5,}\S")


def not_passed(output: str, details: int = 3) -> list[str]:
    """The lines of ``output`` naming a scenario that failed or errored, each with up to
    ``details`` of the detail lines below it."""
    lines = output.splitlines()
    found: list[str] = []
    for at, line in enumerate(lines):
        if _NOT_PASSED.match(line):
            found.append(line)
            found.extend(itertools.takewhile(_DETAIL.match, lines[at + 1:at + 1 + details]))
    return found


def require_passed(run: CheckRun, what: str) -> CheckRun:
    """``run`` when every scenario passed; else ``BenchError`` with the scenarios that did
    not pass and the tail of its output (a benchmark of a failing suite measures the
    failure, not the suite)."""
    if run.code != 0 or not run.scenarios:
        tail = "\n".join(run.output.strip().splitlines()[-15:])
        failures = "\n".join(not_passed(run.output)[:40])
        raise BenchError(f"{what} exited {run.code} ({run.outcomes()})"
                         + (f"; the scenarios that did not pass:\n{failures}\n" if failures
                            else "") + f"; its output ends:\n{tail}")
    return run


def require_nothing_ran(run: CheckRun, what: str) -> CheckRun:
    """``run`` when it selected no scenario (the start-up alone): ``runbook check`` says
    "no scenario matches" and exits 2."""
    if run.code != 2 or "no scenario matches" not in run.output:
        tail = "\n".join(run.output.strip().splitlines()[-15:])
        raise BenchError(f"{what} was to select nothing but exited {run.code}:\n{tail}")
    return run


#: A ``-k`` expression no scenario name matches: ``runbook check`` then only starts up.
NO_SCENARIO = "runbook_bench_selects_no_scenario"


def conclude(measure: Callable[[], dict[str, Any]], report: Callable[[dict[str, Any]], None],
             *, as_json: bool) -> int:
    """Run ``measure``, then print its figures (``report``, or JSON) and return the exit
    code: ``EXIT_GOAL_MISSED`` when its ``goal_met`` is false, ``EXIT_BENCH_FAILED`` (one
    line saying why) when it could not measure, else 0."""
    try:
        result = measure()
    except Exception as exc:  # one line saying why, whatever failed
        print(f"bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BENCH_FAILED
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return EXIT_GOAL_MISSED if result.get("goal_met") is False else 0
