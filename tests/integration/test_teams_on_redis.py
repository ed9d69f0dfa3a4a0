"""Agent teams as RQ steps on a real Redis, with the OpenAI SDK against the scripted fake server."""

from __future__ import annotations

import json
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from agentbot import runtime
from agentbot.conversation.driver import submit
from agentbot.conversation.events import Event, HumanMessage, PickSpeaker, Start
from agentbot.conversation.state import ConversationKey, ConversationState, Phase
from agentbot.settings import load_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.platform import RecordingPlatform

KEY = ConversationKey(team_id="T1", channel_id="C1", thread_ts="1700000000.000100")
TEAMS = """
[channels]
C_PM = "project_manager"

[teams.trio]
pattern = "group_chat"
speaker_selection = "round_robin"
max_round = 6

[[teams.trio.agents]]
name = "planner"
description = "plans the work"
icon = ":memo:"
model = "gpt-4o"

[[teams.trio.agents]]
name = "writer"
description = "writes the text"
icon = ":pencil2:"

[[teams.trio.agents]]
name = "critic"
description = "finds the weak spots"
icon = ":mag:"

[teams.chooser]
pattern = "group_chat"
speaker_selection = "auto"
max_round = 2
agents = [{ name = "planner", description = "plans" }, { name = "writer" }, { name = "critic" }]

[teams.picker]
pattern = "group_chat"
speaker_selection = "manual"
agents = [{ name = "planner" }, { name = "writer" }, { name = "critic" }]
"""
_GROUP_ROLE = re.compile(r"You are ([\w-]+), in a group chat")


class Agents:
    """The fake model's replies, per agent (found by its system message) and for speaker selection."""

    def __init__(self) -> None:
        self.replies: dict[str, deque[str]] = {}
        self.selections: deque[str] = deque()
        self.calls: list[tuple[str, str]] = []  # (who, requested model)

    def script(self, who: str, *replies: str) -> None:
        self.replies.setdefault(who, deque()).extend(replies)

    def __call__(self, body: dict[str, Any]) -> Reply:
        system = body["messages"][0]["content"]
        found = _GROUP_ROLE.search(system)
        if system.startswith("You are in a role play game"):
            who = "select"
            reply = self.selections.popleft()
        else:
            who = found.group(1) if found else "lead"
            reply = self.replies[who].popleft()
        self.calls.append((who, body["model"]))
        return reply


