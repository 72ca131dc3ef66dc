"""Game days of the providers LegacyVideo depends on, against the real sandbox: Upload
Failures (S3: wrong credentials, a bucket policy, CORS) and Email Not Sending (Resend: an
invalid key, an unverified sender).

Each runs on the engine, detected by the scheduled scenario that names the incident's
section, the runbook's steps followed, recovered, restored, no secret recorded
(``tests/gamedays.py``). Run with ``-s`` to see each game day's row of the detection
matrix. Then the sandbox's S3 checks credentials like AWS, and which bucket policy blocks
uploads.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from runbook.actions.users import CanaryUser
from runbook.drills.faults import DrillContext
from runbook.drills.incidents import upload_failures
from tests import gamedays
from tests.conftest import RunningSandbox

PROVIDER_GAMEDAYS = ["upload-failures-wrong-credentials", "upload-failures-bucket-policy",
                     "upload-failures-cors", "email-not-sending-invalid-key",
                     "email-not-sending-unverified-sender"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", PROVIDER_GAMEDAYS)
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
    gamedays.no_secret_in(record, secrets)
    gamedays.assert_healthy(healthy_sandbox, context, canary)
    print("\n" + gamedays.matrix_line(name, record, time.monotonic() - started))


# -- the sandbox's S3 checks credentials -----------------------------------------------------


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
