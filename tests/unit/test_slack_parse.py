"""Table tests of Slack payloads → conversation events (agentbot.slack.parse)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentbot.conversation.events import (
    AllowHosts,
    Approve,
    FileRef,
    HumanMessage,
    KeepBlocked,
    PickSpeaker,
    PriorMessage,
    Skip,
    Start,
    Stop,
)
from agentbot.conversation.state import ConversationKey
from agentbot.slack.parse import (
    Ask,
    DetailsRequest,
    Inbound,
    SlashCommand,
    ask_topic,
    parse_action,
    parse_command,
    parse_details,
    parse_event,
    plain_text,
    prior_messages,
)

BOT = "UBOT"
TEAM = "T0001"
ROOT = "1700000000.000100"
REPLY = "1700000050.000200"


def envelope(event: dict[str, Any], *, event_id: str = "Ev01") -> dict[str, Any]:
    """An Events API `event_callback` as Slack sends it."""
    return {
        "token": "legacy",
        "team_id": TEAM,
        "api_app_id": "A0001",
        "event": {"event_ts": event.get("ts", ROOT), **event},
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1700000000,
        "authorizations": [{"team_id": TEAM, "user_id": BOT, "is_bot": True, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }


def mention(**extra: Any) -> dict[str, Any]:
    return {
        "type": "app_mention",
        "user": "UANA",
        "text": f"<@{BOT}> plot sin(x)",
        "ts": ROOT,
        "channel": "C0001",
        **extra,
    }


def message(**extra: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "user": "UANA",
        "text": "use a log scale",
        "ts": REPLY,
        "thread_ts": ROOT,
        "channel": "C0001",
        "channel_type": "channel",
        **extra,
    }


def click(action_id: str, value: object, **extra: Any) -> dict[str, Any]:
    """A `block_actions` payload for a button on a card posted in thread ROOT."""
    return {
        "type": "block_actions",
        "user": {"id": "UANA", "username": "ana", "name": "ana", "team_id": TEAM},
        "api_app_id": "A0001",
        "token": "legacy",
        "container": {
            "type": "message",
            "message_ts": "1700000060.000300",
            "channel_id": "C0001",
            "is_ephemeral": False,
            "thread_ts": ROOT,
        },
        "trigger_id": "1234.5678.abcd",
        "team": {"id": TEAM, "domain": "acme"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": "C0001", "name": "data"},
        "message": {
            "type": "message",
            "subtype": "bot_message",
            "text": "card",
            "ts": "1700000060.000300",
            "bot_id": "BBOT",
            "thread_ts": ROOT,
        },
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T0001/1/abc",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "approval-r1",
                "type": "button",
                "text": {"type": "plain_text", "text": "Run"},
                "value": value,
                "action_ts": "1700000070.123456",
            }
        ],
        **extra,
    }


KEY = ConversationKey(team_id=TEAM, channel_id="C0001", thread_ts=ROOT)


def conversation_event(body: dict[str, Any]) -> Inbound:
    """`parse_event`, for payloads that must be for a conversation (not None, not an `Ask`)."""
    inbound = parse_event(body, bot_user_id=BOT)
    assert isinstance(inbound, Inbound), inbound
    return inbound


VALUE = json.dumps({"run_id": "r1", "code_hash": "h1"})


def test_mention_starts_a_conversation_in_its_own_thread() -> None:
    inbound = conversation_event(envelope(mention()))
    assert inbound is not None
    assert inbound.key == KEY
    assert inbound.event == Start(event_id="Ev01", user_id="UANA", text="plot sin(x)")
    assert (inbound.message_ts, inbound.needs_context, inbound.is_dm) == (ROOT, False, False)


def test_mention_with_a_team_prefix_chooses_that_team() -> None:
    inbound = conversation_event(envelope(mention(text=f"<@{BOT}> team:analysts plot sales")))
    assert inbound is not None
    assert inbound.event == Start(event_id="Ev01", user_id="UANA", text="plot sales", team="analysts")


def test_mention_inside_a_thread_starts_there_and_asks_for_context() -> None:
    inbound = conversation_event(envelope(mention(ts=REPLY, thread_ts=ROOT)))
    assert inbound is not None
    assert inbound.key == KEY
    assert inbound.message_ts == REPLY
    assert inbound.needs_context


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (message(), HumanMessage(event_id="Ev01", user_id="UANA", text="use a log scale")),
        (message(text="stop"), Stop(event_id="Ev01", user_id="UANA")),
        (message(text="  Exit! "), Stop(event_id="Ev01", user_id="UANA")),
        (
            message(text="don't stop now"),
            HumanMessage(event_id="Ev01", user_id="UANA", text="don't stop now"),
        ),
        (
            message(subtype="thread_broadcast"),
            HumanMessage(event_id="Ev01", user_id="UANA", text="use a log scale"),
        ),
        (
            message(text="if a &lt; b &amp;&amp; c &gt; d: pass"),
            HumanMessage(event_id="Ev01", user_id="UANA", text="if a < b && c > d: pass"),
        ),
        (
            message(user_profile={"display_name": "Ana", "real_name": "Ana Lima"}),
            HumanMessage(event_id="Ev01", user_id="UANA", text="use a log scale", user_name="Ana"),
        ),
    ],
)
def test_thread_reply_becomes_human_input(event: dict[str, Any], expected: object) -> None:
    inbound = conversation_event(envelope(event))
    assert inbound is not None
    assert inbound.key == KEY
    assert inbound.event == expected


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(message(bot_id="BBOT", user=BOT), id="our own message"),
        pytest.param(message(bot_id="BOTHER", user="UOTHERBOT"), id="another bot"),
        pytest.param(message(subtype="bot_message", bot_id="B2", user=None), id="bot_message subtype"),
        pytest.param(message(bot_profile={"id": "B3", "name": "ci"}), id="bot_profile"),
        pytest.param(message(user=BOT), id="our bot user"),
        pytest.param(message(subtype="message_changed", message={"text": "edited"}, user=None), id="edit"),
        pytest.param(message(subtype="message_deleted", deleted_ts=REPLY, user=None), id="deletion"),
        pytest.param(message(subtype="channel_join"), id="join"),
        pytest.param(message(hidden=True), id="hidden"),
        pytest.param(message(thread_ts=None), id="channel chatter"),
        pytest.param(message(thread_ts=REPLY), id="thread root itself"),
        pytest.param(message(text=f"<@{BOT}> again"), id="mention (app_mention carries it)"),
        pytest.param(mention(bot_id="BOTHER"), id="a bot mentioning us"),
        pytest.param({"type": "reaction_added", "user": "UANA"}, id="other event type"),
    ],
)
def test_not_human_input_is_ignored(event: dict[str, Any]) -> None:
    event = {k: v for k, v in event.items() if v is not None}
    assert parse_event(envelope(event), bot_user_id=BOT) is None


def test_envelope_without_event_id_or_team_is_ignored() -> None:
    body = envelope(message())
    assert parse_event({**body, "event_id": None}, bot_user_id=BOT) is None
    assert parse_event({**body, "team_id": None, "authorizations": []}, bot_user_id=BOT) is None
    assert parse_event({"type": "url_verification", "challenge": "x"}, bot_user_id=BOT) is None


def test_direct_message_starts_and_thread_reply_in_dm_continues() -> None:
    top = conversation_event(
        envelope(message(channel="D0001", channel_type="im", thread_ts=None, ts=ROOT, text="hello"))
    )
    assert top is not None and top.is_dm
    assert top.key == ConversationKey(team_id=TEAM, channel_id="D0001", thread_ts=ROOT)
    assert top.event == Start(event_id="Ev01", user_id="UANA", text="hello")
    reply = conversation_event(envelope(message(channel="D0001", channel_type="im", text=f"<@{BOT}> more")))
    assert reply is not None and reply.is_dm
    assert reply.event == HumanMessage(event_id="Ev01", user_id="UANA", text="more")


def test_mention_with_stop_stops() -> None:
    inbound = conversation_event(envelope(mention(text=f"<@{BOT}> stop", ts=REPLY, thread_ts=ROOT)))
    assert inbound is not None
    assert inbound.event == Stop(event_id="Ev01", user_id="UANA")


def test_shared_files_become_file_refs() -> None:
    files = [
        {
            "id": "F1",
            "name": "sales.csv",
            "mimetype": "text/csv",
            "size": 1234,
            "url_private": "https://files.slack.com/files-pri/T0001-F1/sales.csv",
            "url_private_download": "https://files.slack.com/files-pri/T0001-F1/download/sales.csv",
        },
        {"id": "F2", "mode": "tombstone"},
        {"id": "F3", "name": "x.bin", "file_access": "check_file_info"},
    ]
    inbound = conversation_event(envelope(message(subtype="file_share", files=files)))
    assert inbound is not None
    assert isinstance(inbound.event, HumanMessage)
    assert inbound.event.files == (
        FileRef(
            name="sales.csv",
            size=1234,
            mime_type="text/csv",
            url="https://files.slack.com/files-pri/T0001-F1/download/sales.csv",
        ),
    )


@pytest.mark.parametrize(
    ("action_id", "value", "expected"),
    [
        (
            "run_code",
            VALUE,
            Approve(event_id="action:1234.5678.abcd", user_id="UANA", run_id="r1", code_hash="h1"),
        ),
        ("skip_code", VALUE, Skip(event_id="action:1234.5678.abcd", user_id="UANA", run_id="r1")),
        ("stop_session", VALUE, Stop(event_id="action:1234.5678.abcd", user_id="UANA")),
        (
            "run_code",
            "not json",
            Approve(event_id="action:1234.5678.abcd", user_id="UANA", run_id="", code_hash=""),
        ),
        (
            "run_code",
            '["r1", "h1"]',
            Approve(event_id="action:1234.5678.abcd", user_id="UANA", run_id="", code_hash=""),
        ),
        (
            "run_code",
            '{"run_id": 7, "code_hash": null}',
            Approve(event_id="action:1234.5678.abcd", user_id="UANA", run_id="", code_hash=""),
        ),
        (
            "run_code",
            None,
            Approve(event_id="action:1234.5678.abcd", user_id="UANA", run_id="", code_hash=""),
        ),
        ("skip_code", "{", Skip(event_id="action:1234.5678.abcd", user_id="UANA", run_id="")),
        (
            "move_engine",
            VALUE,
            Approve(
                event_id="action:1234.5678.abcd", user_id="UANA", run_id="r1", code_hash="h1", elsewhere=True
            ),
        ),
        (
            "allow_host",
            VALUE,
            AllowHosts(event_id="action:1234.5678.abcd", user_id="UANA", run_id="r1", code_hash="h1"),
        ),
        ("deny_host", VALUE, KeepBlocked(event_id="action:1234.5678.abcd", user_id="UANA", run_id="r1")),
        (
            "allow_host",
            "not json",
            AllowHosts(event_id="action:1234.5678.abcd", user_id="UANA", run_id="", code_hash=""),
        ),
    ],
)
def test_buttons_become_decisions_and_bad_values_never_crash(
    action_id: str, value: object, expected: object
) -> None:
    inbound = parse_action(click(action_id, value))
    assert inbound is not None
    assert inbound.key == KEY
    assert inbound.event == expected


def test_unknown_action_and_non_actions_are_ignored() -> None:
    assert parse_action(click("something_else", VALUE)) is None
    assert parse_action({"type": "view_submission"}) is None
    assert parse_action({**click("run_code", VALUE), "actions": []}) is None
    assert parse_action({**click("run_code", VALUE), "user": {}}) is None


def test_click_without_trigger_id_uses_message_and_action_ts() -> None:
    inbound = parse_action({**click("run_code", VALUE), "trigger_id": None})
    assert inbound is not None
    assert inbound.event.event_id == "action:1700000060.000300:1700000070.123456"


def test_click_on_grid_without_team_uses_the_users_team() -> None:
    inbound = parse_action({**click("run_code", VALUE), "team": None})
    assert inbound is not None
    assert inbound.key.team_id == TEAM


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"<@{BOT}> hi", "hi"),
        (f"<@{BOT}|agentbot> hi <@UANA>", "hi <@UANA>"),
        ("see <https://example.com/a?b=1&amp;c=2|the docs>", "see the docs"),
        ("see <https://example.com>", "see https://example.com"),
        ("<!here> look", "@here look"),
        ("x &lt;= 3 &amp; y", "x <= 3 & y"),
    ],
)
def test_plain_text_undoes_slack_formatting(text: str, expected: str) -> None:
    assert plain_text(text, bot_user_id=BOT) == expected


def test_prior_messages_are_the_thread_before_the_mention() -> None:
    replies = [
        {"type": "message", "user": "UBOB", "text": "the CSV is in <#C9>", "ts": ROOT},
        {
            "type": "message",
            "bot_id": "BX",
            "username": "ci-bot",
            "text": "build ok",
            "ts": "1700000010.0001",
        },
        {"type": "message", "user": "UANA", "text": "", "ts": "1700000020.0001"},
        {"type": "message", "user": "UANA", "text": f"<@{BOT}> summarize", "ts": REPLY},
        {"type": "message", "user": "UBOB", "text": "later", "ts": "1700000099.0001"},
    ]
    names = {"UBOB": "Bob"}
    context = prior_messages(replies, before_ts=REPLY, bot_user_id=BOT, name_of=lambda u: names.get(u, ""))
    assert context == (
        PriorMessage(author="Bob", text="the CSV is in <#C9>"),
        PriorMessage(author="ci-bot", text="build ok"),
    )


@pytest.mark.parametrize(
    ("action_id", "value", "expected"),
    [
        ("pick_speaker:1", json.dumps({"pick_id": "p1", "speaker": "coder"}), ("p1", "coder")),
        ("pick_speaker:0", "garbage", ("", "")),
    ],
)
def test_speaker_buttons_become_picks(action_id: str, value: str, expected: tuple[str, str]) -> None:
    inbound = parse_action(click(action_id, value))
    assert inbound is not None
    assert inbound.event == PickSpeaker(
        event_id="action:1234.5678.abcd", user_id="UANA", pick_id=expected[0], speaker=expected[1]
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("teams", "teams"),
        ("Teams?", "teams"),
        ("list teams", "teams"),
        ("show  teams.", "teams"),
        ("team list", "teams"),
        ("help", "help"),
        ("?", "help"),
        ("HELP!", "help"),
        ("teams please", None),
        ("help me plot sales", None),
        ("team:trio write a poem", None),
        ("", None),
    ],
)
def test_ask_topics_are_the_whole_message(text: str, expected: str | None) -> None:
    assert ask_topic(text) == expected


def test_mention_asking_for_teams_or_help_is_an_ask_not_a_start() -> None:
    teams = parse_event(envelope(mention(text=f"<@{BOT}> teams")), bot_user_id=BOT)
    assert teams == Ask(key=KEY, topic="teams", event_id="Ev01", user_id="UANA")
    in_thread = parse_event(
        envelope(mention(text=f"<@{BOT}> help", ts=REPLY, thread_ts=ROOT)), bot_user_id=BOT
    )
    assert in_thread == Ask(key=KEY, topic="help", event_id="Ev01", user_id="UANA")


def test_direct_message_asking_for_teams_is_an_ask_but_a_thread_reply_saying_teams_is_input() -> None:
    dm = message(text="teams", channel="D0001", channel_type="im", thread_ts=None, ts=ROOT)
    dm_key = KEY.model_copy(update={"channel_id": "D0001"})
    assert parse_event(envelope(dm), bot_user_id=BOT) == Ask(
        key=dm_key, topic="teams", event_id="Ev01", user_id="UANA"
    )
    inbound = conversation_event(envelope(message(text="teams")))
    assert isinstance(inbound.event, HumanMessage) and inbound.event.text == "teams"


def command(text: str, **extra: Any) -> dict[str, Any]:
    """A slash command payload as Bolt parses Slack's form post."""
    return {
        "token": "legacy", "team_id": TEAM, "team_domain": "acme", "channel_id": "C0001",
        "channel_name": "data", "user_id": "UANA", "user_name": "ana", "command": "/agentbot",
        "text": text, "api_app_id": "A0001", "is_enterprise_install": "false",
        "response_url": "https://hooks.slack.com/commands/T0001/1/x", "trigger_id": "99.88.cc", **extra,
    }  # fmt: skip


