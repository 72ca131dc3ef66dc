"""Client factories: the only places network clients are built, each with finite timeouts.

Every HTTP request the runbook makes says who it is: ``User-Agent: legacyvideo-runbook/...``.
The target labels those requests (``synthetic="true"`` on its request counters), so the
alerts on error rate and response time count its users' traffic, never the runbook's own.
"""

from __future__ import annotations

import httpx

from runbook.timeouts import Timeouts

#: What the runbook's HTTP requests start their User-Agent with; the target must label the
#: requests whose User-Agent starts with it (README, "What the target must expose").
USER_AGENT_PREFIX = "legacyvideo-runbook"
USER_AGENT = f"{USER_AGENT_PREFIX}/0.1 (synthetic check; +docs/RUNBOOK.md)"


def http_client(timeouts: Timeouts, *, base_url: str = "", headers: dict[str, str] | None = None
                ) -> httpx.Client:
    """An httpx client whose connect, read, write and pool waits are all bounded, sending
    the runbook's ``User-Agent`` (``headers`` may add others, not replace it)."""
    return httpx.Client(
        base_url=base_url,
        headers={**(headers or {}), "User-Agent": USER_AGENT},
        timeout=httpx.Timeout(
            connect=timeouts.connect, read=timeouts.read, write=timeouts.read,
            pool=timeouts.connect,
        ),
        follow_redirects=False,
        trust_env=False,
    )


def describe_error(exc: BaseException) -> str:
    """A one-line, secret-free description of a network failure."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.ReadTimeout):
        return "connected, but no answer before the read timeout"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.HTTPError):
        return f"{type(exc).__name__}: {exc}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
