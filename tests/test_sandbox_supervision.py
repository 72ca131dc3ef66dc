"""The supervisor as the runbook's drills use it: a killed API comes back, a held component
stays down, redis stays down until restarted, environment overrides apply to one run.

Every test leaves the session's sandbox healthy again (``healthy_sandbox``)."""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from runbook.errors import SandboxError
from runbook.sandbox.ports import port_is_listening
from runbook.sandbox.procs import is_alive

if TYPE_CHECKING:
    from conftest import RunningSandbox

pytestmark = pytest.mark.timeout(120)


def _redis(url: str) -> redis.Redis:
    """A client with finite timeouts and no retries (redis-py retries 3x by default)."""
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                retry=Retry(NoBackoff(), 0))


def _healthy(api_url: str) -> bool:
    try:
        response = httpx.get(f"{api_url}/health", timeout=1.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("status") == "ok"


def test_a_killed_api_is_restarted_and_healthy_within_5s(
    healthy_sandbox: RunningSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    box = healthy_sandbox.sandbox
    before = box.status().components["api"]
    assert before.running and before.pid

    os.kill(before.pid, signal.SIGKILL)
    killed = time.monotonic()
    recovered = None
    while time.monotonic() - killed < 10:
        now = box.status().components["api"]
        if now.running and now.pid != before.pid and _healthy(healthy_sandbox.env["API_URL"]):
            recovered = time.monotonic() - killed
            break
        time.sleep(0.05)
    with capsys.disabled():
        print(f"\n[sandbox] API killed -> healthy again in {recovered or float('nan'):.2f} s")

    assert recovered is not None, "the API did not come back within 10 s"
    assert recovered <= 5.0
    after = box.status().components["api"]
    assert not is_alive(before.pid)
    assert after.restarts == before.restarts + 1
    assert after.last_exit is not None and after.last_exit.signal == "SIGKILL"
    assert "died; restarting" in box.logs("api", 50)


def test_a_stopped_component_is_held_down_until_started(healthy_sandbox: RunningSandbox) -> None:
    box = healthy_sandbox.sandbox
    api_url = healthy_sandbox.env["API_URL"]
    port = int(api_url.rsplit(":", 1)[1])
    old_pid = box.status().components["api"].pid

    held = box.stop("api")
    assert held.state == "held"
    assert not is_alive(old_pid)
    time.sleep(2.0)  # longer than any restart backoff
    still = box.status().components["api"]
    assert still.state == "held" and still.pid is None
    assert not port_is_listening(port)

    started = box.start("api")
    assert started.running and started.pid != old_pid
    assert _healthy(api_url)


def test_a_killed_redis_stays_down_until_restarted_and_keeps_its_data(
    healthy_sandbox: RunningSandbox,
) -> None:
    box = healthy_sandbox.sandbox
    url = healthy_sandbox.env["REDIS_URL"]
    client = _redis(url)
    try:
        client.set("runbook:test:durable", "kept")
    finally:
        client.close()
    before = box.status().components["redis"]

    os.kill(before.pid, signal.SIGKILL)
    time.sleep(1.0)
    down = box.status().components["redis"]
    assert down.state == "crashed" and down.pid is None
    assert down.restarts == before.restarts

    started = time.monotonic()
    up = box.restart("redis")
    elapsed = time.monotonic() - started
    assert up.running and up.pid != before.pid
    print(f"redis restarted in {elapsed:.1f} s")
    client = _redis(url)
    try:
        assert client.ping()
        assert client.get("runbook:test:durable") == b"kept"  # appendonly survives a kill
    finally:
        client.close()


def test_overrides_apply_to_one_run_and_a_plain_restart_clears_them(
    healthy_sandbox: RunningSandbox,
) -> None:
    box = healthy_sandbox.sandbox
    # The API without DATABASE_URL refuses to start: the supervisor keeps restarting it.
    failing = box.restart("api", {"DATABASE_URL": None}, wait=False)
    assert failing.env_overrides == ("DATABASE_URL",)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        api = box.status().components["api"]
        if api.last_exit is not None and api.last_exit.launch >= failing.launches:
            break
        time.sleep(0.05)
    assert api.last_exit is not None and api.last_exit.code == 2, api  # its config error
    assert "missing environment variable DATABASE_URL" in box.logs("api", 50)
    with pytest.raises(SandboxError, match="api"):
        box.restart("api", {"DATABASE_URL": None}, timeout=5)

    # The worker with another API_SECRET runs (its jobs would fail): the drill's setup.
    worker = box.restart("worker", {"API_SECRET": "not-the-api-secret"})
    assert worker.running and worker.env_overrides == ("API_SECRET",)
    assert "not-the-api-secret" not in (healthy_sandbox.home / "sandbox" / "state.json").read_text()

    restored = box.restart("api")
    assert restored.running and restored.env_overrides == ()
    assert box.restart("worker").env_overrides == ()
    assert _healthy(healthy_sandbox.env["API_URL"])


def test_commands_name_unknown_components(sandbox: RunningSandbox) -> None:
    with pytest.raises(SandboxError, match="unknown component 'db'"):
        sandbox.sandbox.restart("db")
    with pytest.raises(SandboxError, match="unknown component"):
        sandbox.sandbox.logs("nginx")


def test_up_on_a_running_sandbox_returns_at_once_and_repairs_what_a_drill_left(
    healthy_sandbox: RunningSandbox,
) -> None:
    box = healthy_sandbox.sandbox
    pids = {n: c.pid for n, c in box.status().components.items()}
    started = time.monotonic()
    again = box.up()
    assert time.monotonic() - started < 1.0
    assert {n: c.pid for n, c in again.components.items()} == pids

    box.stop("mail")
    assert box.status().components["mail"].state == "held"
    box.restart("web", {"PORT": "not-a-port"}, wait=False)  # a crash loop: exit 2 each time
    status = box.up(timeout=30)
    assert status.running
    assert status.components["mail"].pid != pids["mail"]
    assert status.components["web"].env_overrides == ()


def test_admin_token_can_be_minted_again_after_a_revoke_all(sandbox: RunningSandbox) -> None:
    api = sandbox.env["API_URL"]
    old = sandbox.env["ADMIN_TOKEN"]
    revoked = httpx.post(f"{api}/api/admin/tokens/revoke-all",
                         headers={"Authorization": f"Bearer {old}"}, timeout=5.0)
    assert revoked.status_code == 200, revoked.text
    me = httpx.get(f"{api}/api/auth/me", headers={"Authorization": f"Bearer {old}"}, timeout=5.0)
    assert me.status_code == 401

    new = sandbox.sandbox.refresh_admin_token()
    assert new != old and sandbox.env["ADMIN_TOKEN"] == new
    me = httpx.get(f"{api}/api/auth/me", headers={"Authorization": f"Bearer {new}"}, timeout=5.0)
    assert me.status_code == 200, me.text
