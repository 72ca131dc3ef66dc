"""Redis: ``PING`` answers ``PONG``; memory and client figures recorded."""

from __future__ import annotations

import time

from runbook.clients import redis_client as client
from runbook.config import Target
from runbook.probes import Verdict, run_probe
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts


def ping(target: Target, timeouts: Timeouts) -> ProbeResult:
    """``PING`` -> ``PONG``; records the round trip, server version, memory and clients."""
    expected = "PONG"
    url = target.require("REDIS_URL")

    def body() -> Verdict:
        conn = client(url, timeouts)
        try:
            started = time.monotonic()
            answer = conn.execute_command("PING")
            round_trip_ms = (time.monotonic() - started) * 1000
            info = conn.info()
        finally:
            conn.close()
        reply = "PONG" if answer is True else str(answer)
        observed = {
            "reply": reply,
            "round_trip_ms": round(round_trip_ms, 2),
            "redis_version": info.get("redis_version"),
            "used_memory_bytes": info.get("used_memory"),
            "maxmemory_bytes": info.get("maxmemory"),
            "connected_clients": info.get("connected_clients"),
        }
        if reply != "PONG":
            return Verdict(False, expected, f"PING answered {reply!r}", observed)
        return Verdict(True, expected, observed=observed)

    return run_probe("redis", "ping", target, timeouts, body, expected=expected)
