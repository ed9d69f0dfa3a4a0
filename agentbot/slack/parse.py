"""Slack payloads in, conversation events out: pure functions, no I/O.

`parse_event` reads an Events API envelope (`app_mention`, `message`), `parse_action` a `block_actions`
payload (the Run / Skip / Stop buttons, and Allow and run again / Keep blocked on a blocked-hosts
card). Both return an `Inbound` — the conversation key, the event, and what the app still has to
check — or None when the payload is not for us (bots, edits, deletions, channel chatter outside a
conversation thread). A mention that only asks `teams` or `help` is an `Ask`
instead: the bot answers it without starting a conversation.

`parse_command` reads a slash command (`/agentbot teams`, `/agentbot team:x <task>`), and
`parse_details` a click on a sub-team's Details button.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agentbot.conversation.events import (
    AllowHosts,
    Approve,
    EditCode,
    Event,
    FileRef,
    HumanMessage,
    KeepBlocked,
    PickSpeaker,
    PriorMessage,
    Rate,
    RunAll,
    Skip,
    Start,
    Stop,
)
from agentbot.conversation.state import ConversationKey
from agentbot.teams import split_team_prefix

Payload = Mapping[str, Any]

RUN_ACTION = "run_code"
RUN_ALL_ACTION = "run_all"  # Run, and every later proposal of the thread without asking
EDIT_ACTION = "edit_code"  # opens the Edit modal (its submission is a `view_submission`)
EDIT_CALLBACK = "edit_code"  # the Edit modal's `callback_id`
EDIT_BLOCK = "code"  # the Edit modal's input block and element
FEEDBACK_ACTION = "feedback"  # thumbs up / down under a final answer
MOVE_ACTION = "move_engine"  # Run on another Docker engine (the workspace's engine is down)
SKIP_ACTION = "skip_code"
STOP_ACTION = "stop_session"
ALLOW_HOST_ACTION = "allow_host"  # blocked-hosts card: Allow and run again
DENY_HOST_ACTION = "deny_host"  # blocked-hosts card: Keep blocked
PICK_ACTION = "pick_speaker"  # one button per agent: `pick_speaker:<n>` (action ids are unique per block)
DETAILS_ACTION = "subteam_details"  # a sub-team message's Details button: its transcript in a modal
_ENGINE_ACTIONS = (
    RUN_ACTION,
    MOVE_ACTION,
    RUN_ALL_ACTION,
    SKIP_ACTION,
    STOP_ACTION,
    ALLOW_HOST_ACTION,
    DENY_HOST_ACTION,
)
ACTION_PATTERN = re.compile(rf"^({'|'.join(_ENGINE_ACTIONS)}|{FEEDBACK_ACTION}|{PICK_ACTION}(:\d+)?)$")

# Message subtypes that are still a person writing in the thread; every other subtype (edits,
# deletions, joins, bot_message, ...) is not human input. https://docs.slack.dev/reference/events/message
_HUMAN_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
_STOP_WORDS = re.compile(r"\s*(stop|exit)[.!]?\s*", re.IGNORECASE)
_ASK_TEAMS = re.compile(r"\s*(?:(?:(?:list|show)\s+)?teams|team\s+list)\s*[.!?]?\s*", re.IGNORECASE)
_ASK_HELP = re.compile(r"\s*(?:help|\?)\s*[.!?]?\s*", re.IGNORECASE)
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_MAX_CONTEXT_MESSAGES = 100
_MAX_CONTEXT_CHARS = 4_000


@dataclass(frozen=True)
class Inbound:
    """One parsed payload: where it goes, what it says, and how the app must treat it."""

    key: ConversationKey
    event: Event
    message_ts: str = ""  # the Slack message that carried it (for a reaction), "" for clicks
    is_dm: bool = False
    needs_context: bool = False  # a mention inside an existing thread: fetch the earlier messages


Topic = Literal["teams", "help"]


@dataclass(frozen=True)
class Ask:
    """A question about the bot itself (`@agentbot teams`), answered in `key`'s thread; no conversation."""

    key: ConversationKey
    topic: Topic
    event_id: str
    user_id: str


