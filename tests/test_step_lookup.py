"""The harness's index of step definitions (``runbook.harness.steplookup``) finds, for every
step of every shipped scenario, what pytest-bdd's own search finds, in the same order."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import collect_shipped

#: Loaded into the collecting pytest: compares both searches on every collected scenario.
COMPARE = '''
import json, os
from runbook.harness import scenarios, steplookup
from runbook.harness.steplookup import bdd_scenario


def pytest_collection_finish(session):
    indexed = bdd_scenario.find_fixturedefs_for_step
    fixturemanager = session._fixturemanager
    steps, differ, found = 0, [], 0
    for item in session.items:
        template = scenarios.template(item)
        if template is None:
            continue
        for step in template.render(scenarios.example_row(item)).steps:
            steps += 1
            mine = [d.func for d in indexed(step=step, fixturemanager=fixturemanager, node=item)]
            theirs = [d.func for d in steplookup.UNINDEXED(
                step=step, fixturemanager=fixturemanager, node=item)]
            found += bool(theirs)
            if mine != theirs:
                differ.append(f"{item.nodeid}: {step.type} {step.name!r}")
    with open(os.environ["RUNBOOK_TEST_OUT"], "w") as out:
        json.dump({"installed": indexed is not steplookup.UNINDEXED, "items": len(session.items),
                   "steps": steps, "found": found, "differ": differ}, out)
'''


def test_the_index_finds_what_pytest_bdd_finds_for_every_shipped_step(tmp_path: Path) -> None:
    result = collect_shipped(tmp_path, "compare_lookup", COMPARE)
    assert result["installed"], "the harness did not install its index in pytest-bdd's place"
    assert result["items"] >= 100 and result["steps"] >= 3 * result["items"], result
    # Every shipped step has a definition: a search that finds nothing would agree too.
    assert result["found"] == result["steps"], result
    assert result["differ"] == [], result["differ"][:10]
