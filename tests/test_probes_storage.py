"""S3 probes against the real sandbox (moto), plus what the sandbox cannot show.

The sandbox's moto does not check credentials (moto validates nothing unless its
``INITIAL_NO_AUTH_ACTION_COUNT`` is set), so a wrong secret passes there; on the sandbox we
test a missing bucket instead. Real 403s come from a second, in-process moto server with
authentication switched on and an IAM user: a wrong secret (SignatureDoesNotMatch), an
unknown key (InvalidAccessKeyId) and a user without S3 permissions (AccessDenied).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import moto.settings
import pytest
from moto.server import ThreadedMotoServer

from runbook.config import Target
from runbook.errors import ConfigError
from runbook.probes import storage
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts


@pytest.fixture(scope="module")
def target(sandbox: Any) -> Target:
    return Target.from_variables("sandbox", sandbox.env, source="sandbox",
                                 environment="sandbox")


def _variant(sandbox: Any, **changes: str) -> Target:
    return Target.from_variables("variant", {**sandbox.env, **changes}, source="test",
                                 environment="sandbox")


def _no_secrets(result: ProbeResult, target: Target) -> None:
    text = json.dumps(result.evidence(), default=str)
    for secret in target.secret_values():
        assert secret not in text


def _canary_traces(target: Target) -> list[str]:
    """Every version or delete marker left under ``runbook-canary/``."""
    s3 = storage.client(target, Timeouts())
    listing = s3.list_object_versions(Bucket=target.require("S3_BUCKET"),
                                      Prefix=storage.CANARY_PREFIX)
    return [e["Key"] for e in (*listing.get("Versions", []), *listing.get("DeleteMarkers", []))]


# -- pure --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "origin", "allowed"),
    [
        ("*", "https://app.example.com", True),
        ("https://app.example.com", "https://app.example.com", True),
        ("https://APP.example.com/", "https://app.example.com", True),
        ("https://*.example.com", "https://app.example.com", True),
        ("https://*.example.com", "https://example.com", False),
        ("https://app.example.com", "http://app.example.com", False),
        ("https://app.example.com:8443", "https://app.example.com", False),
    ],
)
def test_origin_matching_follows_s3(pattern: str, origin: str, allowed: bool) -> None:
    assert storage.origin_allowed(pattern, origin) is allowed


def test_a_rule_must_allow_put_and_the_content_type_header() -> None:
    rule = {"AllowedOrigins": ["https://a.example"], "AllowedMethods": ["GET", "PUT"],
            "AllowedHeaders": ["Content-Type"]}
    assert storage.rule_allows_put(rule, "https://a.example")
    assert not storage.rule_allows_put({**rule, "AllowedMethods": ["GET"]}, "https://a.example")
    assert not storage.rule_allows_put({**rule, "AllowedHeaders": []}, "https://a.example")
    assert not storage.rule_allows_put(rule, "https://b.example")
    assert storage.origin_of("https://a.example:8443/app/?x=1") == "https://a.example:8443"


class _Preflight(BaseHTTPRequestHandler):
    """Answers OPTIONS as the path says: ``/allow``, ``/refuse`` (S3's 403), ``/unsupported``."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_OPTIONS(self) -> None:
        status = {"/allow": 200, "/refuse": 403}.get(self.path, 405)
        self.send_response(status)
        if status == 200:
            self.send_header("Access-Control-Allow-Origin", self.headers["Origin"])
            self.send_header("Access-Control-Allow-Methods", "GET, PUT")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def preflight_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Preflight)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("path", "supported", "allows_put"),
    [("/allow", True, True), ("/refuse", True, False), ("/unsupported", False, False)],
)
def test_preflight_answers_are_judged(preflight_url: str, path: str, supported: bool,
                                      allows_put: bool) -> None:
    answer = storage.preflight(f"{preflight_url}{path}", "https://app.example", Timeouts())
    assert answer["supported"] is supported
    assert answer["allows_put"] is allows_put


def test_half_a_credential_pair_is_a_configuration_error(sandbox: Any) -> None:
    env = {k: v for k, v in sandbox.env.items() if k != "AWS_SECRET_ACCESS_KEY"}
    half = Target.from_variables("half", env, source="test", environment="sandbox")
    with pytest.raises(ConfigError, match="sets AWS_ACCESS_KEY_ID but not AWS_SECRET_ACCESS_KEY"):
        storage.client(half, Timeouts())
    result = storage.bucket(half, Timeouts())
    assert not result.ok and "AWS_SECRET_ACCESS_KEY" in result.problem


# -- healthy sandbox ---------------------------------------------------------------------


def test_bucket_answers_like_aws_s3_ls(target: Target) -> None:
    result = storage.bucket(target, Timeouts(), require_versioning=True)
    assert result.ok, result.problem
    assert result.observed["versioning"] == "Enabled"
    assert result.observed["has_objects"] is True  # the seeded videos
    assert result.observed["head_ms"] > 0
    _no_secrets(result, target)


def test_canary_object_round_trips_and_leaves_nothing(target: Target) -> None:
    result = storage.canary_object(target, Timeouts())
    assert result.ok, result.problem
    observed = result.observed
    assert observed["read_sha256"] == observed["sha256"]
    assert observed["key"].startswith(storage.CANARY_PREFIX)
    assert observed["version_id"]  # the bucket is versioned...
    assert observed["versions_deleted"] == 2  # ...so the object and its delete marker
    assert observed["cleaned_up"] is True
    assert _canary_traces(target) == []
    _no_secrets(result, target)


