"""The S3 stand-in: a moto server speaking the S3 protocol over HTTP, with the bucket
created on start (versioning enabled, CORS for ``WEB_URL``) and the seeded videos'
objects put in it. State lives in memory: killing this process loses every object, which
is what the runbook's S3 data-loss scenario is about.

Credentials are checked as AWS checks them. moto authenticates nothing unless IAM
authentication is switched on (its ``INITIAL_NO_AUTH_ACTION_COUNT`` setting), so on start
this server creates the IAM user ``legacyvideo-app`` with an inline policy allowing S3,
gives it the access key the sandbox hands out (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``), and then turns authentication on: a request signed with a wrong
secret gets 403 ``SignatureDoesNotMatch``, an unknown key 403 ``InvalidAccessKeyId``, a key
without the permission 403 ``AccessDenied``. moto checks signatures in the
``Authorization`` header only; ``SigV4Gate`` in front of it does what S3 does for the rest:

- presigned URLs (SigV4 query signatures, what the API hands browsers) are verified here
  (key, signature, expiry) and, when valid, passed on signed in the header for the same
  key, so moto still applies that user's policies;
- CORS preflights (``OPTIONS``, never signed by browsers) and the supervisor's readiness
  read of ``GET /<bucket>?versioning`` are answered by moto on the bucket owner's behalf;
- any other anonymous request is 403 ``AccessDenied``, as for a private bucket;
- moto's own ``/moto-api/`` (which could switch authentication off) is refused.

Bucket policies are enforced by moto for object requests whatever the credentials (an
explicit ``Deny`` answers 403), which the upload-failure game days rely on.

``python -m runbook.sandbox.services.s3`` serves on ``HOST``/``PORT``."""

from __future__ import annotations

import hmac
import io
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl

from runbook.sandbox.services import seeddata
from runbook.sandbox.services.common import (
    ConfigError,
    listen_address,
    require,
    setup_logging,
)

log = logging.getLogger("legacyvideo.s3")

#: The IAM user whose access key is the sandbox's ``AWS_ACCESS_KEY_ID``.
IAM_USER = "legacyvideo-app"
#: Its inline policy's name.
IAM_POLICY = "legacyvideo-uploads"
#: How far a presigned URL's ``X-Amz-Date`` may lie in the future (clock skew), as in S3.
MAX_SKEW = timedelta(minutes=15)
#: S3's limit on ``X-Amz-Expires`` (seven days).
MAX_EXPIRES_S = 7 * 24 * 3600

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def s3_client(endpoint_url: str, region: str, env: Mapping[str, str]) -> Any:
    """A boto3 S3 client for ``endpoint_url``: v4 signatures, path-style, bounded timeouts."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or "sandbox",
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or "sandbox",
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=3,
            read_timeout=10,
            retries={"max_attempts": 2, "mode": "standard"},
        ),
    )


def prepare_bucket(client: Any, bucket: str, region: str, web_url: str | None) -> int:
    """Create ``bucket`` if missing, enable versioning, allow CORS uploads from
    ``web_url``, and put the seeded videos' objects. Returns the objects put."""
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        client.create_bucket(**kwargs)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if web_url:
        client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
            cors_rule(web_url)]})
    for video in seeddata.VIDEOS:
        client.put_object(
            Bucket=bucket, Key=video.s3_key, Body=seeddata.placeholder_bytes(video),
            ContentType=video.content_type,
        )
    return len(seeddata.VIDEOS)


