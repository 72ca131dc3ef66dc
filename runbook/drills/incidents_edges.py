"""Game days for the runbook's incidents (filled in by its owner)."""

from __future__ import annotations

from runbook.drills.gameday import GameDay

GAMEDAYS: dict[str, GameDay] = {}
