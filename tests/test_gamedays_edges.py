"""Game days for Upload Failures, Email Not Sending, Data Breach and Slow Query Performance,
run with the engine against the real sandbox: detected with the right diagnosis, the
runbook's steps (and corrections) followed, recovered, restored, no secret recorded.

Run with ``-s`` (or ``-rP``) to see the fault matrix: fault -> failed check -> named
subsection -> time to detect -> time to recover.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from runbook.actions import users
from runbook.drills import faults, faults_edges, gameday, incidents_edges
from runbook.drills.catalog import GAMEDAYS
from runbook.drills.context import context_for
from runbook.drills.faults import DrillContext
from runbook.drills.guard import Guard
from runbook.drills.record import DrillRecord, Phase
from runbook.probes import e2e
from runbook.results import ProbeResult
from runbook.sandbox.procs import is_alive
from runbook.sections import next_steps
from runbook.wait import wait_until
from tests.conftest import RunningSandbox

EDGE_GAMEDAYS = list(incidents_edges.GAMEDAYS)


@dataclass(frozen=True)
class Drill:
    context: DrillContext
    guard: Guard
    sandbox: RunningSandbox


@pytest.fixture
def drill(healthy_sandbox: RunningSandbox, tmp_path: Path) -> Iterator[Drill]:
    """A drill context for the session's sandbox and a restoration guard armed in
    ``tmp_path`` (disarmed after the test; the engine strikes what it reverted)."""
    spec = {"name": "sandbox", "config_file": None, "home": str(healthy_sandbox.home)}
    guard = Guard.arm(tmp_path / "guards", spec)
    try:
        yield Drill(context_for(spec), guard, healthy_sandbox)
    finally:
        guard.disarm()


def _phase(record: DrillRecord, name: str) -> Phase:
    return next(p for p in record.phases if p.name == name)


def _explain(record: DrillRecord) -> str:
    lines = [f"{p.name}: {'ok' if p.ok else 'FAILED'}: {p.detail}" for p in record.phases]
    follow = [p for p in record.phases if p.name == "follow the runbook"]
    if follow:
        lines += [f"  {a['name']}: ok={a['ok']} {a['error']} {a['output'][:300]}"
                  for a in follow[0].evidence]
    return "\n".join([*lines, *record.notes])


def _activities(record: DrillRecord) -> dict[str, Mapping[str, Any]]:
    return {str(a["name"]): a for a in _phase(record, "follow the runbook").evidence}


def _secrets(sandbox: RunningSandbox) -> list[str]:
    return [s for s in sandbox.sandbox.secrets().values() if len(s) >= 8]


def matrix_line(record: DrillRecord, gameday_: gameday.GameDay) -> str:
    """fault -> failed check -> named subsection -> time to detect -> time to recover."""
    evidence = _phase(record, "detect").evidence
    check = f"{evidence[0]['component']} {evidence[0]['check']}" if evidence else "-"
    return (f"{gameday_.name}: {gameday_.fault} {json.dumps(dict(gameday_.params))} -> {check}"
            f" -> {gameday_.diagnosis} -> detected in {record.time_to_detect_s:.3f} s ->"
            f" recovered in {record.rto_s:.3f} s")


# -- the game days -------------------------------------------------------------------------


@pytest.mark.parametrize("name", EDGE_GAMEDAYS)
def test_the_game_day_detects_follows_the_runbook_and_restores(drill: Drill, name: str) -> None:
    chosen = GAMEDAYS[name]
    context = drill.context
    with users.canary_user(context.target, context.timeouts) as canary:
        def steady(ctx: DrillContext) -> ProbeResult:
            return e2e.round_trip(ctx.target, ctx.timeouts, canary.email, canary.password)

        seen: list[DrillRecord] = []
        record = gameday.run(chosen, context, steady=steady, guard=drill.guard,
                             on_record=seen.append)
    assert seen == [record]
    assert record.verdict == "pass", _explain(record)
    assert record.time_to_detect_s is not None and record.time_to_detect_s >= 0
    assert record.rto_s is not None and record.rto_s > record.time_to_detect_s
    detect = _phase(record, "detect")
    assert f"advice names {chosen.diagnosis!r}: yes" in detect.detail
    failed = detect.evidence[0]
    assert not failed["ok"]
    assert _phase(record, "restore").ok
    assert drill.guard.pending() == []
    status = drill.sandbox.sandbox.status()
    assert all(c.running and not c.env_overrides for c in status.components.values()), {
        n: (c.state, c.env_overrides) for n, c in status.components.items()}
    text = json.dumps(record.to_json(), default=str)
    for secret in _secrets(drill.sandbox):
        assert secret not in text
    assert not re.search(r"eyJ[\w-]{5,}\.[\w-]{5,}\.", text), "a token in the record"
    assert chosen.defect and chosen.verify is not None
    assert f"runbook defect: {chosen.defect}" in record.notes
    _specifics(name, record)
    print(f"\nFAULT MATRIX {matrix_line(record, chosen)}")


def _specifics(name: str, record: DrillRecord) -> None:
    """What each game day shows beyond the common verdict: the runbook's defects."""
    steps = _activities(record)
    outputs = " ".join(str(a["output"]) for a in steps.values())
    if name.startswith("upload-failures"):
        assert "presigning is local to the API" in outputs
        assert any(n.startswith("verify: uploads work") and a["ok"] for n, a in steps.items())
    if name == "upload-failures-wrong-credentials":
        assert "SignatureDoesNotMatch" in _phase(record, "detect").detail
        listing = steps["3. test S3 access (aws s3 ls s3://$S3_BUCKET)"]
        assert "the bucket lists with the runbook's credentials" in str(listing["output"])
        assert any(n.startswith("correction: set the API's AWS credentials") for n in steps)
    if name == "upload-failures-bucket-policy":
        assert "1 statement(s) deny s3:PutObject" in outputs
        assert "the bucket lists with the runbook's credentials" in outputs  # ls misses it
        assert any(n.startswith("correction: remove the statement") for n in steps)
    if name == "upload-failures-cors":
        assert "no CORS configuration" in _phase(record, "detect").detail
        assert "4. (correction) put the expected CORS rule back" in steps
    if name.startswith("email-not-sending"):
        assert "WRONGTYPE" in outputs
        assert "a restart does not retry failed jobs" in outputs
        assert "1/1 failed e-mails sent on retry" in outputs
        assert steps["clean up the canary e-mail job"]["ok"]
    if name == "email-not-sending-invalid-key":
        assert "API key is invalid" in _phase(record, "detect").detail
    if name == "email-not-sending-unverified-sender":
        assert "domain is not verified" in _phase(record, "detect").detail
    if name == "data-breach":
        proofs = {n: a for n, a in steps.items() if n.startswith("proof:")}
        assert len(proofs) >= 6 and all(a["ok"] for a in proofs.values()), proofs
        assert steps["4. enable audit log review: the response's actions in the audit log"][
            "ok"]
        timeline = str(steps["6. document the incident timeline"]["output"])
        assert "Notify affected users" in timeline and "203.0.113.66" in timeline
        path = Path(timeline.split("written to ", 1)[1].split("\n", 1)[0])
        assert path.exists()
        path.unlink()
    if name == "slow-query-performance":
        assert "query took" in outputs and "AuditLog" in outputs
        assert "offender pid(s)" in outputs and "runbook-drill-slow-query" in outputs


