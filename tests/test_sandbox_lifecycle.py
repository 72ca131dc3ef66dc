"""The sandbox's life: up from cold, status, idempotent up, down leaving nothing behind, a
second down, warm restarts, a killed supervisor, a failed start, root and a normal user.

These tests start their own sandboxes (the only ones that do); each works from whatever
state the previous one left, so they can run in any order or apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from runbook.errors import SandboxError
from runbook.sandbox import COMPONENTS, Sandbox, SandboxStatus
from runbook.sandbox.components import package_root
from runbook.sandbox.ports import load_ports, port_is_free, port_is_listening
from runbook.sandbox.procs import is_alive
from runbook.wait import wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def own_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("lifecycle")
    yield home
    Sandbox(home).destroy()


@pytest.fixture
def own(own_home: Path) -> Iterator[Sandbox]:
    box = Sandbox(own_home)
    yield box
    box.down()


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (PostgreSQL's backends and auxiliary processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # effective uid
    raise AssertionError(f"no Uid line for {pid}")


def test_up_status_idempotent_up_down_and_a_second_down(own: Sandbox) -> None:
    own.down()
    started = time.monotonic()
    status = own.up(timeout=90)
    elapsed = time.monotonic() - started
    assert status.running and status.ready, status
    print(f"up took {elapsed:.1f} s")  # speed is bench/sandbox_start.py's
    pids = {name: c.pid for name, c in status.components.items()}
    assert set(pids) == set(COMPONENTS)
    assert all(pid and is_alive(pid) for pid in pids.values()), pids
    assert own.status().to_json()["components"] == status.to_json()["components"]
    ports = load_ports(own.layout.ports)
    assert all(port_is_listening(port) for port in ports.values()), ports
    supervisor = status.supervisor_pid
    assert supervisor and is_alive(supervisor)
    everything = [supervisor, *pids.values(), *_children(pids["postgres"])]

    again = time.monotonic()
    assert {n: c.pid for n, c in own.up().components.items()} == pids
    assert time.monotonic() - again < 1.0

    assert own.down() is True
    assert [pid for pid in everything if is_alive(pid)] == []
    assert [port for port in ports.values() if not port_is_free(port)] == []
    after = own.status()
    assert after.supervisor_pid is None
    assert {c.state for c in after.components.values()} == {"stopped"}
    assert all(c.pid is None for c in after.components.values())
    assert not own.layout.control.exists()

    assert own.down() is False


def test_a_restarted_sandbox_keeps_its_ports_and_data(own: Sandbox) -> None:
    first = own.up(timeout=90)
    ports = load_ports(own.layout.ports)
    with psycopg.connect(own.env()["DATABASE_URL"], connect_timeout=5, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS lifecycle_marker (note text)")
        conn.execute("INSERT INTO lifecycle_marker VALUES ('survives a restart')")
    own.down()

    started = time.monotonic()
    second = own.up(timeout=90)
    warm = time.monotonic() - started
    assert second.running and second.supervisor_pid != first.supervisor_pid
    assert load_ports(own.layout.ports) == ports
    assert second.env["API_URL"] == first.env["API_URL"]
    with psycopg.connect(own.env()["DATABASE_URL"], connect_timeout=5) as conn:
        notes = [r[0] for r in conn.execute("SELECT note FROM lifecycle_marker")]
    assert "survives a restart" in notes
    assert warm < 30


def test_down_cleans_up_after_a_killed_supervisor(own: Sandbox) -> None:
    status = own.up(timeout=90)
    pids = [c.pid for c in status.components.values()]
    assert status.supervisor_pid is not None
    os.kill(status.supervisor_pid, signal.SIGKILL)

    assert own.down() in (True, False)  # the children may already have followed it
    assert [pid for pid in pids if pid and is_alive(pid)] == []
    ports = load_ports(own.layout.ports)
    assert [port for port in ports.values() if port_is_listening(port)] == []
    # and the sandbox starts again from there
    assert own.up(timeout=90).running


def test_a_failed_start_names_the_component_and_its_log_and_leaves_nothing(
    own: Sandbox,
) -> None:
    own.up(timeout=90)
    own.down()
    version_file = own.layout.pgdata / "PG_VERSION"
    real = version_file.read_text()
    version_file.write_text("99\n")
    try:
        with pytest.raises(SandboxError) as caught:
            own.up(timeout=60)
    finally:
        version_file.write_text(real)
    message = str(caught.value)
    assert "\n" not in message
    assert "postgres" in message and "postgres.log" in message
    assert "PostgreSQL 99" in message
    status = own.status()
    assert status.supervisor_pid is None
    assert {c.state for c in status.components.values()} <= {"stopped"}
    ports = load_ports(own.layout.ports)
    assert [port for port in ports.values() if port_is_listening(port)] == []


def test_a_port_taken_between_choosing_and_binding_it_is_chosen_again(own: Sandbox) -> None:
    own.up(timeout=90)
    own.down()
    taken = load_ports(own.layout.ports)["api"]
    old_supervisor = (json.loads(own.layout.state.read_text())["supervisor"] or {}).get("pid")
    outcome: list[object] = []
    starting = threading.Thread(target=lambda: outcome.append(_up_or_error(own)))
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        starting.start()

        def ports_chosen() -> bool:
            """The new supervisor has chosen its ports (its state names the components);
            the API waits for PostgreSQL and Redis, so it has not bound its port yet."""
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(own.layout.state.read_text())
                pid = (state.get("supervisor") or {}).get("pid")
                return pid != old_supervisor and bool(state.get("components"))
            return False

        assert wait_until(ports_chosen, timeout=30, interval=0.005).ok
        assert not port_is_listening(taken), "the API bound its port before the test could"
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        starting.join(120)
        assert outcome, "up did not return"
        status = outcome[0]
        assert isinstance(status, SandboxStatus), status
        assert status.running and status.ready
        moved = load_ports(own.layout.ports)["api"]
        assert moved != taken
        assert status.env["API_URL"].endswith(f":{moved}")
        with urllib.request.urlopen(f"{status.env['API_URL']}/health", timeout=5) as answer:
            assert answer.status == 200
    assert "address already in use" in own.logs("api").lower()


def _up_or_error(box: Sandbox) -> SandboxStatus | SandboxError:
    try:
        return box.up(timeout=90)
    except SandboxError as exc:
        return exc


def test_destroy_removes_the_state_and_a_private_data_directory(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    box = Sandbox(tmp_path_factory.mktemp("destroyed"))
    try:
        box.up(timeout=90)
        data = box.layout.pgdata.resolve()
        assert data.is_dir()
    finally:
        box.destroy()
    assert not box.layout.root.exists()
    assert not data.exists()
    assert box.status().supervisor_pid is None


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has to drop privileges")
def test_as_root_postgres_runs_as_nobody_and_the_rest_as_root(own: Sandbox) -> None:
    status = own.up(timeout=90)
    postmaster = status.components["postgres"].pid
    assert postmaster is not None
    nobody = 65534
    assert _uid(postmaster) == nobody
    assert all(_uid(child) == nobody for child in _children(postmaster))
    assert _uid(status.components["api"].pid or 0) == 0
    data = own.layout.pgdata.resolve()
    assert data.stat().st_uid == nobody
    # pytest's temporary directories are 0700, so nobody cannot reach them: the data lives
    # in a private directory under the temp dir, linked from the state directory.
    assert own.layout.pgdata.is_symlink()
    assert (data.parent.stat().st_mode & 0o777) == 0o700


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    done = subprocess.run(
        ["unshare", "--user", "--map-user=1000", "--map-group=1000", "true"],
        capture_output=True, timeout=10, check=False,
    )
    return done.returncode == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs user namespaces")
def test_as_a_normal_user_postgres_runs_in_place(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        euid_note = "already a normal user"  # the whole suite exercises that path
        pytest.skip(euid_note)
    if not _unshare_works():
        pytest.skip("unshare --user is not available to emulate a normal user")
    script = textwrap.dedent(
        """
        import json, os, sys
        from runbook.sandbox import Sandbox
        box = Sandbox(sys.argv[1])
        try:
            status = box.up(timeout=90)
            print(json.dumps({"euid": os.geteuid(), "running": status.running,
                              "link": os.path.islink(box.layout.pgdata)}))
        finally:
            box.destroy()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(package_root())}
    done = subprocess.run(
        ["unshare", "--user", "--map-user=1000", "--map-group=1000",
         sys.executable, "-c", script, str(tmp_path / "home")],
        capture_output=True, text=True, timeout=150, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"euid": 1000, "running": True, "link": False}
