"""The Bolt app: every Slack entry point in `register_listeners`, each listener parse → dedupe → submit.

Delivery discipline: Bolt checks the signature (401 for forged or stale requests) before any
listener runs. A listener only talks to Redis: the dedupe marker on `(team_id, event_id)` (`SET NX EX`),
the conversation inbox and the step job, in one script, so the acknowledgement goes back within
milliseconds and only once the event and its step are safely stored. Anything slow is the worker's: the
first status ("is thinking…"), the author's name and a thread's earlier messages
(`conversations.replies`, `users.info`, read when it applies the event: `driver._with_people`), and
the engine's turn. Slack's retries (`X-Slack-Retry-Num`) are not dropped blindly: they go through
dedupe, so a retry of an event that failed before it was stored still gets through, and one that was
stored is ignored.

Six entry points start no conversation and make one Slack call of their own: `teams` / `help`
(posted in the thread before the ack, so a failure is retried by Slack), a slash command with a task
(its root message is posted before the conversation is stored in that message's thread), a
sub-team's Details button and an approval card's Edit button (each a modal opened after the ack,
within the click's 3-second trigger), the Home tab (`app_home_opened`: published after the ack), and
`assistant_thread_started` (suggested prompts, after the ack). The Edit modal's submission is a
conversation event like a click.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from slack_bolt import App, BoltContext, BoltResponse
from slack_bolt.request import BoltRequest

from agentbot import logs
from agentbot.conversation.events import EditCode, Event, HumanMessage, Start
from agentbot.conversation.ports import ConversationStore, JobQueue
from agentbot.conversation.posts import NoticePost
from agentbot.conversation.state import ConversationKey, ConversationState
from agentbot.errors import AgentbotError, ConfigError, PlatformError
from agentbot.queue import StepWrites
from agentbot.settings import Settings
from agentbot.slack import guide
from agentbot.slack.home import home_view
from agentbot.slack.parse import (
    ACTION_PATTERN,
    DETAILS_ACTION,
    EDIT_ACTION,
    EDIT_BLOCK,
    EDIT_CALLBACK,
    Ask,
    DetailsRequest,
    EditRequest,
    HomeVisit,
    Inbound,
    SlashCommand,
    parse_action,
    parse_assistant_thread,
    parse_command,
    parse_details,
    parse_edit,
    parse_edit_submission,
    parse_event,
    parse_home,
)
from agentbot.slack.platform import SlackPlatform
from agentbot.slack.render import render_command_root
from agentbot.slack.views import details_view, edit_view, missing_view, notice_view
from agentbot.teams import Catalog, load_catalog

logger = logging.getLogger(__name__)

DEDUPE_TTL = 3600  # Slack retries an event three times within about five minutes


class InboxStore(ConversationStore, Protocol):
    """The store as the bridge uses it: the engine's port, plus a dedupe-aware append (`RedisStore`)."""

    def exists(self, key: ConversationKey) -> bool: ...

    def append_event_once(
        self, key: ConversationKey, event: Event, *, marker: str, ttl: int, then: StepWrites | None = None
    ) -> str | None:
        """Append `event` unless `marker` is set, setting it atomically (and `then`); None for a duplicate."""
        ...

    def conversations_of(self, team_id: str, user_id: str, *, limit: int = 50) -> list[ConversationState]:
        """The conversations `user_id` started or approves, newest first (their Home tab)."""
        ...


class StepQueue(JobQueue, Protocol):
    """The queue as the bridge uses it: the engine's port, plus a step as the store's script writes it."""

    def step_writes(self, key: ConversationKey) -> StepWrites: ...


