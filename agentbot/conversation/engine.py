"""AutoGen 0.2's conversations as a pure state machine: events in, state out.

The assistant + user proxy pair is the default; agent teams add who speaks next (`speakers.py`) and
delegation to sub-teams (`delegation.py`). Nothing here does I/O. The driver (`driver.py`) asks
`next_action` what the conversation needs, performs it through the ports, and feeds the outcome back
with `on_reply`, `on_run_result` and friends. Every post the engine wants shown goes into the state's
outbox, so a crash can never lose or repeat one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from agentbot.conversation import delegation, plan, speakers, toolcalls

# Re-exported (see pyproject's mypy section): callers use the engine as the conversation's one API.
from agentbot.conversation.actions import (  # noqa: F401
    Action,
    CallLLM,
    CallTool,
    CancelSubTeams,
    Delegate,
    ImportFiles,
    RunCode,
    SelectSpeaker,
    Wait,
)
from agentbot.conversation.code import CodeBlock, CodeResult, EgressReport
from agentbot.conversation.codeblocks import extract_code_blocks, is_termination
from agentbot.conversation.edit import edit_message, editable_code, edited_blocks, unified_diff
from agentbot.conversation.egress import kept_blocked_line, network_line
from agentbot.conversation.events import (
    AllowHosts,
    Approve,
    Delegated,
    EditCode,
    Event,
    HumanMessage,
    KeepBlocked,
    PickSpeaker,
    Rate,
    RunAll,
    Skip,
    Start,
    Stop,
    SubTeamUpdate,
)
from agentbot.conversation.llm import Completion, ToolSpec
from agentbot.conversation.moves import add_usage as _add_usage
from agentbot.conversation.moves import budget_text, mark_sending, mark_sent, meter, over_budget, usage_text  # noqa: F401
from agentbot.conversation.moves import emit as _emit
from agentbot.conversation.moves import finish as _finish
from agentbot.conversation.moves import limit_reached as _limit_reached
from agentbot.conversation.moves import to as _to
from agentbot.conversation.posts import (
    AgentPost,
    ApprovalPost,
    Decision,
    EphemeralPost,
    HostsDecision,
    HostsPost,
    NoticePost,
    ResultPost,
    RunOutcome,
    UploadPost,
)
from agentbot.conversation.prompts import DEFAULT_AUTO_REPLY, execution_message
from agentbot.conversation.speakers import llm_messages  # noqa: F401
from agentbot.conversation.state import (
    ConversationKey,
    ConversationState,
    EgressState,
    HostsAsk,
    HumanInputMode,
    Message,
    PendingRun,
    Phase,
    Policy,
    RunStatus,
    Vote,
)
from agentbot.conversation.team import TeamChoice

_STOP_WORDS = {"stop", "exit", "quit"}
_MANUAL = "manual"  # a reply that turns Run all off
_RUN_STATUS: dict[RunOutcome, RunStatus] = {
    "approved": "approved",
    "moved": "approved",  # approved to run on another engine (the workspace's engine was down)
    "run_all": "approved",
    "edited": "cancelled",  # the edited code runs as a run of its own
    "skipped": "skipped",
    "stopped": "cancelled",
    "expired": "expired",
    "superseded": "cancelled",
}
_WAITING_FOR_OTHERS = (Phase.RUNNING, Phase.CALLING_TOOLS, Phase.DELEGATING, Phase.AWAITING_SUBTEAMS)


# ---------------------------------------------------------------- events from people


def apply(
    state: ConversationState | None,
    key: ConversationKey,
    event: Event,
    policy: Policy,
    now: datetime,
    *,
    choice: TeamChoice | None = None,
    egress: EgressState | None = None,
) -> ConversationState | None:
    """The conversation after `event`; None while there is no conversation and the event starts none.

    `choice` is the team a `Start` gets when it creates the conversation (default: no team), and
    `egress` the workspace's network lists it starts with (the choice adds the channel's and team's).
    """
    if state is None:
        if isinstance(event, Delegated):
            return delegation.start_sub(key, event, policy, now)
        if not isinstance(event, Start):
            return None
        return _start(key, event, policy, now, choice=choice or TeamChoice(), egress=egress or EgressState())
    if isinstance(event, Start | HumanMessage):
        return _human_message(state, event, now)
    return _other_event(state, event, now)


def _other_event(state: ConversationState, event: Event, now: datetime) -> ConversationState:
    if isinstance(event, Approve | RunAll | EditCode | Skip | AllowHosts | KeepBlocked):
        return _click(state, event, now)
    if isinstance(event, Rate):
        return _rate(state, event, now)
    if isinstance(event, PickSpeaker):
        return speakers.on_pick(state, event)
    if isinstance(event, SubTeamUpdate):
        return delegation.on_update(state, event)
    if isinstance(event, Stop):
        return _stop(state, event, now)
    return state  # a repeated `Delegated` (the sub-team's conversation exists), or a repeated Start


def _click(
    state: ConversationState,
    event: Approve | RunAll | EditCode | Skip | AllowHosts | KeepBlocked,
    now: datetime,
) -> ConversationState:
    if isinstance(event, Approve | RunAll):
        return _approve(state, event, now)
    if isinstance(event, EditCode):
        return _edit(state, event, now)
    if isinstance(event, Skip):
        return _skip(state, event, now)
    return _decide_hosts(state, event, now)


def _start(
    key: ConversationKey,
    event: Start,
    policy: Policy,
    now: datetime,
    *,
    choice: TeamChoice,
    egress: EgressState,
) -> ConversationState:
    context = tuple(
        Message(speaker=prior.author, role="user", content=prior.text, kind="context")
        for prior in event.context
    )
    approvers = tuple(dict.fromkeys((event.user_id, *policy.approvers)))
    state = ConversationState(
        key=key,
        created_at=now,
        updated_at=now,
        starter_id=event.user_id,
        policy=delegation.team_policy(policy, choice.team).evolve(approvers=approvers),
        transcript=context,
        team=choice.team,
        egress=egress.with_operator_hosts(choice.allow_hosts),
    )
    if choice.notice:
        state = _emit(state, NoticePost(text=choice.notice, level="warning"))
    return _human_message(state, event, now)


def _human_message(state: ConversationState, event: Start | HumanMessage, now: datetime) -> ConversationState:
    if event.text.strip().lower() in _STOP_WORDS:
        return _stop(state, Stop(event_id=event.event_id, user_id=event.user_id), now)
    if state.phase is Phase.FINISHED and not isinstance(event, Start):
        return state  # a finished conversation re-opens only when the bot is mentioned again
    if state.run_all_by is not None and event.text.strip().lower().rstrip(".!") == _MANUAL:
        return _run_all_off(state, f"<@{event.user_id}> turned Run all off")
    if state.phase is Phase.AWAITING_APPROVAL and state.run is not None:
        state = _decide(state, "skipped", event.user_id, now)  # a reply instead of Run is feedback
    if state.phase is Phase.AWAITING_HOSTS:
        state = _release(state, "kept", event.user_id, now)  # a reply instead of Allow: Keep blocked
    if state.phase is Phase.AWAITING_TOOLS:
        state = toolcalls.on_stop(state, event.user_id, now, outcome="skipped")  # declined, then the reply
    message = Message(
        speaker=event.user_name or event.user_id,
        role="user",
        content=event.text,
        kind="human",
        author_id=event.user_id,
    )
    state = state.evolve(
        transcript=(*state.transcript, message),
        auto_replies=0,
        turns=0,
        pending_files=(*state.pending_files, *event.files),
    )
    if state.phase in _WAITING_FOR_OTHERS:
        return state  # the approved run (or the sub-teams) go first; the model sees this message after
    state = speakers.on_human(state, event.text)
    if state.phase is Phase.AWAITING_PICK and state.next_speaker is None:
        return state  # the open speaker-choice card still decides who speaks
    return _to(state, Phase.IMPORTING) if state.pending_files else speakers.next_turn(state)


def _approve(state: ConversationState, event: Approve | RunAll, now: datetime) -> ConversationState:
    if toolcalls.current(state, event.run_id):
        return _approve_calls(state, event, now)
    refusal = _refuse_approval(state, event.user_id, event.run_id, event.code_hash)
    if refusal is not None:
        return _emit(state, EphemeralPost(user_id=event.user_id, text=refusal))
    assert state.run is not None  # _refuse_approval checked it
    if now >= state.run.expires_at:
        return _propose_again(state, now)
    if isinstance(event, RunAll):
        state = _decide(state.evolve(run_all_by=event.user_id), "run_all", event.user_id, now)
        return _to(_emit(state, NoticePost(text=run_all_text(event.user_id))), Phase.RUNNING)
    if isinstance(event, Approve) and event.elsewhere and state.run and state.run.engine_down:
        return _to(_move(_decide(state, "moved", event.user_id, now), event.user_id), Phase.RUNNING)
    state = _decide(state, "approved", event.user_id, now)
    return _to(state, Phase.RUNNING)


def _move(state: ConversationState, user_id: str) -> ConversationState:
    """People chose to go on without the engine that holds the workspace: the next sandbox action
    picks another engine, where the workspace starts empty (the assistant is told so)."""
    left = state.sandbox_engine
    text = (
        f"<@{user_id}> moved this conversation off the Docker engine `{left}`: its code runs on another "
        f"engine from now on, in a new, empty workspace (the files on `{left}` stay there)."
    )
    note = Message(
        speaker=state.policy.proxy_name,
        role="user",
        content="The working directory was moved to a new, empty one: files made or shared earlier are gone.",
        kind="auto",
    )
    state = _append(_emit(state, NoticePost(text=text)), note)
    return state.evolve(
        sandbox_engine="",
        engines_left=tuple(dict.fromkeys((*state.engines_left, left))) if left else state.engines_left,
        workspace_files=(),
    )


def _approve_calls(state: ConversationState, event: Approve | RunAll, now: datetime) -> ConversationState:
    """Run (or Run all) on a tool-call card: Run all then also covers the later calls and runs."""
    approved = toolcalls.on_approve(state, event.user_id, event.code_hash, now)
    if isinstance(event, RunAll) and event.user_id in state.policy.approvers and approved.run_all_by is None:
        approved = _emit(
            approved.evolve(run_all_by=event.user_id), NoticePost(text=run_all_text(event.user_id))
        )
    return approved


def _refuse_approval(state: ConversationState, user_id: str, run_id: str, code_hash: str) -> str | None:
    """Why `user_id` may not run the code `code_hash` names (None: they may)."""
    refusal = _refuse_click(state, user_id, run_id)
    if refusal is None and state.run is not None and code_hash != state.run.code_hash:
        refusal = "This card does not match the proposed code, so nothing was run."
    return refusal


def _propose_again(state: ConversationState, now: datetime) -> ConversationState:
    """The approval came after the card expired: the same code gets a fresh card."""
    assert state.run is not None
    blocks = state.run.blocks
    state = _decide(state, "expired", None, now)
    text = "That approval had expired, so here is the code again."
    return _propose_run(_emit(state, NoticePost(text=text, level="warning")), blocks, now)


def run_all_text(user_id: str) -> str:
    """Said in the thread when Run all goes on."""
    return (
        f":fast_forward: *Run all is on*: <@{user_id}> approved this run and every later one in this "
        "thread. Press *Stop* or reply `manual` to approve each run again. Blocked hosts still ask."
    )


def _run_all_off(state: ConversationState, why: str) -> ConversationState:
    text = f":raised_hand: {why}: each code run needs approval again."
    return _emit(state.evolve(run_all_by=None), NoticePost(text=text))


def _edit(state: ConversationState, event: EditCode, now: datetime) -> ConversationState:
    """The Edit modal was submitted: the edited code runs (approved by its editor); the model sees a diff."""
    refusal = _refuse_approval(state, event.user_id, event.run_id, event.code_hash)
    run = state.run
    before = editable_code(run.blocks) if run is not None else None
    if refusal is None and (before is None or not event.code.strip()):
        refusal = "That edit could not be used (empty code, or blocks in several languages), so nothing ran."
    if refusal is not None:
        return _emit(state, EphemeralPost(user_id=event.user_id, text=refusal))
    assert run is not None and before is not None
    if now >= run.expires_at:
        return _propose_again(state, now)
    blocks = edited_blocks(run.blocks, event.code)
    if code_hash(blocks) == code_hash(edited_blocks(run.blocks, before)):
        return _to(_decide(state, "approved", event.user_id, now), Phase.RUNNING)  # saved unchanged
    diff = unified_diff(before, blocks[0].code)
    state = _decide(state, "edited", event.user_id, now)
    state = _append(
        state,
        Message(
            speaker=event.user_name or event.user_id,
            role="user",
            content=edit_message(diff),
            kind="human",
            author_id=event.user_id,
        ),
    )
    shown = f":pencil2: <@{event.user_id}> edited the code; the edited version runs:\n```diff\n{diff}\n```"
    state = _emit(state, NoticePost(text=shown))
    edited = _new_run(state, blocks, now).evolve(status="approved", decided_by=event.user_id)
    return _to(_with_run(state, edited).evolve(run_seq=state.run_seq + 1), Phase.RUNNING)


def _rate(state: ConversationState, event: Rate, now: datetime) -> ConversationState:
    """A vote on a final answer: kept with the transcript, one per person and answer (the last counts)."""
    turns = state.transcript
    if not 0 <= event.turn < len(turns) or turns[event.turn].kind != "agent":
        return state
    vote = Vote(turn=event.turn, user_id=event.user_id, vote=event.vote, at=now)
    kept = tuple(v for v in state.votes if (v.turn, v.user_id) != (event.turn, event.user_id))
    return state.evolve(votes=(*kept, vote))


def _skip(state: ConversationState, event: Skip, now: datetime) -> ConversationState:
    if toolcalls.current(state, event.run_id):
        return toolcalls.on_skip(state, event.user_id, now)
    refusal = _refuse_click(state, event.user_id, event.run_id)
    if refusal is not None:
        return _emit(state, EphemeralPost(user_id=event.user_id, text=refusal))
    state = _decide(state, "skipped", event.user_id, now)
    return _to(state, Phase.AWAITING_HUMAN)


def _stop(state: ConversationState, event: Stop, now: datetime) -> ConversationState:
    if state.phase is Phase.FINISHED:
        return state
    if event.user_id not in state.policy.approvers:
        return _emit(state, EphemeralPost(user_id=event.user_id, text=_only_approvers(state, "stop")))
    state = state.evolve(run_all_by=None)  # a conversation mentioned again starts asking again
    if state.run is not None and state.run.status == "awaiting_approval":
        state = _decide(state, "stopped", event.user_id, now)
    if state.phase is Phase.AWAITING_HOSTS:
        state = _release(state, "stopped", event.user_id, now)  # kept in the transcript, for the record
    state = toolcalls.on_stop(state, event.user_id, now)
    return _finish(state, f"Stopped by <@{event.user_id}>.")


def _refuse_click(state: ConversationState, user_id: str, run_id: str) -> str | None:
    run = state.run
    if run is None or run.run_id != run_id or run.status != "awaiting_approval":
        return "This card is no longer current, so nothing was run."
    if user_id not in run.approvers:
        return _only_approvers(state, "approve or skip")
    return None


def _only_approvers(state: ConversationState, verb: str) -> str:
    names = ", ".join(f"<@{user}>" for user in state.policy.approvers)
    return f"Only {names} can {verb} runs in this conversation."


# ---------------------------------------------------------------- what to do next


def next_action(state: ConversationState) -> Action:
    """What the conversation needs from outside now."""
    if state.phase is Phase.THINKING:
        return speakers.think(state)
    if (run := _approved_run(state) or toolcalls.next_call(state)) is not None:
        return run
    if state.phase is Phase.IMPORTING:
        return ImportFiles(files=state.pending_files)
    if state.phase is Phase.DELEGATING:
        return Delegate(launches=delegation.launches(state))
    ask = state.hosts_ask
    if state.phase is Phase.AWAITING_HOSTS and ask is not None:
        return Wait(wake_at=ask.expires_at, wake_name=f"hosts-{ask.run_id}")  # Keep blocked, by the clock
    return delegation.cancellations(state) or Wait()


def _approved_run(state: ConversationState) -> RunCode | None:
    if state.phase is Phase.RUNNING and state.run is not None and state.run.status == "approved":
        return RunCode(run=state.run)
    return None


# ---------------------------------------------------------------- outcomes of actions


def on_reply(
    state: ConversationState, completion: Completion, now: datetime, offered: tuple[ToolSpec, ...] = ()
) -> ConversationState:
    """An agent spoke: post it, then call tools, run code, ask for approval, delegate, go on, or finish.

    `offered` are the tools the model was given for this reply (its `tool_calls` name them). A reply
    that hands the turn to the people (or ends) is a final answer: it gets feedback buttons.
    """
    item_id, turn = state.next_item_id, len(state.transcript)
    return _with_feedback(_on_reply(state, completion, now, offered), item_id, turn)


def _with_feedback(state: ConversationState, item_id: int, turn: int) -> ConversationState:
    if state.parent is not None or state.phase not in (Phase.AWAITING_HUMAN, Phase.FINISHED):
        return state
    outbox = tuple(
        item.evolve(post=item.post.answer(turn))
        if item.item_id == item_id and isinstance(item.post, AgentPost)
        else item
        for item in state.outbox
    )
    return state.evolve(outbox=outbox)


def _on_reply(
    state: ConversationState, completion: Completion, now: datetime, offered: tuple[ToolSpec, ...]
) -> ConversationState:
    content = completion.content
    speaker = speakers.current_speaker(state) or state.policy.assistant_name
    message = Message(speaker=speaker, role="assistant", content=content, tool_calls=completion.tool_calls)
    state = _add_usage(state, completion).evolve(
        transcript=(*state.transcript, message), turns=state.turns + 1
    )
    state = state.evolve_team(next_speaker=None)
    if content.strip() or not completion.tool_calls:  # a reply of calls only is shown by its card
        state = _emit_turn(state, speaker, content)
    if completion.truncated:
        state = _emit(state, NoticePost(text=truncated_text(completion.model), level="warning"))
    state = meter(state)
    if (ended := _turn_ends(state, content)) is not None:
        return ended
    if completion.tool_calls:
        return toolcalls.on_tool_calls(state, speaker, completion.tool_calls, offered, now)
    blocks = extract_code_blocks(content) if speakers.may_run_code(state, speaker) else []
    if blocks and speakers.group(state):
        state = state.evolve_team(next_speaker=speaker)  # the proposer sees the result first
    if blocks:
        return _code_proposed(state, tuple(blocks), now)
    return speakers.after_message(state) if speakers.group(state) else _no_code(state)


def _emit_turn(state: ConversationState, speaker: str, content: str) -> ConversationState:
    """Show an agent's message: as a task of the team's plan (the message itself as the fallback)."""
    icon = speakers.icon_of(state, speaker)
    if not plan.planned(state):
        return _emit(state, AgentPost(speaker=speaker, text=content, icon=icon))
    state = plan.on_turn(state, speaker, content)
    return _emit(state, AgentPost(speaker=speaker, text=content, icon=icon, plan_ref=plan.plan_ref(state)))


def truncated_text(model: str) -> str:
    """Said in the thread when a reply stopped at the model's length limit (`finish_reason=length`)."""
    return (
        f"This reply was cut off: the model ({model}) reached its output length limit "
        "(finish_reason=length), so it may be incomplete."
    )


