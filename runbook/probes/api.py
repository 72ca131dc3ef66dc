"""The API: ``/health`` answers ``{"status":"ok"}`` with a current ISO-8601 timestamp."""

from __future__ import annotations

import time
from datetime import datetime

from runbook.clients import http_client
from runbook.config import Target
from runbook.probes import Verdict, run_probe
from runbook.results import ProbeResult, utcnow
from runbook.timeouts import Timeouts


def _parse_timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def health(target: Target, timeouts: Timeouts, *, max_skew_s: float | None = None
           ) -> ProbeResult:
    """GET ``/health``: 200, JSON ``status`` ``ok``, a timezone-aware ISO-8601 timestamp (within
    ``max_skew_s`` of our clock when given). Records the status code, latency and clock skew."""
    expected = 'HTTP 200 {"status":"ok"} with an ISO-8601 timestamp'
    if max_skew_s is not None:
        expected += f" within {max_skew_s:g} s of our clock"

    api_url = target.require("API_URL")

    def body() -> Verdict:
        with http_client(timeouts) as client:
            started = time.monotonic()
            response = client.get(f"{api_url}/health")
            latency_ms = (time.monotonic() - started) * 1000
        observed: dict[str, object] = {
            "status_code": response.status_code,
            "latency_ms": round(latency_ms, 1),
        }
        if response.status_code != 200:
            return Verdict(False, expected, f"HTTP {response.status_code}", observed)
        try:
            payload = response.json()
        except ValueError:
            return Verdict(False, expected, "the body is not JSON", observed)
        if not isinstance(payload, dict):
            return Verdict(False, expected, "the body is not a JSON object", observed)
        observed["status"] = payload.get("status")
        observed["timestamp"] = payload.get("timestamp")
        if payload.get("status") != "ok":
            return Verdict(False, expected, f"status is {payload.get('status')!r}", observed)
        stamp = _parse_timestamp(payload.get("timestamp"))
        if stamp is None:
            return Verdict(
                False, expected,
                f"timestamp {payload.get('timestamp')!r} is not ISO-8601 with a time zone",
                observed,
            )
        skew = abs((utcnow() - stamp).total_seconds())
        observed["clock_skew_s"] = round(skew, 3)
        if max_skew_s is not None and skew > max_skew_s:
            return Verdict(False, expected, f"timestamp is {skew:.0f} s off our clock", observed)
        return Verdict(True, expected, observed=observed)

    return run_probe("api", "health", target, timeouts, body, expected=expected)
