"""Game days for Upload Failures, Email Not Sending, Data Breach and Slow Query Performance,
run on the engine against the real sandbox: detected by the scheduled scenario that names
the incident's section, the runbook's steps followed, recovered (or the defect recorded and
the corrected procedure proven), restored, no secret recorded (``tests/gamedays.py``).

Run with ``-s`` to see each game day's row of the detection matrix. Then the faults' reverts
are idempotent, the guard reverts them from another process, and a scheduled scenario's
signal removed from the features makes its game day fail as not detected.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from runbook.actions import journeys
from runbook.actions.users import CanaryUser, canary_user
from runbook.drills import detection, engine, faults
from runbook.drills.catalog import DRILLS
from runbook.drills.context import context_for
from runbook.drills.faults import DrillContext
from runbook.drills.incidents import data_breach, slow_query, upload_failures
from runbook.probes import audit, canaries, postgres
from runbook.runner import PROJECT_ROOT
from runbook.sandbox.procs import is_alive
from runbook.sections import next_steps
from runbook.wait import wait_until
from tests import gamedays
from tests.conftest import RunningSandbox

EDGE_GAMEDAYS = ["upload-failures-wrong-credentials", "upload-failures-bucket-policy",
                 "upload-failures-cors", "email-not-sending-invalid-key",
                 "email-not-sending-unverified-sender", "data-breach", "slow-query-performance"]


@pytest.fixture(scope="module")
def canary(sandbox: RunningSandbox) -> Iterator[CanaryUser]:
    context = context_for(gamedays.spec(sandbox))
    with canary_user(context.target, context.timeouts) as user:
        yield user


@pytest.fixture
def context(healthy_sandbox: RunningSandbox) -> DrillContext:
    return context_for(gamedays.spec(healthy_sandbox))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", EDGE_GAMEDAYS)
def test_game_day(name: str, healthy_sandbox: RunningSandbox, context: DrillContext,
                  canary: CanaryUser, tmp_path: Path) -> None:
    secrets = gamedays.secret_values(healthy_sandbox)
    started = time.monotonic()
    record = gamedays.run(name, healthy_sandbox, context, canary, tmp_path)
    gamedays.assert_outcome(name, record)
    report = gamedays.explain(record)
    steps = gamedays.activities(record)
    if name == "upload-failures-wrong-credentials":
        assert "differ" in str(steps["1. verify the S3 credentials"]["output"]), report
    if name.startswith("email-not-sending"):
        queue = next(a for n, a in steps.items() if n.startswith("4. check the email queue"))
        assert "WRONGTYPE" in str(queue["output"]), queue
    if name == "data-breach":
        assert any(n.startswith("1. lock all affected user accounts") for n in steps), report
        assert steps["3. revoke all active access tokens"]["ok"], report
    gamedays.no_secret_in(record, secrets)
    gamedays.assert_healthy(healthy_sandbox, context, canary)
    print("\n" + gamedays.matrix_line(name, record, time.monotonic() - started))


@pytest.mark.timeout(240)
def test_a_scheduled_check_taken_away_leaves_its_game_day_undetected(
        healthy_sandbox: RunningSandbox, context: DrillContext, canary: CanaryUser,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the scheduled scenario that watches the API's CPU, the CPU game day fails as
    not detected by the scheduled checks, naming the missing signal. The detection runs the
    scheduled selection narrowed to that scenario and the login journey (a run of the whole
    suite costs a minute here; tests/test_drill_verdicts.py runs it whole): with the feature
    file edited, only the login journey is left, and it does not name the incident."""
    features = tmp_path / "features"
    shutil.copytree(PROJECT_ROOT / "features", features)
    incident = features / "incident_response.feature"
    text = incident.read_text()
    start = text.index("  @synthetic @warning @runbook:high-memory-cpu-usage")
    end = text.index("  @synthetic", start + 10)
    incident.write_text(text[:start] + text[end:])
    monkeypatch.setenv("RUNBOOK_FEATURES", str(features))
    record = gamedays.run("high-cpu", healthy_sandbox, context, canary, tmp_path,
                          detector=detection.scheduled_suite(
                              tmp_path / "detection",
                              extra=("-k", "the_api_processs_cpu or a_user_can_log_in")),
                          limits=engine.Limits(detect_within_s=5, rto_s=300))
    detect = gamedays.phases(record)["detect"]
    assert not detect.ok and record.verdict == "fail", gamedays.explain(record)
    assert "not detected by the scheduled checks" in detect.detail
    assert DRILLS["high-cpu"].signal in detect.detail
    rounds = record.evidence["detection"]["rounds"]
    assert rounds and all(r["scenarios_checked"] == 1 for r in rounds), rounds
    gamedays.assert_healthy(healthy_sandbox, context, canary)


