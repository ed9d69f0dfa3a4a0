"""Logging for every process: text or JSON lines (`AGENTBOT_LOG_FORMAT`), each with the conversation key.

The key comes from a context variable that the two boundaries set while they work on a conversation:
the job boundary (`agentbot.jobs.step`, for everything a step logs, rq's and the SDKs' lines too) and
the web listener (`agentbot.slack.app.Bridge`, while it stores an event). A line logged outside both
has none. A JSON line is one object: `time`, `level`, `logger`, `message`, `conversation` (when
known), `process`, and `error` with the traceback when there is one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import os
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

_conversation: ContextVar[str] = ContextVar("agentbot_conversation", default="")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(conversation_tag)s: %(message)s"
# The OpenAI SDK's HTTP client logs every request at INFO.
QUIET_BELOW_DEBUG = ("httpx", "httpx2", "httpcore")


@contextlib.contextmanager
def conversation(conversation_id: str) -> Iterator[None]:
    """Tag every line logged in this context (this thread, or this task) with `conversation_id`."""
    token = _conversation.set(conversation_id)
    try:
        yield
    finally:
        _conversation.reset(token)


def current_conversation() -> str:
    """The conversation the running code works on ("" outside the job and the listener)."""
    return _conversation.get()


class ConversationFilter(logging.Filter):
    """Puts the current conversation on each record (`record.conversation`, "" when none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        key = getattr(record, "conversation", None) or _conversation.get()
        record.conversation = key
        record.conversation_tag = f" [{key}]" if key else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors (Loki, CloudWatch, Elasticsearch)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process or os.getpid(),
        }
        key = getattr(record, "conversation", "")
        if key:
            line["conversation"] = key
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, log_format: LogFormat = "text") -> None:
    """The root logger: one stderr handler with the chosen format and the conversation filter."""
    logging.config.dictConfig(dict_config(level, log_format))


def dict_config(level: str, log_format: LogFormat = "text") -> dict[str, Any]:
    """`logging.config.dictConfig`'s form of `configure` (gunicorn takes it as `logconfig_dict` too)."""
    quiet = {name: {"level": "WARNING"} for name in QUIET_BELOW_DEBUG if level != "DEBUG"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"conversation": {"()": ConversationFilter}},
        "formatters": {"json": {"()": JsonFormatter}, "text": {"format": TEXT_FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": log_format,
                "filters": ["conversation"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            **quiet,
            # gunicorn's own lines through the root handler, in the same format
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }
