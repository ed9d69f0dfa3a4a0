"""Streamed replies through the driver, on real Redis, the OpenAI SDK and the fake Slack and model servers.

A step shows the reply as the model writes it, then the approval card as a message of its own; a step
whose process is SIGKILLed mid-reply leaves a message that says it was cut off, and the retried step
rewrites that same message with the new reply: one message, its text once.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import uuid
from collections.abc import Iterator

import pytest
import redis

from agentbot.conversation import driver
from agentbot.conversation.driver import Ports
from agentbot.conversation.events import HumanMessage, Start
from agentbot.conversation.state import ConversationKey, Phase, Policy
from agentbot.llm import ModelConfig, OpenAIChat
from agentbot.queue import RQJobQueue
from agentbot.sandbox.none import NoExecutor
from agentbot.settings import load_settings
from agentbot.slack.platform import CUT_OFF, SlackPlatform
from agentbot.store import RedisSlackStore, RedisStore
from tests.fakes.openai_server import FakeOpenAI, Stall
from tests.fakes.slack_server import TOKEN, FakeSlack

pytestmark = pytest.mark.redis

CODE_REPLY = "I will print it.\n```python\nprint('hello from the sandbox')\n```\nRun it when ready."
WHOLE = "This is the retried reply, written whole from its first word to its last."


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(tokens_per_second=10) as fake:  # a reply takes ~1.5 s: several appends
        yield fake


def make_ports(redis_url: str, slack: FakeSlack, llm: FakeOpenAI) -> Ports:
    """What a worker process builds: its own connections, the shared Redis and the fakes."""
    client = redis.Redis.from_url(redis_url)
    settings = load_settings(slack_bot_token=TOKEN, slack_api_url=slack.api_url)
    model = ModelConfig(model="gpt-4o-mini", base_url=llm.base_url, api_key="test")
    return Ports(
        store=RedisStore(client),
        llm=OpenAIChat([model], max_retries=0),
        executor=NoExecutor(),
        platform=SlackPlatform.from_settings(settings, RedisSlackStore(client)),
        queue=RQJobQueue(client, queue_name=f"test-{uuid.uuid4().hex[:8]}"),
        policy=Policy(),
    )


def started(ports: Ports, slack: FakeSlack) -> ConversationKey:
    channel = f"C{uuid.uuid4().hex[:8].upper()}"  # a conversation of its own on the shared Redis
    ts = slack.add_message(channel, user="UANA", text="<@UBOT> print hello")
    key = ConversationKey(team_id="T0001", channel_id=channel, thread_ts=ts)
    event = Start(event_id=f"ev-{uuid.uuid4().hex[:6]}", user_id="UANA", user_name="ana", text="print hello")
    driver.submit(ports.store, ports.queue, key, event)
    return key


def bot_messages(slack: FakeSlack, key: ConversationKey) -> list[dict[str, object]]:
    return [m for m in slack.thread(key.channel_id, key.thread_ts) if m.get("bot_id")]


def first_block(message: dict[str, object]) -> object:
    blocks = message["blocks"]
    assert isinstance(blocks, list)
    return blocks[0]


def killed_mid_reply(redis_url: str, slack: FakeSlack, llm: FakeOpenAI, key: ConversationKey) -> None:
    """A step in a process of its own, SIGKILLed once its reply has streamed for a while."""
    worker = multiprocessing.get_context("fork").Process(
        target=lambda: driver.step(make_ports(redis_url, slack, llm), key), daemon=True
    )
    worker.start()
    assert slack.wait_for(lambda: len(slack.calls_to("chat.appendStream")) >= 2, timeout=15)
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(timeout=10)


def test_a_reply_arrives_in_several_pieces_then_its_card_as_a_message_of_its_own(
    redis_url: str, slack: FakeSlack, llm: FakeOpenAI
) -> None:
    ports = make_ports(redis_url, slack, llm)
    llm.script(CODE_REPLY)
    key = started(ports, slack)

    state = driver.step(ports, key)

    assert state is not None and state.phase is Phase.AWAITING_APPROVAL and state.live is None
    methods = slack.methods()
    appends = [i for i, m in enumerate(methods) if m == "chat.appendStream"]
    assert len(appends) >= 3  # ~1.5 s of tokens, appended every 0.4 s
    card = methods.index("chat.postMessage")
    assert methods.index("chat.startStream") < appends[0] < methods.index("chat.stopStream") < card
    reply, posted_card = bot_messages(slack, key)
    assert reply["blocks"] == [{"type": "markdown", "text": CODE_REPLY}]
    assert any(block["type"] == "actions" for block in posted_card["blocks"])  # type: ignore[attr-defined]
    statuses = [call.args["status"] for call in slack.calls_to("assistant.threads.setStatus")]
    assert statuses[0].endswith("is thinking…") and statuses[-1] == ""


def test_a_worker_killed_mid_reply_leaves_it_cut_off_and_the_retry_rewrites_that_message(
    redis_url: str, slack: FakeSlack, llm: FakeOpenAI
) -> None:
    ports = make_ports(redis_url, slack, llm)
    llm.script(Stall("The first attempt at this reply never gets to its end because its worker"), WHOLE)
    key = started(ports, slack)

    killed_mid_reply(redis_url, slack, llm, key)
    (message,) = bot_messages(slack, key)
    assert message["streaming"]  # as the dead worker left it

    state = driver.step(ports, key)  # the retry

    assert state is not None and state.live is None and state.phase is Phase.AWAITING_HUMAN
    (message,) = bot_messages(slack, key)  # the same message, not a second one
    assert first_block(message) == {"type": "markdown", "text": WHOLE}  # then its feedback buttons
    assert len(slack.calls_to("chat.startStream")) == 1
    (stop,) = [c for c in slack.calls_to("chat.stopStream") if CUT_OFF in c.args.get("markdown_text", "")]
    assert stop.args["ts"] == message["ts"]
    assert len(llm.requests) == 2
    assert [m.content for m in state.transcript if m.kind == "agent"] == [WHOLE]


def test_a_reply_cut_off_before_someone_wrote_again_stays_cut_off_and_the_next_gets_its_own_message(
    redis_url: str, slack: FakeSlack, llm: FakeOpenAI
) -> None:
    ports = make_ports(redis_url, slack, llm)
    llm.script(Stall("The first attempt at this reply never gets to its end because its worker"), WHOLE)
    key = started(ports, slack)
    killed_mid_reply(redis_url, slack, llm, key)
    driver.submit(ports.store, ports.queue, key, HumanMessage(event_id="h1", user_id="UBOB", text="hello?"))

    state = driver.step(ports, key)

    assert state is not None and state.live is None
    cut, reply = bot_messages(slack, key)
    assert str(cut["text"]).endswith(CUT_OFF)
    assert first_block(reply) == {"type": "markdown", "text": WHOLE}  # then its feedback buttons