# -- the faults on their own ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "params"), [
    ("s3-bucket-policy-deny", {"sid": faults_edges.DENY_SID}),
    ("s3-cors-missing", {}),
    ("slow-query", {"hold_s": 0.2, "max_s": 30}),
])
def test_a_fault_reverts_twice_and_leaves_the_target_as_it_was(drill: Drill, name: str,
                                                              params: dict[str, object]) -> None:
    spec = faults.get(name, "sandbox")
    context = drill.context
    assert spec.inject(context, params).ok
    first, second = spec.revert(context, params), spec.revert(context, params)
    assert first.ok and second.ok, (first.error, second.error)
    assert incidents_edges.uploads_work(context).ok if name.startswith("s3") else \
        incidents_edges.slow_queries(context).ok


def test_the_breach_revert_removes_its_canaries_and_refreshes_the_admin_token(
        drill: Drill) -> None:
    context = drill.context
    spec = faults.get("security-breach", "sandbox")
    injected = spec.inject(context, {"accounts": 1, "failures_per_account": 5})
    assert injected.ok, injected.error
    ids = faults_edges.breach_canaries(context)
    assert len(ids) == 1 and faults_edges.ATTACKER.get(ids[0]) is not None
    anomaly = incidents_edges.login_anomaly(context)
    assert not anomaly.ok and next_steps(anomaly.advice)[0].startswith(
        "Incident Response > Data Breach / Security Incident: 1. lock")
    assert spec.revert(context, {}).ok and spec.revert(context, {}).ok
    assert faults_edges.breach_canaries(context) == []
    # The attack's logins are gone from the audit log (the weekly review must not find them).
    assert incidents_edges.login_anomaly(context).ok
    assert faults_edges.ATTACKER.get(ids[0]) is None
    token = drill.sandbox.env["ADMIN_TOKEN"]
    answer = httpx.get(f"{drill.sandbox.env['API_URL']}/api/admin/users?limit=1",
                       headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert answer.status_code == 200


DIES_WITH_FAULTS_IN = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from runbook.drills.context import context_for
    from runbook.drills.faults import get
    from runbook.drills.guard import Guard

    home, ledgers = sys.argv[1], Path(sys.argv[2])
    spec = {"name": "sandbox", "config_file": None, "home": home}
    guard = Guard.arm(ledgers, spec)
    context = context_for(spec)
    for name, params in (("security-breach", {"accounts": 1, "failures_per_account": 1}),
                         ("slow-query", {"hold_s": 0.5, "max_s": 60})):
        guard.record(name, params)
        assert get(name, context.platform.name).inject(context, params).ok, name
    print("injected", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_the_guard_reverts_these_faults_from_another_process(drill: Drill, tmp_path: Path
                                                             ) -> None:
    """The state files let the guard, which never saw the faults being made, find the
    holder process and the breach's canaries after the drill was killed."""
    env = {k: v for k, v in os.environ.items() if k != "API_URL"}
    ledgers = tmp_path / "ledgers"
    died = subprocess.run([sys.executable, "-c", DIES_WITH_FAULTS_IN,
                           str(drill.sandbox.home), str(ledgers)], env=env,
                          capture_output=True, text=True, timeout=90, check=False)
    assert died.returncode == -signal.SIGKILL, died.stderr
    context = drill.context
    holder = json.loads(faults_edges.holder_files(context)[0].read_text())
    assert faults_edges.breach_canaries(context)

    def reverted() -> bool:
        return not list(ledgers.glob("*.json"))

    assert wait_until(reverted, timeout=60, interval=0.2).ok
    log = next(ledgers.glob("*.log")).read_text()
    assert "reverted slow-query: ok" in log and "reverted security-breach: ok" in log, log
    assert not faults_edges.holder_files(context)[0].exists()
    assert not is_alive(int(holder["pid"]))
    assert faults_edges.breach_canaries(context) == []
    assert incidents_edges.slow_queries(context).ok


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
    assert incidents_edges.blocks_uploads(faults_edges.deny_statement(bucket), bucket)
    assert incidents_edges.blocks_uploads(
        {"Effect": "Deny", "Action": ["s3:*"], "Resource": "*"}, bucket)
    assert not incidents_edges.blocks_uploads(
        {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::b/*"}, bucket)
    assert not incidents_edges.blocks_uploads(
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*"}, bucket)
    assert not incidents_edges.blocks_uploads(
        {**faults_edges.deny_statement(bucket), "Condition": {"Bool": {
            "aws:SecureTransport": "false"}}}, bucket)


def test_failures_are_advised_with_the_runbook_subsection() -> None:
    cases = {
        incidents_edges.upload_advice("SignatureDoesNotMatch"): "Upload Failures",
        incidents_edges.upload_advice("AccessDenied"): "Upload Failures",
        incidents_edges.email_advice("Resend rejected the email: API key is invalid (HTTP 401)"):
            "Email Not Sending",
        incidents_edges.email_advice("The x.test domain is not verified (HTTP 403)"):
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
    slow, waiting, blockers = incidents_edges.offenders(found, 500)
    assert [s["pid"] for s in slow] == [1, 3] and [w["pid"] for w in waiting] == [1]
    assert blockers == [3]
    assert incidents_edges.offenders(found[1:2], 500) == ([], [], [])
