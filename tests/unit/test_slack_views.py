"""Table tests of what the bot shows about itself and its sub-teams: modals, the guide, command roots."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from agentbot.conversation.posts import SubTeamPost
from agentbot.conversation.state import ConversationKey, ConversationState, Message, Phase, Policy
from agentbot.slack.guide import answer, mrkdwn
from agentbot.slack.render import render, render_command_root, truncate
from agentbot.slack.views import details_view, missing_view
from agentbot.teams import Catalog, load_catalog

AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
KEY = ConversationKey(team_id="T1", channel_id="C1", thread_ts="1700000000.000100~s1-budget")
BUDGET = load_catalog(None).teams["project_manager"].subteams["budget"]


def sub_state(*messages: Message, phase: Phase = Phase.FINISHED) -> ConversationState:
    return ConversationState(
        key=KEY, created_at=AT, updated_at=AT, starter_id="U1", policy=Policy(), phase=phase,
        transcript=messages, team=BUDGET,
    )  # fmt: skip


def said(speaker: str, content: str) -> Message:
    return Message(speaker=speaker, role="assistant", content=content)


def assert_modal_within_limits(view: dict[str, object]) -> None:
    assert view["type"] == "modal"
    assert len(view["title"]["text"]) <= 24  # type: ignore[index]
    blocks = view["blocks"]
    assert isinstance(blocks, list) and 0 < len(blocks) <= 100
    for block in blocks:
        for text in [block.get("text", {}).get("text", "")] + [e["text"] for e in block.get("elements", [])]:
            assert len(text) <= 3_000


def test_details_view_shows_every_message_under_its_speaker() -> None:
    view = details_view(
        sub_state(said("project_manager", "Cost for 4 engineers?"), said("analyst", "$180k <b>"))
    )
    assert view["title"]["text"] == truncate(f"{BUDGET.name} details", 24)
    texts = [b["text"]["text"] for b in view["blocks"] if b["type"] == "section"]
    assert texts == ["*project_manager*: Cost for 4 engineers?", "*analyst*: $180k &lt;b&gt;"]
    assert "finished" in json.dumps(view["blocks"][0])
    assert_modal_within_limits(view)


@pytest.mark.parametrize("count", [0, 1, 97, 98, 500])
def test_details_view_of_any_length_fits_a_modal_and_keeps_the_newest(count: int) -> None:
    messages = [said("analyst", f"message {i} " + "x" * 5_000) for i in range(count)]
    view = details_view(sub_state(*messages, phase=Phase.THINKING))
    assert_modal_within_limits(view)
    dumped = json.dumps(view)
    if count:
        assert f"message {count - 1} " in dumped
    if count > 97:
        assert f"{count - 97} earlier messages are not shown." in dumped
        assert "message 0 " not in dumped
    if count == 0:
        assert "Nothing said yet" in dumped


def test_missing_view_says_so() -> None:
    view = missing_view()
    assert_modal_within_limits(view)
    assert "no longer available" in json.dumps(view)


def test_sub_team_message_has_a_details_button_naming_its_conversation() -> None:
    post = SubTeamPost(
        sub_id="s1", subteam="budget", task="cost it", status="running", detail_thread=KEY.thread_ts
    )
    (message,) = render(post).messages
    button = message.blocks[0]["accessory"]
    assert (button["action_id"], json.loads(button["value"])) == (
        "subteam_details",
        {"thread": KEY.thread_ts},
    )
    assert all(b["type"] != "actions" for b in message.blocks)  # not an approval card
    (without,) = render(post.model_copy(update={"detail_thread": ""})).messages
    assert "accessory" not in without.blocks[0]


def test_command_root_names_the_asker_and_team_and_cannot_ping_the_channel() -> None:
    message = render_command_root("UANA", "chart <!channel> & more", "trio")
    assert message.text == "<@UANA> asked (team *trio*): chart &lt;!channel&gt; &amp; more"
    assert render_command_root("UANA", "plot", None).text == "<@UANA> asked: plot"


@pytest.mark.parametrize("topic", ["teams", "help"])
def test_guide_lists_every_team_with_its_members(topic: str) -> None:
    text = answer(topic, load_catalog(None))  # type: ignore[arg-type]
    for name in ("coder", "translate_summarize", "project_manager", "timeline"):
        assert name in text
    assert "team:" in text
    assert ("/agentbot <task>" in text) == (topic == "help")


def test_guide_without_teams_names_the_built_in_pair() -> None:
    assert "Only the built-in assistant and user proxy." in answer("teams", Catalog())


@pytest.mark.parametrize("topic", ["teams", "help"])
def test_guide_is_standard_markdown_for_the_markdown_block_it_is_posted_in(topic: str) -> None:
    text = answer(topic, load_catalog(None))  # type: ignore[arg-type]
    single_stars = re.findall(r"(?<!\*)\*[^*\s][^*]*\*(?!\*)", text)
    assert not single_stars, f"mrkdwn bold would show in italics in a markdown block: {single_stars}"
    assert "**" in text


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("**Start** a conversation", "*Start* a conversation"),
        ("**coder** (default) — two agent", "*coder* (default) — two agent"),
        ("keep `**not bold**` in code", "keep `**not bold**` in code"),
        ("plain text", "plain text"),
    ],
)
def test_guide_in_mrkdwn_for_slash_command_replies(markdown: str, expected: str) -> None:
    assert mrkdwn(markdown) == expected
