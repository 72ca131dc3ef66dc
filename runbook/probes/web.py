"""The web front end: HTTP 200 and the page is the application, not an error page."""

from __future__ import annotations

import re
import time

from runbook.clients import http_client
from runbook.config import Target
from runbook.probes import Verdict, run_probe
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_ERROR_WORDS = re.compile(
    r"(?i)\b(404|500|502|503|not found|internal server error|bad gateway|application error|"
    r"deployment (?:not found|failed))\b"
)


def front_page(target: Target, timeouts: Timeouts, *, application: str = "LegacyVideo"
               ) -> ProbeResult:
    """GET the web root: 200, HTML, and a title naming the application without error words."""
    expected = f"HTTP 200 with an HTML page titled {application!r}"

    web_url = target.require("WEB_URL")

    def body() -> Verdict:
        with http_client(timeouts) as client:
            started = time.monotonic()
            response = client.get(f"{web_url}/")
            latency_ms = (time.monotonic() - started) * 1000
        match = _TITLE.search(response.text[:65536])
        title = " ".join(match.group(1).split()) if match else None
        observed = {
            "status_code": response.status_code,
            "latency_ms": round(latency_ms, 1),
            "content_type": response.headers.get("content-type", ""),
            "title": title,
            "bytes": len(response.content),
        }
        if response.status_code != 200:
            return Verdict(False, expected, f"HTTP {response.status_code}", observed)
        if title is None:
            return Verdict(False, expected, "the page has no <title>", observed)
        if application.lower() not in title.lower() or _ERROR_WORDS.search(title):
            return Verdict(False, expected, f"the page is titled {title!r}", observed)
        return Verdict(True, expected, observed=observed)

    return run_probe("web", "front page", target, timeouts, body, expected=expected)
