"""Agent teams in the pure engine: group chats (round robin, auto, manual), hierarchies, budget."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentbot.conversation import delegation, engine, speakers
from agentbot.conversation.code import CodeResult
from agentbot.conversation.events import Delegated, HumanMessage, PickSpeaker, Start, Stop, SubTeamUpdate
from agentbot.conversation.llm import Completion
from agentbot.conversation.posts import (
    AgentPost,
    ApprovalPost,
    EphemeralPost,
    MeterPost,
    NoticePost,
    Post,
    ReportPost,
    SpeakerChoicePost,
    SubTeamPost,
)
from agentbot.conversation.state import ConversationKey, ConversationState, Phase, Policy
from agentbot.conversation.team import Agent, Team, TeamChoice

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
KEY = ConversationKey(team_id="T1", channel_id="C1", thread_ts="1714564800.000100")
STARTER = "U_ANA"
POLICY = Policy(system_message="You write code.")


def agent(name: str, **fields: object) -> Agent:
    return Agent.model_validate({"name": name, "description": f"the {name}", **fields})


def group(selection: str = "round_robin", max_round: int = 10, **fields: object) -> Team:
    agents = (
        agent("planner", model="gpt-4o", icon=":memo:"),
        agent("coder", may_propose_code=True),
        agent("critic"),
    )
    return Team.model_validate(
        {"name": "trio", "pattern": "group_chat", "agents": agents, "speaker_selection": selection,
         "max_round": max_round, **fields}
    )  # fmt: skip


def pm() -> Team:
    def specialist(name: str) -> Team:
        return Team(pattern="group_chat", agents=(agent(f"{name}_planner"),), max_round=1, description=name)

    return Team(
        name="pm",
        pattern="hierarchical",
        lead=agent("manager", system_message="You manage projects."),
        subteams={name: specialist(name) for name in ("timeline", "budget", "staffing")},
    )


def started(team: Team | None, text: str = "Plan the launch", policy: Policy = POLICY) -> ConversationState:
    event = Start(event_id="e1", user_id=STARTER, user_name="Ana", text=text)
    state = engine.apply(None, KEY, event, policy, NOW, choice=TeamChoice(team=team))
    assert state is not None
    return state


def act(state: ConversationState, event: object) -> ConversationState:
    after = engine.apply(state, KEY, event, POLICY, NOW)  # type: ignore[arg-type]  # any event type
    assert after is not None
    return after


def human(text: str) -> HumanMessage:
    return HumanMessage(event_id="e-h", user_id=STARTER, user_name="Ana", text=text)


def completion(content: str, cost: float | None = 0.01, model: str = "m") -> Completion:
    return Completion(content=content, model=model, prompt_tokens=10, completion_tokens=5, cost_usd=cost)


def speak(state: ConversationState, content: str, cost: float | None = 0.01) -> tuple[str, ConversationState]:
    """The agent the engine asks for next, and the state after it said `content`."""
    action = engine.next_action(state)
    assert isinstance(action, engine.CallLLM), action
    return action.speaker, engine.on_reply(state, completion(content, cost), NOW)


def posts(state: ConversationState, kind: type[Post]) -> list[Post]:
    return [item.post for item in state.outbox if isinstance(item.post, kind)]


def notices(state: ConversationState) -> list[str]:
    return [post.text for post in posts(state, NoticePost) if isinstance(post, NoticePost)]


# ---------------------------------------------------------------- round robin and max_round


def test_round_robin_gives_the_word_in_order_until_max_round() -> None:
    state = started(group(max_round=5))
    order = []
    for n in range(5):
        speaker, state = speak(state, f"message {n}")
        order.append(speaker)
    assert order == ["planner", "coder", "critic", "planner", "coder"]
    assert [m.speaker for m in state.transcript] == ["Ana", *order]
    assert state.phase is Phase.AWAITING_HUMAN
    assert notices(state)[-1] == "Reached max_round (5). Reply in the thread to continue."


def test_max_round_in_never_mode_ends_the_chat() -> None:
    state = started(group(max_round=2, human_input_mode="NEVER"))
    _, state = speak(state, "one")
    _, state = speak(state, "two")
    assert state.phase is Phase.FINISHED
    assert notices(state)[-1].startswith("Reached max_round (2). Conversation ended.")


def test_max_round_counts_again_after_a_person_speaks() -> None:
    state = started(group(max_round=2))
    _, state = speak(state, "one")
    _, state = speak(state, "two")
    state = act(state, human("go on"))
    speaker, state = speak(state, "three")
    assert (speaker, state.phase) == ("critic", Phase.THINKING)


def test_termination_hands_the_word_to_the_people() -> None:
    state = started(group())
    _, state = speak(state, "Plan: ship Friday. TERMINATE")
    assert state.phase is Phase.AWAITING_HUMAN


# ---------------------------------------------------------------- what each agent sees, says, and uses


def test_agent_messages_carry_their_speaker_name_and_icon() -> None:
    _, state = speak(started(group()), "I plan.")
    assert posts(state, AgentPost) == [
        AgentPost(speaker="planner", text="I plan.", icon=":memo:", plan_ref="plan:0")
    ]


def test_each_agent_sees_its_own_messages_as_assistant_and_the_others_by_name() -> None:
    state = started(group())
    _, state = speak(state, "I plan.")
    _, state = speak(state, "I code.")
    action = engine.next_action(state)
    assert isinstance(action, engine.CallLLM) and action.speaker == "critic"
    system, *rest = action.messages
    assert system.content.startswith(
        "the critic\n\nYou are critic, in a group chat with planner (the planner)"
    )
    assert [(m.role, m.name) for m in rest] == [("user", "Ana"), ("user", "planner"), ("user", "coder")]
    _, state = speak(state, "Looks fine.")
    action = engine.next_action(state)
    assert isinstance(action, engine.CallLLM) and action.speaker == "planner"
    assert [m.role for m in action.messages[1:]] == ["user", "assistant", "user", "user"]


def test_each_agent_is_called_with_its_own_model() -> None:
    state = started(group())
    first = engine.next_action(state)
    _, state = speak(state, "I plan.")
    second = engine.next_action(state)
    assert isinstance(first, engine.CallLLM) and isinstance(second, engine.CallLLM)
    assert (first.model, second.model) == ("gpt-4o", None)


def test_code_from_an_agent_that_may_propose_code_is_proposed_and_its_author_sees_the_result() -> None:
    state = started(group(code_approval="never"))
    _, state = speak(state, "Coder, compute it.")
    speaker, state = speak(state, "```python\nprint(42)\n```")
    assert (speaker, state.phase) == ("coder", Phase.RUNNING)
    state = engine.on_run_started(state)
    state = engine.on_run_result(state, CodeResult(exit_code=0, output="42\n"), NOW)
    speaker, state = speak(state, "It prints 42.")
    assert speaker == "coder"  # not the critic: the author of the code reads its result first
    assert state.transcript[-2].speaker == "user_proxy"


def test_code_from_an_agent_that_may_not_propose_code_is_just_text() -> None:
    state = started(group())
    _, state = speak(state, "```python\nprint('planner code')\n```")
    assert state.run is None and not posts(state, ApprovalPost)
    assert state.phase is Phase.THINKING


def test_a_two_agent_team_names_its_assistant_and_proxy() -> None:
    team = Team(
        agents=(agent("analyst", may_propose_code=True, model="o3", system_message="Analyse."),),
        proxy_name="runner",
    )
    state = started(team)
    action = engine.next_action(state)
    assert action == engine.CallLLM(messages=engine.llm_messages(state), model="o3", speaker="analyst")
    assert action.messages[0].content == "Analyse."
    state = engine.on_reply(state, completion("```python\nprint(1)\n```"), NOW)
    assert state.phase is Phase.AWAITING_APPROVAL
    assert state.policy.proxy_name == "runner"


def test_a_team_choice_notice_is_said_in_the_thread() -> None:
    event = Start(event_id="e1", user_id=STARTER, text="hi")
    choice = TeamChoice(team=None, notice="There is no team called “x”.")
    state = engine.apply(None, KEY, event, POLICY, NOW, choice=choice)
    assert state is not None
    assert notices(state) == ["There is no team called “x”."]


# ---------------------------------------------------------------- auto: the model chooses


def test_auto_selection_asks_the_model_with_autogen_prompt_then_the_chosen_agent_speaks() -> None:
    state = started(group("auto"))
    action = engine.next_action(state)
    assert isinstance(action, engine.SelectSpeaker)
    assert action.messages[0].content.startswith(
        "You are in a role play game. The following roles are available:"
    )
    assert "planner: the planner" in action.messages[0].content
    assert action.messages[-1].content.endswith(
        "['planner', 'coder', 'critic'] to play. Only return the role."
    )
    state = speakers.on_selection(state, completion("critic", cost=0.002))
    speaker, state = speak(state, "Careful.")
    assert speaker == "critic"
    assert state.usage["m"].calls == 2  # the selection is paid for too
    assert isinstance(engine.next_action(state), engine.SelectSpeaker)  # chosen again each round


def test_auto_selection_that_names_nobody_valid_falls_back_to_round_robin_with_a_notice() -> None:
    state = started(group("auto"))
    state = speakers.on_selection(state, completion("The product owner should speak."))
    speaker, state = speak(state, "I plan.")
    assert speaker == "planner"
    [warning] = [p for p in posts(state, NoticePost) if isinstance(p, NoticePost) and p.level == "warning"]
    assert warning.text == (
        "The speaker selector answered “The product owner should speak.”, which names none of "
        "planner, coder, critic; falling back to round robin: planner speaks next."
    )


@pytest.mark.parametrize(
    ("reply", "chosen"),
    [
        pytest.param("critic", "critic", id="bare"),
        pytest.param("  `Critic`.\n", "critic", id="quoted_any_case"),
        pytest.param("The next role is coder.", "coder", id="in_a_sentence"),
        pytest.param("planner or coder", None, id="two_named"),
        pytest.param("criticism", None, id="part_of_a_word"),
        pytest.param("", None, id="empty"),
    ],
)
def test_parse_choice(reply: str, chosen: str | None) -> None:
    assert speakers.parse_choice(reply, ("planner", "coder", "critic")) == chosen


# ---------------------------------------------------------------- manual: people pick


def test_manual_selection_waits_for_a_pick_then_the_picked_agent_speaks() -> None:
    state = started(group("manual"))
    assert state.phase is Phase.AWAITING_PICK
    assert isinstance(engine.next_action(state), engine.Wait)
    [card] = posts(state, SpeakerChoicePost)
    assert isinstance(card, SpeakerChoicePost)
    assert ([o.name for o in card.options], card.pick_id, card.suggested) == (
        ["planner", "coder", "critic"],
        "p1",
        "planner",
    )
    state = act(state, PickSpeaker(event_id="e2", user_id="U_BO", pick_id="p1", speaker="critic"))
    update = state.outbox[-1]
    assert update.update_ref == "pick:p1"
    assert isinstance(update.post, SpeakerChoicePost) and (update.post.chosen, update.post.chosen_by) == (
        "critic",
        "U_BO",
    )
    speaker, state = speak(state, "Hmm.")
    assert speaker == "critic"
    assert state.phase is Phase.AWAITING_PICK  # and the people pick again
    assert state.outbox[-1].ref == "pick:p2"


@pytest.mark.parametrize(
    ("pick_id", "speaker", "refusal"),
    [
        pytest.param("p0", "critic", "This choice is no longer current.", id="stale_card"),
        pytest.param("p1", "boss", "No agent is called boss.", id="unknown_agent"),
    ],
)
def test_manual_pick_is_checked_against_the_open_card(pick_id: str, speaker: str, refusal: str) -> None:
    state = started(group("manual"))
    after = act(state, PickSpeaker(event_id="e2", user_id="U_BO", pick_id=pick_id, speaker=speaker))
    assert after.phase is Phase.AWAITING_PICK
    assert after.outbox[-1].post == EphemeralPost(user_id="U_BO", text=refusal)


def test_a_reply_in_manual_mode_that_addresses_nobody_keeps_the_card_open() -> None:
    state = act(started(group("manual")), human("more context: the launch is in May"))
    assert state.phase is Phase.AWAITING_PICK and state.transcript[-1].content.startswith("more context")


# ---------------------------------------------------------------- people address agents


@pytest.mark.parametrize(
    ("text", "agent"),
    [
        pytest.param("critic: look again", "critic", id="colon"),
        pytest.param("@critic look again", "critic", id="at"),
        pytest.param("Critic, look again", "critic", id="comma_any_case"),
        pytest.param("@critic", "critic", id="only_the_name"),
        pytest.param("note: critic should look", None, id="not_an_agent"),
        pytest.param("critics: look", None, id="longer_word"),
        pytest.param("please, critic: look", None, id="not_at_the_start"),
    ],
)
def test_addressed_agent(text: str, agent: str | None) -> None:
    assert speakers.addressed(started(group()), text) == agent


def test_a_reply_addressed_to_an_agent_gives_it_the_word_out_of_order() -> None:
    state = started(group())
    _, state = speak(state, "I plan.")  # round robin would give the word to the coder next
    state = act(state, human("critic: is this plan sound?"))
    speaker, _ = speak(state, "Mostly.")
    assert speaker == "critic"


def test_a_reply_addressed_to_an_agent_answers_an_open_pick_card() -> None:
    state = act(started(group("manual")), human("@coder write it"))
    assert state.phase is Phase.THINKING
    update = state.outbox[-1]
    assert update.update_ref == "pick:p1"
    assert isinstance(update.post, SpeakerChoicePost) and (update.post.chosen, update.post.chosen_by) == (
        "coder",
        None,
    )
    assert speak(state, "ok")[0] == "coder"


# ---------------------------------------------------------------- budget and meter


def test_the_cost_meter_is_posted_once_then_updated() -> None:
    state = started(group(max_cost_usd=1.0))
    _, state = speak(state, "one", cost=0.1)
    _, state = speak(state, "two", cost=0.2)
    meters = [(i.ref, i.update_ref, i.post) for i in state.outbox if isinstance(i.post, MeterPost)]
    assert [(ref, update) for ref, update, _ in meters] == [("meter", None), (None, "meter")]
    last = meters[-1][2]
    assert isinstance(last, MeterPost)
    assert last.spent_usd == pytest.approx(0.3)
    assert (last.budget_usd, last.tokens) == (1.0, 30)


def test_the_budget_stops_a_group_chat_when_spent() -> None:
    state = started(group(max_cost_usd=0.25))
    _, state = speak(state, "one", cost=0.1)
    _, state = speak(state, "two", cost=0.1)
    assert state.phase is Phase.THINKING
    _, state = speak(state, "three", cost=0.1)
    assert state.phase is Phase.FINISHED
    assert notices(state)[-1].startswith("The cost budget of $0.25 is spent. Conversation ended.")


def test_no_meter_without_a_team_or_budget() -> None:
    _, state = speak(started(None), "Which range?")
    assert not posts(state, MeterPost)


# ---------------------------------------------------------------- hierarchical delegation


DELEGATING = (
    "On it.\nDELEGATE timeline: plan 3 months\nDELEGATE **budget**: estimate $ for 4 people\nDone soon."
)


def delegated() -> ConversationState:
    state = started(pm(), policy=POLICY.model_copy(update={"max_cost_usd": 1.0}))
    speaker, state = speak(state, DELEGATING, cost=0.1)
    assert speaker == "manager"
    return state


def test_the_lead_is_told_its_sub_teams_and_how_to_delegate() -> None:
    state = started(pm())
    system = engine.llm_messages(state)[0].content
    assert system.startswith("You manage projects.\n\nYou lead a team.")
    assert "- timeline: timeline\n- budget: budget\n- staffing: staffing" in system


def test_delegate_lines_open_one_collapsed_card_per_sub_task_and_launch_sub_conversations() -> None:
    state = delegated()
    assert state.phase is Phase.DELEGATING
    cards = [(i.ref, i.post) for i in state.outbox if isinstance(i.post, SubTeamPost)]
    assert [(ref, p.subteam, p.task, p.status) for ref, p in cards if isinstance(p, SubTeamPost)] == [
        ("sub:d1", "timeline", "plan 3 months", "pending"),
        ("sub:d2", "budget", "estimate $ for 4 people", "pending"),
    ]
    action = engine.next_action(state)
    assert isinstance(action, engine.Delegate)
    first, second = action.launches
    assert first.key.thread_ts == "1714564800.000100~d1-timeline"
    assert (first.event.task, first.event.team.name, first.event.lead) == (
        "plan 3 months",
        "timeline",
        "manager",
    )
    assert first.event.max_cost_usd == pytest.approx(0.45)  # the budget left, shared by the two
    assert second.event.team.names == ("budget_planner",)
    state = delegation.on_launched(state)
    assert state.phase is Phase.AWAITING_SUBTEAMS
    assert isinstance(
        engine.next_action(state), engine.Wait
    )  # the lead's conversation waits, no process does


def run_sub(launch: object, reply: str, cost: float | None = 0.05) -> ConversationState:
    """A sub-team's own conversation, from its start event to its end."""
    assert hasattr(launch, "key") and hasattr(launch, "event")
    sub = engine.apply(None, launch.key, launch.event, POLICY, NOW)
    assert sub is not None
    speaker, sub = speak(sub, reply, cost=cost)
    assert speaker == launch.event.team.names[0]
    return sub