def cors_rule(web_url: str) -> dict[str, Any]:
    """The CORS rule the bucket is created with: browsers on ``web_url`` may GET, PUT and
    HEAD objects (what the front end's presigned uploads need)."""
    return {
        "AllowedOrigins": [web_url.rstrip("/")],
        "AllowedMethods": ["GET", "PUT", "HEAD"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 3000,
    }


def app_user_policy() -> dict[str, Any]:
    """The application user's permissions: S3, all of it (the sandbox has one bucket, and a
    bucket that does not exist answers 404 rather than 403, as on AWS); nothing else (no
    IAM: the key cannot make itself other users)."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "S3", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }


# -- IAM ---------------------------------------------------------------------------------


def _iam_backend() -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    return iam_backends[DEFAULT_ACCOUNT_ID]["aws"]


def create_app_user(access_key_id: str, secret_access_key: str) -> None:
    """Create ``IAM_USER`` with ``app_user_policy`` and make (``access_key_id``,
    ``secret_access_key``) its one active access key.

    IAM issues keys, it does not import them; so a key is created and then given the
    sandbox's id and secret in moto's IAM model (the secret never goes over the wire).
    Raises ``RuntimeError`` when moto's model is not what this expects."""
    backend = _iam_backend()
    backend.create_user(region_name="us-east-1", user_name=IAM_USER, path="/", tags=[])
    backend.put_user_policy(IAM_USER, IAM_POLICY, json.dumps(app_user_policy()))
    key = backend.create_access_key(IAM_USER)
    issued = key.physical_resource_id
    if backend.access_keys.get(issued) is not key:
        raise RuntimeError("moto's IAM model has changed: cannot install the sandbox's key")
    key.access_key_id = access_key_id
    key.secret_access_key = secret_access_key
    del backend.access_keys[issued]
    backend.access_keys[key.physical_resource_id] = key


def secret_for(access_key_id: str) -> str | None:
    """The secret of an active IAM user access key, or ``None`` for an unknown key."""
    for user in _iam_backend().list_users("/", None, None):
        for key in user.access_keys:
            if key.access_key_id == access_key_id and key.status == "Active":
                return str(key.secret_access_key)
    return None


def enable_authentication() -> None:
    """Authenticate and authorise every request from now on (moto's switch is
    process-wide: ``INITIAL_NO_AUTH_ACTION_COUNT`` 0, counter reset)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0


# -- the gate in front of moto -----------------------------------------------------------

_MESSAGES = {
    "AccessDenied": "Access Denied",
    "SignatureDoesNotMatch": "The request signature we calculated does not match the"
                             " signature you provided. Check your key and signing method.",
    "InvalidAccessKeyId": "The AWS Access Key Id you provided does not exist in our records.",
    "AuthorizationQueryParametersError": "Query-string authentication version 4 requires"
                                         " the X-Amz-Algorithm, X-Amz-Credential,"
                                         " X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders,"
                                         " and X-Amz-Expires parameters.",
}


def s3_error(code: str, message: str | None = None) -> bytes:
    """An S3 XML error body."""
    text = message or _MESSAGES.get(code, code)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{text}</Message>"
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    ).encode()


class Rejected(Exception):
    """A request S3 refuses before it reaches moto: ``status``, S3 ``code``, ``message``."""

    def __init__(self, status: int, code: str, message: str | None = None) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message


def _raw_target(environ: Mapping[str, Any]) -> tuple[str, str]:
    """The request's path and query exactly as sent (still percent-encoded)."""
    raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "")
    if not raw:
        raw = str(environ.get("PATH_INFO") or "/")
        if environ.get("QUERY_STRING"):
            raw += "?" + str(environ["QUERY_STRING"])
    path, _, query = raw.partition("?")
    return path, query


def _header(environ: Mapping[str, Any], name: str) -> str:
    key = name.upper().replace("-", "_")
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return str(environ.get(key) or "")
    return str(environ.get(f"HTTP_{key}") or "")


