"""Periodic sandbox upkeep in every worker process: containers retire on time with no traffic needed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from agentbot.errors import EngineDownError, SandboxError
from agentbot.sandbox.docker.executor import DockerExecutor

logger = logging.getLogger(__name__)

CLEANUP_SECONDS = 300.0  # idle workspaces and old egress proxies: their ttl is days


def interval(warm_seconds: float) -> float:
    """How often to look: a tenth of the warm time, between 1 and 15 s (one list call to the engine each)."""
    return max(1.0, min(15.0, warm_seconds / 10))


class Housekeeper:
    """A daemon thread: retire expired containers (their workspaces saved first) and keep the pool full.

    Give it an executor of its own: its Docker client is then never the one a forked job horse inherits
    half-way through a call. Every worker runs one per engine it serves; two retiring the same container
    is safe (`retire` claims a container by renaming it first). Each round's finding (the engine answers
    or not) goes to `report`; a change is logged in one line, not every round.
    """

    def __init__(
        self,
        executor: DockerExecutor,
        *,
        every: float | None = None,
        name: str = "",
        report: Callable[[bool], None] | None = None,
        up: bool | None = None,
    ) -> None:
        self.executor = executor
        self.every = every if every is not None else interval(executor.warm_seconds)
        self.name = name
        self.report = report
        self.up = up  # what the worker found at start (None: not looked): a change from it is logged
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
        except EngineDownError as exc:  # down for a while, maybe: said once, looked at again every round
            self._found(up=False, why=str(exc))
        except SandboxError as exc:
            logger.warning("sandbox housekeeping%s: %s", self._on(), exc)
            self._found(up=True)
        else:
            self._found(up=True)

    def _found(self, *, up: bool, why: str = "") -> None:
        if up != self.up and self.up is not None:
            if up:
                logger.warning("Docker engine%s answers again", self._on(" "))
            else:
                logger.warning(
                    "Docker engine%s is not reachable (%s); retrying every %g s",
                    self._on(" "),
                    why,
                    self.every,
                )
        self.up = up
        if self.report is not None:
            try:
                self.report(up)
            except Exception as exc:  # Redis down: the next round reports again
                logger.warning("sandbox housekeeping%s: could not report the engine: %s", self._on(), exc)

    def _on(self, prefix: str = " of ") -> str:
        return f"{prefix}{self.name}" if self.name else ""

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.tick()
