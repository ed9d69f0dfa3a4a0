"""A team's turns as a plan: one task per turn, the messages folded into it, closed when people act."""

from __future__ import annotations

from agentbot.conversation import engine
from agentbot.conversation.posts import AgentPost, PlanPost
from agentbot.conversation.state import ConversationState, Phase
from agentbot.conversation.team import Team
from tests.unit.test_team_engine import group, speak, started


def items(state: ConversationState, kind: str) -> list[tuple[str | None, str | None, object]]:
    return [(i.ref, i.update_ref, i.post) for i in state.outbox if i.post.kind == kind]


def test_each_turn_becomes_a_task_of_one_plan_and_the_message_is_its_fallback() -> None:
    state = started(group())
    _, state = speak(state, "I plan: first the budget, then the dates.")
    (first,) = items(state, "plan")
    assert first[0] == "plan:0" and first[1] is None
    plan = first[2]
    assert isinstance(plan, PlanPost) and not plan.done and plan.recipient == "U_ANA"
    assert [(t.title, t.status) for t in plan.tasks] == [("planner", "complete")]
    assert plan.tasks[0].output.startswith("I plan: first the budget")
    (agent,) = [post for *_, post in items(state, "agent")]
    assert isinstance(agent, AgentPost) and agent.plan_ref == "plan:0"

    state = engine.mark_sent(state, state.outbox[0], "1700000001.000200")  # the plan is up
    _, state = speak(state, "Critique: the dates are tight.")
    latest = items(state, "plan")[-1]
    assert latest[:2] == (None, "plan:0")  # an update of the same plan message
    assert isinstance(latest[2], PlanPost) and [t.title for t in latest[2].tasks] == ["planner", "coder"]


def test_updates_not_yet_sent_are_replaced_not_repeated() -> None:
    state = started(group())
    _, state = speak(state, "One.")
    _, state = speak(state, "Two.")
    plans = items(state, "plan")
    assert len(plans) == 1 and isinstance(plans[0][2], PlanPost) and len(plans[0][2].tasks) == 2


def test_when_the_team_waits_for_people_the_plan_is_done_and_the_answer_is_posted_in_full() -> None:
    state = started(group())
    _, state = speak(state, "Plan ready.")
    _, state = speak(state, "All done. TERMINATE")
    assert state.phase is Phase.AWAITING_HUMAN
    plan = items(state, "plan")[-1][2]
    assert isinstance(plan, PlanPost) and plan.done
    answer = [post for *_, post in items(state, "agent")][-1]
    assert isinstance(answer, AgentPost) and answer.plan_ref is None and answer.feedback_turn is not None
    assert state.teamwork.plan == () and state.teamwork.plan_seq == 1


def test_the_built_in_pair_shows_no_plan() -> None:
    state = started(None)
    _, state = speak(state, "Here is the answer. TERMINATE")
    assert items(state, "plan") == []


def test_a_sub_team_shows_no_plan() -> None:
    team: Team = group()
    state = started(team).evolve_team(parent=started(team).key.evolve(thread_ts="1"))
    _, state = speak(state, "Working.")
    assert items(state, "plan") == []
