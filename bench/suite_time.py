"""The test suite's wall time against its goal, and where its CPU goes.

    .venv/bin/python bench/suite_time.py [--goal-s 480] [--json] [--log FILE]
        [--processes FILE] [-- PYTEST ARGS]

Runs ``./scripts/test`` (the README's test command, with PYTEST ARGS) once and, while it
runs, reads every process's CPU time from ``/proc`` every 0.3 s. Prints the wall time, the
CPU time of the run and of everything else on the machine (other services, the kernel's
threads), and the run's CPU by kind of process: the sandboxes' services, the runbook's own
pytest runs, the ``runbook`` commands, the test workers. On two cores the suite is bound by
CPU, so this says what to cut. A process that lives less than a sampling interval is missed
(a ``runbook --version``); the total from ``/usr/bin/time`` is the truth, the kinds are its
split. ``--log`` keeps pytest's whole output (a ``--durations`` table, say);
``--processes`` writes every process of the run as a JSON line (its kind, CPU seconds, first
and last seen, command line), for a split finer than the kinds.

Exit 0 when the suite passed within ``--goal-s`` seconds (the project's goal: 8 minutes on a
2-core machine), 1 when it passed but missed the goal, 2 when it failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._support import EXIT_BENCH_FAILED, EXIT_GOAL_MISSED, PROJECT_ROOT, machine

#: The suite's goal on a 2-core machine, seconds of wall time (issue 16).
GOAL_S = 480.0
SAMPLE_S = 0.3
_TICKS = os.sysconf("SC_CLK_TCK")
#: What a process is, by its command line: the first pattern that matches names it.
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern)) for name, pattern in (
        ("runbook's pytest runs", r"runbook/pytest\.ini"),
        ("sandbox api", r"runbook\.sandbox\.services\.api\b"),
        ("sandbox worker", r"runbook\.sandbox\.services\.worker\b"),
        ("sandbox s3", r"runbook\.sandbox\.services\.s3\b"),
        ("sandbox web and mail", r"runbook\.sandbox\.services\.(web|mail)\b"),
        ("sandbox supervisor", r"runbook\.sandbox\.supervisor\b"),
        ("postgres", r"^postgres|/postgres\b|pg_(dump|restore|ctl)|initdb"),
        ("redis", r"redis-server"),
        ("chromium", r"chrom"),
        ("node (allure)", r"\bnode\b|allure"),
        ("monitoring stack", r"prometheus|pushgateway|alertmanager|promtool"),
        ("test workers", r"exec\(eval\(sys\.stdin"),
        ("runbook commands", r"/bin/runbook\b|-m runbook\.cli\b"),
        ("other pytest runs", r"pytest"),
        ("other Python", r"python"),
    ))


def _kind(command: str) -> str:
    return next((name for name, pattern in KINDS if pattern.search(command)), "other")


class Sampler:
    """Every process's CPU seconds (user + system) as last seen, by (pid, start time)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, bytes], list[Any]] = {}
        self.ours: set[tuple[str, bytes]] = set()
        self.baseline: dict[tuple[str, bytes], float] = {}
        self.root = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._sample()  # what every process already running had used: not the run's
        self.baseline = {key: cpu for key, (_, cpu, *_) in self.seen.items()}
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()

    def _sample(self) -> None:
        parents: dict[str, str] = {}
        keys: dict[str, tuple[str, bytes]] = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat", "rb") as handle:
                    stat = handle.read()
                fields = stat[stat.rindex(b")") + 2:].split()
                cpu = (int(fields[11]) + int(fields[12])) / _TICKS
                key = (pid, fields[19])
                now = time.monotonic()
                if key not in self.seen:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        command = handle.read().replace(b"\0", b" ").decode(errors="replace")
                    self.seen[key] = [command, cpu, now, now]
                else:
                    self.seen[key][1] = cpu
                    self.seen[key][3] = now
            except (OSError, ValueError, IndexError):  # gone between listing and reading
                continue
            parents[pid] = fields[1].decode()
            keys[pid] = key
        # A process is the run's when this script is among its ancestors (sandboxes started
        # by tests included: their supervisors stay in the tree until the run ends).
        for pid, key in keys.items():
            walk, hops = pid, 0
            while walk in parents and walk != "1" and hops < 64:
                if walk == str(self.root):
                    self.ours.add(key)
                    break
                walk, hops = parents[walk], hops + 1

    def split(self) -> tuple[Counter[str], float]:
        """The run's CPU seconds by kind, and everything else's while it ran."""
        kinds: Counter[str] = Counter()
        others = 0.0
        for key, (command, total, *_) in self.seen.items():
            cpu = total - self.baseline.get(key, 0.0)
            if key in self.ours:
                kinds[_kind(command)] += cpu
            else:
                others += cpu
        return kinds, others

    def processes(self, started: float) -> list[dict[str, Any]]:
        """The run's processes, each with its kind, CPU and when it was seen (seconds into
        the run), the most CPU first."""
        rows = [{"kind": _kind(command), "cpu_s": round(total - self.baseline.get(key, 0.0), 2),
                 "first_s": round(first - started, 1), "last_s": round(last - started, 1),
                 "pid": int(key[0]), "command": command[:300]}
                for key, (command, total, first, last) in self.seen.items() if key in self.ours]
        return sorted(rows, key=lambda row: -row["cpu_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goal-s", type=float, default=GOAL_S)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--log", type=Path, help="write pytest's whole output here")
    parser.add_argument("--processes", type=Path,
                        help="write the run's processes here, one JSON line each")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    before = machine()
    sampler = Sampler()
    sampler.start()
    started = time.monotonic()
    done = subprocess.run([str(PROJECT_ROOT / "scripts" / "test"), *args.pytest_args],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    sampler.stop()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    kinds, others = sampler.split()
    if args.log:
        args.log.write_text(done.stdout + done.stderr)
    if args.processes:
        args.processes.write_text("".join(json.dumps(row) + "\n"
                                          for row in sampler.processes(started)))
    outcome = next((line.strip("= ") for line in reversed(done.stdout.splitlines())
                    if re.search(r"\d+ (passed|failed)", line)), "no pytest summary")
    figures = {
        "wall_s": round(wall, 1), "goal_s": args.goal_s, "outcome": outcome,
        "exit_code": done.returncode,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "cpu_by_kind_s": {k: round(v, 1) for k, v in kinds.most_common()},
        "cpu_elsewhere_s": round(others, 1),
        "machine_before": before, "machine_after": machine(),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"./scripts/test {' '.join(args.pytest_args)}: {outcome}")
        print(f"  wall {wall:.0f} s (goal {args.goal_s:.0f} s); CPU {figures['cpu_s']:.0f} s"
              f" ({figures['cpu_s'] / wall:.2f} cores busy on average); elsewhere on the"
              f" machine {others:.0f} s")
        for kind, seconds in kinds.most_common():
            print(f"  {seconds:7.1f} s  {kind}")
        print(f"  before: {before}\n  after:  {figures['machine_after']}")
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-2000:])
        return EXIT_BENCH_FAILED
    return EXIT_GOAL_MISSED if wall > args.goal_s else 0


if __name__ == "__main__":
    sys.exit(main())
