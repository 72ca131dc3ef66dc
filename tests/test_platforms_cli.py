"""The Railway, Vercel and Kubernetes adapters against stand-in CLIs (``tests/fakebin``) put
first on PATH: the exact runbook commands are issued, their output parsed, no secret kept,
a missing CLI is one line, a hanging CLI is stopped in time."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runbook.config import Target
from runbook.errors import ConfigError, RunbookError, SafetyGateError
from runbook.platforms import platform_for
from runbook.platforms.base import PlatformTimeouts, Runner, fingerprint
from runbook.platforms.kubernetes import KubernetesNames, KubernetesPlatform
from runbook.platforms.railway import RailwayPlatform, parse_variables
from runbook.probes.logs import recent_logs

FAKEBIN = Path(__file__).parent / "fakebin"
API_SECRET = "fake-api-secret-4f9c2e7a1b"
DB_PASSWORD = "fake-db-password-8d3e1c"
RESEND_KEY = "re_fakeResendKey_7H2kLm9Q"
AWS_SECRET = "fakeAwsSecret/Kq8+Zr2Vb6Nw4Xy"
#: What the stand-ins print as the service's variables, secrets included.
VARIABLES = {
    "API_SECRET": API_SECRET,
    # long enough to wrap in Railway's 80-column table
    "DATABASE_URL": f"postgresql://legacyvideo:{DB_PASSWORD}@db.railway.internal:5432/"
                    "legacyvideo?schema=public",
    "RESEND_API_KEY": RESEND_KEY,
    "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    "S3_BUCKET": "legacyvideo-uploads",
}
SECRETS = (API_SECRET, DB_PASSWORD, RESEND_KEY, AWS_SECRET)


@dataclass
class FakeBin:
    """The stand-ins' call record."""

    record: Path

    def calls(self) -> list[list[str]]:
        """Each call as ``[program, *argv]``."""
        return [[e["program"], *e["argv"]] for e in self.entries()]

    def entries(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]


