"""Agent messages shown while the model writes them: Slack's chat streaming, or a message edited as it grows.

`StreamedMessage` is a message opened with `chat.startStream` (without text, so its ts is saved before
any text shows) and fed with `chat.appendStream`: the first text at once, then what is new at most
every `APPEND_INTERVAL` (the next token flushes what waited; the finish shows the rest). slack_sdk's
`ChatStream` buffers by size, 256 characters by default, which is a second or more at 50 tokens/s.

`EditedMessage` is the fallback where streaming is refused or breaks: one `chat.postMessage`, then
`chat.update` with the whole text so far, paced per message across processes by the shared store.

`show` never raises: a streamed message that Slack stops taking becomes an edited one on the same ts;
an edit that fails waits for the next text or for the finish (`SlackPlatform.finish_live`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from agentbot.conversation.posts import AgentPost
from agentbot.slack.render import live_text, render_live

logger = logging.getLogger(__name__)

APPEND_INTERVAL = 0.4  # seconds between appends to one message: ~2.5 calls/s however fast the model
SLACK_FAILURES = (SlackApiError, SlackClientError, OSError)


class EditedMessage:
    """A posted message whose text is replaced as the reply grows (paced by `may_edit`)."""

    def __init__(
        self, client: WebClient, channel: str, ts: str, post: AgentPost, *, may_edit: Callable[[], bool]
    ) -> None:
        self.client = client
        self.channel = channel
        self.ts = ts
        self._post = post
        self._may_edit = may_edit
        self._shown: str | None = None

    @property
    def message_id(self) -> str:
        return self.ts

    def show(self, text: str) -> None:
        shown = live_text(text)
        if shown == self._shown or not self._may_edit():
            return  # nothing new, or too soon: a later text, or the finish, shows it
        try:
            message = render_live(self._post, shown)
            self.client.chat_update(
                channel=self.channel, ts=self.ts, text=message.text, blocks=list(message.blocks)
            )
        except SLACK_FAILURES as exc:
            logger.debug("channel %s: live edit of %s not shown: %s", self.channel, self.ts, exc)
            return
        self._shown = shown


class StreamedMessage:
    """A message Slack streams: what is new goes out with `chat.appendStream`."""

    def __init__(
        self,
        client: WebClient,
        channel: str,
        ts: str,
        *,
        fallback: Callable[[], EditedMessage],
        clock: Callable[[], float] = time.monotonic,
        interval: float = APPEND_INTERVAL,
    ) -> None:
        self.client = client
        self.channel = channel
        self.ts = ts
        self._fallback_factory = fallback
        self._fallback: EditedMessage | None = None
        self._clock = clock
        self._interval = interval
        self._sent = ""
        self._last = 0.0

    @property
    def message_id(self) -> str:
        return self.ts

    def show(self, text: str) -> None:
        if self._fallback is not None:
            self._fallback.show(text)
            return
        shown = live_text(text)
        if not shown.startswith(self._sent):  # the model started over: a stream only grows
            self._edit_instead(text, "the reply started over")
            return
        now = self._clock()
        if len(shown) == len(self._sent) or (self._sent and now - self._last < self._interval):
            return
        try:
            self.client.chat_appendStream(
                channel=self.channel, ts=self.ts, markdown_text=shown[len(self._sent) :]
            )
        except SLACK_FAILURES as exc:
            self._edit_instead(text, str(exc))
            return
        self._sent, self._last = shown, now

    def _edit_instead(self, text: str, why: str) -> None:
        logger.info("channel %s: message %s is edited instead of streamed (%s)", self.channel, self.ts, why)
        stop_stream(self.client, self.channel, self.ts)
        self._fallback = self._fallback_factory()
        self._fallback.show(text)


def stop_stream(client: WebClient, channel: str, ts: str, **args: Any) -> bool:
    """End a message's stream (`chat.stopStream`); False when it was not streaming (or Slack refused)."""
    try:
        client.chat_stopStream(channel=channel, ts=ts, **args)
    except SLACK_FAILURES as exc:
        logger.debug("channel %s: stream %s not stopped: %s", channel, ts, exc)
        return False
    return True
