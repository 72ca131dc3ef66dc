"""E-mail through Resend: the API key is accepted, and ``FROM_EMAIL``'s domain is verified.

Read-only: both checks list the account's domains (``GET /domains``); no mail is sent.
``RESEND_API_URL`` (default ``https://api.resend.com``) points them at Resend or at a
stand-in that answers the same.
"""

from __future__ import annotations

import time
from email.utils import parseaddr
from typing import Any

import httpx

from runbook.clients import http_client
from runbook.config import Target
from runbook.probes import Verdict, run_probe
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts

#: Resend's error name for a key that may only send e-mail.
RESTRICTED_KEY = "restricted_api_key"
#: At most this many pages of ``GET /domains`` are read.
MAX_PAGES = 5


def _error(response: httpx.Response) -> tuple[str, str]:
    """Resend's error ``name`` and ``message`` from a JSON error body (empty when absent)."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("name") or ""), str(body.get("message") or body.get("error") or "")


class DomainListing:
    """What ``GET /domains`` gave: the HTTP answer, the domains, and how long it took."""

    def __init__(self) -> None:
        self.status_code = 0
        self.error_name = ""
        self.error_message = ""
        self.domains: list[dict[str, Any]] = []
        self.pages = 0
        self.latency_ms = 0.0

    @property
    def restricted(self) -> bool:
        return self.error_name == RESTRICTED_KEY


def list_domains(target: Target, timeouts: Timeouts) -> DomainListing:
    """``GET /domains`` with the target's key, following ``has_more`` for up to
    ``MAX_PAGES`` pages. Raises ``httpx.HTTPError`` on a network failure."""
    url = target.resend_api_url.rstrip("/")
    key = target.require("RESEND_API_KEY")
    listing = DomainListing()
    params: dict[str, str] = {}
    started = time.monotonic()
    with http_client(timeouts, headers={"Authorization": f"Bearer {key}",
                                        "User-Agent": "legacyvideo-runbook"}) as client:
        while listing.pages < MAX_PAGES:
            response = client.get(f"{url}/domains", params=params)
            listing.pages += 1
            listing.status_code = response.status_code
            if response.status_code != 200:
                listing.error_name, listing.error_message = _error(response)
                break
            try:
                body = response.json()
            except ValueError:
                listing.error_message = "the answer is not JSON"
                break
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                listing.error_message = "the answer has no list of domains"
                break
            listing.domains.extend(d for d in data if isinstance(d, dict))
            if not (body.get("has_more") and data and data[-1].get("id")):
                break
            params = {"after": str(data[-1]["id"])}
    listing.latency_ms = round((time.monotonic() - started) * 1000, 1)
    return listing


def _summary(domain: dict[str, Any]) -> dict[str, Any]:
    capabilities = domain.get("capabilities")
    return {
        "name": domain.get("name"),
        "status": domain.get("status"),
        "region": domain.get("region"),
        "sending": capabilities.get("sending") if isinstance(capabilities, dict) else None,
    }


def _http_problem(listing: DomainListing) -> str:
    detail = ", ".join(p for p in (listing.error_name, listing.error_message) if p)
    return f"HTTP {listing.status_code}" + (f" ({detail})" if detail else "")


def api_key(target: Target, timeouts: Timeouts) -> ProbeResult:
    """``GET /domains`` with ``RESEND_API_KEY``: 200 means the key is accepted; Resend's
    ``restricted_api_key`` answer means a sending-only key (accepted; domains cannot be
    listed). 401/403 fail as "RESEND_API_KEY rejected". Records status, latency, domains."""
    expected = "Resend accepts RESEND_API_KEY"
    target.require("RESEND_API_KEY")

    def body() -> Verdict:
        listing = list_domains(target, timeouts)
        observed: dict[str, Any] = {
            "api_url": target.resend_api_url,
            "status_code": listing.status_code,
            "latency_ms": listing.latency_ms,
        }
        if listing.restricted:
            observed.update(key_accepted=True, sending_only=True, domains_listable=False)
            return Verdict(True, expected, observed=observed)
        if listing.status_code in (401, 403):
            observed["key_accepted"] = False
            return Verdict(False, expected, f"RESEND_API_KEY rejected: {_http_problem(listing)}",
                           observed, advice="email-api-key")
        if listing.status_code == 429:
            return Verdict(False, expected, "Resend rate-limited the check (HTTP 429); try"
                           " again in a second", observed)
        if listing.status_code != 200 or listing.error_message:
            return Verdict(False, expected, f"Resend answered {_http_problem(listing)}",
                           observed)
        observed.update(key_accepted=True, sending_only=False, domains_listable=True,
                        domains=[_summary(d) for d in listing.domains])
        return Verdict(True, expected, observed=observed)

    return run_probe("email", "API key", target, timeouts, body, expected=expected)


def sender_domain(target: Target, timeouts: Timeouts) -> ProbeResult:
    """``FROM_EMAIL``'s domain is among the account's domains with status ``verified``.

    Records the domain, its status, region and sending capability, and every domain listed.
    A sending-only key cannot list domains: the result then says so with
    ``unavailable``, so a step can skip with that reason."""
    from_email = target.require("FROM_EMAIL")
    target.require("RESEND_API_KEY")
    domain = parseaddr(from_email)[1].rpartition("@")[2].lower()
    expected = f"FROM_EMAIL's domain {domain} is verified in Resend"

    def body() -> Verdict:
        listing = list_domains(target, timeouts)
        observed: dict[str, Any] = {
            "from_domain": domain,
            "status_code": listing.status_code,
            "latency_ms": listing.latency_ms,
        }
        if listing.restricted:
            observed.update(unavailable=True, sending_only=True)
            return Verdict(False, expected, "RESEND_API_KEY may only send e-mail: it cannot"
                           f" list domains, so {domain}'s status is unknown; check it in the"
                           " Resend dashboard", observed, advice="email-sender-domain")
        if listing.status_code in (401, 403):
            return Verdict(False, expected, f"RESEND_API_KEY rejected: {_http_problem(listing)}",
                           observed, advice="email-api-key")
        if listing.status_code != 200 or listing.error_message:
            return Verdict(False, expected, f"Resend answered {_http_problem(listing)}",
                           observed)
        domains = [_summary(d) for d in listing.domains]
        observed["domains"] = domains
        match = next((d for d in domains if str(d["name"] or "").lower() == domain), None)
        if match is None:
            return Verdict(False, expected, f"FROM_EMAIL's domain {domain} is not verified"
                           " (status: not added to this Resend account)", observed,
                           advice="email-sender-domain")
        observed.update(status=match["status"], region=match["region"],
                        sending=match["sending"])
        if match["status"] != "verified":
            return Verdict(False, expected, f"FROM_EMAIL's domain {domain} is not verified"
                           f" (status {match['status']})", observed,
                           advice="email-sender-domain")
        if match["sending"] not in (None, "enabled"):
            return Verdict(False, expected, f"FROM_EMAIL's domain {domain} is verified but"
                           f" sending is {match['sending']}", observed,
                           advice="email-sender-domain")
        return Verdict(True, expected, observed=observed)

    return run_probe("email", "sender domain", target, timeouts, body, expected=expected)
