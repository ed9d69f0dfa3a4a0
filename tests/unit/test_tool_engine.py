"""Tool calls in the pure engine: AutoGen 0.2's function calling under the thread's approval."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from agentbot.conversation import engine, speakers, toolcalls
from agentbot.conversation.events import Approve, Event, HumanMessage, Skip, Start, Stop
from agentbot.conversation.llm import Completion, ToolCall, ToolSpec
from agentbot.conversation.posts import (
    AgentPost,
    EphemeralPost,
    NoticePost,
    ToolApprovalPost,
    ToolResultPost,
)
from agentbot.conversation.state import ConversationKey, ConversationState, HumanInputMode, Phase, Policy
from agentbot.conversation.team import TeamChoice
from agentbot.conversation.tools import DECLINED, NOT_RUN
from agentbot.teams.config import read_presets

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
KEY = ConversationKey(team_id="T1", channel_id="C1", thread_ts="1714564800.000100")
ANA = "U_ANA"
EVE = "U_EVE"
STATS = "agentbot.tools.examples:summary_stats"
CHANGE = "agentbot.tools.examples:percent_change"
OFFERED = (
    ToolSpec(name="summary_stats", description="Summary statistics.", source=STATS),
    ToolSpec(name="percent_change", description="Percent change.", source=CHANGE),
)
STATS_CALL = ToolCall(id="call_1", name="summary_stats", arguments='{"numbers": [1, 2, 3]}')
CHANGE_CALL = ToolCall(id="call_2", name="percent_change", arguments='{"start": 10, "end": 12}')


def started(**policy: object) -> ConversationState:
    team = read_presets().teams["analyst"]
    event = Start(event_id="e1", user_id=ANA, user_name="Ana", text="Stats of 1, 2, 3 please")
    state = engine.apply(None, KEY, event, Policy.model_validate(policy), NOW, choice=TeamChoice(team=team))
    assert state is not None
    return state


def act(state: ConversationState, event: Event, now: datetime = NOW) -> ConversationState:
    after = engine.apply(state, KEY, event, state.policy, now)
    assert after is not None
    return after


def calls(*tool_calls: ToolCall, content: str = "") -> Completion:
    return Completion(
        content=content, model="m", prompt_tokens=10, completion_tokens=5, tool_calls=tool_calls
    )


def proposed(state: ConversationState, *tool_calls: ToolCall) -> ConversationState:
    return engine.on_reply(state, calls(*tool_calls), NOW, OFFERED)


def posts(state: ConversationState) -> list[object]:
    return [item.post for item in state.outbox]


def said(state: ConversationState) -> str:
    """The text of the last ephemeral line (what the person who clicked was told)."""
    post = posts(state)[-1]
    assert isinstance(post, EphemeralPost), post
    return post.text


def card(state: ConversationState) -> ToolApprovalPost:
    found = [p for p in posts(state) if isinstance(p, ToolApprovalPost) and p.decision is None]
    assert found, posts(state)
    return found[-1]


def run(state: ConversationState, text: str = "ok", *, is_error: bool = False) -> ConversationState:
    """The driver's part: take the next call, mark it running, keep its result."""
    action = engine.next_action(state)
    assert isinstance(action, engine.CallTool), action
    state = toolcalls.on_call_started(state, action.pending.call.id)
    assert state.tool_round is not None and state.tool_round.having("running")
    return toolcalls.on_call_result(state, action.pending.call.id, text, is_error=is_error, now=NOW)


def approve(state: ConversationState, user: str = ANA, *, code_hash: str | None = None) -> ConversationState:
    shown = card(state)
    return act(
        state,
        Approve(event_id="e-run", user_id=user, run_id=shown.run_id, code_hash=code_hash or shown.code_hash),
    )


# ---------------------------------------------------------------- offering and proposing


def test_the_speaker_is_offered_its_tools() -> None:
    action = engine.next_action(started())
    assert isinstance(action, engine.CallLLM)
    assert [source.name for source in action.tools] == [STATS, CHANGE]
    assert engine.next_action(started()) == action


def test_a_call_of_an_always_tool_waits_for_run_on_a_card() -> None:
    state = proposed(started(), STATS_CALL)
    assert state.phase is Phase.AWAITING_TOOLS
    shown = card(state)
    assert shown.run_id == "t1" and shown.speaker == "analyst"
    assert [(v.name, v.server) for v in shown.calls] == [("summary_stats", "python")]
    assert json.loads(shown.calls[0].arguments) == {"numbers": [1, 2, 3]}
    assert shown.calls[0].arguments.startswith("{\n  ")  # pretty JSON on the card
    assert not [p for p in posts(state) if isinstance(p, AgentPost)]  # a reply of calls only: the card
    assert isinstance(engine.next_action(state), engine.Wait)


def test_run_makes_the_call_and_the_result_goes_back_as_a_tool_message() -> None:
    state = approve(proposed(started(), STATS_CALL))
    assert state.phase is Phase.CALLING_TOOLS
    state = run(state, '{"count": 3}')
    assert state.phase is Phase.THINKING and state.tool_round is None and state.auto_replies == 1
    result = [p for p in posts(state) if isinstance(p, ToolResultPost)]
    assert [(r.name, r.text, r.is_error) for r in result] == [("summary_stats", '{"count": 3}', False)]
    wire = speakers.llm_messages(state)
    assert wire[-2].role == "assistant" and wire[-2].tool_calls == (STATS_CALL,)
    assert (wire[-1].role, wire[-1].tool_call_id, wire[-1].content) == ("tool", "call_1", '{"count": 3}')


