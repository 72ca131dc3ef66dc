"""A BullMQ worker of its own for the tests, run as a process a test can stop (SIGSTOP):

    python tests/bullmq_worker.py REDIS_URL QUEUE

One job at a time, waiting at most a second for a job (``drainDelay``) so that a stopped
worker's wait runs out soon. A job sleeps ``data["sleep_s"]`` (0 by default) and returns
``{"pong": true}``. Runs until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from bullmq import Worker

from runbook.sandbox.services.worker import redis_options

#: The name its Redis connections carry (``bull:<queue>:w:<name>``).
NAME = "runbook-test-worker"


async def serve(url: str, queue: str) -> None:
    async def process(job: Any, _token: str) -> dict[str, Any]:
        await asyncio.sleep(float(job.data.get("sleep_s", 0)))
        return {"pong": True}

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    worker = Worker(queue, process, {"connection": redis_options(url), "concurrency": 1,
                                     "drainDelay": 1, "name": NAME})
    await stop.wait()
    await worker.close(force=True)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
