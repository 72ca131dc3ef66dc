"""The runbook's incidents and data loss scenarios, one module per runbook section: the
fault, the runbook's steps and the verification of each drill (``runbook.drills.catalog``
lists them)."""
