"""Incident Response > Service Down: the API killed and held down (no automatic restart).

The runbook's steps 1-5: status, logs, the database and Redis checked, the API restarted.
They restore service: the restart brings the API back.
"""

from __future__ import annotations

from runbook.drills.engine import Incident, fixed
from runbook.drills.incidents.steps import StepLog
from runbook.probes import postgres as postgres_probe
from runbook.probes import redis as redis_probe
from runbook.results import Activity
from runbook.sections import SERVICE_DOWN


class ServiceDown(Incident):
    name = "service-down"
    section = SERVICE_DOWN.section
    fault = "component-down"
    params = fixed(component="api")
    description = "the API stopped and held down: it does not come back by itself"
    signal = "the API's health check failing"

    def runbook_steps(self) -> list[Activity]:
        book = StepLog(self.context)
        target, timeouts = self.context.target, self.context.timeouts
        book.status("1. check service status", runbook_says="railway status")
        book.logs("2. check logs", "api", runbook_says="railway logs --service api --tail")
        book.check("3. check the database (read-only: prisma db pull rewrites the schema file)",
                   "runbook.probes.postgres.answers",
                   lambda: postgres_probe.answers(target, timeouts),
                   runbook_says="railway run --service api npx prisma db pull")
        book.check("4. check Redis", "runbook.probes.redis.ping",
                   lambda: redis_probe.ping(target, timeouts),
                   runbook_says="redis-cli -u $REDIS_URL ping")
        book.restart("5. restart the service", "api",
                     runbook_says="railway restart --service api")
        return book.activities
