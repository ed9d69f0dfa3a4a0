"""The Bolt app: every Slack entry point in `register_listeners`, each listener parse → dedupe → submit.

Delivery discipline: Bolt checks the signature (401 for forged or stale requests) before any
listener runs. A listener only talks to Redis: the dedupe marker on `(team_id, event_id)` (`SET NX EX`),
the conversation inbox and the step job, in one script, so the acknowledgement goes back within
milliseconds and only once the event and its step are safely stored; anything slow (the first status,
"is thinking…", and the engine's turn) is the worker's. Slack's retries (`X-Slack-Retry-Num`) are not
dropped blindly: they go through dedupe, so a retry of an event that failed before it was stored still
gets through, and one that was stored is ignored.

Three entry points start no conversation and make one Slack call of their own: `teams` / `help`
(posted in the thread before the ack, so a failure is retried by Slack), a slash command with a task
(its root message is posted before the conversation is stored in that message's thread), and a
sub-team's Details button (the modal opened after the ack, within the click's 3-second trigger).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from slack_bolt import App, BoltContext, BoltResponse
from slack_bolt.request import BoltRequest
from slack_sdk.errors import SlackApiError, SlackClientError

from agentbot import logs
from agentbot.conversation.events import Event, HumanMessage, PriorMessage, Start
from agentbot.conversation.ports import ConversationStore, JobQueue
from agentbot.conversation.posts import NoticePost
from agentbot.conversation.state import ConversationKey
from agentbot.errors import AgentbotError, ConfigError, PlatformError
from agentbot.queue import StepWrites
from agentbot.settings import Settings
from agentbot.slack import guide
from agentbot.slack.parse import (
    ACTION_PATTERN,
    DETAILS_ACTION,
    Ask,
    DetailsRequest,
    Inbound,
    SlashCommand,
    parse_action,
    parse_command,
    parse_details,
    parse_event,
    prior_messages,
)
from agentbot.slack.platform import SlackPlatform
from agentbot.slack.render import render_command_root
from agentbot.slack.views import details_view, missing_view
from agentbot.teams import Catalog, load_catalog

logger = logging.getLogger(__name__)

DEDUPE_TTL = 3600  # Slack retries an event three times within about five minutes
USER_NAME_TTL = 86400
NAMES_IN_MEMORY = 10_000


class InboxStore(ConversationStore, Protocol):
    """The store as the bridge uses it: the engine's port, plus a dedupe-aware append (`RedisStore`)."""

    def exists(self, key: ConversationKey) -> bool: ...

    def append_event_once(
        self, key: ConversationKey, event: Event, *, marker: str, ttl: int, then: StepWrites | None = None
    ) -> str | None:
        """Append `event` unless `marker` is set, setting it atomically (and `then`); None for a duplicate."""
        ...


class StepQueue(JobQueue, Protocol):
    """The queue as the bridge uses it: the engine's port, plus a step as the store's script writes it."""

    def step_writes(self, key: ConversationKey) -> StepWrites: ...


