"""Client factories: the only places network clients are built, each with finite timeouts."""

from __future__ import annotations

import httpx

from runbook.timeouts import Timeouts


def http_client(timeouts: Timeouts, *, base_url: str = "", headers: dict[str, str] | None = None
                ) -> httpx.Client:
    """An httpx client whose connect, read, write and pool waits are all bounded."""
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(
            connect=timeouts.connect, read=timeouts.read, write=timeouts.read,
            pool=timeouts.connect,
        ),
        follow_redirects=False,
        trust_env=False,
    )