def _turn_ends(state: ConversationState, content: str) -> ConversationState | None:
    """The state after a reply that ends the automatic chat, or delegates; None when it goes on."""
    policy = state.policy
    if over_budget(state):
        return _finish(state, budget_text(state))
    if is_termination(content):
        return _terminated(state)
    if policy.max_turns is not None and state.turns >= policy.max_turns:
        return _limit_reached(state, f"Reached max_turns ({policy.max_turns}).")
    if (why := speakers.round_limit(state)) is not None:
        return _limit_reached(state, why)
    return delegation.on_lead_reply(state, content)


def _terminated(state: ConversationState) -> ConversationState:
    if state.policy.human_input_mode is HumanInputMode.NEVER:
        return _finish(state, "The assistant finished the task.")
    text = "The assistant says the task is done. Reply in the thread to continue, or press Stop."
    return _to(_emit(state, NoticePost(text=text)), Phase.AWAITING_HUMAN)


def _code_proposed(
    state: ConversationState, blocks: tuple[CodeBlock, ...], now: datetime
) -> ConversationState:
    policy = state.policy
    if state.needs_approval:
        return _propose_run(state, blocks, now)
    if state.auto_replies >= policy.max_consecutive_auto_reply:
        if policy.human_input_mode is HumanInputMode.NEVER:
            return _finish(state, _limit_text(policy))
        return _propose_run(state, blocks, now)  # past the limit, a person decides
    by_run_all = state.run_all_by is not None
    run = _new_run(state, blocks, now).evolve(
        status="approved", decided_by=state.run_all_by, by_run_all=by_run_all
    )
    return _to(state.evolve(run=run, run_seq=state.run_seq + 1), Phase.RUNNING)