@dataclass
class Bridge:
    """What the listeners share: the conversation inbox and queue, and the platform (with its store)."""

    store: InboxStore
    queue: StepQueue
    platform: SlackPlatform
    catalog: Catalog = field(default_factory=lambda: load_catalog(None))  # the runtime's `teams`
    background: Executor = field(default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="slack-bg"))
    prefix: str = "agentbot:slack"  # where the `SlackStore` keeps its keys (dedupe markers in one script)

    def on_event(self, body: dict[str, Any], *, bot_user_id: str | None) -> None:
        """An Events API callback: a mention, a direct message, or a reply in a thread."""
        inbound = parse_event(body, bot_user_id=bot_user_id)
        if isinstance(inbound, Ask):
            self.answer(inbound)
        elif inbound is not None:
            self.accept(inbound, delivery_id=str(body.get("event_id")))

    def on_assistant_thread(self, body: dict[str, Any]) -> None:
        """Someone opened the bot's assistant thread or DM: suggested prompts there, after the ack."""
        where = parse_assistant_thread(body)
        if where is not None:
            self.background.submit(self.platform.suggest_prompts, *where)

    def on_action(self, body: dict[str, Any]) -> None:
        """A click on Run, Skip or Stop (the engine checks it against the pending run)."""
        inbound = parse_action(body)
        if inbound is not None:
            self.accept(inbound, delivery_id=inbound.event.event_id)

    def on_command(self, body: dict[str, Any]) -> str:
        """A slash command; returns the text only its sender sees ("" when the thread says it all)."""
        command = parse_command(body)
        if command is None:
            return "I could not read that command."
        if command.topic != "start":
            return guide.mrkdwn(guide.answer(command.topic, self.catalog))  # an ephemeral reply takes mrkdwn
        return self._start_from_command(command)

    def on_details(self, body: dict[str, Any]) -> None:
        """A click on a sub-team's Details button: its transcript in a modal, opened after the ack."""
        request = parse_details(body)
        if request is not None:
            self.background.submit(self._show_details, request)

    def on_edit(self, body: dict[str, Any]) -> None:
        """A click on Edit: the proposed code in a modal, opened after the ack."""
        request = parse_edit(body)
        if request is not None:
            self.background.submit(self._show_edit, request)

    def on_edit_submitted(self, body: dict[str, Any]) -> dict[str, str]:
        """The Edit modal submitted: the edited code goes to the conversation like a click.

        Returns the modal's errors by block (empty: close it), as `view_submission` answers them.
        """
        inbound = parse_edit_submission(body)
        if inbound is None:
            return {}
        if isinstance(inbound.event, EditCode) and not inbound.event.code.strip():
            return {EDIT_BLOCK: "Write the code to run, or cancel."}
        self.accept(inbound, delivery_id=inbound.event.event_id)
        return {}

    def on_home(self, body: dict[str, Any]) -> None:
        """Someone opened the Home tab: theirs is published after the ack."""
        visit = parse_home(body)
        if visit is not None:
            self.background.submit(self.publish_home, visit)

    def publish_home(self, visit: HomeVisit) -> None:
        """Draw `visit.user_id`'s Home tab from the store: what waits for them, their conversations, teams."""
        try:
            conversations = self.store.conversations_of(visit.team_id, visit.user_id)
            view = home_view(visit.user_id, conversations, self.catalog.describe(), datetime.now(UTC))
            self.platform.publish_home(visit.user_id, view)
        except AgentbotError as exc:  # the store translates Redis errors
            logger.warning("home of %s not published: %s", visit.user_id, exc)

    def answer(self, ask: Ask) -> None:
        """Reply to `teams` / `help` in the asker's thread, once per delivery; no conversation starts.

        The reply is posted before the ack: if Slack refuses it, the marker is released and the error
        answers 500, so Slack's retry asks again.
        """
        seen = self._seen(ask.key.team_id, ask.event_id)
        if not self.platform.store.claim(seen, DEDUPE_TTL):
            return
        post = NoticePost(text=guide.answer(ask.topic, self.catalog))
        try:
            self.platform.post(ask.key, post, effect_id=f"ask:{ask.event_id}")
        except PlatformError:
            self.platform.store.release(seen)
            raise

    def accept(self, inbound: Inbound, *, delivery_id: str) -> None:
        """Store the event once per `(team_id, delivery_id)` and enqueue its step, in one Redis script.

        The dedupe marker, the inbox entry and the step job are written together (`driver.submit`'s
        promise, atomically): a delivery is stored, marked and enqueued, or none of them, and then the
        error answers 500 so that Slack's retry gets in again. A duplicate delivery writes nothing.
        The first sign of life in the thread is
        the step's own status ("is thinking…"), posted by the worker, not by this process.
        """
        with logs.conversation(inbound.key.id):
            event = self._complete(inbound)
            if event is None:
                return
            key = inbound.key
            seen = self._seen(key.team_id, delivery_id)
            marker = f"{self.prefix}:{seen}"  # the `SlackStore`'s key of `seen`, set in the inbox's script
            step = self.queue.step_writes(key)
            if self.store.append_event_once(key, event, marker=marker, ttl=DEDUPE_TTL, then=step) is None:
                logger.info("conversation %s: duplicate delivery %s ignored", key.id, delivery_id)
                return
            logger.info("conversation %s: %s from %s submitted", key.id, event.type, event.user_id)

    def _seen(self, team_id: str, delivery_id: str) -> str:
        """The dedupe marker of one delivery (an Events API event id, or a click's)."""
        return f"seen:{team_id}:{delivery_id}"

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
            self.accept(inbound, delivery_id=start.event_id)
        except AgentbotError as exc:
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
        except AgentbotError as exc:
            logger.warning("conversation %s: details not shown: %s", request.key.id, exc)

    def _show_edit(self, request: EditRequest) -> None:
        """Open the Edit modal, or say in one why this card cannot be edited by this person now."""
        try:
            state = self.store.load(request.key)
            view = _edit_or_refusal(state, request)
            self.platform.open_view(request.key, view, trigger_id=request.trigger_id)
        except AgentbotError as exc:
            logger.warning("conversation %s: edit form not shown: %s", request.key.id, exc)

    def _complete(self, inbound: Inbound) -> Event | None:
        """The event as the engine takes it; None if it is not for us. Reads nothing from Slack.

        A mention inside a thread only names its message: the worker reads the thread before it.
        """
        event, key = inbound.event, inbound.key
        if isinstance(event, HumanMessage) and not self.store.exists(key):
            if not inbound.is_dm:
                return None  # a reply in a thread the bot is not part of
            event = Start(event_id=event.event_id, user_id=event.user_id, text=event.text, files=event.files)
        if isinstance(event, Start) and inbound.needs_context:
            event = event.model_copy(update={"context_before": inbound.message_ts})  # Start has no evolve
        return event


