"""The job every RQ worker runs: advance one conversation by one step (enqueued by `queue.py`)."""

from __future__ import annotations

import logging
import time
import uuid

from agentbot import logs, runtime
from agentbot.conversation import driver
from agentbot.conversation.state import ConversationKey
from agentbot.errors import AgentbotError

logger = logging.getLogger(__name__)


def step(conversation: dict[str, str]) -> None:
    """The job: advance one conversation by one step. The one broad catch of the worker side.

    Every line logged meanwhile carries the conversation's key; the step is counted by its outcome.
    """
    key = ConversationKey.model_validate(conversation)
    rt = runtime.current()
    started, outcome = time.perf_counter(), "retried"  # the outcome when the step raises: rq retries it
    with logs.conversation(key.id):
        try:
            outcome = _step(rt.ports(), key)
        finally:
            rt.metrics.step_done(outcome, time.perf_counter() - started)


def _step(ports: driver.Ports, key: ConversationKey) -> str:
    try:
        driver.step(ports, key)
    except AgentbotError as exc:
        if exc.retryable:
            logger.warning("conversation %s: step will be retried: %s", key.id, exc)
            raise
        _report(ports, key, exc)
        return "failed"
    except Exception as exc:
        _report(ports, key, exc)
        return "failed"
    finally:
        runtime.current().settle()  # the sandbox's next supervisor starts before this process ends
    return "ok"


def _report(ports: driver.Ports, key: ConversationKey, exc: Exception) -> None:
    error_id = uuid.uuid4().hex[:8]
    logger.exception("conversation %s: step failed (error id %s)", key.id, error_id, exc_info=exc)
    text = f"Something went wrong on my side (error id `{error_id}`). Reply in the thread to try again."
    try:
        driver.fail(ports, key, text)
    except Exception:
        logger.exception("conversation %s: could not report error %s", key.id, error_id)
