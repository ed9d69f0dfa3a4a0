"""Agent replies shown while the model writes them, kept exactly once across crashed workers.

The order of one streamed reply (README, "Exactly once, under crashes"):

1. Before any text is shown, the state records a `LiveReply` naming the outbox item the reply will
   become; once the platform has opened the message, its id is saved too.
2. The text goes out as it arrives (the platform paces it).
3. The engine applies the finished reply; its `AgentPost` item carries the live message, so
   delivering the item shows the whole post in that message and ends the stream (`finish_live`).

A step that finds a `LiveReply` whose item never came knows its worker died mid-reply: it says so in
the message (`cut_off`), and the retried model call rewrites that same message instead of opening a
second one. (A worker that dies in the moment between Slack opening a streamed message and the save
of its ts leaves that message empty: Slack gives no way to find it, and ends idle streams itself.)
A sub-team's conversation is never streamed: its posts go to its lead, not to a thread.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from agentbot.conversation import speakers
from agentbot.conversation.ports import LiveMessage, LivePlatform, StreamingLLM
from agentbot.conversation.posts import AgentPost
from agentbot.conversation.state import ConversationState, LiveReply
from agentbot.errors import PlatformError

if TYPE_CHECKING:
    from agentbot.conversation.driver import Ports

logger = logging.getLogger(__name__)


class Writer:
    """Shows one agent reply as it arrives; `state` is the conversation as last saved."""

    def __init__(self, ports: Ports, platform: LivePlatform, state: ConversationState, speaker: str) -> None:
        self.state = state
        self._ports = ports
        self._platform = platform
        self._post = AgentPost(speaker=speaker, text="", icon=speakers.icon_of(state, speaker))
        self._message: LiveMessage | None = None
        self._gave_up = False

    def show(self, text: str) -> None:
        """The reply's text so far (the model port's `on_text`)."""
        if self._message is None and not self._gave_up:
            self._message = self._open()
        if self._message is not None:
            self._message.show(text)

    def _open(self) -> LiveMessage | None:
        key, live = self.state.key, self.state.live
        if live is not None and live.cut_off and live.message_id:  # a retry: rewrite the cut-off message
            self._save(live.evolve(item_id=self.state.next_item_id, cut_off=False))
            return self._platform.resume_live(key, live.message_id, self._post)
        live = LiveReply(item_id=self.state.next_item_id, after_event=self.state.last_event_id)
        self._save(live)  # recorded before anything shows: a crash from here on is found by the next step
        try:
            message = self._platform.open_live(
                key, self._post, effect_id=effect_id(self.state, live.item_id), recipient=_asker(self.state)
            )
        except PlatformError as exc:
            logger.warning("conversation %s: reply not shown live: %s", key.id, exc)
            self._gave_up = True
            self._save(None)  # the reply is posted whole when it is done
            return None
        self._save(live.evolve(message_id=message.message_id))
        return message

    def _save(self, live: LiveReply | None) -> None:
        self.state = self._ports.store.save(self.state.evolve(live=live))


def writer(ports: Ports, state: ConversationState, speaker: str) -> Writer | None:
    """A writer for the next reply, when both the model and the platform can show it live."""
    llm, platform = ports.llm, ports.platform
    if (
        state.parent is not None
        or not isinstance(llm, StreamingLLM)
        or not isinstance(platform, LivePlatform)
    ):
        return None
    return Writer(ports, platform, state, speaker)


def streaming_llm(ports: Ports) -> StreamingLLM:
    """The model port, known to stream (`writer` checked it)."""
    return cast(StreamingLLM, ports.llm)


def effect_id(state: ConversationState, item_id: int) -> str:
    """The effect id of an outbox item (the same as `driver.deliver` gives it)."""
    return f"{state.key.slug}-{item_id}"


def attach(state: ConversationState) -> ConversationState:
    """After the engine took the reply: its `AgentPost` item is shown in the live message."""
    live = state.live
    if live is None:
        return state
    if not live.message_id:
        return state.evolve(live=None)
    # The reply's post: the first agent post from the item id the live message was opened for (a team's
    # plan update may have taken that id just before it).
    target = next(
        (item.item_id for item in state.outbox if item.item_id >= live.item_id and item.post.kind == "agent"),
        None,
    )
    items = tuple(
        item.evolve(live_message=live.message_id) if item.item_id == target else item for item in state.outbox
    )
    return state.evolve(outbox=items, live=None)


def abandon(ports: Ports, state: ConversationState) -> ConversationState:
    """No model finished the reply: its message, if one opened, says it was cut off."""
    live = state.live
    if live is None:
        return state
    if live.message_id and isinstance(ports.platform, LivePlatform):
        ports.platform.cut_off(state.key, live.message_id)
    return state.evolve(live=None)


def recover(ports: Ports, state: ConversationState, *, thinking: bool) -> ConversationState:
    """A `LiveReply` left by a worker that died mid-reply: mark its message cut off, once.

    The message is kept for the retried model call when the conversation is `thinking` again with
    nothing new from people; otherwise (someone replied or stopped it meanwhile) it stays as it is,
    saying it was cut off, and the next reply gets a message of its own, after theirs.
    """
    live, platform = state.live, ports.platform
    if live is None or not isinstance(platform, LivePlatform):
        return state
    retried = thinking and live.after_event == state.last_event_id
    if live.cut_off:
        return state if retried else ports.store.save(state.evolve(live=None))
    logger.warning("conversation %s: a reply was cut off mid-stream; retrying it", state.key.id)
    message_id = live.message_id or platform.find_live(state.key, effect_id(state, live.item_id)) or ""
    if message_id:
        platform.cut_off(state.key, message_id)
    kept = live.evolve(message_id=message_id, cut_off=True)
    return ports.store.save(state.evolve(live=kept if message_id and retried else None))


def _asker(state: ConversationState) -> str:
    """Who the reply answers: the last person who wrote in the conversation, else who started it."""
    for message in reversed(state.transcript):
        if message.kind == "human" and message.author_id:
            return message.author_id
    return state.starter_id
