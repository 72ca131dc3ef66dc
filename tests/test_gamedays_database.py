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
import time
from pathlib import Path

import pytest

from runbook.actions.users import CanaryUser
from runbook.drills.catalog import DRILLS
from runbook.drills.faults import DrillContext
from runbook.drills.incidents.database_connection_errors import ConnectionUse
from runbook.probes import postgres
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