def verify_presigned(method: str, host: str, path: str, query: str,
                     headers: Callable[[str], str], now: datetime | None = None
                     ) -> tuple[str, str, str]:
    """Check a SigV4 presigned request as S3 does; returns (access key id, secret, region).

    Raises ``Rejected``: 400 for missing parameters, 403 ``InvalidAccessKeyId`` for an
    unknown key, 403 ``AccessDenied`` for an expired URL, 403 ``SignatureDoesNotMatch``."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    pairs = [p for p in query.split("&") if p]
    params = dict(parse_qsl(query, keep_blank_values=True))
    needed = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
              "X-Amz-SignedHeaders", "X-Amz-Signature")
    if any(not params.get(n) for n in needed) or params["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
        raise Rejected(400, "AuthorizationQueryParametersError")
    scope = params["X-Amz-Credential"].split("/")
    if len(scope) != 5:
        raise Rejected(400, "AuthorizationQueryParametersError")
    access_key_id, _day, region, service, _terminator = scope
    try:
        signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=UTC)
        expires = int(params["X-Amz-Expires"])
    except ValueError:
        raise Rejected(400, "AuthorizationQueryParametersError") from None
    secret = secret_for(access_key_id)
    if secret is None:
        raise Rejected(403, "InvalidAccessKeyId")
    moment = now or datetime.now(UTC)
    if not 0 < expires <= MAX_EXPIRES_S:
        raise Rejected(400, "AuthorizationQueryParametersError",
                       "X-Amz-Expires must be between 1 and 604800 seconds")
    if moment > signed_at + timedelta(seconds=expires):
        raise Rejected(403, "AccessDenied", "Request has expired")
    if signed_at - moment > MAX_SKEW:
        raise Rejected(403, "AccessDenied", "Request is not yet valid")
    signed_headers = {
        name: headers(name) for name in params["X-Amz-SignedHeaders"].split(";")
        if name and name != "host"
    }
    unsigned_query = "&".join(p for p in pairs if not p.startswith("X-Amz-Signature="))
    request = AWSRequest(method=method, url=f"http://{host}{path}?{unsigned_query}",
                         headers=signed_headers)
    request.context["timestamp"] = params["X-Amz-Date"]
    auth = S3SigV4QueryAuth(Credentials(access_key_id, secret), service, region,
                            expires=expires)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)),
                              request)
    if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
        raise Rejected(403, "SignatureDoesNotMatch")
    return access_key_id, secret, region


class SigV4Gate:
    """WSGI middleware in front of moto: see the module docstring.

    ``owner`` is the (access key id, secret) anonymous preflights and readiness reads are
    signed with; ``bucket`` is the one whose ``?versioning`` may be read anonymously."""

    def __init__(self, app: WsgiApp, owner: tuple[str, str], region: str, bucket: str) -> None:
        self.app = app
        self.owner = owner
        self.region = region
        self.bucket = bucket

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path, query = _raw_target(environ)
        try:
            if path.startswith("/moto-api"):
                raise Rejected(403, "AccessDenied", "moto's control API is disabled here")
            if environ.get("HTTP_AUTHORIZATION"):
                return self.app(environ, start_response)  # moto checks header signatures
            params = dict(parse_qsl(query, keep_blank_values=True))
            if "X-Amz-Signature" in params or "X-Amz-Credential" in params:
                key_id, secret, region = verify_presigned(
                    method, str(environ.get("HTTP_HOST") or ""), path, query,
                    lambda name: _header(environ, name))
                kept = "&".join(p for p in query.split("&")
                                if p and not p.lower().startswith("x-amz-"))
                self._sign(environ, method, path, kept, (key_id, secret), region)
                return self.app(environ, start_response)
            if "Signature" in params or "AWSAccessKeyId" in params:
                raise Rejected(400, "InvalidRequest",
                               "Signature version 2 is not supported; use AWS4-HMAC-SHA256")
            if method == "OPTIONS" or (
                method in ("GET", "HEAD") and path.rstrip("/") == f"/{self.bucket}"
                and query == "versioning"
            ):
                self._sign(environ, method, path, query, self.owner, self.region)
                return self.app(environ, start_response)
            raise Rejected(403, "AccessDenied")
        except Rejected as exc:
            log.warning("refused %s %s: %s (HTTP %d)", method, path, exc.code, exc.status)
            body = s3_error(exc.code, exc.message)
            reason = {400: "Bad Request", 403: "Forbidden"}.get(exc.status, "Error")
            start_response(f"{exc.status} {reason}", [
                ("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body]

    @staticmethod
    def _sign(environ: dict[str, Any], method: str, path: str, query: str,
              credentials: tuple[str, str], region: str) -> None:
        """Rewrite the request as one signed in the ``Authorization`` header by
        ``credentials`` (query-string signature parameters dropped), body kept."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        headers = {"Content-Type": environ["CONTENT_TYPE"]} if environ.get("CONTENT_TYPE") \
            else {}
        host = str(environ.get("HTTP_HOST") or "")
        target = path + (f"?{query}" if query else "")
        request = AWSRequest(method=method, url=f"http://{host}{target}", headers=headers,
                             data=body)
        S3SigV4Auth(Credentials(*credentials), "s3", region).add_auth(request)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256"):
            environ[f"HTTP_{name.upper().replace('-', '_')}"] = request.headers[name]
        environ["QUERY_STRING"] = query
        environ["RAW_URI"] = environ["REQUEST_URI"] = target
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))


# -- serving -----------------------------------------------------------------------------


class Server:
    """moto's WSGI application behind ``SigV4Gate``, served by werkzeug in a thread."""

    def __init__(self, host: str, port: int, owner: tuple[str, str], region: str,
                 bucket: str) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = SigV4Gate(DomainDispatcherApplication(create_backend_app), owner, region, bucket)
        self._server = make_server(host, port, app, threaded=True,
                                   request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="s3-server")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


def main() -> int:
    """Serve until SIGTERM/SIGINT. Exit 2 on a configuration error."""
    setup_logging("s3")
    env = os.environ
    try:
        host, port = listen_address(env, 4566)
        bucket = require(env, "S3_BUCKET")
        key_id = require(env, "AWS_ACCESS_KEY_ID")
        secret = require(env, "AWS_SECRET_ACCESS_KEY")
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    region = env.get("S3_REGION") or "us-east-1"
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    server = Server(host, port, (key_id, secret), region, bucket)
    server.start()
    endpoint = f"http://{host}:{port}"
    put = prepare_bucket(s3_client(endpoint, region, env), bucket, region, env.get("WEB_URL"))
    try:
        create_app_user(key_id, secret)
    except Exception as exc:  # an incompatible moto: run, but say S3 is not authenticating
        log.error("IAM authentication NOT enabled (%s: %s): this S3 accepts any credentials",
                  type(exc).__name__, exc)
    else:
        enable_authentication()
    log.info(
        "S3 stand-in listening on %s: bucket %s ready (versioning on, %d seed objects,"
        " IAM user %s) in %.2f s", endpoint, bucket, put, IAM_USER, time.monotonic() - started,
    )
    while not stop.wait(0.1):
        pass
    server.stop()
    log.info("S3 stand-in stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