@dataclass(frozen=True)
class SlashCommand:
    """`/agentbot ...`: a question (`teams`, `help`), or a task that starts a conversation in the channel."""

    team_id: str
    channel_id: str
    user_id: str
    trigger_id: str
    topic: Topic | Literal["start"]
    text: str = ""  # the task, without its `team:` prefix
    team: str | None = None
    user_name: str = ""


@dataclass(frozen=True)
class DetailsRequest:
    """A click on a sub-team's Details button: show `detail`, a sub-conversation of `key`, in a modal."""

    key: ConversationKey  # the thread the clicked message is in
    detail: ConversationKey
    user_id: str
    trigger_id: str


@dataclass(frozen=True)
class EditRequest:
    """A click on Edit: open the modal with run `run_id`'s code, for `user_id`, within the trigger's 3 s."""

    key: ConversationKey
    run_id: str
    code_hash: str
    user_id: str
    trigger_id: str


@dataclass(frozen=True)
class HomeVisit:
    """Someone opened the bot's Home tab: publish theirs."""

    team_id: str
    user_id: str


def parse_event(body: Payload, *, bot_user_id: str | None) -> Inbound | Ask | None:
    """An Events API envelope as an event for a conversation, or None if it is not one."""
    event = body.get("event")
    team_id = _team_of(body)
    event_id = body.get("event_id")
    if not isinstance(event, Mapping) or not team_id or not isinstance(event_id, str):
        return None
    if event.get("type") == "app_mention":
        return _from_mention(event, team_id=team_id, event_id=event_id, bot_user_id=bot_user_id)
    if event.get("type") == "message":
        return _from_message(event, team_id=team_id, event_id=event_id, bot_user_id=bot_user_id)
    return None


def parse_assistant_thread(body: Payload) -> tuple[str, str] | None:
    """`assistant_thread_started`: the (channel id, thread ts) of the assistant thread someone opened."""
    thread = _get_mapping(body, "event", "assistant_thread")
    channel, ts = _get(thread, "channel_id"), _get(thread, "thread_ts")
    return (channel, ts) if channel and ts else None


def parse_action(body: Payload) -> Inbound | None:
    """A `block_actions` click on Run / Skip / Stop as an event, or None if it is not one of ours.

    The button value is only a hint: a malformed or tampered value still becomes an `Approve` or
    `Skip` (with empty ids), which the engine refuses against its server-side state.
    """
    click = _click(body)
    if click is None:
        return None
    action, key, user_id = click
    event_id = _action_event_id(body, action)
    return _button_event(action, event_id=event_id, user_id=user_id, key=key)


def parse_edit(body: Payload) -> EditRequest | None:
    """A click on an approval card's Edit button (in the thread or on the Home tab)."""
    click, trigger_id = _click(body), body.get("trigger_id")
    if click is None or not isinstance(trigger_id, str) or not trigger_id:
        return None
    action, key, user_id = click
    run_id, code_hash = _button_value(action.get("value"))
    return EditRequest(key=key, run_id=run_id, code_hash=code_hash, user_id=user_id, trigger_id=trigger_id)


