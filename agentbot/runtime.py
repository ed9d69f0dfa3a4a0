"""The composition root: builds every adapter from `Settings`, once per process."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

import fakeredis
import redis

from agentbot.conversation.driver import Ports
from agentbot.conversation.ports import LLM, ChatPlatform, CodeExecutor
from agentbot.errors import ConfigError
from agentbot.llm.openai_chat import OpenAIChat
from agentbot.queue import QUEUE_NAME, RQJobQueue
from agentbot.sandbox.local import LocalExecutor
from agentbot.sandbox.none import NoExecutor
from agentbot.settings import Settings
from agentbot.store import RedisStore
from agentbot.teams import Catalog, load_catalog

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The adapters of one process. LLM and executor are built on first use (the web needs neither)."""

    settings: Settings
    redis: redis.Redis
    platform: ChatPlatform
    embedded: bool
    queue_name: str = QUEUE_NAME
    llm_override: LLM | None = field(default=None, repr=False)

    @cached_property
    def store(self) -> RedisStore:
        return RedisStore(self.redis)

    @cached_property
    def queue(self) -> RQJobQueue:
        # Without a scheduler process (embedded mode), retries are immediate instead of spaced out.
        intervals = [0] if self.embedded else None
        return RQJobQueue(
            self.redis,
            queue_name=self.queue_name,
            step_timeout=self.settings.step_timeout,
            retry_intervals=intervals,
        )

    @cached_property
    def llm(self) -> LLM:
        return self.llm_override or OpenAIChat.from_settings(self.settings)

    @cached_property
    def executor(self) -> CodeExecutor:
        return build_executor(self.settings)

    @cached_property
    def teams(self) -> Catalog:
        """The presets and `AGENTBOT_TEAMS_FILE`; a mistake in the file is a `ConfigError` at start."""
        return load_catalog(self.settings.teams_file)

    def settle(self) -> None:
        """Let adapters finish work they do in the background (the sandbox's next supervisor)."""
        if "executor" in self.__dict__:  # built: a step that ran no code need not wait for anything
            settle = getattr(self.executor, "settle", None)
            if callable(settle):
                settle()

    def ports(self) -> Ports:
        return Ports(
            store=self.store,
            llm=self.llm,
            executor=self.executor,
            platform=self.platform,
            queue=self.queue,
            policy=self.settings.policy(),
            teams=self.teams,
        )


def build_executor(settings: Settings) -> CodeExecutor:
    """The executor `AGENTBOT_EXECUTOR` names."""
    if settings.executor == "local":
        logger.warning(
            "AGENTBOT_EXECUTOR=local runs code on this machine without a sandbox: development only"
        )
        return LocalExecutor.from_settings(settings)
    if settings.executor == "none":
        return NoExecutor()
    from agentbot.sandbox.docker import DockerExecutor  # noqa: PLC0415  # the docker SDK loads only when used

    return DockerExecutor.from_settings(settings)


def connect_redis(settings: Settings) -> tuple[redis.Redis, bool]:
    """Redis at `REDIS_URL`, or an in-memory one (embedded mode) when none is configured."""
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url), False
    logger.warning("No REDIS_URL: using in-memory Redis and an in-process worker; state is NOT persistent")
    return fakeredis.FakeRedis(), True


def build(settings: Settings, *, platform: ChatPlatform, queue_name: str = QUEUE_NAME) -> Runtime:
    """A runtime for this process; `install` it where jobs should find it."""
    client, embedded = connect_redis(settings)
    return Runtime(
        settings=settings, redis=client, platform=platform, embedded=embedded, queue_name=queue_name
    )


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    """Make `runtime` the one that jobs in this process use."""
    global _current  # noqa: PLW0603  # one composition root per process, set once at start
    _current = runtime


def current() -> Runtime:
    """The runtime jobs use; a worker process installs it at start."""
    if _current is None:
        raise ConfigError("no runtime installed: start workers with `agentbot worker`")
    return _current