def forward(parent: ConversationState, sub: ConversationState) -> ConversationState:
    for item in sub.outbox:
        update = SubTeamUpdate(
            event_id=f"u{item.item_id}",
            user_id=STARTER,
            sub_id=sub.sub_id,
            item_id=item.item_id,
            post=item.post,
        )
        parent = act(parent, update)
    return parent


def test_sub_teams_work_on_their_own_and_report_their_result() -> None:
    action = engine.next_action(delegated())
    assert isinstance(action, engine.Delegate)
    sub = run_sub(action.launches[0], "Month 1 design, month 2 build, month 3 launch.")
    assert sub.parent == KEY and sub.policy.human_input_mode == "NEVER"
    assert sub.transcript[0].speaker == "manager"
    assert sub.phase is Phase.FINISHED  # max_round 1
    report = sub.outbox[-1].post
    assert isinstance(report, ReportPost)
    assert (report.outcome, report.summary, report.cost_usd) == (
        "done",
        "Month 1 design, month 2 build, month 3 launch.",
        0.05,
    )


def test_sub_team_results_come_back_to_the_lead_who_then_integrates_them() -> None:
    state = delegated()
    action = engine.next_action(state)
    assert isinstance(action, engine.Delegate)
    state = delegation.on_launched(state)
    timeline = run_sub(action.launches[0], "Three months.")
    budget = run_sub(action.launches[1], "$120k.")
    state = forward(state, timeline)
    assert state.phase is Phase.AWAITING_SUBTEAMS  # the budget sub-team is still at work
    card = state.outbox[-1]
    assert card.update_ref == "sub:d1"
    assert isinstance(card.post, SubTeamPost) and (card.post.status, card.post.summary) == (
        "done",
        "Three months.",
    )
    assert card.post.lines == ("timeline_planner: Three months.",)
    state = forward(state, budget)
    assert state.phase is Phase.THINKING
    speaker, state = speak(state, "Plan: three months, $120k. TERMINATE")
    assert speaker == "manager"
    results = [m.content for m in state.transcript if m.kind == "subteam"]
    assert results == [
        "Result from sub-team timeline (task: plan 3 months):\nThree months.",
        "Result from sub-team budget (task: estimate $ for 4 people):\n$120k.",
    ]
    assert state.usage["sub-team budget"].cost_usd == 0.05
    assert state.total_cost_usd == pytest.approx(0.1 + 0.05 + 0.05 + 0.01)


