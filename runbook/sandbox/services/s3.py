"""The S3 stand-in: a moto server speaking the S3 protocol over HTTP, with the bucket
created on start (versioning enabled, CORS for ``WEB_URL``) and the seeded videos'
objects put in it. State lives in memory: killing this process loses every object, which
is what the runbook's S3 data-loss scenario is about.

``python -m runbook.sandbox.services.s3`` serves on ``HOST``/``PORT``."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any

from runbook.sandbox.services import seeddata
from runbook.sandbox.services.common import (
    ConfigError,
    listen_address,
    require,
    setup_logging,
)

log = logging.getLogger("legacyvideo.s3")


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
        client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{
            "AllowedOrigins": [web_url.rstrip("/")],
            "AllowedMethods": ["GET", "PUT", "HEAD"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 3000,
        }]})
    for video in seeddata.VIDEOS:
        client.put_object(
            Bucket=bucket, Key=video.s3_key, Body=seeddata.placeholder_bytes(video),
            ContentType=video.content_type,
        )
    return len(seeddata.VIDEOS)


def main() -> int:
    """Serve until SIGTERM/SIGINT. Exit 2 on a configuration error."""
    setup_logging("s3")
    env = os.environ
    try:
        host, port = listen_address(env, 4566)
        bucket = require(env, "S3_BUCKET")
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    region = env.get("S3_REGION") or "us-east-1"
    from moto.server import ThreadedMotoServer

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    endpoint = f"http://{host}:{port}"
    put = prepare_bucket(s3_client(endpoint, region, env), bucket, region, env.get("WEB_URL"))
    log.info(
        "S3 stand-in listening on %s: bucket %s ready (versioning on, %d seed objects) in %.2f s",
        endpoint, bucket, put, time.monotonic() - started,
    )
    while not stop.wait(0.1):
        pass
    server.stop()
    log.info("S3 stand-in stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