class Harness:
    """A runtime on the real Redis with a teams file, and a burst-mode worker run in the test."""

    def __init__(self, client: redis.Redis, llm: FakeOpenAI, tmp_path: Path, **settings: Any) -> None:
        teams_file = tmp_path / "teams.toml"
        teams_file.write_text(TEAMS, encoding="utf-8")
        self.settings = load_settings(
            redis_url="redis://unused", openai_base_url=llm.base_url, openai_api_key="test",
            executor="none", llm_max_retries=0, teams_file=teams_file, **settings,
        )  # fmt: skip
        self.platform = RecordingPlatform(client)
        self.rt = runtime.Runtime(
            settings=self.settings, redis=client, platform=self.platform, embedded=False,
            queue_name=f"test-{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
        runtime.install(self.rt)
        self.client = client

    def submit(self, event: Event, key: ConversationKey = KEY) -> None:
        submit(self.rt.store, self.rt.queue, key, event)

    def work(self) -> None:
        worker = SimpleWorker([self.rt.queue.queue], connection=self.client, serializer=JSONSerializer)
        worker.work(burst=True, logging_level="WARNING")

    def state(self, key: ConversationKey = KEY) -> ConversationState:
        state = self.rt.store.load(key)
        assert state is not None
        return state

    def said(self, key: ConversationKey = KEY) -> list[tuple[str, str]]:
        return [(p["speaker"], p["text"]) for p in self.platform.posts(key.id, kind="agent")]


@pytest.fixture
def agents() -> Agents:
    return Agents()


@pytest.fixture
def llm(agents: Agents) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(responder=agents) as fake:
        yield fake


@pytest.fixture
def make_harness(redis_client: redis.Redis, llm: FakeOpenAI, tmp_path: Path) -> Callable[..., Harness]:
    return lambda **settings: Harness(redis_client, llm, tmp_path, **settings)


def start(text: str, team: str | None = None, key_user: str = "U1") -> Start:
    return Start(
        event_id=f"ev-{uuid.uuid4().hex[:6]}", user_id=key_user, user_name="ana", text=text, team=team
    )


def test_round_robin_group_chat_runs_in_one_thread_with_distinct_speakers_then_a_reply_reaches_an_agent(
    make_harness: Callable[..., Harness], agents: Agents, redis_client: redis.Redis
) -> None:
    h = make_harness()
    for round_ in (1, 2):
        agents.script("planner", f"plan v{round_}")
        agents.script("writer", f"draft v{round_}")
        agents.script("critic", f"critique v{round_}")
    agents.script("critic", "The intro is fine now.")
    agents.script("planner", "Then we are done. TERMINATE")
    h.submit(start("Write a launch note", team="trio"))
    h.work()
    assert [who for who, _ in h.said()] == ["planner", "writer", "critic"] * 2
    icons = {p["speaker"]: p["icon"] for p in h.platform.posts(KEY.id, kind="agent")}
    assert icons == {"planner": ":memo:", "writer": ":pencil2:", "critic": ":mag:"}
    assert [model for who, model in agents.calls if who == "planner"] == ["gpt-4o", "gpt-4o"]
    assert [model for who, model in agents.calls if who == "writer"] == ["gpt-4o-mini", "gpt-4o-mini"]
    state = h.state()
    assert state.phase is Phase.AWAITING_HUMAN
    assert h.platform.posts(KEY.id, kind="notice")[-1]["text"] == (
        "Reached max_round (6). Reply in the thread to continue."
    )
    idle = idle_bytes(redis_client, h)
    print(f"\nidle group chat (3 agents x 2 rounds): {idle} bytes in Redis")  # for the note
    assert idle < 32_000

    h.submit(HumanMessage(event_id="h1", user_id="U2", user_name="bo", text="critic: is the intro too long?"))
    h.work()
    assert h.said()[-2:] == [("critic", "The intro is fine now."), ("planner", "Then we are done. TERMINATE")]


def idle_bytes(client: redis.Redis, h: Harness) -> int:
    """What an idle conversation keeps in Redis: its state hash and its (trimmed) inbox stream."""
    keys = [h.rt.store.state_key(KEY), h.rt.store.inbox_key(KEY)]
    return sum(int(client.memory_usage(key) or 0) for key in keys)


def test_auto_selection_follows_the_models_choice_and_falls_back_to_round_robin(
    make_harness: Callable[..., Harness], agents: Agents
) -> None:
    h = make_harness()
    agents.selections.extend(["critic", "Someone from legal, I think."])
    agents.script("critic", "Too vague.")
    agents.script("planner", "Here is a sharper plan.")
    h.submit(start("Plan a hackathon", team="chooser"))
    h.work()
    assert h.said() == [("critic", "Too vague."), ("planner", "Here is a sharper plan.")]
    assert [who for who, _ in agents.calls] == ["select", "critic", "select", "planner"]
    warning = h.platform.posts(KEY.id, kind="notice")[0]
    assert warning["level"] == "warning"
    assert "falling back to round robin: planner speaks next" in warning["text"]


def test_manual_selection_waits_for_a_pick_and_the_pick_continues_it(
    make_harness: Callable[..., Harness], agents: Agents
) -> None:
    h = make_harness()
    agents.script("writer", "A first draft.")
    h.submit(start("Draft a FAQ", team="picker"))
    h.work()
    assert h.state().phase is Phase.AWAITING_PICK and agents.calls == []
    [card] = h.platform.posts(KEY.id, kind="speaker_choice")
    assert [o["name"] for o in card["options"]] == ["planner", "writer", "critic"]
    h.submit(PickSpeaker(event_id="p", user_id="U2", pick_id=card["pick_id"], speaker="writer"))
    h.work()
    assert h.said() == [("writer", "A first draft.")]
    updates = [c["post"] for c in h.platform.calls(KEY.id) if c["method"] == "update"]
    assert [(u["kind"], u["chosen"], u["chosen_by"]) for u in updates] == [("speaker_choice", "writer", "U2")]
    assert h.state().phase is Phase.AWAITING_PICK  # the people pick the next speaker again


def test_hierarchy_delegates_to_sub_teams_in_their_own_conversations_and_integrates_their_results(
    make_harness: Callable[..., Harness], agents: Agents, redis_client: redis.Redis
) -> None:
    h = make_harness()
    pm_key = KEY.model_copy(update={"channel_id": "C_PM"})  # the channel's team: project_manager
    agents.script(
        "lead",
        "Delegating.\nDELEGATE timeline: 3-month plan for a mobile app\n"
        "DELEGATE budget: cost for 4 engineers, 3 months\nDELEGATE staffing: roles for 4 engineers",
        "Integrated plan: 3 months, $180k, 2 mobile + 1 backend + 1 QA. TERMINATE",
    )
    agents.script("timeline_planner", "M1 design, M2 build, M3 beta and launch.")
    agents.script("budget_analyst", "$180k including 15% contingency.")
    agents.script("staffing_planner", "2 mobile, 1 backend, 1 QA.")
    h.submit(start("Plan our app project", key_user="U1"), key=pm_key)
    h.work()
    state = h.state(pm_key)
    assert state.phase is Phase.AWAITING_HUMAN  # the lead said TERMINATE: the people have the word
    assert [d.status for d in state.delegations] == ["done", "done", "done"]
    last_lead_messages = state.transcript[-4:-1]
    assert [m.speaker for m in last_lead_messages] == ["timeline", "budget", "staffing"]
    assert h.said(pm_key)[-1][0] == "project_manager"
    assert {who for who, _ in h.said(pm_key)} == {"project_manager"}  # specialists never post in the thread
    for d in state.delegations:  # each sub-team had its own conversation state, steps and inbox
        sub = h.rt.store.load(
            pm_key.model_copy(update={"thread_ts": f"{pm_key.thread_ts}~{d.sub_id}-{d.subteam}"})
        )
        assert sub is not None and sub.phase is Phase.FINISHED and sub.parent == pm_key
    cards = h.platform.posts(pm_key.id, kind="subteam")
    assert [c["subteam"] for c in cards] == ["timeline", "budget", "staffing"]
    final = [
        c["post"]
        for c in h.platform.calls(pm_key.id)
        if c["method"] == "update" and c["post"]["kind"] == "subteam"
    ]
    assert {(c["subteam"], c["status"]) for c in final if c["status"] == "done"} == {
        ("timeline", "done"),
        ("budget", "done"),
        ("staffing", "done"),
    }
    assert "sub-team budget" in state.usage


def test_budget_stops_the_group_chat_and_the_meter_shows_the_spend(
    make_harness: Callable[..., Harness], agents: Agents, llm: FakeOpenAI, tmp_path: Path
) -> None:
    config_list = tmp_path / "config.json"
    entry = {"model": "gpt-4o-mini", "base_url": llm.base_url, "api_key": "test", "price": [1.0, 1.0]}
    config_list.write_text(json.dumps([entry]), encoding="utf-8")
    h = make_harness(config_list=config_list, max_cost_usd=0.2)
    for n in range(6):
        agents.script("planner", f"planner idea number {n} " * 5)
        agents.script("writer", f"writer draft number {n} " * 5)
        agents.script("critic", f"critic remark number {n} " * 5)
    h.submit(start("Brainstorm names", team="trio"))
    h.work()
    state = h.state()
    assert state.phase is Phase.FINISHED
    assert state.total_cost_usd >= 0.2
    assert h.platform.posts(KEY.id, kind="notice")[-1]["text"].startswith(
        "The cost budget of $0.20 is spent. Conversation ended."
    )
    meters = [c["post"] for c in h.platform.calls(KEY.id) if c.get("post", {}).get("kind") == "meter"]
    assert len(meters) == len(h.said()) and meters[-1]["budget_usd"] == 0.2
    assert meters[-1]["spent_usd"] == pytest.approx(state.total_cost_usd)
