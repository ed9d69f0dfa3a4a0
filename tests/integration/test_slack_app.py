"""The real Bolt app over real HTTP, signed Slack requests in, the fake Slack Web API out.

Real Redis, real RQ (a burst-mode worker in the test process), the OpenAI SDK against the scripted fake
server, and the local executor: only the network edges (Slack, OpenAI) are fakes.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from slack_sdk.socket_mode.builtin.client import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from agentbot import runtime
from agentbot.conversation import driver, engine
from agentbot.conversation.code import CodeResult, EgressReport
from agentbot.conversation.events import Approve
from agentbot.conversation.state import ConversationKey, Phase
from agentbot.settings import load_settings
from agentbot.slack.app import Bridge, build_app
from agentbot.slack.platform import SlackPlatform
from agentbot.store import RedisSlackStore, RedisStore
from agentbot.web import WebApp
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import BOT_ID, BOT_USER_ID, TEAM_ID, TOKEN, FakeSlack, sign
from tests.wsgi_server import LoopbackWSGI

pytestmark = pytest.mark.redis

SECRET = "test-signing-secret"
CHANNEL = "C0001"
PNG_CODE = (
    "import matplotlib.pyplot as plt\n"
    "plt.plot([1, 2, 3], [1, 4, 9])\n"
    "plt.savefig('chart.png')\n"
    "print('plotted')"
)


def code(body: str) -> str:
    return f"Let me run this:\n```python\n{body}\n```"


class Bot:
    """agentbot's web side on a free port, a worker to run its steps, and the fakes it talks to."""

    def __init__(self, client: redis.Redis, slack: FakeSlack, llm: FakeOpenAI, workdir: Path) -> None:
        self.settings = load_settings(
            redis_url="redis://unused", openai_base_url=llm.base_url, openai_api_key="test",
            executor="local", workdir=workdir, llm_max_retries=0, slack_bot_token=TOKEN,
            slack_signing_secret=SECRET, slack_api_url=slack.api_url, approvers="UBOSS",
        )  # fmt: skip
        self.slack, self.llm, self.redis = slack, llm, client
        self.platform = SlackPlatform.from_settings(self.settings, RedisSlackStore(client))
        self.rt = runtime.Runtime(
            settings=self.settings, redis=client, platform=self.platform, embedded=False,
            queue_name=f"test-{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
        runtime.install(self.rt)
        self.bridge = Bridge(store=self.rt.store, queue=self.rt.queue, platform=self.platform)
        self.app = build_app(self.settings, bridge=self.bridge)
        self.server = LoopbackWSGI(WebApp(self.app, healthy=lambda: runtime.redis_answers(client)))
        self.url = self.server.url
        self._clicks = 0

    def close(self) -> None:
        self.server.close()
        self.bridge.background.shutdown(wait=True)

    # -- Slack's side ------------------------------------------------------------------------------

    def post(
        self,
        body: bytes,
        content_type: str,
        *,
        headers: dict[str, str] | None = None,
        secret: str = SECRET,
        timestamp: int | None = None,
    ) -> tuple[int, str]:
        """POST to /slack/events as Slack does: signed, unless told otherwise."""
        all_headers = {
            "Content-Type": content_type,
            **sign(body, secret, timestamp=timestamp),
            **(headers or {}),
        }
        request = urllib.request.Request(f"{self.url}/slack/events", data=body, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode()

    def event(self, event: dict[str, Any], *, event_id: str | None = None, **kwargs: Any) -> tuple[int, str]:
        body = event_body(event, event_id=event_id or f"Ev{uuid.uuid4().hex[:10]}")
        return self.post(json.dumps(body).encode(), "application/json", **kwargs)

    def click(
        self,
        action_id: str,
        *,
        user: str,
        card: dict[str, Any],
        thread_ts: str,
        value: str | None = None,
        **kwargs: Any,
    ) -> tuple[int, str]:
        """Click a button of a card the bot posted (its value as shown, unless `value` is given)."""
        self._clicks += 1
        button = next(b for b in card["blocks"][-1]["elements"] if b["action_id"] == action_id)
        payload = action_payload(
            action_id,
            user=user,
            message_ts=card["ts"],
            thread_ts=thread_ts,
            value=button["value"] if value is None else value,
            trigger_id=f"{self._clicks}.{uuid.uuid4().hex[:6]}",
        )
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.post(body, "application/x-www-form-urlencoded", **kwargs)

    # -- the worker and what people see ------------------------------------------------------------

    def work(self) -> None:
        """Run queued steps until none is left."""
        self.bridge.background.submit(lambda: None).result()  # first-status calls have been made
        worker = SimpleWorker([self.rt.queue.queue], connection=self.redis, serializer=JSONSerializer)
        worker.work(burst=True, logging_level="WARNING")

    def thread(self, thread_ts: str) -> list[dict[str, Any]]:
        return [m for m in self.slack.thread(CHANNEL, thread_ts) if m["ts"] != thread_ts]

    def cards(self, thread_ts: str) -> list[dict[str, Any]]:
        return [m for m in self.thread(thread_ts) if any(b["type"] == "actions" for b in m["blocks"])]

    def results(self, thread_ts: str) -> list[str]:
        return [m["text"] for m in self.thread(thread_ts) if "exitcode:" in m["text"]]

    def key(self, thread_ts: str) -> ConversationKey:
        return ConversationKey(team_id=TEAM_ID, channel_id=CHANNEL, thread_ts=thread_ts)


def event_body(event: dict[str, Any], *, event_id: str) -> dict[str, Any]:
    return {
        "token": "legacy", "team_id": TEAM_ID, "api_app_id": "A0001", "type": "event_callback",
        "event": {"event_ts": event["ts"], "channel": CHANNEL, **event},
        "event_id": event_id, "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
    }  # fmt: skip


def action_payload(
    action_id: str, *, user: str, message_ts: str, thread_ts: str, value: str, trigger_id: str
) -> dict[str, Any]:
    return {
        "type": "block_actions", "team": {"id": TEAM_ID, "domain": "acme"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0001", "token": "legacy", "trigger_id": trigger_id,
        "container": {"type": "message", "message_ts": message_ts, "channel_id": CHANNEL,
                      "is_ephemeral": False, "thread_ts": thread_ts},
        "channel": {"id": CHANNEL, "name": "data"},
        "message": {"type": "message", "bot_id": BOT_ID, "ts": message_ts, "thread_ts": thread_ts,
                    "text": ""},
        "response_url": "https://hooks.slack.com/actions/T0001/1/x",
        "actions": [{"action_id": action_id, "block_id": "approval", "type": "button", "value": value,
                     "action_ts": f"{time.time():.6f}"}],
    }  # fmt: skip


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def bot(redis_client: redis.Redis, slack: FakeSlack, llm: FakeOpenAI, tmp_path: Path) -> Iterator[Bot]:
    bot = Bot(redis_client, slack, llm, tmp_path / "ws")
    yield bot
    bot.close()


def say(bot: Bot, text: str, *, user: str = "UANA", thread_ts: str | None = None, **kwargs: Any) -> str:
    """A person mentions the bot (in a new message, or in a thread); returns the message's ts."""
    ts = bot.slack.add_message(CHANNEL, user=user, text=f"<@{BOT_USER_ID}> {text}", thread_ts=thread_ts)
    event = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER_ID}> {text}", "ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    status, _ = bot.event(event, **kwargs)
    assert status == 200
    return ts


def reply(bot: Bot, thread_ts: str, text: str, *, user: str = "UANA", **extra: Any) -> tuple[int, str]:
    ts = bot.slack.add_message(CHANNEL, user=user, text=text, thread_ts=thread_ts)
    event = {
        "type": "message",
        "channel_type": "channel",
        "user": user,
        "text": text,
        "ts": ts,
        "thread_ts": thread_ts,
        **extra,
    }
    return bot.event(event)


def test_mention_gets_a_thinking_status_from_its_step_and_a_threaded_reply(bot: Bot, llm: FakeOpenAI) -> None:
    llm.script("The answer is 42.\nTERMINATE")
    root = say(bot, "what is six times seven?")
    assert bot.slack.calls_to("assistant.threads.setStatus") == []  # the ack made no Slack call
    bot.work()
    status = bot.slack.calls_to("assistant.threads.setStatus")[0]
    assert (status.args["thread_ts"], status.args["status"]) == (root, "assistant is thinking…")
    (answer, *_) = bot.thread(root)
    assert answer["username"] == "assistant"
    assert answer["blocks"][0] == {"type": "markdown", "text": "The answer is 42.\nTERMINATE"}
    assert "six times seven" in json.dumps(llm.requests[0]["messages"])


def test_reply_in_the_thread_steers_and_stop_ends(bot: Bot, llm: FakeOpenAI) -> None:
    llm.script("Hello.\nTERMINATE", "Bonjour.\nTERMINATE")
    root = say(bot, "greet me")
    bot.work()
    assert reply(bot, root, "now in French")[0] == 200
    bot.work()
    assert "now in French" in json.dumps(llm.requests[1]["messages"])
    assert any(m["text"].startswith("assistant: Bonjour") for m in bot.thread(root))
    reply(bot, root, "stop")
    bot.work()
    state = bot.rt.store.load(bot.key(root))
    assert state is not None and state.phase is Phase.FINISHED


def test_mention_inside_a_thread_brings_the_earlier_messages(bot: Bot, llm: FakeOpenAI) -> None:
    llm.script("Summary: sales are up.\nTERMINATE")
    bot.slack.add_user("UBOB", name="bob")
    root = bot.slack.add_message(CHANNEL, user="UBOB", text="Q3 sales rose 12% &amp; costs fell")
    say(bot, "summarize this thread", thread_ts=root)
    bot.work()
    sent = json.dumps(llm.requests[0]["messages"])
    assert "Q3 sales rose 12% & costs fell" in sent
    assert any(m["text"].startswith("assistant: Summary") for m in bot.thread(root))


def test_approval_card_then_run_by_the_requester_posts_output_and_the_png(bot: Bot, llm: FakeOpenAI) -> None:
    llm.script(code(PNG_CODE), "Here is the chart.\nTERMINATE")
    root = say(bot, "plot squares")
    bot.work()
    (card,) = bot.cards(root)
    assert [b["action_id"] for b in card["blocks"][-1]["elements"]] == [
        "run_code",
        "run_all",
        "edit_code",
        "skip_code",
        "stop_session",
    ]
    assert bot.results(root) == []
    assert bot.click("run_code", user="UANA", card=card, thread_ts=root)[0] == 200
    bot.work()
    assert bot.results(root) == [":white_check_mark: exitcode: 0 (execution succeeded)"]
    (upload,) = bot.slack.uploaded()
    assert (upload["channel_id"], upload["thread_ts"]) == (CHANNEL, root)
    assert [f["filename"] for f in upload["files"]] == ["chart.png"]
    assert upload["files"][0]["content"].startswith(b"\x89PNG")
    decided = next(m for m in bot.thread(root) if m["ts"] == card["ts"])
    assert all(b["type"] != "actions" for b in decided["blocks"])
    assert "Approved by <@UANA>" in json.dumps(decided["blocks"])


def test_run_by_an_approver_from_settings_runs(bot: Bot, llm: FakeOpenAI) -> None:
    llm.script(code("print('ok')"), "Done.\nTERMINATE")
    root = say(bot, "print ok")
    bot.work()
    bot.click("run_code", user="UBOSS", card=bot.cards(root)[0], thread_ts=root)
    bot.work()
    assert bot.results(root) == [":white_check_mark: exitcode: 0 (execution succeeded)"]


def test_run_by_someone_else_runs_nothing_and_tells_only_them(
    bot: Bot, llm: FakeOpenAI, tmp_path: Path
) -> None:
    ledger = tmp_path / "ran.txt"
    llm.script(code(f"open({str(ledger)!r}, 'a').write('ran')"))
    root = say(bot, "write the ledger")
    bot.work()
    (card,) = bot.cards(root)
    bot.click("run_code", user="UMALLORY", card=card, thread_ts=root)
    bot.work()
    assert not ledger.exists()
    assert bot.results(root) == []
    (ephemeral,) = bot.slack.calls_to("chat.postEphemeral")
    assert ephemeral.args["user"] == "UMALLORY" and ephemeral.args["thread_ts"] == root
    assert bot.cards(root) == [card]  # the card still waits for the requester


def test_double_click_runs_once(bot: Bot, llm: FakeOpenAI, tmp_path: Path) -> None:
    ledger = tmp_path / "ran.txt"
    llm.script(code(f"open({str(ledger)!r}, 'a').write('ran\\n')"), "Done.\nTERMINATE")
    root = say(bot, "write the ledger")
    bot.work()
    (card,) = bot.cards(root)
    statuses = [bot.click("run_code", user="UANA", card=card, thread_ts=root)[0] for _ in range(2)]
    assert statuses == [200, 200]
    bot.work()
    assert ledger.read_text() == "ran\n"
    assert len(bot.results(root)) == 1


def test_tampered_button_value_runs_nothing(bot: Bot, llm: FakeOpenAI, tmp_path: Path) -> None:
    ledger = tmp_path / "ran.txt"
    llm.script(code(f"open({str(ledger)!r}, 'a').write('ran')"))
    root = say(bot, "write the ledger")
    bot.work()
    (card,) = bot.cards(root)
    run_id = json.loads(card["blocks"][-1]["elements"][0]["value"])["run_id"]
    for value in ("{not json", json.dumps({"run_id": run_id, "code_hash": "0" * 64})):
        assert bot.click("run_code", user="UANA", card=card, thread_ts=root, value=value)[0] == 200
    bot.work()
    assert not ledger.exists()
    assert bot.results(root) == []


def test_retried_event_is_processed_once(bot: Bot, llm: FakeOpenAI) -> None:
    llm.script("Once.\nTERMINATE", "Twice?!")
    ts = bot.slack.add_message(CHANNEL, user="UANA", text=f"<@{BOT_USER_ID}> hi")
    event = {"type": "app_mention", "user": "UANA", "text": f"<@{BOT_USER_ID}> hi", "ts": ts}
    assert bot.event(event, event_id="EvSAME")[0] == 200
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert bot.event(event, event_id="EvSAME", headers=retry)[0] == 200
    bot.work()
    assert len(llm.requests) == 1
    assert [m["text"] for m in bot.thread(ts)][:1] == ["assistant: Once. TERMINATE"]


@pytest.mark.parametrize(("secret", "age"), [("wrong-secret", 0), (SECRET, 60 * 10)], ids=["forged", "stale"])
def test_bad_signature_gets_401_and_changes_nothing(bot: Bot, secret: str, age: int) -> None:
    before = set(bot.redis.keys("*"))
    ts = bot.slack.add_message(CHANNEL, user="UANA", text="hi")
    event = {"type": "app_mention", "user": "UANA", "text": f"<@{BOT_USER_ID}> hi", "ts": ts}
    status, _ = bot.event(event, secret=secret, timestamp=int(time.time()) - age)
    assert status == 401
    assert set(bot.redis.keys("*")) == before
    assert bot.rt.queue.queue.count == 0
    assert [c.method for c in bot.slack.calls if c.method != "auth.test"] == []


def test_bots_own_message_and_edits_are_ignored(bot: Bot, llm: FakeOpenAI) -> None:
    llm.script("Hello.\nTERMINATE")
    root = say(bot, "hi")
    bot.work()
    version = bot.rt.store.load(bot.key(root))
    own = {"bot_id": BOT_ID, "subtype": "bot_message", "username": "assistant"}
    assert reply(bot, root, "Hello.", user=BOT_USER_ID, **own)[0] == 200
    assert reply(bot, root, "edited", subtype="message_changed")[0] == 200
    assert bot.rt.queue.queue.count == 0
    bot.work()
    assert len(llm.requests) == 1
    assert bot.rt.store.load(bot.key(root)) == version


def test_reply_in_a_thread_without_a_conversation_is_ignored(bot: Bot) -> None:
    root = bot.slack.add_message(CHANNEL, user="UBOB", text="lunch?")
    assert reply(bot, root, "yes")[0] == 200
    assert bot.rt.queue.queue.count == 0
    assert bot.rt.store.load(bot.key(root)) is None


def test_url_verification_and_health(bot: Bot, redis_client: redis.Redis) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "legacy"}).encode()
    status, answer = bot.post(body, "application/json")
    assert (status, json.loads(answer)) == (200, {"challenge": "abc123"})
    with urllib.request.urlopen(f"{bot.url}/healthz", timeout=5) as response:
        assert response.status == 200


