"""A team's turns as a plan: one task per agent turn, in one message, until the team waits for people.

Group chats and hierarchies (never a sub-team, whose posts go to its lead) show their turns as the
tasks of a plan message instead of one message per agent. Each turn's `AgentPost` still goes into
the outbox, marked with the plan's ref: the driver posts it only when the platform could not show
the plan (the fallback), and a final answer is always posted in full. When the team waits for
people the plan is marked done, and the next turns start a new one below what people said.
"""

from __future__ import annotations

from agentbot.conversation.posts import PlanPost, PlanTask
from agentbot.conversation.state import ConversationState, OutboxItem, Phase

PLANNED_PATTERNS = ("group_chat", "hierarchical")
OUTPUT_CHARS = 200  # Slack shows at most 256 characters of a task's output and details
DETAILS_CHARS = 250
_WORKING = (Phase.THINKING, Phase.RUNNING, Phase.IMPORTING, Phase.DELEGATING)


def planned(state: ConversationState) -> bool:
    """Whether this conversation shows its turns as a plan."""
    team = state.team
    return team is not None and team.pattern in PLANNED_PATTERNS and state.parent is None


def plan_ref(state: ConversationState) -> str:
    """The name the open plan message is remembered under."""
    return f"plan:{state.teamwork.plan_seq}"


def on_turn(state: ConversationState, speaker: str, content: str) -> ConversationState:
    """Add `speaker`'s turn to the open plan (starting one if needed) and show it."""
    task = PlanTask(
        task_id=f"t{len(state.transcript)}",
        title=speaker,
        output=_short(content, OUTPUT_CHARS),
        details=_short(content, DETAILS_CHARS) if len(content) > OUTPUT_CHARS else "",
    )
    state = state.evolve_team(plan=(*state.teamwork.plan, task))
    return _show(state, done=False)


def on_phase(state: ConversationState, phase: Phase) -> ConversationState:
    """The team stops working on its own (it waits for people, or ends): the open plan is done."""
    if phase in _WORKING or not state.teamwork.plan:
        return state
    state = _show(state, done=True)
    return state.evolve_team(plan=(), plan_seq=state.teamwork.plan_seq + 1)


def _show(state: ConversationState, *, done: bool) -> ConversationState:
    """Queue the plan as it is now; a plan update not yet sent is replaced rather than repeated."""
    ref = plan_ref(state)
    title = f"{state.team.name if state.team else 'Team'}: {'done' if done else 'working'}"
    post = PlanPost(title=title, tasks=state.teamwork.plan, recipient=state.starter_id, done=done)
    for item in state.outbox:
        if ref in (item.ref, item.update_ref) and item.status == "pending" and item.post.kind == "plan":
            outbox = tuple(other.evolve(post=post) if other is item else other for other in state.outbox)
            return state.evolve(outbox=outbox)
    shown = ref in state.message_refs or any(item.ref == ref for item in state.outbox)
    item = OutboxItem(
        item_id=state.next_item_id, post=post, ref=None if shown else ref, update_ref=ref if shown else None
    )
    return state.evolve(outbox=(*state.outbox, item), next_item_id=state.next_item_id + 1)


def _short(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
