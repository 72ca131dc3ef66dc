"""Steps for what only a person can do: the scenario reads the person's record back.

A ``@manual`` scenario names the runbook step, then checks that someone recorded doing it
(``runbook manual record "<scenario name>" --by ... --evidence ...``) within its cadence. A
missing or outdated record is reported as *expired*, not as a failed check: the step is due.
"""

from __future__ import annotations

import allure
import pytest
from pytest_bdd import given, parsers, then

from runbook import manual
from runbook.config import Target
from runbook.errors import CheckFailed
from runbook.manual import EXPIRED


@given(parsers.parse('the runbook step "{step}" that only a person can take'),
       target_fixture="manual_step")
def _(step: str) -> str:
    return step


@then("a person has recorded doing it, with who, when and the evidence")
def _(target: Target, manual_step: str, scenario_name: str, cadence: str | None) -> None:
    standing = manual.standing(scenario_name, cadence)
    allure.dynamic.parameter("runbook step", manual_step)
    allure.attach(standing.describe(), name="manual record",
                  attachment_type=allure.attachment_type.TEXT)
    if standing.expired:
        how = (f'runbook manual record "{scenario_name}" --by NAME --evidence LINK')
        pytest.skip(f"{EXPIRED}{manual_step!r}: {standing.describe()}; when done: {how}")
    assert standing.record is not None
    if standing.record.result != "pass":
        raise CheckFailed(
            "manual step", target.describe(),
            f"{standing.record.by} recorded {manual_step!r} as failed at"
            f" {standing.record.at}: {standing.record.notes or standing.record.evidence}",
            "a recorded pass", ())
