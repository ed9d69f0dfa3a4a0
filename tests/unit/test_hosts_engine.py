"""Blocked hosts in the engine: the card, Allow and run again, Keep blocked, the TTL, refusals, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentbot.conversation import engine
from agentbot.conversation.code import CodeBlock, CodeResult, EgressReport
from agentbot.conversation.egress import audit_line, network_line
from agentbot.conversation.events import AllowHosts, Approve, Event, HumanMessage, KeepBlocked, Start, Stop
from agentbot.conversation.posts import ApprovalPost, EphemeralPost, HostsPost, Post, ResultPost
from agentbot.conversation.state import ConversationKey, ConversationState, EgressState, Phase, Policy
from agentbot.conversation.team import TeamChoice

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=3600)
KEY = ConversationKey(team_id="T1", channel_id="C1", thread_ts="1714564800.000100")
STARTER, APPROVER, STRANGER = "U_ANA", "U_BOSS", "U_EVE"
CODE = "```python\nimport prices\nprint(prices.get('NVDA'))\n```"
BLOCK = CodeBlock(code="import prices\nprint(prices.get('NVDA'))", language="python")
WORKSPACE = EgressState(network="proxy", operator_hosts=("pypi.internal:3141",))
BLOCKED = EgressReport(
    contacted=("pypi.internal:3141",),
    blocked=("data.example.org:8080", "10.0.0.9"),
    askable=("data.example.org:8080",),
)
FAILED = CodeResult(exit_code=1, output="ConnectionError: 403 Forbidden\n", egress=BLOCKED)


def act(
    state: ConversationState | None, event: Event, now: datetime = NOW, **start: object
) -> ConversationState:
    pol = Policy(system_message="You write code.", approvers=(APPROVER,))
    after = engine.apply(state, KEY, event, pol, now, **start)  # type: ignore[arg-type]  # choice/egress
    assert after is not None
    return after


def started(egress: EgressState = WORKSPACE, choice: TeamChoice | None = None) -> ConversationState:
    start = Start(event_id="e1", user_id=STARTER, user_name="Ana", text="Plot NVDA")
    return act(None, start, egress=egress, choice=choice)


def proposed(egress: EgressState = WORKSPACE) -> ConversationState:
    state = started(egress)
    return engine.on_reply(state, engine.Completion(content=CODE, model="m"), NOW)


def ran(result: CodeResult = FAILED, egress: EgressState = WORKSPACE) -> ConversationState:
    """The code was approved and ran; the proxy refused `data.example.org:8080`."""
    state = proposed(egress)
    assert state.run is not None
    state = act(state, Approve(event_id="e2", user_id=STARTER, run_id="r1", code_hash=state.run.code_hash))
    return engine.on_run_result(engine.on_run_started(state), result, NOW)


def new_posts(before: ConversationState, after: ConversationState) -> list[Post]:
    return [item.post for item in after.outbox if item.item_id >= before.next_item_id]


def allow(
    state: ConversationState, user: str = APPROVER, now: datetime = NOW, **event: str
) -> ConversationState:
    ask = state.hosts_ask
    assert ask is not None
    fields = {"run_id": ask.run_id, "code_hash": ask.code_hash, **event}
    return act(state, AllowHosts(event_id="e-allow", user_id=user, **fields), now)


def keep(state: ConversationState, user: str = STARTER, now: datetime = NOW) -> ConversationState:
    return act(state, KeepBlocked(event_id="e-keep", user_id=user, run_id="r1"), now)


# ---------------------------------------------------------------- the conversation's lists


def test_a_conversation_starts_with_the_workspace_channel_and_team_hosts() -> None:
    choice = TeamChoice(allow_hosts=("data.internal:8080", "pypi.internal:3141"))
    egress = started(choice=choice).egress
    assert egress == EgressState(network="proxy", operator_hosts=("pypi.internal:3141", "data.internal:8080"))
    assert started(EgressState()).egress == EgressState()  # no lists given: no network


@pytest.mark.parametrize(
    ("egress", "line"),
    [
        (EgressState(network="none"), "network: none (no internet)"),
        (EgressState(network="bridge", operator_hosts=("a.org",)), "network: bridge (open)"),
        (EgressState(network="proxy"), "network: proxy — no host allowed"),
        (
            EgressState(
                network="proxy", operator_hosts=("a.org", "*.b.org"), thread_hosts=("c.org:81", "a.org")
            ),
            "network: proxy — allowed: a.org, *.b.org, c.org:81",
        ),
        (
            EgressState(network="proxy", operator_hosts=tuple(f"h{n}.org" for n in range(12))),
            "network: proxy — allowed: " + ", ".join(f"h{n}.org" for n in range(10)) + " and 2 more",
        ),
    ],
)
def test_network_line_says_what_the_run_will_reach(egress: EgressState, line: str) -> None:
    assert network_line(egress) == line


def test_every_run_card_carries_the_network_line() -> None:
    cards = [p for p in new_posts(started(), proposed()) if isinstance(p, ApprovalPost)]
    assert [card.network for card in cards] == ["network: proxy — allowed: pypi.internal:3141"]


@pytest.mark.parametrize(
    ("report", "line"),
    [
        (None, ""),
        (EgressReport(), ""),
        (EgressReport(contacted=("a.org",)), "contacted: a.org"),
        (BLOCKED, "contacted: pypi.internal:3141 · blocked: data.example.org:8080, 10.0.0.9"),
        (
            EgressReport(contacted=("a.org",), notes=("byte cap (200 MB) reached",)),
            "contacted: a.org · byte cap (200 MB) reached",
        ),
    ],
)
def test_audit_line_lists_contacted_and_blocked_hosts_and_caps(
    report: EgressReport | None, line: str
) -> None:
    assert audit_line(report) == line


def test_a_run_without_askable_hosts_goes_to_the_assistant_with_its_audit() -> None:
    report = EgressReport(contacted=("pypi.internal:3141",), notes=("connection cap (256) reached",))
    state = ran(CodeResult(exit_code=0, output="ok\n", egress=report))
    assert state.phase is Phase.THINKING and state.hosts_ask is None
    assert state.transcript[-1].content == (
        "exitcode: 0 (execution succeeded)\nCode output: ok\n"
        "\nNetwork — contacted: pypi.internal:3141 · connection cap (256) reached"
    )
    results = [post for item in state.outbox if isinstance((post := item.post), ResultPost)]
    assert results[0].egress == report  # the thread's context line is rendered from it


def test_under_thread_allow_none_nobody_is_asked() -> None:
    state = ran(egress=WORKSPACE.model_copy(update={"thread_allow": "none"}))
    assert state.phase is Phase.THINKING and state.hosts_ask is None
    assert "blocked: data.example.org:8080, 10.0.0.9" in state.transcript[-1].content


# ---------------------------------------------------------------- the card


def test_a_blocked_run_holds_its_result_and_asks_the_people() -> None:
    before = proposed()
    state = ran()
    assert state.phase is Phase.AWAITING_HOSTS
    assert state.transcript[-1].kind == "agent"  # the result is held, not yet the assistant's
    ask = state.hosts_ask
    assert ask is not None
    assert (ask.run_id, ask.hosts, ask.status, ask.expires_at) == (
        "r1",
        ("data.example.org:8080",),
        "open",
        NOW + TTL,
    )
    assert ask.held.startswith("exitcode: 1 (execution failed)\nCode output: ConnectionError")
    cards = [p for p in new_posts(before, state) if isinstance(p, HostsPost)]
    assert cards == [
        HostsPost(
            run_id="r1",
            code_hash=engine.code_hash((BLOCK,)),
            hosts=("data.example.org:8080",),
            approvers=(STARTER, APPROVER),
            expires_at=NOW + TTL,
        )
    ]
    assert state.outbox[-1].ref == "hosts:r1"
    assert engine.next_action(state) == engine.Wait(wake_at=NOW + TTL, wake_name="hosts-r1")


def test_allow_adds_the_hosts_and_runs_the_same_code_again_as_the_clickers_approval() -> None:
    before = ran()
    state = allow(before)
    assert state.phase is Phase.RUNNING
    assert state.egress.thread_hosts == ("data.example.org:8080",)
    assert "data.example.org:8080" in state.egress.grant().hosts
    run = state.run
    assert run is not None
    assert (run.run_id, run.blocks, run.status, run.decided_by) == ("r2", (BLOCK,), "approved", APPROVER)
    assert engine.next_action(state) == engine.RunCode(run=run)
    assert state.transcript == before.transcript  # the refused run's result never reaches the assistant
    update = state.outbox[-1]
    assert update.update_ref == "hosts:r1"
    assert isinstance(update.post, HostsPost) and update.post.decision is not None
    assert (update.post.decision.outcome, update.post.decision.user_id) == ("allowed", APPROVER)


def test_the_rerun_blocked_again_asks_again_under_its_own_run() -> None:
    state = engine.on_run_result(engine.on_run_started(allow(ran())), FAILED, NOW)
    assert state.phase is Phase.AWAITING_HOSTS
    assert state.hosts_ask is not None and state.hosts_ask.run_id == "r2"


def test_keep_blocked_gives_the_assistant_the_held_result_and_the_blocked_line() -> None:
    before = ran()
    state = keep(before)
    assert state.phase is Phase.THINKING
    message = state.transcript[-1]
    assert (message.kind, message.role) == ("execution", "user")
    assert message.content == (
        f"{before.hosts_ask.held}\n"  # type: ignore[union-attr]  # ran() asked
        "These hosts were blocked by the egress proxy and stay blocked (the people kept them blocked): "
        "data.example.org:8080"
    )
    assert state.egress.thread_hosts == ()
    post = state.outbox[-1].post
    assert isinstance(post, HostsPost) and post.decision is not None and post.decision.outcome == "kept"
    assert state.auto_replies == before.auto_replies + 1


def test_nobody_deciding_within_the_ttl_keeps_the_hosts_blocked() -> None:
    state = ran()
    assert engine.expire(state, NOW + TTL - timedelta(seconds=1)) is state
    expired = engine.expire(state, NOW + TTL)
    assert expired.phase is Phase.THINKING
    assert expired.transcript[-1].content.endswith(
        "(nobody allowed them before the approval expired): data.example.org:8080"
    )
    post = expired.outbox[-1].post
    assert isinstance(post, HostsPost) and post.decision is not None
    assert (post.decision.outcome, post.decision.user_id) == ("expired", None)
    assert engine.expire(expired, NOW + 2 * TTL) is expired


def test_a_click_after_the_ttl_allows_nothing_and_says_so() -> None:
    state = allow(ran(), now=NOW + TTL)
    assert state.phase is Phase.THINKING and state.egress.thread_hosts == ()
    assert state.outbox[-1].post == EphemeralPost(
        user_id=APPROVER, text="That card had expired, so the hosts stay blocked."
    )


@pytest.mark.parametrize(
    ("click", "refusal"),
    [
        (lambda s: allow(s, user=STRANGER), "Only <@U_ANA>, <@U_BOSS> can allow hosts for runs"),
        (lambda s: keep(s, user=STRANGER), "Only <@U_ANA>, <@U_BOSS> can allow hosts for runs"),
        (lambda s: allow(s, run_id="r0"), "This card is no longer current, so nothing was changed."),
        (lambda s: allow(s, code_hash="0" * 16), "This card does not match the code that ran"),
        (lambda s: allow(allow(s)), "This card is no longer current, so nothing was changed."),
        (lambda s: keep(keep(s)), "This card is no longer current, so nothing was changed."),
        (lambda s: keep(allow(s)), "This card is no longer current, so nothing was changed."),
    ],
)
def test_a_wrong_user_or_stale_card_changes_nothing(click: object, refusal: str) -> None:
    before = ran()
    state = click(before)  # type: ignore[operator]  # a callable from the table
    post = state.outbox[-1].post
    assert isinstance(post, EphemeralPost) and post.text.startswith(refusal)
    first_decision = [i for i in state.outbox if isinstance(i.post, HostsPost) and i.post.decision]
    assert len(first_decision) <= 1  # a second click never decides again
    if not first_decision:
        assert state.phase is Phase.AWAITING_HOSTS and state.hosts_ask == before.hosts_ask


def test_a_reply_while_the_card_is_open_keeps_the_hosts_blocked_and_is_feedback() -> None:
    state = act(
        ran(), HumanMessage(event_id="e-h", user_id=STRANGER, user_name="Eve", text="Use offline data")
    )
    assert state.phase is Phase.THINKING
    held, feedback = state.transcript[-2:]
    assert held.kind == "execution" and "(the people kept them blocked)" in held.content
    assert (feedback.kind, feedback.content) == ("human", "Use offline data")
    assert state.hosts_ask is not None and (state.hosts_ask.status, state.hosts_ask.decided_by) == (
        "kept",
        STRANGER,
    )


def test_stop_while_the_card_is_open_ends_the_conversation_and_closes_the_card() -> None:
    state = act(ran(), Stop(event_id="e-stop", user_id=STARTER))
    assert state.phase is Phase.FINISHED
    assert state.hosts_ask is not None and state.hosts_ask.status == "stopped"
    decided = [i.post for i in state.outbox if isinstance(i.post, HostsPost) and i.post.decision]
    assert [d.decision.outcome for d in decided if d.decision] == ["stopped"]
    assert engine.next_action(state) == engine.Wait()
