"""AutoGen 0.2's function calling as engine moves: the caller proposes `tool_calls`, the executor runs them.

A round of calls goes through the same approval as code: a card with Run / Skip / Stop, the same
approvers, bound to a hash of the calls. Tools whose rule is `approve = "never"` run at once (unless
`human_input_mode` is ALWAYS). Each call is marked `running` before it starts and keeps its result in
the state; once every call of the round has one, the results join the transcript as `tool` messages
and the caller speaks again. `max_consecutive_auto_reply` counts tool rounds as it counts code runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from agentbot.conversation import speakers
from agentbot.conversation.actions import CallTool
from agentbot.conversation.llm import ToolCall, ToolSpec
from agentbot.conversation.moves import emit, finish, limit_reached, to
from agentbot.conversation.posts import (
    Decision,
    EphemeralPost,
    NoticePost,
    RunOutcome,
    ToolApprovalPost,
    ToolCallView,
    ToolResultPost,
)
from agentbot.conversation.prompts import tool_result_message
from agentbot.conversation.state import ConversationState, HumanInputMode, Message, Phase
from agentbot.conversation.tools import DECLINED, NOT_RUN, PendingToolCall, ToolRound, calls_hash

STOPPED = "The conversation was stopped before this call ran."
INTERRUPTED = (
    "The call to {names} was interrupted before it finished (its worker stopped), so it was not repeated."
)


# ---------------------------------------------------------------- the caller proposes


def on_tool_calls(
    state: ConversationState,
    speaker: str,
    calls: tuple[ToolCall, ...],
    offered: tuple[ToolSpec, ...],
    now: datetime,
) -> ConversationState:
    """A reply asked for `calls` of the `offered` tools: run those that need nobody, card the others."""
    specs = {spec.name: spec for spec in offered}
    past_limit = state.auto_replies >= state.policy.max_consecutive_auto_reply
    if past_limit and state.policy.human_input_mode is HumanInputMode.NEVER:
        return finish(state, _limit_text(state))
    pending = tuple(_pending(state, call, specs, ask=past_limit) for call in calls)
    tool_round = ToolRound(
        round_id=f"t{state.tool_seq + 1}",
        speaker=speaker,
        calls=pending,
        requested_by=state.starter_id,
        approvers=state.policy.approvers,
        created_at=now,
        expires_at=now + timedelta(seconds=state.policy.approval_ttl_seconds),
    )
    return _open(state.evolve(tool_seq=state.tool_seq + 1), tool_round)


def _pending(
    state: ConversationState, call: ToolCall, specs: dict[str, ToolSpec], *, ask: bool
) -> PendingToolCall:
    spec = specs.get(call.name)
    if spec is None:  # the model named a tool it was not offered: nothing runs, it hears why
        known = ", ".join(sorted(specs)) or "none"
        text = f"Error: there is no tool named {call.name!r} (tools: {known})."
        return PendingToolCall(call=call, source="", status="done", result=text, is_error=True)
    source = state.team.toolbox.get(spec.source) if state.team is not None else None
    approve = source.approval(call.name) if source is not None else "always"
    asked = approve == "always" or state.policy.human_input_mode is HumanInputMode.ALWAYS
    needs = ask or (asked and state.run_all_by is None)  # Run all in this thread covers tool calls too
    status = "awaiting_approval" if needs else "approved"
    return PendingToolCall(call=call, source=spec.source, server=spec.server, approve=approve, status=status)


def _open(state: ConversationState, tool_round: ToolRound) -> ConversationState:
    """A round with its card (when some call awaits approval), then on to what it needs next."""
    waiting = tool_round.having("awaiting_approval")
    if waiting:
        tool_round = tool_round.evolve(calls_hash=calls_hash(waiting))
        state = emit(state, _card(tool_round), ref=f"card:{tool_round.round_id}")
    return proceed(state.evolve(tool_round=tool_round))


def proceed(state: ConversationState) -> ConversationState:
    """Make the approved calls, else wait for the card, else feed every result back to the caller."""
    tool_round = state.tool_round
    assert tool_round is not None
    if tool_round.having("approved") or tool_round.having("running"):
        return to(state, Phase.CALLING_TOOLS)
    if tool_round.having("awaiting_approval"):
        return to(state, Phase.AWAITING_TOOLS)
    return _feed_back(state, tool_round)


def _feed_back(state: ConversationState, tool_round: ToolRound) -> ConversationState:
    """Every call has its result: they join the transcript (in call order) and the caller speaks."""
    state = _append_results(state, tool_round)
    if state.auto_replies >= state.policy.max_consecutive_auto_reply:
        return limit_reached(state, _limit_text(state))
    if speakers.group(state):
        state = state.evolve_team(next_speaker=tool_round.speaker)  # the caller sees its results first
    phase = Phase.IMPORTING if state.pending_files else Phase.THINKING
    return to(state.evolve(auto_replies=state.auto_replies + 1), phase)


def _append_results(state: ConversationState, tool_round: ToolRound) -> ConversationState:
    """One `tool` message per call, answering it by id; the round is closed."""
    proxy = state.policy.proxy_name
    results = tuple(
        Message(
            speaker=proxy,
            role="tool",
            content=tool_result_message(pending.result or NOT_RUN),
            kind="tool",
            tool_call_id=pending.call.id,
        )
        for pending in tool_round.calls
    )
    return state.evolve(transcript=(*state.transcript, *results), tool_round=None)


# ---------------------------------------------------------------- people decide


def current(state: ConversationState, run_id: str) -> bool:
    """Whether a click names this conversation's open tool round (rather than a code run)."""
    return state.tool_round is not None and state.tool_round.round_id == run_id


