"""Run all in this thread, Edit before run, and feedback on final answers, in the pure engine."""

from __future__ import annotations

from datetime import timedelta

from agentbot.conversation import engine
from agentbot.conversation.code import CodeBlock, CodeResult, EgressReport
from agentbot.conversation.edit import editable_code, edited_blocks, unified_diff
from agentbot.conversation.events import EditCode, HumanMessage, Rate, RunAll, Stop
from agentbot.conversation.posts import AgentPost, ApprovalPost, EphemeralPost, NoticePost, ResultPost
from agentbot.conversation.state import ConversationState, Phase
from tests.unit.test_engine import (
    APPROVER,
    CODE,
    NOW,
    STARTER,
    STRANGER,
    act,
    awaiting_approval,
    policy,
    posts,
    reply,
    started,
)

EDITED = "# filename: plot.py\nprint('edited chart')\n"


def run_all(state: ConversationState, user: str = STARTER, code_hash: str | None = None) -> ConversationState:
    assert state.run is not None
    click = RunAll(
        event_id="e-all", user_id=user, run_id=state.run.run_id, code_hash=code_hash or state.run.code_hash
    )
    return act(state, click)


def edit(
    state: ConversationState, code: str = EDITED, user: str = STARTER, code_hash: str | None = None
) -> ConversationState:
    assert state.run is not None
    submitted = EditCode(
        event_id="e-edit",
        user_id=user,
        user_name="Ana",
        run_id=state.run.run_id,
        code_hash=code_hash or state.run.code_hash,
        code=code,
    )
    return act(state, submitted)


def result(state: ConversationState, output: str = "chart\n") -> ConversationState:
    state = engine.on_run_started(state)
    return engine.on_run_result(state, CodeResult(exit_code=0, output=output), NOW)


# ---------------------------------------------------------------- Run all


def test_run_all_runs_this_code_and_later_proposals_without_a_card() -> None:
    state = run_all(awaiting_approval())
    assert state.phase is Phase.RUNNING and state.run_all_by == STARTER
    assert not state.needs_approval
    decided = [p for p in posts(state) if isinstance(p, ApprovalPost) and p.decision]
    assert decided[-1].decision is not None and decided[-1].decision.outcome == "run_all"
    assert any(isinstance(p, NoticePost) and "Run all is on" in p.text for p in posts(state))

    state = reply(result(state), CODE)  # the assistant proposes more code
    assert state.phase is Phase.RUNNING and state.run is not None and state.run.by_run_all
    assert not any(isinstance(i.post, ApprovalPost) and i.ref for i in state.outbox[-2:])
    done = result(state)
    shown = [p for p in posts(done) if isinstance(p, ResultPost)]
    assert shown[-1].run_all and not shown[0].run_all


def test_run_all_is_only_for_the_starter_and_approvers() -> None:
    state = run_all(awaiting_approval(policy(approvers=(APPROVER,))), user=STRANGER)
    assert state.phase is Phase.AWAITING_APPROVAL and state.run_all_by is None
    assert isinstance(posts(state)[-1], EphemeralPost)
    by_boss = run_all(awaiting_approval(policy(approvers=(APPROVER,))), user=APPROVER)
    assert by_boss.run_all_by == APPROVER


def test_run_all_with_a_stale_hash_runs_nothing() -> None:
    state = run_all(awaiting_approval(), code_hash="0" * 16)
    assert state.phase is Phase.AWAITING_APPROVAL and state.run_all_by is None


def test_a_reply_of_manual_turns_run_all_off_and_the_next_proposal_asks_again() -> None:
    state = result(run_all(awaiting_approval()))
    state = reply(state, "Done. TERMINATE")
    state = act(state, HumanMessage(event_id="e-m", user_id=STRANGER, text="manual"))
    assert state.run_all_by is None and state.needs_approval
    assert "manual" not in [m.content for m in state.transcript]  # a command, not a message to the model
    assert any(isinstance(p, NoticePost) and "needs approval again" in p.text for p in posts(state))
    state = act(state, HumanMessage(event_id="e-h", user_id=STARTER, text="plot it again"))
    assert reply(state, CODE).phase is Phase.AWAITING_APPROVAL


def test_stop_turns_run_all_off() -> None:
    state = act(run_all(awaiting_approval()), Stop(event_id="e-s", user_id=STARTER))
    assert state.phase is Phase.FINISHED and state.run_all_by is None


def test_run_all_never_covers_blocked_hosts() -> None:
    state = engine.on_run_started(run_all(awaiting_approval()))
    report = EgressReport(blocked=("data.example.org",), askable=("data.example.org",))
    state = engine.on_run_result(state, CodeResult(exit_code=1, output="refused", egress=report), NOW)
    assert state.phase is Phase.AWAITING_HOSTS


