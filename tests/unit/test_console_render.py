"""The console front end: posts printed as AutoGen's console prints them, and answers turned into events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentbot.console import USER_ID, _event_for, render
from agentbot.conversation import engine
from agentbot.conversation.code import CodeBlock, CodeResult, EgressReport
from agentbot.conversation.events import AllowHosts, Approve, Event, HumanMessage, Skip, Start
from agentbot.conversation.llm import Completion
from agentbot.conversation.posts import (
    AgentPost,
    ApprovalPost,
    EphemeralPost,
    NoticePost,
    Post,
    ResultPost,
    UploadPost,
)
from agentbot.conversation.state import ConversationKey, ConversationState, Phase, Policy

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RULE = "-" * 80
BLOCK = CodeBlock(code="print('chart')", language="python")


@pytest.mark.parametrize(
    ("post", "text"),
    [
        pytest.param(
            AgentPost(speaker="assistant", text="Here is the plan."),
            f"assistant (to user_proxy):\n\nHere is the plan.\n\n{RULE}",
            id="agent",
        ),
        pytest.param(
            ApprovalPost(
                run_id="r1",
                code_hash="abc",
                blocks=(BLOCK, CodeBlock(code="ls", language="sh")),
                requested_by=USER_ID,
                approvers=(USER_ID,),
                expires_at=NOW,
            ),
            ">>>>>>>> PROPOSED CODE (run r1):\n```python\nprint('chart')\n```\n\n```sh\nls\n```",
            id="approval",
        ),
        pytest.param(
            ResultPost(run_id="r1", exit_code=0, output="chart\n"),
            f">>>>>>>> EXECUTED CODE\nexitcode: 0 (execution succeeded)\nCode output: chart\n\n{RULE}",
            id="result_succeeded",
        ),
        pytest.param(
            ResultPost(run_id="r1", exit_code=1, output="boom"),
            f">>>>>>>> EXECUTED CODE\nexitcode: 1 (execution failed)\nCode output: boom\n{RULE}",
            id="result_failed",
        ),
        pytest.param(
            NoticePost(text=f"Stopped by <@{USER_ID}>. Conversation ended."),
            "[agentbot] Stopped by you. Conversation ended.",
            id="notice_names_the_console_user_you",
        ),
        pytest.param(
            EphemeralPost(user_id=USER_ID, text="This card is no longer current."),
            "[agentbot] This card is no longer current.",
            id="ephemeral",
        ),
        pytest.param(UploadPost(run_id="r1", names=("chart.png",)), "", id="upload_prints_nothing"),
    ],
)
def test_render(post: Post, text: str) -> None:
    assert render(post) == text


def _state(phase: Phase) -> ConversationState:
    """A console conversation waiting for an answer: at an approval card, or for a reply."""
    key = ConversationKey(team_id="console", channel_id="local", thread_ts="1.0")
    start = Start(event_id="e0", user_id=USER_ID, user_name="you", text="Plot a chart")
    state = engine.apply(None, key, start, Policy(), NOW)
    assert state is not None
    content = "```python\nprint('chart')\n```" if phase is Phase.AWAITING_APPROVAL else "Which range?"
    state = engine.on_reply(state, Completion(content=content, model="m"), NOW)
    assert state.phase is phase
    return state


@pytest.mark.parametrize(
    ("phase", "answer", "expected"),
    [
        pytest.param(Phase.AWAITING_APPROVAL, "", "approve", id="enter_runs"),
        pytest.param(Phase.AWAITING_APPROVAL, "y", "approve", id="y_runs"),
        pytest.param(Phase.AWAITING_APPROVAL, "Yes", "approve", id="yes_runs"),
        pytest.param(Phase.AWAITING_APPROVAL, "n", "skip", id="n_skips"),
        pytest.param(Phase.AWAITING_APPROVAL, "skip", "skip", id="skip_skips"),
        pytest.param(Phase.AWAITING_APPROVAL, "use plotly", "human_message", id="feedback_at_approval"),
        pytest.param(Phase.AWAITING_APPROVAL, "exit", "human_message", id="exit_is_typed_for_the_engine"),
        pytest.param(Phase.AWAITING_HUMAN, "", "stop", id="enter_at_reply_stops"),
        pytest.param(Phase.AWAITING_HUMAN, "YTD", "human_message", id="reply"),
        pytest.param(Phase.AWAITING_HUMAN, "y", "human_message", id="y_is_a_reply_without_a_card"),
    ],
)
def test_event_for_answer(phase: Phase, answer: str, expected: str) -> None:
    state = _state(phase)
    event: Event = _event_for(state, answer, "e7")
    assert (event.type, event.event_id, event.user_id) == (expected, "e7", USER_ID)
    if isinstance(event, Approve):
        assert state.run is not None
        assert (event.run_id, event.code_hash) == (state.run.run_id, state.run.code_hash)
    if isinstance(event, Skip):
        assert state.run is not None
        assert event.run_id == state.run.run_id
    if isinstance(event, HumanMessage):
        assert (event.text, event.user_name) == (answer, "you")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("y", "allow_hosts"),
        ("", "keep_blocked"),
        ("n", "keep_blocked"),
        ("use offline data", "human_message"),
    ],
)
def test_blocked_hosts_are_allowed_kept_or_answered_with_feedback(answer: str, expected: str) -> None:
    state = _state(Phase.AWAITING_APPROVAL)
    assert state.run is not None
    click = Approve(event_id="e1", user_id=USER_ID, run_id=state.run.run_id, code_hash=state.run.code_hash)
    approved = engine.apply(state, state.key, click, Policy(), NOW)
    assert approved is not None
    report = EgressReport(blocked=("data.example.org",), askable=("data.example.org",))
    result = CodeResult(exit_code=1, output="403", egress=report)
    state = engine.on_run_result(engine.on_run_started(approved), result, NOW)
    assert state.phase is Phase.AWAITING_HOSTS
    event = _event_for(state, answer, "e8")
    assert event.type == expected
    if isinstance(event, AllowHosts):
        assert state.hosts_ask is not None
        assert (event.run_id, event.code_hash) == (state.hosts_ask.run_id, state.hosts_ask.code_hash)


def test_result_prints_its_network_audit() -> None:
    report = EgressReport(contacted=("pypi.internal:3141",), blocked=("data.example.org",))
    text = render(ResultPost(run_id="r1", exit_code=0, output="ok\n", egress=report))
    assert "[network: contacted: pypi.internal:3141 · blocked: data.example.org]" in text
