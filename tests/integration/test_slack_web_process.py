"""The ack path on real Redis and the `web` process itself: dedupe with the append, threads, processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue

from agentbot.conversation.events import Start
from agentbot.conversation.state import ConversationKey, ConversationState, Policy
from agentbot.errors import StoreError
from agentbot.queue import RQJobQueue, StepWrites
from agentbot.runtime import web_options
from agentbot.settings import load_settings
from agentbot.slack.app import DEDUPE_TTL, Bridge
from agentbot.slack.parse import parse_event
from agentbot.slack.platform import SlackPlatform
from agentbot.store import RedisSlackStore, RedisStore
from agentbot.web import WebApp
from tests.conftest import free_port
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import BOT_USER_ID, TEAM_ID, TOKEN, FakeSlack, sign
from tests.wsgi_server import LoopbackWSGI

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-signing-secret"
KEY = ConversationKey(team_id=TEAM_ID, channel_id="C0001", thread_ts="1700000000.000100")


def start(event_id: str = "Ev1") -> Start:
    return Start(event_id=event_id, user_id="UANA", text="plot sin(x)")


# -- the store: dedupe and append in one round trip ------------------------------------------------


def test_append_event_once_appends_and_marks_together(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    first = store.append_event_once(KEY, start(), marker="seen:Ev1", ttl=60)
    again = store.append_event_once(KEY, start(), marker="seen:Ev1", ttl=60)
    other = store.append_event_once(KEY, start("Ev2"), marker="seen:Ev2", ttl=60)

    assert first is not None and other is not None and again is None
    assert [event_id for event_id, _ in store.events_after(KEY, "0-0")] == [first, other]
    assert 0 < redis_client.ttl("seen:Ev1") <= 60
    assert redis_client.ttl(store.inbox_key(KEY)) > 0


def test_append_event_once_under_concurrent_duplicates_appends_once(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    results: list[str | None] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(store.append_event_once(KEY, start(), marker="m", ttl=60))
        )
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result is not None for result in results) == 1
    assert len(store.events_after(KEY, "0-0")) == 1


def test_exists_without_reading_the_state(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    assert not store.exists(KEY)
    now = datetime.now(UTC)
    store.save(ConversationState(key=KEY, created_at=now, updated_at=now, starter_id="UANA", policy=Policy()))
    assert store.exists(KEY)


# -- the bridge: the event and its step in one script, or neither ----------------------------------


class FlakyQueue(RQJobQueue):
    """The real queue, whose step fails to be written (by the store's script) while `fail` is set."""

    fail = True

    def step_writes(self, key: ConversationKey, queue: Queue | None = None) -> StepWrites:
        writes = super().step_writes(key, queue)
        if not self.fail:
            return writes
        return StepWrites(keys=writes.keys, args=writes.args[:3])  # cut short: the script fails at once


def mention_body(event_id: str) -> dict[str, Any]:
    ts = "1700000000.000100"
    return {
        "team_id": TEAM_ID, "event_id": event_id, "type": "event_callback",
        "event": {"type": "app_mention", "user": "UANA", "text": f"<@{BOT_USER_ID}> hi", "ts": ts,
                  "channel": "C0001", "event_ts": ts},
    }  # fmt: skip


def test_an_event_is_stored_with_its_step_or_not_at_all(redis_client: redis.Redis) -> None:
    with FakeSlack() as slack:
        settings = load_settings(slack_bot_token=TOKEN, slack_api_url=slack.api_url)
        queue = FlakyQueue(redis_client, queue_name="test-atomic")
        store = RedisStore(redis_client)
        platform = SlackPlatform.from_settings(settings, RedisSlackStore(redis_client))
        bridge = Bridge(store=store, queue=queue, platform=platform)
        body = mention_body("EvRetry")
        assert parse_event(body, bot_user_id=BOT_USER_ID) is not None

        with pytest.raises(StoreError):  # the script's error: nothing it did before stays
            bridge.on_event(body, bot_user_id=BOT_USER_ID)  # answered 500: Slack retries
        assert redis_client.exists(f"{bridge.prefix}:seen:{TEAM_ID}:EvRetry") == 0
        assert store.events_after(KEY, "0-0") == [] and queue.queue.count == 0

        queue.fail = False
        bridge.on_event(body, bot_user_id=BOT_USER_ID)  # Slack's retry
        bridge.on_event(body, bot_user_id=BOT_USER_ID)  # and a second one: a duplicate
        ((_, event),) = store.events_after(KEY, "0-0")
        assert isinstance(event, Start) and event.text == "hi"  # the author's name is the worker's to read
        assert queue.queue.count == 1  # one step: the duplicate wrote nothing
        assert 0 < redis_client.ttl(f"{bridge.prefix}:seen:{TEAM_ID}:EvRetry") <= DEDUPE_TTL


# -- the web process: gunicorn, WEB_CONCURRENCY processes on one port, replaced when they die -------


def test_embedded_mode_and_socket_mode_are_one_process() -> None:
    assert web_options(load_settings(redis_url=None, web_concurrency=4)).workers == 1
    assert web_options(load_settings(redis_url="redis://x", web_concurrency=4)).workers == 4
    socket_mode = load_settings(redis_url="redis://x", web_concurrency=4, slack_app_token="xapp-1")
    assert web_options(socket_mode).workers == 1


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def wait_for(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def signed_mention(port: int, event_id: str) -> int:
    ts = f"{time.time():.6f}"
    body = json.dumps(
        {
            "team_id": TEAM_ID, "api_app_id": "A0001", "type": "event_callback", "event_id": event_id,
            "event": {"type": "app_mention", "user": "UANA", "text": f"<@{BOT_USER_ID}> hi", "ts": ts,
                      "channel": "C0001", "event_ts": ts},
            "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
        }
    ).encode()  # fmt: skip
    headers = {"Content-Type": "application/json", **sign(body, SECRET)}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from /proc")
def test_web_processes_share_the_port_are_replaced_and_stop_on_sigterm(
    redis_url: str, redis_client: redis.Redis
) -> None:
    port = free_port()
    with FakeSlack() as slack:
        env = {
            **os.environ, "REDIS_URL": redis_url, "SLACK_API_URL": slack.api_url, "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET, "SLACK_APP_TOKEN": "", "PORT": str(port), "WEB_CONCURRENCY": "2",
            "AGENTBOT_EXECUTOR": "none", "AGENTBOT_LOG_LEVEL": "WARNING", "OPENAI_API_KEY": "unused",
        }  # fmt: skip
        with subprocess.Popen([sys.executable, "-m", "agentbot", "web"], cwd=ROOT, env=env) as proc:
            try:
                wait_for(lambda: healthy(port))
                first = wait_for(lambda: len(children(proc.pid)) == 2 and children(proc.pid))

                ids = [f"Ev{uuid.uuid4().hex[:10]}" for _ in range(20)]
                assert all(signed_mention(port, event_id) == 200 for event_id in ids)
                seen = redis_client.keys(f"agentbot:slack:seen:{TEAM_ID}:*")
                assert len(seen) == 20

                os.kill(first[0], signal.SIGKILL)  # a child dies: another takes its place
                replaced = wait_for(
                    lambda: len(now := children(proc.pid)) == 2 and first[0] not in now and now
                )
                assert first[1] in replaced
                assert signed_mention(port, "EvAfterCrash") == 200

                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=15) == 0
                for pid in replaced:
                    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from /proc")
def test_web_processes_stop_when_their_parent_is_killed(redis_url: str) -> None:
    port = free_port()
    with FakeSlack() as slack:
        env = {
            **os.environ, "REDIS_URL": redis_url, "SLACK_API_URL": slack.api_url, "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET, "SLACK_APP_TOKEN": "", "PORT": str(port), "WEB_CONCURRENCY": "2",
            "AGENTBOT_EXECUTOR": "none", "AGENTBOT_LOG_LEVEL": "ERROR", "OPENAI_API_KEY": "unused",
        }  # fmt: skip
        with subprocess.Popen([sys.executable, "-m", "agentbot", "web"], cwd=ROOT, env=env) as proc:
            try:
                wait_for(lambda: healthy(port))
                pids = wait_for(lambda: len(children(proc.pid)) == 2 and children(proc.pid))
            finally:
                proc.kill()
            wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), timeout=10)