def test_health_is_503_when_redis_is_down(bot: Bot) -> None:
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    with LoopbackWSGI(WebApp(bot.app, healthy=lambda: runtime.redis_answers(down))) as server:
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(f"{server.url}/healthz", timeout=5)
        assert raised.value.code == 503
        raised.value.close()


class RecordingSocketClient:
    """Stands in for the connected `SocketModeClient`: keeps the acknowledgements Bolt sends back."""

    def __init__(self) -> None:
        self.responses: list[SocketModeResponse] = []
        self.logger = logging.getLogger("tests.socket_mode")

    def send_socket_mode_response(self, response: SocketModeResponse) -> None:
        self.responses.append(response)


def test_socket_mode_envelopes_reach_the_same_listeners(bot: Bot, llm: FakeOpenAI) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    llm.script("Over the socket.\nTERMINATE")
    socket_app = build_app(bot.settings, bridge=bot.bridge, socket_mode=True)
    handler = SocketModeHandler(socket_app, "xapp-test")
    client = RecordingSocketClient()
    ts = bot.slack.add_message(CHANNEL, user="UANA", text=f"<@{BOT_USER_ID}> hi")
    body = event_body(
        {"type": "app_mention", "user": "UANA", "text": f"<@{BOT_USER_ID}> hi", "ts": ts}, event_id="EvSOCKET"
    )
    envelope = {
        "envelope_id": "env-1",
        "type": "events_api",
        "payload": body,
        "accepts_response_payload": False,
        "retry_attempt": 0,
        "retry_reason": "",
    }
    first = SocketModeRequest.from_dict(envelope)
    retry = SocketModeRequest.from_dict({**envelope, "envelope_id": "env-2", "retry_attempt": 1})
    assert first is not None and retry is not None
    handler.handle(cast(SocketModeClient, client), first)
    assert [r.envelope_id for r in client.responses] == ["env-1"]
    handler.handle(cast(SocketModeClient, client), retry)
    bot.work()
    assert len(llm.requests) == 1
    assert bot.thread(ts)[0]["text"] == "assistant: Over the socket. TERMINATE"


