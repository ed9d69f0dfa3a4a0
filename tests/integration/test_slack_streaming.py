"""Live replies on SlackPlatform against the fake Slack: streamed, edited where streaming is refused, cut off.

Also what the worker now reads instead of the web process (a long thread's earlier messages and
names), statuses with loading messages, and suggested prompts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentbot.conversation.posts import AgentPost
from agentbot.conversation.state import ConversationKey
from agentbot.settings import load_settings
from agentbot.slack.platform import CUT_OFF, SlackPlatform, make_client
from agentbot.slack.store import MemorySlackStore
from agentbot.slack.stream import StreamedMessage
from tests.fakes.slack_server import TOKEN, FakeSlack

KEY = ConversationKey(team_id="T0001", channel_id="C0001", thread_ts="1700000000.000100")
POST = AgentPost(speaker="writer", text="", icon=":memo:")
REPLY = "Here is the plan:\n```python\nprint('hi')\n```\nDone."


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_message("C0001", user="UANA", text="<@UBOT> plan it", ts=KEY.thread_ts)
        yield fake


@pytest.fixture
def platform(slack: FakeSlack) -> SlackPlatform:
    settings = load_settings(slack_bot_token=TOKEN, slack_api_url=slack.api_url)
    return SlackPlatform.from_settings(settings, MemorySlackStore())


def pieces(text: str, size: int = 7) -> list[str]:
    """The text so far, as a model's stream hands it on."""
    return [text[: i + size] for i in range(0, len(text), size)]


def markdown(text: str) -> list[dict[str, str]]:
    return [{"type": "markdown", "text": text}]


def the_message(slack: FakeSlack, ts: str) -> dict[str, object]:
    return next(m for m in slack.thread("C0001", KEY.thread_ts) if m["ts"] == ts)


