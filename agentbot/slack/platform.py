"""The `ChatPlatform` on the Slack Web API (slack_sdk): posts, card updates, uploads, downloads, status.

Every post carries message metadata `{"event_type": "agentbot_effect", "event_payload": {"effect_id"}}`,
so after a crash `find_posted` finds what was already shown (`conversations.replies` with
`include_all_metadata`). Retries stay inside single calls: 429 with `Retry-After` everywhere; 5xx and
connection errors only on calls that are safe to repeat — `chat.postMessage` is not, so its failures
surface as a retryable `PlatformError` and the driver looks the post up before sending it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import redis
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from agentbot.conversation.code import Artifact
from agentbot.conversation.events import FileRef
from agentbot.conversation.posts import Post
from agentbot.conversation.state import ConversationKey
from agentbot.errors import PlatformError
from agentbot.settings import Settings
from agentbot.slack.files import fetch
from agentbot.slack.render import SlackMessage, Snippet, render, upload_comment

logger = logging.getLogger(__name__)

EFFECT_EVENT_TYPE = "agentbot_effect"
WORKING_REACTION = "eyes"
UPDATE_INTERVAL = 1.0  # chat.update is Tier 3; about one update per second per message keeps us clear
FILES_PER_UPLOAD = 10  # files.completeUploadExternal shares at most 10 files at once
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
        redis_client: redis.Redis | None = None,
        max_file_bytes: int = 20_000_000,
        update_interval: float = UPDATE_INTERVAL,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self._post_client = post_client or client
        self._redis = redis_client
        self._max_file_bytes = max_file_bytes
        self._update_interval = update_interval
        self._sleep = sleep
        self._last_update: dict[str, float] = {}
        self._lock = threading.Lock()
        self._no_status: set[str] = set()  # channels where assistant.threads.setStatus was refused

    @classmethod
    def from_settings(cls, settings: Settings, redis_client: redis.Redis | None = None) -> SlackPlatform:
        """The platform for `SLACK_BOT_TOKEN` at `SLACK_API_URL`; Redis, if given, paces updates."""
        token = settings.slack_bot_token.get_secret_value()
        return cls(
            make_client(token, settings.slack_api_url),
            post_client=make_client(token, settings.slack_api_url, idempotent=False),
            redis_client=redis_client,
            max_file_bytes=settings.max_file_bytes,
        )

    # -- ChatPlatform ------------------------------------------------------------------------------

    def post(self, key: ConversationKey, post: Post, *, effect_id: str) -> str:
        """Show `post` in the thread; returns the ts of its (first) message."""
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

    def set_status(self, key: ConversationKey, text: str) -> None:
        """Show what the agents do (`assistant.threads.setStatus`); else an :eyes: reaction. Never raises."""
        self._status(key, text, react_on=key.thread_ts)

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

    def thread_messages(
        self, key: ConversationKey, *, include_metadata: bool = False
    ) -> list[dict[str, Any]]:
        """Every message of the thread, root first (all pages of `conversations.replies`)."""
        messages: list[dict[str, Any]] = []
        for page in self._replies_pages(key, include_metadata=include_metadata):
            messages.extend(page.get("messages") or [])
        return messages

    # -- internals ---------------------------------------------------------------------------------

    def _post_message(self, key: ConversationKey, message: SlackMessage, *, effect_id: str, part: int) -> str:
        payload: dict[str, Any] = {"effect_id": effect_id}
        if part:
            payload["part"] = part
        with _translated("chat.postMessage", key.id):
            response = self._post_client.chat_postMessage(
                channel=key.channel_id,
                thread_ts=key.thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                metadata={"event_type": EFFECT_EVENT_TYPE, "event_payload": payload},
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

    def _status(self, key: ConversationKey, text: str, *, react_on: str) -> None:
        try:
            if key.channel_id not in self._no_status:
                self.client.assistant_threads_setStatus(
                    channel_id=key.channel_id, thread_ts=key.thread_ts, status=text
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
        """Wait until at least `update_interval` passed since the last update of this message."""
        name = f"{key.channel_id}:{message_id}"
        if self._redis is not None:
            self._pace_redis(f"agentbot:slack:pace:{name}")
            return
        with self._lock:
            wait = self._last_update.get(name, 0.0) + self._update_interval - time.monotonic()
            self._last_update[name] = time.monotonic() + max(wait, 0.0)
        if wait > 0:
            self._sleep(wait)

    def _pace_redis(self, pace_key: str) -> None:
        interval_ms = int(self._update_interval * 1000)
        for _ in range(10):
            try:
                if self._redis is None or self._redis.set(pace_key, 1, nx=True, px=interval_ms):
                    return
                remaining = self._redis.pttl(pace_key)
            except redis.RedisError as exc:
                logger.warning("update pacing without Redis: %s", exc)
                return
            self._sleep(max(int(remaining), 10) / 1000)

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
