"""Hierarchical teams: a lead hands sub-tasks to sub-teams and integrates what they report back.

lead: "DELEGATE budget: estimate the cost of ..."          (a line of the lead's message)
  -> Delegate action: the driver starts the sub-team's own conversation (its own state and steps,
     key `<thread_ts>~<sub_id>-<sub-team>`), with a `Delegated` event carrying the sub-team.
  -> the lead's conversation waits (AWAITING_SUBTEAMS): no process waits.
sub-team posts -> forwarded by the driver as `SubTeamUpdate` events to the lead's inbox; the lead's
     thread shows one message per sub-task that is updated as the sub-team works.
sub-team ends  -> its `ReportPost` becomes a message to the lead; when every sub-team has reported,
     the lead speaks again and integrates the results.
"""

from __future__ import annotations

import re
from datetime import datetime

from agentbot.conversation.actions import CancelSubTeams, Launch
from agentbot.conversation.events import Delegated, SubTeamUpdate
from agentbot.conversation.moves import add_model_usage, budget_text, emit, finish, meter, over_budget, to
from agentbot.conversation.posts import AgentPost, NoticePost, ReportPost, SubTeamPost
from agentbot.conversation.prompts import DELEGATION_INSTRUCTIONS, NO_SUCH_SUBTEAM
from agentbot.conversation.speakers import next_turn
from agentbot.conversation.state import (
    ConversationKey,
    ConversationState,
    Delegation,
    DelegationStatus,
    HumanInputMode,
    Message,
    ModelUsage,
    Phase,
    Policy,
)
from agentbot.conversation.team import Team

_DELEGATE = re.compile(
    r"^[ \t>*_`-]*DELEGATE[*_`]*[ \t]+(?:to[ \t]+)?[*_`]*@?([A-Za-z][\w-]*)[*_`]*[ \t]*:[ \t]*(.+)$",
    re.MULTILINE,
)
_LINES_SHOWN = 3
_LINE_CHARS = 200
_OPEN = ("pending", "running")


def hierarchy(state: ConversationState) -> Team | None:
    """The team, when the conversation is a hierarchy's lead."""
    team = state.team
    return team if team is not None and team.pattern == "hierarchical" else None


def team_policy(policy: Policy, team: Team | None) -> Policy:
    """The rules of a conversation of `team` (a lead's also say how to delegate)."""
    if team is None:
        return policy
    policy = policy.for_team(team)
    return lead_policy(policy, team) if team.pattern == "hierarchical" else policy


def lead_policy(policy: Policy, team: Team) -> Policy:
    """The lead's rules: its system message, followed by how to delegate to this team's sub-teams."""
    listed = "\n".join(
        f"- {name}: {sub.description or ', '.join(sub.names)}" for name, sub in team.subteams.items()
    )
    text = f"{policy.system_message.rstrip()}\n\n{DELEGATION_INSTRUCTIONS.format(subteams=listed)}"
    return policy.evolve(system_message=text)


def requested(content: str) -> list[tuple[str, str]]:
    """The `DELEGATE <sub-team>: <task>` lines of a message, in order."""
    return [(match.group(1), match.group(2).strip()) for match in _DELEGATE.finditer(content)]


# ---------------------------------------------------------------- the lead's side


def on_lead_reply(state: ConversationState, content: str) -> ConversationState | None:
    """The lead delegated: open one sub-task per line; None when the message delegates nothing."""
    team = hierarchy(state)
    asked = requested(content) if team is not None else []
    if team is None or not asked:
        return None
    names = {name.lower(): name for name in team.subteams}
    known = [(names[name.lower()], task) for name, task in asked if name.lower() in names]
    if not known:
        unknown = ", ".join(sorted({name for name, _ in asked}))
        note = NO_SUCH_SUBTEAM.format(names=unknown, known=", ".join(team.subteams))
        message = Message(speaker=state.policy.proxy_name, role="user", content=note, kind="auto")
        return to(state.evolve(transcript=(*state.transcript, message)), Phase.THINKING)
    for subteam, task in known:
        state = _open(state, subteam, task)
    return to(state, Phase.DELEGATING)


def _open(state: ConversationState, subteam: str, task: str) -> ConversationState:
    delegation = Delegation(sub_id=f"d{state.delegation_seq + 1}", subteam=subteam, task=task)
    state = state.evolve_team(
        delegations=(*state.delegations, delegation), delegation_seq=state.delegation_seq + 1
    )
    return emit(state, _card(state, delegation), ref=f"sub:{delegation.sub_id}")


def launches(state: ConversationState) -> tuple[Launch, ...]:
    """The sub-team conversations to start, each with an even share of the budget left."""
    team = hierarchy(state)
    pending = [d for d in state.delegations if d.status == "pending"]
    if team is None or not pending:
        return ()
    budget = state.policy.max_cost_usd
    share = max(budget - state.total_cost_usd, 0.0) / len(pending) if budget is not None else None
    return tuple(_launch(state, team, d, share) for d in pending)


def _launch(state: ConversationState, team: Team, d: Delegation, share: float | None) -> Launch:
    event = Delegated(
        event_id=f"{state.key.slug}-{d.sub_id}",
        user_id=state.starter_id,
        task=d.task,
        team=team.subteams[d.subteam].evolve(name=d.subteam),
        parent_thread=state.key.thread_ts,
        sub_id=d.sub_id,
        lead=state.policy.assistant_name,
        max_cost_usd=share,
    )
    return Launch(key=sub_key(state.key, d), event=event)


