"""The conversation engine as a pure state machine: AutoGen 0.2 semantics, approvals, limits, outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentbot.conversation import engine
from agentbot.conversation.code import Artifact, CodeBlock, CodeResult
from agentbot.conversation.events import (
    Approve,
    Event,
    FileRef,
    HumanMessage,
    PriorMessage,
    Skip,
    Start,
    Stop,
)
from agentbot.conversation.llm import ChatMessage, Completion
from agentbot.conversation.posts import (
    AgentPost,
    ApprovalPost,
    EphemeralPost,
    MeterPost,
    NoticePost,
    Post,
    ResultPost,
    UploadPost,
)
from agentbot.conversation.prompts import DEFAULT_AUTO_REPLY
from agentbot.conversation.state import ConversationKey, ConversationState, Phase, Policy

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
KEY = ConversationKey(team_id="T1", channel_id="C1", thread_ts="1714564800.000100")
STARTER = "U_ANA"
STRANGER = "U_EVE"
APPROVER = "U_BOSS"
TASK = "Plot a chart of NVDA and TESLA stock price change YTD."
CODE = "Let me fetch the prices.\n```python\n# filename: plot.py\nprint('chart')\n```"
CODE_BLOCK = CodeBlock(code="# filename: plot.py\nprint('chart')", language="python", filename="plot.py")


# ---------------------------------------------------------------- helpers


def policy(**changes: object) -> Policy:
    return Policy.model_validate({"system_message": "You write code.", **changes})


def act(
    state: ConversationState | None, event: Event, pol: Policy | None = None, now: datetime = NOW
) -> ConversationState:
    after = engine.apply(state, KEY, event, pol or policy(), now)
    assert after is not None
    return after


def started(pol: Policy | None = None, *, files: tuple[FileRef, ...] = ()) -> ConversationState:
    return act(None, Start(event_id="e1", user_id=STARTER, user_name="Ana", text=TASK, files=files), pol)


def completion(
    content: str,
    model: str = "m",
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    cost: float | None = 0.01,
) -> Completion:
    return Completion(
        content=content,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=cost,
    )


def reply(
    state: ConversationState,
    content: str,
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    cost: float | None = 0.01,
) -> ConversationState:
    return engine.on_reply(state, completion(content, "m", prompt_tokens, completion_tokens, cost), NOW)


def awaiting_approval(pol: Policy | None = None) -> ConversationState:
    state = reply(started(pol), CODE)
    assert state.phase is Phase.AWAITING_APPROVAL
    return state


def running(pol: Policy | None = None) -> ConversationState:
    """A conversation whose code is approved (or needs no approval) and about to run."""
    pol = pol or policy(code_approval="never")
    state = reply(started(pol), CODE)
    assert state.phase is Phase.RUNNING
    return state


def approve(
    state: ConversationState,
    user: str = STARTER,
    now: datetime = NOW,
    run_id: str | None = None,
    code_hash: str | None = None,
) -> ConversationState:
    """A click on Run; by default on the current card with its code hash."""
    assert state.run is not None
    click = Approve(
        event_id="e-run",
        user_id=user,
        run_id=run_id or state.run.run_id,
        code_hash=code_hash or state.run.code_hash,
    )
    return act(state, click, now=now)


def result(exit_code: int = 0, output: str = "chart\n", artifacts: tuple[Artifact, ...] = ()) -> CodeResult:
    return CodeResult(exit_code=exit_code, output=output, artifacts=artifacts)


def human(text: str, user: str = STARTER, files: tuple[FileRef, ...] = ()) -> HumanMessage:
    return HumanMessage(
        event_id="e-h", user_id=user, user_name="Ana" if user == STARTER else "", text=text, files=files
    )


def posts(state: ConversationState) -> list[Post]:
    return [item.post for item in state.outbox]


def new_posts(before: ConversationState, after: ConversationState) -> list[Post]:
    return [item.post for item in after.outbox if item.item_id >= before.next_item_id]


def notices(state: ConversationState) -> list[str]:
    return [post.text for post in posts(state) if isinstance(post, NoticePost)]


def card_updates(state: ConversationState) -> list[tuple[str | None, ApprovalPost]]:
    return [
        (item.update_ref, item.post)
        for item in state.outbox
        if isinstance(item.post, ApprovalPost) and item.update_ref is not None
    ]


# ---------------------------------------------------------------- start


def test_start_creates_a_thinking_conversation_with_the_task_as_first_human_message() -> None:
    state = started()
    assert state.phase is Phase.THINKING
    assert state.starter_id == STARTER
    assert state.created_at == state.updated_at == NOW
    [message] = state.transcript
    assert (message.speaker, message.role, message.kind, message.content) == ("Ana", "user", "human", TASK)
    assert message.author_id == STARTER
    assert state.outbox == ()


def test_start_puts_prior_thread_messages_before_the_task_as_context() -> None:
    prior = (PriorMessage(author="Bo", text="NVDA is up a lot"), PriorMessage(author="Cy", text="TSLA too?"))
    state = act(None, Start(event_id="e1", user_id=STARTER, text=TASK, context=prior))
    assert [(m.speaker, m.kind, m.content) for m in state.transcript] == [
        ("Bo", "context", "NVDA is up a lot"),
        ("Cy", "context", "TSLA too?"),
        (STARTER, "human", TASK),
    ]


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(HumanMessage(event_id="e1", user_id=STARTER, text="hi"), id="human_message"),
        pytest.param(Approve(event_id="e1", user_id=STARTER, run_id="r1", code_hash="h"), id="approve"),
        pytest.param(Skip(event_id="e1", user_id=STARTER, run_id="r1"), id="skip"),
        pytest.param(Stop(event_id="e1", user_id=STARTER), id="stop"),
    ],
)
def test_only_start_creates_a_conversation(event: Event) -> None:
    assert engine.apply(None, KEY, event, policy(), NOW) is None


def test_approvers_are_the_starter_then_the_policy_approvers_without_duplicates() -> None:
    state = started(policy(approvers=(APPROVER, STARTER)))
    assert state.policy.approvers == (STARTER, APPROVER)


def test_next_action_when_thinking_calls_the_llm_with_the_system_message_first() -> None:
    action = engine.next_action(started())
    assert action == engine.CallLLM(
        messages=(
            ChatMessage(role="system", content="You write code."),
            ChatMessage(role="user", content=TASK, name="Ana"),
        )
    )


# ---------------------------------------------------------------- assistant replies


def test_reply_is_recorded_posted_and_counted_as_a_turn() -> None:
    state = reply(started(), "Which date range do you mean?")
    last = state.transcript[-1]
    assert (last.speaker, last.role, last.kind) == ("assistant", "assistant", "agent")
    question = AgentPost(speaker="assistant", text="Which date range do you mean?", feedback_turn=1)
    assert posts(state) == [question]  # a question to the people is an answer they can rate
    assert state.turns == 1


def test_reply_with_code_under_approval_always_posts_an_approval_card() -> None:
    state = reply(started(), CODE)
    assert state.phase is Phase.AWAITING_APPROVAL
    assert state.run is not None
    assert state.run.run_id == "r1"
    assert state.run.status == "awaiting_approval"
    assert state.run.blocks == (CODE_BLOCK,)
    assert state.run.code_hash == engine.code_hash((CODE_BLOCK,))
    assert state.run.expires_at == NOW + timedelta(seconds=3600)
    agent_item, card_item = state.outbox
    assert isinstance(agent_item.post, AgentPost)
    assert card_item.ref == "card:r1"
    assert card_item.post == ApprovalPost(
        run_id="r1",
        code_hash=state.run.code_hash,
        blocks=(CODE_BLOCK,),
        requested_by=STARTER,
        approvers=(STARTER,),
        expires_at=NOW + timedelta(seconds=3600),
        network="network: none (no internet)",  # a conversation started without egress lists
        editable=True,
    )
    assert engine.next_action(state) == engine.Wait()


def test_reply_with_code_under_approval_never_runs_it_at_once() -> None:
    state = reply(started(policy(code_approval="never")), CODE)
    assert state.phase is Phase.RUNNING
    assert state.run is not None
    assert state.run.status == "approved"
    assert not any(isinstance(post, ApprovalPost) for post in posts(state))
    assert engine.next_action(state) == engine.RunCode(run=state.run)


def test_human_input_mode_always_asks_approval_even_when_code_approval_is_never() -> None:
    state = reply(started(policy(human_input_mode="ALWAYS", code_approval="never")), CODE)
    assert state.phase is Phase.AWAITING_APPROVAL


def test_human_input_mode_never_still_asks_approval_when_code_approval_is_always() -> None:
    state = reply(started(policy(human_input_mode="NEVER")), CODE)
    assert state.phase is Phase.AWAITING_APPROVAL


@pytest.mark.parametrize("mode", ["ALWAYS", "TERMINATE"])
def test_reply_without_code_or_terminate_hands_the_turn_to_humans(mode: str) -> None:
    state = reply(started(policy(human_input_mode=mode)), "Which date range do you mean?")
    assert state.phase is Phase.AWAITING_HUMAN
    assert state.transcript[-1].kind == "agent"
    assert engine.next_action(state) == engine.Wait()


def test_reply_without_code_in_never_mode_sends_the_default_auto_reply() -> None:
    state = reply(started(policy(human_input_mode="NEVER")), "I think the trend is clear.")
    assert state.phase is Phase.THINKING
    auto = state.transcript[-1]
    assert (auto.speaker, auto.role, auto.kind, auto.content) == (
        "user_proxy",
        "user",
        "auto",
        DEFAULT_AUTO_REPLY,
    )
    assert state.auto_replies == 1


@pytest.mark.parametrize("mode", ["ALWAYS", "TERMINATE"])
def test_termination_outside_never_mode_awaits_humans_with_a_notice(mode: str) -> None:
    state = reply(started(policy(human_input_mode=mode)), "The chart is saved. TERMINATE")
    assert state.phase is Phase.AWAITING_HUMAN
    assert notices(state) == [
        "The assistant says the task is done. Reply in the thread to continue, or press Stop."
    ]


def test_termination_in_never_mode_finishes_with_the_usage_summary() -> None:
    state = reply(started(policy(human_input_mode="NEVER")), "The chart is saved. TERMINATE")
    assert state.phase is Phase.FINISHED
    assert notices(state) == [
        "The assistant finished the task. Conversation ended. m: 1 calls, 120 tokens, $0.0100 (total $0.0100)"
    ]


@pytest.mark.parametrize("mode", ["ALWAYS", "TERMINATE", "NEVER"])
def test_termination_wins_over_code_in_the_same_message(mode: str) -> None:
    pol = policy(human_input_mode=mode, code_approval="never")
    state = reply(started(pol), CODE + "\nTERMINATE")
    assert state.phase in (Phase.AWAITING_HUMAN, Phase.FINISHED)
    assert state.run is None
    assert not any(isinstance(post, ApprovalPost) for post in posts(state))


def test_terminate_inside_an_unclosed_code_block_is_code_not_termination() -> None:
    state = reply(started(policy(human_input_mode="NEVER")), "```sh\necho TERMINATE")
    assert state.phase is Phase.THINKING  # no runnable block, no termination: NEVER mode auto-replies
    assert state.transcript[-1].content == DEFAULT_AUTO_REPLY


def test_max_turns_hands_over_to_humans_instead_of_proposing_code() -> None:
    state = reply(started(policy(max_turns=1, code_approval="never")), CODE)
    assert state.phase is Phase.AWAITING_HUMAN
    assert state.run is None
    assert notices(state) == ["Reached max_turns (1). Reply in the thread to continue."]


def test_max_turns_ends_the_chat_in_never_mode() -> None:
    state = reply(started(policy(max_turns=1, code_approval="never", human_input_mode="NEVER")), CODE)
    assert state.phase is Phase.FINISHED
    assert state.run is None


def test_max_turns_counts_assistant_replies_since_the_last_human_message() -> None:
    state = running(policy(max_turns=2, code_approval="never"))
    state = engine.on_run_result(engine.on_run_started(state), result(), NOW)
    state = reply(state, CODE)
    assert state.phase is Phase.AWAITING_HUMAN
    assert state.turns == 2
    state = act(state, human("go on"))
    assert (state.turns, state.phase) == (0, Phase.THINKING)


def test_human_message_resets_turn_and_auto_reply_counters() -> None:
    state = reply(started(policy(human_input_mode="NEVER")), "Hmm.")
    state = reply(state, "Still thinking.")
    assert (state.turns, state.auto_replies) == (2, 2)
    state = act(state, human("Use yfinance"))
    assert (state.turns, state.auto_replies) == (0, 0)


# ---------------------------------------------------------------- code runs


def test_run_started_marks_the_run_running_so_next_action_waits() -> None:
    state = engine.on_run_started(running())
    assert state.run is not None
    assert state.run.status == "running"
    assert engine.next_action(state) == engine.Wait()


def test_successful_run_feeds_back_autogen_execution_message() -> None:
    state = engine.on_run_result(engine.on_run_started(running()), result(0, "chart\n"), NOW)
    last = state.transcript[-1]
    assert (last.speaker, last.role, last.kind) == ("user_proxy", "user", "execution")
    assert last.content == "exitcode: 0 (execution succeeded)\nCode output: chart\n"


def test_failed_run_feeds_back_autogen_execution_failed_message() -> None:
    output = "Traceback (most recent call last):\nModuleNotFoundError: No module named 'yfinance'\n"
    state = engine.on_run_result(engine.on_run_started(running()), result(1, output), NOW)
    assert state.transcript[-1].content == f"exitcode: 1 (execution failed)\nCode output: {output}"


def test_run_result_is_posted_and_returns_to_thinking_with_one_more_auto_reply() -> None:
    before = engine.on_run_started(running())
    state = engine.on_run_result(before, result(0, "chart\n"), NOW)
    assert state.phase is Phase.THINKING
    assert state.run is not None
    assert state.run.status == "done"
    assert state.auto_replies == before.auto_replies + 1
    assert new_posts(before, state) == [ResultPost(run_id="r1", exit_code=0, output="chart\n")]


def test_run_artifacts_are_named_in_the_feedback_and_uploaded() -> None:
    chart = Artifact(name="chart.png", mime_type="image/png", size=3, content=b"png")
    before = engine.on_run_started(running())
    state = engine.on_run_result(before, result(0, "", (chart,)), NOW)
    assert state.transcript[-1].content == (
        "exitcode: 0 (execution succeeded)\nCode output: \nFiles created or changed: chart.png"
    )
    assert new_posts(before, state) == [
        ResultPost(run_id="r1", exit_code=0, output="", artifact_names=("chart.png",)),
        UploadPost(run_id="r1", names=("chart.png",)),
    ]


def test_auto_reply_limit_after_a_run_hands_over_with_a_notice_in_terminate_mode() -> None:
    state = approve(awaiting_approval(policy(max_consecutive_auto_reply=0)))
    state = engine.on_run_result(engine.on_run_started(state), result(), NOW)
    assert state.phase is Phase.AWAITING_HUMAN
    assert notices(state) == ["Reached max_consecutive_auto_reply (0). Reply in the thread to continue."]


def test_auto_reply_limit_after_a_run_finishes_in_never_mode() -> None:
    state = approve(awaiting_approval(policy(human_input_mode="NEVER", max_consecutive_auto_reply=0)))
    state = engine.on_run_result(engine.on_run_started(state), result(), NOW)
    assert state.phase is Phase.FINISHED
    assert notices(state)[-1].startswith("Reached max_consecutive_auto_reply (0). Conversation ended.")


def test_auto_reply_limit_without_code_finishes_in_never_mode() -> None:
    state = started(policy(human_input_mode="NEVER", max_consecutive_auto_reply=1))
    state = reply(state, "Thinking.")
    assert state.phase is Phase.THINKING
    state = reply(state, "Still thinking.")
    assert state.phase is Phase.FINISHED
    assert state.auto_replies == 1


def test_auto_reply_limit_with_code_asks_a_person_to_approve_in_terminate_mode() -> None:
    state = started(policy(code_approval="never", max_consecutive_auto_reply=1))
    state = reply(state, CODE)
    state = engine.on_run_result(engine.on_run_started(state), result(), NOW)
    assert (state.phase, state.auto_replies) == (Phase.THINKING, 1)
    state = reply(state, CODE)
    assert state.phase is Phase.AWAITING_APPROVAL  # past the limit a person decides
    assert state.run is not None
    assert state.run.run_id == "r2"


def test_auto_reply_limit_with_code_finishes_in_never_mode() -> None:
    state = started(policy(human_input_mode="NEVER", code_approval="never", max_consecutive_auto_reply=1))
    state = reply(state, CODE)
    state = engine.on_run_result(engine.on_run_started(state), result(), NOW)
    state = reply(state, CODE)
    assert state.phase is Phase.FINISHED
    assert state.run is not None
    assert state.run.run_id == "r1"  # the second block was never turned into a run


def test_never_mode_chain_runs_exactly_max_consecutive_auto_reply_times() -> None:
    state = started(policy(human_input_mode="NEVER", code_approval="never", max_consecutive_auto_reply=3))
    runs = 0
    for _ in range(20):
        action = engine.next_action(state)
        if isinstance(action, engine.CallLLM):
            state = reply(state, CODE)
        elif isinstance(action, engine.RunCode):
            runs += 1
            state = engine.on_run_result(engine.on_run_started(state), result(), NOW)
        else:
            break
    assert state.phase is Phase.FINISHED
    assert runs == 3  # in AutoGen each automatic code execution is one of the proxy's auto replies


def test_run_interrupted_warns_and_offers_the_same_code_on_a_new_card() -> None:
    before = engine.on_run_started(running())
    state = engine.on_run_interrupted(before, NOW)
    assert state.phase is Phase.AWAITING_APPROVAL
    assert state.run is not None
    assert (state.run.run_id, state.run.status, state.run.blocks) == (
        "r2",
        "awaiting_approval",
        (CODE_BLOCK,),
    )
    warning, card = new_posts(before, state)
    assert isinstance(warning, NoticePost)
    assert warning.level == "warning"
    assert "interrupted" in warning.text
    assert isinstance(card, ApprovalPost)
    assert card.run_id == "r2"
    assert state.outbox[-1].ref == "card:r2"


def test_sandbox_error_explains_and_offers_the_same_code_on_a_new_card() -> None:
    before = engine.on_run_started(running())
    state = engine.on_sandbox_error(before, "Docker is not running.", NOW)
    assert state.phase is Phase.AWAITING_APPROVAL
    error, card = new_posts(before, state)
    assert error == NoticePost(
        text="The code could not be run: Docker is not running. Press Run again once that is fixed.",
        level="error",
    )
    assert isinstance(card, ApprovalPost)
    assert card.blocks == (CODE_BLOCK,)
    assert card.run_id == "r2"


def test_an_engine_that_is_down_is_said_plainly_and_another_offered_when_there_is_one() -> None:
    before = engine.on_run_started(running()).evolve(sandbox_engine="b")
    state = engine.on_engine_down(before, NOW, elsewhere=True)
    assert state.phase is Phase.AWAITING_APPROVAL and state.sandbox_engine == "b"
    error, card = new_posts(before, state)
    assert isinstance(error, NoticePost) and error.level == "error"
    assert error.text == (
        "The Docker engine `b` that holds this conversation's files is not answering, so the code did not "
        "run. Press *Run* to try again once it is back, or *Continue on another engine* to go on now in a "
        "new, empty workspace."
    )
    assert isinstance(card, ApprovalPost) and card.engine_down == "b" and card.blocks == (CODE_BLOCK,)


def test_with_one_engine_people_can_only_wait_for_it() -> None:
    before = engine.on_run_started(running()).evolve(sandbox_engine="default")
    state = engine.on_engine_down(before, NOW, elsewhere=False)
    error, card = new_posts(before, state)
    assert isinstance(error, NoticePost) and error.text.endswith("Press *Run* to try again once it is back.")
    assert isinstance(card, ApprovalPost) and card.engine_down == ""


def test_continue_on_another_engine_unpins_the_workspace_and_tells_the_assistant() -> None:
    down = engine.on_run_started(running()).evolve(sandbox_engine="b", workspace_files=("prices.csv",))
    state = engine.on_engine_down(down, NOW, elsewhere=True)
    assert state.run is not None
    moved = act(state, Approve(event_id="e-mv", user_id=STARTER, run_id=state.run.run_id,
                               code_hash=state.run.code_hash, elsewhere=True))  # fmt: skip
    assert moved.phase is Phase.RUNNING
    assert (moved.sandbox_engine, moved.engines_left, moved.workspace_files) == ("", ("b",), ())
    assert moved.transcript[-1].content.startswith("The working directory was moved to a new, empty one")
    assert any("moved this conversation off the Docker engine `b`" in text for text in notices(moved))
    ((_, decided),) = card_updates(moved)
    assert decided.decision is not None and decided.decision.outcome == "moved"


def test_continue_elsewhere_on_a_card_whose_engine_is_not_down_is_a_plain_run() -> None:
    state = awaiting_approval().evolve(sandbox_engine="a")
    assert state.run is not None
    clicked = act(state, Approve(event_id="e-mv", user_id=STARTER, run_id=state.run.run_id,
                                 code_hash=state.run.code_hash, elsewhere=True))  # fmt: skip
    assert (clicked.phase, clicked.sandbox_engine, clicked.engines_left) == (Phase.RUNNING, "a", ())
    ((_, decided),) = card_updates(clicked)
    assert decided.decision is not None and decided.decision.outcome == "approved"


def test_a_stranger_cannot_move_the_conversation() -> None:
    down = engine.on_run_started(running()).evolve(sandbox_engine="b")
    state = engine.on_engine_down(down, NOW, elsewhere=True)
    assert state.run is not None
    clicked = act(state, Approve(event_id="e-mv", user_id=STRANGER, run_id=state.run.run_id,
                                 code_hash=state.run.code_hash, elsewhere=True))  # fmt: skip
    assert (clicked.phase, clicked.sandbox_engine) == (Phase.AWAITING_APPROVAL, "b")


def test_llm_error_posts_an_error_notice_and_awaits_humans() -> None:
    state = engine.on_llm_error(started(), "The model timed out.")
    assert state.phase is Phase.AWAITING_HUMAN
    assert posts(state) == [
        NoticePost(
            text="The assistant could not answer: The model timed out. Reply in the thread to try again.",
            level="error",
        )
    ]
    assert act(state, human("try again")).phase is Phase.THINKING


def test_unexpected_failure_posts_an_error_notice_and_awaits_humans() -> None:
    state = engine.on_failure(started(), "Something broke.")
    assert state.phase is Phase.AWAITING_HUMAN
    assert posts(state) == [NoticePost(text="Something broke.", level="error")]


# ---------------------------------------------------------------- approvals


def test_run_by_the_starter_approves_and_updates_the_card() -> None:
    before = awaiting_approval()
    state = approve(before, STARTER)
    assert state.phase is Phase.RUNNING
    assert state.run is not None
    assert (state.run.status, state.run.decided_by) == ("approved", STARTER)
    [(ref, card)] = card_updates(state)
    assert ref == "card:r1"
    assert card.decision is not None
    assert (card.decision.outcome, card.decision.user_id, card.decision.at) == ("approved", STARTER, NOW)
    assert engine.next_action(state) == engine.RunCode(run=state.run)


def test_run_by_someone_else_is_refused_privately_and_changes_nothing() -> None:
    before = awaiting_approval()
    state = approve(before, STRANGER)
    assert new_posts(before, state) == [
        EphemeralPost(
            user_id=STRANGER, text=f"Only <@{STARTER}> can approve or skip runs in this conversation."
        )
    ]
    assert state.model_copy(update={"outbox": before.outbox, "next_item_id": before.next_item_id}) == before


def test_run_by_an_approver_from_the_policy_is_allowed() -> None:
    state = approve(awaiting_approval(policy(approvers=(APPROVER,))), APPROVER)
    assert state.phase is Phase.RUNNING
    assert state.run is not None
    assert state.run.decided_by == APPROVER


def test_second_click_on_run_is_refused_as_no_longer_current() -> None:
    first = approve(awaiting_approval())
    second = approve(first)
    assert new_posts(first, second) == [
        EphemeralPost(user_id=STARTER, text="This card is no longer current, so nothing was run.")
    ]
    assert second.run == first.run
    assert second.phase is Phase.RUNNING


def test_run_with_a_tampered_code_hash_is_refused() -> None:
    before = awaiting_approval()
    state = approve(before, code_hash="0000000000000000")
    assert new_posts(before, state) == [
        EphemeralPost(user_id=STARTER, text="This card does not match the proposed code, so nothing was run.")
    ]
    assert (state.phase, state.run) == (before.phase, before.run)


def test_run_on_an_older_card_is_refused_as_no_longer_current() -> None:
    before = awaiting_approval()
    state = approve(before, run_id="r0")
    assert new_posts(before, state) == [
        EphemeralPost(user_id=STARTER, text="This card is no longer current, so nothing was run.")
    ]
    assert state.phase is Phase.AWAITING_APPROVAL


def test_expired_approval_expires_the_card_and_posts_a_fresh_one() -> None:
    before = awaiting_approval(policy(approval_ttl_seconds=60))
    later = NOW + timedelta(seconds=60)
    state = approve(before, now=later)
    assert state.phase is Phase.AWAITING_APPROVAL
    assert state.run is not None
    assert (state.run.run_id, state.run.status, state.run.expires_at) == (
        "r2",
        "awaiting_approval",
        later + timedelta(seconds=60),
    )
    expired, warning, fresh = state.outbox[len(before.outbox) :]
    assert expired.update_ref == "card:r1"
    assert isinstance(expired.post, ApprovalPost)
    assert expired.post.decision is not None
    assert expired.post.decision.outcome == "expired"
    assert warning.post == NoticePost(
        text="That approval had expired, so here is the code again.", level="warning"
    )
    assert fresh.ref == "card:r2"
    assert isinstance(fresh.post, ApprovalPost)
    assert (fresh.post.run_id, fresh.post.decision) == ("r2", None)
    assert approve(state, now=later).phase is Phase.RUNNING  # the fresh card works


def test_approval_just_before_expiry_runs() -> None:
    before = awaiting_approval(policy(approval_ttl_seconds=60))
    assert approve(before, now=NOW + timedelta(seconds=59)).phase is Phase.RUNNING


def test_skip_by_the_starter_awaits_a_human_reply() -> None:
    state = act(awaiting_approval(), Skip(event_id="e-s", user_id=STARTER, run_id="r1"))
    assert state.phase is Phase.AWAITING_HUMAN
    assert state.run is not None
    assert state.run.status == "skipped"
    [(ref, card)] = card_updates(state)
    assert ref == "card:r1"
    assert card.decision is not None
    assert card.decision.outcome == "skipped"


def test_skip_by_someone_else_is_refused() -> None:
    before = awaiting_approval()
    state = act(before, Skip(event_id="e-s", user_id=STRANGER, run_id="r1"))
    assert [type(post) for post in new_posts(before, state)] == [EphemeralPost]
    assert (state.phase, state.run) == (before.phase, before.run)


def test_typed_reply_while_awaiting_approval_skips_the_run_and_thinks_again() -> None:
    before = awaiting_approval()
    state = act(before, human("Use plotly instead"))
    assert state.phase is Phase.THINKING
    assert state.run is not None
    assert state.run.status == "skipped"
    [(ref, card)] = card_updates(state)
    assert ref == "card:r1"
    assert card.decision is not None
    assert (card.decision.outcome, card.decision.user_id) == ("skipped", STARTER)
    assert state.transcript[-1].content == "Use plotly instead"
    late_click = approve(state)
    assert late_click.outbox[-1].post == EphemeralPost(
        user_id=STARTER, text="This card is no longer current, so nothing was run."
    )


# ---------------------------------------------------------------- stop and finish


@pytest.mark.parametrize("word", ["stop", "exit", "quit", " Stop ", "EXIT\n"])
def test_stop_word_typed_by_the_starter_finishes_with_the_usage_summary(word: str) -> None:
    state = act(reply(started(), "Which range?"), human(word))
    assert state.phase is Phase.FINISHED
    assert notices(state) == [
        f"Stopped by <@{STARTER}>. Conversation ended. m: 1 calls, 120 tokens, $0.0100 (total $0.0100)"
    ]
    assert all(message.content != word for message in state.transcript)


def test_stop_before_any_model_call_says_so_in_the_summary() -> None:
    state = act(started(), Stop(event_id="e-x", user_id=STARTER))
    assert notices(state) == [f"Stopped by <@{STARTER}>. Conversation ended. No model calls."]


def test_stop_button_while_awaiting_approval_marks_the_card_stopped() -> None:
    state = act(awaiting_approval(), Stop(event_id="e-x", user_id=STARTER))
    assert state.phase is Phase.FINISHED
    assert state.run is not None
    assert state.run.status == "cancelled"
    [(_, card)] = card_updates(state)
    assert card.decision is not None
    assert card.decision.outcome == "stopped"


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(Stop(event_id="e-x", user_id=STRANGER), id="button"),
        pytest.param(HumanMessage(event_id="e-x", user_id=STRANGER, text="stop"), id="typed"),
    ],
)
def test_stop_by_a_stranger_is_refused(event: Event) -> None:
    before = awaiting_approval()
    state = act(before, event)
    assert new_posts(before, state) == [
        EphemeralPost(user_id=STRANGER, text=f"Only <@{STARTER}> can stop runs in this conversation.")
    ]
    assert (state.phase, state.run, state.transcript) == (before.phase, before.run, before.transcript)


def test_replies_in_a_finished_conversation_are_ignored() -> None:
    finished = act(started(), Stop(event_id="e-x", user_id=STARTER))
    for event in (
        human("one more thing"),
        Stop(event_id="e-y", user_id=STARTER),
        Approve(event_id="e-z", user_id=STARTER, run_id="r1", code_hash="h"),
    ):
        state = act(finished, event)
        assert state.phase is Phase.FINISHED
        assert state.transcript == finished.transcript
        assert [item for item in state.outbox if not isinstance(item.post, EphemeralPost)] == list(
            finished.outbox
        )


def test_a_new_mention_reopens_a_finished_conversation() -> None:
    finished = reply(started(policy(human_input_mode="NEVER")), "Done. TERMINATE")
    assert finished.phase is Phase.FINISHED
    state = act(finished, Start(event_id="e2", user_id=STARTER, user_name="Ana", text="Now add AMD"))
    assert state.phase is Phase.THINKING
    assert state.transcript[-1].content == "Now add AMD"
    assert state.usage == finished.usage  # the totals keep counting across the re-opening


# ---------------------------------------------------------------- shared files


def test_shared_files_are_imported_before_thinking() -> None:
    data = FileRef(name="prices.csv", url="https://files.example/prices.csv")
    state = started(files=(data,))
    assert state.phase is Phase.IMPORTING
    assert engine.next_action(state) == engine.ImportFiles(files=(data,))


def test_imported_files_are_named_to_the_assistant_then_it_thinks() -> None:
    state = started(files=(FileRef(name="prices.csv", url="u1"), FileRef(name="notes.txt", url="u2")))
    state = engine.on_files_imported(state, ("prices.csv", "notes.txt"), ())
    assert state.phase is Phase.THINKING
    note = state.transcript[-1]
    assert (note.speaker, note.role, note.kind) == ("user_proxy", "user", "auto")
    assert note.content == "Files shared in the thread are in the working directory: prices.csv, notes.txt"
    assert state.pending_files == ()
    assert state.workspace_files == ("prices.csv", "notes.txt")


def test_file_import_problems_are_posted_as_warnings_and_failed_files_not_named() -> None:
    state = started(files=(FileRef(name="big.bin", url="u"),))
    state = engine.on_files_imported(state, (), ("Could not load big.bin: it is too large.",))
    assert state.phase is Phase.THINKING
    assert posts(state) == [NoticePost(text="Could not load big.bin: it is too large.", level="warning")]
    assert state.transcript[-1].kind == "human"


def test_workspace_files_are_listed_once_across_imports() -> None:
    state = engine.on_files_imported(started(), ("a.csv",), ())
    state = engine.on_files_imported(state, ("a.csv", "b.csv"), ())
    assert state.workspace_files == ("a.csv", "b.csv")


def test_a_message_during_a_run_waits_for_the_run_result() -> None:
    before = engine.on_run_started(running())
    state = act(before, human("also print the max"))
    assert state.phase is Phase.RUNNING
    assert state.run == before.run
    state = engine.on_run_result(state, result(), NOW)
    assert [m.kind for m in state.transcript[-2:]] == ["human", "execution"]
    assert state.phase is Phase.THINKING


def test_files_shared_during_a_run_are_imported_after_it() -> None:
    data = FileRef(name="prices.csv", url="u")
    state = act(engine.on_run_started(running()), human("here is the data", files=(data,)))
    assert state.phase is Phase.RUNNING
    state = engine.on_run_result(state, result(), NOW)
    assert state.phase is Phase.IMPORTING
    assert engine.next_action(state) == engine.ImportFiles(files=(data,))


# ---------------------------------------------------------------- usage, budget, summary


def test_usage_and_cost_are_summed_per_model() -> None:
    state = reply(started(), "Which range?", prompt_tokens=100, completion_tokens=10, cost=0.5)
    state = act(state, human("YTD"))
    state = engine.on_reply(state, completion("Which tickers?", "m2", 7, 3, 0.25), NOW)
    state = act(state, human("NVDA"))
    state = reply(state, "Ok?", prompt_tokens=200, completion_tokens=20, cost=0.5)
    assert state.usage["m"].model_dump() == {
        "calls": 2,
        "prompt_tokens": 300,
        "completion_tokens": 30,
        "cost_usd": 1.0,
        "unpriced_calls": 0,
    }
    assert state.usage["m2"].model_dump() == {
        "calls": 1,
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "cost_usd": 0.25,
        "unpriced_calls": 0,
    }
    assert state.total_cost_usd == 1.25
    assert state.total_tokens == 340
    assert engine.usage_text(state) == (
        "m: 2 calls, 330 tokens, $1.0000; m2: 1 calls, 10 tokens, $0.2500 (total $1.2500)"
    )


def test_cost_budget_spent_finishes_the_conversation() -> None:
    state = started(policy(max_cost_usd=0.05))
    state = reply(state, "Which range?", cost=0.03)
    assert state.phase is Phase.AWAITING_HUMAN
    state = act(state, human("YTD"))
    state = reply(state, CODE, cost=0.03)
    assert state.phase is Phase.FINISHED
    assert state.run is None  # the code of the reply that spent the budget is not proposed
    assert notices(state)[-1].startswith("The cost budget of $0.05 is spent. Conversation ended.")


def test_unknown_price_counts_tokens_and_says_the_cost_is_unknown() -> None:
    state = reply(started(), "Which range?", cost=None)
    state = engine.on_reply(act(state, human("YTD")), completion("Ok.", "m2", 10, 5, 0.002), NOW)
    assert not state.cost_known
    assert state.usage["m"].unpriced_calls == 1 and state.total_tokens == 135
    assert engine.usage_text(state) == (
        "m: 1 calls, 120 tokens, cost unknown (no price for this model); "
        "m2: 1 calls, 15 tokens, $0.0020 (total $0.0020 + unknown)"
    )


def test_budget_with_an_unknown_price_stops_instead_of_counting_zero() -> None:
    state = reply(started(policy(max_cost_usd=5.0)), CODE, cost=None)
    assert state.phase is Phase.FINISHED and state.run is None
    assert notices(state)[-1].startswith(
        "The cost budget of $5.00 cannot be kept: the price of m is unknown "
        '(give it a "price" in the config list).'
    )
    (meter,) = [post for post in posts(state) if isinstance(post, MeterPost)]
    assert not meter.cost_known and meter.tokens == 120


def test_reply_cut_off_at_the_length_limit_is_reported_in_the_thread() -> None:
    cut = completion("Here is the first half of the", "m").model_copy(update={"truncated": True})
    state = engine.on_reply(started(), cut, NOW)
    (warning,) = [p for p in posts(state) if isinstance(p, NoticePost) and p.level == "warning"]
    assert "cut off" in warning.text and "finish_reason=length" in warning.text
    assert "(m)" in warning.text


def test_complete_reply_has_no_cut_off_notice() -> None:
    state = reply(started(), "Which range?")
    assert not [p for p in posts(state) if isinstance(p, NoticePost) and p.level == "warning"]


@pytest.mark.parametrize(
    ("content", "summary"),
    [
        pytest.param(
            "NVDA rose 80%, TSLA fell 10%. TERMINATE", "NVDA rose 80%, TSLA fell 10%.", id="same_line"
        ),
        pytest.param(
            "The chart is in chart.png.\n\nTERMINATE\n", "The chart is in chart.png.", id="own_line"
        ),
        pytest.param("Which range do you mean?", "Which range do you mean?", id="no_terminate"),
        pytest.param("TERMINATE", "", id="only_terminate"),
    ],
)
def test_summary_is_the_last_agent_message_without_terminate(content: str, summary: str) -> None:
    state = reply(started(), content)
    assert state.summary == summary


def test_summary_skips_execution_and_human_messages() -> None:
    state = running()
    state = engine.on_run_result(engine.on_run_started(state), result(), NOW)
    state = act(state, human("thanks"))
    assert state.summary == CODE


def test_summary_without_agent_messages_is_empty() -> None:
    assert started().summary == ""


# ---------------------------------------------------------------- outbox


def test_outbox_items_get_increasing_ids() -> None:
    state = approve(awaiting_approval())
    state = engine.on_run_result(engine.on_run_started(state), result(), NOW)
    ids = [item.item_id for item in state.outbox]
    assert ids == list(range(1, len(ids) + 1))
    assert state.next_item_id == len(ids) + 1
    assert all(item.status == "pending" for item in state.outbox)


def test_mark_sending_flags_only_that_item() -> None:
    state = awaiting_approval()
    first, second = state.outbox
    state = engine.mark_sending(state, second)
    assert [item.status for item in state.outbox] == ["pending", "sending"]
    assert state.outbox[0] == first


def test_mark_sent_removes_the_item_and_records_the_card_ref() -> None:
    state = awaiting_approval()
    agent, card = state.outbox
    state = engine.mark_sent(state, agent, "1714564801.000200")
    state = engine.mark_sent(state, card, "1714564801.000300")
    assert state.outbox == ()
    assert state.message_refs == {"card:r1": "1714564801.000300"}
    state = approve(state)
    [update] = state.outbox
    assert update.update_ref == "card:r1"
    assert state.next_item_id == 4  # ids are never reused after items leave the outbox
    assert update.item_id == 3


def test_mark_sent_with_an_empty_message_id_records_no_ref() -> None:
    state = awaiting_approval()
    state = engine.mark_sent(state, state.outbox[1], "")
    assert state.message_refs == {}
    assert len(state.outbox) == 1


# ---------------------------------------------------------------- messages for the model


def test_llm_messages_map_roles_and_name_speakers() -> None:
    state = act(
        None,
        Start(
            event_id="e1",
            user_id=STARTER,
            user_name="Ana",
            text=TASK,
            context=(PriorMessage(author="Bo", text="fyi"),),
        ),
    )
    state = reply(state, CODE)
    state = approve(state)
    state = engine.on_run_result(engine.on_run_started(state), result(1, "boom"), NOW)
    messages = engine.llm_messages(state)
    assert [(m.role, m.name) for m in messages] == [
        ("system", None),
        ("user", "Bo"),
        ("user", "Ana"),
        ("assistant", "assistant"),
        ("user", "user_proxy"),
    ]
    assert messages[-1].content == "exitcode: 1 (execution failed)\nCode output: boom"


@pytest.mark.parametrize(
    ("speaker", "name"),
    [
        pytest.param("Ana María", "Ana_Mar_a", id="space_and_accent"),
        pytest.param("bo.smith@example.com", "bo_smith_example_com", id="email"),
        pytest.param("data-bot_2", "data-bot_2", id="already_safe"),
        pytest.param("x" * 80, "x" * 64, id="cut_to_64"),
        pytest.param("", "user", id="empty"),
    ],
)
def test_llm_message_names_are_sanitized(speaker: str, name: str) -> None:
    state = act(None, Start(event_id="e1", user_id=speaker, user_name=speaker, text=TASK))
    assert engine.llm_messages(state)[-1].name == name


def test_humans_without_a_name_are_named_by_their_user_id() -> None:
    state = act(None, Start(event_id="e1", user_id=STARTER, text=TASK))
    assert engine.llm_messages(state)[-1].name == STARTER