# -- asking the bot about itself, slash commands, sub-team details ---------------------------------


def slash_form(text: str, *, user: str = "UANA", trigger_id: str = "7.7.x") -> dict[str, str]:
    """The form Slack posts for `/agentbot <text>`."""
    return {
        "token": "legacy", "team_id": TEAM_ID, "team_domain": "acme", "channel_id": CHANNEL,
        "channel_name": "data", "user_id": user, "user_name": user.lower(), "command": "/agentbot",
        "text": text, "api_app_id": "A0001", "is_enterprise_install": "false",
        "response_url": "https://hooks.slack.com/commands/T0001/1/x", "trigger_id": trigger_id,
    }  # fmt: skip


def slash(bot: Bot, text: str, *, user: str = "UANA", trigger_id: str = "7.7.x") -> tuple[int, str]:
    """`/agentbot <text>` as Slack posts it (signed); returns the status and the ack's body."""
    form = slash_form(text, user=user, trigger_id=trigger_id)
    return bot.post(urlencode(form).encode(), "application/x-www-form-urlencoded")


def test_mention_asking_teams_lists_them_in_the_thread_once_and_starts_nothing(
    bot: Bot, llm: FakeOpenAI
) -> None:
    ts = bot.slack.add_message(CHANNEL, user="UANA", text=f"<@{BOT_USER_ID}> teams")
    event = {"type": "app_mention", "user": "UANA", "text": f"<@{BOT_USER_ID}> teams", "ts": ts}
    assert bot.event(event, event_id="EvTEAMS")[0] == 200
    assert bot.event(event, event_id="EvTEAMS", headers={"X-Slack-Retry-Num": "1"})[0] == 200
    (listing,) = bot.thread(ts)
    for name in ("coder", "translate_summarize", "project_manager", "budget_analyst"):
        assert name in json.dumps(listing["blocks"])
    assert bot.rt.store.load(bot.key(ts)) is None and bot.rt.queue.queue.count == 0
    assert llm.requests == []