def test_a_never_tool_runs_at_once_without_a_card() -> None:
    state = proposed(started(), CHANGE_CALL)
    assert state.phase is Phase.CALLING_TOOLS
    assert not [p for p in posts(state) if isinstance(p, ToolApprovalPost)]
    assert run(state, "20.0").phase is Phase.THINKING


def test_parallel_calls_run_the_never_one_first_then_ask_for_the_rest_and_answer_in_order() -> None:
    state = proposed(started(), STATS_CALL, CHANGE_CALL)
    assert [v.name for v in card(state).calls] == ["summary_stats"]
    state = run(state, "20.0")  # percent_change, approve = "never"
    assert state.phase is Phase.AWAITING_TOOLS
    state = run(approve(state), "stats")
    tool_messages = [m for m in state.transcript if m.role == "tool"]
    assert [(m.tool_call_id, m.content) for m in tool_messages] == [("call_1", "stats"), ("call_2", "20.0")]
    assert state.phase is Phase.THINKING


def test_skip_tells_the_model_the_person_declined_each_call() -> None:
    state = proposed(started(), STATS_CALL)
    state = act(state, Skip(event_id="e-skip", user_id=ANA, run_id=card(state).run_id))
    assert [m.content for m in state.transcript if m.role == "tool"] == [DECLINED]
    assert state.phase is Phase.THINKING
    assert isinstance(engine.next_action(state), engine.CallLLM)


def test_a_strangers_click_or_a_stale_hash_runs_nothing() -> None:
    state = proposed(started(), STATS_CALL)
    refused = approve(state, EVE)
    assert refused.phase is Phase.AWAITING_TOOLS
    assert "Only <@U_ANA>" in said(refused)
    stale = approve(state, code_hash="0000")
    assert stale.phase is Phase.AWAITING_TOOLS and "does not match" in said(stale)
    twice = approve(approve(state))
    assert "no longer current" in said(twice)


def test_an_expired_card_offers_the_calls_again() -> None:
    state = proposed(started(), STATS_CALL)
    shown = card(state)
    later = NOW + timedelta(seconds=state.policy.approval_ttl_seconds + 1)
    state = act(
        state, Approve(event_id="e", user_id=ANA, run_id=shown.run_id, code_hash=shown.code_hash), later
    )
    assert state.phase is Phase.AWAITING_TOOLS and card(state).run_id == "t2"
    updates = [i.post for i in state.outbox if i.update_ref == "card:t1"]
    assert [u.decision.outcome for u in updates if isinstance(u, ToolApprovalPost) and u.decision] == [
        "expired"
    ]


def test_an_unknown_tool_is_answered_in_words_and_nothing_runs() -> None:
    state = proposed(started(), ToolCall(id="c9", name="rm_rf", arguments="{}"))
    assert state.phase is Phase.THINKING
    (answer,) = [m for m in state.transcript if m.role == "tool"]
    assert "no tool named 'rm_rf'" in answer.content and "summary_stats" in answer.content


def test_a_call_cut_off_by_a_dead_worker_is_offered_again_never_rerun() -> None:
    state = proposed(started(), CHANGE_CALL)
    state = toolcalls.on_call_started(state, "call_2")  # the worker died here
    assert toolcalls.interrupted(state)
    state = toolcalls.on_interrupted(state, NOW)
    assert state.phase is Phase.AWAITING_TOOLS
    assert any(isinstance(p, NoticePost) and "percent_change was interrupted" in p.text for p in posts(state))
    assert card(state).run_id == "t2" and [v.name for v in card(state).calls] == ["percent_change"]
    assert isinstance(engine.next_action(state), engine.Wait)
    assert run(approve(state), "20.0").phase is Phase.THINKING


def test_a_reply_instead_of_run_declines_the_calls_before_the_reply() -> None:
    state = proposed(started(), STATS_CALL)
    state = act(state, HumanMessage(event_id="e2", user_id=ANA, user_name="Ana", text="Use the median only"))
    kinds = [(m.role, m.content) for m in state.transcript[-3:]]
    assert kinds[1:] == [("tool", DECLINED), ("user", "Use the median only")]
    assert state.phase is Phase.THINKING


def test_stop_ends_the_conversation_and_keeps_the_declined_calls() -> None:
    state = act(proposed(started(), STATS_CALL), Stop(event_id="e3", user_id=ANA))
    assert state.phase is Phase.FINISHED and state.tool_round is None
    assert [m.tool_call_id for m in state.transcript if m.role == "tool"] == ["call_1"]


def test_human_input_mode_always_asks_even_for_never_tools() -> None:
    state = proposed(started(human_input_mode=HumanInputMode.ALWAYS), CHANGE_CALL)
    assert state.phase is Phase.AWAITING_TOOLS and card(state).calls[0].name == "percent_change"


def test_tool_rounds_count_toward_max_consecutive_auto_reply() -> None:
    state = started(max_consecutive_auto_reply=1)
    state = run(proposed(state, CHANGE_CALL), "20.0")
    assert state.auto_replies == 1 and state.phase is Phase.THINKING
    again = proposed(state, CHANGE_CALL.model_copy(update={"id": "call_3"}))
    assert again.phase is Phase.AWAITING_TOOLS  # past the limit, a person decides even a never tool
    never = started(max_consecutive_auto_reply=0, human_input_mode=HumanInputMode.NEVER)
    assert proposed(never, CHANGE_CALL).phase is Phase.FINISHED


def test_calls_left_unanswered_are_sent_as_not_run() -> None:
    state = engine.on_reply(started(), calls(STATS_CALL, content="Done. TERMINATE"), NOW, OFFERED)
    assert state.phase is Phase.AWAITING_HUMAN and state.tool_round is None
    wire = speakers.llm_messages(state)
    assert (wire[-1].role, wire[-1].tool_call_id, wire[-1].content) == ("tool", "call_1", NOT_RUN)