def on_approve(state: ConversationState, user_id: str, calls: str, now: datetime) -> ConversationState:
    """Run: the calls the card showed are approved (or, past the card's expiry, offered again)."""
    tool_round = state.tool_round
    refusal = _refusal(state, user_id)
    if refusal is None and tool_round is not None and calls != tool_round.calls_hash:
        refusal = "This card does not match the proposed calls, so nothing was run."
    if refusal is not None:
        return emit(state, EphemeralPost(user_id=user_id, text=refusal))
    assert tool_round is not None
    if now >= tool_round.expires_at:
        text = "That approval had expired, so here are the calls again."
        return reoffer(emit(state, NoticePost(text=text, level="warning")), now, old_card="expired")
    state = _decide(state, "approved", user_id, now)
    return proceed(_with_round(state, tool_round.with_status("awaiting_approval", "approved")))


def on_skip(state: ConversationState, user_id: str, now: datetime) -> ConversationState:
    """Skip: the model hears that the person declined each call the card showed."""
    refusal = _refusal(state, user_id)
    if refusal is not None:
        return emit(state, EphemeralPost(user_id=user_id, text=refusal))
    return proceed(decline(state, "skipped", user_id, now))


def decline(
    state: ConversationState, outcome: RunOutcome, user_id: str | None, now: datetime
) -> ConversationState:
    """Close the open card as `outcome`: its calls are declined (a reply, Skip or Stop instead of Run)."""
    tool_round = state.tool_round
    if tool_round is None or not tool_round.having("awaiting_approval"):
        return state
    text = STOPPED if outcome == "stopped" else DECLINED
    state = _decide(state, outcome, user_id, now)
    return _with_round(state, tool_round.with_status("awaiting_approval", "declined", text))


def on_stop(
    state: ConversationState, user_id: str, now: datetime, *, outcome: RunOutcome = "stopped"
) -> ConversationState:
    """Stop, or a reply instead of Run (`skipped`): nothing more runs; the results (declined) are kept.

    The round's results join the transcript, so the model sees each call answered before what follows.
    """
    if state.tool_round is None:
        return state
    state = decline(state, outcome, user_id, now)
    tool_round = state.tool_round
    assert tool_round is not None
    return _append_results(state, tool_round.with_status("approved", "declined", STOPPED))


def _refusal(state: ConversationState, user_id: str) -> str | None:
    tool_round = state.tool_round
    if tool_round is None or state.phase is not Phase.AWAITING_TOOLS:
        return "This card is no longer current, so nothing was run."
    if user_id not in tool_round.approvers:
        names = ", ".join(f"<@{user}>" for user in state.policy.approvers)
        return f"Only {names} can approve or skip runs in this conversation."
    return None


# ---------------------------------------------------------------- the executor side runs them


def next_call(state: ConversationState) -> CallTool | None:
    """The next approved call to make, in the order the model asked, with where its tool lives."""
    tool_round = state.tool_round
    if state.phase is not Phase.CALLING_TOOLS or tool_round is None or not tool_round.having("approved"):
        return None
    pending = tool_round.having("approved")[0]
    source = state.team.toolbox.get(pending.source) if state.team is not None else None
    return CallTool(pending=pending, source=source)