def test_slash_command_teams_and_help_answer_only_the_sender(bot: Bot) -> None:
    for text, needle in (("teams", "project_manager"), ("", "/agentbot <task>"), ("help", "team:")):
        status, body = slash(bot, text)
        assert status == 200
        assert needle in json.loads(body)["text"]
    assert bot.slack.calls_to("chat.postMessage") == []  # nothing in the channel


def test_slash_command_with_a_task_starts_a_conversation_under_a_new_message(
    bot: Bot, llm: FakeOpenAI
) -> None:
    llm.script("Bonjour à tous.\nTERMINATE")
    status, body = slash(bot, "team:coder say hello in French &amp; nothing else")
    assert (status, body) == (200, "")
    (root,) = [m for m in bot.slack.state.messages[CHANNEL] if not m.get("thread_ts")]
    assert root["text"] == "<@UANA> asked (team *coder*): say hello in French &amp; nothing else"
    bot.work()
    answer = bot.thread(root["ts"])
    assert answer[0]["username"] == "assistant" and "Bonjour" in answer[0]["text"]
    assert "say hello in French & nothing else" in json.dumps(llm.requests[0]["messages"])


def test_slash_command_where_the_bot_may_not_post_says_why_to_the_sender(bot: Bot) -> None:
    bot.slack.fail("chat.postMessage", status=200, error="not_in_channel")
    status, body = slash(bot, "plot sales")
    assert status == 200
    assert "invite me with `/invite @agentbot`" in json.loads(body)["text"]
    assert bot.rt.queue.queue.count == 0


