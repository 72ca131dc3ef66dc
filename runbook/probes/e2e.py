"""End to end: the API is healthy and a real write and read go through it.

A login writes (an audit-log row, the session's token) and ``/api/auth/me`` reads the user
back with the new token: the smallest round trip that needs the API, its database and its
token signing all at once. Drills call service "recovered" on this, not on a process start.
"""

from __future__ import annotations

import time

from pydantic import SecretStr

from runbook.clients import http_client
from runbook.config import Target
from runbook.probes import Verdict, run_probe
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts


def round_trip(target: Target, timeouts: Timeouts, email: str, password: SecretStr
               ) -> ProbeResult:
    """``/health`` ok, login as ``email`` (200 with a token), ``/api/auth/me`` answers that
    user. Records each step's status and the whole round trip's time."""
    expected = "health ok, a login (write) and the user read back with its token (read)"
    api = target.require("API_URL")

    def body() -> Verdict:
        observed: dict[str, object] = {}
        started = time.monotonic()
        with http_client(timeouts) as client:
            health = client.get(f"{api}/health")
            observed["health_status"] = health.status_code
            if health.status_code != 200:
                return Verdict(False, expected, f"health answered HTTP {health.status_code}",
                               observed, advice="api")
            login = client.post(f"{api}/api/auth/login",
                                json={"email": email, "password": password.get_secret_value()})
            observed["login_status"] = login.status_code
            token = login.json().get("token") if login.status_code == 200 else None
            if not isinstance(token, str):
                return Verdict(False, expected, f"login answered HTTP {login.status_code}",
                               observed, advice="api")
            me = client.get(f"{api}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
            observed["me_status"] = me.status_code
            if me.status_code != 200 or me.json().get("email") != email:
                return Verdict(False, expected,
                               f"reading the user back answered HTTP {me.status_code}",
                               observed, advice="api")
        observed["round_trip_ms"] = round((time.monotonic() - started) * 1000, 1)
        return Verdict(True, expected, observed=observed)

    return run_probe("api", "end to end", target, timeouts, body, expected=expected)
