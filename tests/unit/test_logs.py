"""Log lines: JSON objects (or text) carrying the conversation being worked on."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from agentbot import logs


@pytest.fixture
def stream() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own, formatted as `configure` does, without touching the root logger."""
    out = io.StringIO()
    logger = logging.getLogger(f"agentbot.test.{id(out)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.ConversationFilter())
    logger.addHandler(handler)
    yield logger, out
    logger.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_the_conversation_of_the_context(stream: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = stream
    logger.handlers[0].setFormatter(logs.JsonFormatter())
    logger.info("outside")
    with logs.conversation("T1-C1-1700000000.000100"):
        logger.warning("step of %s", "ana")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    logger.info("after")

    outside, inside, failed, after = lines(out)
    assert "conversation" not in outside and "conversation" not in after
    assert inside["conversation"] == "T1-C1-1700000000.000100"
    assert inside["message"] == "step of ana" and inside["level"] == "WARNING"
    assert inside["logger"] == logger.name and isinstance(inside["process"], int)
    assert failed["conversation"] == inside["conversation"]
    assert "ValueError: boom" in str(failed["error"])
    assert str(inside["time"]).endswith("+00:00")


def test_each_thread_has_its_own_conversation(stream: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = stream
    logger.handlers[0].setFormatter(logs.JsonFormatter())
    ready, go = threading.Event(), threading.Event()

    def other() -> None:
        with logs.conversation("T1-C2-2"):
            ready.set()
            go.wait(5)
            logger.info("in the other thread")

    thread = threading.Thread(target=other)
    thread.start()
    ready.wait(5)
    with logs.conversation("T1-C1-1"):
        logger.info("in this thread")
        go.set()
        thread.join(5)

    by_message = {line["message"]: line.get("conversation") for line in lines(out)}
    assert by_message == {"in this thread": "T1-C1-1", "in the other thread": "T1-C2-2"}


def test_text_lines_tag_the_conversation(stream: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = stream
    logger.handlers[0].setFormatter(logging.Formatter(logs.TEXT_FORMAT))
    with logs.conversation("T1-C1-1"):
        logger.info("hello")
    logger.info("bye")
    first, second = out.getvalue().splitlines()
    assert f"{logger.name} [T1-C1-1]: hello" in first
    assert f"{logger.name}: bye" in second


def test_the_config_sends_gunicorn_lines_through_the_same_handler() -> None:
    config = logs.dict_config("INFO", "json")
    assert config["handlers"]["stderr"]["formatter"] == "json"
    assert config["loggers"]["gunicorn.error"] == {"level": "INFO", "handlers": [], "propagate": True}
    assert config["loggers"]["httpx"] == {"level": "WARNING"}
    assert "httpx" not in logs.dict_config("DEBUG")["loggers"]
