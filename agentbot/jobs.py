"""The job every RQ worker runs: advance one conversation by one step (enqueued by `queue.py`)."""

from __future__ import annotations

import logging
import uuid

from agentbot import runtime
from agentbot.conversation import driver
from agentbot.conversation.state import ConversationKey
from agentbot.errors import AgentbotError

logger = logging.getLogger(__name__)


def step(conversation: dict[str, str]) -> None:
    """The job: advance one conversation by one step. The one broad catch of the worker side."""
    key = ConversationKey.model_validate(conversation)
    ports = runtime.current().ports()
    try:
        driver.step(ports, key)
    except AgentbotError as exc:
        if exc.retryable:
            logger.warning("conversation %s: step will be retried: %s", key.id, exc)
            raise
        _report(ports, key, exc)
    except Exception as exc:
        _report(ports, key, exc)
    finally:
        runtime.current().settle()


def _report(ports: driver.Ports, key: ConversationKey, exc: Exception) -> None:
    error_id = uuid.uuid4().hex[:8]
    logger.exception("conversation %s: step failed (error id %s)", key.id, error_id, exc_info=exc)
    text = f"Something went wrong on my side (error id `{error_id}`). Reply in the thread to try again."
    try:
        driver.fail(ports, key, text)
    except Exception:
        logger.exception("conversation %s: could not report error %s", key.id, error_id)
