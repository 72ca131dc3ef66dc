"""``runbook watch --listen``: against the session's sandbox, the watch's ``/metrics`` read by
``prometheus_client``'s parser and scraped by a real Prometheus (Debian's), its status page
rendered in headless Chromium (Debian's), ``/healthz``, and a second watch on a port in use
refused in one line. No secret of the sandbox shows in what is served."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from runbook.errors import ConfigError
from runbook.redact import Redactor
from runbook.reporting.live import Alert, LiveStatus, Round, parse_listen
from runbook.wait import wait_until
from tests import monitoring
from tests.conftest import RunningSandbox
from tests.receiver import CLEAN
from tests.test_report_html import Chromium, chromium
from tests.test_watch import API, REDIS, SCENARIOS

LISTENING = re.compile(r"^listening on (http://127\.0\.0\.1:(\d+)) ")


@dataclass
class Watch:
    """A ``runbook watch --listen`` process, its served URL and what it printed so far."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    url: str = ""
    seen: list[str] = field(default_factory=list)

    def wait_for(self, pattern: str, timeout: float = 240) -> str:
        """The first line printed matching ``pattern`` (a regular expression); generous, as
        a round is a whole pytest run and the machine may be busy."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.seen:
                if re.search(pattern, line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r} within {timeout:g} s:\n"
                                     + "".join(self.seen))
            try:
                self.seen.append(self.lines.get(timeout=min(left, 1)))
            except queue.Empty:
                assert self.process.poll() is None, (
                    "the watch ended:\n" + "".join(self.seen) + self._stderr())

    def _stderr(self) -> str:
        return self.process.stderr.read() if self.process.stderr else ""


@contextmanager
def listening(home: Path, cwd: Path, *args: str, listen: str = "127.0.0.1:0"
              ) -> Iterator[Watch]:
    """``runbook watch --listen`` on the sandbox until the block ends (then Ctrl-C); the
    address it printed read first."""
    (home / "watch-state.json").unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "runbook.cli", "watch", "--target", "sandbox", "-k", SCENARIOS,
         "--listen", listen, *args],
        cwd=cwd, env={**CLEAN, "RUNBOOK_HOME": str(home)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def read() -> None:
        for line in stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    watch = Watch(process, lines)
    try:
        found = LISTENING.match(watch.wait_for(r"^listening on "))
        assert found, watch.seen
        watch.url = found.group(1)
        yield watch
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        reader.join(timeout=10)
        if process.stderr:
            process.stderr.close()


def secrets(sandbox: RunningSandbox) -> list[str]:
    found = [v for v in sandbox.sandbox.secrets().values() if len(v) >= 8]
    assert found, "the sandbox has no secrets to look for"
    return found


def samples(text: str) -> dict[str, dict[str, float]]:
    """Sample name -> scenario label (or target) -> value."""
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.labels.get("scenario") or sample.labels.get("target", "")
            found.setdefault(sample.name, {})[key] = sample.value
    return found


def test_metrics_serve_the_run_and_watch_families_and_stop_with_the_watch(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    with listening(healthy_sandbox.home, tmp_path, "--interval", "0.5") as watch:
        assert httpx.get(f"{watch.url}/healthz", timeout=5).status_code == 200
        watch.wait_for(r"^round 1 ")
        answer = httpx.get(f"{watch.url}/metrics", timeout=5)
        healthz = httpx.get(f"{watch.url}/healthz", timeout=5)
        missing = httpx.get(f"{watch.url}/nothing", timeout=5)
        url = watch.url
    assert watch.process.returncode == 130, "".join(watch.seen)
    assert answer.status_code == 200 and answer.headers["content-type"] == CONTENT_TYPE_LATEST
    assert healthz.status_code == 200 and missing.status_code == 404
    seen = samples(answer.text)
    assert seen["runbook_watch_rounds"]["sandbox"] >= 1, answer.text
    assert seen["runbook_watch_alert_firing"] == {REDIS: 0.0, API: 0.0}, answer.text
    assert seen["runbook_watch_consecutive_passes"][REDIS] >= 1, answer.text
    assert seen["runbook_scenario_passed"] == {REDIS: 1.0, API: 1.0}, answer.text
    assert seen["runbook_run_exit_code"] == {"sandbox": 0.0}, answer.text
    labels = next(s.labels for f in text_string_to_metric_families(answer.text)
                  for s in f.samples if s.name == "runbook_watch_alert_firing"
                  and s.labels["scenario"] == REDIS)
    assert labels["target"] == "sandbox" and labels["tier"] == "critical" and labels["section"]
    assert not [s for s in secrets(healthy_sandbox) if s in answer.text]
    # The server went with the watch.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=5)


def test_a_real_prometheus_scrapes_the_watch(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    binary = monitoring.PROMETHEUS.path()
    with listening(healthy_sandbox.home, tmp_path, "--interval", "0.5") as watch:
        port = monitoring.free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: runbook-watch\n"
            f"    static_configs: [{{targets: ['{watch.url.removeprefix('http://')}']}}]\n")
        with monitoring.server("prometheus", [
                binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}"], port, tmp_path) as prometheus:
            def query() -> list[dict[str, Any]]:
                answer = httpx.get(f"{prometheus}/api/v1/query", timeout=5,
                                   params={"query": "runbook_watch_alert_firing"})
                result: list[dict[str, Any]] = answer.json()["data"]["result"]
                return result

            scraped = wait_until(query, timeout=120, interval=0.5, accept=lambda r: len(r) == 2)
    assert scraped.ok, f"Prometheus never had the watch's metrics: {scraped.summary()}"
    series = {str(r["metric"]["scenario"]): r for r in scraped.value or []}
    assert set(series) == {REDIS, API}
    metric = series[REDIS]["metric"]
    assert metric["job"] == "runbook-watch" and metric["target"] == "sandbox", metric
    assert series[REDIS]["value"][1] == "0", series


def test_the_status_page_shows_sections_last_round_and_alerts_in_chromium(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    browser = Chromium(chromium(), tmp_path / "chromium-profile")
    redis_pid = healthy_sandbox.sandbox.status().components["redis"].pid
    assert redis_pid
    os.kill(redis_pid, signal.SIGKILL)
    try:
        # A slow interval: the page's refresh (every interval) does not reload it under us.
        with listening(healthy_sandbox.home, tmp_path, "--interval", "30",
                       "--fail-after", "1") as watch:
            line = watch.wait_for(r"^round 1 ")
            watch.wait_for(r"^ALERT \[critical\] Redis answers PONG")
            raw = httpx.get(watch.url, timeout=5)
            exposed = httpx.get(f"{watch.url}/metrics", timeout=5).text
            page = browser.read(watch.url)["text"]
    finally:
        browser.close()
    assert raw.headers["content-type"].startswith("text/html")
    assert '<meta http-equiv="refresh" content="30">' in raw.text
    assert "<script" not in raw.text and not re.search(r'(src|href)="', raw.text), raw.text
    started = re.match(r"round 1 (\d\d:\d\d:\d\d)Z", line)
    assert started, line
    assert re.search(rf"Round 1 started \d{{4}}-\d\d-\d\dT{started.group(1)}\+00:00, took"
                     r" [0-9.]+ s, exit code 1\.", page), page
    alerts = page.split("Alerts firing", 1)[1].split("Checks by runbook section", 1)[0]
    assert f"[critical] {REDIS}" in alerts and API not in alerts, page
    checks = page.split("Checks by runbook section", 1)[1]
    assert re.search(rf"{re.escape(REDIS)}\tcritical\tfailed", checks), checks
    assert re.search(rf"{re.escape(API)}\t\w+\tpassed", checks), checks
    # Each check under its runbook section's heading, the section the metrics label gives.
    sections = {s.labels["scenario"]: s.labels["section"]
                for f in text_string_to_metric_families(exposed) for s in f.samples
                if s.name == "runbook_watch_alert_firing"}
    assert set(sections) == {REDIS, API} and all(sections.values()), exposed
    for name, section in sections.items():
        under = checks.split(f"\n{section}\n", 1)
        assert len(under) == 2, f"no heading {section!r}: {checks}"
        block = under[1]
        for other in set(sections.values()) - {section}:
            block = block.split(f"\n{other}\n", 1)[0]
        assert name in block, f"{name} not under {section}: {checks!r}"
    assert not [s for s in secrets(healthy_sandbox) if s in raw.text or s in page]


def test_a_second_watch_on_the_same_address_fails_in_one_line(
    healthy_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    with listening(healthy_sandbox.home, tmp_path, "--interval", "0.5") as first:
        address = first.url.removeprefix("http://")
        second = subprocess.run(
            [sys.executable, "-m", "runbook.cli", "watch", "--target", "sandbox",
             "-k", SCENARIOS, "--rounds", "1", "--listen", address],
            cwd=tmp_path, env={**CLEAN, "RUNBOOK_HOME": str(healthy_sandbox.home)},
            capture_output=True, text=True, timeout=60, check=False)
        still = httpx.get(f"{first.url}/healthz", timeout=5).status_code
    assert second.returncode == 2, second.stdout + second.stderr
    assert second.stderr.splitlines() == [
        f"runbook: cannot listen on {address}: the address is in use (another runbook watch?);"
        " stop that process or give another --listen port (0: any free one)"], second.stderr
    assert "round " not in second.stdout
    assert still == 200


def test_a_listen_address_must_be_host_and_port() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for wrong in ("9464", "localhost", ":9464", "host:port", "127.0.0.1:70000"):
        with pytest.raises(ConfigError, match="is not HOST:PORT"):
            parse_listen(wrong)


def test_the_page_escapes_and_redacts_what_it_shows() -> None:
    status = LiveStatus(0.2, Redactor(["hunter2-token"]), target="staging")
    scenario = {"nodeid": "n", "name": "<script>alert(1)</script>", "outcome": "failed",
                "tier": "critical", "sections": ["service-down"]}
    status.update(None, [scenario], Round(3, datetime(2026, 1, 1, tzinfo=UTC), 1.5, 1, True),
                  [Alert("<b>api</b>", "critical", "2026-01-01T00:00:01",
                         "refused with hunter2-token")])
    page = status.page()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>api</b>" not in page and "hunter2-token" not in page
    assert '<meta http-equiv="refresh" content="1">' in page
    assert "Round 3 started 2026-01-01T00:00:00+00:00, took 1.5 s, exit code 1." in page
    assert "<h3>service-down</h3>" in page
