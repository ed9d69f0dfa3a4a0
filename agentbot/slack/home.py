"""The bot's Home tab (`views.publish`): what waits for the viewer, their live conversations, the teams.

A Home click comes from no message and no channel, so each button names its thread in its value
(`channel`, `thread`) next to the run it is about; the engine checks the click against the state as
it checks a click in the thread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from agentbot.conversation.edit import editable_code
from agentbot.conversation.state import ConversationState, Phase
from agentbot.slack.parse import ALLOW_HOST_ACTION, DENY_HOST_ACTION, EDIT_ACTION, RUN_ACTION, SKIP_ACTION
from agentbot.slack.render import Block, button, context_block, escape, full_code, section_block, truncate

BLOCK_LIMIT = 100  # blocks in a Home tab view
PREVIEW_LINES = 12
PREVIEW_CHARS = 1_200
LIVE_SHOWN = 20
_TEAMS_ROOM = 4  # blocks kept free for the teams section

View = dict[str, Any]


def home_view(user_id: str, conversations: Sequence[ConversationState], teams: str, now: datetime) -> View:
    """The Home tab of `user_id`: decisions waiting for them first, then their live conversations."""
    waiting = [block for state in conversations for block in _waiting(state, user_id, now)]
    live = [state for state in conversations if state.phase is not Phase.FINISHED]
    blocks: list[Block] = [_header("Waiting for you")]
    blocks += waiting or [context_block("Nothing waits for your approval.")]
    blocks += [{"type": "divider"}, _header("Your conversations")]
    blocks += [_live_line(state, now) for state in live[:LIVE_SHOWN]] or [
        context_block("No live conversations. Mention me in a channel with a task to start one.")
    ]
    blocks = blocks[: BLOCK_LIMIT - _TEAMS_ROOM]
    blocks += [{"type": "divider"}, _header("Teams"), section_block(teams or "Only the built-in pair.")]
    return {"type": "home", "blocks": blocks}


def waiting_for(state: ConversationState, user_id: str) -> bool:
    """Whether a run or a blocked-hosts decision of `state` waits for `user_id`."""
    run, ask = state.run, state.hosts_ask
    if state.phase is Phase.AWAITING_APPROVAL and run is not None and run.status == "awaiting_approval":
        return user_id in run.approvers
    if state.phase is Phase.AWAITING_HOSTS and ask is not None and ask.status == "open":
        return user_id in ask.approvers
    return False


def _waiting(state: ConversationState, user_id: str, now: datetime) -> list[Block]:
    if not waiting_for(state, user_id):
        return []
    where = f"<#{state.key.channel_id}> · {_task(state)} · {_age(state.updated_at, now)} ago"
    if state.phase is Phase.AWAITING_HOSTS and state.hosts_ask is not None:
        ask = state.hosts_ask
        hosts = ", ".join(f"`{escape(h)}`" for h in ask.hosts[:10])
        value = _value(state, ask.run_id, ask.code_hash)
        return [
            section_block(f":no_entry: *Blocked hosts* in {where}\nAllow {hosts} and run the code again?"),
            _actions(
                f"home-hosts-{state.key.slug}",
                button("Allow and run again", ALLOW_HOST_ACTION, value, style="primary"),
                button("Keep blocked", DENY_HOST_ACTION, value),
            ),
        ]
    run = state.run
    assert run is not None  # waiting_for checked it
    value = _value(state, run.run_id, run.code_hash)
    edit = [button("Edit", EDIT_ACTION, value)] if editable_code(run.blocks) is not None else []
    return [
        section_block(f":robot_face: *Code to run* in {where}"),
        _preview(full_code(run.blocks)),
        _actions(
            f"home-run-{state.key.slug}",
            button("Run", RUN_ACTION, value, style="primary"),
            *edit,
            button("Skip", SKIP_ACTION, value),
        ),
    ]


def _live_line(state: ConversationState, now: datetime) -> Block:
    phase = state.phase.value.replace("_", " ")
    cost = f"${state.total_cost_usd:,.4f}" + ("" if state.cost_known else " + unknown")
    age = _age(state.created_at, now)
    return section_block(f"<#{state.key.channel_id}> · {_task(state)}\n{phase} · {cost} · started {age} ago")


def _task(state: ConversationState) -> str:
    """The first thing a person asked, shortened: how people recognize a conversation."""
    first = next((m.content for m in state.transcript if m.kind == "human"), "")
    return f"“{escape(truncate(' '.join(first.split()), 80))}”" if first else "a conversation"


def _age(then: datetime, now: datetime) -> str:
    seconds = max(int((now - then).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _value(state: ConversationState, run_id: str, code_hash: str) -> str:
    key = state.key
    return json.dumps(
        {"run_id": run_id, "code_hash": code_hash, "channel": key.channel_id, "thread": key.thread_ts}
    )


def _preview(code: str) -> Block:
    lines = code.split("\n")
    shown = "\n".join(lines[:PREVIEW_LINES])[:PREVIEW_CHARS]
    if shown != code:
        shown += f"\n… ({len(lines)} lines in all)"
    element = {"type": "text", "text": shown or " "}
    return {"type": "rich_text", "elements": [{"type": "rich_text_preformatted", "elements": [element]}]}


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


def _actions(block_id: str, *elements: Block) -> Block:
    return {"type": "actions", "block_id": block_id[:255], "elements": list(elements)}
