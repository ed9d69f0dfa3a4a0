"""Periodic sandbox upkeep in every worker process: containers retire on time with no traffic needed."""

from __future__ import annotations

import logging
import threading
import time

from agentbot.errors import SandboxError
from agentbot.sandbox.docker.executor import DockerExecutor

logger = logging.getLogger(__name__)

CLEANUP_SECONDS = 300.0  # idle workspaces and old egress proxies: their ttl is days


def interval(warm_seconds: float) -> float:
    """How often to look: a tenth of the warm time, between 1 and 15 s (one list call to the engine each)."""
    return max(1.0, min(15.0, warm_seconds / 10))


class Housekeeper:
    """A daemon thread: retire expired containers (their workspaces saved first) and keep the pool full.

    Give it an executor of its own: its Docker client is then never the one a forked job horse inherits
    half-way through a call. Every worker runs one; two retiring the same container is safe (`retire`
    claims a container by renaming it first).
    """

    def __init__(self, executor: DockerExecutor, *, every: float | None = None) -> None:
        self.executor = executor
        self.every = every if every is not None else interval(executor.warm_seconds)
        self._stop = threading.Event()
        self._cleaned = time.monotonic()
        self.thread = threading.Thread(target=self._loop, name="agentbot-sandbox-housekeeping", daemon=True)

    def start(self) -> Housekeeper:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=60)

    def tick(self) -> None:
        """One round: reap, refill the pool, and now and then drop idle workspaces."""
        try:
            self.executor.housekeeping()
            if time.monotonic() - self._cleaned > CLEANUP_SECONDS:
                self._cleaned = time.monotonic()
                self.executor.cleanup_idle()
        except SandboxError as exc:  # the engine may be down for a while: say so, keep looking
            logger.warning("sandbox housekeeping: %s", exc)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.tick()