# -- malformed requests: 400 and one log line, never a dropped connection or a traceback ------------


@pytest.fixture
def web_process(redis_url: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """`agentbot web` on a free port (HTTP mode, Redis), its stderr in a file; stopped with SIGTERM."""
    port, log = free_port(), tmp_path / "web.log"
    with FakeSlack() as slack, log.open("wb") as err:
        env = {
            **os.environ, "REDIS_URL": redis_url, "SLACK_API_URL": slack.api_url, "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET, "SLACK_APP_TOKEN": "", "PORT": str(port), "WEB_CONCURRENCY": "1",
            "AGENTBOT_EXECUTOR": "none", "AGENTBOT_LOG_LEVEL": "INFO", "OPENAI_API_KEY": "unused",
        }  # fmt: skip
        command = [sys.executable, "-m", "agentbot", "web"]
        with subprocess.Popen(command, cwd=ROOT, env=env, stderr=err) as proc:
            try:
                wait_for(lambda: healthy(port))
                yield port, log
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=15) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()


def raw_request(port: int, head: str, body: bytes = b"") -> bytes:
    """Send `head` (request line and headers) and `body` as they are; the answer, read until closed."""
    request = f"{head}Host: x\r\nConnection: close\r\n\r\n".encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(4096):  # a dropped connection ends this with b"" at once
            answer += chunk
        return answer


