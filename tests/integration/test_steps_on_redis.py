"""The engine's steps as RQ jobs on a real Redis server: many steps, duplicates, ordering, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import SimpleWorker
from rq.registry import FinishedJobRegistry
from rq.serializers import JSONSerializer

from agentbot import jobs, runtime
from agentbot.conversation.driver import submit
from agentbot.conversation.events import Approve, HumanMessage, Start
from agentbot.conversation.state import ConversationKey, ConversationState, Phase
from agentbot.settings import load_settings
from tests.fakes.openai_server import Delay, FakeOpenAI, Reply, last_user_text
from tests.fakes.platform import RecordingPlatform

ROOT = Path(__file__).resolve().parents[2]


def code(body: str) -> str:
    return f"Running this:\n```python\n{body}\n```"


def key(thread: str = "1700000000.000100") -> ConversationKey:
    return ConversationKey(team_id="T1", channel_id="C1", thread_ts=thread)


class Harness:
    """A runtime over a real Redis, with a burst-mode RQ worker run in the test process."""

    def __init__(self, client: redis.Redis, llm: FakeOpenAI, workdir: Path, **settings: Any) -> None:
        self.settings = load_settings(
            redis_url="redis://unused", openai_base_url=llm.base_url, openai_api_key="test",
            executor="local", workdir=workdir, llm_max_retries=0, **settings,
        )  # fmt: skip
        self.platform = RecordingPlatform(client)
        self.rt = runtime.Runtime(
            settings=self.settings, redis=client, platform=self.platform, embedded=False,
            queue_name=f"test-{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
        runtime.install(self.rt)
        self.client = client
        self.jobs_run = 0

    def submit(self, event: Any, conversation: ConversationKey | None = None) -> None:
        submit(self.rt.store, self.rt.queue, conversation or key(), event)

    def work(self) -> None:
        """Run queued steps until none is left (retries are immediate here: no scheduler)."""
        worker = SimpleWorker([self.rt.queue.queue], connection=self.client, serializer=JSONSerializer)
        worker.work(burst=True, logging_level="WARNING")
        self.jobs_run = FinishedJobRegistry(queue=self.rt.queue.queue).count

    def state(self, conversation: ConversationKey | None = None) -> ConversationState:
        state = self.rt.store.load(conversation or key())
        assert state is not None
        return state


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def make_harness(redis_client: redis.Redis, llm: FakeOpenAI, tmp_path: Path) -> Callable[..., Harness]:
    def make(**settings: Any) -> Harness:
        return Harness(redis_client, llm, tmp_path / "ws", **settings)

    return make


def start(text: str = "count to three", user: str = "U1") -> Start:
    return Start(event_id=f"ev-{uuid.uuid4().hex[:6]}", user_id=user, user_name="ana", text=text)


def test_conversation_runs_twelve_steps_reloading_state_from_redis(
    make_harness: Callable[..., Harness], llm: FakeOpenAI
) -> None:
    h = make_harness(code_approval="never")
    llm.script(*(code(f"print({n} * 10)") for n in range(1, 6)), "All five printed.\nTERMINATE")
    h.submit(start())
    h.work()
    state = h.state()
    assert h.jobs_run >= 11  # 6 LLM calls + 5 runs, one outside action per job
    assert state.phase is Phase.AWAITING_HUMAN
    assert state.version > 20  # each step saved (and later steps reloaded) its state
    outputs = [p["output"].strip() for p in h.platform.posts(kind="result")]
    assert outputs == ["10", "20", "30", "40", "50"]
    kinds = [p["kind"] for p in h.platform.posts()]
    assert kinds == ["agent", "result"] * 5 + ["agent", "notice"]
    assert state.transcript[2].content == "exitcode: 0 (execution succeeded)\nCode output: 10\n"


def test_human_steps_drive_the_conversation_through_approvals(
    make_harness: Callable[..., Harness], llm: FakeOpenAI
) -> None:
    h = make_harness()
    llm.script(code("print('draft')"), code("print('fixed')"), "Done.\nTERMINATE")
    h.submit(start())
    h.work()
    run = h.state().run
    assert run is not None and h.state().phase is Phase.AWAITING_APPROVAL
    h.submit(HumanMessage(event_id="h1", user_id="U2", user_name="bo", text="No, print fixed"))
    h.work()
    run = h.state().run
    assert run is not None
    h.submit(Approve(event_id="a1", user_id="U1", run_id=run.run_id, code_hash=run.code_hash))
    h.work()
    assert h.state().phase is Phase.AWAITING_HUMAN
    assert [p["output"].strip() for p in h.platform.posts(kind="result")] == ["fixed"]
    feedback = [m for m in h.state().transcript if m.kind == "human"]
    assert [(m.speaker, m.author_id) for m in feedback] == [("ana", "U1"), ("bo", "U2")]


def test_same_step_delivered_twice_produces_its_effects_once(
    make_harness: Callable[..., Harness], llm: FakeOpenAI, tmp_path: Path
) -> None:
    h = make_harness()
    ledger = tmp_path / "ledger.txt"
    llm.script(code(f"open({str(ledger)!r}, 'a').write('ran\\n')"), "Done.\nTERMINATE")
    h.submit(start())
    h.rt.queue.enqueue_step(key())  # a second delivery of the same step
    h.work()
    assert len(llm.requests) == 1
    run = h.state().run
    assert run is not None
    approve = Approve(event_id="a1", user_id="U1", run_id=run.run_id, code_hash=run.code_hash)
    h.submit(approve)
    h.submit(approve)  # the click delivered twice (e.g. a retry without dedupe)
    h.work()
    jobs.step(key().model_dump())  # and the job itself run once more
    assert ledger.read_text() == "ran\n"
    assert len(llm.requests) == 2
    kinds = [p["kind"] for p in h.platform.posts() if p["kind"] != "ephemeral"]
    assert kinds == ["agent", "approval", "result", "agent", "notice"]
    refused = [p["text"] for p in h.platform.posts(kind="ephemeral")]
    assert refused == ["This card is no longer current, so nothing was run."]  # only the clicker sees it


def test_steps_of_one_conversation_never_overlap_while_others_run_in_parallel(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    active: dict[str, int] = {}
    peaks: dict[str, int] = {"all": 0}
    lock = threading.Lock()

    def respond(body: dict[str, Any]) -> Reply:
        who = body["messages"][1]["content"]
        with lock:
            active[who] = active.get(who, 0) + 1
            peaks[who] = max(peaks.get(who, 0), active[who])
            peaks["all"] = max(peaks["all"], sum(active.values()))
        time.sleep(0.4)
        with lock:
            active[who] -= 1
        return f"Noted: {last_user_text(body)}"

    with FakeOpenAI(responder=respond) as llm, worker_processes(2, redis_url, llm, tmp_path) as queue_name:
        harness_rt = runtime.Runtime(
            settings=load_settings(redis_url=redis_url), redis=redis_client,
            platform=RecordingPlatform(redis_client), embedded=False, queue_name=queue_name,
        )  # fmt: skip
        a, b = key("1.1"), key("2.2")
        for conversation, text in ((a, "task A"), (b, "task B")):
            submit(harness_rt.store, harness_rt.queue, conversation, start(text))
        wait_for(lambda: all(_phase(harness_rt, c) is Phase.AWAITING_HUMAN for c in (a, b)))
        for n in range(3):  # three replies to A at once, while B also gets one
            submit(
                harness_rt.store,
                harness_rt.queue,
                a,
                HumanMessage(event_id=f"a{n}", user_id="U1", text=f"a{n}"),
            )
        submit(harness_rt.store, harness_rt.queue, b, HumanMessage(event_id="b0", user_id="U1", text="b0"))
        wait_for(lambda: _settled(harness_rt, a) and _settled(harness_rt, b))
        assert peaks["task A"] == 1 and peaks["task B"] == 1
        assert peaks["all"] == 2  # the two conversations did run at the same time
        state_a = harness_rt.store.load(a)
        assert state_a is not None
        assert [m.content for m in state_a.transcript if m.kind == "human"] == ["task A", "a0", "a1", "a2"]


def test_worker_killed_mid_step_loses_nothing_and_the_retry_completes(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with FakeOpenAI() as llm:
        llm.script(Delay(30, "never delivered"), "Here is my answer.")
        with worker_processes(1, redis_url, llm, tmp_path) as queue_name:
            rt = runtime.Runtime(
                settings=load_settings(redis_url=redis_url), redis=redis_client,
                platform=RecordingPlatform(redis_client), embedded=False, queue_name=queue_name,
            )  # fmt: skip
            submit(rt.store, rt.queue, key(), start("please answer"))
            wait_for(lambda: len(llm.requests) == 1)
            kill_work_horses()  # SIGKILL the process executing the step, mid LLM call
            wait_for(lambda: _phase(rt, key()) is Phase.AWAITING_HUMAN, timeout=30)
        state = rt.store.load(key())
        assert state is not None
        assert [m.content for m in state.transcript] == ["please answer", "Here is my answer."]
        platform = RecordingPlatform(redis_client)
        assert [p["text"] for p in platform.posts(kind="agent")] == ["Here is my answer."]


def test_worker_killed_during_an_approved_run_never_runs_it_twice(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    slow = f"import time\nopen({str(ledger)!r}, 'a').write('started\\n')\ntime.sleep(30)"
    with FakeOpenAI() as llm:
        llm.script(code(slow))
        with worker_processes(1, redis_url, llm, tmp_path) as queue_name:
            rt = runtime.Runtime(
                settings=load_settings(redis_url=redis_url), redis=redis_client,
                platform=RecordingPlatform(redis_client), embedded=False, queue_name=queue_name,
            )  # fmt: skip
            submit(rt.store, rt.queue, key(), start())
            wait_for(lambda: _phase(rt, key()) is Phase.AWAITING_APPROVAL)
            run = rt.store.load(key()).run  # type: ignore[union-attr]
            assert run is not None
            submit(
                rt.store,
                rt.queue,
                key(),
                Approve(event_id="a", user_id="U1", run_id=run.run_id, code_hash=run.code_hash),
            )
            wait_for(ledger.exists)
            kill_work_horses()
            wait_for(lambda: _settled(rt, key()) and _phase(rt, key()) is Phase.AWAITING_APPROVAL, timeout=30)
        state = rt.store.load(key())
        assert state is not None and state.run is not None
        assert state.run.run_id != run.run_id  # a fresh card for a person to decide again
        assert ledger.read_text() == "started\n"
        notices = [p["text"] for p in RecordingPlatform(redis_client).posts(kind="notice")]
        assert any("interrupted" in text for text in notices)


# ---------------------------------------------------------------- helpers


def _phase(rt: runtime.Runtime, conversation: ConversationKey) -> Phase | None:
    state = rt.store.load(conversation)
    return state.phase if state else None


def _settled(rt: runtime.Runtime, conversation: ConversationKey) -> bool:
    state = rt.store.load(conversation)
    if state is None or state.outbox or state.phase in (Phase.THINKING, Phase.RUNNING):
        return False
    return not rt.store.events_after(conversation, state.last_event_id)


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


_workers: list[subprocess.Popen[bytes]] = []


class worker_processes:  # noqa: N801  # used as a context manager, like a function
    """Start `count` real forking RQ worker processes (the recording platform) on a fresh queue."""

    def __init__(self, count: int, redis_url: str, llm: FakeOpenAI, tmp_path: Path) -> None:
        self.count = count
        self.queue_name = f"test-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ, "REDIS_URL": redis_url, "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "test",
            "AGENTBOT_EXECUTOR": "local", "AGENTBOT_WORKDIR": str(tmp_path / "ws"),
            "AGENTBOT_LLM_MAX_RETRIES": "0", "TEST_QUEUE": self.queue_name, "PYTHONPATH": str(ROOT),
        }  # fmt: skip
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> str:
        for _ in range(self.count):
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.recording_worker"], env=self.env, cwd=ROOT
            )
            self.procs.append(proc)
            _workers.append(proc)
        return self.queue_name

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            _workers.remove(proc)


def kill_work_horses() -> None:
    """SIGKILL the forked child ("work horse") of each running worker: a step dies mid-flight.

    A worker's children are its scheduler (forked at start) and, while a step runs, the horse (forked
    for the job): the youngest child is the horse.
    """
    killed = 0
    for proc in _workers:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if len(children) < 2:
            continue
        horse = max(children, key=_start_time)
        os.kill(int(horse), signal.SIGKILL)
        killed += 1
    assert killed, "no step was running"


def _start_time(pid: str) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time in clock ticks
