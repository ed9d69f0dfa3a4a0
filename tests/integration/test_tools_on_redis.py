"""Tool calls through the real pieces: Redis, RQ workers, the OpenAI SDK against the fake server, the
tool host with Python tools and a real MCP server (stdio, built with the `mcp` SDK)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from agentbot import runtime
from agentbot.conversation.driver import submit
from agentbot.conversation.events import Approve, Skip, Start
from agentbot.conversation.state import Phase
from agentbot.settings import load_settings
from tests.fakes.openai_server import Call, FakeOpenAI, ToolCalls
from tests.fakes.platform import RecordingPlatform
from tests.integration.test_steps_on_redis import (
    Harness,
    _phase,
    _settled,
    key,
    kill_work_horses,
    wait_for,
    worker_processes,
)

TEAMS = """\
[teams.desk]
[[teams.desk.agents]]
name = "analyst"
tools = ["agentbot.tools.examples:summary_stats", "tests.fakes.tools:record"]
mcp_servers = ["fake"]

[tools."tests.fakes.tools:record"]
approve = "never"

[mcp_servers.fake]
command = "{python}"
args = ["-m", "tests.fakes.mcp_server"]
include = ["add", "echo"]
approve = {{ add = "never" }}
"""


@pytest.fixture
def teams_file(tmp_path: Path) -> Path:
    path = tmp_path / "teams.toml"
    path.write_text(TEAMS.format(python=sys.executable), encoding="utf-8")
    return path


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def harness(
    redis_client: redis.Redis, llm: FakeOpenAI, tmp_path: Path, teams_file: Path
) -> Iterator[Harness]:
    h = Harness(redis_client, llm, tmp_path / "ws", teams_file=teams_file, tool_timeout=5.0)
    yield h
    h.rt.tools.close()


def start(text: str = "stats of 1, 2, 3, 4") -> Start:
    return Start(event_id=f"ev-{uuid.uuid4().hex[:6]}", user_id="U1", user_name="ana", text=text, team="desk")


def card(h: Harness) -> dict[str, Any]:
    cards = h.platform.posts(kind="tool_approval")
    assert cards, h.platform.posts()
    return cards[-1]


def click(h: Harness, event: Callable[..., Any], shown: dict[str, Any], **extra: str) -> None:
    h.submit(event(event_id=f"c-{uuid.uuid4().hex[:6]}", user_id="U1", run_id=shown["run_id"], **extra))
    h.work()


def test_a_python_tool_call_is_approved_run_and_its_result_reaches_the_model(
    harness: Harness, llm: FakeOpenAI
) -> None:
    llm.script(ToolCalls([Call("summary_stats", {"numbers": [1, 2, 3, 4]})]), "The median is 2.5. TERMINATE")
    harness.submit(start())
    harness.work()
    assert harness.state().phase is Phase.AWAITING_TOOLS
    offered = [tool["function"]["name"] for tool in llm.requests[0]["tools"]]
    assert offered == ["summary_stats", "record", "add", "echo"]
    shown = card(harness)
    assert [(c["name"], c["server"]) for c in shown["calls"]] == [("summary_stats", "python")]
    click(harness, Approve, shown, code_hash=shown["code_hash"])
    assert harness.state().phase is Phase.AWAITING_HUMAN
    (result,) = harness.platform.posts(kind="tool_result")
    assert '"median": 2.5' in result["text"] and not result["is_error"]
    sent = llm.requests[1]["messages"]
    assert (
        sent[-2]["role"] == "assistant" and sent[-2]["tool_calls"][0]["function"]["name"] == "summary_stats"
    )
    assert sent[-1]["role"] == "tool" and sent[-1]["tool_call_id"] == "call_1_1"
    assert '"median": 2.5' in sent[-1]["content"]
    assert harness.platform.posts(kind="agent")[-1]["text"] == "The median is 2.5. TERMINATE"


def test_parallel_calls_to_an_mcp_server_never_one_at_once_the_other_after_run(
    harness: Harness, llm: FakeOpenAI
) -> None:
    llm.script(
        ToolCalls([Call("add", {"a": 2, "b": 40}), Call("echo", {"text": "hi"})]), "42 and hi. TERMINATE"
    )
    harness.submit(start("add and echo"))
    harness.work()
    assert harness.state().phase is Phase.AWAITING_TOOLS
    assert [r["text"] for r in harness.platform.posts(kind="tool_result")] == ["42"]  # `add`: never
    shown = card(harness)
    assert [(c["name"], c["server"]) for c in shown["calls"]] == [("echo", "fake")]
    click(harness, Approve, shown, code_hash=shown["code_hash"])
    tool_messages = [m for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages] == [
        ("call_1_1", "42"),
        ("call_1_2", "hi"),
    ]


def test_skip_sends_the_model_the_declined_call(harness: Harness, llm: FakeOpenAI) -> None:
    llm.script(ToolCalls([Call("echo", {"text": "secret"})]), "Understood. TERMINATE")
    harness.submit(start("echo"))
    harness.work()
    click(harness, Skip, card(harness))
    assert harness.platform.posts(kind="tool_result") == []
    assert llm.requests[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1_1",
        "content": "The person declined this call.",
    }


def test_a_worker_killed_mid_call_gets_it_offered_again_not_run_again(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, teams_file: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    with FakeOpenAI() as llm:
        llm.script(ToolCalls([Call("record", {"path": str(ledger), "seconds": 60})]))
        workers = worker_processes(1, redis_url, llm, tmp_path)
        workers.env.update({"TEST_TOOLS": "1", "AGENTBOT_TEAMS_FILE": str(teams_file)})
        with workers as queue_name:
            rt = runtime.Runtime(
                settings=load_settings(redis_url=redis_url), redis=redis_client,
                platform=RecordingPlatform(redis_client), embedded=False, queue_name=queue_name,
            )  # fmt: skip
            submit(rt.store, rt.queue, key(), start("record"))
            wait_for(ledger.exists, timeout=60)
            assert _phase(rt, key()) is Phase.CALLING_TOOLS
            kill_work_horses()  # SIGKILL the step mid-call (the tool host and the call live on)
            wait_for(lambda: _settled(rt, key()) and _phase(rt, key()) is Phase.AWAITING_TOOLS, timeout=60)
        platform = RecordingPlatform(redis_client)
        cards = platform.posts(kind="tool_approval")
        assert [c["run_id"] for c in cards] == ["t2"]  # `record` needs no approval; a re-offer does
        assert [c["name"] for c in cards[0]["calls"]] == ["record"]
        assert any("record was interrupted" in p["text"] for p in platform.posts(kind="notice"))
        assert ledger.read_text() == "ran\n"  # started once, never again on its own
