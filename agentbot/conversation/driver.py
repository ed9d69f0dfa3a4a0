"""Drives one conversation step: apply new events, deliver posts, perform one outside action, save.

A step never waits for a person. It ends when the conversation needs a human (or nothing); when it
needs another LLM reply or run, it enqueues the next step instead of looping, so long automatic
chains don't hold a worker and other conversations get their turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from agentbot.conversation import delegation, engine, live, speakers, toolcalls
from agentbot.conversation.code import InputFile
from agentbot.conversation.events import Event, HumanMessage, Start, Stop, SubTeamUpdate
from agentbot.conversation.llm import ChatMessage, Completion, ToolSpec
from agentbot.conversation.ports import (
    LLM,
    Activity,
    ChatPlatform,
    CodeExecutor,
    ConversationStore,
    Engines,
    JobQueue,
    LivePlatform,
    TeamCatalog,
    ThreadReader,
    Toolbox,
)
from agentbot.conversation.state import (
    ConversationKey,
    ConversationState,
    EgressState,
    OutboxItem,
    Phase,
    Policy,
)
from agentbot.conversation.team import TeamChoice
from agentbot.conversation.tools import ToolOutcome
from agentbot.errors import EngineDownError, LLMError, PlatformError, SandboxError, ToolError

logger = logging.getLogger(__name__)

# A delayed step comes this much after the moment it is for, so that the clock of whichever worker
# runs it is surely past that moment (the engine compares with its own `now`).
WAKE_MARGIN = timedelta(seconds=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Ports:
    """What a step needs from the outside world."""

    store: ConversationStore
    llm: LLM
    executor: CodeExecutor
    platform: ChatPlatform
    queue: JobQueue
    policy: Policy
    clock: Callable[[], datetime] = utcnow
    teams: TeamCatalog | None = None  # None: every conversation is the assistant + user proxy pair
    egress: EgressState = field(default_factory=EgressState)  # the workspace's network lists (settings)
    tools: Toolbox | None = None  # None: agents' tools are not available in this process
    engines: Engines | None = None  # None: one sandbox, `executor`, for every conversation


def submit(store: ConversationStore, queue: JobQueue, key: ConversationKey, event: Event) -> str:
    """Record `event` in the conversation's inbox, then enqueue a step: the event is never lost."""
    event_id = store.append_event(key, event)
    queue.enqueue_step(key)
    return event_id


def step(ports: Ports, key: ConversationKey) -> ConversationState | None:
    """Advance the conversation by at most one outside action; returns the saved state."""
    state = _apply_inbox(ports, key)
    if state is None:
        return None
    state = _expire(ports, state)
    state = _recover(ports, state)
    state = deliver(ports, state)
    action = engine.next_action(state)
    if isinstance(action, engine.Wait):
        _wake_later(ports, key, action)
        return state
    state = _perform(ports, state, action)
    state = deliver(ports, state)
    after = engine.next_action(state)
    if isinstance(after, engine.Wait):
        _wake_later(ports, key, after)
    else:
        ports.queue.enqueue_step(key, engine=_engine_elsewhere(ports, state, after))
    return state


def _engine_elsewhere(ports: Ports, state: ConversationState, action: engine.Action) -> str | None:
    """The engine whose workers must take the next step: a sandbox action on an engine not served here."""
    if ports.engines is None or not _in_sandbox(action) or not state.sandbox_engine:
        return None
    return None if ports.engines.executor(state.sandbox_engine) else state.sandbox_engine


def _in_sandbox(action: engine.Action) -> bool:
    return isinstance(action, engine.RunCode | engine.ImportFiles)


def _expire(ports: Ports, state: ConversationState) -> ConversationState:
    """What the clock decides (a blocked-hosts card nobody answered in time) before anything else."""
    expired = engine.expire(state, ports.clock())
    return state if expired is state else ports.store.save(expired)


