"""The runbook's Component Status table: each component checked the way the table says."""

from __future__ import annotations

from collections.abc import Callable

from runbook.config import Target
from runbook.errors import ConfigError
from runbook.probes import api, combine, postgres, queues, redis, storage
from runbook.results import ProbeResult
from runbook.timeouts import Timeouts

QUEUES = ("email", "release-process")


def _worker(target: Target, timeouts: Timeouts) -> ProbeResult:
    results = [queues.workers(target, timeouts, queue) for queue in QUEUES]
    return combine("worker", "workers listening", results)


#: Component -> (the variables it needs, the check the table gives it).
COMPONENTS: dict[str, tuple[tuple[str, ...], Callable[[Target, Timeouts], ProbeResult]]] = {
    "API": (("API_URL",), api.health),
    "Database": (("DATABASE_URL",), postgres.schema),
    "Redis": (("REDIS_URL",), redis.ping),
    "Worker": (("REDIS_URL",), _worker),
    "S3": (("S3_BUCKET",), storage.bucket),
}
#: Other parts the scenarios name, with the variables they need.
PARTS: dict[str, tuple[str, ...]] = {
    "Web": ("WEB_URL",),
    "Resend": ("RESEND_API_KEY", "FROM_EMAIL"),
    # What the canary journeys (runbook.actions.journeys) go through.
    "API and its database": ("API_URL", "DATABASE_URL"),
    "API, its database and S3": ("API_URL", "DATABASE_URL", "S3_BUCKET"),
    "API, its database and the worker": ("API_URL", "DATABASE_URL", "REDIS_URL"),
    "worker and Resend": ("REDIS_URL", "RESEND_API_KEY", "FROM_EMAIL"),
    **{name: needs for name, (needs, _) in COMPONENTS.items()},
}


def variables_for(part: str) -> tuple[str, ...]:
    """The target variables ``part`` needs; ``ConfigError`` for a part the runbook lacks."""
    if part not in PARTS:
        raise ConfigError(f"unknown component {part!r}; one of {', '.join(PARTS)}")
    return PARTS[part]


def check(component: str, target: Target, timeouts: Timeouts) -> ProbeResult:
    """Check ``component`` as the Component Status table says."""
    if component not in COMPONENTS:
        raise ConfigError(f"unknown component {component!r}; one of {', '.join(COMPONENTS)}")
    return COMPONENTS[component][1](target, timeouts)