IDS = {"team_id": TEAM, "channel_id": "C0001", "user_id": "UANA", "trigger_id": "99.88.cc"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("teams", SlashCommand(**IDS, topic="teams")),
        ("", SlashCommand(**IDS, topic="help")),
        ("help", SlashCommand(**IDS, topic="help")),
        ("team:trio", SlashCommand(**IDS, topic="help")),  # a team but no task
        ("plot sin(x)", SlashCommand(**IDS, topic="start", text="plot sin(x)", user_name="ana")),
        (
            "team:trio write a launch note &amp; a tweet",
            SlashCommand(
                **IDS, topic="start", text="write a launch note & a tweet", team="trio", user_name="ana"
            ),
        ),
    ],
)
def test_slash_commands_ask_or_start(text: str, expected: SlashCommand) -> None:
    assert parse_command(command(text)) == expected


@pytest.mark.parametrize("missing", ["team_id", "channel_id", "user_id", "trigger_id", "command"])
def test_slash_command_without_a_field_slack_always_sends_is_refused(missing: str) -> None:
    assert parse_command({k: v for k, v in command("teams").items() if k != missing}) is None


SUB_THREAD = f"{ROOT}~s1-budget"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            json.dumps({"thread": SUB_THREAD}),
            DetailsRequest(
                key=KEY,
                detail=KEY.model_copy(update={"thread_ts": SUB_THREAD}),
                user_id="UANA",
                trigger_id="1234.5678.abcd",
            ),
        ),
        (json.dumps({"thread": "1600000000.000001~s1-budget"}), None),  # another thread's sub-team
        (json.dumps({"thread": ROOT}), None),  # the thread itself
        ("garbage", None),
        (json.dumps(["not", "an", "object"]), None),
    ],
    ids=["own-sub-team", "other-thread", "not-a-sub-team", "garbage", "list"],
)
def test_details_click_names_a_sub_conversation_of_its_own_thread(
    value: str, expected: DetailsRequest | None
) -> None:
    assert parse_details(click("subteam_details", value)) == expected


def test_details_click_without_trigger_id_is_refused() -> None:
    body = click("subteam_details", json.dumps({"thread": SUB_THREAD}))
    del body["trigger_id"]
    assert parse_details(body) is None