def parse_edit_submission(body: Payload) -> Inbound | None:
    """The Edit modal submitted (`view_submission`): its code, for the run its private metadata names.

    The metadata is only a hint, like a button value: the engine checks the run, its code hash and
    who submitted against the conversation's state.
    """
    view = body.get("view")
    team, user_id = _team_of(body) or _get(body, "user", "team_id"), _get(body, "user", "id")
    if body.get("type") != "view_submission" or not isinstance(view, Mapping) or not (team and user_id):
        return None
    if view.get("callback_id") != EDIT_CALLBACK:
        return None
    meta = _json_object(view.get("private_metadata"))
    channel, thread = meta.get("channel"), meta.get("thread")
    if not (isinstance(channel, str) and channel and isinstance(thread, str) and thread):
        return None
    key = ConversationKey(team_id=team, channel_id=channel, thread_ts=thread)
    edit = EditCode(
        event_id=f"view:{view.get('id') or ''}:{view.get('hash') or ''}",
        user_id=user_id,
        user_name=_get(body, "user", "name") or _get(body, "user", "username") or "",
        run_id=str(meta.get("run_id") or ""),
        code_hash=str(meta.get("code_hash") or ""),
        code=submitted_code(view),
    )
    return Inbound(key=key, event=edit)


def submitted_code(view: Payload) -> str:
    """The Edit modal's input (`state.values.code.code.value`), "" when it is missing."""
    value = view.get("state")
    for name in ("values", EDIT_BLOCK, EDIT_BLOCK, "value"):
        value = value.get(name) if isinstance(value, Mapping) else None
    return value if isinstance(value, str) else ""


def parse_home(body: Payload) -> HomeVisit | None:
    """An `app_home_opened` event for the Home tab (the Messages tab is not ours to draw)."""
    event, team = body.get("event"), _team_of(body)
    if not isinstance(event, Mapping) or event.get("type") != "app_home_opened" or not team:
        return None
    user_id = event.get("user")
    if not isinstance(user_id, str) or not user_id or event.get("tab", "home") != "home":
        return None
    return HomeVisit(team_id=team, user_id=user_id)


def parse_command(body: Payload) -> SlashCommand | None:
    """A slash command's payload (`command`, `text`, ids); None when a field Slack always sends is missing."""
    ids = [body.get(name) for name in ("team_id", "channel_id", "user_id", "trigger_id")]
    if not all(isinstance(value, str) and value for value in ids) or not body.get("command"):
        return None
    team_id, channel_id, user_id, trigger_id = (str(value) for value in ids)
    text = plain_text(str(body.get("text") or ""))
    common = {"team_id": team_id, "channel_id": channel_id, "user_id": user_id, "trigger_id": trigger_id}
    topic = ask_topic(text) if text else "help"
    if topic is not None:
        return SlashCommand(**common, topic=topic)
    team, task = split_team_prefix(text)
    if not task:
        return SlashCommand(**common, topic="help")
    name = body.get("user_name")
    return SlashCommand(**common, topic="start", text=task, team=team, user_name=str(name or ""))


def parse_details(body: Payload) -> DetailsRequest | None:
    """A Details click; None unless it names a sub-conversation of the thread it was clicked in.

    The button's value is only a hint: a tampered value naming another thread is refused here, and
    the app still checks the stored sub-conversation's parent.
    """
    click, trigger_id = _click(body), body.get("trigger_id")
    if click is None or not isinstance(trigger_id, str) or not trigger_id:
        return None
    action, key, user_id = click
    thread, _ = _button_value(action.get("value"), "thread", "")
    if not thread.startswith(f"{key.thread_ts}~"):
        return None
    detail = key.evolve(thread_ts=thread)
    return DetailsRequest(key=key, detail=detail, user_id=user_id, trigger_id=trigger_id)


def ask_topic(text: str) -> Topic | None:
    """`"teams"` (or "list teams", "team list") and `"help"` (or "?") typed as the whole message."""
    if _ASK_TEAMS.fullmatch(text):
        return "teams"
    if _ASK_HELP.fullmatch(text):
        return "help"
    return None


def prior_messages(
    replies: Iterable[Payload],
    *,
    before_ts: str,
    bot_user_id: str | None,
    name_of: Callable[[str], str] = lambda user_id: f"<@{user_id}>",
) -> tuple[PriorMessage, ...]:
    """The thread's messages older than `before_ts` (the mention), as context for the agents.

    `name_of` turns a person's user id into the name the agents see them by.
    """
    earlier = [m for m in replies if _ts_before(m.get("ts"), before_ts) and m.get("subtype") != "tombstone"]
    context = [_prior(m, bot_user_id=bot_user_id, name_of=name_of) for m in earlier[-_MAX_CONTEXT_MESSAGES:]]
    return tuple(item for item in context if item.text)


