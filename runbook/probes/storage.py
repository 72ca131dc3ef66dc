"""S3: the runbook's ``aws s3 ls s3://$S3_BUCKET``, a self-cleaning canary object, the
bucket's CORS rules for browser uploads, and an upload through a presigned URL.

Canary objects live under ``runbook-canary/`` with a unique key. The bucket is versioned, so
deleting a key only adds a delete marker: cleanup deletes every version and delete marker of
the key, whatever happened before. Nothing that identifies the credentials is recorded: no
presigned URL (its query names the access key), only its host and path.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
)

from runbook.clients import S3Client, http_client
from runbook.clients import s3_client as client
from runbook.config import Target
from runbook.probes import Verdict, describe_error, run_probe
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts

#: Where canary objects go; a key here is the runbook's own, never the application's.
CANARY_PREFIX = "runbook-canary/"
#: How long a presigned canary upload URL stays valid.
PRESIGN_EXPIRES_S = 300



def canary_key(kind: str = "object") -> str:
    """A fresh key under ``runbook-canary/``."""
    return f"{CANARY_PREFIX}{kind}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-" \
           f"{uuid.uuid4().hex[:12]}"


def error_code(exc: BaseException) -> tuple[str, int | None]:
    """The S3 error code and HTTP status of a ``ClientError`` (``("", None)`` otherwise)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(error.get("Code", "")), int(status) if status else None
    return "", None


def record_error(exc: BaseException, observed: dict[str, Any]) -> None:
    """Put the S3 error code and HTTP status of ``exc`` into ``observed`` (when it has them)."""
    code, status = error_code(exc)
    if status:
        observed["status_code"] = status
    if code:
        observed["error_code"] = code
    if not isinstance(exc, ClientError):
        observed["error"] = type(exc).__name__


def explain(exc: BaseException, bucket: str, operation: str) -> tuple[str, str]:
    """A one-line, secret-free problem for an S3 failure, and the advice key that fits it."""
    code, status = error_code(exc)
    if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId",
                                 "SignatureDoesNotMatch", "AllAccessDisabled"):
        detail = f" ({code})" if code and code != "403" else ""
        return (f"{operation}: access denied{detail}: check the credentials and bucket"
                " permissions", "s3-credentials")
    if status == 404 or code in ("NoSuchBucket", "404"):
        return f"{operation}: no such bucket {bucket!r}", "s3-bucket"
    if status == 301 or code == "PermanentRedirect":
        return (f"{operation}: the bucket {bucket!r} is in another region than S3_REGION",
                "s3-bucket")
    if isinstance(exc, ClientError):
        return f"{operation}: {code or 'error'} (HTTP {status})", "s3"
    if isinstance(exc, BotoCoreError):
        return f"{operation}: {type(exc).__name__}: {_first_line(exc)}", "s3"
    return f"{operation}: {describe_error(exc)}", "s3"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def remove_all_versions(s3: S3Client, bucket: str, key: str) -> int:
    """Delete every version and delete marker of exactly ``key``; returns how many.

    Falls back to a plain delete where the listing of versions is not allowed."""
    removed = 0
    try:
        listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
    except ClientError:
        s3.delete_object(Bucket=bucket, Key=key)
        return 1
    entries = [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]
    for entry in entries:
        if entry.get("Key") != key:
            continue
        version = entry.get("VersionId")
        if version and version != "null":
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
        else:
            s3.delete_object(Bucket=bucket, Key=key)
        removed += 1
    return removed


def versions_left(s3: S3Client, bucket: str, key: str) -> int:
    """How many versions or delete markers of exactly ``key`` remain."""
    listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
    entries = [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]
    return sum(1 for e in entries if e.get("Key") == key)


def _cleanup(s3: S3Client, bucket: str, key: str, observed: dict[str, Any]) -> str:
    """Remove every trace of ``key``; records it, and returns a problem when any remains."""
    try:
        observed["versions_deleted"] = remove_all_versions(s3, bucket, key)
        left = versions_left(s3, bucket, key)
    except Exception as exc:
        observed["cleaned_up"] = False
        observed["left_behind"] = key
        return f"cleanup of {key} failed: {explain(exc, bucket, 'delete')[0]}"
    observed["cleaned_up"] = left == 0
    if left:
        observed["left_behind"] = key
        return f"{left} version(s) of {key} remain after cleanup"
    return ""


#: Failures after which the object certainly was not stored.
_NOT_WRITTEN = (ClientError, EndpointConnectionError, ConnectTimeoutError, httpx.ConnectError,
                httpx.ConnectTimeout)


