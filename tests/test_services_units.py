"""The sandbox services' building blocks on their own: tokens, log lines, metrics text, and
the mail and web stand-ins served in-process on a free port (no sandbox needed)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runbook.sandbox.services import mail, metrics, tokens, web
from runbook.sandbox.services.common import LineFormatter, libpq_url, pg_options, redact_url
from tests.exposition import by_key

SECRET = "k" * 64

# ------------------------------------------------------------------------------- tokens


def test_user_token_round_trip_carries_role_and_token_version() -> None:
    token = tokens.issue_user_token(SECRET, "user-1", "ADMIN", 7, ttl_s=60)
    claims = tokens.verify_user_token(SECRET, token)
    assert (claims.user_id, claims.role, claims.token_version) == ("user-1", "ADMIN", 7)
    assert claims.expires_at - claims.issued_at == 60


def test_token_signed_with_another_secret_is_rejected() -> None:
    token = tokens.issue_user_token("x" * 64, "user-1", "USER", 0)
    with pytest.raises(tokens.TokenError, match="Signature"):
        tokens.verify_user_token(SECRET, token)


def test_expired_token_is_rejected_beyond_the_leeway() -> None:
    issued = time.time() - 3600
    token = tokens.issue_user_token(SECRET, "user-1", "USER", 0, ttl_s=60, now=issued)
    with pytest.raises(tokens.TokenError, match="Expired"):
        tokens.verify_user_token(SECRET, token)


def test_service_and_user_tokens_are_not_interchangeable() -> None:
    service = tokens.issue_service_token(SECRET, "worker")
    user = tokens.issue_user_token(SECRET, "user-1", "ADMIN", 0)
    assert tokens.verify_service_token(SECRET, service).service == "worker"
    with pytest.raises(tokens.TokenError, match="expected a user token"):
        tokens.verify_user_token(SECRET, service)
    with pytest.raises(tokens.TokenError, match="expected a service token"):
        tokens.verify_service_token(SECRET, user)


def test_token_with_a_swapped_payload_is_rejected() -> None:
    header, payload, signature = tokens.issue_user_token(SECRET, "user-1", "USER", 0).split(".")
    admin_payload = tokens.issue_user_token(SECRET, "user-1", "ADMIN", 0).split(".")[1]
    assert admin_payload != payload
    with pytest.raises(tokens.TokenError, match="Signature"):
        tokens.verify_user_token(SECRET, f"{header}.{admin_payload}.{signature}")


# ------------------------------------------------------------------------------- log lines


def _format(message: str, *args: object, secrets: tuple[str, ...] = ()) -> str:
    record = logging.LogRecord("legacyvideo.test", logging.WARNING, __file__, 1, message,
                               args, None)
    return LineFormatter("api", secrets).format(record)


def test_log_line_is_one_line_with_utc_time_level_and_component() -> None:
    line = _format("first\nsecond")
    stamp, level, component, rest = line.split(" ", 3)
    assert stamp.endswith("Z") and "T" in stamp
    assert (level, component) == ("WARN", "api:")
    assert "\n" not in line and rest == "first | second"


def test_log_line_masks_secrets_bearer_tokens_and_presigned_signatures() -> None:
    line = _format(
        "key=%s auth=%s url=%s",
        "s3cr3t-value",
        "Bearer eyJhbGciOi.abc.def",
        "http://s3/b/k?X-Amz-Credential=AKIA%2Fx&X-Amz-Signature=deadbeef&X-Amz-Date=1",
        secrets=("s3cr3t-value",),
    )
    assert "s3cr3t-value" not in line
    assert "eyJhbGciOi" not in line
    assert "deadbeef" not in line and "AKIA" not in line
    assert "X-Amz-Date=1" in line


def test_urls_lose_their_password_and_prisma_only_parameters() -> None:
    url = "postgresql://app:pw@127.0.0.1:5432/db?schema=public&sslmode=disable"
    assert redact_url(url) == "postgresql://app:***@127.0.0.1:5432/db?schema=public&sslmode=disable"
    assert libpq_url(url) == "postgresql://app:pw@127.0.0.1:5432/db?sslmode=disable"
    with_options = "postgresql://a@h/d?options=-c%20search_path%3Dx"
    assert pg_options(with_options, "-c statement_timeout=5") == (
        "-c search_path=x -c statement_timeout=5"
    )


# ------------------------------------------------------------------------------- metrics


def test_metrics_render_parses_with_cumulative_buckets() -> None:
    registry = metrics.Metrics()
    registry.observe_request("GET", "/health", 200, 0.003)
    registry.observe_request("GET", "/health", 200, 0.2)
    registry.observe_request("POST", '/odd"route', 500, 30.0)
    samples = by_key(registry.render())

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    users = {"synthetic": "false"}
    assert value("http_requests_total", method="GET", route="/health", status="200",
                 **users) == 2
    assert value("http_requests_total", method="POST", route='/odd"route', status="500",
                 **users) == 1
    assert value("http_request_duration_seconds_bucket", route="/health", le="0.005",
                 **users) == 1
    assert value("http_request_duration_seconds_bucket", route="/health", le="0.25",
                 **users) == 2
    assert value("http_request_duration_seconds_bucket", route='/odd"route', le="10.0",
                 **users) == 0
    assert value("http_request_duration_seconds_bucket", route='/odd"route', le="+Inf",
                 **users) == 1
    assert value("http_request_duration_seconds_count", route="/health", **users) == 2
    registry.observe_request("GET", "/health", 200, 0.001, synthetic=True)
    samples = by_key(registry.render())
    assert value("http_requests_total", method="GET", route="/health", status="200",
                 synthetic="true") == 1
    assert value("http_request_duration_seconds_count", route="/health", synthetic="true") == 1
    assert value("http_requests_total", method="GET", route="/health", status="200",
                 **users) == 2
    assert value("process_resident_memory_bytes") > 0
    assert value("process_cpu_seconds_total") > 0


# ------------------------------------------------------------------------------- mail stand-in


@pytest.fixture
def mail_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store = tmp_path / "mail.jsonl"
    server = mail.create_server("127.0.0.1", 0, "re_test_key", ["legacyvideo.test"], store)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}", store
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _auth(key: str = "re_test_key") -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_mail_requires_the_api_key_like_resend(mail_server: tuple[str, Path]) -> None:
    url, _ = mail_server
    missing = httpx.get(f"{url}/domains", timeout=5)
    wrong = httpx.get(f"{url}/domains", headers=_auth("re_wrong"), timeout=5)
    assert (missing.status_code, missing.json()["name"]) == (401, "missing_api_key")
    assert (wrong.status_code, wrong.json()["name"]) == (401, "validation_error")
    assert wrong.json()["message"] == "API key is invalid"


def test_mail_refuses_unverified_sender_domains(mail_server: tuple[str, Path]) -> None:
    url, _ = mail_server
    response = httpx.post(f"{url}/emails", headers=_auth(), timeout=5, json={
        "from": "LegacyVideo <noreply@elsewhere.example>", "to": "a@b.test",
        "subject": "hi", "html": "<p>hi</p>",
    })
    assert response.status_code == 403
    assert response.json()["name"] == "validation_error"
    assert "elsewhere.example domain is not verified" in response.json()["message"]


def test_mail_keeps_sent_mail_and_mirrors_it_to_the_store(
    mail_server: tuple[str, Path],
) -> None:
    url, store = mail_server
    sent = httpx.post(f"{url}/emails", headers=_auth(), timeout=5, json={
        "from": "LegacyVideo <noreply@legacyvideo.test>", "to": "a@b.test",
        "subject": "Release ready", "html": "<p>done</p>",
    })
    assert sent.status_code == 200
    email_id = sent.json()["id"]
    fetched = httpx.get(f"{url}/emails/{email_id}", headers=_auth(), timeout=5).json()
    assert (fetched["to"], fetched["subject"], fetched["last_event"]) == (
        ["a@b.test"], "Release ready", "delivered",
    )
    listed = httpx.get(f"{url}/emails", headers=_auth(), timeout=5).json()["data"]
    assert [e["id"] for e in listed] == [email_id]
    stored = [json.loads(line) for line in store.read_text().splitlines()]
    assert [e["id"] for e in stored] == [email_id]
    assert mail.MailStore(store).get(email_id) == fetched
    missing = httpx.post(f"{url}/emails", headers=_auth(), timeout=5,
                         json={"from": "noreply@legacyvideo.test", "subject": "x"})
    assert (missing.status_code, missing.json()["name"]) == (422, "missing_required_field")


def test_mail_lists_verified_domains_in_resend_shape(mail_server: tuple[str, Path]) -> None:
    url, _ = mail_server
    body = httpx.get(f"{url}/domains", headers=_auth(), timeout=5).json()
    assert [(d["name"], d["status"]) for d in body["data"]] == [("legacyvideo.test", "verified")]
    assert all({"id", "created_at", "region"} <= set(d) for d in body["data"])


# ------------------------------------------------------------------------------- web stand-in


def test_web_serves_the_front_page_and_404_elsewhere() -> None:
    server = web.create_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    host, port = server.server_address[:2]
    try:
        page = httpx.get(f"http://{host}:{port}/", timeout=5)
        head = httpx.head(f"http://{host}:{port}/", timeout=5)
        missing = httpx.get(f"http://{host}:{port}/dashboard", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>LegacyVideo</title>" in page.text
    assert '<meta name="application-name" content="LegacyVideo">' in page.text
    assert head.status_code == 200 and head.content == b""
    assert missing.status_code == 404
