"""``runbook watch --listen HOST:PORT``: the watch's state over HTTP while it runs.

``/metrics`` is the exposition the watch writes to ``metrics.prom`` and pushes (the last
round's run metrics and the ``runbook_watch_*`` families), served by ``prometheus_client``
from one registry whose collector hands out the latest round's families, label values
redacted as in the file. ``/`` is a status page in plain HTML (no script, no external asset,
a meta refresh every interval): each runbook section's checks with their last outcome, the
last round, the alerts firing; every text escaped and redacted. ``/healthz`` answers 200
while the watch loop runs.

The standard library's ``ThreadingHTTPServer`` in a daemon thread, as the sandbox's own
helpers and the tests' receivers do: a few readers at most, and no dependency added.
"""

from __future__ import annotations

import errno
import html
import math
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from runbook.errors import ConfigError
from runbook.reporting import metrics
from runbook.reporting.metrics import Redact

#: Where a scenario without a runbook section is listed on the page.
NO_SECTION = "(no runbook section)"


@dataclass(frozen=True)
class Check:
    """One scenario as last seen: its name, its own runbook section, tier and outcome."""

    name: str
    section: str
    tier: str
    outcome: str


@dataclass(frozen=True)
class Round:
    """The last round: its number, start, duration and exit code; ``result`` false when it
    gave no summary."""

    number: int
    started_at: datetime
    elapsed_s: float
    exit_code: int
    result: bool


@dataclass(frozen=True)
class Alert:
    """An alert firing: the scenario, its tier, since when, and its last failure."""

    scenario: str
    tier: str
    fired_at: str
    message: str


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0: any free one) as ``(host, port)``;
    a ``ConfigError`` saying what a good one looks like otherwise."""
    host, colon, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen {value!r} is not HOST:PORT; give one like 127.0.0.1:9464"
                          f" (port 0: any free port)")
    return host, int(port)


class LiveStatus:
    """What the server shows, replaced by the watch after every round (under a lock).
    ``target`` may be named after the server is bound (it is bound before the target is
    resolved, which may start a sandbox)."""

    def __init__(self, interval_s: float, redact: Redact, target: str = "") -> None:
        self.target = target
        self.interval_s = interval_s
        self.redact = redact
        self.alive = True
        self._lock = threading.Lock()
        self._exposition = metrics.Exposition()
        self._checks: dict[str, Check] = {}
        self._round: Round | None = None
        self._firing: tuple[Alert, ...] = ()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Latest(self))

    def update(self, exposition: metrics.Exposition | None,
               scenarios: Iterable[Mapping[str, Any]], last: Round,
               firing: Sequence[Alert]) -> None:
        """After a round: its metrics (``None``: keep the last ones), the outcome of each
        scenario it ran (the others keep theirs), the round, the alerts firing."""
        checks = {}
        for scenario in scenarios:
            nodeid = str(scenario.get("nodeid", scenario.get("name", "")))
            labels = metrics.scenario_labels(self.target, scenario)
            checks[nodeid] = Check(labels["scenario"], labels["section"] or NO_SECTION,
                                   labels["tier"], str(scenario.get("outcome", "")))
        with self._lock:
            if exposition is not None:
                self._exposition = exposition
            self._checks.update(checks)
            self._round = last
            self._firing = tuple(firing)

    def families(self) -> list[Metric]:
        with self._lock:
            exposition = self._exposition
        return list(exposition.metrics(self.redact))

    def page(self) -> str:
        """The status page: plain HTML, every text escaped after redaction."""
        with self._lock:
            checks, last, firing = list(self._checks.values()), self._round, self._firing

        def text(value: object) -> str:
            return html.escape(self.redact(str(value)))

        refresh = max(1, math.ceil(self.interval_s))
        parts = [
            "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="refresh" content="{refresh}">',
            f"<title>runbook watch: {text(self.target)}</title>",
            "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
            ".passed,.flaky{color:#146c2e}.failed,.error{color:#b3261e;font-weight:bold}"
            "</style></head><body>",
            f"<h1>runbook watch: {text(self.target)}</h1>",
            '<section id="last-round"><h2>Last round</h2>',
        ]
        if last is None:
            parts.append("<p>No round has ended yet.</p>")
        else:
            started = last.started_at.isoformat(timespec="seconds")
            parts.append(
                f"<p>Round {last.number} started {text(started)}, took"
                f" {last.elapsed_s:.1f} s, exit code {last.exit_code}"
                f"{'' if last.result else ' (no result: counters unchanged)'}.</p>")
        parts.append('</section><section id="alerts"><h2>Alerts firing</h2>')
        if not firing:
            parts.append("<p>None.</p>")
        else:
            parts.append("<ul>")
            parts.extend(f"<li><strong>[{text(a.tier or '-')}] {text(a.scenario)}</strong>"
                         f" since {text(a.fired_at)}: {text(a.message)}</li>" for a in firing)
            parts.append("</ul>")
        parts.append('</section><section id="checks"><h2>Checks by runbook section</h2>')
        if not checks:
            parts.append("<p>No check has run yet.</p>")
        by_section: dict[str, list[Check]] = {}
        for check in checks:
            by_section.setdefault(check.section, []).append(check)
        for section in sorted(by_section):
            parts.append(f"<h3>{text(section)}</h3><table><tr><th>check</th><th>tier</th>"
                         f"<th>last outcome</th></tr>")
            parts.extend(f'<tr><td>{text(c.name)}</td><td>{text(c.tier or "-")}</td>'
                         f'<td class="{text(c.outcome)}">{text(c.outcome)}</td></tr>'
                         for c in sorted(by_section[section], key=lambda c: c.name))
            parts.append("</table>")
        parts.append("</section></body></html>")
        return "\n".join(parts) + "\n"


class _Latest(Collector):
    """The registry's one collector: the families of the latest round."""

    def __init__(self, status: LiveStatus) -> None:
        self._status = status

    def collect(self) -> Iterable[Metric]:
        return self._status.families()


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class LiveServer:
    """The HTTP server of ``status`` on ``host:port``, bound when made (a ``ConfigError``
    naming the address when it cannot be), serving from ``start`` until ``stop``."""

    def __init__(self, status: LiveStatus, host: str, port: int) -> None:
        self.status = status
        handler = _handler(status)
        server_class = _IPv6Server if ":" in host else _Server
        try:
            self._server = server_class((host, port), handler)
        except OSError as exc:
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"cannot listen on {address}: the address is in use (another"
                                  f" runbook watch?); stop that process or give another"
                                  f" --listen port (0: any free one)") from None
            raise ConfigError(f"cannot listen on {address}: {exc.strerror or exc}; give an"
                              f" address of this host, e.g. 127.0.0.1:9464") from None
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="runbook-watch-listen", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (the loop has ended: ``/healthz`` says so to a
        request still in flight)."""
        self.status.alive = False
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def _handler(status: LiveStatus) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # the watch's own lines stay readable

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, CONTENT_TYPE_LATEST, generate_latest(status.registry))
            elif path == "/":
                self._answer(200, "text/html; charset=utf-8", status.page().encode())
            elif path == "/healthz":
                alive = status.alive
                self._answer(200 if alive else 503, "text/plain; charset=utf-8",
                             b"ok\n" if alive else b"the watch loop has ended\n")
            else:
                self._answer(404, "text/plain; charset=utf-8",
                             b"not found: /metrics, /healthz or / (the status page)\n")

        def _answer(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

    return Handler


__all__ = ["Alert", "Check", "LiveServer", "LiveStatus", "Round", "parse_listen"]
