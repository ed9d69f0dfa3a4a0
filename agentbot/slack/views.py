"""Modals (`views.open`): a sub-team's whole conversation behind its message's Details button."""

from __future__ import annotations

from typing import Any

from agentbot.conversation.state import ConversationState, Message
from agentbot.slack.render import context_block, escape, section_block, truncate

View = dict[str, Any]

TITLE_LIMIT = 24  # a modal's title and button labels
BLOCK_LIMIT = 100  # blocks in one modal
_SHOWN = BLOCK_LIMIT - 3  # room for the heading, a divider and the "earlier messages" note


def details_view(sub: ConversationState) -> View:
    """The sub-conversation's transcript, newest last; the oldest dropped when it would not fit."""
    name = sub.team.name if sub.team else "Sub-team"
    heading = f"*{escape(name)}* · {sub.phase.value.replace('_', ' ')} · ${sub.total_cost_usd:,.4f}"
    blocks: list[dict[str, Any]] = [context_block(heading), {"type": "divider"}]
    messages = sub.transcript
    if len(messages) > _SHOWN:
        blocks.append(context_block(f"{len(messages) - _SHOWN} earlier messages are not shown."))
        messages = messages[-_SHOWN:]
    blocks.extend(_message(m) for m in messages)
    if not messages:
        blocks.append(section_block("_Nothing said yet._"))
    return _modal(f"{name} details", blocks)


def missing_view() -> View:
    """For a Details click whose sub-conversation is gone (expired) or is not this thread's."""
    text = "This sub-team's conversation is no longer available."
    return _modal("Sub-team details", [section_block(text)])


def _message(message: Message) -> dict[str, Any]:
    return section_block(f"*{escape(message.speaker)}*: {escape(message.content)}")


def _modal(title: str, blocks: list[dict[str, Any]]) -> View:
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": truncate(title, TITLE_LIMIT)},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": blocks[:BLOCK_LIMIT],
    }
