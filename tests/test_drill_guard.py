"""The restoration guard reverts a fault when the drill's process dies without reverting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from runbook.drills.guard import Guard
from runbook.drills.restorer import restore
from runbook.targets import RunSpec
from runbook.wait import wait_until
from tests.conftest import RunningSandbox

DRILL = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from runbook.drills import catalog  # registers every fault
    from runbook.drills.context import context_for
    from runbook.drills.faults import get
    from runbook.drills.guard import Guard
    from runbook.targets import RunSpec

    home, ledgers = sys.argv[1], Path(sys.argv[2])
    spec = RunSpec.sandbox(Path(home))
    guard = Guard.arm(ledgers, spec)
    context = context_for(spec)
    params = {"component": "api"}
    guard.record("component-down", params)
    get("component-down", context.platform.name).inject(context, params)
    print("injected", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)   # dies before any finally could revert
""")


def test_the_guard_reverts_a_fault_after_the_drill_is_killed(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    env = {**os.environ, "RUNBOOK_HOME": str(healthy_sandbox.home)}
    env.pop("API_URL", None)
    drill = subprocess.run([sys.executable, "-c", DRILL, str(healthy_sandbox.home),
                            str(tmp_path)], env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert drill.returncode == -signal.SIGKILL, drill.stderr
    assert "injected" in drill.stdout
    api_url = healthy_sandbox.env["API_URL"]

    def healthy() -> bool:
        return httpx.get(f"{api_url}/health", timeout=1).status_code == 200

    back = wait_until(healthy, timeout=30, interval=0.2)
    assert back.ok, back.summary()
    assert wait_until(lambda: not list(tmp_path.glob("*.json")), timeout=10).ok
    log = next(tmp_path.glob("*.log")).read_text()
    assert "died with faults pending: component-down" in log
    assert "reverted component-down: ok" in log
    print(f"guard restored the API {back.elapsed_s:.1f} s after the drill was killed")


def test_a_disarmed_guard_does_nothing(tmp_path: Path) -> None:
    guard = Guard.arm(tmp_path, RunSpec.sandbox(tmp_path / "x"))
    guard.disarm()
    assert guard.process is not None and guard.process.returncode == 0
    assert not guard.ledger.exists()


def test_restore_reverts_newest_first_and_keeps_going_after_a_failure(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    ledger.write_text(json.dumps({"owner_pid": 1, "target": {}, "disarmed": False, "faults": [
        {"name": "first", "params": {}}, {"name": "broken", "params": {}},
        {"name": "last", "params": {}},
    ]}))
    order: list[str] = []

    def revert(name: str, params: object) -> str:
        order.append(name)
        if name == "broken":
            raise RuntimeError("cannot")
        return "ok"

    assert restore(ledger, revert) == 1
    assert order == ["last", "broken", "first"]



def test_a_guard_that_only_watches_loads_neither_the_drills_nor_the_targets() -> None:
    """Every drill and game day starts a guard process; nearly all of them only watch. It
    imports the drills, the targets and pydantic only when it has a fault to revert."""
    done = subprocess.run(
        [sys.executable, "-c", "import json, sys, runbook.drills.restorer;"
         " print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, timeout=60, check=True)
    heavy = {"runbook.drills.catalog", "runbook.targets", "runbook.config", "pydantic"}
    loaded = heavy & set(json.loads(done.stdout))
    assert not loaded, sorted(loaded)
