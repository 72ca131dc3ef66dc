"""Importing this registers every fault the runbook knows; ``GAMEDAYS`` lists every game day."""

from __future__ import annotations

from runbook.drills import (  # noqa: F401
    dr_faults,
    faults_edges,
    faults_services,
    incidents_edges,
    incidents_services,
    sandbox_faults,
)
from runbook.drills.gameday import GameDay

GAMEDAYS: dict[str, GameDay] = {**incidents_services.GAMEDAYS, **incidents_edges.GAMEDAYS}