def _no_code(state: ConversationState) -> ConversationState:
    policy = state.policy
    if policy.human_input_mode is not HumanInputMode.NEVER:
        return _to(state, Phase.AWAITING_HUMAN)  # the assistant asked something: the humans answer
    if state.auto_replies >= policy.max_consecutive_auto_reply:
        return _finish(state, _limit_text(policy))
    auto = Message(speaker=policy.proxy_name, role="user", content=DEFAULT_AUTO_REPLY, kind="auto")
    state = state.evolve(transcript=(*state.transcript, auto), auto_replies=state.auto_replies + 1)
    return _to(state, Phase.THINKING)


def on_llm_error(state: ConversationState, reason: str) -> ConversationState:
    """No model answered: say so in the thread and let the humans retry by replying."""
    text = f"The assistant could not answer: {reason} Reply in the thread to try again."
    return _to(_emit(state, NoticePost(text=text, level="error")), Phase.AWAITING_HUMAN)


def on_run_started(state: ConversationState) -> ConversationState:
    """Mark the run as started *before* it starts, so a crash mid-run is never taken for 'not run yet'."""
    assert state.run is not None
    return state.evolve(run=state.run.evolve(status="running"))


def on_run_result(state: ConversationState, result: CodeResult, now: datetime) -> ConversationState:
    """The code ran: show the result; feed it back to the assistant, or first ask about blocked hosts."""
    run = state.run
    assert run is not None
    names = tuple(artifact.name for artifact in result.artifacts)
    state = _emit(_with_run(state, run.evolve(status="done")), _result_post(run, result, names))
    if names:
        state = _emit(state, UploadPost(run_id=run.run_id, names=names))
    report = result.egress
    if report is not None and report.askable and state.egress.thread_allow != "none" and state.parent is None:
        return _ask_hosts(state, run, report, execution_message(result), now)
    return _after_result(_append_execution(state, execution_message(result)))


