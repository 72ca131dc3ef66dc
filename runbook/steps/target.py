"""Steps about the target itself: what it has, what its platform exposes."""

from __future__ import annotations

import pytest
from pytest_bdd import given, parsers

from runbook.config import Target
from runbook.probes import resources, status
from runbook.steps.support import require_variables


@given(parsers.re(r"the target has (?:the )?(?P<part>.+)"))
def _(target: Target, part: str) -> None:
    require_variables(target, *status.variables_for(part))


@given(parsers.parse("the target's platform exposes {resource} usage"))
def _(target: Target, resource: str) -> None:
    reason = resources.unavailable_reason(target, resource)
    if reason:
        pytest.skip(reason)