@pytest.fixture
def fakebin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBin]:
    """tests/fakebin first on PATH, recording into a fresh file, printing ``VARIABLES``."""
    record = tmp_path / "calls.jsonl"
    variables = tmp_path / "variables.json"
    variables.write_text(json.dumps(VARIABLES))
    monkeypatch.setenv("PATH", f"{FAKEBIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKEBIN_RECORD", str(record))
    monkeypatch.setenv("FAKEBIN_VARIABLES", str(variables))
    monkeypatch.delenv("FAKEBIN_MODE", raising=False)
    for name in ("RUNBOOK_K8S_NAMESPACE", "RUNBOOK_K8S_DEPLOYMENT_API",
                 "RUNBOOK_K8S_DEPLOYMENT_WORKER", "RUNBOOK_K8S_DEPLOYMENT_WEB",
                 "RUNBOOK_VERCEL_DIR", "RUNBOOK_PLATFORM_TIMEOUT", "RUNBOOK_RESTART_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    yield FakeBin(record)


def _target(platform: str) -> Target:
    return Target.from_variables("staging", {
        "API_URL": "https://api.legacyvideo.example.com",
        "WEB_URL": "https://legacyvideo.example.com",
        "API_SECRET": API_SECRET,
        "DATABASE_URL": VARIABLES["DATABASE_URL"],
        "PLATFORM": platform,
        "RUNBOOK_ENVIRONMENT": "staging",
    }, source="test")


def _no_secret_in(*things: object) -> None:
    __tracebackhide__ = True
    for thing in things:
        evidence = getattr(thing, "evidence", None)
        shown = repr(thing) + (json.dumps(evidence(), default=str) if evidence else "")
        activity = getattr(thing, "activity", thing)
        shown += "".join(str(getattr(activity, f, "")) for f in ("command", "output", "error"))
        lines = getattr(thing, "lines", ())
        shown += "".join(lines) if isinstance(lines, tuple) else ""
        for secret in SECRETS:
            assert secret not in shown, f"a secret value leaked into {type(thing).__name__}"


# -- Railway ---------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["api", "worker"])
def test_railway_restart_runs_the_runbooks_command(fakebin: FakeBin, service: str) -> None:
    activity = platform_for(_target("railway"), allow_changes=True).restart(service)
    assert fakebin.calls() == [["railway", "restart", "--service", service, "--yes"]]
    assert activity.ok, activity.error
    assert activity.command == ("railway", "restart", "--service", service, "--yes")
    assert "restarted and is healthy" in activity.output
    assert fakebin.entries()[0]["no_color"] == "1"


def test_railway_restart_refused_without_allow_changes_runs_nothing(fakebin: FakeBin) -> None:
    with pytest.raises(SafetyGateError):
        platform_for(_target("railway"), allow_changes=False).restart("api")
    assert fakebin.calls() == []


def test_railway_logs_are_bounded_and_their_errors_counted(
    fakebin: FakeBin, capsys: pytest.CaptureFixture[str],
) -> None:
    logs = platform_for(_target("railway"), allow_changes=False).logs("api", lines=7)
    assert fakebin.calls() == [["railway", "logs", "--service", "api", "--since", "1h",
                                "--lines", "7"]]
    assert logs.ok and len(logs.lines) == 7  # the stand-in prints 8: the oldest one dropped
    expected = ("ERROR api: unhandled error", "status=500", "Traceback (most recent")
    assert len(logs.error_lines) == len(expected)
    for line, fragment in zip(logs.error_lines, expected, strict=True):
        assert fragment in line
    summary = recent_logs(platform_for(_target("railway"), allow_changes=False), "api")
    assert (summary.error_lines, summary.request_lines, summary.server_errors) == (3, 3, 1)
    assert summary.error_rate == pytest.approx(1 / 3)
    assert any("API_SECRET=***" in line for line in logs.lines)
    _no_secret_in(logs, summary)
    captured = capsys.readouterr()
    assert not any(s in captured.out + captured.err for s in SECRETS)


def test_railway_variables_are_fingerprinted_from_the_default_table(
    fakebin: FakeBin, capsys: pytest.CaptureFixture[str],
) -> None:
    platform = platform_for(_target("railway"), allow_changes=False)
    api = platform.variables("api")
    worker = platform.variables("worker")
    assert fakebin.calls() == [["railway", "variables", "--service", "api"],
                               ["railway", "variables", "--service", "worker"]]
    assert api.ok, api.activity.error
    assert dict(api.fingerprints) == {n: fingerprint(v) for n, v in VARIABLES.items()}
    assert api.matches(worker, "API_SECRET") is True
    assert api.matches(worker, "NOT_SET") is None
    assert "DATABASE_URL" in api.activity.output  # names only
    _no_secret_in(api, worker)
    print(api, api.evidence())  # what a report would show
    captured = capsys.readouterr()
    assert not any(s in captured.out + captured.err for s in SECRETS)


def test_railway_kv_listing_parses_to_the_same_values(fakebin: FakeBin) -> None:
    done = Runner().run(["railway", "variables", "--service", "api", "--kv"], timeout=10)
    table = Runner().run(["railway", "variables", "--service", "api"], timeout=10)
    assert "║" in table.stdout and "║" not in done.stdout  # two real formats
    assert parse_variables(done.stdout) == VARIABLES == parse_variables(table.stdout)


def test_railway_status_runs_railway_status(fakebin: FakeBin) -> None:
    platform = platform_for(_target("railway"), allow_changes=False)
    assert platform.status().ok and platform.status("worker").ok
    assert fakebin.calls() == [["railway", "status"], ["railway", "status"]]


def test_a_failing_railway_cli_is_a_failed_activity_with_its_message(
    fakebin: FakeBin, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKEBIN_MODE", "fail")
    platform = platform_for(_target("railway"), allow_changes=True)
    activity = platform.restart("api")
    assert not activity.ok
    assert activity.error == ("railway exited with code 1: Unauthorized. Please login with"
                              " `railway login`")
    variables = platform.variables("api")
    assert not variables.ok and dict(variables.fingerprints) == {}


# -- Vercel (web on railway targets) ---------------------------------------------------


def test_web_redeploy_is_vercel_prod_in_the_linked_checkout(
    fakebin: FakeBin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    platform = platform_for(_target("railway"), allow_changes=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="not a linked Vercel checkout"):
        platform.restart("web")
    assert fakebin.calls() == []
    checkout = tmp_path / "web-app"
    (checkout / ".vercel").mkdir(parents=True)
    (checkout / ".vercel" / "project.json").write_text('{"projectId": "prj_fake"}')
    monkeypatch.setenv("RUNBOOK_VERCEL_DIR", str(checkout))
    activity = platform_for(_target("railway"), allow_changes=True).restart("web")
    assert activity.ok, activity.error
    assert fakebin.calls() == [["vercel", "--prod"]]
    assert fakebin.entries()[0]["cwd"] == str(checkout)


def test_web_logs_are_vercel_logs_for_the_web_url(fakebin: FakeBin) -> None:
    logs = platform_for(_target("railway"), allow_changes=False).logs("web")
    assert fakebin.calls() == [["vercel", "logs", "--since", "1h", "--deployment",
                                "legacyvideo.example.com"]]
    assert logs.ok and len(logs.lines) == 3
    assert len(logs.error_lines) == 1 and "502" in logs.error_lines[0]


def test_web_status_inspects_the_web_url_and_variables_are_not_claimed(
    fakebin: FakeBin,
) -> None:
    platform = platform_for(_target("railway"), allow_changes=False)
    assert platform.status("web").ok
    variables = platform.variables("web")
    assert fakebin.calls() == [["vercel", "inspect", "https://legacyvideo.example.com"]]
    assert not variables.ok and "Vercel does not reveal" in variables.activity.error


# -- Kubernetes ------------------------------------------------------------------------


def test_kubernetes_restart_is_rollout_restart_then_rollout_status(fakebin: FakeBin) -> None:
    platform = KubernetesPlatform(_target("kubernetes"), allow_changes=True,
                                  timeouts=PlatformTimeouts(command_s=20, restart_s=120))
    activity = platform.restart("api")
    assert fakebin.calls() == [
        ["kubectl", "rollout", "restart", "deployment/legacyvideo-api", "--namespace",
         "default"],
        ["kubectl", "rollout", "status", "deployment/legacyvideo-api", "--namespace",
         "default", "--timeout=120s"],
    ]
    assert activity.ok, activity.error
    assert "&&" in activity.command and "successfully rolled out" in activity.output


def test_kubernetes_names_and_namespace_come_from_the_environment(
    fakebin: FakeBin, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNBOOK_K8S_NAMESPACE", "legacyvideo")
    monkeypatch.setenv("RUNBOOK_K8S_DEPLOYMENT_WORKER", "lv-worker")
    platform = platform_for(_target("kubernetes"), allow_changes=False)
    logs = platform.logs("worker", lines=50)
    platform.status()
    assert fakebin.calls() == [
        ["kubectl", "logs", "deployment/lv-worker", "--namespace", "legacyvideo",
         "--since=1h", "--tail=50"],
        ["kubectl", "get", "deployment", "legacyvideo-api", "lv-worker", "legacyvideo-web",
         "--namespace", "legacyvideo"],
    ]
    assert len(logs.error_lines) == 2  # the JSON level=error line and the 503


def test_kubernetes_variables_fingerprint_literals_and_name_what_cannot_be_read(
    fakebin: FakeBin,
) -> None:
    platform = KubernetesPlatform(_target("kubernetes"), allow_changes=False,
                                  names=KubernetesNames())
    variables = platform.variables("api")
    assert fakebin.calls() == [["kubectl", "get", "deployment", "legacyvideo-api",
                                "--namespace", "default", "-o", "json"]]
    assert variables.ok, variables.activity.error
    expected = {n: fingerprint(v) for n, v in VARIABLES.items()}
    expected["EMPTY_FLAG"] = fingerprint("")
    assert dict(variables.fingerprints) == expected
    assert variables.unreadable == ("RESEND_API_KEY",)
    assert "valueFrom" in variables.note and "secret/legacyvideo-shared" in variables.note
    _no_secret_in(variables)


# -- missing and hanging CLIs ----------------------------------------------------------


@pytest.mark.parametrize(("platform", "cli"), [("railway", "railway"),
                                               ("kubernetes", "kubectl")])
def test_a_missing_cli_is_one_line(
    platform: str, cli: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    adapter = platform_for(_target(platform), allow_changes=False)
    with pytest.raises(RunbookError) as caught:
        adapter.status()
    assert str(caught.value) == f"{cli} CLI not found on PATH; install it or set PLATFORM"


@pytest.mark.parametrize("platform", ["railway", "kubernetes"])
def test_a_hanging_cli_is_stopped_within_its_timeout(
    fakebin: FakeBin, monkeypatch: pytest.MonkeyPatch, platform: str,
) -> None:
    monkeypatch.setenv("FAKEBIN_MODE", "hang")
    # 3 s: the stand-in (a Python program) must have started and recorded its call
    # before the timeout stops it, also on a loaded machine
    monkeypatch.setenv("RUNBOOK_PLATFORM_TIMEOUT", "3")
    adapter = platform_for(_target(platform), allow_changes=False)
    started = time.monotonic()
    logs = adapter.logs("api")
    took = time.monotonic() - started
    assert not logs.ok
    assert "did not finish within 3 s" in logs.activity.error
    assert took < 3 + 2 + 2, f"a 3 s timeout took {took:.1f} s"
    pid = fakebin.entries()[0]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_railway_adapter_repr_holds_no_secret(fakebin: FakeBin) -> None:
    platform = RailwayPlatform(_target("railway"), allow_changes=False)
    _no_secret_in(platform, platform.status())
