"""Nothing the runbook builds can hang: every client factory has finite timeouts and gives up
on a black hole (accepts, never answers) and on a dropping address (SYNs dropped); the full
synthetic run, with one component black-holed or dropped, exits non-zero within its deadline,
for each of six components, black-holed and dropped.

"Within its deadline" is a liveness bound, not a speed target: each call must have ended
when the bound expires (a hang would not), and each run must end before its subprocess
timeout, the scenario deadline the CLI gives pytest.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runbook.actions import database
from runbook.clients import http_client
from runbook.config import Target
from runbook.probes import postgres, queues, storage
from runbook.probes import redis as redis_probe
from runbook.timeouts import Timeouts
from tests.conftest import RunningSandbox
from tests.network import BlackHole, Dropper
from tests.test_cli import outcomes, runbook

TIMEOUTS = Timeouts(connect=0.5, read=0.5, deadline=2.0)
#: A call still running after this long counts as hung (psycopg's connect_timeout is
#: whole seconds, so 1 s; every other client 0.5 s).
BOUND_S = 15.0
Peer = BlackHole | Dropper


@pytest.fixture(params=["black hole", "dropping address"])
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    made: Peer = BlackHole() if request.param == "black hole" else Dropper()
    yield made
    made.close()


def _target(port: int) -> Target:
    return Target.from_variables("hole", {
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}", "S3_BUCKET": "b", "S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIAHOLE", "AWS_SECRET_ACCESS_KEY": "hole-secret-key-0123",
    }, source="test", environment="staging", platform="sandbox")


def _http(port: int) -> None:
    client = http_client(TIMEOUTS)
    assert all(v is not None and v <= 0.5 for v in (
        client.timeout.connect, client.timeout.read, client.timeout.write, client.timeout.pool))
    with client:
        client.get(f"http://127.0.0.1:{port}/health")


def _redis(port: int) -> None:
    client = redis_probe.client(f"redis://:pw@127.0.0.1:{port}/0", TIMEOUTS)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.5 and kwargs["socket_connect_timeout"] == 0.5
    client.ping()


def _redis_async(port: int) -> None:
    async def ping() -> None:
        client = queues.async_client(f"redis://:pw@127.0.0.1:{port}/0", TIMEOUTS)
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 0.5 and kwargs["socket_connect_timeout"] == 0.5
        try:
            await client.ping()
        finally:
            await client.aclose()

    asyncio.run(ping())


def _postgres_probe(port: int) -> None:
    postgres.connect(f"postgresql://u:pw@127.0.0.1:{port}/db", TIMEOUTS).close()


def _postgres_action(port: int) -> None:
    endpoint = database.parse_dsn(f"postgresql://u:pw@127.0.0.1:{port}/db")
    database.open_connection(endpoint, connect_timeout_s=TIMEOUTS.connect,
                             statement_timeout_s=TIMEOUTS.read).close()


def _s3(port: int) -> None:
    s3 = storage.client(_target(port), TIMEOUTS)
    assert s3.meta.config.connect_timeout == 0.5 and s3.meta.config.read_timeout == 0.5
    assert s3.meta.config.retries["total_max_attempts"] == 1
    s3.head_bucket(Bucket="b")


FACTORIES: dict[str, Callable[[int], None]] = {
    "http_client": _http,
    "redis client": _redis,
    "redis async_client (BullMQ)": _redis_async,
    "postgres.connect": _postgres_probe,
    "database.open_connection": _postgres_action,
    "storage.client (boto3)": _s3,
}


@pytest.mark.parametrize("factory", list(FACTORIES))
def test_every_client_factory_gives_up_on_a_peer_that_never_answers(
    factory: str, peer: Peer
) -> None:
    outcome: dict[str, BaseException] = {}

    def call() -> None:
        try:
            FACTORIES[factory](peer.port)
        except BaseException as exc:  # what the client raised is the evidence
            outcome["error"] = exc

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(BOUND_S)
    assert not worker.is_alive(), f"{factory} still waiting after {BOUND_S:g} s: it hangs"
    error = outcome.get("error")
    assert error is not None, f"{factory} returned as if a silent peer had answered"
    assert not isinstance(error, AssertionError), error
    text = f"{type(error).__name__}: {error}".lower()
    assert any(word in text for word in ("timeout", "timed out", "timedout", "connect")), text


# -- the full synthetic run, per component and kind of hole --------------------------------

#: What each component's black hole replaces, and how the variable points at it.
COMPONENTS: dict[str, tuple[str, str]] = {
    "api": ("API_URL", "http://127.0.0.1:{port}"),
    "web": ("WEB_URL", "http://127.0.0.1:{port}"),
    "database": ("DATABASE_URL", "postgresql://legacyvideo:hole-pw-7f3a@127.0.0.1:{port}/lv"),
    "redis": ("REDIS_URL", "redis://:hole-pw-7f3a@127.0.0.1:{port}/0"),
    "s3": ("S3_ENDPOINT_URL", "http://127.0.0.1:{port}"),
    "email": ("RESEND_API_URL", "http://127.0.0.1:{port}"),
}
#: Each run's bound: the CLI's start-up plus the scenarios that wait on the peer, each cut by
#: its probe deadline (2 s here) within the scenario deadline (20 s here).
RUN_BOUND_S = 240.0


def _run(sandbox: RunningSandbox, where: Path, component: str, kind: str) -> tuple[int, str]:
    peer: Peer = BlackHole() if kind == "black hole" else Dropper()
    variable, url = COMPONENTS[component]
    try:
        env = {**sandbox.env, "RUNBOOK_HOME": str(sandbox.home),
               "RUNBOOK_ENVIRONMENT": "staging", variable: url.format(port=peer.port),
               "RUNBOOK_CONNECT_TIMEOUT": "0.5", "RUNBOOK_READ_TIMEOUT": "0.5",
               "RUNBOOK_PROBE_DEADLINE": "2", "RUNBOOK_SCENARIO_DEADLINE": "20"}
        done = runbook("check", "--target", "env", cwd=where, env=env, timeout=RUN_BOUND_S)
    finally:
        peer.close()
    return done.returncode, done.stdout + done.stderr


def test_a_synthetic_run_per_component_and_hole_kind_ends_non_zero(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    # Every component, both ways, once: twelve runs (a twenty-run rotation repeated cells
    # and found nothing more, at nearly twice this test's time).
    cells = list(itertools.product(COMPONENTS, ("black hole", "dropping address")))
    with ThreadPoolExecutor(max_workers=10) as pool:  # the runs mostly wait on the holes
        results = list(pool.map(
            lambda numbered: _run(sandbox, _fresh(tmp_path, numbered[0]), *numbered[1]),
            enumerate(cells)))
    for number, ((component, kind), (code, output)) in enumerate(zip(cells, results, strict=True)):
        where = f"run {number + 1}: {component} {kind}: exit {code}\n{output[-1500:]}"
        # 1: a critical check failed; 4: only warning-tier ones did (e.g. the web page). Never
        # 0, and never a crash or a usage error (2).
        assert code in (1, 4), where
        seen = outcomes(tmp_path / str(number) / "reports")
        assert any(o == "failed" for o in seen.values()), where
        assert "hole-pw-7f3a" not in output, where
    print(f"{len(cells)} runs, every one non-zero within {RUN_BOUND_S:g} s")


def _fresh(root: Path, number: int) -> Path:
    where = root / str(number)
    where.mkdir()
    return where

