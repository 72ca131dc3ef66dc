"""A sandbox started by a test run never outlives the run, even one killed with SIGKILL; a
sandbox without an owner (``runbook sandbox up``) outlives the process that started it.

The starters: a small Python process that makes itself an owner as every test process does
(``conftest.own_sandboxes``) and starts a sandbox as the ``sandbox`` fixture does, and a
test run with this directory's fixtures.
"""

from __future__ import annotations

import contextlib
import os
import re
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
    from runbook.sandbox import Sandbox
    from tests.conftest import own_sandboxes
    own_sandboxes()  # as every test process does
    if sys.argv[3] == "unowned":
        del os.environ["{OWNER_VARIABLE}"]
    Sandbox(sys.argv[1]).up(timeout=120)
    print("up", flush=True)
    if sys.argv[2] == "stay":
        time.sleep(600)  # not a poll: waits to be killed
""")

#: A test holding the session's sandbox, for a test run to be killed in: it writes where
#: the sandbox lives and its own pid (the xdist worker's), then waits.
HOLDER = textwrap.dedent("""
    import os, time
    from pathlib import Path
    import pytest

    @pytest.mark.timeout(900)
    def test_holds_the_sandbox(sandbox):
        Path(os.environ["HOLDER_NOTE"]).write_text(f"{sandbox.home}\\n{os.getpid()}\\n")
        time.sleep(600)  # not a poll: waits for the run to be killed
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
        # Owned by the starter and by the owners it inherited: this test process among them.
        owners = _state(box)["supervisor"]["owner_pids"]
        assert owners[-1] == starter.pid and os.getpid() in owners, owners
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


def test_a_killed_test_run_leaves_no_sandbox_behind(tmp_path: Path) -> None:
    """``pytest -n 1`` with this directory's fixtures, its process group killed with SIGKILL
    (as a CI job's timeout does) while the worker's session sandbox runs: no teardown runs,
    and the sandbox (its supervisor in a session of its own) stops all the same."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "test_holder.py").write_text(HOLDER)
    note = tmp_path / "note"
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-n", "1", "-p", "tests.conftest", "-p",
         "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"), "--rootdir",
         str(tmp_path / "run"), "--basetemp", str(tmp_path / "base"),
         str(tmp_path / "run" / "test_holder.py")],
        cwd=ROOT, env={**os.environ, "HOLDER_NOTE": str(note)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    worker = None
    try:
        held = wait_until(lambda: note.exists() and note.read_text().count("\n") == 2,
                          timeout=150, interval=0.2, stop=lambda: run.poll() is not None)
        if not held.ok:
            run.kill()
            pytest.fail(f"the run never held a sandbox: {run.communicate(timeout=30)[0]}")
        home_text, worker_text = note.read_text().split()
        home, worker = Path(home_text), int(worker_text)
        box = Sandbox(home)
        pids = _sandbox_pids(box)
        assert {run.pid, worker} <= set(_state(box)["supervisor"]["owner_pids"])
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate(timeout=30)
        assert wait_until(lambda: not is_alive(worker), timeout=10, interval=0.1).ok

        left = wait_until(lambda: {n: p for n, p in pids.items() if is_alive(p)},
                          timeout=SHUTDOWN_BOUND_S, interval=0.2, accept=lambda alive: not alive)
        assert left.ok, f"still running {SHUTDOWN_BOUND_S:.0f}s after the kill: {left.value}"
        assert _processes_naming(str(home)) == []
        # The supervisor's own orderly shutdown: no teardown deleted the sandbox's state.
        assert re.search(rf"owner \(pid ({run.pid}|{worker})\) is gone", box.logs("supervisor"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        run.communicate(timeout=30)
        if worker is not None and is_alive(worker):
            os.kill(worker, signal.SIGKILL)
            wait_until(lambda: not is_alive(worker), timeout=30, interval=0.2)
        if note.exists():
            Sandbox(note.read_text().split()[0]).destroy()


def test_a_sandbox_without_an_owner_outlives_its_starter(home: Path) -> None:
    starter = _start(home, "exit", "unowned")
    _, errors = starter.communicate(timeout=150)
    assert starter.returncode == 0, errors[-2000:]
    box = Sandbox(home)
    assert _state(box)["supervisor"]["owner_pids"] == []
    pids = _sandbox_pids(box)
    # Longer than a supervisor takes to notice its owner gone (``OWNER_POLL_S``).
    stopped = wait_until(lambda: [n for n, p in pids.items() if not is_alive(p)],
                         timeout=3.0, interval=0.2, accept=bool)
    assert not stopped.ok, f"stopped after its starter exited: {stopped.value}"
    assert box.status().running


def test_the_owners_are_live_processes_named_by_their_ids() -> None:
    assert Owner.from_environ({}) is None
    assert Owner.from_environ({OWNER_VARIABLE: " "}) is None
    me = Owner.from_environ({OWNER_VARIABLE: str(os.getpid())})
    assert me is not None and me.gone() is None
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait(timeout=30)
    both = Owner.from_environ({OWNER_VARIABLE: f"{os.getpid()}, {ended.pid}"})
    assert both is not None and both.pids == (os.getpid(), ended.pid)
    assert both.gone() == ended.pid
    # A pid the kernel gave to another process since: not the owner any more.
    assert Owner(me.pids, ((me.started[0] or 0) + 1,)).gone() == os.getpid()
    with pytest.raises(SandboxError, match="is not a list of process ids"):
        Owner.from_environ({OWNER_VARIABLE: f"{os.getpid()},me"})
