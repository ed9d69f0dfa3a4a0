"""The Slack layer's own small data, behind a port: delivery markers, user names, edit pacing.

`SlackStore` is what `slack/` needs from a key-value store with expiry; `agentbot.store.RedisSlackStore`
implements it on Redis (shared by every web and worker process, so pacing holds across workers), and
`MemorySlackStore` in this process (a platform built without Redis, and tests). Names are relative
(`seen:T1:Ev1`, `user:T1:U1`, `pace:C1:1700000000.000100`); the adapter adds its prefix.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class SlackStore(Protocol):
    """Keys with expiry. Raises `StoreError` (retryable) when the store is unreachable."""

    def claim(self, name: str, ttl: float) -> bool:
        """Set `name` for `ttl` seconds unless it is set; True when this call set it."""
        ...

    def release(self, name: str) -> None:
        """Remove `name` (a claim given back)."""
        ...

    def remaining(self, name: str) -> float:
        """Seconds until `name` expires (0 when it is not set)."""
        ...

    def get(self, name: str) -> str | None: ...

    def put(self, name: str, value: str, ttl: float) -> None: ...


class MemorySlackStore:
    """`SlackStore` in this process's memory (bounded: expired entries are dropped as it grows)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, limit: int = 10_000) -> None:
        self._clock = clock
        self._limit = limit
        self._entries: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def claim(self, name: str, ttl: float) -> bool:
        with self._lock:
            if self._live(name) is not None:
                return False
            self._set(name, "1", ttl)
            return True

    def release(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)

    def remaining(self, name: str) -> float:
        with self._lock:
            entry = self._entries.get(name)
            return max(entry[1] - self._clock(), 0.0) if entry else 0.0

    def get(self, name: str) -> str | None:
        with self._lock:
            return self._live(name)

    def put(self, name: str, value: str, ttl: float) -> None:
        with self._lock:
            self._set(name, value, ttl)

    def _live(self, name: str) -> str | None:
        entry = self._entries.get(name)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def _set(self, name: str, value: str, ttl: float) -> None:
        if len(self._entries) >= self._limit:
            now = self._clock()
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            if len(self._entries) >= self._limit:
                self._entries.clear()  # crude but bounded; what is lost is only cached
        self._entries[name] = (value, self._clock() + ttl)