def _wake_later(ports: Ports, key: ConversationKey, wait: engine.Wait) -> None:
    """A conversation that waits for people until a deadline gets one delayed step for that deadline.

    Scheduled again by every step that ends waiting for it: the queue keeps one job per name, so a
    step that crashed before scheduling is made good by the next (and a repeat schedules nothing).
    """
    if wait.wake_at is not None:
        ports.queue.enqueue_step_at(key, wait.wake_at + WAKE_MARGIN, name=wait.wake_name)


def fail(ports: Ports, key: ConversationKey, text: str) -> None:
    """The step failed unexpectedly: tell the thread in words and hand the turn to the humans."""
    state = ports.store.load(key)
    if state is None or state.phase is Phase.FINISHED:
        return
    state = ports.store.save(engine.on_failure(live.abandon(ports, state), text))
    deliver(ports, state)


def _apply_inbox(ports: Ports, key: ConversationKey) -> ConversationState | None:
    state = ports.store.load(key)
    events = ports.store.events_after(key, state.last_event_id if state else "0-0")
    if not events:
        return state
    now = ports.clock()
    for event_id, stored in events:
        event = _with_people(ports, key, stored, state)
        choice = _choice(ports, key, event) if state is None else None
        state = engine.apply(state, key, event, ports.policy, now, choice=choice, egress=ports.egress)
        if state is not None:
            state = state.evolve(last_event_id=event_id)
    return ports.store.save(state) if state is not None else None


def _with_people(ports: Ports, key: ConversationKey, event: Event, state: ConversationState | None) -> Event:
    """What the listener left out to ack at once: the author's name, the thread before a mention."""
    platform = ports.platform
    if not isinstance(event, Start | HumanMessage) or not isinstance(platform, ThreadReader):
        return event
    if isinstance(event, Start) and event.context_before and state is None and not event.context:
        event = event.model_copy(
            update={"context": platform.thread_context(key, before=event.context_before)}
        )
    if not event.user_name:
        event = event.model_copy(update={"user_name": platform.user_name(key, event.user_id)})
    return event


def _choice(ports: Ports, key: ConversationKey, event: Event) -> TeamChoice | None:
    if ports.teams is None or not isinstance(event, Start):
        return None
    return ports.teams.choose(key, event.team)


def _recover(ports: Ports, state: ConversationState) -> ConversationState:
    """A run or tool call marked 'running' at the start of a step was cut off by a dead worker: never
    make it again on our own (a person is asked).

    A reply that was being shown live when its worker died gets its message marked cut off.
    """
    if state.live is not None:
        state = live.recover(ports, state, thinking=state.phase is Phase.THINKING)
    if state.phase is Phase.RUNNING and state.run is not None and state.run.status == "running":
        logger.warning("conversation %s: run %s was interrupted", state.key.id, state.run.run_id)
        return ports.store.save(engine.on_run_interrupted(state, ports.clock()))
    if cut := toolcalls.interrupted(state):
        logger.warning(
            "conversation %s: tool calls %s were interrupted", state.key.id, [c.call.id for c in cut]
        )
        return ports.store.save(toolcalls.on_interrupted(state, ports.clock()))
    return state


def _perform(ports: Ports, state: ConversationState, action: engine.Action) -> ConversationState:
    if isinstance(action, engine.RunCode | engine.ImportFiles):
        return _perform_in_sandbox(ports, state, action)
    if isinstance(action, engine.CallLLM):
        return _call_llm(ports, state, action)
    if isinstance(action, engine.CallTool):
        return _call_tool(ports, state, action)
    if isinstance(action, engine.SelectSpeaker | engine.Delegate | engine.CancelSubTeams):
        return _perform_for_team(ports, state, action)
    return state


def _perform_in_sandbox(
    ports: Ports, state: ConversationState, action: engine.RunCode | engine.ImportFiles
) -> ConversationState:
    if ports.engines is not None:
        state, placed = _place(ports, ports.engines, state)
        if placed is None:
            return state  # another engine's workers take it: `step` enqueues it on that engine's queue
        ports = placed
    if isinstance(action, engine.RunCode):
        return _run_code(ports, state, action)
    return _import_files(ports, state, action)


