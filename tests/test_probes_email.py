"""Resend probes against the sandbox's Resend stand-in, plus the Resend answers the stand-in
does not give (a sending-only key, a domain still pending, paged domain lists) from a small
server answering in Resend's documented shapes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from runbook.config import Target
from runbook.probes import email
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


# -- the sandbox's stand-in --------------------------------------------------------------


def test_the_key_is_accepted(target: Target) -> None:
    result = email.api_key(target, Timeouts())
    assert result.ok, result.problem
    assert result.observed["status_code"] == 200
    assert result.observed["key_accepted"] is True
    assert result.observed["sending_only"] is False
    _no_secrets(result, target)


def test_the_sender_domain_is_verified(target: Target) -> None:
    result = email.sender_domain(target, Timeouts())
    assert result.ok, result.problem
    domain = target.require("FROM_EMAIL").rpartition("@")[2]
    assert result.observed["from_domain"] == domain
    assert result.observed["status"] == "verified"


def test_a_wrong_key_is_rejected(sandbox: Any) -> None:
    wrong = _variant(sandbox, RESEND_API_KEY="re_not_the_right_key_123")
    result = email.api_key(wrong, Timeouts())
    assert not result.ok
    assert result.problem.startswith("RESEND_API_KEY rejected: HTTP 401")
    assert result.advice == "email-api-key"
    _no_secrets(result, wrong)
    assert "re_not_the_right_key_123" not in json.dumps(result.evidence())


def test_an_unlisted_sender_domain_is_not_verified(sandbox: Any) -> None:
    other = _variant(sandbox, FROM_EMAIL="noreply@unverified.example")
    result = email.sender_domain(other, Timeouts())
    assert not result.ok
    assert result.problem.startswith("FROM_EMAIL's domain unverified.example is not verified")
    assert result.advice == "email-sender-domain"


# -- Resend answers the stand-in does not give -------------------------------------------

RESTRICTED = (401, {"statusCode": 401, "name": "restricted_api_key",
                    "message": "This API key is restricted to only send emails"})


def _domain(name: str, status: str, ident: str) -> dict[str, Any]:
    return {"id": ident, "name": name, "status": status, "region": "eu-west-1",
            "created_at": "2024-01-01T00:00:00.000Z",
            "capabilities": {"sending": "enabled", "receiving": "disabled"}}


class _Resend(BaseHTTPRequestHandler):
    """``GET /domains`` answering by key, in Resend's shapes."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        after = parse_qs(urlsplit(self.path).query).get("after", [""])[0]
        status, body = 200, {"object": "list", "has_more": False, "data": []}
        if key == "re_sending_only_key":
            status, body = RESTRICTED
        elif key == "re_pending_domain_key":
            body["data"] = [_domain("mail.example.com", "pending", "d1")]
        elif key == "re_paged_key":
            if not after:
                body = {"object": "list", "has_more": True,
                        "data": [_domain("a.example.com", "verified", "d1")]}
            else:
                body["data"] = [_domain("mail.example.com", "verified", "d2")]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def resend_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Resend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _resend_target(url: str, key: str) -> Target:
    return Target.from_variables("resend", {
        "RESEND_API_URL": url, "RESEND_API_KEY": key, "FROM_EMAIL": "noreply@mail.example.com",
    }, source="test", environment="sandbox")


def test_a_sending_only_key_is_accepted_but_cannot_list_domains(resend_url: str) -> None:
    target = _resend_target(resend_url, "re_sending_only_key")
    key = email.api_key(target, Timeouts())
    assert key.ok, key.problem
    assert key.observed["sending_only"] is True
    assert key.observed["domains_listable"] is False

    domain = email.sender_domain(target, Timeouts())
    assert not domain.ok
    assert domain.observed["unavailable"] is True
    assert "cannot list domains" in domain.problem


def test_a_pending_domain_is_not_verified(resend_url: str) -> None:
    result = email.sender_domain(_resend_target(resend_url, "re_pending_domain_key"),
                                 Timeouts())
    assert not result.ok
    assert result.problem == ("FROM_EMAIL's domain mail.example.com is not verified"
                              " (status pending)")


def test_the_domain_list_is_followed_across_pages(resend_url: str) -> None:
    result = email.sender_domain(_resend_target(resend_url, "re_paged_key"), Timeouts())
    assert result.ok, result.problem
    assert [d["name"] for d in result.observed["domains"]] == ["a.example.com",
                                                                "mail.example.com"]
