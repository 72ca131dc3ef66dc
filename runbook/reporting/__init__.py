"""What a run writes: summaries, exit codes, evidence (redacted before it leaves)."""