@dataclass
class Bridge:
    """What the listeners share: the conversation inbox and queue, Redis for dedupe, and the platform."""

    store: InboxStore
    queue: StepQueue
    redis: redis.Redis
    platform: SlackPlatform
    catalog: Catalog = field(default_factory=lambda: load_catalog(None))  # the runtime's `teams`
    background: Executor = field(default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="slack-bg"))
    prefix: str = "agentbot:slack"
    _names: dict[str, str] = field(default_factory=dict, repr=False)  # user names seen by this process

    def on_event(self, body: dict[str, Any], *, bot_user_id: str | None) -> None:
        """An Events API callback: a mention, a direct message, or a reply in a thread."""
        inbound = parse_event(body, bot_user_id=bot_user_id)
        if isinstance(inbound, Ask):
            self.answer(inbound)
        elif inbound is not None:
            self.accept(inbound, delivery_id=str(body.get("event_id")), bot_user_id=bot_user_id)

    def on_action(self, body: dict[str, Any]) -> None:
        """A click on Run, Skip or Stop (the engine checks it against the pending run)."""
        inbound = parse_action(body)
        if inbound is not None:
            self.accept(inbound, delivery_id=inbound.event.event_id, bot_user_id=None)

    def on_command(self, body: dict[str, Any]) -> str:
        """A slash command; returns the text only its sender sees ("" when the thread says it all)."""
        command = parse_command(body)
        if command is None:
            return "I could not read that command."
        if command.topic != "start":
            return guide.answer(command.topic, self.catalog)
        return self._start_from_command(command)

    def on_details(self, body: dict[str, Any]) -> None:
        """A click on a sub-team's Details button: its transcript in a modal, opened after the ack."""
        request = parse_details(body)
        if request is not None:
            self.background.submit(self._show_details, request)

    def answer(self, ask: Ask) -> None:
        """Reply to `teams` / `help` in the asker's thread, once per delivery; no conversation starts.

        The reply is posted before the ack: if Slack refuses it, the marker is released and the error
        answers 500, so Slack's retry asks again.
        """
        seen = self._seen(ask.key.team_id, ask.event_id)
        if not self.redis.set(seen, "1", nx=True, ex=DEDUPE_TTL):
            return
        post = NoticePost(text=guide.answer(ask.topic, self.catalog))
        try:
            self.platform.post(ask.key, post, effect_id=f"ask:{ask.event_id}")
        except PlatformError:
            self.redis.delete(seen)
            raise

    def accept(self, inbound: Inbound, *, delivery_id: str, bot_user_id: str | None) -> None:
        """Store the event once per `(team_id, delivery_id)` and enqueue its step, in one Redis script.

        The dedupe marker, the inbox entry and the step job are written together (`driver.submit`'s
        promise, atomically): a delivery is stored, marked and enqueued, or none of them, and then the
        error answers 500 so that Slack's retry gets in again. A duplicate delivery writes nothing.
        The first sign of life in the thread is
        the step's own status ("is thinking…"), posted by the worker, not by this process.
        """
        with logs.conversation(inbound.key.id):
            event = self._complete(inbound, bot_user_id=bot_user_id)
            if event is None:
                return
            key = inbound.key
            seen = self._seen(key.team_id, delivery_id)
            step = self.queue.step_writes(key)
            if self.store.append_event_once(key, event, marker=seen, ttl=DEDUPE_TTL, then=step) is None:
                logger.info("conversation %s: duplicate delivery %s ignored", key.id, delivery_id)
                return
            logger.info("conversation %s: %s from %s submitted", key.id, event.type, event.user_id)

    def _seen(self, team_id: str, delivery_id: str) -> str:
        """The dedupe marker of one delivery (an Events API event id, or a click's)."""
        return f"{self.prefix}:seen:{team_id}:{delivery_id}"

    def _start_from_command(self, command: SlashCommand) -> str:
        """Post the task in the channel, then start the conversation in that message's thread."""
        root = render_command_root(command.user_id, command.text, command.team)
        try:
            ts = self.platform.start_thread(command.channel_id, root)
        except PlatformError as exc:
            return f"I could not start a conversation here. {exc.user_message}"
        key = ConversationKey(team_id=command.team_id, channel_id=command.channel_id, thread_ts=ts)
        start = Start(
            event_id=f"command:{command.trigger_id}",
            user_id=command.user_id,
            user_name=command.user_name,
            text=command.text,
            team=command.team,
        )
        inbound = Inbound(key=key, event=start, message_ts=ts)
        try:
            self.accept(inbound, delivery_id=start.event_id, bot_user_id=None)
        except (AgentbotError, redis.RedisError) as exc:
            # Slack does not retry a slash command: say so on the task's message and to its sender.
            logger.warning("conversation %s: task posted, not started: %s", key.id, exc)
            failed = render_command_root(command.user_id, command.text, command.team, not_started=True)
            with contextlib.suppress(PlatformError):
                self.platform.replace(command.channel_id, ts, failed)
            return "I posted your task but could not start the conversation (storage unavailable). Try again."
        return ""

    def _show_details(self, request: DetailsRequest) -> None:
        """Open the modal; a sub-conversation that is gone, or not this thread's, shows as unavailable."""
        try:
            sub = self.store.load(request.detail)
            view = details_view(sub) if sub is not None and sub.parent == request.key else missing_view()
            self.platform.open_view(request.key, view, trigger_id=request.trigger_id)
        except (AgentbotError, redis.RedisError) as exc:
            logger.warning("conversation %s: details not shown: %s", request.key.id, exc)

    def _complete(self, inbound: Inbound, *, bot_user_id: str | None) -> Event | None:
        """The event with what the payload lacks (author name, thread context); None if not for us."""
        event, key = inbound.event, inbound.key
        if isinstance(event, HumanMessage) and not self.store.exists(key):
            if not inbound.is_dm:
                return None  # a reply in a thread the bot is not part of
            event = Start(event_id=event.event_id, user_id=event.user_id, text=event.text, files=event.files)
        if isinstance(event, Start) and inbound.needs_context and not self.store.exists(key):
            event = event.model_copy(update={"context": self._context(inbound, bot_user_id=bot_user_id)})
        if isinstance(event, Start | HumanMessage) and not event.user_name:
            event = event.model_copy(update={"user_name": self.user_name(key.team_id, event.user_id)})
        return event

    def _context(self, inbound: Inbound, *, bot_user_id: str | None) -> tuple[PriorMessage, ...]:
        try:
            replies = self.platform.thread_messages(inbound.key)
        except PlatformError as exc:
            logger.warning("conversation %s: no thread context: %s", inbound.key.id, exc)
            return ()
        team = inbound.key.team_id
        return prior_messages(
            replies,
            before_ts=inbound.message_ts,
            bot_user_id=bot_user_id,
            name_of=lambda user_id: self.user_name(team, user_id),
        )

    def user_name(self, team_id: str, user_id: str) -> str:
        """A person's display name (cached in Redis for a day); "" when Slack does not say."""
        cache = f"{self.prefix}:user:{team_id}:{user_id}"
        if cache in self._names:
            return self._names[cache]
        cached = self.redis.get(cache)
        if cached is not None:
            return self._remember(cache, cached.decode() if isinstance(cached, bytes) else str(cached))
        try:
            user = self.platform.client.users_info(user=user_id).get("user") or {}
        except (SlackApiError, SlackClientError, OSError) as exc:
            logger.warning("no name for user %s: %s", user_id, exc)
            return ""
        profile = user.get("profile") or {}
        name = str(profile.get("display_name") or profile.get("real_name") or user.get("name") or "")
        self.redis.set(cache, name, ex=USER_NAME_TTL)
        return self._remember(cache, name)

    def _remember(self, cache: str, name: str) -> str:
        if len(self._names) >= NAMES_IN_MEMORY:
            self._names.clear()  # crude but bounded; names are re-read from Redis
        self._names[cache] = name
        return name