def test_a_reply_streams_in_pieces_under_the_agents_name_then_ends_as_the_whole_post(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    live = platform.open_live(KEY, POST, effect_id="e-7", recipient="UANA")
    assert isinstance(live, StreamedMessage)
    live._interval = 0  # every piece goes out (the pacing has its own test)
    for text in pieces(REPLY):
        live.show(text)

    (start,) = slack.calls_to("chat.startStream")
    assert "markdown_text" not in start.args  # opened empty: its ts is saved before any text shows
    assert (start.args["username"], start.args["icon_emoji"]) == ("writer", ":memo:")
    assert (start.args["recipient_user_id"], start.args["recipient_team_id"]) == ("UANA", "T0001")
    appended = [call.args["markdown_text"] for call in slack.calls_to("chat.appendStream")]
    assert len(appended) > 3 and "".join(appended) == REPLY
    assert the_message(slack, live.message_id)["text"] == REPLY

    platform.finish_live(KEY, live.message_id, POST.model_copy(update={"text": REPLY}), effect_id="e-7")
    message = the_message(slack, live.message_id)
    assert message["text"] == "writer: " + " ".join(REPLY.split())
    assert message["blocks"] == [{"type": "markdown", "text": REPLY}]
    assert message["metadata"] == {"event_type": "agentbot_effect", "event_payload": {"effect_id": "e-7"}}
    assert slack.methods().index("chat.stopStream") < slack.methods().index("chat.update")
    assert platform.find_posted(KEY, "e-7") == live.message_id  # found again after a crash


def test_appends_are_paced_and_the_first_text_goes_at_once(slack: FakeSlack, platform: SlackPlatform) -> None:
    now = [100.0]
    live = platform.open_live(KEY, POST, effect_id="e-1", recipient="UANA")
    assert isinstance(live, StreamedMessage)
    live._clock = lambda: now[0]
    for text in pieces(REPLY, 3):  # all within one interval: only the first goes out
        live.show(text)
    assert [c.args["markdown_text"] for c in slack.calls_to("chat.appendStream")] == [REPLY[:3]]
    now[0] += 0.5
    live.show(REPLY)
    assert "".join(c.args["markdown_text"] for c in slack.calls_to("chat.appendStream")) == REPLY


def test_where_streaming_is_refused_the_reply_is_posted_then_edited_at_a_pace(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    slack.set_streaming(False)
    live = platform.open_live(KEY, POST, effect_id="e-2", recipient="UANA")
    posted = slack.calls_to("chat.postMessage")
    assert len(posted) == 1 and posted[0].args["metadata"]["event_payload"] == {"effect_id": "e-2"}
    for text in pieces(REPLY):
        live.show(text)
    (edit,) = slack.calls_to("chat.update")  # the next edit of this message waits a second
    assert edit.args["blocks"] == [{"type": "markdown", "text": REPLY[:7]}]
    platform.finish_live(KEY, live.message_id, POST.model_copy(update={"text": REPLY}), effect_id="e-2")
    assert the_message(slack, live.message_id)["blocks"] == [{"type": "markdown", "text": REPLY}]
    platform.open_live(KEY, POST, effect_id="e-3", recipient="UANA")
    assert len(slack.calls_to("chat.startStream")) == 1  # the channel is remembered as not streaming


def test_an_edited_reply_closes_a_code_fence_still_being_written(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    slack.set_streaming(False)
    live = platform.open_live(KEY, POST, effect_id="e-4", recipient="UANA")
    live.show("Code:\n```python\nprint(")
    (edit,) = slack.calls_to("chat.update")
    assert edit.args["blocks"] == [{"type": "markdown", "text": "Code:\n```python\nprint(\n```"}]


def test_a_stream_slack_stops_taking_goes_on_as_edits_of_the_same_message(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    live = platform.open_live(KEY, POST, effect_id="e-5", recipient="UANA")
    assert isinstance(live, StreamedMessage)
    live._interval = 0
    live.show("First part")
    slack.fail("chat.appendStream", status=200, error="message_not_in_streaming_state")
    live.show("First part, and more")
    assert slack.calls_to("chat.update")[-1].args["ts"] == live.message_id
    assert the_message(slack, live.message_id)["blocks"] == [
        {"type": "markdown", "text": "First part, and more"}
    ]
    assert len(slack.calls_to("chat.postMessage")) == 0


def test_a_broadcast_is_never_streamed_even_when_it_arrives_in_pieces(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    live = platform.open_live(KEY, POST, effect_id="e-6", recipient="UANA")
    assert isinstance(live, StreamedMessage)
    live._interval = 0
    for text in ("Hey <!chan", "Hey <!channel> look", "Hey <!channel> look, a < b"):
        live.show(text)
    streamed = "".join(c.args["markdown_text"] for c in slack.calls_to("chat.appendStream"))
    assert "<!" not in streamed and streamed.endswith("look, a < b")


def test_cut_off_ends_the_stream_with_a_line_saying_so(slack: FakeSlack, platform: SlackPlatform) -> None:
    live = platform.open_live(KEY, POST, effect_id="e-8", recipient="UANA")
    live.show("Half a rep")
    platform.cut_off(KEY, live.message_id)
    message = the_message(slack, live.message_id)
    assert message["text"] == f"Half a rep\n\n{CUT_OFF}" and not message["streaming"]

    again = platform.resume_live(KEY, live.message_id, POST)  # the retried step rewrites it
    again.show("A whole new reply")
    assert the_message(slack, live.message_id)["blocks"] == [
        {"type": "markdown", "text": "A whole new reply"}
    ]


def test_cut_off_of_a_message_no_longer_streaming_replaces_it_with_the_line(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    slack.set_streaming(False)
    live = platform.open_live(KEY, POST, effect_id="e-9", recipient="UANA")
    live.show("Half a rep")
    platform.cut_off(KEY, live.message_id)
    assert the_message(slack, live.message_id)["text"] == CUT_OFF


def test_finishing_again_after_a_crash_neither_fails_nor_adds_a_message(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    live = platform.open_live(KEY, POST, effect_id="e-10", recipient="UANA")
    live.show("Hello")
    whole = POST.model_copy(update={"text": "Hello there"})
    platform.finish_live(KEY, live.message_id, whole, effect_id="e-10")
    platform.finish_live(KEY, live.message_id, whole, effect_id="e-10", resume=True)
    bot_messages = [m for m in slack.thread("C0001", KEY.thread_ts) if m.get("bot_id")]
    assert len(bot_messages) == 1 and bot_messages[0]["blocks"][0]["text"] == "Hello there"


def test_a_long_reply_finishes_as_its_first_part_in_the_message_and_the_rest_after_it_once(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    long_text = "\n".join(f"line {i} " + "x" * 90 for i in range(150))  # ~15,000 characters: two parts
    live = platform.open_live(KEY, POST, effect_id="e-11", recipient="UANA")
    live.show(long_text)
    whole = POST.model_copy(update={"text": long_text})
    platform.finish_live(KEY, live.message_id, whole, effect_id="e-11")
    platform.finish_live(KEY, live.message_id, whole, effect_id="e-11", resume=True)
    bot_messages = [m for m in slack.thread("C0001", KEY.thread_ts) if m.get("bot_id")]
    assert [m["metadata"]["event_payload"] for m in bot_messages] == [
        {"effect_id": "e-11"},
        {"effect_id": "e-11", "part": 1},
    ]


def test_status_shows_loading_messages_for_thinking_and_running(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    platform.set_status(KEY, "writer is thinking…", activity="thinking")
    platform.set_status(KEY, "is running the code…", activity="running")
    platform.set_status(KEY, "")
    thinking, running, cleared = (c.args for c in slack.calls_to("assistant.threads.setStatus"))
    assert thinking["loading_messages"][0] == "writer is thinking…" and len(thinking["loading_messages"]) > 1
    assert running["loading_messages"][1].startswith("Running the code")
    assert cleared["status"] == "" and "loading_messages" not in cleared


def test_suggested_prompts_go_to_the_assistant_thread(slack: FakeSlack, platform: SlackPlatform) -> None:
    platform.suggest_prompts("D0001", "1700000001.000100")
    (call,) = slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert call.args["channel_id"] == "D0001" and call.args["thread_ts"] == "1700000001.000100"
    assert all(prompt["title"] and prompt["message"] for prompt in call.args["prompts"])


def test_thread_context_pages_through_a_long_thread_and_names_each_author_once(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    for user in ("UANA", "UBOB"):
        slack.add_user(user, name=user.lower().removeprefix("u"))
    for i in range(450):
        slack.add_message("C0001", user=("UANA", "UBOB")[i % 2], text=f"message {i}", thread_ts=KEY.thread_ts)
    mention = slack.add_message("C0001", user="UANA", text="<@UBOT> sum it up", thread_ts=KEY.thread_ts)

    context = platform.thread_context(KEY, before=mention)

    assert len(slack.calls_to("conversations.replies")) == 3  # pages of 200
    assert len(slack.calls_to("users.info")) == 2
    assert context[-1].author == "bob" and context[-1].text == "message 449"
    assert len(context) == 100  # the last hundred before the mention


def test_names_are_shared_through_the_store_between_processes(slack: FakeSlack) -> None:
    store = MemorySlackStore()
    one, two = (SlackPlatform(make_client(TOKEN, slack.api_url), store=store) for _ in range(2))
    slack.add_user("UANA", name="ana")
    assert one.user_name(KEY, "UANA") == two.user_name(KEY, "UANA") == "ana"
    assert len(slack.calls_to("users.info")) == 1
