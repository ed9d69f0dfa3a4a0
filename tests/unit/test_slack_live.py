"""Pure parts of live replies: what of a reply being written may show, its interim message, the store."""

from __future__ import annotations

import itertools

import pytest

from agentbot.conversation.posts import AgentPost
from agentbot.slack.parse import parse_assistant_thread
from agentbot.slack.render import live_text, render_live
from agentbot.slack.store import MemorySlackStore


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Hello", "Hello"),
        ("Ping <!chan", "Ping "),  # maybe a broadcast to come: held back
        ("Ping <!channel> now", "Ping @\u200bchannel now"),
        ("if a < b and c", "if a < b and c"),  # a comparison, not a Slack token
        ("see <https://x.example/a", "see "),
        ("see <https://x.example/a|a> done", "see <https://x.example/a|a> done"),
    ],
)
def test_live_text_shows_what_cannot_turn_into_a_broadcast(text: str, shown: str) -> None:
    assert live_text(text) == shown


def test_live_text_only_grows_as_the_reply_grows() -> None:
    reply = "Hi <!here> all: `a < b` and <@U1> and <!subteam^S1|team> done"
    shown = [live_text(reply[:n]) for n in range(len(reply) + 1)]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(shown))


def test_live_text_stops_at_what_one_message_holds() -> None:
    assert live_text("x" * 20_000) == "x" * 10_000


@pytest.mark.parametrize(
    ("text", "markdown"),
    [
        ("", "…"),
        ("Plain", "Plain"),
        ("Code:\n```python\nprint(1)", "Code:\n```python\nprint(1)\n```"),
        ("Code:\n```python\nprint(1)\n```\nafter", "Code:\n```python\nprint(1)\n```\nafter"),
    ],
)
def test_an_interim_message_closes_the_code_fence_being_written(text: str, markdown: str) -> None:
    message = render_live(AgentPost(speaker="critic", text="", icon=":eyes:"), text)
    assert message.blocks == ({"type": "markdown", "text": markdown},)
    assert (message.username, message.icon_emoji) == ("critic", ":eyes:")


@pytest.mark.parametrize(
    ("event", "where"),
    [
        ({"assistant_thread": {"channel_id": "D1", "thread_ts": "1.2"}}, ("D1", "1.2")),
        ({"assistant_thread": {"channel_id": "D1"}}, None),
        ({"assistant_thread": "nonsense"}, None),
        ({}, None),
    ],
)
def test_assistant_thread_started_names_the_thread(
    event: dict[str, object], where: tuple[str, str] | None
) -> None:
    assert parse_assistant_thread({"event": {"type": "assistant_thread_started", **event}}) == where


def test_memory_store_claims_once_until_the_claim_expires() -> None:
    now = [0.0]
    store = MemorySlackStore(clock=lambda: now[0])
    assert store.claim("pace:C1:1", 1.0) and not store.claim("pace:C1:1", 1.0)
    assert store.remaining("pace:C1:1") == pytest.approx(1.0)
    now[0] = 1.5
    assert store.claim("pace:C1:1", 1.0)
    store.release("pace:C1:1")
    assert store.claim("pace:C1:1", 1.0)


def test_memory_store_keeps_values_for_their_time_and_stays_bounded() -> None:
    now = [0.0]
    store = MemorySlackStore(clock=lambda: now[0], limit=3)
    store.put("user:T1:U1", "ana", 10)
    assert store.get("user:T1:U1") == "ana"
    for i in range(5):
        store.put(f"user:T1:V{i}", "x", 10)
    assert len(store._entries) <= 3
    now[0] = 11
    assert store.get("user:T1:V4") is None