def _edit_or_refusal(state: ConversationState | None, request: EditRequest) -> dict[str, Any]:
    run = state.run if state is not None else None
    current = run is not None and run.run_id == request.run_id and run.code_hash == request.code_hash
    if state is None or run is None or not current or run.status != "awaiting_approval":
        return notice_view("Edit code", "This card is no longer current, so there is nothing to edit.")
    if request.user_id not in run.approvers:
        names = ", ".join(f"<@{user}>" for user in run.approvers)
        return notice_view("Edit code", f"Only {names} can edit and run code in this conversation.")
    return edit_view(state, run)


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

    @app.event("assistant_thread_started")
    def on_assistant_thread(body: dict[str, Any]) -> None:
        bridge.on_assistant_thread(body)

    @app.action(ACTION_PATTERN)
    def on_button(ack: Callable[[], None], body: dict[str, Any]) -> None:
        ack()
        bridge.on_action(body)

    @app.action(DETAILS_ACTION)
    def on_details(ack: Callable[[], None], body: dict[str, Any]) -> None:
        ack()
        bridge.on_details(body)

    @app.action(EDIT_ACTION)
    def on_edit(ack: Callable[[], None], body: dict[str, Any]) -> None:
        ack()
        bridge.on_edit(body)

    @app.view(EDIT_CALLBACK)
    def on_edit_submitted(ack: Callable[..., None], body: dict[str, Any]) -> None:
        errors = bridge.on_edit_submitted(body)
        if errors:
            ack(response_action="errors", errors=errors)  # the modal stays open and says why
        else:
            ack()  # the modal closes; the thread shows the edit and its run

    @app.event("app_home_opened")
    def on_home(body: dict[str, Any]) -> None:
        bridge.on_home(body)

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
