"""The one composition root: builds the web, worker and console runtimes from `Settings`.

    serve_web    `agentbot web`: checks at start, then gunicorn; each worker process calls `build_web`
    run_worker   `agentbot worker`: checks at start, sandbox housekeeping, then an RQ worker
    run_chat     `agentbot chat`: the terminal as the chat platform, steps in a thread
    run_doctor   `agentbot doctor`: every check, as a table

`cli.py` parses the command line and calls one of these; nothing else builds adapters.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import fakeredis
import redis

from agentbot.conversation.driver import Ports
from agentbot.conversation.ports import LLM, ChatPlatform, CodeExecutor, Engines
from agentbot.errors import ConfigError
from agentbot.llm.openai_chat import OpenAIChat
from agentbot.metrics import MeteredExecutor, MeteredStore, Metrics, metered_llm
from agentbot.queue import QUEUE_NAME, RQJobQueue
from agentbot.sandbox.local import LocalExecutor
from agentbot.sandbox.none import NoExecutor
from agentbot.settings import Settings
from agentbot.store import RedisSlackStore, RedisStore
from agentbot.teams import Catalog, load_catalog
from agentbot.tools.client import ToolHost

if TYPE_CHECKING:
    from rq import Queue
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from agentbot.sandbox.docker import DockerExecutor
    from agentbot.slack.app import Bridge
    from agentbot.web import ServerOptions, WebApp

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
    metrics: Metrics = field(default_factory=Metrics, repr=False)

    @cached_property
    def store(self) -> RedisStore:
        return MeteredStore(self.redis, self.metrics)

    @cached_property
    def queue(self) -> RQJobQueue:
        # Without a scheduler process (embedded mode), retries are immediate instead of spaced out.
        intervals = [0] if self.embedded else None
        return RQJobQueue(
            self.redis,
            queue_name=self.queue_name,
            step_timeout=self.settings.step_timeout,
            retry_intervals=intervals,
            scheduler=not self.embedded,
        )

    @cached_property
    def llm(self) -> LLM:
        return self.llm_override or OpenAIChat.from_settings(self.settings)

    @cached_property
    def executor(self) -> CodeExecutor:
        """The executor of a process with one sandbox; with Docker, that of the first engine served."""
        if self.docker_executors:
            return next(iter(self.docker_executors.values()))
        return build_executor(self.settings)

    @cached_property
    def docker_executors(self) -> dict[str, DockerExecutor]:
        """One executor per Docker engine this process serves (none for the other executors)."""
        if self.settings.executor != "docker":
            return {}
        from agentbot.sandbox.docker import DockerExecutor  # noqa: PLC0415  # the docker SDK loads when used

        served = self.settings.served_engines()
        return {spec.name: DockerExecutor.from_settings(self.settings, spec) for spec in served}

    @cached_property
    def engines(self) -> Engines | None:
        """The Docker engines (`AGENTBOT_DOCKER_HOSTS`): where each conversation's workspace lives."""
        if not self.docker_executors:
            return None
        from agentbot.sandbox.engines import DockerEngines  # noqa: PLC0415

        raw = self.docker_executors
        metered = {name: MeteredExecutor(executor, self.metrics) for name, executor in raw.items()}
        return DockerEngines(
            self.settings.docker_hosts, metered, self.redis, ping=lambda name: raw[name].ping()
        )

    def step_queues(self) -> list[Queue]:
        """The queues this process's workers take steps from: its engines' sandbox steps first."""
        engines = [self.queue.engine_queue(name) for name in self.docker_executors]
        return [*engines, self.queue.queue]

    @cached_property
    def tools(self) -> ToolHost:
        """The tool host of this process (started on first use; the worker starts it before forking)."""
        return ToolHost(timeout=self.settings.tool_timeout, limit=self.settings.output_limit)

    @cached_property
    def teams(self) -> Catalog:
        """The presets and `AGENTBOT_TEAMS_FILE`; a mistake in the file is a `ConfigError` at start."""
        return load_catalog(self.settings.teams_file)

    def settle(self) -> None:
        """Let adapters finish work they do in the background (the sandbox's next supervisor)."""
        for executor in self.__dict__.get("docker_executors", {}).values():  # built: a step ran code
            executor.settle()

    def ports(self) -> Ports:
        return Ports(
            store=self.store,
            llm=metered_llm(self.llm, self.metrics),
            executor=MeteredExecutor(self.executor, self.metrics),
            platform=self.platform,
            queue=self.queue,
            policy=self.settings.policy(),
            teams=self.teams,
            egress=self.settings.egress(),
            tools=self.tools,
            engines=self.engines,
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


# -- the web process ---------------------------------------------------------------------------------


@dataclass
class WebRuntime:
    """One web worker process: its runtime, the Slack bridge, the WSGI app and, in Socket Mode, the socket."""

    runtime: Runtime
    bridge: Bridge
    app: WebApp
    socket: SocketModeHandler | None = None

    def close(self) -> None:
        """Stop taking Socket Mode events and finish the background Slack calls."""
        if self.socket is not None:
            self.socket.close()  # type: ignore[no-untyped-call]  # slack_bolt: no hints
        self.bridge.background.shutdown(wait=True, cancel_futures=True)


def serve_web(settings: Settings) -> int:
    """`agentbot web`: check what the web needs, then serve until SIGTERM (HTTP or Socket Mode)."""
    from agentbot import doctor, metrics, web  # noqa: PLC0415  # each command loads only what it runs

    if (
        not settings.slack_app_token.get_secret_value()
        and not settings.slack_signing_secret.get_secret_value()
    ):
        raise ConfigError("SLACK_SIGNING_SECRET: required to serve Slack over HTTP (or set SLACK_APP_TOKEN)")
    load_catalog(settings.teams_file)  # a mistake in the teams file: one line now, not in each worker
    doctor.at_start(settings, "web")
    built: list[WebRuntime] = []

    def load() -> WebApp:
        built.append(build_web(settings))
        return built[-1].app

    def stop() -> None:
        for runtime in built:
            runtime.close()

    options = web_options(settings)
    web.check_port(options)
    logger.info(
        "serving Slack %s on port %d (%d process(es) x %d threads)",
        "over Socket Mode, /healthz" if _socket_mode(settings) else "at /slack/events",
        options.port, options.workers, options.threads,
    )  # fmt: skip
    with metrics.multiprocess_dir("parallel"):  # before gunicorn forks: every process counts into it
        web.serve(options, load, stop=stop)
    return 0


def web_options(settings: Settings) -> ServerOptions:
    """gunicorn's options: `WEB_CONCURRENCY` processes, but one in the embedded mode and Socket Mode."""
    from agentbot.web import ServerOptions  # noqa: PLC0415

    shared = settings.redis_url and not _socket_mode(settings)  # in-memory Redis lives in one process
    return ServerOptions(
        port=settings.port,
        workers=settings.web_concurrency if shared else 1,
        threads=settings.web_threads,
        log_level=settings.log_level,
        log_format=settings.log_format,
    )


def build_web(settings: Settings) -> WebRuntime:
    """A web worker process's runtime (after gunicorn's fork): Bolt app, bridge, WSGI app, Socket Mode."""
    from agentbot.slack.app import Bridge, build_app  # noqa: PLC0415
    from agentbot.slack.platform import SlackPlatform  # noqa: PLC0415
    from agentbot.web import WebApp  # noqa: PLC0415

    client, embedded = connect_redis(settings)
    platform = SlackPlatform.from_settings(settings, RedisSlackStore(client))
    rt = Runtime(settings=settings, redis=client, platform=platform, embedded=embedded)
    install(rt)
    if embedded:
        from agentbot.workers import start_thread_worker  # noqa: PLC0415  # only the embedded mode

        start_thread_worker(rt)
    bridge = Bridge(store=rt.store, queue=rt.queue, platform=platform, catalog=rt.teams)
    socket_mode = _socket_mode(settings)
    # The token was checked at start; Bolt's own check would stop this process when Slack is unreachable.
    bolt = build_app(settings, bridge=bridge, socket_mode=socket_mode, token_verification=False)
    app = WebApp(None if socket_mode else bolt, healthy=lambda: redis_answers(client), metrics=rt.metrics)
    built = WebRuntime(runtime=rt, bridge=bridge, app=app)
    if socket_mode:
        from slack_bolt.adapter.socket_mode import SocketModeHandler  # noqa: PLC0415

        built.socket = SocketModeHandler(bolt, settings.slack_app_token.get_secret_value())
        built.socket.connect()  # type: ignore[no-untyped-call]  # slack_bolt: no hints
    return built


def redis_answers(client: redis.Redis) -> bool:
    """Whether Redis answers PING (the web's health); a warning line when it does not."""
    try:
        return bool(client.ping())
    except redis.RedisError as exc:
        logger.warning("health check: Redis is not reachable: %s", exc)
        return False


def _socket_mode(settings: Settings) -> bool:
    return bool(settings.slack_app_token.get_secret_value())


# -- the worker process ------------------------------------------------------------------------------


def run_worker(settings: Settings, *, burst: bool = False, simple: bool = False) -> int:
    """`agentbot worker`: check what steps need, tidy the sandbox, then work the queue."""
    from agentbot import doctor, metrics  # noqa: PLC0415
    from agentbot.slack.platform import SlackPlatform  # noqa: PLC0415
    from agentbot.workers import run_worker as work  # noqa: PLC0415

    if not settings.redis_url:
        raise ConfigError(
            "REDIS_URL: required by `agentbot worker` (without it, `agentbot web` runs steps itself)"
        )
    doctor.at_start(settings, "worker")
    with metrics.multiprocess_dir("sequential"):  # the work horses count; this process serves
        client, _ = connect_redis(settings)
        # The same store as the web's: edits of one message are paced across every worker and web process.
        platform = SlackPlatform.from_settings(settings, RedisSlackStore(client))
        rt = Runtime(settings=settings, redis=client, platform=platform, embedded=False)
        install(rt)
        rt.ports()  # fail at start, with one clear line, if the LLM or executor is misconfigured
        up = _housekeeping(rt)
        if not burst:
            _start_housekeepers(rt, up)
        if settings.metrics_port:
            metrics.serve(settings.metrics_port, rt.metrics)
        rt.tools.start()  # in the parent: each forked horse talks to this one host (MCP servers stay up)
        queues = ", ".join(repr(queue.name) for queue in rt.step_queues())
        logger.info("worker: taking steps from %s%s", queues, " until they are empty" if burst else "")
        try:
            work(rt, burst=burst, simple=simple)
        finally:
            rt.tools.close()
    return 0


def _start_housekeepers(rt: Runtime, up: dict[str, bool]) -> None:
    """While the worker runs, per engine served: retire idle sandbox containers on time, keep the warm
    pool full, and tell every process whether the engine answers (`DockerEngines.report`)."""
    from agentbot.sandbox.docker import DockerExecutor  # noqa: PLC0415
    from agentbot.sandbox.docker.housekeeping import Housekeeper  # noqa: PLC0415
    from agentbot.sandbox.engines import DockerEngines  # noqa: PLC0415

    engines = rt.engines
    if not isinstance(engines, DockerEngines):
        return
    for spec in rt.settings.served_engines():
        executor = DockerExecutor.from_settings(rt.settings, spec)  # its own client, not the jobs' one
        report = functools.partial(engines.report, spec.name)
        keeper = Housekeeper(executor, name=_engine_label(rt, spec.name), report=report, up=up.get(spec.name))
        keeper.start()


def _housekeeping(rt: Runtime) -> dict[str, bool]:
    """At worker start: retire sandbox containers left by dead workers, drop idle workspaces, and report
    which engines answer (returned too). One that is down was said at start (`doctor`): housekeeping
    keeps looking, and says so when that changes.
    """
    found: dict[str, bool] = {}
    from agentbot.errors import EngineDownError, SandboxError  # noqa: PLC0415
    from agentbot.sandbox.engines import DockerEngines  # noqa: PLC0415

    for name, executor in rt.docker_executors.items():
        up = True
        try:
            executor.reap()
            executor.cleanup_idle()
        except EngineDownError:
            up = False
        except SandboxError as exc:  # it answers but refused: runs will say so in their threads
            logger.warning("sandbox housekeeping%s skipped: %s", _engine_label(rt, name, " of "), exc)
        found[name] = up
        if isinstance(rt.engines, DockerEngines):
            with contextlib.suppress(redis.RedisError):
                rt.engines.report(name, up)
    return found


def _engine_label(rt: Runtime, name: str, prefix: str = "") -> str:
    """An engine's name in log lines, when there is more than one to tell apart."""
    return f"{prefix}{name}" if len(rt.settings.docker_hosts) > 1 else ""


# -- the console and the doctor ----------------------------------------------------------------------


def run_chat(settings: Settings, task: str, *, stdin: TextIO, stdout: TextIO) -> int:
    """`agentbot chat`: one conversation in this terminal, its steps in a thread of this process."""
    import os  # noqa: PLC0415

    from agentbot.console import ConsolePlatform, converse  # noqa: PLC0415
    from agentbot.workers import start_thread_worker  # noqa: PLC0415

    platform = ConsolePlatform(stdout, Path("agentbot-output"))
    rt = build(settings, platform=platform, queue_name=f"agentbot-console-{os.getpid()}")
    install(rt)
    if rt.embedded:
        print("[agentbot] state is in memory only (no REDIS_URL): it ends with this process.", file=stdout)
    rt.ports()  # fail now, with one clear line, if the LLM or executor is misconfigured
    start_thread_worker(rt)
    return converse(rt, task, stdin=stdin, stdout=stdout)


def run_doctor(settings: Settings, *, out: TextIO = sys.stdout) -> int:
    """`agentbot doctor`: every check as a table; 0 when all are ok, 1 otherwise."""
    from agentbot import doctor  # noqa: PLC0415

    checks = doctor.run_checks(settings, "doctor")
    print(doctor.render_table(checks), file=out)
    return doctor.doctor_code(checks)
