"""Live in Slack, end to end: replies stream into the thread as the model writes them.

The Procfile's processes against the fake Slack and the fake model streaming at a set pace: the
reply's text arrives in several pieces before its approval card; where Slack refuses streaming it is
posted and edited; a mention in a 1,000-message thread is acked before anything reads that thread;
and a worker killed mid-reply leaves it saying it was cut off, then the retry rewrites that message.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.conftest import MakeStack
from tests.e2e.harness import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(240)]

CODE_REPLY = (
    "Here is a small program that prints a greeting and the sum of the first ten numbers.\n\n"
    "```python\nprint('hello')\nprint(sum(range(1, 11)))\n```\n\nRun it when you are ready."
)
WHOLE = "This is the retried reply, written whole from its very first word to its very last word. TERMINATE"
STALLED = {"stall": "The first attempt at this reply never reaches its end, because the worker writing it"}


def calls(bot: Stack, method: str) -> list[dict[str, Any]]:
    return bot.calls(method)


def agent_messages(bot: Stack, root: str) -> list[dict[str, Any]]:
    return [
        m for m in bot.thread(root) if str(m.get("text", "")).startswith("assistant: ") or m.get("streaming")
    ]


def test_a_reply_arrives_in_several_pieces_before_its_card(make_stack: MakeStack) -> None:
    bot = make_stack({"replies": [CODE_REPLY]}, executor="none", tokens_per_second=20)
    root = bot.mention("print a greeting")
    card = bot.wait_for_card(root)

    appends = calls(bot, "chat.appendStream")
    (posted_card,) = [c for c in calls(bot, "chat.postMessage") if c["args"].get("blocks")]
    assert len(appends) >= 3, appends
    assert all(append["at"] < posted_card["at"] for append in appends)
    (stop,) = calls(bot, "chat.stopStream")
    assert stop["at"] < posted_card["at"]
    assert "".join(a["args"]["markdown_text"] for a in appends) in CODE_REPLY
    (reply,) = agent_messages(bot, root)
    assert reply["blocks"] == [{"type": "markdown", "text": CODE_REPLY}]
    assert reply["ts"] < card["ts"]
    bot.assert_nothing_twice(root)


def test_where_slack_refuses_streaming_the_reply_is_posted_then_edited(make_stack: MakeStack) -> None:
    bot = make_stack({"replies": [CODE_REPLY]}, executor="none", tokens_per_second=20)
    bot.set_streaming(False)
    root = bot.mention("print a greeting")
    bot.wait_for_card(root)

    assert not calls(bot, "chat.appendStream")
    (reply,) = agent_messages(bot, root)
    edits = [c for c in calls(bot, "chat.update") if c["args"]["ts"] == reply["ts"]]
    assert len(edits) >= 2  # a paced edit or more while the model wrote, then the whole post
    assert edits[0]["args"]["blocks"][0]["text"] != CODE_REPLY
    assert reply["blocks"] == [{"type": "markdown", "text": CODE_REPLY}]
    bot.assert_nothing_twice(root)


def test_a_mention_in_a_thousand_message_thread_is_acked_before_anything_reads_the_thread(
    make_stack: MakeStack,
) -> None:
    bot = make_stack({"default": "The thread agrees on option 999. TERMINATE"}, executor="none")
    root = bot.add_message(user="UBOB", text="Let us pick an option.")
    bot.add_messages(root, [(("UBOB", "UCAT")[i % 2], f"I vote for option {i}") for i in range(1000)])
    event = bot.mention_event("what did we agree on?", thread_ts=root)

    sent_at = time.time()
    assert bot.event(event) == 200
    acked_at = time.time()

    bot.wait_for_text(root, "option 999")
    replies = calls(bot, "conversations.replies")
    assert len(replies) >= 5  # the whole thread, page by page, read by the worker...
    assert all(call["at"] > acked_at for call in replies + calls(bot, "users.info"))  # ...after the ack
    print(f"\nmention in a 1,000-message thread acked in {(acked_at - sent_at) * 1000:.0f} ms")
    prompt = json.dumps(bot.llm_requests()[0]["messages"])
    assert "I vote for option 999" in prompt


def test_a_worker_killed_mid_reply_leaves_it_cut_off_and_the_retry_neither_repeats_nor_loses_text(
    make_stack: MakeStack,
) -> None:
    bot = make_stack({"replies": [STALLED, WHOLE]}, executor="none", tokens_per_second=10)
    root = bot.mention("hello")
    bot.wait_until(lambda: len(calls(bot, "chat.appendStream")) >= 2, timeout=30, what="a reply streaming")
    bot.kill_work_horse()  # the worker sees its step die and retries it

    bot.wait_until(
        lambda: any("retried reply" in str(m.get("text")) for m in bot.thread(root)),
        timeout=60,
        what="the retry",
    )
    bot.wait_until(lambda: bot.settled(root), timeout=30, what="the conversation to settle")

    (reply,) = agent_messages(bot, root)  # one message: the cut-off one, rewritten
    assert reply["blocks"][0] == {"type": "markdown", "text": WHOLE}  # then its feedback buttons
    assert len(calls(bot, "chat.startStream")) == 1
    cut = [c for c in calls(bot, "chat.stopStream") if "cut off" in c["args"].get("markdown_text", "")]
    assert [c["args"]["ts"] for c in cut] == [reply["ts"]]  # it said so until the retry rewrote it
    assert len(bot.llm_requests()) == 2
    bot.assert_nothing_twice(root)