def _with_cleanup(expected: str, bucket: str, key: str,
                  steps: Callable[[S3Client, dict[str, Any]], Verdict],
                  s3: S3Client) -> Verdict:
    """Run ``steps``, then always clean ``key``; a failed cleanup fails the check.

    ``steps`` sets ``observed["written"]`` to ``"unknown"`` before writing and ``True`` once
    written; a write S3 refused outright leaves nothing to clean."""
    observed: dict[str, Any] = {"bucket": bucket, "key": key, "written": False}
    try:
        verdict = steps(s3, observed)
    except Exception as exc:
        if observed["written"] == "unknown" and isinstance(exc, _NOT_WRITTEN):
            observed["written"] = False  # refused, or never connected: nothing was stored
        problem, advice = explain(exc, bucket, observed.get("operation", "S3"))
        record_error(exc, observed)
        verdict = Verdict(False, expected, problem, observed, advice=advice)
    if observed["written"] is False:
        observed["cleaned_up"] = True
        leftover = ""
    else:
        leftover = _cleanup(s3, bucket, key, observed)
        if leftover and observed["written"] == "unknown":
            observed.pop("left_behind", None)
            observed["cleanup_unverified"] = True
            leftover = f"whether {key} was stored could not be verified"
    merged = {**verdict.observed, **observed}
    if leftover:
        problem = "; ".join(p for p in (verdict.problem, leftover) if p)
        return Verdict(False, expected, problem, merged, advice="s3-credentials")
    return Verdict(verdict.ok, expected, verdict.problem, merged, advice=verdict.advice)


# -- bucket ------------------------------------------------------------------------------


def bucket(target: Target, timeouts: Timeouts, *, require_versioning: bool = False
           ) -> ProbeResult:
    """The runbook's ``aws s3 ls s3://$S3_BUCKET``: ``HeadBucket`` then ``ListObjectsV2``
    (one key). Records the HTTP statuses, the bucket's region, whether it holds objects and
    its versioning status; fails on 403 ("access denied") and 404 ("no such bucket"), and on
    versioning not enabled when ``require_versioning``."""
    name = target.require("S3_BUCKET")
    expected = f"bucket {name} answers HeadBucket and ListObjectsV2"
    if require_versioning:
        expected += " with versioning enabled"

    def body() -> Verdict:
        s3 = client(target, timeouts)
        observed: dict[str, Any] = {"bucket": name, "endpoint": s3.meta.endpoint_url}
        try:
            started = time.monotonic()
            head = s3.head_bucket(Bucket=name)
            observed["head_ms"] = round((time.monotonic() - started) * 1000, 1)
            headers = head.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            observed["region"] = headers.get("x-amz-bucket-region") or target.s3_region
            started = time.monotonic()
            listing = s3.list_objects_v2(Bucket=name, MaxKeys=1)
            observed["list_ms"] = round((time.monotonic() - started) * 1000, 1)
            observed["has_objects"] = bool(listing.get("KeyCount", 0))
        except Exception as exc:
            operation = "ListObjectsV2" if "head_ms" in observed else "HeadBucket"
            record_error(exc, observed)
            problem, advice = explain(exc, name, operation)
            return Verdict(False, expected, problem, observed, advice=advice)
        try:
            observed["versioning"] = s3.get_bucket_versioning(Bucket=name).get(
                "Status", "Disabled")
        except ClientError as exc:
            observed["versioning"] = f"unknown ({error_code(exc)[0] or 'error'})"
        if require_versioning and observed["versioning"] != "Enabled":
            return Verdict(False, expected, f"versioning is {observed['versioning']}: deleted"
                           " or overwritten videos cannot be recovered", observed,
                           advice="s3-bucket")
        return Verdict(True, expected, observed=observed)

    return run_probe("s3", "bucket", target, timeouts, body, expected=expected)


# -- canary object -----------------------------------------------------------------------


