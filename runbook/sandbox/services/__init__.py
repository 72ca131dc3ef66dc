"""The sandbox's LegacyVideo: API, worker, web front page, Resend and S3 stand-ins,
Prisma-style migrations and seed data. Each service runs as its own process
(``python -m runbook.sandbox.services.<name>``) with the environment described in
``docs/sandbox-contract.md``."""
