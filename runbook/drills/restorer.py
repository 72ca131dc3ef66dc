"""The guard process (``python -m runbook.drills.restorer --ledger FILE``), started by
``Guard.arm``: it watches the drill's process and, when it dies (or disarms) with faults
still on the ledger, reverts them newest first through their registered reverts, logging
what it did beside the ledger.

It sits above the catalog (importing it registers every fault), so the engine, which arms
guards, never imports the drills it runs. The catalog is imported only when there is a fault
to revert, and the targets with it: a guard that only watches (nearly all of them) costs a
few milliseconds of CPU, not the second or two that loading every drill takes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook.drills.guard import POLL_S


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _log(message: str) -> None:
    print(f"{datetime.now(UTC).isoformat()} guard: {message}", flush=True)


def restore(ledger_path: Path, revert: Callable[[str, Mapping[str, Any]], str]) -> int:
    """Revert every fault left on the ledger, newest first; returns how many failed."""
    document = json.loads(ledger_path.read_text(encoding="utf-8"))
    failures = 0
    for entry in reversed(document["faults"]):
        try:
            outcome = revert(entry["name"], entry["params"])
            _log(f"reverted {entry['name']}: {outcome}")
        except Exception as exc:  # keep going: revert everything we can
            failures += 1
            _log(f"FAILED to revert {entry['name']}: {type(exc).__name__}: {exc}")
    return failures


def revert_for_real(name: str, params: Mapping[str, Any]) -> str:
    """Revert the fault ``name`` on the run's target (``RunSpec`` from this process's
    environment, as ``Guard.arm`` passed it), by its registered revert; "ok" or
    "not ok: ..."."""
    # imported only with a fault to revert: a guard that only watches never loads the drills
    from runbook.drills import catalog, faults  # every drill, and its faults' reverts
    from runbook.drills.context import context_for  # the target's clients, likewise
    from runbook.targets import RUN_VARIABLE, RunSpec  # pydantic's models, likewise

    assert catalog.DRILLS  # importing it registers every fault
    run = RunSpec.from_environ()
    if run is None:
        raise RuntimeError(f"no {RUN_VARIABLE} in the guard's environment: the target to"
                           " revert on is unknown")
    context = context_for(run)
    spec = faults.get(name, context.platform.name)
    activity = spec.revert(context, params)
    return "ok" if activity.ok else f"not ok: {activity.error}"


def watch(ledger_path: Path) -> int:
    """Poll the owner; when it dies with faults pending, restore them. Exit code: failures."""
    # not a poll: the guard watches the drill process for its whole lifetime, no deadline
    while True:
        try:
            document = json.loads(ledger_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            _log("ledger gone; nothing to guard")
            return 0
        disarmed = bool(document.get("disarmed"))
        if disarmed or not _alive(int(document["owner_pid"])):
            if not document["faults"]:
                ledger_path.unlink(missing_ok=True)
                return 0
            ended = "was disarmed" if disarmed else "died"
            _log(f"drill process {document['owner_pid']} {ended} with faults pending:"
                 f" {', '.join(f['name'] for f in document['faults'])}")
            failures = restore(ledger_path, revert_for_real)
            if failures == 0:
                ledger_path.unlink(missing_ok=True)
            return failures
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="restore a drill's faults if it dies")
    parser.add_argument("--ledger", type=Path, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the drill, not its guard
    return watch(args.ledger)


if __name__ == "__main__":
    sys.exit(main())