def test_cors_allows_put_from_the_web_origin(target: Target) -> None:
    result = storage.cors(target, Timeouts())
    assert result.ok, result.problem
    assert result.observed["origin"] == target.require("WEB_URL").lower()
    assert result.observed["configuration_allows_put"] is True
    assert result.observed["preflight"]["supported"] is True
    assert result.observed["preflight"]["allows_put"] is True
    assert result.observed["rules"][0]["AllowedMethods"] == ["GET", "PUT", "HEAD"]


def test_cors_refuses_another_origin(sandbox: Any) -> None:
    other = _variant(sandbox, WEB_URL="https://elsewhere.example")
    result = storage.cors(other, Timeouts())
    assert not result.ok
    assert "no CORS rule allows PUT from https://elsewhere.example" in result.problem
    assert result.advice == "s3-cors"
    assert result.observed["preflight"]["allows_put"] is False


def test_presigned_upload_is_stored_and_cleaned(target: Target) -> None:
    result = storage.presigned_upload(target, Timeouts())
    assert result.ok, result.problem
    observed = result.observed
    assert observed["upload_status"] == 200
    assert observed["stored_bytes"] == observed["bytes"]
    assert observed["read_sha256"] == observed["sha256"]
    assert "?" not in observed["url"] and "X-Amz" not in json.dumps(dict(observed))
    assert observed["allow_origin"] == target.require("WEB_URL")
    assert observed["cleaned_up"] is True
    assert _canary_traces(target) == []
    _no_secrets(result, target)


# -- failures on the sandbox -------------------------------------------------------------


def test_a_missing_bucket_is_named(sandbox: Any) -> None:
    missing = _variant(sandbox, S3_BUCKET="no-such-bucket-for-runbook")
    result = storage.bucket(missing, Timeouts())
    assert not result.ok
    assert result.problem == "HeadBucket: no such bucket 'no-such-bucket-for-runbook'"
    assert result.advice == "s3-bucket"
    assert result.observed["status_code"] == 404

    canary = storage.canary_object(missing, Timeouts())
    assert not canary.ok
    assert canary.problem.startswith("PutObject: no such bucket")
    assert canary.observed["written"] is False  # nothing to clean, nothing claimed left
    assert "left_behind" not in canary.observed


# -- real 403s from a moto that checks credentials ---------------------------------------


@dataclass(frozen=True)
class AuthS3:
    endpoint: str
    bucket: str
    key_id: str
    secret: str
    powerless_key_id: str
    powerless_secret: str

    def target(self, key_id: str, secret: str) -> Target:
        return Target.from_variables("auth-s3", {
            "S3_BUCKET": self.bucket, "S3_REGION": "us-east-1", "S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
        }, source="test", environment="sandbox")


@pytest.fixture(scope="module")
def auth_s3() -> Iterator[AuthS3]:
    """An in-process moto server that authenticates every request once set up (moto's
    switch is process-wide: restored afterwards)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    saved = moto.settings.INITIAL_NO_AUTH_ACTION_COUNT
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        setup = {"endpoint_url": endpoint, "region_name": "us-east-1",
                 "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        boto3.client("s3", **setup).create_bucket(Bucket="auth-bucket")
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="uploader")
        iam.put_user_policy(UserName="uploader", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }))
        key = iam.create_access_key(UserName="uploader")["AccessKey"]
        iam.create_user(UserName="nobody")
        powerless = iam.create_access_key(UserName="nobody")["AccessKey"]
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        yield AuthS3(endpoint, "auth-bucket", key["AccessKeyId"], key["SecretAccessKey"],
                     powerless["AccessKeyId"], powerless["SecretAccessKey"])
    finally:
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = saved
        server.stop()


def test_authenticating_s3_accepts_the_right_credentials(auth_s3: AuthS3) -> None:
    target = auth_s3.target(auth_s3.key_id, auth_s3.secret)
    assert storage.bucket(target, Timeouts()).ok
    canary = storage.canary_object(target, Timeouts())  # an unversioned bucket this time
    assert canary.ok, canary.problem
    assert canary.observed["cleaned_up"] is True


def test_a_wrong_secret_is_access_denied(auth_s3: AuthS3) -> None:
    target = auth_s3.target(auth_s3.key_id, "not-the-secret-at-all")
    result = storage.bucket(target, Timeouts())
    assert not result.ok
    assert result.problem == ("HeadBucket: access denied: check the credentials and bucket"
                              " permissions")
    assert result.advice == "s3-credentials"
    assert result.observed["status_code"] == 403
    canary = storage.canary_object(target, Timeouts())
    assert "access denied (SignatureDoesNotMatch)" in canary.problem
    _no_secrets(result, target)
    _no_secrets(canary, target)


@pytest.mark.parametrize("who", ["unknown key", "user without S3 permissions"])
def test_other_credential_failures_are_access_denied(auth_s3: AuthS3, who: str) -> None:
    target = (auth_s3.target("AKIAUNKNOWNKEY000000", "whatever-secret") if who == "unknown key"
              else auth_s3.target(auth_s3.powerless_key_id, auth_s3.powerless_secret))
    result = storage.canary_object(target, Timeouts())
    assert not result.ok
    code = "InvalidAccessKeyId" if who == "unknown key" else "AccessDenied"
    assert result.problem.startswith(f"PutObject: access denied ({code})")
    assert result.advice == "s3-credentials"