def _perform_for_team(
    ports: Ports,
    state: ConversationState,
    action: engine.SelectSpeaker | engine.Delegate | engine.CancelSubTeams,
) -> ConversationState:
    if isinstance(action, engine.SelectSpeaker):
        return _select_speaker(ports, state, action)
    if isinstance(action, engine.Delegate):
        return _delegate(ports, state, action)
    return _cancel_subteams(ports, state, action)


def _call_llm(ports: Ports, state: ConversationState, action: engine.CallLLM) -> ConversationState:
    """The speaker's reply, shown in the thread as it is written where the ports can stream.

    A speaker with tools gets its reply whole: the streaming port does not offer tools (yet).
    """
    speaker = action.speaker or state.policy.assistant_name
    offered: tuple[ToolSpec, ...] = ()
    writer: live.Writer | None = None
    _status(ports, state, f"{speaker} is thinking…", activity="thinking")
    try:
        offered = _describe(ports, action)
        writer = None if offered else live.writer(ports, state, speaker)
        completion = _reply(ports, action, writer, offered)
    except (LLMError, ToolError) as exc:
        logger.warning("conversation %s: LLM failed: %s", state.key.id, exc)
        state = live.abandon(ports, writer.state if writer else state)
        state = engine.on_llm_error(state, exc.user_message)
    else:
        state = engine.on_reply(writer.state if writer else state, completion, ports.clock(), offered)
        state = live.attach(state)
    finally:
        ports.platform.set_status(state.key, "")  # an error never leaves the status up
    return ports.store.save(state)


def _select_speaker(
    ports: Ports, state: ConversationState, action: engine.SelectSpeaker
) -> ConversationState:
    _status(ports, state, "choosing who speaks next…", activity="thinking")
    try:
        completion = _complete(ports, action.messages, action.model)
    except LLMError as exc:
        logger.warning("conversation %s: speaker selection failed: %s", state.key.id, exc)
        state = engine.on_llm_error(state, exc.user_message)
    else:
        state = speakers.on_selection(state, completion)
    finally:
        ports.platform.set_status(state.key, "")
    return ports.store.save(state)


def _describe(ports: Ports, action: engine.CallLLM) -> tuple[ToolSpec, ...]:
    """The speaker's tools with their schemas (`ToolError` when they cannot be loaded)."""
    if not action.tools:
        return ()
    if ports.tools is None:
        raise ToolError("no toolbox in this process", user_message="Tools are not available here.")
    return tuple(ports.tools.describe(action.tools))


def _complete(
    ports: Ports, messages: tuple[ChatMessage, ...], model: str | None, tools: tuple[ToolSpec, ...] = ()
) -> Completion:
    # Without a model or tools of its own, the call stays `complete(messages)`: LLM fakes need neither.
    if tools:
        return ports.llm.complete(messages, model=model, tools=tools)
    return ports.llm.complete(messages, model=model) if model else ports.llm.complete(messages)


def _call_tool(ports: Ports, state: ConversationState, action: engine.CallTool) -> ConversationState:
    """Mark the call running, make it, keep its result: each saved before the next move."""
    call = action.pending.call
    state = ports.store.save(toolcalls.on_call_started(state, call.id))
    _status(ports, state, f"is calling {call.name}…", activity="running")
    if action.source is None or ports.tools is None:
        outcome = ToolOutcome(text=f"Error: the tool {call.name!r} is not available.", is_error=True)
    else:
        outcome = ports.tools.call(action.source, call)
    state = toolcalls.on_call_result(
        state, call.id, outcome.text, is_error=outcome.is_error, now=ports.clock()
    )
    ports.platform.set_status(state.key, "")
    return ports.store.save(state)


def _reply(
    ports: Ports, action: engine.CallLLM, writer: live.Writer | None, offered: tuple[ToolSpec, ...]
) -> Completion:
    if writer is None:
        return _complete(ports, action.messages, action.model, offered)
    return live.streaming_llm(ports).stream(action.messages, on_text=writer.show, model=action.model)


