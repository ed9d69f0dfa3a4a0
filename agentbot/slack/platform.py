"""The `ChatPlatform` on the Slack Web API (slack_sdk): posts, live replies, card updates, uploads, status.

Every post carries message metadata `{"event_type": "agentbot_effect", "event_payload": {"effect_id"}}`,
so after a crash `find_posted` finds what was already shown (`conversations.replies` with
`include_all_metadata`). Retries stay inside single calls: 429 with `Retry-After` everywhere; 5xx and
connection errors only on calls that are safe to repeat — `chat.postMessage` is not, so its failures
surface as a retryable `PlatformError` and the driver looks the post up before sending it again.

Agent replies are shown as they are written (`LivePlatform`, see `slack/stream.py`): streamed with
`chat.startStream` / `appendStream` / `stopStream`, or, where Slack refuses streaming, posted and edited.
The finished post then replaces the message's content with `chat.update`, so every reply ends as the
same blocks, metadata and parts as a post made whole. Statuses carry `loading_messages`.

Worker-side reads of what people wrote (`ThreadReader`): display names (cached in the `SlackStore` for
a day) and a thread's earlier messages as context for a conversation started inside it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from agentbot.conversation.code import Artifact
from agentbot.conversation.events import FileRef, PriorMessage
from agentbot.conversation.ports import Activity, LiveMessage
from agentbot.conversation.posts import AgentPost, PlanPost, Post
from agentbot.conversation.state import ConversationKey
from agentbot.errors import PlatformError, StoreError
from agentbot.settings import Settings
from agentbot.slack.files import fetch
from agentbot.slack.parse import prior_messages
from agentbot.slack.render import SlackMessage, Snippet, plan_chunks, render, render_live, upload_comment
from agentbot.slack.store import MemorySlackStore, SlackStore
from agentbot.slack.stream import SLACK_FAILURES, EditedMessage, StreamedMessage, stop_stream

logger = logging.getLogger(__name__)

EFFECT_EVENT_TYPE = "agentbot_effect"
WORKING_REACTION = "eyes"
UPDATE_INTERVAL = 1.0  # chat.update is Tier 3; about one update per second per message keeps us clear
FILES_PER_UPLOAD = 10  # files.completeUploadExternal shares at most 10 files at once
USER_NAME_TTL = 86400
NAMES_IN_MEMORY = 10_000
CUT_OFF = "_…cut off: this reply stopped before it was finished._"
# Shown in turn while the status is up (`assistant.threads.setStatus` `loading_messages`).
LOADING_MESSAGES: dict[str, tuple[str, ...]] = {
    "thinking": ("Reading the conversation…", "Thinking it through…", "Writing a reply…"),
    "running": (
        "Running the code in the sandbox…",
        "Waiting for its output…",
        "Collecting files and charts…",
    ),
}
SUGGESTED_PROMPTS = (
    ("Plot a chart", "Plot a chart of NVDA and TSLA stock price change YTD"),
    ("Analyze a file", "Summarize the CSV I attach: its columns, gaps, and a chart of the main trend"),
    ("Choose a team", "teams"),
)
_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
_USER_MESSAGES = {
    "not_in_channel": "I am not a member of this channel: invite me with `/invite @agentbot`.",
    "channel_not_found": "I cannot see this channel: invite me with `/invite @agentbot`.",
    "missing_scope": "The Slack app lacks a permission: reinstall it from the manifest.",
    "invalid_auth": "Slack did not accept the bot token (SLACK_BOT_TOKEN).",
    "token_revoked": "The Slack bot token was revoked: reinstall the app.",
    "account_inactive": "The Slack bot token was revoked: reinstall the app.",
    "msg_too_long": "The message was too long for Slack.",
    "ratelimited": "Slack is rate-limiting me; I will try again shortly.",
}


class SlackPlatform:
    """`ChatPlatform` for Slack: one instance per process, shared by threads (WebClient is thread-safe)."""

    def __init__(
        self,
        client: WebClient,
        *,
        post_client: WebClient | None = None,
        store: SlackStore | None = None,
        max_file_bytes: int = 20_000_000,
        update_interval: float = UPDATE_INTERVAL,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self._post_client = post_client or client
        self.store: SlackStore = store or MemorySlackStore()
        self._max_file_bytes = max_file_bytes
        self._update_interval = update_interval
        self._sleep = sleep
        self._lock = threading.Lock()
        self._no_status: set[str] = set()  # channels where assistant.threads.setStatus was refused
        self._no_plans: set[str] = set()  # channels where task and plan chunks were refused
        self._no_stream: set[str] = set()  # channels where chat.startStream was refused
        self._names: dict[str, str] = {}  # display names seen by this process
        self._bot_user_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, store: SlackStore | None = None) -> SlackPlatform:
        """The platform for `SLACK_BOT_TOKEN` at `SLACK_API_URL`; a shared `store` paces edits everywhere."""
        token = settings.slack_bot_token.get_secret_value()
        return cls(
            make_client(token, settings.slack_api_url),
            post_client=make_client(token, settings.slack_api_url, idempotent=False),
            store=store,
            max_file_bytes=settings.max_file_bytes,
        )

    # -- ChatPlatform ------------------------------------------------------------------------------

    def post(self, key: ConversationKey, post: Post, *, effect_id: str) -> str:
        """Show `post` in the thread; returns the ts of its (first) message."""
        if isinstance(post, PlanPost):
            return self._start_plan(key, post)
        rendered = render(post)
        if rendered.ephemeral_user:
            return self._post_ephemeral(key, rendered.messages[0], user_id=rendered.ephemeral_user)
        first = ""
        for part, message in enumerate(rendered.messages):
            ts = self._post_message(key, message, effect_id=effect_id, part=part)
            first = first or ts
        if rendered.snippet:
            self._upload_snippet(key, rendered.snippet)
        logger.debug("conversation %s: posted %s as %s", key.id, effect_id, first)
        return first

    def find_posted(self, key: ConversationKey, effect_id: str) -> str | None:
        """The ts of the message posted with `effect_id`, found through its metadata."""
        for message in self.thread_messages(key, include_metadata=True):
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            ours = metadata.get("event_type") == EFFECT_EVENT_TYPE and not payload.get("part")
            if ours and payload.get("effect_id") == effect_id:
                return str(message["ts"])
        return None

    def update(self, key: ConversationKey, message_id: str, post: Post) -> None:
        """Replace a message (e.g. a decided approval card), at most about once a second per message."""
        if isinstance(post, PlanPost):
            self._update_plan(key, message_id, post)
            return
        self._pace(key, message_id)
        self.replace(key.channel_id, message_id, render(post).messages[0], where=key.id)

    def upload(
        self, key: ConversationKey, artifacts: Sequence[Artifact], *, run_id: str, resume: bool = False
    ) -> None:
        """Upload files into the thread with `files_upload_v2` (URL, upload, complete with thread_ts).

        Each batch is shared under its own comment (`upload_comment`). With `resume` (an earlier attempt
        may have got through, its answer lost), a batch whose comment is already in the thread is not
        shared again.
        """
        batches = [artifacts[i : i + FILES_PER_UPLOAD] for i in range(0, len(artifacts), FILES_PER_UPLOAD)]
        shared = self._shared_comments(key) if resume else set()
        for number, batch in enumerate(batches, start=1):
            comment = upload_comment(run_id, number, len(batches))
            if comment in shared:
                logger.info("conversation %s: %r was shared before; not again", key.id, comment)
                continue
            uploads = [_file_upload(artifact) for artifact in batch]
            with _translated("files_upload_v2", key.id):  # not retried inside: a retry resumes
                self._post_client.files_upload_v2(
                    file_uploads=uploads,
                    channel=key.channel_id,
                    thread_ts=key.thread_ts,
                    initial_comment=comment,
                )
            logger.info("conversation %s: uploaded %d file(s)", key.id, len(batch))

    def download(self, file: FileRef) -> bytes:
        """A shared file's bytes, fetched with the bot token; refuses files above `max_file_bytes`."""
        self._check_downloadable(file)
        try:  # the host is checked above; a redirect elsewhere gets no token (slack/files.py)
            fetched = fetch(file.url, token=self.client.token or "", limit=self._max_file_bytes)
        except (requests.RequestException, OSError) as exc:
            raise PlatformError(
                f"download {file.name}: {exc}",
                retryable=True,
                user_message=f"I could not download {file.name} from Slack.",
            ) from exc
        self._check_downloaded(file, fetched.data, fetched.content_type)
        return fetched.data

    def set_status(self, key: ConversationKey, text: str, *, activity: Activity = "") -> None:
        """Show what the agents do (`assistant.threads.setStatus`); else an :eyes: reaction. Never raises."""
        self._status(key, text, react_on=key.thread_ts, activity=activity)

    # -- LivePlatform: replies shown as they are written -------------------------------------------

    def open_live(
        self, key: ConversationKey, post: AgentPost, *, effect_id: str, recipient: str
    ) -> LiveMessage:
        """A streamed message under the agent's name; a posted one to edit where streaming is refused."""
        if key.channel_id not in self._no_stream:
            ts = self._start_stream(key, post, recipient=recipient)
            if ts:
                return StreamedMessage(
                    self.client, key.channel_id, ts, fallback=lambda: self._edited(key, ts, post)
                )
        ts = self._post_message(key, render_live(post, ""), effect_id=effect_id, part=0)
        return self._edited(key, ts, post)

    def resume_live(self, key: ConversationKey, message_id: str, post: AgentPost) -> LiveMessage:
        """A message an earlier attempt opened (and `cut_off` ended): its text is replaced as it grows."""
        return self._edited(key, message_id, post)

    def find_live(self, key: ConversationKey, effect_id: str) -> str | None:
        """An edited live message carries its effect id; a streamed one gets it only when it stops."""
        return self.find_posted(key, effect_id)

    def cut_off(self, key: ConversationKey, message_id: str) -> None:
        """End the stream with a line saying so; a message not streaming any more says only that."""
        if stop_stream(self.client, key.channel_id, message_id, markdown_text=f"\n\n{CUT_OFF}"):
            return
        message = SlackMessage(text=CUT_OFF, blocks=({"type": "markdown", "text": CUT_OFF},))
        try:
            self.replace(key.channel_id, message_id, message, where=key.id)
        except PlatformError as exc:
            logger.warning("conversation %s: could not mark %s cut off: %s", key.id, message_id, exc)

    def finish_live(
        self, key: ConversationKey, message_id: str, post: Post, *, effect_id: str, resume: bool = False
    ) -> None:
        """End the stream, then show the post whole there (more parts after it, as `post` would)."""
        metadata = _metadata(effect_id)
        stop_stream(self.client, key.channel_id, message_id, metadata=metadata)
        rendered = render(post)
        first, *rest = rendered.messages
        self._pace(key, message_id)
        with _translated("chat.update", key.id):
            self.client.chat_update(
                channel=key.channel_id, ts=message_id, metadata=metadata, **first.kwargs()
            )
        done = self._posted_parts(key, effect_id) if resume and rest else set()
        for part, message in enumerate(rest, start=1):
            if part not in done:
                self._post_message(key, message, effect_id=effect_id, part=part)
        if rendered.snippet and not done:
            self._upload_snippet(key, rendered.snippet)

    # -- ThreadReader: what people wrote, read by the worker ---------------------------------------

    def user_name(self, key: ConversationKey, user_id: str) -> str:
        """A person's display name (cached for a day); "" when Slack does not say."""
        cache = f"user:{key.team_id}:{user_id}"
        if cache in self._names:
            return self._names[cache]
        cached = self._cached(cache)
        if cached is not None:
            return self._remember(cache, cached)
        try:
            user = self.client.users_info(user=user_id).get("user") or {}
        except SLACK_FAILURES as exc:
            logger.warning("no name for user %s: %s", user_id, exc)
            return ""
        profile = user.get("profile") or {}
        name = str(profile.get("display_name") or profile.get("real_name") or user.get("name") or "")
        with contextlib.suppress(StoreError):
            self.store.put(cache, name, USER_NAME_TTL)
        return self._remember(cache, name)

    def thread_context(self, key: ConversationKey, *, before: str) -> tuple[PriorMessage, ...]:
        """The thread's messages before the mention at `before`, with their authors' names."""
        try:
            replies = self.thread_messages(key)
        except PlatformError as exc:
            logger.warning("conversation %s: no thread context: %s", key.id, exc)
            return ()
        return prior_messages(
            replies,
            before_ts=before,
            bot_user_id=self.bot_user_id(),
            name_of=lambda user_id: self.user_name(key, user_id),
        )

    def bot_user_id(self) -> str | None:
        """The bot's own user id (`auth.test`, once per process), to tell its mentions apart."""
        if self._bot_user_id is None:
            try:
                self._bot_user_id = str(self.client.auth_test().get("user_id") or "")
            except SLACK_FAILURES as exc:
                logger.warning("auth.test failed: %s", exc)
                return None
        return self._bot_user_id or None

    def suggest_prompts(self, channel_id: str, thread_ts: str) -> None:
        """Suggested prompts in a new assistant thread or DM with the bot; best effort."""
        prompts = [{"title": title, "message": message} for title, message in SUGGESTED_PROMPTS]
        try:
            self.client.assistant_threads_setSuggestedPrompts(
                channel_id=channel_id, thread_ts=thread_ts, title="Try one of these:", prompts=prompts
            )
        except SLACK_FAILURES as exc:
            logger.info("channel %s: no suggested prompts: %s", channel_id, exc)

    # -- used by the Bolt app ----------------------------------------------------------------------

    def start_thread(self, channel_id: str, message: SlackMessage) -> str:
        """Post `message` at the top of a channel (a slash command's task); returns its ts."""
        with _translated("chat.postMessage", channel_id):
            response = self._post_client.chat_postMessage(
                channel=channel_id, unfurl_links=False, unfurl_media=False, **message.kwargs()
            )
        return str(response.get("ts") or "")

    def replace(self, channel_id: str, ts: str, message: SlackMessage, *, where: str = "") -> None:
        """Edit a message the bot posted (an edit is idempotent: the client may retry it)."""
        with _translated("chat.update", where or channel_id):
            self.client.chat_update(channel=channel_id, ts=ts, **message.kwargs())

    def open_view(self, key: ConversationKey, view: dict[str, Any], *, trigger_id: str) -> None:
        """Open a modal for the person whose click carried `trigger_id` (valid for 3 seconds)."""
        with _translated("views.open", key.id):
            self.client.views_open(trigger_id=trigger_id, view=view)

    def publish_home(self, user_id: str, view: dict[str, Any]) -> None:
        """Show `view` as `user_id`'s Home tab of the bot (`views.publish`)."""
        with _translated("views.publish", user_id):
            self.client.views_publish(user_id=user_id, view=view)

    def thread_messages(
        self, key: ConversationKey, *, include_metadata: bool = False
    ) -> list[dict[str, Any]]:
        """Every message of the thread, root first (all pages of `conversations.replies`)."""
        messages: list[dict[str, Any]] = []
        for page in self._replies_pages(key, include_metadata=include_metadata):
            messages.extend(page.get("messages") or [])
        return messages

    # -- internals ---------------------------------------------------------------------------------

    def _start_plan(self, key: ConversationKey, post: PlanPost) -> str:
        """Stream a team's plan (`chat.startStream`, task and plan chunks); "" where Slack refuses them.

        A refusal that is not transient (an older workspace, no AI features, an unknown chunk) is the
        fallback trigger: nothing is shown, so the driver posts the team's messages one by one.
        """
        if key.channel_id in self._no_plans:
            return ""
        try:
            with _translated("chat.startStream", key.id):
                response = self._post_client.chat_startStream(
                    channel=key.channel_id,
                    thread_ts=key.thread_ts,
                    recipient_team_id=key.team_id,
                    recipient_user_id=post.recipient,
                    task_display_mode="plan",
                    chunks=plan_chunks(post),
                )
        except PlatformError as exc:
            if exc.retryable:
                raise
            logger.info("conversation %s: no plan display here (%s); one message per agent", key.id, exc)
            self._no_plans.add(key.channel_id)
            return ""
        ts = str(response.get("ts") or "")
        if post.done and ts:
            self._update_plan(key, ts, post)
        return ts

    def _update_plan(self, key: ConversationKey, ts: str, post: PlanPost) -> None:
        """The plan's tasks again (a `task_update` replaces the task of its id); stopped once done."""
        with _translated("chat.appendStream", key.id):
            self.client.chat_appendStream(channel=key.channel_id, ts=ts, chunks=plan_chunks(post))
        if post.done:
            with _translated("chat.stopStream", key.id):
                self.client.chat_stopStream(channel=key.channel_id, ts=ts)

    def _post_message(self, key: ConversationKey, message: SlackMessage, *, effect_id: str, part: int) -> str:
        with _translated("chat.postMessage", key.id):
            response = self._post_client.chat_postMessage(
                channel=key.channel_id,
                thread_ts=key.thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                metadata=_metadata(effect_id, part),
                **message.kwargs(),
            )
        return str(response.get("ts") or "")

    def _post_ephemeral(self, key: ConversationKey, message: SlackMessage, *, user_id: str) -> str:
        with _translated("chat.postEphemeral", key.id):
            response = self.client.chat_postEphemeral(
                channel=key.channel_id,
                user=user_id,
                thread_ts=key.thread_ts,
                text=message.text,
                blocks=list(message.blocks),
            )
        return str(response.get("message_ts") or "")

    def _shared_comments(self, key: ConversationKey) -> set[str]:
        """The text of every message in the thread that shares files."""
        return {str(m.get("text") or "") for m in self.thread_messages(key) if m.get("files")}

    def _upload_snippet(self, key: ConversationKey, snippet: Snippet) -> None:
        with _translated("files_upload_v2", key.id):
            self.client.files_upload_v2(
                content=snippet.content,
                filename=snippet.filename,
                title=snippet.title,
                channel=key.channel_id,
                thread_ts=key.thread_ts,
            )

    def _replies_pages(self, key: ConversationKey, *, include_metadata: bool) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            with _translated("conversations.replies", key.id):
                response = self.client.conversations_replies(
                    channel=key.channel_id,
                    ts=key.thread_ts,
                    limit=200,
                    cursor=cursor,
                    include_all_metadata=include_metadata,
                )
            yield response.data if isinstance(response.data, dict) else {}
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return

    def _status(self, key: ConversationKey, text: str, *, react_on: str, activity: Activity = "") -> None:
        loading = [text, *LOADING_MESSAGES[activity]] if text and activity else None
        try:
            if key.channel_id not in self._no_status:
                self.client.assistant_threads_setStatus(
                    channel_id=key.channel_id, thread_ts=key.thread_ts, status=text, loading_messages=loading
                )
                return
        except SlackApiError as exc:
            logger.info(
                "conversation %s: no thread status here (%s); using a reaction",
                key.id,
                exc.response.get("error"),
            )
            self._no_status.add(key.channel_id)
        except (SlackClientError, OSError) as exc:
            logger.warning("conversation %s: status not shown: %s", key.id, exc)
            return
        self._react(key, text, message_ts=react_on)

    def _react(self, key: ConversationKey, text: str, *, message_ts: str) -> None:
        """:eyes: while working, removed when the agents wait; `already_reacted` and friends are fine."""
        try:
            if text:
                self.client.reactions_add(channel=key.channel_id, timestamp=message_ts, name=WORKING_REACTION)
            else:
                self.client.reactions_remove(
                    channel=key.channel_id, timestamp=message_ts, name=WORKING_REACTION
                )
        except (SlackApiError, SlackClientError, OSError) as exc:
            logger.debug("conversation %s: reaction not changed: %s", key.id, exc)

    def _pace(self, key: ConversationKey, message_id: str) -> None:
        """Wait until `update_interval` passed since the last update of this message, by any process."""
        name = f"pace:{key.channel_id}:{message_id}"
        for _ in range(10):
            try:
                if self.store.claim(name, self._update_interval):
                    return
                remaining = self.store.remaining(name)
            except StoreError as exc:
                logger.warning("update pacing without its store: %s", exc)
                return
            self._sleep(max(remaining, 0.01))

    def _may_edit(self, key: ConversationKey, message_id: str) -> bool:
        """Whether a live edit of this message may go now (and, if so, the next must wait)."""
        try:
            return self.store.claim(f"pace:{key.channel_id}:{message_id}", self._update_interval)
        except StoreError:
            return False  # the finish shows the text

    def _edited(self, key: ConversationKey, ts: str, post: AgentPost) -> EditedMessage:
        return EditedMessage(self.client, key.channel_id, ts, post, may_edit=lambda: self._may_edit(key, ts))

    def _start_stream(self, key: ConversationKey, post: AgentPost, *, recipient: str) -> str:
        """A new streamed message without text (its ts is saved before text shows); "" if refused."""
        who = render_live(post, "")
        try:
            response = self._post_client.chat_startStream(
                channel=key.channel_id,
                thread_ts=key.thread_ts,
                recipient_user_id=recipient or None,  # required in channels: who asked
                recipient_team_id=key.team_id,
                username=who.username,
                icon_emoji=who.icon_emoji,
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "")
            if error not in _TRANSIENT_ERRORS and exc.response.status_code < 500:
                self._no_stream.add(key.channel_id)  # e.g. an older workspace: edits from now on
            logger.info("conversation %s: no streaming here (%s); editing instead", key.id, error)
            return ""
        except (SlackClientError, OSError) as exc:
            logger.warning("conversation %s: chat.startStream failed: %s", key.id, exc)
            return ""
        return str(response.get("ts") or "")

    def _posted_parts(self, key: ConversationKey, effect_id: str) -> set[int]:
        """The parts (after the first) of a post already in the thread, by their metadata."""
        parts: set[int] = set()
        for message in self.thread_messages(key, include_metadata=True):
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("effect_id") == effect_id and payload.get("part"):
                parts.add(int(payload["part"]))
        return parts

    def _cached(self, name: str) -> str | None:
        try:
            return self.store.get(name)
        except StoreError:
            return None

    def _remember(self, cache: str, name: str) -> str:
        with self._lock:
            if len(self._names) >= NAMES_IN_MEMORY:
                self._names.clear()  # crude but bounded; names are re-read from the store
            self._names[cache] = name
        return name

    def _check_downloadable(self, file: FileRef) -> None:
        if file.size > self._max_file_bytes:
            raise PlatformError(f"{file.name}: {file.size} bytes", user_message=self._too_big(file.name))
        host = urlsplit(file.url).hostname or ""
        api_host = urlsplit(self.client.base_url).hostname or ""
        # The bot token goes only to Slack's own file hosts (or the configured API host, for proxies).
        if host not in {"files.slack.com", api_host} and not host.endswith(".slack.com"):
            raise PlatformError(
                f"refusing to send the token to {host}",
                user_message=f"I cannot download {file.name}: it is not a Slack file.",
            )

    def _too_big(self, name: str) -> str:
        limit_mb = self._max_file_bytes / 1_000_000
        return f"{name} is larger than the {limit_mb:g} MB limit (AGENTBOT_MAX_FILE_BYTES), so I skipped it."

    def _check_downloaded(self, file: FileRef, data: bytes, content_type: str) -> None:
        if len(data) > self._max_file_bytes:
            raise PlatformError(
                f"{file.name}: over {self._max_file_bytes} bytes", user_message=self._too_big(file.name)
            )
        if content_type == "text/html" and not file.mime_type.startswith("text/html"):
            # Slack answers a token without `files:read` with its sign-in page, not an error.
            raise PlatformError(
                f"{file.name}: got an HTML page instead of the file",
                user_message=f"Slack did not give me {file.name}: the app needs `files:read`.",
            )