def _append_execution(state: ConversationState, text: str) -> ConversationState:
    return _append(
        state, Message(speaker=state.policy.proxy_name, role="user", content=text, kind="execution")
    )


def _after_result(state: ConversationState) -> ConversationState:
    """The result in the transcript goes to the assistant, unless a limit hands the turn to the humans."""
    policy = state.policy
    if state.auto_replies >= policy.max_consecutive_auto_reply:
        return _limit_reached(state, _limit_text(policy))
    # Files shared while the code ran waited for it (see `_human_message`): import them before thinking.
    phase = Phase.IMPORTING if state.pending_files else Phase.THINKING
    return _to(state.evolve(auto_replies=state.auto_replies + 1), phase)


# ---------------------------------------------------------------- hosts the egress proxy refused


def _ask_hosts(
    state: ConversationState,
    run: PendingRun,
    report: EgressReport,
    held: str,
    now: datetime,
) -> ConversationState:
    """Hold the result and ask the people: allow `hosts` and run the same code again, or keep them blocked."""
    ask = HostsAsk(
        run_id=run.run_id,
        blocks=run.blocks,
        code_hash=run.code_hash,
        hosts=report.askable,
        blocked=report.blocked,
        approvers=run.approvers,
        held=held,
        created_at=now,
        expires_at=now + timedelta(seconds=state.policy.approval_ttl_seconds),
    )
    state = _emit(_with_ask(state, ask), _hosts_card(ask), ref=f"hosts:{ask.run_id}")
    return _to(state, Phase.AWAITING_HOSTS)


