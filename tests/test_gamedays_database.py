"""Game days of the database, against the real sandbox: Database Connection Errors (the
database stopped; its connections all taken by a leaking client), API Returns 500 Error with
the database lost, and Slow Query Performance (writes waiting on a lock).

Each runs on the engine under an armed restoration guard, with the end-to-end round trip of
a canary user as the steady state, detected by the scheduled scenario that must trip, and
must come to what ``OUTCOMES`` says (``tests/gamedays.py``). The sandbox is healthy
afterwards either way. Run with ``-s`` to see each game day's row of the detection matrix.
Then how the drills read ``pg_stat_activity``: the client holding the slots, the offender.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import psycopg
import psycopg.conninfo
import pytest
from psycopg import sql

from runbook.actions.users import CanaryUser
from runbook.drills import connection_holder
from runbook.drills.catalog import DRILLS
from runbook.drills.faults import DrillContext
from runbook.drills.incidents.database_connection_errors import ConnectionUse
from runbook.probes import postgres
from runbook.wait import wait_until
from tests import gamedays
from tests.conftest import RunningSandbox

DATABASE_GAMEDAYS = ["database-connection-errors", "connection-limit-exhausted",
                     "api-500-lost-database", "slow-query-performance"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", DATABASE_GAMEDAYS)
def test_game_day(name: str, healthy_sandbox: RunningSandbox, context: DrillContext,
                  canary: CanaryUser, tmp_path: Path) -> None:
    secrets = gamedays.secret_values(healthy_sandbox)
    assert not [s for s in secrets if s in json.dumps(dict(DRILLS[name].params))]
    started = time.monotonic()
    record = gamedays.run(name, healthy_sandbox, context, canary, tmp_path)
    gamedays.assert_outcome(name, record)
    report = gamedays.explain(record)
    steps = gamedays.activities(record)
    # The calls that really ran, never a CLI that did not: the runbook's own command is
    # shown beside them ("the runbook says").
    assert not [a for a in steps.values() if a["command"][:1] in (["railway"], ["psql"],
                                                                  ["curl"], ["aws"])], report
    assert any(a["runbook_says"] for a in steps.values()), report
    if name == "connection-limit-exhausted":
        limits = next(a for n, a in steps.items() if n.startswith("4. check connection"))
        assert "LIMIT REACHED" in str(limits["output"]), limits
    gamedays.no_secret_in(record, secrets)
    gamedays.assert_healthy(healthy_sandbox, context, canary)
    print("\n" + gamedays.matrix_line(name, record, time.monotonic() - started))


# -- what the drills read in pg_stat_activity ----------------------------------------------


def test_connection_use_finds_the_client_holding_the_slots() -> None:
    use = ConnectionUse(100, 3, 97, (("runbook-conn-holder", "app", "idle", 90),
                                     ("legacyvideo-api", "app", "active", 7)))
    assert use.available == 97 and use.exhausted
    assert use.top_idle() == ("runbook-conn-holder", "app", 90)
    assert "LIMIT REACHED" in use.describe()
    calm = ConnectionUse(100, 3, 5, (("legacyvideo-runbook", "app", "idle", 5),))
    assert not calm.exhausted and calm.top_idle() is None


def test_the_offender_is_what_others_wait_on_else_the_longest_statement() -> None:
    found = [
        {"pid": 1, "state": "active", "running_ms": 900, "blocked_by": [3]},
        {"pid": 2, "state": "active", "running_ms": 100, "blocked_by": []},
        {"pid": 3, "state": "active", "running_ms": 700, "blocked_by": []},
    ]
    slow, waiting, blockers = postgres.offenders(found, 500)
    assert [s["pid"] for s in slow] == [1, 3] and [w["pid"] for w in waiting] == [1]
    assert blockers == [3]
    assert postgres.offenders(found[1:2], 500) == ([], [], [])
    # A wait shorter than the threshold (two writers on one row) is no offender.
    brief = [{"pid": 4, "state": "active", "running_ms": 30, "blocked_by": [5]},
             {"pid": 5, "state": "idle in transaction", "running_ms": 40, "blocked_by": []}]
    assert postgres.offenders(brief, 500) == ([], [], [])


# -- the leaking client -------------------------------------------------------------------


def test_the_leaking_client_takes_the_slots_others_free_until_its_own_are_terminated(
        sandbox: RunningSandbox, tmp_path: Path) -> None:
    """A scratch role limited to 3 connections: another client holds one while the holder
    fills, so the holder stops at 2; when that client lets go, the holder takes its slot
    (the fault stays whole). Once the holder's connections are terminated it takes no more:
    the freed slots stay free."""
    admin = sandbox.sandbox.superuser_dsn()
    role, password = f"holder_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 3 PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))
    dsn = psycopg.conninfo.make_conninfo(admin, user=role, password=password)
    stop = threading.Event()
    holder = threading.Thread(target=connection_holder.hold, args=(dsn, tmp_path / "state"),
                              kwargs={"application_name": "holder-test", "limit": 100,
                                      "max_s": 60, "stop": stop})
    try:
        with psycopg.connect(dsn) as other:
            holder.start()
            assert wait_until(lambda: (tmp_path / "state").exists(), timeout=30).ok
            assert json.loads((tmp_path / "state").read_text())["holding"] == 2
            other.execute("SELECT 1")

        def held() -> int:
            with psycopg.connect(admin, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                                   (role,)).fetchone()
            return int(row[0]) if row else 0

        assert wait_until(lambda: held() == 3, timeout=10).ok, held()
        with pytest.raises(psycopg.OperationalError, match="too many connections"):
            psycopg.connect(dsn, connect_timeout=3).close()

        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE usename = %s", (role,))
        assert wait_until(lambda: held() == 0, timeout=10).ok, held()
        time.sleep(3 * connection_holder.TOP_UP_S)
        assert held() == 0
        psycopg.connect(dsn, connect_timeout=3).close()
    finally:
        stop.set()
        holder.join(10)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE usename = %s", (role,))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
