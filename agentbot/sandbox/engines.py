"""Several Docker engines: which one holds a conversation's workspace, and which this process serves.

`AGENTBOT_DOCKER_HOSTS` names the engines (`a=unix:///var/run/docker.sock, b=tcp://10.0.0.7:2375`);
unset, it is the one engine of the environment (`DOCKER_HOST` or the local socket), named `default`.
A conversation is pinned to one engine at its first sandbox action (its state records the name), and
its sandbox steps go to that engine's queue, which the workers serving it take first
(`AGENTBOT_WORKER_ENGINES`; unset, a worker serves every engine).

Which engines are up is known from the workers serving them: each worker's housekeeping round reports
its engines to Redis (`report`), with an expiry, so an engine nobody serves, or whose workers are gone,
is not chosen for a new workspace. An engine served by this process is also asked directly.

The settings parse the list (`settings.parse_hosts`); `DockerEngines` is the adapter behind the
conversation engine's `Engines` port.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from agentbot.settings import EngineSpec

if TYPE_CHECKING:
    import redis

    from agentbot.conversation.ports import CodeExecutor
    from agentbot.conversation.state import ConversationKey

UP_KEY = "agentbot:engine-up:{name}"
UP_SECONDS = 45  # a report lasts this long: three of the longest housekeeping intervals (15 s)


def preference(key_slug: str, names: Sequence[str]) -> list[str]:
    """`names` rotated by a stable hash of the conversation: new workspaces spread over the engines."""
    if not names:
        return []
    start = zlib.crc32(key_slug.encode()) % len(names)
    return [*names[start:], *names[:start]]


class DockerEngines:
    """The `Engines` port: the configured engines, the executors of those this process serves, and
    which are up (reports in Redis, or a ping for the engines served here)."""

    def __init__(
        self,
        specs: Sequence[EngineSpec],
        executors: Mapping[str, CodeExecutor],
        client: redis.Redis,
        *,
        ping: Callable[[str], bool] | None = None,
    ) -> None:
        self.specs = tuple(specs)
        self._executors = dict(executors)
        self._redis = client
        self._ping = ping

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs)

    @property
    def served(self) -> tuple[str, ...]:
        return tuple(self._executors)

    def executor(self, name: str) -> CodeExecutor | None:
        return self._executors.get(name)

    def is_up(self, name: str) -> bool:
        """Whether `name` answers: asked directly when served here, else a worker's report in Redis."""
        if name in self._executors and self._ping is not None:
            return self._ping(name)
        return bool(self._redis.exists(UP_KEY.format(name=name)))

    def choose(self, key: ConversationKey, avoid: Sequence[str] = ()) -> str | None:
        """An engine that is up for a new workspace: one not in `avoid` if any is up, else one of those
        (people left it when it was down; its old files may still be there); None when none is up."""
        if len(self.names) == 1:
            return self.names[0]  # no choice to make: a run on it says so when it is down
        order = preference(key.slug, self.names)
        for name in [*(n for n in order if n not in avoid), *(n for n in order if n in avoid)]:
            if self.is_up(name):
                return name
        return None

    def report(self, name: str, up: bool) -> None:
        """A housekeeping round's finding about `name` (served here), for every process to read."""
        if up:
            self._redis.set(UP_KEY.format(name=name), "1", ex=UP_SECONDS)
        else:
            self._redis.delete(UP_KEY.format(name=name))