def _decide_hosts(
    state: ConversationState, event: AllowHosts | KeepBlocked, now: datetime
) -> ConversationState:
    ask = state.hosts_ask
    refusal = _refuse_hosts_click(state, event.user_id, event.run_id)
    if (
        refusal is None
        and isinstance(event, AllowHosts)
        and ask is not None
        and event.code_hash != ask.code_hash
    ):
        refusal = "This card does not match the code that ran, so nothing was allowed."
    if refusal is not None:
        return _emit(state, EphemeralPost(user_id=event.user_id, text=refusal))
    assert ask is not None  # _refuse_hosts_click checked it
    if now >= ask.expires_at:
        text = "That card had expired, so the hosts stay blocked."
        return _emit(expire(state, now), EphemeralPost(user_id=event.user_id, text=text))
    if isinstance(event, KeepBlocked):
        return _after_result(_release(state, "kept", event.user_id, now))
    return _allow_and_rerun(state, event.user_id, now)


def _refuse_hosts_click(state: ConversationState, user_id: str, run_id: str) -> str | None:
    ask = state.hosts_ask
    if state.phase is not Phase.AWAITING_HOSTS or ask is None or ask.run_id != run_id or ask.status != "open":
        return "This card is no longer current, so nothing was changed."
    if user_id not in ask.approvers:
        return _only_approvers(state, "allow hosts for")
    return None


