"""Tool-call cards and tool results in Slack and in the console: pure rendering, within Slack's limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agentbot import console
from agentbot.conversation.posts import Decision, ToolApprovalPost, ToolCallView, ToolResultPost
from agentbot.slack.parse import RUN_ACTION, RUN_ALL_ACTION, SKIP_ACTION, STOP_ACTION
from agentbot.slack.render import SECTION_LIMIT, render

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ARGS = json.dumps({"numbers": [1, 2, 3]}, indent=2)


def card(*calls: ToolCallView, decision: Decision | None = None) -> ToolApprovalPost:
    return ToolApprovalPost(
        run_id="t3",
        code_hash="abc123",
        speaker="analyst",
        calls=calls or (ToolCallView(call_id="c1", name="summary_stats", server="python", arguments=ARGS),),
        requested_by="UANA",
        approvers=("UANA", "UBOSS"),
        expires_at=AT,
        decision=decision,
    )


def test_a_tool_card_shows_each_call_and_the_code_cards_buttons() -> None:
    (message,) = render(card()).messages
    blocks = message.blocks
    assert "analyst wants to call these tools. <@UANA> or <@UBOSS>" in blocks[0]["text"]["text"]
    assert blocks[1]["elements"][0]["text"] == "*summary_stats* · python"
    assert blocks[2]["elements"][0]["elements"][0]["text"] == ARGS
    actions = blocks[-1]
    expected = [RUN_ACTION, RUN_ALL_ACTION, SKIP_ACTION, STOP_ACTION]
    assert [b["action_id"] for b in actions["elements"]] == expected
    assert {json.loads(b["value"])["run_id"] for b in actions["elements"]} == {"t3"}
    assert json.loads(actions["elements"][0]["value"])["code_hash"] == "abc123"
    assert message.text == "analyst wants to call summary_stats: Run, Skip or Stop?"


@pytest.mark.parametrize(
    ("outcome", "said"),
    [
        ("approved", "Approved by <@UANA>"),
        ("skipped", "Skipped by <@UANA>"),
        ("stopped", "Stopped by <@UANA>"),
    ],
)
def test_a_decided_tool_card_says_who_decided_and_has_no_buttons(outcome: str, said: str) -> None:
    decided = card(decision=Decision.model_validate({"outcome": outcome, "user_id": "UANA", "at": AT}))
    (message,) = render(decided).messages
    assert all(block["type"] != "actions" for block in message.blocks)
    assert said in message.blocks[-1]["elements"][0]["text"]


def test_long_arguments_and_many_calls_stay_within_slacks_limits() -> None:
    calls = tuple(
        ToolCallView(call_id=f"c{i}", name=f"tool{i}", server="files", arguments="x" * 20_000)
        for i in range(9)
    )
    (message,) = render(card(*calls)).messages
    assert len(message.blocks) <= 50
    assert sum(len(json.dumps(b)) for b in message.blocks) < 12_000
    assert "… and 4 more calls." in json.dumps(message.blocks, ensure_ascii=False)


def test_a_huge_tool_result_shows_head_and_tail_and_attaches_the_whole() -> None:
    post = ToolResultPost(run_id="t3", call_id="c1", name="dump", server="files", text="y" * 10_000_000)
    rendered = render(post)
    (message,) = rendered.messages
    assert message.text == ":white_check_mark: `dump` (files) returned"
    assert all(len(json.dumps(block)) < SECTION_LIMIT + 500 for block in message.blocks)
    assert rendered.snippet is not None and len(rendered.snippet.content) == 10_000_000


def test_a_failed_tool_result_says_so() -> None:
    post = ToolResultPost(
        run_id="t3", call_id="c1", name="boom", server="python", text="Error: x", is_error=True
    )
    assert render(post).messages[0].text == ":x: `boom` (python) failed"


def test_the_console_prints_tool_calls_and_responses_as_autogen_does() -> None:
    assert console.render(card()).startswith(">>>>>>>> SUGGESTED TOOL CALLS (t3):\nsummary_stats (python): {")
    result = ToolResultPost(run_id="t3", call_id="c1", name="summary_stats", server="python", text="{}")
    assert console.render(result).startswith(">>>>>>>> TOOL RESPONSE (summary_stats):\n{}")
