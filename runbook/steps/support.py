"""What several step modules share: skipping, with the reason, when a target lacks a variable."""

from __future__ import annotations

import pytest

from runbook.config import Target
from runbook.results import ProbeResult


def require_variables(target: Target, *variables: str) -> None:
    """Skip the scenario, naming what is missing, when the target leaves a variable unset."""
    missing = target.has(*variables)
    if missing:
        pytest.skip(f"target {target.name!r} sets no {', '.join(missing)}")


def skip_if_unavailable(result: ProbeResult) -> ProbeResult:
    """Skip, with the probe's reason, when the target does not expose what it reads."""
    if result.observed.get("unavailable"):
        pytest.skip(result.problem)
    return result
