"""The supervisor's control channel: HTTP on a loopback port chosen by the kernel, every
request carrying a bearer token that only the owner of the state directory can read
(``control.json``, mode 0600).

Requests (JSON bodies and answers):

``GET  /status``                                   the supervisor's state (as state.json)
``POST /components/<name>/restart``  ``{"env": {"VAR": "value" | null}}``   restart, optionally
                                     with environment overrides (null removes a variable)
``POST /components/<name>/stop``     stop and hold down (no automatic restart)
``POST /components/<name>/start``    start a held or crashed component (overrides cleared)
``POST /shutdown``                   stop every component, then the supervisor
"""

from __future__ import annotations

import http.client
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.errors import SandboxError
from runbook.sandbox.layout import read_json, write_json_atomic

MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class ControlEndpoint:
    """Where the running supervisor listens, and the token it requires."""

    pid: int
    port: int
    token: str

    def save(self, path: Path) -> None:
        write_json_atomic(path, {"pid": self.pid, "port": self.port, "token": self.token},
                          mode=0o600)

    @classmethod
    def load(cls, path: Path) -> ControlEndpoint | None:
        data = read_json(path)
        if not isinstance(data, dict):
            return None
        try:
            return cls(int(data["pid"]), int(data["port"]), str(data["token"]))
        except (KeyError, TypeError, ValueError):
            return None

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(32)


def call(
    endpoint: ControlEndpoint,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """One request to the supervisor; returns its JSON answer.

    Raises ``SandboxError`` when the supervisor cannot be reached or refuses the request.
    """
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=timeout)
    payload = json.dumps(body or {}).encode()
    try:
        conn.request(
            method, path, body=payload if method == "POST" else None,
            headers={
                "Authorization": f"Bearer {endpoint.token}",
                "Content-Type": "application/json",
            },
        )
        response = conn.getresponse()
        raw = response.read(1024 * 1024)
    except (OSError, http.client.HTTPException) as exc:
        raise SandboxError(
            f"the sandbox supervisor (pid {endpoint.pid}) did not answer on its control port"
            f" ({exc}); run `runbook sandbox down` then `runbook sandbox up`"
        ) from None
    finally:
        conn.close()
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        answer = {"error": raw[:200].decode("utf-8", "replace")}
    if response.status >= 400:
        raise SandboxError(str(answer.get("error") or f"supervisor answered {response.status}"))
    return answer if isinstance(answer, dict) else {"answer": answer}
