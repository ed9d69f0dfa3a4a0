"""Several Docker engines, on a real Redis: a conversation is pinned to one engine, its sandbox steps go
to that engine's queue, and when the engine is down the thread says so and people may move on.

The steps run in this process (`driver.step`) with the ports a worker of each engine has: `a` served
here by a local executor, `b` served by other workers. A real `DockerExecutor` pointed at a socket
nobody listens on plays an engine that is down. (Two real engines: tests/e2e/test_engines.py.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from rq.job import Job

from agentbot import runtime
from agentbot.conversation import driver, engine
from agentbot.conversation.events import Approve, Start
from agentbot.conversation.llm import Completion
from agentbot.conversation.ports import CodeExecutor
from agentbot.conversation.state import ConversationKey, ConversationState, Phase
from agentbot.sandbox.docker import DockerExecutor
from agentbot.sandbox.engines import DockerEngines
from agentbot.sandbox.local import LocalExecutor
from agentbot.settings import EngineSpec, load_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.platform import RecordingPlatform
from tests.integration.test_steps_on_redis import code, key
from tests.sandbox.docker_fixtures import dead_sockets

ENGINES = (EngineSpec("a", "unix:///run/engine-a.sock"), EngineSpec("b", "unix:///run/engine-b.sock"))
DEAD = "unix:///nonexistent/agentbot-test/docker.sock"


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@dataclasses.dataclass
class Bot:
    rt: runtime.Runtime
    platform: RecordingPlatform
    workdir: Path

    def ports(
        self,
        served: Mapping[str, CodeExecutor],
        *,
        up: Callable[[str], bool] = lambda name: True,
        specs: tuple[EngineSpec, ...] = ENGINES,
    ) -> driver.Ports:
        """The ports of a worker serving `served`; `up` answers the ping of an engine served here."""
        engines = DockerEngines(specs, served, self.rt.redis, ping=up)
        return dataclasses.replace(self.rt.ports(), engines=engines)

    def local(self, name: str) -> LocalExecutor:
        return LocalExecutor(self.workdir / name, timeout=10, output_limit=10_000, artifact_limit=100_000)

    def steps(self, conversation: ConversationKey) -> list[str]:
        """The queue of each step enqueued for `conversation` and not taken, oldest first (no worker
        takes them here, so the first holds the conversation's slot and the rest wait behind it)."""
        limit = f"rq:rl:conv-{conversation.slug}"
        ids = [
            *self.rt.redis.zrange(f"{limit}:allowed", 0, -1),
            *self.rt.redis.zrange(f"{limit}:rate_limited", 0, -1),
        ]
        return [str(Job.fetch(job_id.decode(), connection=self.rt.redis).origin) for job_id in ids]

    def state(self, conversation: ConversationKey) -> ConversationState:
        state = self.rt.store.load(conversation)
        assert state is not None
        return state

    def approved(self, conversation: ConversationKey, body: str = "print(6 * 7)") -> ConversationState:
        """A conversation whose run was just approved (saved, its step not taken yet)."""
        policy, now = self.rt.settings.policy(), datetime.now(UTC)
        start = Start(event_id="e1", user_id="U1", user_name="ana", text="compute")
        state = engine.apply(None, conversation, start, policy, now)
        assert state is not None
        state = engine.on_reply(state, Completion(content=code(body), model="m"), now)
        assert state.run is not None
        self.rt.store.save(state)
        self.click(conversation, state)
        return self.state(conversation)

    def click(
        self, conversation: ConversationKey, state: ConversationState, *, elsewhere: bool = False
    ) -> None:
        run = state.run
        assert run is not None
        event = Approve(
            event_id=f"click-{run.run_id}-{elsewhere}", user_id="U1", run_id=run.run_id,
            code_hash=run.code_hash, elsewhere=elsewhere,
        )  # fmt: skip
        self.rt.store.append_event(conversation, event)


@pytest.fixture
def bot(redis_client: redis.Redis, llm: FakeOpenAI, tmp_path: Path) -> Bot:
    settings = load_settings(
        redis_url="redis://unused", openai_base_url=llm.base_url, openai_api_key="test", executor="local",
        workdir=tmp_path / "ws", llm_max_retries=0,
    )  # fmt: skip
    platform = RecordingPlatform(redis_client)
    rt = runtime.Runtime(
        settings=settings, redis=redis_client, platform=platform, embedded=False, queue_name="test-engines"
    )
    return Bot(rt=rt, platform=platform, workdir=tmp_path / "engines")


def dead_docker() -> DockerExecutor:
    return DockerExecutor(base_url=DEAD, network="none")


def test_a_new_workspace_goes_to_an_engine_that_is_up_and_its_run_to_that_engines_workers(bot: Bot) -> None:
    conversation = key("1700000000.000201")
    bot.approved(conversation)
    here = bot.ports({"a": bot.local("a")}, up=lambda name: False)  # a is down; b's workers report it up
    DockerEngines(ENGINES, {}, bot.rt.redis).report("b", up=True)

    driver.step(here, conversation)

    state = bot.state(conversation)
    assert state.sandbox_engine == "b"  # recorded in the state before anything runs
    assert state.phase is Phase.RUNNING and state.run is not None and state.run.status == "approved"
    assert bot.steps(conversation) == ["test-engines-engine-b"]
    assert bot.platform.posts(kind="result") == []

    driver.step(bot.ports({"b": bot.local("b")}), conversation)  # the job, on a worker of engine b
    assert [p["output"].strip() for p in bot.platform.posts(kind="result")] == ["42"]
    assert (bot.workdir / "b" / conversation.slug).is_dir() and not (bot.workdir / "a").exists()


def test_the_pinned_engine_keeps_the_conversation_and_the_next_step_goes_straight_to_its_queue(
    bot: Bot, llm: FakeOpenAI
) -> None:
    conversation = key("1700000000.000202")
    llm.script(code("print(1 + 1)"))
    state = bot.approved(conversation)
    bot.rt.store.save(state.evolve(sandbox_engine="b"))
    DockerEngines(ENGINES, {}, bot.rt.redis).report("b", up=True)
    worker_b = bot.ports({"b": bot.local("b")})

    driver.step(worker_b, conversation)  # runs on b, then asks the model (the next step: general queue)
    driver.step(bot.ports({"a": bot.local("a")}), conversation)  # the model proposes another run
    assert bot.state(conversation).phase is Phase.AWAITING_APPROVAL
    bot.click(conversation, bot.state(conversation))
    driver.step(bot.ports({"a": bot.local("a")}), conversation)  # the click, on a worker of a: sent to b

    assert bot.steps(conversation)[-1] == "test-engines-engine-b"
    assert [p["output"].strip() for p in bot.platform.posts(kind="result")] == ["42"]
    driver.step(worker_b, conversation)
    assert [p["output"].strip() for p in bot.platform.posts(kind="result")] == ["42", "2"]
    assert bot.state(conversation).sandbox_engine == "b"


def test_a_pinned_engine_nobody_reports_up_is_said_plainly_and_people_may_move_on(bot: Bot) -> None:
    conversation = key("1700000000.000203")
    state = bot.approved(conversation)
    bot.rt.store.save(state.evolve(sandbox_engine="b", workspace_files=("prices.csv",)))
    worker_a = bot.ports({"a": bot.local("a")})

    driver.step(worker_a, conversation)  # b: no worker reports it up

    (notice,) = [p for p in bot.platform.posts(kind="notice") if p["level"] == "error"]
    assert "Docker engine `b` that holds this conversation's files is not answering" in notice["text"]
    assert "*Continue on another engine*" in notice["text"]
    cards = bot.platform.posts(kind="approval")
    assert len(cards) == 2 and cards[-1]["engine_down"] == "b"
    assert "test-engines-engine-b" not in bot.steps(conversation)  # nothing sent to an engine that is down
    state = bot.state(conversation)
    assert state.phase is Phase.AWAITING_APPROVAL and state.sandbox_engine == "b"

    bot.click(conversation, state, elsewhere=True)
    driver.step(worker_a, conversation)

    state = bot.state(conversation)
    assert (state.sandbox_engine, state.engines_left, state.workspace_files) == ("a", ("b",), ())
    assert [p["output"].strip() for p in bot.platform.posts(kind="result")] == ["42"]
    assert state.transcript[-2].content.startswith("The working directory was moved to a new, empty one")
    moved = [
        c["post"] for c in bot.platform.calls() if c["method"] == "update" and c["post"]["kind"] == "approval"
    ]
    assert moved[-1]["decision"]["outcome"] == "moved"


def test_a_served_engine_that_does_not_answer_offers_the_others(bot: Bot) -> None:
    conversation = key("1700000000.000204")
    state = bot.approved(conversation)
    bot.rt.store.save(state.evolve(sandbox_engine="a"))
    with dead_sockets():
        driver.step(bot.ports({"a": dead_docker()}), conversation)
    (notice,) = [p for p in bot.platform.posts(kind="notice") if p["level"] == "error"]
    assert "Docker engine `a`" in notice["text"] and "Continue on another engine" in notice["text"]
    assert bot.platform.posts(kind="approval")[-1]["engine_down"] == "a"


def test_with_one_engine_people_wait_for_it_and_no_move_is_offered(bot: Bot) -> None:
    conversation = key("1700000000.000205")
    bot.approved(conversation)
    one = (EngineSpec("default"),)
    with dead_sockets():
        driver.step(bot.ports({"default": dead_docker()}, specs=one), conversation)
    assert bot.state(conversation).sandbox_engine == "default"
    (notice,) = [p for p in bot.platform.posts(kind="notice") if p["level"] == "error"]
    assert "Docker engine `default`" in notice["text"] and "once it is back." in notice["text"]
    assert "another engine" not in notice["text"]
    assert bot.platform.posts(kind="approval")[-1]["engine_down"] == ""


def test_no_engine_up_for_a_new_workspace_is_said_and_the_run_offered_again(bot: Bot) -> None:
    conversation = key("1700000000.000206")
    bot.approved(conversation)
    driver.step(bot.ports({"a": bot.local("a")}, up=lambda name: False), conversation)
    state = bot.state(conversation)
    assert state.sandbox_engine == "" and state.phase is Phase.AWAITING_APPROVAL
    (notice,) = [p for p in bot.platform.posts(kind="notice") if p["level"] == "error"]
    assert "No Docker engine is up right now." in notice["text"]


def test_moving_off_every_engine_in_turn_comes_back_to_one_that_is_up(bot: Bot) -> None:
    """Moved off b when it was down, then off a: b is up again, so the conversation goes back to it."""
    conversation = key("1700000000.000207")
    state = bot.approved(conversation)
    bot.rt.store.save(state.evolve(sandbox_engine="a", engines_left=("b",)))
    DockerEngines(ENGINES, {}, bot.rt.redis).report("b", up=True)
    with dead_sockets():
        driver.step(bot.ports({"a": dead_docker()}), conversation)
    assert bot.platform.posts(kind="approval")[-1]["engine_down"] == "a"

    bot.click(conversation, bot.state(conversation), elsewhere=True)
    driver.step(bot.ports({"a": bot.local("a")}, up=lambda name: False), conversation)  # a: still down

    state = bot.state(conversation)
    assert (state.sandbox_engine, state.engines_left) == ("b", ("b", "a"))
    assert bot.steps(conversation)[-1] == "test-engines-engine-b"