def test_greens_with_the_fault_still_in_place_are_no_recovery(
        healthy_sandbox: RunningSandbox, context: DrillContext, canary: CanaryUser) -> None:
    """A fault the end-to-end check cannot see (the web's stored variable set to a value
    nothing reads) leaves the checks green: while it is in place the wait for recovery fails
    at once saying so, never a recovery; once reverted, the same greens are one."""
    spec = faults.get("service-variable", "sandbox")
    params = {"service": "web", "variable": "RUNBOOK_DRILL_NOTE", "change": "set",
              "value": "left by a drill"}
    check = gamedays.steady(canary)
    assert spec.inject(context, params).ok
    try:
        assert spec.present is not None and spec.present(context, params)
        outcome = engine.wait_for_recovery(
            lambda: check(context), consecutive=3, until=time.monotonic() + 60,
            interval=0.05, still_faulted=lambda: spec.present(context, params))
        assert not outcome.ok and outcome.at is None, outcome
        assert "not a recovery with the fault in place" in outcome.stalled, outcome
        assert "web's stored RUNBOOK_DRILL_NOTE" in outcome.stalled, outcome
        assert len(outcome.timeline.checks) == 3 and not outcome.observations, outcome
    finally:
        assert spec.revert(context, params).ok
    assert spec.present(context, params) is None
    outcome = engine.wait_for_recovery(
        lambda: check(context), consecutive=3, until=time.monotonic() + 60, interval=0.05,
        still_faulted=lambda: spec.present(context, params))
    assert outcome.ok and outcome.at is not None, outcome


@pytest.mark.parametrize(("name", "params"), [
    ("s3-bucket-policy-deny", {}),
    ("s3-cors-missing", {}),
    ("slow-query", {"hold_s": 0.2, "max_s": 30}),
])
def test_a_fault_reverts_twice_and_leaves_the_target_as_it_was(
        context: DrillContext, name: str, params: dict[str, object]) -> None:
    spec = faults.get(name, "sandbox")
    s3 = None
    before: dict[str, Any] = {}
    if name.startswith("s3"):
        bucket = context.target.require("S3_BUCKET")
        from runbook.probes import storage

        s3 = storage.client(context.target, context.timeouts)
        before = {"cors": upload_failures.cors_rules(s3, bucket),
                  "policy": upload_failures.bucket_policy(s3, bucket)}
    assert spec.inject(context, params).ok
    assert spec.present is not None and spec.present(context, params)
    first, second = spec.revert(context, params), spec.revert(context, params)
    assert first.ok and second.ok, (first.error, second.error)
    assert spec.present(context, params) is None
    if s3 is not None:
        bucket = context.target.require("S3_BUCKET")
        assert upload_failures.cors_rules(s3, bucket) == before["cors"]
        assert upload_failures.bucket_policy(s3, bucket) == before["policy"]
        assert upload_failures.uploads_work(context.target, context.timeouts).ok
    else:
        assert postgres.slow_queries(context.target, context.timeouts, threshold_ms=500).ok