# ---------------------------------------------------------------- Edit


def test_edit_runs_the_edited_code_bound_to_its_own_hash() -> None:
    before = awaiting_approval()
    state = edit(before)
    assert state.phase is Phase.RUNNING
    assert state.run is not None and state.run.run_id == "r2" and state.run.status == "approved"
    assert state.run.blocks == (CodeBlock(code=EDITED, language="python", filename="plot.py"),)
    assert before.run is not None
    assert state.run.code_hash == engine.code_hash(state.run.blocks) != before.run.code_hash
    assert state.run.decided_by == STARTER
    card = [p for p in posts(state) if isinstance(p, ApprovalPost) and p.decision][-1]
    assert card.decision is not None and card.decision.outcome == "edited"


def test_the_model_reads_the_edit_as_the_persons_reply_with_a_unified_diff() -> None:
    state = edit(awaiting_approval())
    said = state.transcript[-1]
    assert (said.speaker, said.role, said.kind, said.author_id) == ("Ana", "user", "human", STARTER)
    assert "-print('chart')" in said.content and "+print('edited chart')" in said.content
    assert "```diff" in said.content
    messages = engine.llm_messages(result(state))
    assert "+print('edited chart')" in messages[-2].content
    assert messages[-1].content.startswith("exitcode: 0")


def test_only_the_starter_and_approvers_can_edit() -> None:
    state = edit(awaiting_approval(), user=STRANGER)
    assert state.phase is Phase.AWAITING_APPROVAL
    assert isinstance(posts(state)[-1], EphemeralPost)


def test_an_edit_for_code_that_is_no_longer_proposed_runs_nothing() -> None:
    state = edit(awaiting_approval(), code_hash="f" * 16)
    assert state.phase is Phase.AWAITING_APPROVAL and isinstance(posts(state)[-1], EphemeralPost)


def test_an_empty_edit_runs_nothing_and_an_unchanged_one_is_a_plain_run() -> None:
    assert edit(awaiting_approval(), code="   \n").phase is Phase.AWAITING_APPROVAL
    unchanged = edit(awaiting_approval(), code="# filename: plot.py\nprint('chart')")
    assert unchanged.phase is Phase.RUNNING and unchanged.run is not None and unchanged.run.run_id == "r1"
    assert unchanged.transcript[-1].kind == "agent"  # no diff to tell the model about


def test_an_edit_after_the_card_expired_shows_the_code_again() -> None:
    state = awaiting_approval()
    assert state.run is not None
    submitted = EditCode(
        event_id="e-late", user_id=STARTER, run_id="r1", code_hash=state.run.code_hash, code=EDITED
    )
    late = act(state, submitted, now=NOW + timedelta(hours=2))
    assert late.phase is Phase.AWAITING_APPROVAL and late.run is not None and late.run.run_id == "r2"


def test_editable_code_joins_blocks_of_one_language_only() -> None:
    one = CodeBlock(code="print(1)\n", language="python")
    two = CodeBlock(code="print(2)", language="python")
    shell = CodeBlock(code="ls", language="sh")
    assert editable_code((one, two)) == "print(1)\n\nprint(2)\n"
    assert editable_code((one, shell)) is None
    assert editable_code(()) is None
    assert edited_blocks((shell,), "echo hi\r\n") == (CodeBlock(code="echo hi\n", language="sh"),)
    assert unified_diff("a\n", "a\n") == ""


# ---------------------------------------------------------------- feedback


def test_a_final_answer_carries_feedback_and_votes_are_kept_one_per_person() -> None:
    state = reply(started(), "The answer is 42. TERMINATE")
    (answer,) = [p for p in posts(state) if isinstance(p, AgentPost)]
    assert answer.feedback_turn == 1
    state = act(state, Rate(event_id="v1", user_id=STARTER, turn=1, vote="up"))
    state = act(state, Rate(event_id="v2", user_id=STRANGER, turn=1, vote="up"))
    state = act(state, Rate(event_id="v3", user_id=STARTER, turn=1, vote="down"))
    assert state.feedback_counts == {"up": 1, "down": 1}
    assert act(state, Rate(event_id="v4", user_id=STARTER, turn=0, vote="up")).votes == state.votes


def test_a_reply_proposing_code_is_not_a_final_answer() -> None:
    (agent,) = [p for p in posts(awaiting_approval()) if isinstance(p, AgentPost)]
    assert agent.feedback_turn is None