def test_a_sub_teams_unknown_cost_reaches_its_lead() -> None:
    action = engine.next_action(delegated())
    assert isinstance(action, engine.Delegate)
    state = delegation.on_launched(delegated())
    state = forward(state, run_sub(action.launches[0], "Three months.", cost=None))
    usage = state.usage["sub-team timeline"]
    assert usage.unpriced_calls == 1 and usage.cost_usd == 0.0
    assert not state.cost_known and "cost unknown" in engine.usage_text(state)


def test_a_sub_team_update_delivered_twice_counts_once() -> None:
    state = delegation.on_launched(delegated())
    action = engine.next_action(delegated())
    assert isinstance(action, engine.Delegate)
    sub = run_sub(action.launches[0], "Three months.")
    state = forward(forward(state, sub), sub)
    assert [m.kind for m in state.transcript].count("subteam") == 1


def test_a_sub_team_whose_model_fails_reports_the_failure_to_the_lead() -> None:
    action = engine.next_action(delegated())
    assert isinstance(action, engine.Delegate)
    sub = engine.apply(None, action.launches[0].key, action.launches[0].event, POLICY, NOW)
    assert sub is not None
    sub = engine.on_llm_error(sub, "The model (m) is rate-limited (429).")
    assert sub.phase is Phase.FINISHED
    report = sub.outbox[-1].post
    assert isinstance(report, ReportPost) and report.outcome == "failed"
    assert report.note.startswith("The assistant could not answer: The model (m) is rate-limited (429).")


