"""The `agentbot` command: `chat` in the terminal, `web` for Slack, `worker` for the step queue."""

from __future__ import annotations

import argparse
import logging
import sys

from agentbot.errors import ConfigError
from agentbot.settings import Settings, load_settings


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, load settings once, run the chosen front end."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        logging.basicConfig(
            level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        code: int = args.run(settings, args)
        return code
    except ConfigError as exc:
        print(f"agentbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentbot", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    chat = commands.add_parser("chat", help="talk to the agents in this terminal")
    chat.add_argument("task", help='what to do, e.g. "Plot a chart of NVDA and TESLA stock price change YTD"')
    chat.set_defaults(run=_chat)
    web = commands.add_parser("web", help="serve Slack (HTTP on $PORT, or Socket Mode with SLACK_APP_TOKEN)")
    web.set_defaults(run=_web)
    worker = commands.add_parser("worker", help="run conversation steps from the queue (needs REDIS_URL)")
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    worker.add_argument("--simple", action="store_true", help="run steps in this process instead of forking")
    worker.set_defaults(run=_worker)
    return parser


def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from agentbot.console import chat  # noqa: PLC0415  # each command loads only what it runs

    return chat(settings, args.task, stdin=sys.stdin, stdout=sys.stdout)


def _web(settings: Settings, args: argparse.Namespace) -> int:
    from agentbot.slack.server import serve  # noqa: PLC0415

    serve(settings)
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from agentbot import runtime  # noqa: PLC0415
    from agentbot.slack.platform import SlackPlatform  # noqa: PLC0415
    from agentbot.workers import run_worker  # noqa: PLC0415

    if not settings.redis_url:
        raise ConfigError(
            "REDIS_URL: required by `agentbot worker` (without it, `agentbot web` runs steps itself)"
        )
    rt = runtime.build(settings, platform=SlackPlatform.from_settings(settings))
    runtime.install(rt)
    rt.ports()  # fail at start, with one clear line, if the LLM or executor is misconfigured
    _housekeeping(rt.executor)
    if not args.burst:
        _start_housekeeper(settings)
    run_worker(rt, burst=args.burst, simple=args.simple)
    return 0


def _housekeeping(executor: object) -> None:
    """At worker start: retire sandbox containers left by dead workers, drop idle workspaces."""
    from agentbot.errors import SandboxError  # noqa: PLC0415
    from agentbot.sandbox.docker import DockerExecutor  # noqa: PLC0415

    if not isinstance(executor, DockerExecutor):
        return
    try:
        executor.reap()
        executor.cleanup_idle()
    except SandboxError as exc:  # the engine may be down now; runs will say so in their threads
        logging.getLogger(__name__).warning("sandbox housekeeping skipped: %s", exc)


def _start_housekeeper(settings: Settings) -> None:
    """While the worker runs: retire idle sandbox containers on time and keep the warm pool full."""
    if settings.executor != "docker":
        return
    from agentbot.sandbox.docker import DockerExecutor  # noqa: PLC0415
    from agentbot.sandbox.docker.housekeeping import Housekeeper  # noqa: PLC0415

    Housekeeper(DockerExecutor.from_settings(settings)).start()  # its own client, not the jobs' one
