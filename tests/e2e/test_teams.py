"""Agent teams in Slack, through the processes a user starts (see `harness`): who speaks, and to whom.

A `team:trio` mention runs a round-robin group chat of three agents in one thread, each message under
its agent's own name and icon, until `max_round`; a person's reply addressed to an agent
(`critic: ...`, `@planner ...`) gives that agent the word, and the model call for it carries that
agent's role and the person's words. A `manual` team asks the people who speaks next with a button
per agent; a click, or a reply starting with an agent's name, decides.

The scripted model answers in order: the calls of one conversation are serialized, so the replies
below are in speaking order. Who was actually asked is read from each recorded request's system
message, and who was shown from each Slack message's `username`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agentbot.conversation.state import Phase
from tests.e2e.conftest import MakeStack
from tests.e2e.harness import Stack
from tests.e2e.story import UNSCRIPTED, script

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(180)]

TEAMS = """
[teams.trio]
pattern = "group_chat"
speaker_selection = "round_robin"
max_round = 3

[[teams.trio.agents]]
name = "planner"
description = "plans the work"
icon = ":memo:"
model = "gpt-4o"

[[teams.trio.agents]]
name = "writer"
description = "writes the text"
icon = ":pencil2:"

[[teams.trio.agents]]
name = "critic"
description = "finds the weak spots"
icon = ":mag:"

[teams.picker]
pattern = "group_chat"
speaker_selection = "manual"

[[teams.picker.agents]]
name = "planner"
description = "plans the work"
icon = ":memo:"

[[teams.picker.agents]]
name = "writer"
description = "writes the text"
icon = ":pencil2:"

