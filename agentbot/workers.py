"""RQ workers: the `worker` process of the Procfile, and the in-process thread of the embedded mode."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from rq import SimpleWorker, Worker
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from agentbot.runtime import Runtime

logger = logging.getLogger(__name__)

# rq's own maintenance (finished/failed registries, dead workers' entries) every minute, not ten.
MAINTENANCE_INTERVAL = 60
# A step's lease: the worker process renews its running step's entry in rq's started registry every
# LEASE_RENEW s, to LEASE_TTL s ahead. A worker killed with its machine renews nothing, so live workers,
# sweeping every SWEEP_INTERVAL s (and at start), offer its step again within LEASE_TTL + SWEEP_INTERVAL
# (about 20 s; rq's own heartbeat adds a fixed 60 s and sweeps with maintenance: measured ~2 min).
LEASE_RENEW = 5
LEASE_TTL = 15
SWEEP_INTERVAL = 5
# An idle rq worker blocks on Redis for `worker_ttl - 15` s and sweeps only between waits.
WORKER_TTL = SWEEP_INTERVAL + 15


class LeasedWorker(Worker):
    """rq's forking worker, with a short lease on the step it runs and a sweep for expired ones.

    Exactly once: the lease is renewed by this (parent) process while it waits for its work horse, not
    by the horse, so a step busy in C code or a long run keeps it; only a worker that stops renewing
    (dead, or cut off from Redis for LEASE_TTL s) loses its step. The sweep is rq's own abandoned-job
    handling (`StartedJobRegistry.cleanup`: retry, keep the conversation's rate-limit slot), run under
    rq's registry-cleaning lock, so one sweep at a time retries each expired step once. A step that
    is offered again finds its run marked `running` and never re-runs it (the driver's `_recover`), and
    the store's compare-and-set version stops a step cut off from Redis from saving over its successor.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("job_monitoring_interval", LEASE_RENEW)
        super().__init__(*args, **kwargs)
        self._swept_at = -float("inf")

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """The lease, whatever the step's remaining time (rq's own shrinks it near the job timeout)."""
        return LEASE_TTL

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return self._sweep_due() or bool(super().should_run_maintenance_tasks)

    def run_maintenance_tasks(self) -> None:
        self.sweep()
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]  # rq: no hints here

    def maintain_heartbeats(self, job: Job, execution: Execution) -> None:
        super().maintain_heartbeats(job, execution)
        if self._sweep_due():  # a busy worker sweeps too, while its own step runs
            self.sweep()

    def sweep(self) -> int:
        """Offer again the steps whose lease ran out; returns how many there were."""
        self._swept_at = time.monotonic()
        offered = 0
        for queue in self.queues:
            lock = queue.registry_cleaning_key
            if not self.connection.set(lock, self.name, nx=True, ex=SWEEP_LOCK_TTL):
                continue  # another worker sweeps (or rq cleans) this queue right now
            try:
                registry = StartedJobRegistry(queue=queue)
                expired = registry.get_expired_job_ids()
                if expired:
                    logger.warning("steps %s: lease expired (worker gone); offering them again", expired)
                    registry.cleanup()
                    offered += len(expired)
            finally:
                self.connection.delete(lock)
        return offered

    def _sweep_due(self) -> bool:
        return time.monotonic() - self._swept_at >= SWEEP_INTERVAL


SWEEP_LOCK_TTL = 30  # a sweep takes milliseconds; the lock outlives a sweeper that dies holding it


class ThreadWorker(SimpleWorker):
    """A SimpleWorker that can live in a thread: no signal handlers, timeouts by timer."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        """Signals belong to the main thread (the console or web front end)."""


def run_worker(runtime: Runtime, *, burst: bool = False, simple: bool = False) -> bool:
    """Work the step queue in this process until stopped (or, with `burst`, until it is empty)."""
    worker_class = SimpleWorker if simple else LeasedWorker
    worker = worker_class(
        runtime.step_queues(),
        connection=runtime.redis,
        serializer=JSONSerializer,
        maintenance_interval=MAINTENANCE_INTERVAL,
        worker_ttl=WORKER_TTL,
    )
    return bool(worker.work(burst=burst, with_scheduler=not burst, logging_level="WARNING"))


def start_thread_worker(runtime: Runtime) -> threading.Thread:
    """Run steps in a daemon thread of this process (embedded mode and the console)."""
    worker = ThreadWorker(runtime.step_queues(), connection=runtime.redis, serializer=JSONSerializer)
    thread = threading.Thread(
        target=worker.work, kwargs={"logging_level": "WARNING"}, name="agentbot-worker", daemon=True
    )
    thread.start()
    return thread
