"""Small state moves shared by the engine and its team patterns: emit a post, change phase, finish.

Two rules of agent teams live here, at the one place every path goes through: a sub-team's
conversation never waits for a person (nobody talks to it directly), and when it ends it reports its
result to its lead (a `ReportPost`, which the driver forwards instead of showing).
"""

from __future__ import annotations

from agentbot.conversation import plan
from agentbot.conversation.llm import Completion
from agentbot.conversation.posts import MeterPost, NoticePost, Post, ReportPost
from agentbot.conversation.state import (
    ConversationState,
    HumanInputMode,
    ModelUsage,
    OutboxItem,
    Phase,
)

_METER_REF = "meter"


def emit(
    state: ConversationState, post: Post, *, ref: str | None = None, update_ref: str | None = None
) -> ConversationState:
    """Queue `post` in the outbox (or, with `update_ref`, an update of the message remembered there)."""
    item = OutboxItem(item_id=state.next_item_id, post=post, ref=ref, update_ref=update_ref)
    return state.evolve(outbox=(*state.outbox, item), next_item_id=state.next_item_id + 1)


def to(state: ConversationState, phase: Phase) -> ConversationState:
    """The conversation in `phase`; a sub-team's that would wait for a person ends (and reports) instead."""
    if phase is Phase.AWAITING_HUMAN and state.parent is not None:
        return finish(state, "The sub-team stopped (it cannot ask people).")
    return plan.on_phase(state, phase).evolve(phase=phase)


def limit_reached(state: ConversationState, why: str) -> ConversationState:
    """A limit stops the automatic chat: the humans get the turn, or in NEVER mode (no humans) it ends."""
    if state.policy.human_input_mode is HumanInputMode.NEVER:
        return finish(state, why)
    text = f"{why} Reply in the thread to continue."
    return to(emit(state, NoticePost(text=text)), Phase.AWAITING_HUMAN)


def finish(state: ConversationState, why: str) -> ConversationState:
    """End the conversation with a notice and the usage summary (a sub-team also reports to its lead)."""
    errors = [i.post.text for i in state.outbox if isinstance(i.post, NoticePost) and i.post.level == "error"]
    text = f"{why} Conversation ended. {usage_text(state)}"
    state = to(emit(state, NoticePost(text=text)), Phase.FINISHED)
    return emit(state, _report(state, errors[-1] if errors else why, bool(errors))) if state.parent else state


def _report(state: ConversationState, note: str, failed: bool) -> ReportPost:
    usage = state.usage.values()
    return ReportPost(
        outcome="failed" if failed or not state.summary else "done",
        summary=state.summary,
        note=note,
        calls=sum(u.calls for u in usage),
        prompt_tokens=sum(u.prompt_tokens for u in usage),
        completion_tokens=sum(u.completion_tokens for u in usage),
        cost_usd=state.total_cost_usd,
        unpriced_calls=sum(u.unpriced_calls for u in usage),
    )


def usage_text(state: ConversationState) -> str:
    """Tokens and cost per model, like AutoGen's `ChatResult.cost`."""
    if not state.usage:
        return "No model calls."
    parts = [
        f"{model}: {u.calls} calls, {u.prompt_tokens + u.completion_tokens} tokens, {_cost_text(u)}"
        for model, u in sorted(state.usage.items())
    ]
    unknown = "" if state.cost_known else " + unknown"
    return "; ".join(parts) + f" (total ${state.total_cost_usd:.4f}{unknown})"


def _cost_text(usage: ModelUsage) -> str:
    if not usage.unpriced_calls:
        return f"${usage.cost_usd:.4f}"
    if usage.unpriced_calls == usage.calls:
        return "cost unknown (no price for this model)"
    return f"${usage.cost_usd:.4f} + unknown"


def add_usage(state: ConversationState, completion: Completion) -> ConversationState:
    """Count the tokens and cost of one model call."""
    usage = ModelUsage(
        calls=1,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        cost_usd=completion.cost_usd or 0.0,
        unpriced_calls=int(completion.cost_usd is None),
    )
    return add_model_usage(state, completion.model, usage)


def add_model_usage(state: ConversationState, name: str, more: ModelUsage) -> ConversationState:
    """Add `more` to the usage kept under `name` (a model, or a sub-team)."""
    before = state.usage.get(name, ModelUsage())
    after = ModelUsage(
        calls=before.calls + more.calls,
        prompt_tokens=before.prompt_tokens + more.prompt_tokens,
        completion_tokens=before.completion_tokens + more.completion_tokens,
        cost_usd=before.cost_usd + more.cost_usd,
        unpriced_calls=before.unpriced_calls + more.unpriced_calls,
    )
    return state.evolve(usage={**state.usage, name: after})


def meter(state: ConversationState) -> ConversationState:
    """Show the running cost (teams, or any conversation with a budget): one message, updated in place."""
    budget = state.policy.max_cost_usd
    if state.parent is not None or (budget is None and state.team is None):
        return state
    post = MeterPost(
        spent_usd=state.total_cost_usd,
        budget_usd=budget,
        tokens=state.total_tokens,
        cost_known=state.cost_known,
    )
    if state.metered:
        return emit(state, post, update_ref=_METER_REF)
    return emit(state.evolve(metered=True), post, ref=_METER_REF)


def over_budget(state: ConversationState) -> bool:
    """The budget is spent, or cannot be kept: a cap is never enforced against an unknown cost."""
    budget = state.policy.max_cost_usd
    return budget is not None and (state.total_cost_usd >= budget or not state.cost_known)


def budget_text(state: ConversationState) -> str:
    budget = f"${state.policy.max_cost_usd:.2f}"
    if not state.cost_known:
        unpriced = ", ".join(sorted(m for m, u in state.usage.items() if u.unpriced_calls))
        return (
            f"The cost budget of {budget} cannot be kept: the price of {unpriced} is unknown "
            '(give it a "price" in the config list).'
        )
    return f"The cost budget of {budget} is spent."


def mark_sent(state: ConversationState, item: OutboxItem, message_id: str) -> ConversationState:
    """`item` is shown: drop it from the outbox and remember its message id under its ref."""
    refs = dict(state.message_refs)
    if item.ref and message_id:
        refs[item.ref] = message_id
    outbox = tuple(other for other in state.outbox if other.item_id != item.item_id)
    return state.evolve(outbox=outbox, message_refs=refs)


def mark_sending(state: ConversationState, item: OutboxItem) -> ConversationState:
    """`item` is about to be sent: if we crash now, the next step looks for it before re-sending."""
    outbox = tuple(
        other.evolve(status="sending") if other.item_id == item.item_id else other for other in state.outbox
    )
    return state.evolve(outbox=outbox)