def make_client(token: str, base_url: str, *, idempotent: bool = True) -> WebClient:
    """A WebClient that waits out 429s; for repeatable calls also retries 5xx and dropped connections."""
    handlers: list[Any] = [RateLimitErrorRetryHandler(max_retry_count=3)]
    if idempotent:
        handlers += [
            ServerErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ]
    return WebClient(token=token, base_url=_with_slash(base_url), retry_handlers=handlers, timeout=30)


def _metadata(effect_id: str, part: int = 0) -> dict[str, Any]:
    """The message metadata that lets `find_posted` find a post after a crash."""
    payload: dict[str, Any] = {"effect_id": effect_id}
    if part:
        payload["part"] = part
    return {"event_type": EFFECT_EVENT_TYPE, "event_payload": payload}


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _file_upload(artifact: Artifact) -> dict[str, Any]:
    upload: dict[str, Any] = {"content": artifact.content, "filename": artifact.name, "title": artifact.name}
    if artifact.is_image:
        upload["alt_txt"] = f"{artifact.name}, made by the code run"
    return upload


@contextmanager
def _translated(method: str, where: str) -> Iterator[None]:
    """slack_sdk errors become `PlatformError` (retryable for rate limits, 5xx and the network)."""
    try:
        yield
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "unknown_error")
        status = exc.response.status_code
        retryable = status == 429 or status >= 500 or error in _TRANSIENT_ERRORS
        logger.warning("conversation %s: %s failed: %s (HTTP %s)", where, method, error, status)
        user_message = _USER_MESSAGES.get(error, f"Slack refused a message ({error}).")
        raise PlatformError(f"{method}: {error}", user_message=user_message, retryable=retryable) from exc
    except (SlackClientError, OSError) as exc:
        logger.warning("conversation %s: %s failed: %s", where, method, exc)
        raise PlatformError(
            f"{method}: {exc}", user_message="I could not reach Slack.", retryable=True
        ) from exc
