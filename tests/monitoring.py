"""Debian's Prometheus, Pushgateway and Alertmanager as real servers for the monitoring tests:
each on a free loopback port, its state in a test's directory, stopped when the test is done.

``./scripts/test`` installs the packages where it can (``ensure_prometheus``); where a binary
is missing the test fails with one line naming the package, as the Chromium tests do.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from runbook.wait import wait_until

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "runbook-rules.yml"
RULE_TESTS = (ROOT / "deploy" / "prometheus" / "runbook-rules.test.yml",
              ROOT / "deploy" / "prometheus" / "runbook-rules.quarter.test.yml")
DASHBOARD = ROOT / "deploy" / "grafana" / "runbook.json"


@dataclass(frozen=True)
class Binary:
    """A binary of a Debian package, or the path the environment variable names."""

    variable: str
    name: str
    package: str

    def path(self) -> str:
        found = os.environ.get(self.variable) or shutil.which(self.name)
        if found is None:
            pytest.fail(f"no {self.name} on PATH: ./scripts/test installs Debian's"
                        f" (apt-get install {self.package}) or set {self.variable}=/path/to/"
                        f"{self.name}", pytrace=False)
        return found


PROMETHEUS = Binary("PROMETHEUS", "prometheus", "prometheus")
PROMTOOL = Binary("PROMTOOL", "promtool", "prometheus")
PUSHGATEWAY = Binary("PUSHGATEWAY", "prometheus-pushgateway", "prometheus-pushgateway")
ALERTMANAGER = Binary("ALERTMANAGER", "prometheus-alertmanager", "prometheus-alertmanager")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(name: str, command: list[str], port: int, directory: Path) -> Iterator[str]:
    """Run ``command`` (listening on ``port``) until the block ends; its URL once its
    ``/-/ready`` answers 200. Its output goes to ``directory/<name>.log``, quoted on failure."""
    log = directory / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                   cwd=directory)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = wait_until(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code,
                           timeout=30, interval=0.1, accept=lambda status: status == 200,
                           stop=lambda: process.poll() is not None)
        assert ready.ok, f"{name} not ready: {ready.summary()}\n{log.read_text()[-2000:]}"
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def pushgateway(directory: Path) -> Iterator[str]:
    port = free_port()
    with server("pushgateway", [PUSHGATEWAY.path(), f"--web.listen-address=127.0.0.1:{port}"],
                port, directory) as url:
        yield url


@contextmanager
def alertmanager(directory: Path, webhook: str) -> Iterator[str]:
    """An Alertmanager sending every alert to ``webhook`` within a second, gossip off."""
    port = free_port()
    config = directory / "alertmanager.yml"
    config.write_text(
        "route:\n"
        "  receiver: webhook\n"
        "  group_by: [alertname, target]\n"
        "  group_wait: 1s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: webhook\n"
        f"    webhook_configs: [{{url: '{webhook}', send_resolved: false}}]\n")
    with server("alertmanager", [
            ALERTMANAGER.path(), f"--config.file={config}",
            f"--storage.path={directory / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            port, directory) as url:
        yield url


@contextmanager
def prometheus(directory: Path, pushgateway_url: str, alertmanager_url: str) -> Iterator[str]:
    """A Prometheus scraping the Pushgateway every second with ``honor_labels`` (as the
    README says to), evaluating the shipped rules every second, alerting to Alertmanager."""
    port = free_port()
    config = directory / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        "alerting:\n"
        "  alertmanagers:\n"
        f"    - static_configs: [{{targets: ['{alertmanager_url.removeprefix('http://')}']}}]\n"
        "scrape_configs:\n"
        "  - job_name: pushgateway\n"
        "    honor_labels: true\n"
        f"    static_configs: [{{targets: ['{pushgateway_url.removeprefix('http://')}']}}]\n")
    with server("prometheus", [
            PROMETHEUS.path(), f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"], port, directory) as url:
        yield url
