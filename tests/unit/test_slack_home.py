"""Run all, Edit, feedback and the Home tab on Slack's side: payloads in, blocks and views out (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from agentbot.conversation import engine
from agentbot.conversation.code import CodeBlock, CodeResult, EgressReport
from agentbot.conversation.events import Approve, EditCode, Rate, RunAll, Start
from agentbot.conversation.posts import AgentPost, ResultPost
from agentbot.conversation.state import ConversationKey, ConversationState, Phase, Policy
from agentbot.slack.home import home_view, waiting_for
from agentbot.slack.parse import (
    parse_action,
    parse_edit,
    parse_edit_submission,
    parse_home,
)
from agentbot.slack.render import RUN_ALL_NOTE, render
from agentbot.slack.views import edit_view
from tests.unit.test_slack_parse import KEY, TEAM, click
from tests.unit.test_slack_render import card

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
VALUE = json.dumps({"run_id": "r1", "code_hash": "h1"})


def awaiting(approvers: tuple[str, ...] = ("UBOSS",), key: ConversationKey = KEY) -> ConversationState:
    start = Start(event_id="e1", user_id="UANA", text="Plot the sales")
    state = engine.apply(None, key, start, Policy(approvers=approvers), NOW)
    assert state is not None
    reply = "Here:\n```python\nprint('sales')\n```"
    completion = engine.Completion(content=reply, model="m", prompt_tokens=1, completion_tokens=1)
    return engine.on_reply(state, completion, NOW)


def test_an_editable_card_offers_edit_between_run_all_and_skip() -> None:
    post = card(CodeBlock(code="print(1)", language="python")).model_copy(update={"editable": True})
    actions = render(post).messages[0].blocks[-1]
    assert [e["action_id"] for e in actions["elements"]] == [
        "run_code",
        "run_all",
        "edit_code",
        "skip_code",
        "stop_session",
    ]


def test_a_final_answer_ends_with_feedback_buttons_naming_its_turn() -> None:
    message = render(AgentPost(speaker="assistant", text="42. TERMINATE", feedback_turn=3)).messages[-1]
    block = message.blocks[-1]
    assert block["type"] == "context_actions"
    (buttons,) = block["elements"]
    assert buttons["type"] == "feedback_buttons" and buttons["action_id"] == "feedback"
    assert json.loads(buttons["positive_button"]["value"]) == {"turn": 3, "vote": "up"}
    assert json.loads(buttons["negative_button"]["value"]) == {"turn": 3, "vote": "down"}
    plain = render(AgentPost(speaker="assistant", text="Working on it")).messages[-1]
    assert all(b["type"] != "context_actions" for b in plain.blocks)


def test_a_run_under_run_all_says_so() -> None:
    post = ResultPost(run_id="r2", exit_code=0, output="ok", run_all=True)
    assert render(post).messages[0].blocks[-1]["elements"][0]["text"] == RUN_ALL_NOTE


def test_run_all_and_feedback_clicks_become_events() -> None:
    run_all = parse_action(click("run_all", VALUE))
    assert run_all is not None and run_all.key == KEY
    assert isinstance(run_all.event, RunAll) and run_all.event.code_hash == "h1"
    vote = {**click("feedback", json.dumps({"turn": 2, "vote": "down"}))}
    vote["actions"][0]["type"] = "feedback_buttons"
    rated = parse_action(vote)
    assert rated is not None and rated.event == Rate(
        event_id=rated.event.event_id, user_id="UANA", turn=2, vote="down"
    )
    assert parse_action(click("feedback", json.dumps({"turn": "2", "vote": "meh"}))) is None


def home_click(action_id: str, value: dict[str, Any]) -> dict[str, Any]:
    """A click on the Home tab: a view container, no channel and no message."""
    body = click(action_id, json.dumps(value))
    body.pop("channel")
    body.pop("message")
    body["container"] = {"type": "view", "view_id": "V1"}
    body["view"] = {"id": "V1", "type": "home"}
    return body


def test_a_home_click_names_its_thread_in_the_button_value() -> None:
    value = {"run_id": "r1", "code_hash": "h1", "channel": "C0001", "thread": KEY.thread_ts}
    inbound = parse_action(home_click("run_code", value))
    assert inbound is not None and inbound.key == KEY
    assert parse_action(home_click("run_code", {"run_id": "r1", "code_hash": "h1"})) is None
    edit = parse_edit(home_click("edit_code", value))
    assert edit is not None and edit.key == KEY and edit.run_id == "r1"


def submission(code: object, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    meta = metadata or {"channel": "C0001", "thread": KEY.thread_ts, "run_id": "r1", "code_hash": "h1"}
    return {
        "type": "view_submission",
        "team": {"id": TEAM},
        "user": {"id": "UANA", "name": "ana", "team_id": TEAM},
        "view": {
            "id": "V9",
            "hash": "1.abc",
            "callback_id": "edit_code",
            "private_metadata": json.dumps(meta),
            "state": {"values": {"code": {"code": {"type": "plain_text_input", "value": code}}}},
        },
    }


def test_an_edit_submission_is_an_edit_of_the_run_its_metadata_names() -> None:
    inbound = parse_edit_submission(submission("print(2)"))
    assert inbound is not None and inbound.key == KEY
    assert inbound.event == EditCode(
        event_id="view:V9:1.abc",
        user_id="UANA",
        user_name="ana",
        run_id="r1",
        code_hash="h1",
        code="print(2)",
    )
    missing = parse_edit_submission(submission(None))
    assert missing is not None and isinstance(missing.event, EditCode) and missing.event.code == ""
    assert parse_edit_submission(submission("x", {"channel": "C0001"})) is None
    assert parse_edit_submission({**submission("x"), "type": "block_actions"}) is None


def test_the_edit_modal_holds_the_code_and_names_the_run() -> None:
    state = awaiting()
    assert state.run is not None
    view = edit_view(state, state.run)
    assert view["callback_id"] == "edit_code"
    (field, _note) = view["blocks"]
    assert field["block_id"] == "code" and field["element"]["action_id"] == "code"
    assert field["element"]["multiline"] and field["element"]["initial_value"] == "print('sales')\n"
    meta = json.loads(view["private_metadata"])
    assert meta == {
        "channel": "C0001",
        "thread": KEY.thread_ts,
        "run_id": "r1",
        "code_hash": state.run.code_hash,
    }


def test_home_opened_is_a_visit_only_on_the_home_tab() -> None:
    event = {"type": "app_home_opened", "user": "UANA", "tab": "home"}
    visit = parse_home({"team_id": TEAM, "event": event})
    assert visit is not None and (visit.team_id, visit.user_id) == (TEAM, "UANA")
    assert parse_home({"team_id": TEAM, "event": {**event, "tab": "messages"}}) is None


def test_home_lists_the_run_waiting_for_the_viewer_with_its_buttons() -> None:
    state = awaiting()
    other = awaiting(key=KEY.evolve(thread_ts="1700000999.000100"), approvers=())
    assert waiting_for(state, "UBOSS") and not waiting_for(other, "UBOSS")
    view = home_view("UBOSS", [state, other], "*translate* — group chat", NOW + timedelta(minutes=5))
    assert view["type"] == "home"
    actions = [b for b in view["blocks"] if b["type"] == "actions"]
    (run_actions,) = actions
    buttons = {e["action_id"]: json.loads(e["value"]) for e in run_actions["elements"]}
    assert set(buttons) == {"run_code", "edit_code", "skip_code"}
    assert buttons["run_code"]["channel"] == "C0001" and buttons["run_code"]["thread"] == KEY.thread_ts
    text = json.dumps(view["blocks"])
    assert "print('sales')" in text and "<#C0001>" in text and "5 min" in text and "translate" in text
    assert state.phase is Phase.AWAITING_APPROVAL
    nothing = home_view("UEVE", [], "", NOW)
    assert "Nothing waits for your approval." in json.dumps(nothing["blocks"])


def test_home_lists_blocked_hosts_waiting_for_the_viewer_with_allow_and_keep() -> None:
    proposed = awaiting()
    assert proposed.run is not None
    click = Approve(event_id="c", user_id="UANA", run_id="r1", code_hash=proposed.run.code_hash)
    state = engine.apply(proposed, KEY, click, Policy(), NOW)
    assert state is not None
    report = EgressReport(blocked=("data.example.org",), askable=("data.example.org",))
    state = engine.on_run_result(
        engine.on_run_started(state), CodeResult(exit_code=1, output="refused", egress=report), NOW
    )
    assert state.phase is Phase.AWAITING_HOSTS and waiting_for(state, "UBOSS")
    view = home_view("UBOSS", [state], "", NOW)
    (actions,) = [b for b in view["blocks"] if b["type"] == "actions"]
    buttons = {e["action_id"]: json.loads(e["value"]) for e in actions["elements"]}
    assert set(buttons) == {"allow_host", "deny_host"}
    assert buttons["allow_host"]["run_id"] == "r1" and buttons["allow_host"]["thread"] == KEY.thread_ts
    assert "data.example.org" in json.dumps(view["blocks"])