def canary_object(target: Target, timeouts: Timeouts) -> ProbeResult:
    """Put a unique object under ``runbook-canary/``, get it back and compare SHA-256, delete
    it, then delete every version and delete marker of the key (always). Records the
    put/get/delete times, the sizes and digests, the version id, and the cleanup."""
    name = target.require("S3_BUCKET")
    expected = "a canary object is written, read back intact, and leaves nothing behind"
    key = canary_key("object")
    payload = f"legacyvideo-runbook canary {key} {uuid.uuid4().hex}\n".encode()
    digest = hashlib.sha256(payload).hexdigest()

    def steps(s3: S3Client, observed: dict[str, Any]) -> Verdict:
        observed.update(bytes=len(payload), sha256=digest)
        observed.update(operation="PutObject", written="unknown")
        started = time.monotonic()
        put = s3.put_object(Bucket=name, Key=key, Body=payload, ContentType="text/plain")
        observed["written"] = True
        observed["put_ms"] = round((time.monotonic() - started) * 1000, 1)
        observed["version_id"] = put.get("VersionId")
        observed["operation"] = "GetObject"
        started = time.monotonic()
        got = s3.get_object(Bucket=name, Key=key)
        body = got["Body"].read()
        observed["get_ms"] = round((time.monotonic() - started) * 1000, 1)
        observed["read_sha256"] = hashlib.sha256(body).hexdigest()
        observed["operation"] = "DeleteObject"
        started = time.monotonic()
        s3.delete_object(Bucket=name, Key=key)
        observed["delete_ms"] = round((time.monotonic() - started) * 1000, 1)
        del observed["operation"]
        if observed["read_sha256"] != digest:
            return Verdict(False, expected, f"the object read back differs ({len(body)} bytes,"
                           f" sha256 {observed['read_sha256'][:12]}... vs {digest[:12]}...)",
                           observed, advice="s3")
        return Verdict(True, expected, observed=observed)

    def body() -> Verdict:
        return _with_cleanup(expected, name, key, steps, client(target, timeouts))

    return run_probe("s3", "canary object", target, timeouts, body, expected=expected)


# -- CORS --------------------------------------------------------------------------------


def origin_of(url: str) -> str:
    """``https://example.com:8443/path`` -> ``https://example.com:8443``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_allowed(pattern: str, origin: str) -> bool:
    """S3's origin matching: exact (case-insensitive), ``*``, or one ``*`` wildcard."""
    pattern = pattern.strip().rstrip("/").lower()
    if pattern == "*" or pattern == origin:
        return True
    if pattern.count("*") == 1:
        head, tail = pattern.split("*")
        return origin.startswith(head) and origin.endswith(tail) and \
            len(origin) >= len(head) + len(tail)
    return False


def rule_allows_put(rule: dict[str, Any], origin: str) -> bool:
    """Whether one ``CORSRule`` lets ``origin`` PUT (with a ``Content-Type`` header)."""
    methods = {m.upper() for m in rule.get("AllowedMethods", [])}
    origins = rule.get("AllowedOrigins", [])
    headers = [h.lower() for h in rule.get("AllowedHeaders", [])]
    header_ok = any(h in ("*", "content-type") for h in headers)
    return "PUT" in methods and header_ok and any(origin_allowed(o, origin) for o in origins)


def preflight(object_url: str, origin: str, timeouts: Timeouts) -> dict[str, Any]:
    """Send the browser's preflight (``OPTIONS`` with ``Origin`` and
    ``Access-Control-Request-Method: PUT``) and describe the answer."""
    with http_client(timeouts) as http:
        response = http.options(object_url, headers={
            "Origin": origin,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        })
    allow_origin = response.headers.get("access-control-allow-origin")
    allow_methods = response.headers.get("access-control-allow-methods", "")
    methods = {m.strip().upper() for m in allow_methods.split(",")}
    return {
        "status_code": response.status_code,
        "allow_origin": allow_origin,
        "allow_methods": allow_methods,
        # S3 answers a preflight 200 (allowed) or 403 (refused); 400/404/405/501 and the
        # like mean this server does not implement preflights.
        "supported": allow_origin is not None or response.status_code in (200, 204, 403),
        "allows_put": response.status_code in (200, 204) and "PUT" in methods
        and (allow_origin or "").lower() in ("*", origin),
    }


