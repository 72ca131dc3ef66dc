"""Operations that change state (restart, lock a user, retry jobs, back up and restore),
each returning a frozen record with timestamps and cleaning up after itself, also when it
fails (``docs/operations-contract.md``).

One module per runbook operation: ``restart`` (Restart Services, measured), ``logs`` (View
Logs, errors counted), ``database``, ``users``, ``queues``. Import the module you need;
nothing is imported here, so one operation's dependencies never load with another's.
"""

from __future__ import annotations