def _status(ports: Ports, state: ConversationState, text: str, *, activity: Activity) -> None:
    """What the agents do now, with the running cost when the conversation has a budget."""
    budget = state.policy.max_cost_usd
    if budget is not None:
        text += f" (${state.total_cost_usd:.2f} of ${budget:.2f} spent)"
    ports.platform.set_status(state.key, text, activity=activity)


def _delegate(ports: Ports, state: ConversationState, action: engine.Delegate) -> ConversationState:
    """Start each sub-team's conversation once (a repeated step finds it started and adds nothing)."""
    for launch in action.launches:
        started = ports.store.load(launch.key) is not None or ports.store.events_after(launch.key, "0-0")
        if not started:
            ports.store.append_event(launch.key, launch.event)
        ports.queue.enqueue_step(launch.key)
        logger.info("conversation %s: delegated to %s", state.key.id, launch.key.id)
    return ports.store.save(delegation.on_launched(state))


def _cancel_subteams(
    ports: Ports, state: ConversationState, action: engine.CancelSubTeams
) -> ConversationState:
    for key in action.keys:
        submit(ports.store, ports.queue, key, Stop(event_id=f"{key.slug}-cancel", user_id=action.user_id))
    return ports.store.save(delegation.on_cancelled(state))


def _place(
    ports: Ports, engines: Engines, state: ConversationState
) -> tuple[ConversationState, Ports | None]:
    """Where a sandbox action runs: `ports` with the executor of the conversation's engine when this
    process serves it, else None (its workers do). A conversation without an engine is pinned first, to
    one that is up; when none is, or the pinned one is down and served elsewhere, the thread is told."""
    name = state.sandbox_engine
    if not name:
        name = engines.choose(state.key, avoid=state.engines_left) or ""
        if not name:
            none_up = SandboxError("no Docker engine is up", user_message="No Docker engine is up right now.")
            return ports.store.save(_sandbox_failed(ports, state, none_up)), None
        state = ports.store.save(state.evolve(sandbox_engine=name))
        logger.info("conversation %s: workspace on Docker engine %s", state.key.id, name)
    executor = engines.executor(name)
    if executor is not None:
        return state, replace(ports, executor=executor)
    if not engines.is_up(name):
        down = EngineDownError(f"no worker reports Docker engine {name} up")
        return ports.store.save(_sandbox_failed(ports, state, down)), None
    return state, None


def _sandbox_failed(ports: Ports, state: ConversationState, exc: SandboxError) -> ConversationState:
    """What people see when the sandbox could not take an action at all (the run is offered again)."""
    logger.warning("conversation %s: sandbox failed: %s", state.key.id, str(exc))
    if state.run is None or state.phase is not Phase.RUNNING:
        return engine.on_failure(state, f"The code sandbox is not available: {exc.user_message}")
    if isinstance(exc, EngineDownError) and state.sandbox_engine:
        names = ports.engines.names if ports.engines is not None else ()
        others = any(name != state.sandbox_engine for name in names)
        return engine.on_engine_down(state, ports.clock(), elsewhere=others)
    return engine.on_sandbox_error(state, exc.user_message, ports.clock())


def _run_code(ports: Ports, state: ConversationState, action: engine.RunCode) -> ConversationState:
    state = ports.store.save(engine.on_run_started(state))
    ports.platform.set_status(state.key, "is running the code…", activity="running")
    try:
        result = ports.executor.run(state.key.slug, action.run.blocks, grant=state.egress.grant())
    except SandboxError as exc:
        state = _sandbox_failed(ports, state, exc)
    else:
        if result.artifacts:
            ports.store.put_artifacts(f"{state.key.slug}-{action.run.run_id}", result.artifacts)
        state = engine.on_run_result(state, result, ports.clock())
    finally:
        ports.platform.set_status(state.key, "")  # an error never leaves the status up
    return ports.store.save(state)


