"""Blocked hosts on a real Redis and real RQ workers: the card nobody answers expires by a scheduled step."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fakeredis
import pytest
import redis

from agentbot import runtime
from agentbot.conversation import driver, engine
from agentbot.conversation.code import CodeResult, EgressReport
from agentbot.conversation.events import Approve, Start
from agentbot.conversation.llm import Completion
from agentbot.conversation.state import ConversationKey, ConversationState, EgressState, Phase
from agentbot.queue import RQJobQueue
from agentbot.settings import load_settings
from tests.fakes.openai_server import FakeOpenAI, last_user_text
from tests.fakes.platform import RecordingPlatform
from tests.integration.test_steps_on_redis import code, key, wait_for, worker_processes

TTL = 2  # seconds: the approval TTL, and so how long the card stays open
BLOCKED = EgressReport(blocked=("data.example.org:8080",), askable=("data.example.org:8080",))


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def blocked(rt: runtime.Runtime, conversation: ConversationKey) -> ConversationState:
    """A conversation whose approved run the proxy refused a host: waiting on the card (saved)."""
    policy, now = rt.settings.policy(), datetime.now(UTC)
    start = Start(event_id="e1", user_id="U1", user_name="ana", text="plot prices")
    state = engine.apply(None, conversation, start, policy, now, egress=EgressState(network="proxy"))
    assert state is not None
    state = engine.on_reply(state, Completion(content=code("import data"), model="m"), now)
    assert state.run is not None
    click = Approve(event_id="e2", user_id="U1", run_id="r1", code_hash=state.run.code_hash)
    approved = engine.apply(state, conversation, click, policy, now)
    assert approved is not None
    result = CodeResult(exit_code=1, output="ConnectionError: 403\n", egress=BLOCKED)
    state = engine.on_run_result(engine.on_run_started(approved), result, now)
    assert state.phase is Phase.AWAITING_HOSTS
    return rt.store.save(state)


def test_a_card_nobody_answers_expires_by_a_scheduled_step_on_a_worker_with_the_scheduler(
    redis_client: redis.Redis, redis_url: str, llm: FakeOpenAI, tmp_path: Path
) -> None:
    llm.script("Then I will use offline data.\nTERMINATE")
    conversation = key()
    with worker_processes(1, redis_url, llm, tmp_path) as queue_name:
        settings = load_settings(
            redis_url=redis_url, openai_base_url=llm.base_url, openai_api_key="test", executor="none",
            approval_ttl=TTL,
        )  # fmt: skip
        platform = RecordingPlatform(redis_client)
        rt = runtime.Runtime(settings=settings, redis=redis_client, platform=platform, embedded=False,
                             queue_name=queue_name)  # fmt: skip
        blocked(rt, conversation)
        driver.step(rt.ports(), conversation)  # shows the card; schedules the step for its expiry
        driver.step(rt.ports(), conversation)  # a repeat schedules nothing more
        scheduled = rt.queue.queue.scheduled_job_registry
        assert scheduled.get_job_ids() == [f"wake-{conversation.slug}-hosts-r1"]
        assert [p["kind"] for p in platform.posts()] == ["agent", "approval", "result", "hosts"]
        assert llm.requests == []  # the refused run's result waits for the people

        wait_for(lambda: len(llm.requests) == 1, timeout=TTL + 15)
        wait_for(lambda: _phase(rt, conversation) is Phase.AWAITING_HUMAN)

    fed = last_user_text(llm.requests[0])
    assert fed.startswith("exitcode: 1 (execution failed)\nCode output: ConnectionError: 403")
    assert fed.endswith("(nobody allowed them before the approval expired): data.example.org:8080")
    updates = [
        c["post"] for c in platform.calls() if c["method"] == "update" and c["post"]["kind"] == "hosts"
    ]
    assert [u["decision"]["outcome"] for u in updates] == ["expired"]
    assert scheduled.count == 0


def _phase(rt: runtime.Runtime, conversation: ConversationKey) -> Phase | None:
    state = rt.store.load(conversation)
    return state.phase if state is not None else None


def test_without_a_scheduler_process_a_timer_enqueues_the_step_once_at_its_time() -> None:
    """The embedded mode (in-memory Redis, no scheduler process): a timer of this process stands in."""
    queue = RQJobQueue(fakeredis.FakeRedis(), queue_name="embedded", scheduler=False)
    at = datetime.now(UTC) + timedelta(seconds=0.3)
    queue.enqueue_step_at(key(), at, name="hosts-r1")
    queue.enqueue_step_at(key(), at, name="hosts-r1")  # a repeat: still one step
    assert queue.queue.count == 0
    wait_for(lambda: queue.queue.count == 1, timeout=5)
    time.sleep(0.3)
    assert queue.queue.count == 1
    assert datetime.now(UTC) >= at