def build_app(
    settings: Settings,
    *,
    bridge: Bridge,
    socket_mode: bool = False,
    token_verification: bool = True,
) -> App:
    """The Bolt app for these settings, with every listener registered."""
    secret = settings.slack_signing_secret.get_secret_value()
    if not socket_mode and not secret:
        raise ConfigError("SLACK_SIGNING_SECRET: required to serve Slack over HTTP (or set SLACK_APP_TOKEN)")
    app = App(
        client=bridge.platform.client,
        signing_secret=secret,
        request_verification_enabled=not socket_mode,
        token_verification_enabled=token_verification,
        # Listeners only touch Redis, so they finish before the response: the ack means "stored".
        process_before_response=True,
        logger=logging.getLogger("agentbot.slack.bolt"),
    )
    register_listeners(app, bridge=bridge)
    return app


def register_listeners(app: App, *, bridge: Bridge) -> None:
    """Every Slack entry point of agentbot."""

    @app.event("app_mention")
    def on_mention(body: dict[str, Any], context: BoltContext) -> None:
        bridge.on_event(body, bot_user_id=context.bot_user_id)

    @app.event("message")
    def on_message(body: dict[str, Any], context: BoltContext) -> None:
        bridge.on_event(body, bot_user_id=context.bot_user_id)

    @app.action(ACTION_PATTERN)
    def on_button(ack: Callable[[], None], body: dict[str, Any]) -> None:
        ack()
        bridge.on_action(body)

    @app.action(DETAILS_ACTION)
    def on_details(ack: Callable[[], None], body: dict[str, Any]) -> None:
        ack()
        bridge.on_details(body)

    @app.command(re.compile(r"^/"))  # the app's one slash command, whatever it is called (`/agentbot`)
    def on_command(ack: Callable[..., None], body: dict[str, Any]) -> None:
        text = bridge.on_command(body)
        if text:
            ack(text=text, response_type="ephemeral")  # only the sender sees it
        else:
            ack()  # the conversation's root message says it all

    @app.error
    def on_error(error: Exception, request: BoltRequest, response: BoltResponse | None) -> None:
        retry = request.headers.get("x-slack-retry-num", [""])[0]
        logger.exception("slack request failed (retry %s): %s", retry or "0", error, exc_info=error)
        if response is not None:
            response.status = 500  # Slack retries the event; dedupe was released for it
