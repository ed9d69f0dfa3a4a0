"""Modals (`views.open`): a sub-team's whole conversation behind Details, and the Edit-before-run form."""

from __future__ import annotations

import json
from typing import Any

from agentbot.conversation.edit import editable_code
from agentbot.conversation.state import ConversationState, Message, PendingRun
from agentbot.slack.parse import EDIT_BLOCK, EDIT_CALLBACK
from agentbot.slack.render import context_block, escape, section_block, truncate

View = dict[str, Any]

TITLE_LIMIT = 24  # a modal's title and button labels
BLOCK_LIMIT = 100  # blocks in one modal
INPUT_LIMIT = 3_000  # characters a `plain_text_input` holds (its largest `max_length`)
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


def edit_view(state: ConversationState, run: PendingRun) -> View:
    """The Edit form: the proposed code in a multiline input; submitting runs what it then holds.

    Its private metadata names the thread and the run (the submission carries no message or channel).
    """
    code = editable_code(run.blocks)
    if code is None or len(code) > INPUT_LIMIT:
        why = "blocks in several languages" if code is None else f"more than {INPUT_LIMIT:,} characters"
        return _modal("Edit code", [section_block(f"This code cannot be edited here ({why}).")])
    metadata = {
        "channel": state.key.channel_id,
        "thread": state.key.thread_ts,
        "run_id": run.run_id,
        "code_hash": run.code_hash,
    }
    language = run.blocks[0].language
    field = {
        "type": "input",
        "block_id": EDIT_BLOCK,
        "label": {"type": "plain_text", "text": f"Code ({language})"},
        "element": {
            "type": "plain_text_input",
            "action_id": EDIT_BLOCK,
            "multiline": True,
            "initial_value": code,
            "max_length": INPUT_LIMIT,
        },
    }
    note = context_block("Submitting runs this code now. The assistant sees what you changed, as a diff.")
    return {
        **_modal("Edit code", [field, note]),
        "callback_id": EDIT_CALLBACK,
        "private_metadata": json.dumps(metadata),
        "submit": {"type": "plain_text", "text": "Run edited code"},
        "close": {"type": "plain_text", "text": "Cancel"},
    }


def notice_view(title: str, text: str) -> View:
    """A modal that only says something (an Edit that is not possible, or not allowed)."""
    return _modal(title, [section_block(text)])