def test_slash_command_whose_conversation_cannot_be_stored_says_so_on_its_message_and_to_the_sender(
    bot: Bot,
) -> None:
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    bridge = Bridge(store=RedisStore(down), queue=bot.rt.queue, platform=bot.platform)
    try:
        answer = bridge.on_command(slash_form("team:coder plot sales"))  # what Bolt hands the listener
    finally:
        bridge.background.shutdown(wait=True)
    assert "could not start the conversation" in answer
    (root,) = [m for m in bot.slack.state.messages[CHANNEL] if not m.get("thread_ts")]
    assert root["text"].startswith("<@UANA> asked (team *coder*): plot sales")  # the task is kept
    assert "Not started" in root["text"] and len(bot.slack.calls_to("chat.update")) == 1
    assert bot.rt.queue.queue.count == 0


def details_click(bot: Bot, message: dict[str, Any], root: str, value: str) -> int:
    payload = action_payload(
        "subteam_details", user="UBOB", message_ts=message["ts"], thread_ts=root, value=value,
        trigger_id=f"details.{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    return bot.post(
        urlencode({"payload": json.dumps(payload)}).encode(), "application/x-www-form-urlencoded"
    )[0]


def test_sub_team_message_opens_its_whole_conversation_in_a_modal(bot: Bot, llm: FakeOpenAI) -> None:
    llm.script(
        "Asking the budget specialist.\nDELEGATE budget: cost of 4 engineers for 3 months",
        "| people | $150k |\n| contingency | $30k |\nTotal $180k.",
        "Plan: 3 months, $180k. TERMINATE",
    )
    root = say(bot, "team:project_manager plan our app")
    bot.work()
    (card,) = [m for m in bot.thread(root) if "accessory" in json.dumps(m["blocks"])]
    button = card["blocks"][0]["accessory"]
    assert button["action_id"] == "subteam_details"
    assert details_click(bot, card, root, button["value"]) == 200
    bot.work()
    assert bot.slack.wait_for(lambda: len(bot.slack.calls_to("views.open")) == 1)
    view = bot.slack.calls_to("views.open")[0].args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    shown = json.dumps(view["blocks"])
    assert "*budget_analyst*: | people | $150k |" in shown and "cost of 4 engineers" in shown

    other = json.dumps({"thread": f"{root}~zz-budget"})  # this thread's shape, but no such sub-team
    assert details_click(bot, card, root, other) == 200
    assert bot.slack.wait_for(lambda: len(bot.slack.calls_to("views.open")) == 2)
    missing = bot.slack.calls_to("views.open")[1].args["view"]
    assert "no longer available" in json.dumps(missing)
    foreign = json.dumps({"thread": "1600000000.000001~s1-budget"})  # another thread's: refused outright
    assert details_click(bot, card, root, foreign) == 200
    bot.bridge.background.submit(lambda: None).result()
    assert len(bot.slack.calls_to("views.open")) == 2