JSON, FORM = "application/json", "application/x-www-form-urlencoded"


def signed_post(port: int, body: bytes, content_type: str) -> bytes:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **sign(body, SECRET)}
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return raw_request(port, f"POST /slack/events HTTP/1.1\r\n{head}", body)


@pytest.mark.parametrize(
    ("body", "content_type", "logged"),
    [
        pytest.param(b"this is not json", JSON, "not a Slack payload", id="signed_not_json"),
        pytest.param(b"payload=%7Bnot+json", FORM, "not a Slack payload", id="bad_form"),
        pytest.param(b"[1, 2]", JSON, "not a Slack payload", id="json_not_an_object"),
        pytest.param(b"\xff\xfe{}", JSON, "body is not UTF-8", id="not_utf8"),
    ],
)  # fmt: skip
def test_an_unreadable_slack_body_is_a_400_with_one_log_line(
    web_process: tuple[int, Path], body: bytes, content_type: str, logged: str
) -> None:
    port, log = web_process
    answer = signed_post(port, body, content_type)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert healthy(port)
    text = wait_for(lambda: logged in (t := log.read_text()) and t)
    assert "Traceback" not in text
    assert len([line for line in text.splitlines() if "bad request" in line]) == 1


def test_a_content_length_that_is_not_a_number_is_a_400_with_one_log_line(
    web_process: tuple[int, Path],
) -> None:
    port, log = web_process
    answer = raw_request(port, "POST /slack/events HTTP/1.1\r\nContent-Length: abc\r\n", b"{}")
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert healthy(port)
    text = wait_for(lambda: "Invalid request" in (t := log.read_text()) and t)
    assert "Traceback" not in text
    assert len([line for line in text.splitlines() if "Invalid request" in line]) == 1


def test_unknown_paths_and_methods_are_answered(web_process: tuple[int, Path]) -> None:
    port, _ = web_process
    assert raw_request(port, "GET /nothing HTTP/1.1\r\n").startswith(b"HTTP/1.1 404 ")
    assert raw_request(port, "GET /slack/events HTTP/1.1\r\n").startswith(b"HTTP/1.1 405 ")


def test_embedded_mode_runs_steps_in_the_one_web_process(tmp_path: Path) -> None:
    """No REDIS_URL: gunicorn with one worker process, whose in-memory Redis and step thread serve all."""
    port = free_port()
    with FakeSlack() as slack, FakeOpenAI() as llm:
        llm.script("Hello from the model.\nTERMINATE")
        env = {
            name: value for name, value in os.environ.items()
            if not name.startswith(("AGENTBOT_", "SLACK_", "OPENAI_")) and name not in ("REDIS_URL", "PORT")
        }  # fmt: skip
        env.update(
            SLACK_API_URL=slack.api_url, SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SECRET, PORT=str(port),
            AGENTBOT_EXECUTOR="none", OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY="t", WEB_CONCURRENCY="4",
        )  # fmt: skip
        with subprocess.Popen([sys.executable, "-m", "agentbot", "web"], cwd=tmp_path, env=env) as proc:
            try:
                wait_for(lambda: healthy(port))
                assert len(wait_for(lambda: children(proc.pid))) == 1
                assert signed_mention(port, "EvEmbedded") == 200
                shown = wait_for(lambda: [c for c in slack.state.calls if c.method == "chat.update"])
                assert "Hello from the model." in shown[0].args["text"]  # a streamed reply, finished
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=15) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()


def test_socket_mode_web_app_answers_health_and_no_events() -> None:
    """In Socket Mode events come over the socket; the port still answers /healthz for the platform."""
    with LoopbackWSGI(WebApp(None, healthy=lambda: True)) as server:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as response:
            assert response.status == 200
        assert raw_request(server.port, "POST /slack/events HTTP/1.1\r\n").startswith(b"HTTP/1.0 404 ")
