"""Table tests of posts → Slack Block Kit (agentbot.slack.render), always inside Slack's limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentbot.conversation.code import CodeBlock, EgressReport
from agentbot.conversation.posts import (
    AgentPost,
    ApprovalPost,
    Decision,
    EphemeralPost,
    HostsDecision,
    HostsPost,
    MeterPost,
    NoticePost,
    Post,
    ReportPost,
    ResultPost,
    SpeakerChoicePost,
    SpeakerOption,
    SubTeamPost,
    UploadPost,
)
from agentbot.slack.render import Rendered, close_fences, render, render_command_root, split_markdown

AT = datetime(2025, 1, 2, 3, 4, tzinfo=UTC)
FENCE = "```"


def card(*blocks: CodeBlock, decision: Decision | None = None, engine_down: str = "") -> ApprovalPost:
    return ApprovalPost(
        engine_down=engine_down,
        run_id="r1",
        code_hash="h1",
        blocks=blocks,
        requested_by="UANA",
        approvers=("UBOSS",),
        expires_at=AT + timedelta(hours=1),
        decision=decision,
    )


def fences_balanced(text: str) -> bool:
    return close_fences(text) == text


def texts(block: dict[str, Any]) -> list[str]:
    """Every string of a block that Slack counts against a limit."""
    if block["type"] == "markdown":
        return [block["text"]]
    if block["type"] == "section":
        return [block["text"]["text"]]
    if block["type"] == "context":
        return [element["text"] for element in block["elements"]]
    if block["type"] == "rich_text":
        return [e["text"] for section in block["elements"] for e in section["elements"]]
    return []


def assert_within_limits(rendered: Rendered) -> None:
    assert rendered.messages
    for message in rendered.messages:
        assert 0 < len(message.text) <= 40_000
        assert len(message.blocks) <= 50
        markdown = sum(len(b["text"]) for b in message.blocks if b["type"] == "markdown")
        assert markdown <= 12_000
        for block in message.blocks:
            if block["type"] in {"section", "context"}:
                assert all(len(text) <= 3_000 for text in texts(block))
        assert len(json.dumps(message.kwargs())) < 40_000


LONG_CODE = "\n".join(f"print({i})  # ``` not a fence here" for i in range(2_000))
POSTS: list[Post] = [
    AgentPost(speaker="assistant", text="Here is the plan:\n```python\nprint('hi')\n```\nTERMINATE"),
    AgentPost(speaker="assistant", text="x" * 100_000),
    AgentPost(speaker="assistant", text="```python\n" + "a = 1\n" * 20_000 + "```"),
    AgentPost(speaker="assistant", text=("word " * 2_000 + "\n") * 10),
    AgentPost(speaker="assistant", text="```python\nunclosed = True\n"),
    AgentPost(speaker="assistant", text=""),
    card(CodeBlock(code="print('hi')", language="python")),
    card(CodeBlock(code=LONG_CODE, language="python", filename="long.py")),
    card(*[CodeBlock(code=f"echo {i}", language="sh") for i in range(30)]),
    card(
        CodeBlock(code="print(1)", language="python"),
        decision=Decision(outcome="approved", user_id="UANA", at=AT),
    ),
    ResultPost(run_id="r1", exit_code=0, output="hello\n"),
    ResultPost(
        run_id="r1", exit_code=1, output="e" * 100_000, output_truncated=True, artifact_names=("a.png",)
    ),
    ResultPost(run_id="r1", exit_code=124, output="", timed_out=True),
    NoticePost(text="Budget reached. " * 5_000, level="warning"),
    EphemeralPost(user_id="UBOB", text="Only <@UANA> or <@UBOSS> can approve this run." * 200),
    UploadPost(run_id="r1", names=("chart.png", "data.csv")),
    HostsPost(
        run_id="r1",
        code_hash="h1",
        hosts=tuple(f"{'x' * 60}.{n}.example.org:8080" for n in range(100)),
        approvers=tuple(f"U{n:08d}" for n in range(100)),
        expires_at=AT,
    ),
    ResultPost(
        run_id="r1",
        exit_code=0,
        output="ok",
        egress=EgressReport(
            contacted=tuple(f"{'y' * 250}{n}.org" for n in range(40)), blocked=("z.org",) * 40
        ),
    ),
]


@pytest.mark.parametrize("post", POSTS, ids=lambda p: f"{p.kind}")
def test_every_post_renders_inside_slack_limits(post: Post) -> None:
    assert_within_limits(render(post))


def test_short_agent_message_is_one_markdown_block_under_the_agents_name() -> None:
    rendered = render(AgentPost(speaker="assistant", text="**Done.** See `x`."))
    (message,) = rendered.messages
    assert message.blocks == ({"type": "markdown", "text": "**Done.** See `x`."},)
    assert (message.username, message.icon_emoji) == ("assistant", ":robot_face:")
    assert message.text.startswith("assistant: **Done.**")
    assert rendered.snippet is None


def test_proxy_posts_under_a_gear() -> None:
    assert render(AgentPost(speaker="user_proxy", text="exitcode: 0")).messages[0].icon_emoji == ":gear:"


def test_100k_character_agent_text_is_cut_and_attached_as_a_snippet() -> None:
    text = "x" * 100_000
    rendered = render(AgentPost(speaker="assistant", text=text))
    assert len(rendered.messages) == 1
    assert rendered.snippet is not None
    assert rendered.snippet.content == text
    assert rendered.snippet.filename == "assistant-message.md"
    assert "attached as `assistant-message.md`" in rendered.messages[0].blocks[0]["text"]


def test_moderately_long_text_is_split_into_messages_with_every_fence_closed() -> None:
    code = "```python\n" + "\n".join(f"value_{i} = {i}" for i in range(1_500)) + "\n```\nDone."
    rendered = render(AgentPost(speaker="assistant", text=code))
    assert 1 < len(rendered.messages) <= 4
    assert rendered.snippet is None
    parts = [m.blocks[0]["text"] for m in rendered.messages]
    assert all(fences_balanced(part) for part in parts)
    assert all(part.startswith("```python") for part in parts)
    assert parts[-1].endswith("Done.")
    joined = "".join(parts)
    assert all(f"value_{i} = {i}" in joined for i in range(1_500))


def test_unclosed_fence_from_the_model_is_closed() -> None:
    rendered = render(AgentPost(speaker="assistant", text="```python\nunclosed = True"))
    assert rendered.messages[0].blocks[0]["text"] == "```python\nunclosed = True\n```"


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("plain\n" * 5_000, 1_000),
        ("```\n" + "code\n" * 5_000 + "```\n" + "prose\n" * 100, 500),
        ("~~~~sh\n" + "ls ```\n" * 1_000 + "~~~~", 300),
        ("a" * 50_000, 4_000),
        ("```python\n" + "x" * 9_000 + "\n```", 1_000),
    ],
)
def test_split_markdown_respects_the_limit_and_keeps_fences_closed(text: str, limit: int) -> None:
    chunks = split_markdown(text, limit)
    assert all(len(chunk) <= limit for chunk in chunks)
    assert all(fences_balanced(chunk) for chunk in chunks)


def test_agent_text_never_pings_the_channel() -> None:
    rendered = render(AgentPost(speaker="assistant", text="Done <!channel> <!here|here> <!subteam^S1|@devs>"))
    message = rendered.messages[0]
    for text in (message.text, message.blocks[0]["text"]):
        assert "<!channel>" not in text and "<!here" not in text and "<!subteam" not in text


def test_approval_card_shows_code_language_and_its_buttons() -> None:
    code = 'print("```")\nprint("<b>&</b>")'
    rendered = render(card(CodeBlock(code=code, language="python", filename="hello.py")))
    (message,) = rendered.messages
    blocks = message.blocks
    assert [e["text"] for e in blocks[2]["elements"][0]["elements"]] == [code]  # verbatim, no escaping
    assert "python" in blocks[1]["elements"][0]["text"] and "hello.py" in blocks[1]["elements"][0]["text"]
    actions = blocks[-1]
    assert actions["type"] == "actions"
    run, run_all, skip, stop = actions["elements"]  # not editable: no Edit button
    assert (run["action_id"], run["style"], run["text"]["text"]) == ("run_code", "primary", "Run")
    assert (run_all["action_id"], run_all["value"]) == ("run_all", run["value"])
    assert run_all["confirm"]["confirm"]["text"] == "Run all" and "style" not in run_all
    assert (skip["action_id"], skip["text"]["text"]) == ("skip_code", "Skip") and "style" not in skip
    assert (stop["action_id"], stop["style"], stop["text"]["text"]) == ("stop_session", "danger", "Stop")
    assert stop["confirm"]["confirm"]["text"] == "Stop"
    assert json.loads(run["value"]) == {"run_id": "r1", "code_hash": "h1"}
    assert "<@UANA> or <@UBOSS>" in blocks[0]["text"]["text"]
    assert rendered.snippet is None


def test_a_card_whose_engine_is_down_offers_to_continue_on_another() -> None:
    (message,) = render(card(CodeBlock(code="print(1)", language="python"), engine_down="b")).messages
    run, move, *_ = message.blocks[-1]["elements"]
    assert (move["action_id"], move["text"]["text"]) == ("move_engine", "Continue on another engine")
    assert move["value"] == run["value"] and "style" not in move


def test_long_code_is_truncated_on_the_card_and_attached_in_full() -> None:
    rendered = render(card(CodeBlock(code=LONG_CODE, language="python")))
    shown = rendered.messages[0].blocks[2]["elements"][0]["elements"][0]["text"]
    assert len(shown) < 3_000
    assert "2000 lines in all" in shown
    assert rendered.snippet is not None
    assert rendered.snippet.content == LONG_CODE
    assert rendered.snippet.filename == "run-r1.py"


def test_many_blocks_are_capped_and_attached() -> None:
    rendered = render(card(*[CodeBlock(code=f"echo {i}", language="sh") for i in range(30)]))
    assert rendered.snippet is not None
    assert "echo 29" in rendered.snippet.content
    assert rendered.snippet.filename == "run-r1.txt"


@pytest.mark.parametrize(
    ("decision", "words"),
    [
        (Decision(outcome="approved", user_id="UANA", at=AT), "Approved by <@UANA>"),
        (Decision(outcome="moved", user_id="UANA", at=AT), "Approved by <@UANA> on another engine"),
        (Decision(outcome="skipped", user_id="UBOSS", at=AT), "Skipped by <@UBOSS>"),
        (Decision(outcome="stopped", user_id="UANA", at=AT), "Stopped by <@UANA>"),
        (Decision(outcome="expired", at=AT), "Expired"),
        (Decision(outcome="superseded", at=AT), "Superseded"),
    ],
)
def test_decided_card_has_no_buttons_and_says_who_and_when(decision: Decision, words: str) -> None:
    (message,) = render(card(CodeBlock(code="print(1)", language="python"), decision=decision)).messages
    assert all(block["type"] != "actions" for block in message.blocks)
    last = message.blocks[-1]["elements"][0]["text"]
    assert words in last
    assert f"<!date^{int(AT.timestamp())}^" in last


def test_result_shows_exit_code_and_output_in_a_code_block() -> None:
    (message,) = render(ResultPost(run_id="r1", exit_code=0, output="hi <there> & ```")).messages
    assert message.text == ":white_check_mark: exitcode: 0 (execution succeeded)"
    assert message.blocks[1]["elements"][0]["elements"][0]["text"] == "hi <there> & ```"


def test_long_failing_output_keeps_head_and_tail_and_attaches_the_rest() -> None:
    output = "START\n" + "noise\n" * 20_000 + "Traceback: ValueError at the end"
    rendered = render(ResultPost(run_id="r1", exit_code=1, output=output, artifact_names=("plot.png",)))
    message = rendered.messages[0]
    shown = message.blocks[1]["elements"][0]["elements"][0]["text"]
    assert "exitcode: 1 (execution failed)" in message.text
    assert shown.startswith("START") and shown.endswith("ValueError at the end")
    assert "characters omitted" in shown
    assert "`plot.png`" in message.blocks[2]["elements"][0]["text"]
    assert rendered.snippet is not None and rendered.snippet.content == output


def test_timeout_is_said_in_words() -> None:
    (message,) = render(ResultPost(run_id="r1", exit_code=124, output="", timed_out=True)).messages
    assert "timed out" in message.text
    assert message.blocks[1]["elements"][0]["elements"][0]["text"] == "(no output)"


def test_ephemeral_goes_to_one_person() -> None:
    rendered = render(EphemeralPost(user_id="UBOB", text="Only <@UANA> can approve this run."))
    assert rendered.ephemeral_user == "UBOB"
    assert rendered.messages[0].text == "Only <@UANA> can approve this run."


@pytest.mark.parametrize(("level", "emoji"), [("info", ":information_source:"), ("error", ":x:")])
def test_notice_has_an_icon_for_its_level_and_no_agent_name(level: str, emoji: str) -> None:
    (message,) = render(NoticePost(text="Stopped.", level=level)).messages
    assert message.blocks[0]["text"] == f"{emoji} Stopped."
    assert message.username is None


def test_notice_mentions_people_in_its_notification_text_but_an_agents_text_cannot() -> None:
    (notice,) = render(NoticePost(text="Stopped by <@UANA>. <!channel>")).messages
    assert notice.text == ":information_source: Stopped by <@UANA>. @\u200bchannel"
    (agent,) = render(AgentPost(speaker="critic", text="ask <@UANA>")).messages
    assert agent.text == "critic: ask &lt;@UANA&gt;"


def test_speaker_choice_has_a_button_per_agent_and_then_shows_the_pick() -> None:
    options = (
        SpeakerOption(name="planner", description="plans"),
        SpeakerOption(name="coder", icon=":computer:"),
    )
    (message,) = render(SpeakerChoicePost(pick_id="p1", options=options, suggested="coder")).messages
    buttons = message.blocks[-1]["elements"]
    assert [b["action_id"] for b in buttons] == ["pick_speaker:0", "pick_speaker:1"]
    assert json.loads(buttons[1]["value"]) == {"pick_id": "p1", "speaker": "coder"}
    assert buttons[1]["style"] == "primary" and "style" not in buttons[0]
    chosen = SpeakerChoicePost(pick_id="p1", options=options, chosen="coder", chosen_by="UANA")
    (message,) = render(chosen).messages
    assert all(b["type"] != "actions" for b in message.blocks)
    assert "*coder* speaks next (picked by <@UANA>)" in message.text


@pytest.mark.parametrize(
    "post",
    [
        MeterPost(spent_usd=0.0123, budget_usd=1.0, tokens=12_345),
        SubTeamPost(
            sub_id="s1",
            subteam="research",
            task="find data " * 1_000,
            status="running",
            members=("a", "b"),
            lines=("x" * 5_000,) * 20,
            summary="y" * 50_000,
        ),
        ReportPost(outcome="done", summary="ok"),
    ],
    ids=lambda p: p.kind,
)
def test_team_posts_render_inside_slack_limits(post: Post) -> None:
    assert_within_limits(render(post))


def test_meter_says_spent_budget_and_tokens() -> None:
    (message,) = render(MeterPost(spent_usd=0.0123, budget_usd=1.0, tokens=12_345)).messages
    assert message.text == ":moneybag: $0.0123 of $1.00 spent · 12,345 tokens"


@pytest.mark.parametrize(
    ("post", "text"),
    [
        (
            MeterPost(spent_usd=0.0, tokens=1_200, cost_known=False),
            ":moneybag: 1,200 tokens · cost unknown (a model has no price)",
        ),
        (
            MeterPost(spent_usd=0.0123, budget_usd=1.0, tokens=12_345, cost_known=False),
            ":moneybag: 12,345 tokens · cost $0.0123 + unknown (a model has no price) · budget $1.00",
        ),
    ],
)
def test_meter_with_an_unknown_price_never_shows_a_silent_cost(post: MeterPost, text: str) -> None:
    (message,) = render(post).messages
    assert message.text == text


def test_agent_icon_from_the_team_wins() -> None:
    message = render(AgentPost(speaker="planner", text="hi", icon=":calendar:")).messages[0]
    assert message.icon_emoji == ":calendar:"


@pytest.mark.parametrize(
    ("team", "not_started", "expected"),
    [
        (None, False, "<@UANA> asked: plot a &lt;chart&gt; &amp; more"),
        ("coder", False, "<@UANA> asked (team *coder*): plot a &lt;chart&gt; &amp; more"),
        (
            "coder",
            True,
            "<@UANA> asked (team *coder*): plot a &lt;chart&gt; &amp; more\n:warning: Not started",
        ),
    ],
)
def test_slash_command_task_message_keeps_the_task_and_says_when_it_did_not_start(
    team: str | None, not_started: bool, expected: str
) -> None:
    message = render_command_root("UANA", "plot a <chart> & more", team, not_started=not_started)
    assert message.text.startswith(expected)
    assert ("Not started" in message.text) is not_started
    assert message.blocks[0]["text"]["text"] == message.text


def hosts_card(decision: HostsDecision | None = None) -> HostsPost:
    return HostsPost(
        run_id="r3",
        code_hash="h3",
        hosts=("data.example.org:8080", "a<b>.org"),
        approvers=("UANA", "UBOSS"),
        expires_at=AT,
        decision=decision,
    )


def test_hosts_card_names_each_host_and_has_allow_and_keep_blocked_buttons() -> None:
    (message,) = render(hosts_card()).messages
    section, actions = message.blocks
    text = section["text"]["text"]
    assert "`data.example.org:8080`, `a&lt;b&gt;.org`" in text
    assert "<@UANA> or <@UBOSS> can allow them" in text
    allow, keep = actions["elements"]
    assert (allow["action_id"], allow["text"]["text"], allow["style"]) == (
        "allow_host",
        "Allow and run again",
        "primary",
    )
    assert (keep["action_id"], keep["text"]["text"]) == ("deny_host", "Keep blocked") and "style" not in keep
    assert json.loads(allow["value"]) == json.loads(keep["value"]) == {"run_id": "r3", "code_hash": "h3"}


@pytest.mark.parametrize(
    ("decision", "words"),
    [
        (HostsDecision(outcome="allowed", user_id="UBOSS", at=AT), "Allowed by <@UBOSS> for this thread"),
        (HostsDecision(outcome="kept", user_id="UANA", at=AT), "Kept blocked by <@UANA>"),
        (HostsDecision(outcome="expired", at=AT), "Nobody decided in time: kept blocked"),
        (HostsDecision(outcome="stopped", user_id="UANA", at=AT), "Stopped by <@UANA>"),
    ],
)
def test_decided_hosts_card_has_no_buttons_and_says_who(decision: HostsDecision, words: str) -> None:
    (message,) = render(hosts_card(decision)).messages
    assert [b["type"] for b in message.blocks] == ["section", "context"]
    assert words in message.blocks[1]["elements"][0]["text"]


def test_run_card_says_which_network_the_run_will_have() -> None:
    post = card(CodeBlock(code="print(1)", language="python")).model_copy(
        update={"network": "network: proxy — allowed: a.org, b.org:8080"}
    )
    (message,) = render(post).messages
    assert message.blocks[1] == {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": ":globe_with_meridians: network: proxy — allowed: a.org, b.org:8080"}
        ],
    }


def test_result_shows_contacted_and_blocked_hosts_in_one_context_line() -> None:
    report = EgressReport(
        contacted=("pypi.internal:3141",), blocked=("data.example.org",), notes=("byte cap hit",)
    )
    (message,) = render(ResultPost(run_id="r1", exit_code=0, output="ok", egress=report)).messages
    audits = [b for b in message.blocks if b["type"] == "context" and "globe" in b["elements"][0]["text"]]
    assert [b["elements"][0]["text"] for b in audits] == [
        ":globe_with_meridians: contacted: pypi.internal:3141 · blocked: data.example.org · byte cap hit"
    ]
    (plain,) = render(ResultPost(run_id="r1", exit_code=0, output="ok")).messages
    assert not any("globe" in str(b) for b in plain.blocks)