def refused_by_the_proxy(bot: Bot, root: str, host: str) -> None:
    """The approved run of `root`'s card came back refused `host` (as the egress proxy reports it)."""
    key = bot.key(root)
    state = bot.rt.store.load(key)
    assert state is not None and state.run is not None
    now = datetime.now(UTC)
    click = Approve(event_id="ev-run", user_id="UANA", run_id=state.run.run_id, code_hash=state.run.code_hash)
    approved = engine.apply(state, key, click, bot.settings.policy(), now)
    assert approved is not None
    report = EgressReport(blocked=(host,), askable=(host,))
    result = CodeResult(exit_code=1, output="ConnectionError: 403\n", egress=report)
    state = bot.rt.store.save(engine.on_run_result(engine.on_run_started(approved), result, now))
    driver.deliver(bot.rt.ports(), state)


def test_blocked_hosts_card_refuses_a_stranger_and_allow_reruns_the_code(bot: Bot, llm: FakeOpenAI) -> None:
    llm.script(code("print('ok')"), "Done.\nTERMINATE")
    root = say(bot, "fetch the data")
    bot.work()
    refused_by_the_proxy(bot, root, "data.example.org:8080")
    (card,) = [
        c for c in bot.cards(root) if "egress proxy refused" in c["text"] or "refused" in str(c["blocks"])
    ]
    assert "`data.example.org:8080`" in card["blocks"][0]["text"]["text"]
    assert bot.click("allow_host", user="UMALLORY", card=card, thread_ts=root)[0] == 200
    bot.work()
    (ephemeral,) = bot.slack.calls_to("chat.postEphemeral")
    assert ephemeral.args["user"] == "UMALLORY" and "can allow hosts" in ephemeral.args["text"]
    assert bot.click("allow_host", user="UBOSS", card=card, thread_ts=root)[0] == 200
    bot.work()
    state = bot.rt.store.load(bot.key(root))
    assert state is not None and state.egress.thread_hosts == ("data.example.org:8080",)
    assert bot.results(root)[-1] == ":white_check_mark: exitcode: 0 (execution succeeded)"  # the rerun
    assert bot.cards(root) == []  # every card decided: no buttons left in the thread


