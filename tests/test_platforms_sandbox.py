"""The sandbox adapter against the real sandbox: status, logs with a real error counted,
variables as the supervisor gave them to each process, and the safety gate."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from runbook.config import Target
from runbook.errors import SafetyGateError
from runbook.platforms import platform_for
from runbook.platforms.base import fingerprint
from runbook.platforms.sandbox import SandboxPlatform
from runbook.probes.logs import recent_logs
from runbook.wait import wait_until

#: A database URL nobody listens on: the API started with it has "lost its database".
LOST_DATABASE = "postgresql://legacyvideo:not-the-password@127.0.0.1:1/legacyvideo"


@pytest.fixture(scope="module")
def sandbox_target(sandbox: Any) -> Target:
    return Target.from_variables("sandbox", sandbox.env, source="sandbox",
                                 environment="sandbox", platform="sandbox")


def _secrets(env: Any) -> list[str]:
    return [env[n] for n in ("API_SECRET", "AWS_SECRET_ACCESS_KEY", "RESEND_API_KEY",
                             "DATABASE_URL", "REDIS_URL")]


def test_platform_for_a_sandbox_target_is_the_sandbox_adapter(
    sandbox: Any, sandbox_target: Target,
) -> None:
    platform = platform_for(sandbox_target, allow_changes=False)
    assert isinstance(platform, SandboxPlatform)
    assert platform.sandbox.home == sandbox.home


def test_status_is_the_supervisors_view(sandbox: Any, sandbox_target: Target) -> None:
    platform = platform_for(sandbox_target, allow_changes=False)
    everything = platform.status()
    assert everything.ok, everything.error
    for name in ("api", "worker", "web", "postgres", "redis"):
        assert f"{name} running pid=" in everything.output
    api = platform.status("api")
    assert api.ok and api.output.startswith("api running pid=")
    assert "worker" not in api.output
    assert api.command == ("library", "runbook.sandbox.Sandbox.status")


def test_variables_are_those_the_supervisor_gave_each_process(
    sandbox: Any, sandbox_target: Target, capsys: pytest.CaptureFixture[str],
) -> None:
    platform = platform_for(sandbox_target, allow_changes=False)
    api, worker, web = (platform.variables(s) for s in ("api", "worker", "web"))
    env = sandbox.env
    assert api.ok and worker.ok and web.ok
    assert api.activity.command[2].startswith("/proc/")
    # "Verify API_SECRET matches between services", without showing it.
    assert api.matches(worker, "API_SECRET") is True
    assert api.fingerprints["API_SECRET"] == fingerprint(env["API_SECRET"])
    assert api.fingerprints["DATABASE_URL"] == fingerprint(env["DATABASE_URL"])
    assert "RESEND_API_KEY" in worker.fingerprints and "RESEND_API_KEY" not in api.fingerprints
    assert set(web.fingerprints) == {"API_URL", "HOST", "PORT"}
    for variables in (api, worker, web):
        shown = repr(variables) + json.dumps(variables.evidence())
        print(shown)
        for secret in _secrets(env):
            assert secret not in shown
    captured = capsys.readouterr().out
    assert not any(secret in captured for secret in _secrets(env))


#: Log lines both counts read.
WINDOW = 20_000


def test_an_api_error_is_in_the_logs_and_counted(
    healthy_sandbox: Any, sandbox_target: Target,
) -> None:
    """Start the API with a database nobody answers on (the runbook's "Database connection
    lost"): a login then fails with 500 and one ERROR line, which the logs must show."""
    box = healthy_sandbox.sandbox
    platform = platform_for(sandbox_target, allow_changes=False)
    # Both counts over the same window, wide enough that no earlier error drops out of it.
    before = recent_logs(platform, "api", lines=WINDOW)
    assert before.ok, before.activity.error

    box.restart("api", {"DATABASE_URL": LOST_DATABASE})
    overridden = platform.variables("api")
    assert overridden.fingerprints["DATABASE_URL"] == fingerprint(LOST_DATABASE)
    assert overridden.matches(platform.variables("worker"), "DATABASE_URL") is False

    response = httpx.post(f"{sandbox_target.api_url}/api/auth/login", timeout=15,
                          json={"email": "user@legacyvideo.test", "password": "whatever"})
    assert response.status_code == 500

    # The request line is written just after the response goes out: allow it a moment.
    waited = wait_until(lambda: recent_logs(platform, "api", lines=WINDOW), timeout=5,
                        interval=0.05, accept=lambda s: s.server_errors > before.server_errors)
    assert waited.ok and waited.value is not None, waited.summary()
    summary = waited.value
    logs = platform.logs("api", lines=200)
    unhandled = [line for line in logs.error_lines
                 if " ERROR api: unhandled error on POST /api/auth/login" in line]
    assert unhandled, f"no ERROR line for the failed login in: {logs.lines[-5:]}"
    assert summary.error_lines >= before.error_lines + 2  # the ERROR line and the 500 line
    assert summary.server_errors >= before.server_errors + 1
    assert summary.error_rate is not None and summary.error_rate > 0
    assert "not-the-password" not in "\n".join(logs.lines)


def test_logs_of_every_service_can_be_read(sandbox: Any, sandbox_target: Target) -> None:
    platform = platform_for(sandbox_target, allow_changes=False)
    for service in ("api", "worker", "web"):
        logs = platform.logs(service, since="1h", lines=50)
        assert logs.ok and logs.lines, f"no {service} log lines"
        assert len(logs.lines) <= 50
        assert logs.activity.command == ("library", "runbook.sandbox.Sandbox.logs", service)


def test_restart_needs_allow_changes(sandbox: Any, sandbox_target: Target) -> None:
    before = sandbox.sandbox.status().components["worker"]
    with pytest.raises(SafetyGateError, match="built without allow_changes"):
        platform_for(sandbox_target, allow_changes=False).restart("worker")
    after = sandbox.sandbox.status().components["worker"]
    assert (after.pid, after.launches) == (before.pid, before.launches)


def test_restart_through_the_adapter_replaces_the_process(
    healthy_sandbox: Any, sandbox_target: Target,
) -> None:
    box = healthy_sandbox.sandbox
    before = box.status().components["web"]
    activity = platform_for(sandbox_target, allow_changes=True).restart("web")
    after = box.status().components["web"]
    assert activity.ok, activity.error
    assert activity.command == ("library", "runbook.sandbox.Sandbox.restart", "web")
    assert after.running and after.pid != before.pid and after.launches == before.launches + 1


def test_without_proc_the_configured_environment_gives_the_same_fingerprints(
    sandbox: Any, sandbox_target: Target, monkeypatch: pytest.MonkeyPatch,
) -> None:
    platform = platform_for(sandbox_target, allow_changes=False)
    from_process = platform.variables("worker")
    monkeypatch.setattr("runbook.platforms.sandbox._process_environ", lambda pid, start: None)
    configured = platform.variables("worker")
    assert configured.ok and configured.activity.command[1:] == (
        "runbook.sandbox.components.service_environment", "worker")
    assert "could not be read" in configured.note
    assert dict(configured.fingerprints) == dict(from_process.fingerprints)