def cors(target: Target, timeouts: Timeouts) -> ProbeResult:
    """The bucket's CORS rules allow ``PUT`` from ``WEB_URL``'s origin (or ``*``), and S3
    answers a real preflight for an object URL accordingly. Records the rules and the
    preflight's answer; an S3 that does not answer preflights is recorded as such and the
    verdict rests on the configuration."""
    name = target.require("S3_BUCKET")
    origin = origin_of(target.require("WEB_URL"))
    expected = f"the bucket's CORS rules let {origin} PUT objects"

    def body() -> Verdict:
        s3 = client(target, timeouts)
        observed: dict[str, Any] = {"bucket": name, "origin": origin}
        try:
            rules = s3.get_bucket_cors(Bucket=name).get("CORSRules", [])
        except ClientError as exc:
            code, _ = error_code(exc)
            if code == "NoSuchCORSConfiguration":
                observed["rules"] = []
                return Verdict(False, expected, "the bucket has no CORS configuration: browsers"
                               f" on {origin} cannot upload", observed, advice="s3-cors")
            problem, advice = explain(exc, name, "GetBucketCors")
            record_error(exc, observed)
            return Verdict(False, expected, problem, observed, advice=advice)
        except BotoCoreError as exc:
            problem, advice = explain(exc, name, "GetBucketCors")
            record_error(exc, observed)
            return Verdict(False, expected, problem, observed, advice=advice)
        observed["rules"] = [
            {k: rule.get(k) for k in ("AllowedOrigins", "AllowedMethods", "AllowedHeaders",
                                      "ExposeHeaders", "MaxAgeSeconds") if k in rule}
            for rule in rules
        ]
        configured = any(rule_allows_put(rule, origin) for rule in rules)
        observed["configuration_allows_put"] = configured
        object_url = s3.generate_presigned_url(
            "put_object", Params={"Bucket": name, "Key": canary_key("preflight")},
            ExpiresIn=60).split("?", 1)[0]
        observed["preflight_url"] = object_url
        try:
            answer = preflight(object_url, origin, timeouts)
        except httpx.HTTPError as exc:
            answer = {"supported": False, "error": describe_error(exc)}
        observed["preflight"] = answer
        if not configured:
            return Verdict(False, expected, f"no CORS rule allows PUT from {origin}"
                           f" ({len(rules)} rule(s))", observed, advice="s3-cors")
        if answer.get("supported") and not answer.get("allows_put"):
            return Verdict(False, expected, f"the rules allow PUT from {origin}, but S3"
                           f" refused the preflight (HTTP {answer.get('status_code')},"
                           f" Access-Control-Allow-Origin {answer.get('allow_origin')!r})",
                           observed, advice="s3-cors")
        return Verdict(True, expected, observed=observed)

    return run_probe("s3", "CORS", target, timeouts, body, expected=expected)


# -- presigned upload --------------------------------------------------------------------


def presigned_upload(target: Target, timeouts: Timeouts) -> ProbeResult:
    """Presign a ``PUT`` for a canary key, upload bytes to it with plain HTTP (as a browser
    does, with ``Origin`` when ``WEB_URL`` is set), verify by ``HeadObject`` and
    ``GetObject`` (SHA-256), then delete every version. Records the upload's status and
    time, the URL's host and path (never its query) and the cleanup."""
    name = target.require("S3_BUCKET")
    expected = "an upload through a presigned PUT URL is stored intact and cleaned up"
    key = canary_key("presigned")
    payload = f"legacyvideo-runbook presigned canary {uuid.uuid4().hex}\n".encode()
    digest = hashlib.sha256(payload).hexdigest()
    content_type = "application/octet-stream"
    origin = origin_of(target.web_url) if target.web_url else None

    def steps(s3: S3Client, observed: dict[str, Any]) -> Verdict:
        observed.update(bytes=len(payload), sha256=digest)
        observed["operation"] = "presign"
        url = s3.generate_presigned_url(
            "put_object", Params={"Bucket": name, "Key": key, "ContentType": content_type},
            ExpiresIn=PRESIGN_EXPIRES_S)
        parts = urlsplit(url)
        observed["url"] = f"{parts.scheme}://{parts.netloc}{parts.path}"
        headers = {"Content-Type": content_type}
        if origin:
            headers["Origin"] = origin
        observed.update(operation="presigned PUT", written="unknown")
        started = time.monotonic()
        with http_client(timeouts) as http:
            response = http.put(url, content=payload, headers=headers)
        observed["upload_ms"] = round((time.monotonic() - started) * 1000, 1)
        observed["upload_status"] = response.status_code
        observed["written"] = response.status_code < 300
        if origin:
            observed["allow_origin"] = response.headers.get("access-control-allow-origin")
        if response.status_code >= 300:
            code = _xml_code(response.text)
            return Verdict(False, expected, f"the presigned upload answered HTTP"
                           f" {response.status_code}{f' ({code})' if code else ''}",
                           observed, advice="s3-presign")
        observed["operation"] = "HeadObject"
        head = s3.head_object(Bucket=name, Key=key)
        observed["stored_bytes"] = head.get("ContentLength")
        observed["stored_content_type"] = head.get("ContentType")
        observed["operation"] = "GetObject"
        stored = s3.get_object(Bucket=name, Key=key)["Body"].read()
        observed["read_sha256"] = hashlib.sha256(stored).hexdigest()
        del observed["operation"]
        if observed["read_sha256"] != digest:
            return Verdict(False, expected, "the uploaded object reads back different"
                           f" ({len(stored)} bytes)", observed, advice="s3-presign")
        return Verdict(True, expected, observed=observed)

    def body() -> Verdict:
        return _with_cleanup(expected, name, key, steps, client(target, timeouts))

    return run_probe("s3", "presigned upload", target, timeouts, body, expected=expected)


def _xml_code(text: str) -> str:
    """The ``<Code>`` of an S3 XML error body, if any."""
    start = text.find("<Code>")
    end = text.find("</Code>", start)
    return text[start + 6:end] if start >= 0 and end > start else ""
