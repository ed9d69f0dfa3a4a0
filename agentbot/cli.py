"""The `agentbot` command: `chat` in the terminal, `web` for Slack, `worker` for the step queue, `doctor`."""

from __future__ import annotations

import argparse
import logging
import sys

import redis

from agentbot import logs
from agentbot.errors import AgentbotError, ConfigError
from agentbot.settings import Settings, load_settings

logger = logging.getLogger("agentbot")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, load settings once, run the chosen command through the composition root.

    A configuration error is one line per problem on stderr and exit code 2; a connection lost later is
    one line and exit code 1. Their tracebacks are logged only at `AGENTBOT_LOG_LEVEL=DEBUG`.
    """
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        logs.configure(settings.log_level, settings.log_format)
        code: int = args.run(settings, args)
        return code
    except ConfigError as exc:
        return _fail(exc, 2)
    except (AgentbotError, redis.RedisError, ConnectionError, TimeoutError) as exc:
        return _fail(exc, 1)  # e.g. Redis gone while a worker runs
    except KeyboardInterrupt:
        return 130


def _fail(exc: BaseException, code: int) -> int:
    logger.debug("the error in full", exc_info=exc)
    for line in str(exc).splitlines() or [type(exc).__name__]:
        print(f"agentbot: {line}", file=sys.stderr)
    return code


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
    doctor = commands.add_parser("doctor", help="check settings, Redis, Slack, the model server and Docker")
    doctor.set_defaults(run=_doctor)
    return parser


# Each command loads only what it runs: `agentbot chat` needs neither gunicorn nor Bolt.


def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from agentbot import runtime  # noqa: PLC0415

    return runtime.run_chat(settings, args.task, stdin=sys.stdin, stdout=sys.stdout)


def _web(settings: Settings, args: argparse.Namespace) -> int:
    from agentbot import runtime  # noqa: PLC0415

    return runtime.serve_web(settings)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from agentbot import runtime  # noqa: PLC0415

    return runtime.run_worker(settings, burst=args.burst, simple=args.simple)


def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    from agentbot import runtime  # noqa: PLC0415

    return runtime.run_doctor(settings)