def on_call_started(state: ConversationState, call_id: str) -> ConversationState:
    """Mark the call `running` *before* it starts: a crash mid-call is never taken for 'not made yet'."""
    tool_round = state.tool_round
    pending = tool_round.find(call_id) if tool_round is not None else None
    if tool_round is None or pending is None:
        return state
    return _with_round(state, tool_round.replace(pending.evolve(status="running")))


def on_call_result(
    state: ConversationState, call_id: str, text: str, *, is_error: bool, now: datetime
) -> ConversationState:
    """The call returned (or failed, in words): keep its result, show it, go on with the round."""
    tool_round = state.tool_round
    pending = tool_round.find(call_id) if tool_round is not None else None
    if tool_round is None or pending is None:
        return state
    done = pending.evolve(status="done", result=text, is_error=is_error)
    state = _with_round(state, tool_round.replace(done))
    post = ToolResultPost(
        run_id=tool_round.round_id,
        call_id=call_id,
        name=pending.call.name,
        server=pending.server,
        text=text,
        is_error=is_error,
    )
    return proceed(emit(state, post))


def interrupted(state: ConversationState) -> tuple[PendingToolCall, ...]:
    """Calls marked `running` when a step begins: their worker died mid-call."""
    tool_round = state.tool_round
    if state.phase is not Phase.CALLING_TOOLS or tool_round is None:
        return ()
    return tool_round.having("running")


def on_interrupted(state: ConversationState, now: datetime) -> ConversationState:
    """A call was started but its worker died: never make it again on our own; offer it to a person."""
    names = ", ".join(pending.call.name for pending in interrupted(state))
    state = emit(state, NoticePost(text=INTERRUPTED.format(names=names), level="warning"))
    return reoffer(state, now)


def reoffer(
    state: ConversationState, now: datetime, *, old_card: RunOutcome = "superseded"
) -> ConversationState:
    """The round's unfinished calls (interrupted, or on an expired card) on a new card, under a new id.

    A card of the round still open is closed as `old_card` (replaced by the new one, or expired).
    """
    tool_round = state.tool_round
    assert tool_round is not None
    if tool_round.having("awaiting_approval") and tool_round.calls_hash:
        state = _decide(state, old_card, None, now)
    again = tool_round.with_status("running", "awaiting_approval").with_status(
        "approved", "awaiting_approval"
    )
    again = again.evolve(
        round_id=f"t{state.tool_seq + 1}",
        created_at=now,
        expires_at=now + timedelta(seconds=state.policy.approval_ttl_seconds),
        decided_by=None,
        calls_hash="",
    )
    return _open(state.evolve(tool_seq=state.tool_seq + 1), again)


# ---------------------------------------------------------------- helpers


def _decide(
    state: ConversationState, outcome: RunOutcome, user_id: str | None, now: datetime
) -> ConversationState:
    tool_round = state.tool_round
    assert tool_round is not None
    card = _card(tool_round, Decision(outcome=outcome, user_id=user_id, at=now))
    state = emit(state, card, update_ref=f"card:{tool_round.round_id}")
    return _with_round(state, tool_round.evolve(decided_by=user_id))


def _card(tool_round: ToolRound, decision: Decision | None = None) -> ToolApprovalPost:
    """The card of the calls awaiting approval (or, once decided, of those it showed)."""
    shown = tool_round.having("awaiting_approval") or tool_round.calls
    views = tuple(
        ToolCallView(call_id=p.call.id, name=p.call.name, server=p.server, arguments=p.pretty_arguments)
        for p in shown
    )
    return ToolApprovalPost(
        run_id=tool_round.round_id,
        code_hash=tool_round.calls_hash,
        speaker=tool_round.speaker,
        calls=views,
        requested_by=tool_round.requested_by,
        approvers=tool_round.approvers,
        expires_at=tool_round.expires_at,
        decision=decision,
    )


def _with_round(state: ConversationState, tool_round: ToolRound) -> ConversationState:
    return state.evolve(tool_round=tool_round)


def _limit_text(state: ConversationState) -> str:
    return f"Reached max_consecutive_auto_reply ({state.policy.max_consecutive_auto_reply})."