def test_the_breach_is_seen_by_the_audit_reviews_and_its_revert_removes_it(
        context: DrillContext, healthy_sandbox: RunningSandbox) -> None:
    spec = faults.get("security-breach", "sandbox")
    injected = spec.inject(context, {"accounts": 2, "failures_per_account": 5})
    assert injected.ok, injected.error
    ids = data_breach.breach_canaries(context)
    assert len(ids) == 2
    # The same thresholds as the weekly review: the scheduled check and the review both
    # see it (the victims stand for real users; the runbook's own canaries are left out).
    for window in (900.0, 7 * 86400.0):
        seen = audit.login_bursts(context.target, context.timeouts, window_s=window,
                                  failures=10, burst_s=600)
        assert not seen.ok, window
    assert next_steps("security-incident")[0].startswith(
        "Incident Response > Data Breach / Security Incident: 1. lock")
    assert spec.revert(context, {}).ok and spec.revert(context, {}).ok
    assert data_breach.breach_canaries(context) == []
    assert audit.login_bursts(context.target, context.timeouts, window_s=900.0, failures=10,
                              burst_s=600).ok
    token = healthy_sandbox.env["ADMIN_TOKEN"]
    answer = httpx.get(f"{healthy_sandbox.env['API_URL']}/api/admin/users?limit=1",
                       headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert answer.status_code == 200


def test_a_victim_is_a_canary_for_removal_but_counted_by_the_audit_reviews() -> None:
    victim = "runbook-canary-victim-0123456789abcdef@legacyvideo.test"
    assert canaries.is_canary_email(victim)
    import re

    assert not re.match(audit.CANARY_EMAIL, victim)
    assert re.match(audit.CANARY_EMAIL, "runbook-canary-0123456789abcdef@legacyvideo.test")


DIES_WITH_FAULTS_IN = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from runbook.drills import catalog
    from runbook.drills.context import context_for
    from runbook.drills.faults import get
    from runbook.drills.guard import Guard
    from runbook.targets import RunSpec

    home, ledgers = sys.argv[1], Path(sys.argv[2])
    spec = RunSpec.sandbox(Path(home))
    guard = Guard.arm(ledgers, spec)
    context = context_for(spec)
    for name, params in (("security-breach", {"accounts": 1, "failures_per_account": 1}),
                         ("slow-query", {"hold_s": 0.5, "max_s": 60})):
        guard.record(name, params)
        assert get(name, context.platform.name).inject(context, params).ok, name
    print("injected", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_the_guard_reverts_these_faults_from_another_process(
        context: DrillContext, healthy_sandbox: RunningSandbox, tmp_path: Path) -> None:
    """The state files let the guard, which never saw the faults being made, find the
    holder process and the breach's accounts after the drill was killed."""
    env = {k: v for k, v in os.environ.items() if k != "API_URL"}
    ledgers = tmp_path / "ledgers"
    died = subprocess.run([sys.executable, "-c", DIES_WITH_FAULTS_IN,
                           str(healthy_sandbox.home), str(ledgers)], env=env,
                          capture_output=True, text=True, timeout=90, check=False)
    assert died.returncode == -signal.SIGKILL, died.stderr
    holder = json.loads(slow_query.holder_files(context)[0].read_text())
    assert data_breach.breach_canaries(context)
    assert wait_until(lambda: not list(ledgers.glob("*.json")), timeout=60, interval=0.2).ok
    log = next(ledgers.glob("*.log")).read_text()
    assert "reverted slow-query: ok" in log and "reverted security-breach: ok" in log, log
    assert not slow_query.holder_files(context)[0].exists()
    assert not is_alive(int(holder["pid"]))
    assert data_breach.breach_canaries(context) == []
    assert postgres.slow_queries(context.target, context.timeouts, threshold_ms=500).ok


# -- the sandbox's S3 checks credentials -------------------------------------------------


def _s3(env: dict[str, str], secret: str | None = None, key_id: str | None = None) -> Any:
    return boto3.session.Session().client(
        "s3", endpoint_url=env["S3_ENDPOINT_URL"], region_name=env["S3_REGION"],
        aws_access_key_id=key_id or env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or env["AWS_SECRET_ACCESS_KEY"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      connect_timeout=3, read_timeout=5, retries={"total_max_attempts": 1}))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def test_the_sandbox_s3_authenticates_like_aws(sandbox: RunningSandbox) -> None:
    env = dict(sandbox.env)
    bucket = env["S3_BUCKET"]
    good = _s3(env)
    good.head_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as wrong:
        _s3(env, secret="x" * 40).list_objects_v2(Bucket=bucket)
    assert _code(wrong.value) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as unknown:
        _s3(env, key_id="AKIAUNKNOWN000000000").list_objects_v2(Bucket=bucket)
    assert _code(unknown.value) == "InvalidAccessKeyId"
    key = "runbook-canary/auth-test"
    for secret, status, code in ((None, 200, ""), ("y" * 40, 403, "SignatureDoesNotMatch")):
        url = _s3(env, secret=secret).generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
        answer = httpx.put(url, content=b"x", timeout=5)
        assert answer.status_code == status and code in answer.text
    anonymous = httpx.put(f"{env['S3_ENDPOINT_URL']}/{bucket}/{key}", content=b"x", timeout=5)
    assert anonymous.status_code == 403 and "AccessDenied" in anonymous.text
    assert httpx.post(f"{env['S3_ENDPOINT_URL']}/moto-api/reset-auth", content=b"inf",
                      timeout=5).status_code == 403
    good.delete_object(Bucket=bucket, Key=key)
    versions = good.list_object_versions(Bucket=bucket, Prefix=key)
    for entry in [*versions.get("Versions", []), *versions.get("DeleteMarkers", [])]:
        good.delete_object(Bucket=bucket, Key=key, VersionId=entry["VersionId"])


# -- pure functions ------------------------------------------------------------------------


def test_a_deny_blocks_uploads_only_when_it_covers_put_object_on_the_upload_keys() -> None:
    bucket = "b"
    blocks = upload_failures.blocks_uploads
    assert blocks(upload_failures.deny_statement(bucket), bucket)
    assert blocks({"Effect": "Deny", "Action": ["s3:*"], "Resource": "*"}, bucket)
    assert not blocks(
        {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::b/*"}, bucket)
    assert not blocks(
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*"}, bucket)
    assert not blocks(
        {**upload_failures.deny_statement(bucket), "Condition": {"Bool": {
            "aws:SecureTransport": "false"}}}, bucket)


def test_failures_are_advised_with_the_runbook_subsection() -> None:
    cases = {
        journeys.upload_advice("SignatureDoesNotMatch"): "Upload Failures",
        journeys.upload_advice("AccessDenied"): "Upload Failures",
        journeys.email_advice("Resend rejected the email: API key is invalid (HTTP 401)"):
            "Email Not Sending",
        journeys.email_advice("The x.test domain is not verified (HTTP 403)"):
            "Email Not Sending",
        "security-incident": "Data Breach / Security Incident",
        "database-slow": "Slow Query Performance",
    }
    for advice, section in cases.items():
        lines = next_steps(advice)
        assert lines and all(section in line for line in lines), (advice, lines)
    assert next_steps("s3-upload-denied")[0].startswith(
        "Incident Response > Upload Failures: 2. check the S3 bucket permissions")


def test_the_offender_is_what_others_wait_on_else_the_longest_statement() -> None:
    found = [
        {"pid": 1, "state": "active", "running_ms": 900, "blocked_by": [3]},
        {"pid": 2, "state": "active", "running_ms": 100, "blocked_by": []},
        {"pid": 3, "state": "active", "running_ms": 700, "blocked_by": []},
    ]
    slow, waiting, blockers = postgres.offenders(found, 500)
    assert [s["pid"] for s in slow] == [1, 3] and [w["pid"] for w in waiting] == [1]
    assert blockers == [3]
    assert postgres.offenders(found[1:2], 500) == ([], [], [])
