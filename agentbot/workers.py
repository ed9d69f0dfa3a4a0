"""RQ workers: the `worker` process of the Procfile, and the in-process thread of the embedded mode."""

from __future__ import annotations

import logging
import threading

from rq import SimpleWorker, Worker
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from agentbot.runtime import Runtime

logger = logging.getLogger(__name__)

# rq checks for abandoned jobs (a worker killed mid-step) during maintenance; every minute, not ten.
MAINTENANCE_INTERVAL = 60
# An idle rq worker blocks on Redis for `worker_ttl - 15` s and runs maintenance only between waits, so the
# default ttl (420 s) would delay recovering a dead worker's step by ~7 minutes (measured: 407 s).
WORKER_TTL = MAINTENANCE_INTERVAL + 15


class ThreadWorker(SimpleWorker):
    """A SimpleWorker that can live in a thread: no signal handlers, timeouts by timer."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        """Signals belong to the main thread (the console or web front end)."""


def run_worker(runtime: Runtime, *, burst: bool = False, simple: bool = False) -> bool:
    """Work the step queue in this process until stopped (or, with `burst`, until it is empty)."""
    worker_class = SimpleWorker if simple else Worker
    worker = worker_class(
        [runtime.queue.queue],
        connection=runtime.redis,
        serializer=JSONSerializer,
        maintenance_interval=MAINTENANCE_INTERVAL,
        worker_ttl=WORKER_TTL,
    )
    return bool(worker.work(burst=burst, with_scheduler=not burst, logging_level="WARNING"))


def start_thread_worker(runtime: Runtime) -> threading.Thread:
    """Run steps in a daemon thread of this process (embedded mode and the console)."""
    worker = ThreadWorker([runtime.queue.queue], connection=runtime.redis, serializer=JSONSerializer)
    thread = threading.Thread(
        target=worker.work, kwargs={"logging_level": "WARNING"}, name="agentbot-worker", daemon=True
    )
    thread.start()
    return thread