[[teams.picker.agents]]
name = "critic"
description = "finds the weak spots"
icon = ":mag:"
"""
ICONS = {"planner": ":memo:", "writer": ":pencil2:", "critic": ":mag:"}
_GROUP_ROLE = re.compile(r"You are ([\w-]+), in a group chat")

TASK = "Write a launch note for our new app."
TO_CRITIC = "critic: is the intro too long?"
TO_PLANNER = "@planner can you add a timeline?"
ROUND_ONE = ["The plan: intro, features, call to action.", "Draft: Meet our new app!", "The intro is long."]
ANSWERS = [
    "The intro is fine now.",  # the critic, addressed although the planner was next in turn
    "Then we are done. TERMINATE",  # the planner, next after the critic
    "Timeline: beta in May, launch in June. TERMINATE",  # the planner, addressed although the writer was next
]

FAQ_TASK = "Draft a FAQ for the launch."
FIRST_DRAFT = "Q: When does it launch? A: In June."
TO_CRITIC_MANUAL = "critic: what is missing?"
CRITIQUE = "Pricing is missing."


@pytest.fixture
def teams_env(tmp_path: Path) -> dict[str, str]:
    teams_file = tmp_path / "teams.toml"
    teams_file.write_text(TEAMS, encoding="utf-8")
    return {"AGENTBOT_TEAMS_FILE": str(teams_file)}


def test_group_chat_of_three_agents_in_one_thread_and_a_reply_addressed_to_an_agent_reaches_it(
    make_stack: MakeStack, teams_env: dict[str, str]
) -> None:
    bot = make_stack(script(*ROUND_ONE, *ANSWERS), executor="none", env=teams_env)
    root = bot.mention(f"team:trio {TASK}", user="UANA")

    # One round of the three agents, each under its own name and icon, then the max_round notice.
    posts = wait_for_agent_posts(bot, root, 3)
    assert [(m["username"], agent_text(m)) for m in posts] == list(
        zip(["planner", "writer", "critic"], ROUND_ONE, strict=True)
    )
    assert {m["username"]: m["icon_emoji"] for m in posts} == ICONS
    assert len({m["icon_emoji"] for m in posts}) == 3
    bot.wait_for_text(root, "Reached max_round (3). Reply in the thread to continue.")
    wait_settled(bot, root, Phase.AWAITING_HUMAN)
    assert speakers_asked(bot) == ["planner", "writer", "critic"]
    assert [r["model"] for r in bot.llm_requests() if speaker_of(r) == "planner"] == ["gpt-4o"]
    assert all(r["model"] != "gpt-4o" for r in bot.llm_requests() if speaker_of(r) != "planner")

    # The planner would be next in turn; a reply addressed to the critic gives the critic the word.
    bot.reply(root, TO_CRITIC, user="UBOB")
    posts = wait_for_agent_posts(bot, root, 5)
    assert [(m["username"], agent_text(m)) for m in posts[3:]] == [
        ("critic", ANSWERS[0]),
        ("planner", ANSWERS[1]),
    ]
    wait_settled(bot, root, Phase.AWAITING_HUMAN)
    requests = bot.llm_requests()
    assert speakers_asked(bot) == ["planner", "writer", "critic", "critic", "planner"]
    to_critic = requests[3]["messages"]
    assert speaker_of(requests[3]) == "critic"
    assert (to_critic[-1]["role"], to_critic[-1]["content"]) == ("user", TO_CRITIC)
    assert _said(to_critic, ROUND_ONE[2])["role"] == "assistant"  # the critic's own earlier message
    assert _said(to_critic, ROUND_ONE[0])["role"] == "user"  # the planner's, as AutoGen shows others'

    # The writer would be next in turn; `@planner ...` gives the planner the word.
    bot.reply(root, TO_PLANNER, user="UANA")
    posts = wait_for_agent_posts(bot, root, 6)
    assert (posts[5]["username"], posts[5]["icon_emoji"], agent_text(posts[5])) == (
        "planner",
        ":memo:",
        ANSWERS[2],
    )
    wait_settled(bot, root, Phase.AWAITING_HUMAN)
    requests = bot.llm_requests()
    assert speakers_asked(bot) == ["planner", "writer", "critic", "critic", "planner", "planner"]
    to_planner = requests[5]["messages"]
    assert speaker_of(requests[5]) == "planner" and requests[5]["model"] == "gpt-4o"
    assert (to_planner[-1]["role"], to_planner[-1]["content"]) == ("user", TO_PLANNER)
    assert any(m["content"] == TO_CRITIC for m in to_planner)  # the whole thread, the earlier reply too

    # The person who started it stops it.
    bot.reply(root, "stop", user="UANA")
    bot.wait_for_text(root, "Conversation ended.")
    wait_settled(bot, root, Phase.FINISHED)
    [ended] = [m for m in bot.thread(root) if "Conversation ended." in str(m["text"])]
    assert "Stopped by <@UANA>. Conversation ended." in str(ended["blocks"])

    texts = bot.texts(root)
    assert [t for t in texts if "Reached max_round" in t] == [
        ":information_source: Reached max_round (3). Reply in the thread to continue."
    ]
    assert not any(UNSCRIPTED in t for t in texts)
    assert [m["username"] for m in agent_posts(bot, root)] == [
        "planner", "writer", "critic", "critic", "planner", "planner",
    ]  # fmt: skip
    assert len(bot.llm_requests()) == 6  # one model call per agent message: nothing asked twice
    bot.assert_nothing_twice(root)


def test_manual_selection_a_click_and_an_addressed_reply_pick_the_next_speaker(
    make_stack: MakeStack, teams_env: dict[str, str]
) -> None:
    bot = make_stack(script(FIRST_DRAFT, CRITIQUE), executor="none", env=teams_env)
    root = bot.mention(f"team:picker {FAQ_TASK}", user="UANA")

    # Nobody speaks before the people pick: a card with a button per agent, round robin's suggested.
    first = bot.wait_for_card(root)
    assert first["text"] == "Who speaks next?"
    assert [(b["action_id"], b["text"]["text"]) for b in buttons(first)] == [
        ("pick_speaker:0", "planner"),
        ("pick_speaker:1", "writer"),
        ("pick_speaker:2", "critic"),
    ]
    assert suggested(first) == "planner"
    wait_settled(bot, root, Phase.AWAITING_PICK)
    assert bot.llm_requests() == []

    # Bob clicks "writer": the writer speaks, the card says who picked, and a new card asks again.
    assert bot.click(first, "pick_speaker:1", user="UBOB", thread_ts=root) == 200
    second = wait_for_new_card(bot, root, after=first)
    [post] = agent_posts(bot, root)
    assert (post["username"], post["icon_emoji"], agent_text(post)) == ("writer", ":pencil2:", FIRST_DRAFT)
    picked = message(bot, root, first["ts"])
    assert picked["text"] == ":arrow_right: *writer* speaks next (picked by <@UBOB>)."
    assert suggested(second) == "critic"  # round robin's choice after the writer
    wait_settled(bot, root, Phase.AWAITING_PICK)
    [to_writer] = bot.llm_requests()
    assert speaker_of(to_writer) == "writer"
    assert to_writer["messages"][-1]["content"] == FAQ_TASK

    # A reply starting with an agent's name closes the open card and gives that agent the word.
    bot.reply(root, TO_CRITIC_MANUAL, user="UANA")
    third = wait_for_new_card(bot, root, after=second)
    assert [(m["username"], agent_text(m)) for m in agent_posts(bot, root)] == [
        ("writer", FIRST_DRAFT),
        ("critic", CRITIQUE),
    ]
    assert message(bot, root, second["ts"])["text"] == ":arrow_right: *critic* speaks next."
    assert suggested(third) == "planner"
    wait_settled(bot, root, Phase.AWAITING_PICK)
    to_writer, to_critic = bot.llm_requests()
    assert speaker_of(to_critic) == "critic"
    assert (to_critic["messages"][-1]["role"], to_critic["messages"][-1]["content"]) == (
        "user",
        TO_CRITIC_MANUAL,
    )
    assert bot.cards(root) == [third]
    assert not any(UNSCRIPTED in t for t in bot.texts(root))
    bot.assert_nothing_twice(root)


# ---------------------------------------------------------------- reading the thread and the requests


def agent_posts(bot: Stack, root: str) -> list[dict[str, Any]]:
    """The agents' messages in the thread (posted under an agent's name), oldest first."""
    return [m for m in bot.thread(root) if m.get("username")]


def agent_text(post: dict[str, Any]) -> str:
    """What the agent said: the notification text is `<speaker>: <text>`."""
    prefix = f"{post['username']}: "
    text = str(post["text"])
    assert text.startswith(prefix), f"agent message text {text!r} does not start with {prefix!r}"
    return text.removeprefix(prefix)


def wait_for_agent_posts(bot: Stack, root: str, count: int) -> list[dict[str, Any]]:
    """The first `count` agent messages, once each is finished (replies stream in as they are written)."""

    def finished() -> list[dict[str, Any]]:
        return [m for m in agent_posts(bot, root) if str(m["text"]).startswith(f"{m['username']}: ")]

    bot.wait_until(
        lambda: len(finished()) >= count,
        timeout=60,
        what=f"{count} agent message(s) in {root} (have: {bot.texts(root)})",
    )
    return agent_posts(bot, root)


def wait_settled(bot: Stack, root: str, phase: Phase) -> None:
    """Wait until the conversation waits for people in `phase`, everything it had to say shown."""

    def reached() -> bool:
        state = bot.state(root)
        return state is not None and state.phase is phase and bot.settled(root)

    bot.wait_until(reached, timeout=60, what=f"conversation {root} settled in {phase.value}")


def wait_for_new_card(bot: Stack, root: str, *, after: dict[str, Any]) -> dict[str, Any]:
    """The one open card posted after the card `after` (which by then shows the pick, not buttons)."""

    def fresh() -> list[dict[str, Any]]:
        return [c for c in bot.cards(root) if float(c["ts"]) > float(after["ts"])]

    bot.wait_until(
        lambda: len(fresh()) == 1 and len(bot.cards(root)) == 1,
        timeout=60,
        what=f"a new speaker card after {after['ts']} (have: {bot.texts(root)})",
    )
    [card] = fresh()
    return card


def message(bot: Stack, root: str, ts: str) -> dict[str, Any]:
    return next(m for m in bot.thread(root) if m["ts"] == ts)


def buttons(card: dict[str, Any]) -> list[dict[str, Any]]:
    actions = next(b for b in card["blocks"] if b.get("type") == "actions")
    elements: list[dict[str, Any]] = actions["elements"]
    return elements


def suggested(card: dict[str, Any]) -> str:
    """The agent whose button is highlighted (round robin's choice)."""
    [name] = [b["text"]["text"] for b in buttons(card) if b.get("style") == "primary"]
    return str(name)


def speaker_of(request: dict[str, Any]) -> str:
    """The agent a recorded model request was for, by its system message."""
    system = request["messages"][0]
    found = _GROUP_ROLE.search(str(system["content"])) if system["role"] == "system" else None
    assert found is not None, f"not an agent's request: {system}"
    return found.group(1)


def speakers_asked(bot: Stack) -> list[str]:
    return [speaker_of(r) for r in bot.llm_requests()]


def _said(messages: list[dict[str, Any]], content: str) -> dict[str, Any]:
    """The message of a request with this content (an agent sees its own messages as `assistant`)."""
    [found] = [m for m in messages if m["content"] == content]
    return found
