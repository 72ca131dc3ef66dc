"""Every probe of queues, storage, email and metrics fails fast, never hangs: against a
closed port, and against a listener that accepts TCP connections and never answers (a
black-holed service). Each must end within its deadline (plus 1 s of slack) with a failing
result, not an exception, and without a secret in what it recorded."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from runbook.clients import s3_client
from runbook.config import Target
from runbook.probes import email, metrics, queues, storage, traffic
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts

TIMEOUTS = Timeouts(connect=0.5, read=0.5, deadline=2.0)
REDIS_PASSWORD = "deadline-test-redis-password"
AWS_SECRET = "deadline-test-aws-secret-key"
RESEND_KEY = "re_deadline_test_key_123"


@dataclass(frozen=True)
class Listener:
    port: int
    connections: list[socket.socket]


@pytest.fixture(scope="module")
def black_hole() -> Iterator[Listener]:
    """Accepts every TCP connection and never reads or writes a byte."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield Listener(server.getsockname()[1], held)
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


@pytest.fixture(scope="module", autouse=True)
def _s3_models_loaded() -> None:
    """boto3's S3 model read once for the process, as any earlier S3 call would have: the
    deadlines here are about the network; a cold read of the model takes seconds of CPU on
    a loaded machine, inside the first S3 probe's deadline."""
    s3_client(_target(9), TIMEOUTS)


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _target(port: int) -> Target:
    base = f"http://127.0.0.1:{port}"
    return Target.from_variables("unreachable", {
        "API_URL": base,
        "WEB_URL": "http://127.0.0.1:9",
        "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0",
        "S3_BUCKET": "legacyvideo-uploads",
        "S3_REGION": "us-east-1",
        "S3_ENDPOINT_URL": base,
        "AWS_ACCESS_KEY_ID": "AKIADEADLINETEST0000",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "RESEND_API_URL": base,
        "RESEND_API_KEY": RESEND_KEY,
        "FROM_EMAIL": "noreply@legacyvideo.test",
    }, source="test", environment="sandbox")


CANARY_WITHIN_S = 1.0
Probe = Callable[[Target, Timeouts], ProbeResult]
PROBES: dict[str, tuple[Probe, float]] = {
    "queues.counts": (lambda t, to: queues.counts(t, to, "email"), TIMEOUTS.deadline),
    "queues.workers": (lambda t, to: queues.workers(t, to, "email"), TIMEOUTS.deadline),
    "queues.runbook_llen_failed": (lambda t, to: queues.runbook_llen_failed(t, to, "email"),
                                   TIMEOUTS.deadline),
    "queues.canary_round_trip": (
        lambda t, to: queues.canary_round_trip(t, to, "email", within_s=CANARY_WITHIN_S),
        queues.canary_deadline(TIMEOUTS, CANARY_WITHIN_S)),
    "storage.bucket": (storage.bucket, TIMEOUTS.deadline),
    "storage.canary_object": (storage.canary_object, TIMEOUTS.deadline),
    "storage.cors": (storage.cors, TIMEOUTS.deadline),
    "storage.presigned_upload": (storage.presigned_upload, TIMEOUTS.deadline),
    "email.api_key": (email.api_key, TIMEOUTS.deadline),
    "email.sender_domain": (email.sender_domain, TIMEOUTS.deadline),
    "metrics.measure": (lambda t, to: metrics.measure(t, to, requests=20), TIMEOUTS.deadline),
    "metrics.scrape": (metrics.scrape, TIMEOUTS.deadline),
    "traffic.traffic /metrics": (lambda t, to: traffic.traffic(t, to, 300, environ={}),
                                 TIMEOUTS.deadline),
    "traffic.traffic prometheus": (
        lambda t, to: traffic.traffic(t, to, 300, environ={
            "RUNBOOK_PROMETHEUS_URL": str(t.api_url),
            "RUNBOOK_PROMETHEUS_SELECTOR": 'job="legacyvideo-api"'}),
        TIMEOUTS.deadline),
}


def _check(result: ProbeResult, deadline: float) -> None:
    assert not result.ok
    assert result.problem
    assert result.elapsed_s < deadline + 1.0, f"{result.elapsed_s:.2f} s > {deadline} s + 1 s"
    text = json.dumps(result.evidence(), default=str)
    for secret in (REDIS_PASSWORD, AWS_SECRET, RESEND_KEY):
        assert secret not in text


@pytest.mark.parametrize("name", sorted(PROBES))
def test_a_black_holed_service_fails_within_the_deadline(black_hole: Listener, name: str
                                                         ) -> None:
    probe, deadline = PROBES[name]
    result = probe(_target(black_hole.port), TIMEOUTS)
    _check(result, deadline)


@pytest.mark.parametrize("name", sorted(PROBES))
def test_a_closed_port_fails_fast(closed_port: int, name: str) -> None:
    probe, deadline = PROBES[name]
    result = probe(_target(closed_port), TIMEOUTS)
    _check(result, deadline)
    # Refused at once: the probe fails on the refusal, never waits out a timeout (what the
    # result says, not a speed bound: a busy machine may take a while to say it).
    assert "timeout" not in result.observed
    assert "timed out" not in result.problem.lower(), result.problem


def test_the_canary_on_a_black_hole_says_so_and_claims_no_job(black_hole: Listener) -> None:
    result = queues.canary_round_trip(_target(black_hole.port), TIMEOUTS, "email",
                                      within_s=CANARY_WITHIN_S)
    assert not result.ok
    assert "Timeout" in result.problem or "timed out" in result.problem
    assert "left_behind" not in result.observed


def test_measuring_a_black_hole_stops_early_rather_than_overrun(black_hole: Listener) -> None:
    result = metrics.measure(_target(black_hole.port), TIMEOUTS, requests=20)
    assert not result.ok
    assert result.observed["stopped_early"] is True
    assert result.observed["sent"] < 20
    assert result.observed["error_rate_percent"] == 100.0
    assert result.problem.startswith("no answer to any of")
