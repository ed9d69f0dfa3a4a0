"""A tool call, in Slack, through the processes a user starts: the `analyst` preset's Python tool.

A mention asks the analyst for statistics; the model asks to call `summary_stats`; the thread shows a
tool-call card (the tool, where it runs, its arguments as JSON) with Run / Skip / Stop; the requester
clicks Run; the worker's tool host runs the function; its result is posted and goes back to the model
as a `tool` message; the model's final answer lands in the thread.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import MakeStack
from tests.e2e.harness import button_value

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(180)]

TASK = "team:analyst What are the summary statistics of 3, 5, 8 and 13?"
ANSWER = "The median is 6.5 and the mean 7.25. TERMINATE"
SCRIPT = {
    "replies": [{"tool_calls": [{"name": "summary_stats", "arguments": {"numbers": [3, 5, 8, 13]}}]}],
    "rules": [{"match": '"median": 6.5', "reply": ANSWER}],
    "default": "unscripted request",
}


def test_mention_tool_card_run_result_to_the_model_final_answer(make_stack: MakeStack) -> None:
    bot = make_stack(SCRIPT, executor="local")
    root = bot.mention(TASK, user="UANA")

    card = bot.wait_for_card(root)
    shown = json.dumps(card["blocks"], ensure_ascii=False)
    assert "analyst wants to call these tools" in shown
    assert "*summary_stats* · python" in shown and '\\"numbers\\": [\\n' in shown
    assert button_value(card)["run_id"] == "t1"
    offered = bot.llm_requests()[0]["tools"]
    assert [t["function"]["name"] for t in offered] == ["summary_stats", "percent_change"]
    assert bot.click(card, "run_code", user="UANA", thread_ts=root) == 200

    bot.wait_for_text(root, ANSWER)
    texts = bot.texts(root)
    assert ":white_check_mark: `summary_stats` (python) returned" in texts
    assert bot.cards(root) == []  # the decided card shows who approved, without buttons
    sent = bot.llm_requests()[-1]["messages"]
    assert sent[-2]["tool_calls"][0]["function"]["name"] == "summary_stats"
    assert sent[-1]["role"] == "tool" and json.loads(sent[-1]["content"])["mean"] == 7.25
    assert len(bot.llm_requests()) == 2
    bot.assert_nothing_twice(root)