def _allow_and_rerun(state: ConversationState, user_id: str, now: datetime) -> ConversationState:
    """Allow the hosts in this thread; the click is also `user_id`'s approval of the same code."""
    ask = state.hosts_ask
    assert ask is not None
    state = _close_ask(state, "allowed", user_id, now)
    state = state.evolve(egress=state.egress.allowing(ask.hosts))
    run = _new_run(state, ask.blocks, now).evolve(status="approved", decided_by=user_id)
    return _to(_with_run(state, run).evolve(run_seq=state.run_seq + 1), Phase.RUNNING)


def expire(state: ConversationState, now: datetime) -> ConversationState:
    """Nobody decided on blocked hosts within the approval TTL: they stay blocked, the assistant goes on.

    The same state object when nothing expired (the driver calls this at the start of every step).
    """
    ask = state.hosts_ask
    if state.phase is not Phase.AWAITING_HOSTS or ask is None or ask.status != "open" or now < ask.expires_at:
        return state
    return _after_result(_release(state, "expired", None, now))


def _release(state: ConversationState, outcome: str, user_id: str | None, now: datetime) -> ConversationState:
    """Close the open card as `outcome`; the held result, with the blocked line, joins the transcript."""
    ask = state.hosts_ask
    assert ask is not None
    state = _close_ask(state, outcome, user_id, now)
    return _append_execution(
        state, f"{ask.held}\n{kept_blocked_line(ask.hosts, expired=outcome == 'expired')}"
    )


