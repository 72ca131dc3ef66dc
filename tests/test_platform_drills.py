"""The "platform-api-crash" DR drill and the adapters' ``replace_instance`` under it, against
the stand-in CLIs (``tests/fakebin``) put first on PATH, which record every call:

* each adapter issues exactly its documented commands, fails with the CLI's own message,
  is stopped when the CLI hangs, and runs nothing without allow_changes;
* a target without API_URL, without a railway/kubernetes PLATFORM, the sandbox and
  production are refused in one line before anything is touched;
* the drill against the session sandbox's real API declared a Kubernetes staging target:
  the stand-in kubectl kills nothing, so no end-to-end check is red and the drill fails its
  detection, saying the replacement was not visible to users; with a platform whose
  replacement really takes the API away (the sandbox's own restart behind the stand-in),
  the crash is detected, the recovery measured from the checks and the drill passes; in
  both the restore had nothing to revert and the guard's ledger is empty.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from runbook.actions import users
from runbook.config import Target
from runbook.drills import engine
from runbook.drills.catalog import DISASTERS, DRILLS
from runbook.drills.faults import REGISTRY, DrillContext
from runbook.drills.guard import Guard
from runbook.drills.incidents.platform_crash import PlatformApiCrash, api_back
from runbook.drills.record import DrillRecord
from runbook.drills.restorer import revert_for_real
from runbook.errors import SafetyGateError
from runbook.features import drill_names
from runbook.platforms import platform_for
from runbook.platforms.base import (
    NoPlatform,
    PlatformAdapter,
    PlatformTimeouts,
    RecordingPlatform,
    Runner,
)
from runbook.platforms.kubernetes import KubernetesNames, KubernetesPlatform, match_labels
from runbook.platforms.sandbox import SandboxPlatform
from runbook.probes import e2e
from runbook.results import Activity, ProbeResult, Timing, utcnow
from runbook.sandbox import Sandbox
from runbook.targets import RunSpec
from runbook.timeouts import Timeouts
from tests.conftest import RunningSandbox

FAKEBIN = Path(__file__).parent / "fakebin"
API_SECRET = "fake-api-secret-5e1d9c3b7a"
GET_SELECTOR = ["kubectl", "get", "deployment", "legacyvideo-api", "--namespace", "default",
                "-o", "jsonpath={.spec.selector.matchLabels}"]
GET_PODS = ["kubectl", "get", "pods", "--namespace", "default", "-l", "app=legacyvideo-api",
            "--field-selector=status.phase=Running", "-o", "name"]
DELETE = ["kubectl", "delete", "pod/legacyvideo-api-7d9f8c6b5-abcde", "--namespace", "default",
          "--wait=false"]
ROLLOUT = ["kubectl", "rollout", "status", "deployment/legacyvideo-api", "--namespace",
           "default", "--timeout=300s"]
STATUS = ["kubectl", "get", "deployment", "legacyvideo-api", "--namespace", "default"]


@dataclass
class Calls:
    """The stand-ins' call record (``FAKEBIN_RECORD``)."""

    path: Path

    def __call__(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        return [[e["program"], *e["argv"]] for e in map(json.loads,
                                                          self.path.read_text().splitlines())]


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    """tests/fakebin first on PATH, recording into a fresh file; default names, timeouts."""
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{FAKEBIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKEBIN_RECORD", str(record))
    monkeypatch.delenv("FAKEBIN_MODE", raising=False)
    monkeypatch.delenv("FAKEBIN_VARIABLES", raising=False)
    for name in ("RUNBOOK_K8S_NAMESPACE", "RUNBOOK_K8S_DEPLOYMENT_API",
                 "RUNBOOK_K8S_DEPLOYMENT_WORKER", "RUNBOOK_K8S_DEPLOYMENT_WEB",
                 "RUNBOOK_PLATFORM_TIMEOUT", "RUNBOOK_RESTART_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    yield Calls(record)


def _remote(platform: str | None, **extra: str) -> Target:
    variables = {"API_URL": "https://api.legacyvideo.example.com", "API_SECRET": API_SECRET,
                 "RUNBOOK_ENVIRONMENT": "staging", **extra}
    if platform is not None:
        variables["PLATFORM"] = platform
    return Target.from_variables("staging", {k: v for k, v in variables.items() if v},
                                 source="test")


# -- the adapters ------------------------------------------------------------------------


def test_kubernetes_deletes_one_running_pod_found_by_its_selector_and_awaits_the_rollout(
        fake_cli: Calls) -> None:
    activity = platform_for(_remote("kubernetes"), allow_changes=True).replace_instance("api")
    assert fake_cli() == [GET_SELECTOR, GET_PODS, DELETE, ROLLOUT]
    assert activity.ok, activity.error
    assert activity.name == "replace an instance of api"
    assert activity.command == (*GET_SELECTOR, "&&", *GET_PODS, "&&", *DELETE, "&&", *ROLLOUT)
    assert activity.output.splitlines()[0] == (
        "deleted pod/legacyvideo-api-7d9f8c6b5-abcde, one of 2 running pods of deployment"
        " legacyvideo-api (app=legacyvideo-api)")
    assert 'pod "legacyvideo-api-7d9f8c6b5-abcde" deleted' in activity.output
    assert 'deployment "legacyvideo-api" successfully rolled out' in activity.output
    assert API_SECRET not in " ".join(activity.command) + activity.output


def test_kubernetes_names_and_the_restart_timeout_come_from_the_environment(
        fake_cli: Calls) -> None:
    names = KubernetesNames.from_env({"RUNBOOK_K8S_NAMESPACE": "video",
                                      "RUNBOOK_K8S_DEPLOYMENT_API": "lv-api"})
    adapter = KubernetesPlatform(_remote("kubernetes"), allow_changes=True, names=names,
                                 timeouts=PlatformTimeouts(restart_s=42))
    assert adapter.replace_instance("api").ok
    calls = fake_cli()
    assert calls[0][:6] == ["kubectl", "get", "deployment", "lv-api", "--namespace", "video"]
    assert calls[1][5:7] == ["-l", "app=lv-api"]
    assert calls[2] == ["kubectl", "delete", "pod/lv-api-7d9f8c6b5-abcde", "--namespace",
                        "video", "--wait=false"]
    assert calls[3] == ["kubectl", "rollout", "status", "deployment/lv-api", "--namespace",
                        "video", "--timeout=42s"]


def test_the_deployments_selector_is_read_from_its_match_labels() -> None:
    assert match_labels('{"tier":"api","app":"legacyvideo-api"}') == (
        "app=legacyvideo-api,tier=api")
    assert match_labels("") is None
    assert match_labels("map[app:legacyvideo-api]") is None
    assert match_labels("{}") is None


@pytest.mark.parametrize("service", ["api", "worker"])
def test_railway_redeploys_the_service_and_says_the_cli_does_not_wait(
        fake_cli: Calls, service: str) -> None:
    activity = platform_for(_remote("railway"), allow_changes=True).replace_instance(service)
    assert fake_cli() == [["railway", "redeploy", "--service", service, "--yes"]]
    assert activity.ok, activity.error
    assert activity.command == ("railway", "redeploy", "--service", service, "--yes")
    assert (f"The latest deployment from service {service} has been redeployed"
            in activity.output)
    assert "does not wait for the new deployment" in activity.output


def test_railway_has_no_web_instance_to_replace(fake_cli: Calls) -> None:
    activity = platform_for(_remote("railway"), allow_changes=True).replace_instance("web")
    assert not activity.ok and "Vercel" in activity.error
    assert fake_cli() == []


@pytest.mark.parametrize(("platform", "ran", "message"), [
    ("kubernetes", [GET_SELECTOR],
     "kubectl exited with code 1: error: You must be logged in to the server (Unauthorized)"),
    ("railway", [["railway", "redeploy", "--service", "api", "--yes"]],
     "railway exited with code 1: Unauthorized. Please login with `railway login`"),
])
def test_a_failing_cli_fails_the_replacement_with_its_message_and_goes_no_further(
        fake_cli: Calls, monkeypatch: pytest.MonkeyPatch, platform: str, ran: list[list[str]],
        message: str) -> None:
    monkeypatch.setenv("FAKEBIN_MODE", "fail")
    activity = platform_for(_remote(platform), allow_changes=True).replace_instance("api")
    assert not activity.ok
    assert activity.error == message
    assert fake_cli() == ran


@pytest.mark.parametrize("platform", ["kubernetes", "railway"])
def test_a_hanging_cli_is_stopped_within_its_timeout(
        fake_cli: Calls, monkeypatch: pytest.MonkeyPatch, platform: str) -> None:
    monkeypatch.setenv("FAKEBIN_MODE", "hang")
    # 3 s: the stand-in (a Python program) must have started and recorded its call
    # before the timeout stops it, also on a loaded machine
    monkeypatch.setenv("RUNBOOK_PLATFORM_TIMEOUT", "3")
    monkeypatch.setenv("RUNBOOK_RESTART_TIMEOUT", "3")
    adapter = platform_for(_remote(platform), allow_changes=True,
                           runner=Runner(kill_grace_s=0.5))
    started = time.monotonic()
    activity = adapter.replace_instance("api")
    took = time.monotonic() - started
    assert not activity.ok
    assert "did not finish within 3 s" in activity.error
    assert took < 3 + 2 + 2, f"a 3 s timeout took {took:.1f} s"
    assert len(fake_cli()) == 1  # stopped at its first command, nothing after it
    with pytest.raises(ProcessLookupError):
        os.kill(json.loads(fake_cli.path.read_text().splitlines()[0])["pid"], 0)


@pytest.mark.parametrize("platform", ["kubernetes", "railway"])
def test_replacing_an_instance_is_refused_without_allow_changes_and_runs_nothing(
        fake_cli: Calls, platform: str) -> None:
    with pytest.raises(SafetyGateError, match="without allow_changes"):
        platform_for(_remote(platform), allow_changes=False).replace_instance("api")
    assert fake_cli() == []


def test_the_sandbox_replaces_its_one_process_by_restarting_it_and_refuses_without_changes(
        tmp_path: Path) -> None:
    target = Target.from_variables("sandbox", {"API_URL": "http://127.0.0.1:9"},
                                   source="test", environment="sandbox", platform="sandbox")
    adapter = SandboxPlatform(target, allow_changes=False, sandbox=Sandbox(tmp_path))
    with pytest.raises(SafetyGateError, match="without allow_changes"):
        adapter.replace_instance("api")


def test_no_platform_cannot_replace_and_a_recording_platform_calls_it_destructive() -> None:
    refused = NoPlatform("data-only").replace_instance("api")
    assert not refused.ok and "declares no PLATFORM" in refused.error
    recording = RecordingPlatform(NoPlatform("data-only"))
    recording.replace_instance("api")
    assert [(c.method, c.kind, c.outcome) for c in recording.destructive_calls] == [
        ("replace_instance", "destructive", "failed")]
    assert isinstance(recording, PlatformAdapter)


# -- refusals ------------------------------------------------------------------------------


class _Tripwire:
    """A platform or guard that fails the test if the drill touches it."""

    def __init__(self, name: str = "none") -> None:
        self.name = name

    def __getattr__(self, item: str) -> Any:
        raise AssertionError(f"a refused drill touched {item}")


@pytest.mark.parametrize(("target", "platform", "reason"), [
    (_remote(None), "none",
     "needs PLATFORM=railway or PLATFORM=kubernetes (the platform that replaces the"
     " instance)"),
    (_remote("kubernetes", API_URL=""), "kubernetes",
     "needs API_URL (the API the end-to-end check reaches)"),
    (_remote(None, API_URL=""), "none",
     "needs API_URL (the API the end-to-end check reaches) and PLATFORM=railway or"
     " PLATFORM=kubernetes"),
    (Target.from_variables("sandbox", {"API_URL": "http://127.0.0.1:9"}, source="test",
                           environment="sandbox", platform="sandbox"), "sandbox",
     "is the api-crash drill"),
    (_remote("railway", RUNBOOK_ENVIRONMENT="production"), "railway",
     "never runs against production"),
], ids=["no-platform", "no-api", "neither", "sandbox", "production"])
def test_a_target_the_drill_cannot_take_is_refused_in_one_line_before_anything_runs(
        target: Target, platform: str, reason: str, tmp_path: Path) -> None:
    context = DrillContext(target, Timeouts(), _Tripwire(platform),  # type: ignore[arg-type]
                           tmp_path)
    refused = PlatformApiCrash.refusal(context)
    assert refused is not None and reason in refused, refused
    assert refused.startswith("refused: the platform-api-crash drill")
    assert "\n" not in refused
    seen: list[DrillRecord] = []
    with pytest.raises(SafetyGateError) as raised:
        engine.run(PlatformApiCrash, context, limits=engine.Limits(30, 300),
                   guard=_Tripwire(), steady=_Tripwire(),  # type: ignore[arg-type]
                   on_record=seen.append, evidence_dir=tmp_path)
    assert str(raised.value) == refused
    assert seen == []


def test_the_drill_is_catalogued_and_its_scenario_names_it() -> None:
    assert PlatformApiCrash in DISASTERS and DRILLS["platform-api-crash"] is PlatformApiCrash
    assert REGISTRY["platform-instance-replaced"].platforms == ("railway", "kubernetes")
    feature = (Path(__file__).parent.parent / "runbook" / "features" / "disaster_recovery.feature")
    steps = [line.strip().removeprefix("When ") for line in feature.read_text().splitlines()
             if "through the platform" in line and line.strip().startswith("When ")]
    assert len(steps) == 1 and drill_names(steps) == ("platform-api-crash",)


# -- the drill, against the session sandbox's real API -----------------------------------------


def _staging(box: RunningSandbox, **extra: str) -> Target:
    """The sandbox's API and database, declared a Kubernetes staging target."""
    return Target.from_variables("staging", {**box.env, "PLATFORM": "kubernetes",
                                             "RUNBOOK_ENVIRONMENT": "staging", **extra},
                                 source="test")


@dataclass
class Drill:
    record: DrillRecord
    guard_pending: list[str]
    platform: RecordingPlatform

    def phase(self, name: str) -> Any:
        found = [p for p in self.record.phases if p.name == name]
        assert found, f"no phase {name!r}: {[p.name for p in self.record.phases]}"
        return found[0]


def _drill(target: Target, adapter: PlatformAdapter, home: Path, tmp_path: Path,
           limits: engine.Limits) -> Drill:
    recording = RecordingPlatform(adapter)
    context = DrillContext(target, Timeouts(), recording, home)
    timeouts = Timeouts()
    with users.canary_user(target, timeouts) as canary:
        def steady(ctx: DrillContext) -> ProbeResult:
            return e2e.round_trip(ctx.target, ctx.timeouts, canary.email, canary.password)

        guard = Guard.arm(tmp_path / "guards", RunSpec.of_target(target, home))
        seen: list[DrillRecord] = []
        try:
            record = engine.run(PlatformApiCrash, context, limits=limits, guard=guard,
                                steady=steady, on_record=seen.append,
                                evidence_dir=tmp_path / "detection")
            pending = guard.pending()
        finally:
            guard.disarm()
    assert seen == [record]
    text = json.dumps(record.to_json())
    assert API_SECRET not in text and str(target.require("DATABASE_URL")) not in text
    return Drill(record, pending, recording)


def test_a_replacement_no_check_saw_fails_detection_saying_it_was_not_visible_to_users(
        sandbox: RunningSandbox, fake_cli: Calls, tmp_path: Path) -> None:
    """The stand-in kubectl kills nothing: every end-to-end check stays green."""
    target = _staging(sandbox)
    done = _drill(target, platform_for(target, allow_changes=True), sandbox.home, tmp_path,
                  engine.Limits(detect_within_s=2, rto_s=300))
    record = done.record
    assert record.verdict == "fail"
    assert [p.name for p in record.phases if not p.ok] == ["detect"]
    assert done.phase("detect").detail.startswith("not detected within 2 s of the fault (")
    assert record.detected_at is None and record.time_to_detect_s is None
    assert any(note.startswith("not visible to users: no end-to-end check was red within 2 s")
               for note in record.notes), record.notes
    # What ran on the platform, from the stand-in's own record and from the drill's.
    assert fake_cli() == [GET_SELECTOR, GET_PODS, DELETE, ROLLOUT, STATUS]
    inject = done.phase("inject").evidence[0]
    assert inject["ok"] and " ".join(DELETE) in " ".join(inject["command"])
    assert [c.method for c in done.platform.destructive_calls] == ["replace_instance"]
    # The checks stayed green: recovered at once, and the record says none was red.
    assert done.phase("recover").ok and record.rto_s is not None and record.rto_s < 5
    watched = record.evidence["user_visible"]
    assert watched["red_after_fault"] == 0 and watched["checks_after_fault"] >= 3, watched
    # Nothing to revert, healthy, the guard's ledger empty, the database left as found.
    assert done.phase("restore").detail == "nothing to revert (recovered); healthy"
    assert done.guard_pending == []
    assert done.phase("left as found").ok, done.phase("left as found").detail


class _ReallyReplacing:
    """The stand-in kubectl's commands, with the sandbox's API really restarted first: a
    replacement users see (a platform running one replica)."""

    def __init__(self, inner: PlatformAdapter, box: Sandbox) -> None:
        self.inner, self.box = inner, box
        self.name = inner.name

    def replace_instance(self, service: str) -> Activity:
        started_at, started = utcnow(), time.monotonic()
        self.box.restart(service, timeout=60)
        done = self.inner.replace_instance(service)
        return replace(done, timing=Timing(started_at, utcnow(), time.monotonic() - started))

    def __getattr__(self, item: str) -> Callable[..., Any]:
        return getattr(self.inner, item)  # type: ignore[no-any-return]


def test_a_replacement_users_saw_is_detected_and_recovered_within_the_rto(
        healthy_sandbox: RunningSandbox, fake_cli: Calls, tmp_path: Path) -> None:
    target = _staging(healthy_sandbox)
    before = healthy_sandbox.sandbox.status().components["api"].pid
    adapter = _ReallyReplacing(platform_for(target, allow_changes=True),
                               healthy_sandbox.sandbox)
    done = _drill(target, adapter, healthy_sandbox.home, tmp_path,  # type: ignore[arg-type]
                  engine.Limits(detect_within_s=30, rto_s=300))
    record = done.record
    assert healthy_sandbox.sandbox.status().components["api"].pid != before
    assert record.verdict == "pass", [(p.name, p.ok, p.detail) for p in record.phases]
    assert done.phase("detect").detail.startswith("detected by the drill's own check (api end"
                                                  " to end)")
    assert record.fault_at is not None and record.detected_at is not None
    assert record.recovered_at is not None and record.rto_s is not None
    assert record.fault_at < record.detected_at < record.recovered_at
    assert 0 < record.rto_s <= 300
    watched = record.evidence["user_visible"]
    assert watched["red_after_fault"] >= 1 and watched["red_after_recovery"] == 0, watched
    assert fake_cli()[:4] == [GET_SELECTOR, GET_PODS, DELETE, ROLLOUT]
    assert done.phase("restore").detail == "nothing to revert (recovered); healthy"
    assert done.guard_pending == []


def test_a_platform_that_refuses_the_command_abandons_the_drill_and_the_restore_only_checks(
        sandbox: RunningSandbox, fake_cli: Calls, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    target = _staging(sandbox)
    monkeypatch.setenv("FAKEBIN_MODE", "fail")
    done = _drill(target, platform_for(target, allow_changes=True), sandbox.home, tmp_path,
                  engine.Limits(detect_within_s=30, rto_s=300))
    record = done.record
    assert record.verdict == "fail"
    assert not done.phase("inject").ok
    assert any("the fault was not injected: kubectl exited with code 1" in note
               for note in record.notes), record.notes
    restore = done.phase("restore")
    assert restore.ok and restore.detail == "the fault reverted; healthy"
    assert restore.evidence[0]["output"].startswith(
        "nothing to revert: the platform replaces the api instance by itself")
    assert done.guard_pending == []
    assert fake_cli()[0] == GET_SELECTOR and DELETE not in fake_cli()


def test_the_guards_revert_only_verifies_health_and_reports_an_api_not_back(
        sandbox: RunningSandbox, fake_cli: Calls, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    # The guard process gets the run's target in its environment, as Guard.arm hands it.
    run = RunSpec.of_target(_staging(sandbox), sandbox.home)
    for name, value in run.to_environ().items():
        monkeypatch.setenv(name, value)
    params = {"service": "api", "health_wait_s": 1}
    assert revert_for_real("platform-instance-replaced", params) == "ok"
    assert STATUS in fake_cli() and DELETE not in fake_cli()
    gone = _remote("kubernetes", API_URL="http://127.0.0.1:9")
    context = DrillContext(gone, Timeouts(connect=0.5, read=0.5, deadline=1),
                           platform_for(gone, allow_changes=True), tmp_path)
    ok, _, error = api_back(context, params)
    assert not ok
    assert error.startswith("the platform did not bring the api back within 1 s: /health")
    assert "the platform's status: NAME" in error


# -- as a user runs it ---------------------------------------------------------------------------


@pytest.mark.timeout(420)
def test_runbook_drill_runs_the_scenario_on_a_kubernetes_staging_target_and_fails_it_honestly(
        sandbox: RunningSandbox, fake_cli: Calls, tmp_path: Path) -> None:
    """``runbook drill platform-api-crash --target env --allow-drills staging``: the Gherkin's
    steps and limits (30 s to detect), the harness's platform and guard. The stand-in kubectl
    kills nothing, so the scenario fails on its detection, with the record's reason."""
    from tests.test_cli import runbook

    env = {**_staging(sandbox).variables(), "PATH": os.environ["PATH"],
           "FAKEBIN_RECORD": str(fake_cli.path)}
    done = runbook("drill", "platform-api-crash", "--target", "env", "--allow-drills",
                   "staging", "--reports", str(tmp_path / "reports"), cwd=tmp_path, env=env,
                   timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "not detected within 30 s of the fault" in output, output[-3000:]
    [path] = (tmp_path / "reports" / "drills").glob("*-platform-api-crash.json")
    document = json.loads(path.read_text())
    assert document["verdict"] == "fail" and document["environment"] == "staging"
    assert [p["name"] for p in document["phases"] if not p["ok"]] == ["detect"]
    assert fake_cli()[:4] == [GET_SELECTOR, GET_PODS, DELETE, ROLLOUT]
    trail = [json.loads(line) for line in
             (tmp_path / "reports" / "platform-calls.jsonl").read_text().splitlines()]
    assert [(c["method"], c["kind"]) for c in trail if c["kind"] == "destructive"] == [
        ("replace_instance", "destructive")]


def test_runbook_drill_skips_the_scenario_on_a_target_without_a_platform_with_the_reason(
        sandbox: RunningSandbox, fake_cli: Calls, tmp_path: Path) -> None:
    from tests.test_cli import outcomes, runbook

    variables = _staging(sandbox).variables()
    env = {k: v for k, v in variables.items() if k != "PLATFORM"}
    done = runbook("drill", "platform-api-crash", "--target", "env", "--allow-drills",
                   "staging", "--reports", str(tmp_path / "reports"), cwd=tmp_path,
                   env={**env, "PATH": os.environ["PATH"]})
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]  # nothing was checked: all skipped
    assert list(outcomes(tmp_path / "reports").values()) == ["skipped"], output[-3000:]
    assert "needs PLATFORM=railway or PLATFORM=kubernetes" in output, output[-3000:]
    assert fake_cli() == []
    assert not (tmp_path / "reports" / "drills").exists() or not list(
        (tmp_path / "reports" / "drills").glob("*.json"))
