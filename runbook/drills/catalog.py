"""Importing this registers every fault the runbook knows."""

from runbook.drills import sandbox_faults  # noqa: F401