def _close_ask(
    state: ConversationState, outcome: str, user_id: str | None, now: datetime
) -> ConversationState:
    ask = state.hosts_ask
    assert ask is not None
    decision = HostsDecision.model_validate({"outcome": outcome, "user_id": user_id, "at": now})
    closed = ask.closed(decision.outcome, user_id)
    return _emit(_with_ask(state, closed), _hosts_card(ask, decision), update_ref=f"hosts:{ask.run_id}")


def _hosts_card(ask: HostsAsk, decision: HostsDecision | None = None) -> HostsPost:
    return HostsPost(
        run_id=ask.run_id,
        code_hash=ask.code_hash,
        hosts=ask.hosts,
        approvers=ask.approvers,
        expires_at=ask.expires_at,
        decision=decision,
    )


def _result_post(run: PendingRun, result: CodeResult, names: tuple[str, ...]) -> ResultPost:
    return ResultPost(
        run_id=run.run_id,
        exit_code=result.exit_code,
        output=result.output,
        timed_out=result.timed_out,
        output_truncated=result.output_truncated,
        artifact_names=names,
        egress=result.egress,
        run_all=run.by_run_all,
    )


def on_run_interrupted(state: ConversationState, now: datetime) -> ConversationState:
    """A run was started but its worker died: never run it again on our own; ask a person."""
    assert state.run is not None
    text = "The last run was interrupted before it finished (its worker stopped), so it was not repeated."
    blocks = state.run.blocks
    state = _emit(state, NoticePost(text=text, level="warning"))
    return _propose_run(state, blocks, now)


def on_sandbox_error(state: ConversationState, reason: str, now: datetime) -> ConversationState:
    """The sandbox could not run the code at all: say why and offer the same code again."""
    assert state.run is not None
    text = f"The code could not be run: {reason} Press Run again once that is fixed."
    blocks = state.run.blocks
    state = _emit(state, NoticePost(text=text, level="error"))
    return _propose_run(state, blocks, now)