def sub_key(parent: ConversationKey, delegation: Delegation) -> ConversationKey:
    """Where a sub-team's conversation lives: beside its lead's, never shown in a thread of its own."""
    thread = f"{parent.thread_ts}~{delegation.sub_id}-{delegation.subteam}"
    return parent.evolve(thread_ts=thread)


def on_launched(state: ConversationState) -> ConversationState:
    """The sub-teams are started: the lead's conversation waits for their reports."""
    for d in state.delegations:
        if d.status == "pending":
            state = _replace(state, d.evolve(status="running"))
    return to(state, Phase.AWAITING_SUBTEAMS)


def on_update(state: ConversationState, event: SubTeamUpdate) -> ConversationState:
    """A sub-team said something (shown in its collapsed message) or reported its result."""
    d = next((d for d in state.delegations if d.sub_id == event.sub_id), None)
    if d is None or d.status not in _OPEN or event.item_id <= d.seen_item:
        return state  # unknown, already closed, or delivered twice
    d = d.evolve(seen_item=event.item_id)
    post = event.post
    if isinstance(post, ReportPost):
        return _integrate(state, d, post)
    line = _line(post)
    if line is None:
        return _replace(state, d, show=False)
    return _replace(state, d.evolve(lines=(*d.lines, line)[-_LINES_SHOWN:]))


def _line(post: object) -> str | None:
    if isinstance(post, AgentPost):
        return _short(f"{post.speaker}: {post.text}")
    if isinstance(post, NoticePost) and post.level != "info":
        return _short(f"⚠ {post.text}")
    return None


def _integrate(state: ConversationState, d: Delegation, report: ReportPost) -> ConversationState:
    status: DelegationStatus = "done" if report.outcome == "done" else "failed"
    d = d.evolve(status=status, summary=report.summary or report.note, cost_usd=report.cost_usd)
    usage = ModelUsage(
        calls=report.calls,
        prompt_tokens=report.prompt_tokens,
        completion_tokens=report.completion_tokens,
        cost_usd=report.cost_usd,
        unpriced_calls=report.unpriced_calls,
    )
    state = _replace(add_model_usage(state, f"sub-team {d.subteam}", usage), d)
    if state.phase is Phase.FINISHED:
        return state
    text = (
        f"Result from sub-team {d.subteam} (task: {d.task}):\n{report.summary}"
        if status == "done"
        else f"Sub-team {d.subteam} could not finish its task ({d.task}): {report.note}"
    )
    message = Message(speaker=d.subteam, role="user", content=text, kind="subteam")
    state = state.evolve(transcript=(*state.transcript, message))
    if any(other.status in _OPEN for other in state.delegations):
        return state
    state = meter(state)
    if over_budget(state):
        return finish(state, budget_text(state))
    return next_turn(state.evolve(auto_replies=0))


def cancellations(state: ConversationState) -> CancelSubTeams | None:
    """Sub-teams still at work after their lead's conversation ended: they are to be stopped."""
    open_ = [d for d in state.delegations if d.status in _OPEN]
    if state.phase is not Phase.FINISHED or not open_:
        return None
    return CancelSubTeams(keys=tuple(sub_key(state.key, d) for d in open_), user_id=state.starter_id)


def on_cancelled(state: ConversationState) -> ConversationState:
    """The open sub-teams were told to stop."""
    for d in state.delegations:
        if d.status in _OPEN:
            state = _replace(state, d.evolve(status="cancelled"))
    return state


def _replace(state: ConversationState, d: Delegation, *, show: bool = True) -> ConversationState:
    delegations = tuple(d if other.sub_id == d.sub_id else other for other in state.delegations)
    state = state.evolve_team(delegations=delegations)
    return emit(state, _card(state, d), update_ref=f"sub:{d.sub_id}") if show else state


def _card(state: ConversationState, d: Delegation) -> SubTeamPost:
    sub = state.team.subteams.get(d.subteam) if state.team is not None else None
    return SubTeamPost(
        sub_id=d.sub_id,
        subteam=d.subteam,
        task=d.task,
        status=d.status,
        members=sub.names if sub is not None else (),
        lines=d.lines,
        summary=d.summary,
        cost_usd=d.cost_usd,
        detail_thread=sub_key(state.key, d).thread_ts,
    )


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _LINE_CHARS else flat[: _LINE_CHARS - 1] + "…"


# ---------------------------------------------------------------- the sub-team's side


def start_sub(key: ConversationKey, event: Delegated, policy: Policy, now: datetime) -> ConversationState:
    """A sub-team's conversation: the task from its lead, on its own (NEVER), within its budget share."""
    rules = policy.for_team(event.team)
    caps = [cap for cap in (rules.max_cost_usd, event.max_cost_usd) if cap is not None]
    rules = rules.evolve(
        human_input_mode=HumanInputMode.NEVER,
        max_cost_usd=min(caps) if caps else None,
        approvers=(event.user_id,),
    )
    task = Message(speaker=event.lead, role="user", content=event.task, kind="human")
    state = ConversationState(
        key=key,
        created_at=now,
        updated_at=now,
        starter_id=event.user_id,
        policy=rules,
        transcript=(task,),
        team=event.team,
        parent=key.evolve(thread_ts=event.parent_thread),
        sub_id=event.sub_id,
    )
    return next_turn(state)
