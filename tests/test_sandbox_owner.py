"""A sandbox started by a test run never outlives the run, even one killed with SIGKILL; a
sandbox without an owner (``runbook sandbox up``) outlives the process that started it.

The starter is a small Python process that imports this directory's ``conftest`` (which
names the importing process the owner of its sandboxes, as it does in every test process)
and starts a sandbox as the ``sandbox`` fixture does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runbook.errors import SandboxError
from runbook.sandbox import Sandbox
from runbook.sandbox.components import package_root
from runbook.sandbox.layout import read_json
from runbook.sandbox.ports import load_ports, port_is_listening
from runbook.sandbox.procs import is_alive
from runbook.sandbox.supervisor import OWNER_VARIABLE, Owner
from runbook.wait import wait_until

pytestmark = pytest.mark.timeout(180)

ROOT = package_root()

#: Starts a sandbox in ``argv[1]`` the way the tests do (``argv[3] == "unowned"``: with the
#: owner unset again, as ``runbook sandbox up`` starts one), says so, then stays to be killed
#: (``argv[2] == "stay"``) or exits without bringing it down.
STARTER = textwrap.dedent(f"""
    import os, sys, time
    import tests.conftest  # names this process the owner, as in every test process
    from runbook.sandbox import Sandbox
    if sys.argv[3] == "unowned":
        del os.environ["{OWNER_VARIABLE}"]
    Sandbox(sys.argv[1]).up(timeout=120)
    print("up", flush=True)
    if sys.argv[2] == "stay":
        time.sleep(600)  # not a poll: waits to be killed
""")

#: How long an orderly shutdown may take once the owner is gone (a loaded machine included).
SHUTDOWN_BOUND_S = 60.0


def _start(home: Path, then: str, owner: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", STARTER, str(home), then, owner], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _state(box: Sandbox) -> dict[str, Any]:
    state = read_json(box.layout.state)
    assert isinstance(state, dict), state
    return state


def _sandbox_pids(box: Sandbox) -> dict[str, int]:
    """The supervisor's and every component's pid, from the sandbox's own state files."""
    components = _state(box)["components"]
    pids = {name: int(raw["pid"]) for name, raw in components.items()
            if raw.get("pid")}
    supervisor = box.supervisor_pid()
    assert supervisor is not None
    pids["supervisor"] = supervisor
    return pids


def _processes_naming(text: str) -> list[int]:
    """Live processes whose command line holds ``text`` (the sandbox's home)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, UnicodeDecodeError):
                continue
            if text in cmdline and is_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "home"
    Sandbox(tmp_path / "home").destroy()


def test_a_sandbox_started_by_a_killed_test_process_stops_with_it(home: Path) -> None:
    starter = _start(home, "stay", "owned")
    try:
        assert starter.stdout is not None
        if starter.stdout.readline().strip() != "up":
            starter.kill()
            pytest.fail(f"the sandbox did not start: {starter.communicate(timeout=30)[1]}")
        box = Sandbox(home)
        assert _state(box)["supervisor"]["owner_pid"] == starter.pid
        pids = _sandbox_pids(box)
        assert set(pids) == {"supervisor", "postgres", "redis", "s3", "mail", "web", "api",
                             "worker"}
        ports = load_ports(box.layout.ports)
    finally:
        starter.kill()
        starter.communicate(timeout=30)
    assert starter.returncode == -signal.SIGKILL

    left = wait_until(lambda: {n: p for n, p in pids.items() if is_alive(p)},
                      timeout=SHUTDOWN_BOUND_S, interval=0.2, accept=lambda alive: not alive)
    assert left.ok, f"still running {SHUTDOWN_BOUND_S:.0f}s after the kill: {left.value}"
    assert _processes_naming(str(home)) == []
    assert [n for n, p in ports.items() if port_is_listening(p, timeout=0.2)] == []
    # The supervisor's own orderly shutdown stopped them (no `down` swept them).
    assert f"owner (pid {starter.pid}) is gone" in box.logs("supervisor")
    components = _state(box)["components"]
    assert {n: (c["state"], c["pid"]) for n, c in components.items()} == {
        n: ("stopped", None) for n in components}


def test_a_sandbox_without_an_owner_outlives_its_starter(home: Path) -> None:
    starter = _start(home, "exit", "unowned")
    _, errors = starter.communicate(timeout=150)
    assert starter.returncode == 0, errors[-2000:]
    box = Sandbox(home)
    assert _state(box)["supervisor"]["owner_pid"] is None
    pids = _sandbox_pids(box)
    # Longer than a supervisor takes to notice its owner gone (``OWNER_POLL_S``).
    stopped = wait_until(lambda: [n for n, p in pids.items() if not is_alive(p)],
                         timeout=3.0, interval=0.2, accept=bool)
    assert not stopped.ok, f"stopped after its starter exited: {stopped.value}"
    assert box.status().running


def test_the_owner_is_a_live_process_named_by_its_id() -> None:
    assert Owner.from_environ({}) is None
    assert Owner.from_environ({OWNER_VARIABLE: ""}) is None
    me = Owner.from_environ({OWNER_VARIABLE: str(os.getpid())})
    assert me is not None and me.alive()
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait(timeout=30)
    gone = Owner.from_environ({OWNER_VARIABLE: str(ended.pid)})
    assert gone is not None and not gone.alive()
    # A pid the kernel gave to another process since: not the owner any more.
    assert not Owner(os.getpid(), (me.started or 0) + 1).alive()
    with pytest.raises(SandboxError, match="is not a process id"):
        Owner.from_environ({OWNER_VARIABLE: "me"})
