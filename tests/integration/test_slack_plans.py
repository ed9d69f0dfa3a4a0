"""Team plans on the fake Slack Web API: streamed as task and plan chunks, or refused (the fallback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentbot.conversation.posts import PlanPost, PlanTask
from agentbot.settings import load_settings
from agentbot.slack.platform import SlackPlatform
from tests.fakes.slack_server import TOKEN, FakeSlack
from tests.integration.test_slack_platform import KEY


def plan(*titles: str, done: bool = False) -> PlanPost:
    tasks = tuple(
        PlanTask(task_id=f"t{i}", title=t, output=f"{t} said something") for i, t in enumerate(titles)
    )
    return PlanPost(title="launch: working", tasks=tasks, recipient="UANA", done=done)


def platform_for(slack: FakeSlack) -> SlackPlatform:
    return SlackPlatform.from_settings(load_settings(slack_bot_token=TOKEN, slack_api_url=slack.api_url))


@pytest.fixture
def slack_with_plans() -> Iterator[FakeSlack]:
    with FakeSlack(plans=True) as fake:
        yield fake


def test_a_plan_streams_its_tasks_and_stops_when_done(slack_with_plans: FakeSlack) -> None:
    platform = platform_for(slack_with_plans)
    ts = platform.post(KEY, plan("planner"), effect_id="p-1")
    (start,) = slack_with_plans.calls_to("chat.startStream")
    assert start.args["task_display_mode"] == "plan" and start.args["recipient_user_id"] == "UANA"
    assert [c["type"] for c in start.args["chunks"]] == ["plan_update", "task_update"]

    platform.update(KEY, ts, plan("planner", "critic"))
    platform.update(KEY, ts, plan("planner", "critic", done=True))
    (message,) = [m for m in slack_with_plans.thread("C0001", KEY.thread_ts) if m["ts"] == ts]
    assert message["stream"]["state"] == "stopped"
    assert list(message["stream"]["tasks"]) == ["t0", "t1"]
    assert "critic (complete): critic said something" in message["text"]
    assert len(slack_with_plans.calls_to("chat.stopStream")) == 1


def test_a_workspace_that_refuses_task_chunks_gets_no_plan_and_is_not_asked_again() -> None:
    with FakeSlack() as slack:  # no AI features: task and plan chunks are refused
        platform = platform_for(slack)
        assert platform.post(KEY, plan("planner"), effect_id="p-1") == ""
        assert platform.post(KEY, plan("planner", "critic"), effect_id="p-2") == ""
        assert len(slack.calls_to("chat.startStream")) == 1
        assert slack.thread("C0001", KEY.thread_ts) == []