def _import_files(ports: Ports, state: ConversationState, action: engine.ImportFiles) -> ConversationState:
    files: list[InputFile] = []
    problems: list[str] = []
    for ref in action.files:
        try:
            files.append(InputFile(name=ref.name, content=ports.platform.download(ref)))
        except PlatformError as exc:
            problems.append(f"Could not load {ref.name}: {exc.user_message}")
    try:
        ports.executor.put_files(state.key.slug, files)
    except SandboxError as exc:
        problems.append(f"Could not copy the shared files into the workspace: {exc.user_message}")
        files = []
    names = tuple(file.name for file in files)
    return ports.store.save(engine.on_files_imported(state, names, tuple(problems)))


def deliver(ports: Ports, state: ConversationState) -> ConversationState:
    """Show every pending post exactly once, saving after each (so a crash repeats none)."""
    if state.parent is not None:
        return _forward(ports, state, state.parent)
    for item in state.outbox:
        if _shown_in_plan(state, item) and not item.live_message:  # a live message is always finished
            state = ports.store.save(engine.mark_sent(state, item, ""))
            continue
        effect_id = f"{state.key.slug}-{item.item_id}"
        message_id = _find_earlier(ports, state, item, effect_id)
        if message_id is None:
            state = ports.store.save(engine.mark_sending(state, item))
            message_id = _send(ports, state, item, effect_id)
        state = ports.store.save(engine.mark_sent(state, item, message_id))
    return state


def _forward(ports: Ports, state: ConversationState, parent: ConversationKey) -> ConversationState:
    """A sub-team's posts go to its lead's conversation, never to a thread.

    Forwarded, then the lead's step enqueued, then marked sent: a crash in between forwards them again,
    and the lead's conversation drops the repeats by item id.
    """
    if not state.outbox:
        return state
    for item in state.outbox:
        update = SubTeamUpdate(
            event_id=f"{state.key.slug}-{item.item_id}",
            user_id=state.starter_id,
            sub_id=state.sub_id,
            item_id=item.item_id,
            post=item.post,
        )
        ports.store.append_event(parent, update)
    ports.queue.enqueue_step(parent)
    for item in state.outbox:
        state = engine.mark_sent(state, item, "")
    return ports.store.save(state)


def _shown_in_plan(state: ConversationState, item: OutboxItem) -> bool:
    """A team turn whose plan message is up: the plan shows it (without one, it is posted: the fallback)."""
    post = item.post
    return post.kind == "agent" and post.plan_ref is not None and bool(state.message_refs.get(post.plan_ref))


def _finish_live(ports: Ports, state: ConversationState, item: OutboxItem, effect_id: str) -> str:
    """The whole post in the message it was shown in as it was written (the stream ends)."""
    platform = ports.platform
    resume = item.status == "sending"  # tried before: parts of it may be there already
    if isinstance(platform, LivePlatform):
        platform.finish_live(state.key, item.live_message, item.post, effect_id=effect_id, resume=resume)
    else:  # a live message from a platform that is no longer live (a changed deployment)
        platform.update(state.key, item.live_message, item.post)
    return item.live_message


def _find_earlier(ports: Ports, state: ConversationState, item: OutboxItem, effect_id: str) -> str | None:
    if item.status != "sending" or item.update_ref is not None or item.live_message:
        return None
    return ports.platform.find_posted(state.key, effect_id)


def _send(ports: Ports, state: ConversationState, item: OutboxItem, effect_id: str) -> str:
    post = item.post
    try:
        if post.kind == "upload":
            artifacts = ports.store.get_artifacts(f"{state.key.slug}-{post.run_id}")
            resume = item.status == "sending"  # tried before: Slack may have taken it, the answer lost
            ports.platform.upload(state.key, artifacts, run_id=post.run_id, resume=resume)
            return ""
        if item.live_message:
            return _finish_live(ports, state, item, effect_id)
        if item.update_ref is not None:
            message_id = state.message_refs.get(item.update_ref)
            if message_id:
                ports.platform.update(state.key, message_id, post)
            return ""
        return ports.platform.post(state.key, post, effect_id=effect_id)
    except PlatformError as exc:
        if exc.retryable:
            raise  # the job is retried later; the item stays in the outbox
        logger.error("conversation %s: dropped post %s: %s", state.key.id, effect_id, exc)
        return ""