def plain_text(text: str, *, bot_user_id: str | None = None) -> str:
    """Slack message text as a person wrote it: mention of the bot removed, links and `&lt;` undone."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", "", text)
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    text = _SPECIAL.sub(lambda m: "@" + m.group(1), text)
    # Slack escapes exactly these three in message text; undo them so code reaches the agents as typed.
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text.strip()


def is_stop(text: str) -> bool:
    """ "stop" or "exit" typed as the whole reply (AutoGen's `exit`)."""
    return _STOP_WORDS.fullmatch(text) is not None


def _from_mention(
    event: Payload, *, team_id: str, event_id: str, bot_user_id: str | None
) -> Inbound | Ask | None:
    user_id, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if _is_from_bot(event, bot_user_id=bot_user_id) or not (user_id and channel and ts):
        return None
    thread_ts = event.get("thread_ts") or ts
    key = ConversationKey(team_id=team_id, channel_id=channel, thread_ts=thread_ts)
    text = plain_text(str(event.get("text") or ""), bot_user_id=bot_user_id)
    if is_stop(text):
        return Inbound(key=key, event=Stop(event_id=event_id, user_id=user_id), message_ts=ts)
    topic = ask_topic(text)
    if topic is not None:
        return Ask(key=key, topic=topic, event_id=event_id, user_id=user_id)
    start = _start(event, text=text, event_id=event_id, user_id=user_id)
    return Inbound(key=key, event=start, message_ts=ts, needs_context=thread_ts != ts)


def _from_message(
    event: Payload, *, team_id: str, event_id: str, bot_user_id: str | None
) -> Inbound | Ask | None:
    user_id, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not _is_human(event, bot_user_id=bot_user_id) or not (user_id and channel and ts):
        return None
    is_dm = event.get("channel_type") == "im"
    thread_ts = event.get("thread_ts")
    raw_text = str(event.get("text") or "")
    if not is_dm and (not thread_ts or thread_ts == ts or _mentions(raw_text, bot_user_id)):
        return None  # channel chatter, or a mention (the app_mention event carries that one)
    key = ConversationKey(team_id=team_id, channel_id=channel, thread_ts=thread_ts or ts)
    text = plain_text(raw_text, bot_user_id=bot_user_id)
    topic = ask_topic(text) if is_dm and not thread_ts else None
    if topic is not None:  # a new direct message asking `teams` or `help`
        return Ask(key=key, topic=topic, event_id=event_id, user_id=user_id)
    return Inbound(
        key=key,
        event=_reply_event(event, text=text, event_id=event_id, user_id=user_id, top_level=not thread_ts),
        message_ts=ts,
        is_dm=is_dm,
    )


def _reply_event(event: Payload, *, text: str, event_id: str, user_id: str, top_level: bool) -> Event:
    if is_stop(text):
        return Stop(event_id=event_id, user_id=user_id)
    if top_level:  # a new direct message to the bot starts a conversation in its own thread
        return _start(event, text=text, event_id=event_id, user_id=user_id)
    return HumanMessage(
        event_id=event_id, user_id=user_id, text=text, user_name=_user_name(event), files=_files(event)
    )


def _start(event: Payload, *, text: str, event_id: str, user_id: str) -> Start:
    """A conversation starts; a leading `team:<name>` chooses its agent team."""
    team, task = split_team_prefix(text)
    return Start(
        event_id=event_id,
        user_id=user_id,
        text=task,
        user_name=_user_name(event),
        files=_files(event),
        team=team,
    )


def _is_human(event: Payload, *, bot_user_id: str | None) -> bool:
    subtype = event.get("subtype")
    if subtype is not None and subtype not in _HUMAN_SUBTYPES:
        return False
    return not event.get("hidden") and not _is_from_bot(event, bot_user_id=bot_user_id)


def _is_from_bot(event: Payload, *, bot_user_id: str | None) -> bool:
    """Our own messages and other bots' (`bot_id`, `bot_profile`, or our bot user) are not people."""
    if event.get("bot_id") or event.get("bot_profile") or event.get("subtype") == "bot_message":
        return True
    return bool(bot_user_id) and event.get("user") == bot_user_id


def _mentions(text: str, bot_user_id: str | None) -> bool:
    return bool(bot_user_id) and f"<@{bot_user_id}" in text


def _files(event: Payload) -> tuple[FileRef, ...]:
    files = event.get("files")
    if not isinstance(files, list):
        return ()
    return tuple(ref for ref in (_file_ref(f) for f in files if isinstance(f, Mapping)) if ref)


def _file_ref(file: Payload) -> FileRef | None:
    """A shared file we can download; tombstones and Slack Connect stubs (no URL) are skipped."""
    url = file.get("url_private_download") or file.get("url_private")
    if not isinstance(url, str) or file.get("mode") in {"tombstone", "hidden_by_limit"}:
        return None
    name = str(file.get("name") or file.get("title") or file.get("id") or "file")
    size = file.get("size")
    return FileRef(
        name=name,
        url=url,
        size=size if isinstance(size, int) else 0,
        mime_type=str(file.get("mimetype") or "application/octet-stream"),
    )


def _user_name(event: Payload) -> str:
    profile = event.get("user_profile")
    if not isinstance(profile, Mapping):
        return ""
    return str(profile.get("display_name") or profile.get("real_name") or profile.get("name") or "")


def _team_of(body: Payload) -> str | None:
    team = body.get("team_id")
    if isinstance(team, str) and team:
        return team
    auths = body.get("authorizations")
    if isinstance(auths, list) and auths and isinstance(auths[0], Mapping):
        return auths[0].get("team_id") or auths[0].get("enterprise_id")
    return None


def _click(body: Payload) -> tuple[Payload, ConversationKey, str] | None:
    """A `block_actions` payload's first action, the thread it was clicked in, and who clicked."""
    actions = body.get("actions")
    if body.get("type") != "block_actions" or not isinstance(actions, list) or not actions:
        return None
    action = actions[0]
    if not isinstance(action, Mapping):
        return None
    key, user_id = _action_key(body, action), _get(body, "user", "id")
    if key is None or not user_id:
        return None
    return action, key, user_id


def _action_key(body: Payload, action: Payload) -> ConversationKey | None:
    """The thread the clicked card lives in (cards are always posted inside the conversation thread).

    A click on the Home tab comes from no message: its button names the thread in its value.
    """
    team = _get(body, "team", "id") or _get(body, "user", "team_id") or _get(body, "enterprise", "id")
    if _get(body, "container", "type") == "view":
        channel, thread_ts = _button_value(action.get("value"), "channel", "thread")
    else:
        channel = _get(body, "channel", "id") or _get(body, "container", "channel_id") or ""
        thread_ts = (
            _get(body, "message", "thread_ts")
            or _get(body, "container", "thread_ts")
            or _get(body, "message", "ts")
            or _get(body, "container", "message_ts")
            or ""
        )
    if not (team and channel and thread_ts):
        return None
    return ConversationKey(team_id=team, channel_id=channel, thread_ts=thread_ts)


def _action_event_id(body: Payload, action: Payload) -> str:
    """Unique per click: Slack sends no event_id for interactivity, but every click has a trigger_id."""
    trigger = body.get("trigger_id")
    if isinstance(trigger, str) and trigger:
        return f"action:{trigger}"
    message_ts = _get(body, "container", "message_ts") or ""
    return f"action:{message_ts}:{action.get('action_ts') or ''}"


def _button_event(action: Payload, *, event_id: str, user_id: str, key: ConversationKey) -> Inbound | None:
    action_id = str(action.get("action_id") or "")
    if action_id.partition(":")[0] == PICK_ACTION:
        pick_id, speaker = _button_value(action.get("value"), "pick_id", "speaker")
        return Inbound(
            key=key, event=PickSpeaker(event_id=event_id, user_id=user_id, pick_id=pick_id, speaker=speaker)
        )
    if action_id == FEEDBACK_ACTION:
        return _feedback(action, event_id=event_id, user_id=user_id, key=key)
    run_id, code_hash = _button_value(action.get("value"))
    event: Event
    if action_id in (RUN_ACTION, MOVE_ACTION):
        event = Approve(
            event_id=event_id,
            user_id=user_id,
            run_id=run_id,
            code_hash=code_hash,
            elsewhere=action_id == MOVE_ACTION,
        )
    elif action_id == RUN_ALL_ACTION:
        event = RunAll(event_id=event_id, user_id=user_id, run_id=run_id, code_hash=code_hash)
    elif action_id == SKIP_ACTION:
        event = Skip(event_id=event_id, user_id=user_id, run_id=run_id)
    elif action_id == STOP_ACTION:
        event = Stop(event_id=event_id, user_id=user_id)
    elif action_id == ALLOW_HOST_ACTION:
        event = AllowHosts(event_id=event_id, user_id=user_id, run_id=run_id, code_hash=code_hash)
    elif action_id == DENY_HOST_ACTION:
        event = KeepBlocked(event_id=event_id, user_id=user_id, run_id=run_id)
    else:
        return None
    return Inbound(key=key, event=event)


def _feedback(action: Payload, *, event_id: str, user_id: str, key: ConversationKey) -> Inbound | None:
    """A thumbs up or down (`feedback_buttons` sends the clicked button's value)."""
    data = _json_object(action.get("value"))
    turn, vote = data.get("turn"), data.get("vote")
    if not isinstance(turn, int) or vote not in ("up", "down"):
        return None
    return Inbound(key=key, event=Rate(event_id=event_id, user_id=user_id, turn=turn, vote=vote))


def _button_value(value: object, first: str = "run_id", second: str = "code_hash") -> tuple[str, str]:
    """Two string fields of a JSON button value; "" for each that is not there (never raises)."""
    data = _json_object(value)
    one, two = data.get(first), data.get(second)
    return (one if isinstance(one, str) else "", two if isinstance(two, str) else "")


def _json_object(value: object) -> dict[str, Any]:
    """A JSON object given as a string (a button value, a view's metadata); {} for anything else."""
    try:
        data = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _prior(message: Payload, *, bot_user_id: str | None, name_of: Callable[[str], str]) -> PriorMessage:
    text = plain_text(str(message.get("text") or ""), bot_user_id=bot_user_id)[:_MAX_CONTEXT_CHARS]
    return PriorMessage(author=_author(message, name_of=name_of), text=text)


def _author(message: Payload, *, name_of: Callable[[str], str]) -> str:
    if message.get("bot_id") or message.get("bot_profile"):
        return _get(message, "username") or _get(message, "bot_profile", "name") or "bot"
    user_id = _get(message, "user")
    return (name_of(user_id) or user_id) if user_id else "someone"


def _ts_before(ts: object, before: str) -> bool:
    try:
        return isinstance(ts, str) and float(ts) < float(before)
    except ValueError:
        return False


def _get_mapping(data: Payload, *path: str) -> Payload:
    """A nested object, or {} when any step is missing or not an object."""
    value: object = data
    for name in path:
        value = value.get(name) if isinstance(value, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _get(data: Payload, *path: str) -> str | None:
    """A nested string field, or None when any step is missing or not a string."""
    value: object = data
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value if isinstance(value, str) and value else None