def on_engine_down(state: ConversationState, now: datetime, *, elsewhere: bool) -> ConversationState:
    """The engine holding the workspace does not answer: say so plainly and offer the same code again,
    with *Continue on another engine* when there is another (`elsewhere`); else people wait for it."""
    assert state.run is not None
    name = state.sandbox_engine
    text = f"The Docker engine `{name}` that holds this conversation's files is not answering, so the code "
    text += "did not run. Press *Run* to try again once it is back"
    text += ", or *Continue on another engine* to go on now in a new, empty workspace." if elsewhere else "."
    blocks = state.run.blocks
    state = _emit(state, NoticePost(text=text, level="error"))
    return _propose_run(state, blocks, now, engine_down=name if elsewhere else "")


def on_files_imported(
    state: ConversationState, names: tuple[str, ...], problems: tuple[str, ...]
) -> ConversationState:
    """Shared files are in the workspace: tell the assistant their names (and the people any problem)."""
    for problem in problems:
        state = _emit(state, NoticePost(text=problem, level="warning"))
    note = "Files shared in the thread are in the working directory: " + ", ".join(names)
    if names:
        message = Message(speaker=state.policy.proxy_name, role="user", content=note, kind="auto")
        state = state.evolve(transcript=(*state.transcript, message))
    state = state.evolve(
        pending_files=(), workspace_files=tuple(dict.fromkeys((*state.workspace_files, *names)))
    )
    return speakers.next_turn(state)


def on_failure(state: ConversationState, text: str) -> ConversationState:
    """Something unexpected failed in this step: tell the thread and hand the turn to the humans."""
    return _to(_emit(state, NoticePost(text=text, level="error")), Phase.AWAITING_HUMAN)


# ---------------------------------------------------------------- helpers


def _propose_run(
    state: ConversationState, blocks: tuple[CodeBlock, ...], now: datetime, *, engine_down: str = ""
) -> ConversationState:
    run = _new_run(state, blocks, now).evolve(engine_down=engine_down)
    state = _with_run(state, run).evolve(run_seq=state.run_seq + 1)
    return _to(_emit(state, _card(state, run), ref=f"card:{run.run_id}"), Phase.AWAITING_APPROVAL)


def _card(state: ConversationState, run: PendingRun, decision: Decision | None = None) -> ApprovalPost:
    """The approval card of `run`: with buttons until `decision`, then showing who decided."""
    return ApprovalPost(
        run_id=run.run_id,
        code_hash=run.code_hash,
        blocks=run.blocks,
        requested_by=run.requested_by,
        approvers=run.approvers,
        expires_at=run.expires_at,
        decision=decision,
        network=network_line(state.egress),
        editable=editable_code(run.blocks) is not None,
        engine_down=run.engine_down,
    )


def _new_run(state: ConversationState, blocks: tuple[CodeBlock, ...], now: datetime) -> PendingRun:
    return PendingRun(
        run_id=f"r{state.run_seq + 1}",
        blocks=blocks,
        code_hash=code_hash(blocks),
        requested_by=state.starter_id,
        approvers=state.policy.approvers,
        created_at=now,
        expires_at=now + timedelta(seconds=state.policy.approval_ttl_seconds),
    )


def code_hash(blocks: tuple[CodeBlock, ...]) -> str:
    """A short hash of the exact code: a click must name the code it approves."""
    digest = hashlib.sha256()
    for block in blocks:
        digest.update(f"{block.language}\0{block.filename or ''}\0{block.code}\0".encode())
    return digest.hexdigest()[:16]


def _decide(
    state: ConversationState, outcome: RunOutcome, user_id: str | None, now: datetime
) -> ConversationState:
    run = state.run
    assert run is not None
    decided = run.evolve(status=_RUN_STATUS[outcome], decided_by=user_id)
    decision = Decision(outcome=outcome, user_id=user_id, at=now)
    card = _card(state, run, decision)
    return _emit(_with_run(state, decided), card, update_ref=f"card:{run.run_id}")


def _with_run(state: ConversationState, run: PendingRun) -> ConversationState:
    return state.evolve(run=run)


def _with_ask(state: ConversationState, ask: HostsAsk) -> ConversationState:
    return state.evolve(hosts_ask=ask)


def _append(state: ConversationState, message: Message) -> ConversationState:
    return state.evolve(transcript=(*state.transcript, message))


def _limit_text(policy: Policy) -> str:
    return f"Reached max_consecutive_auto_reply ({policy.max_consecutive_auto_reply})."