def test_a_mention_in_a_long_thread_is_acked_before_any_slack_read_and_the_worker_reads_the_thread(
    bot: Bot, slack: FakeSlack, llm: FakeOpenAI
) -> None:
    root = slack.add_message(CHANNEL, user="UBOB", text="Which region sold most?")
    for i in range(300):
        slack.add_message(CHANNEL, user="UBOB", text=f"region {i} sold {i * 3}", thread_ts=root)
    said = f"<@{BOT_USER_ID}> sum this thread up"
    ts = slack.add_message(CHANNEL, user="UANA", text=said, thread_ts=root)
    llm.script("Region 299 sold most. TERMINATE")

    status, _ = bot.event({"type": "app_mention", "user": "UANA", "text": said, "ts": ts, "thread_ts": root})
    acked_at = time.time()

    assert status == 200
    bot.work()
    assert len(llm.requests) == 1
    reads = slack.calls_to("conversations.replies") + slack.calls_to("users.info")
    assert reads and all(call.at > acked_at for call in reads)  # all read by the worker, after the ack
    prompt = json.dumps(llm.requests[0]["messages"])
    assert "region 299 sold 897" in prompt


def test_opening_the_assistant_thread_sets_suggested_prompts_after_the_ack(
    bot: Bot, slack: FakeSlack
) -> None:
    event = {
        "type": "assistant_thread_started", "ts": "1700000009.000100",
        "assistant_thread": {"user_id": "UANA", "channel_id": "D0001", "thread_ts": "1700000009.000100",
                             "context": {"channel_id": CHANNEL, "team_id": TEAM_ID}},
    }  # fmt: skip
    status, _ = bot.event(event)
    assert status == 200
    assert slack.wait_for(lambda: bool(slack.calls_to("assistant.threads.setSuggestedPrompts")), timeout=5)
    (call,) = slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert call.args["channel_id"] == "D0001" and call.args["thread_ts"] == "1700000009.000100"