def test_delegating_to_an_unknown_sub_team_tells_the_lead_the_known_ones() -> None:
    state = started(pm())
    _, state = speak(state, "DELEGATE marketing: plan ads")
    assert state.phase is Phase.THINKING and not state.delegations
    assert state.transcript[-1].content == (
        "There is no sub-team named marketing. The sub-teams are: timeline, budget, staffing. Delegate again."
    )


def test_stopping_the_lead_stops_the_sub_teams_still_at_work() -> None:
    state = delegation.on_launched(delegated())
    state = act(state, Stop(event_id="e-stop", user_id=STARTER))
    assert state.phase is Phase.FINISHED
    action = engine.next_action(state)
    assert isinstance(action, engine.CancelSubTeams)
    assert [k.thread_ts.split("~")[1] for k in action.keys] == ["d1-timeline", "d2-budget"]
    state = delegation.on_cancelled(state)
    assert [d.status for d in state.delegations] == ["cancelled", "cancelled"]
    assert isinstance(engine.next_action(state), engine.Wait)


def test_a_repeated_start_of_a_sub_team_changes_nothing() -> None:
    action = engine.next_action(delegated())
    assert isinstance(action, engine.Delegate)
    launch = action.launches[0]
    sub = engine.apply(None, launch.key, launch.event, POLICY, NOW)
    assert sub is not None
    assert engine.apply(sub, launch.key, launch.event, POLICY, NOW) == sub


# ---------------------------------------------------------------- stored state


def test_a_state_stored_before_teams_existed_still_loads() -> None:
    state = started(None)
    raw = state.model_dump(mode="json")
    for name in ("teamwork", "metered"):
        del raw[name]
    assert ConversationState.model_validate(raw) == state


def test_a_delegated_event_round_trips_as_json() -> None:
    action = engine.next_action(delegated())
    assert isinstance(action, engine.Delegate)
    event = action.launches[0].event
    assert Delegated.model_validate_json(event.model_dump_json()) == event
