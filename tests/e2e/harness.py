"""The product as a user starts it: the Procfile's processes against Redis and fake Slack/OpenAI servers.

`Stack` starts, each as a real process on loopback: a private `redis-server` with AOF persistence (as
the README's deployment section documents), the fake Slack Web API (`tests.e2e.slack_fake`: the fake of
`tests.fakes.slack_server` plus routes to arrange it from here), the scripted fake OpenAI server
(`python -m tests.fakes.openai_server --script ... --record ...`), then the Procfile's `web: agentbot
web` and `worker: python -m worker`, with the settings in the environment and nothing else.

The test then plays Slack: signed Events API JSON and interactivity form posts to `/slack/events`, and
reads what people would see from the fake Slack (thread messages, uploaded files).

The agentbot processes run in a fresh directory (so a developer's `.env` does not leak in) with an
environment stripped of every `AGENTBOT_*`, `SLACK_*`, `OPENAI_*`, `REDIS_URL` and `PORT` variable.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import redis
from rq import Worker
from rq.serializers import JSONSerializer

from agentbot.conversation.state import ConversationKey, ConversationState
from agentbot.store import RedisStore
from tests.conftest import free_port
from tests.fakes.slack_server import BOT_ID, BOT_USER_ID, TEAM_ID, TOKEN, sign
from tests.sandbox.docker_fixtures import IMAGE

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-signing-secret"
QUEUE = "agentbot"  # the product's queue name (agentbot.queue.QUEUE_NAME)
_STRIPPED_PREFIXES = ("AGENTBOT_", "SLACK_", "OPENAI_")
_STRIPPED = {"REDIS_URL", "PORT"}
PR_SET_PDEATHSIG = 1  # prctl(2): a test process killed outright takes the stack's processes with it


class StackError(AssertionError):
    """A process of the stack failed to start, or a wait ran out; the message carries the logs."""


@dataclass
class Process:
    """One started process: its command, its log file, and whether it leads its own process group."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it after `timeout`, and any descendant left over.

        rq's work horse calls `setsid()`, so it is in a group of its own: descendants are collected
        first and killed by pid.
        """
        family = descendants(self.pid)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        self.kill(family)
        if self.popen.stdout is not None:
            self.popen.stdout.close()

    def kill(self, family: list[int] | None = None) -> None:
        """SIGKILL the process and all its descendants at once: the machine running them died."""
        family = descendants(self.pid) if family is None else family
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Stack:
    """Redis, the fakes, `agentbot web` and `python -m worker` processes, and Slack's side of the wire."""

    script: Mapping[str, Any]
    executor: str = "docker"
    workers: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    external_openai: str = ""  # an OpenAI-compatible server already running (then `script` is unused)
    tokens_per_second: float | None = None  # the fake model's pace of streamed replies (None: at once)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="agentbot-e2e-")))
    # A channel of its own: conversation keys (and so sandbox workspaces on the shared engine) never
    # collide with another stack's, although every fake Slack numbers its messages the same way.
    channel: str = field(default_factory=lambda: f"C{uuid.uuid4().hex[:10].upper()}")
    processes: dict[str, Process] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)
    worker_names: list[str] = field(default_factory=list)
    redis_port: int = 0
    web_port: int = 0
    slack_api: str = ""
    openai_url: str = ""
    _clicks: int = 0
    _own_workdir: bool = True

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Stack:
        try:
            self.start_redis()
            self.slack_api = self._start_fake("slack", [sys.executable, "-m", "tests.e2e.slack_fake"])
            if self.external_openai:
                self.openai_url = self.external_openai
            else:
                script = self.workdir / "llm-script.json"
                script.write_text(json.dumps(self.script))
                pace = ["--tokens-per-second", str(self.tokens_per_second)] if self.tokens_per_second else []
                self.openai_url = self._start_fake(
                    "openai",
                    [sys.executable, "-m", "tests.fakes.openai_server", "--script", str(script),
                     "--record", str(self.llm_log), *pace],
                )  # fmt: skip
            self.start_web()
            for _ in range(self.workers):
                self.start_worker()
            self.wait_until(self._web_healthy, timeout=30, what="agentbot web answering /healthz")
            for name in self.worker_names:
                self.wait_for_worker(self.processes[name])
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop everything this stack started, newest first; remove its directory."""
        for name in reversed(list(self.processes)):
            self.processes[name].stop()
        if self.executor == "docker":
            self._remove_workspaces()
        if os.environ.get("AGENTBOT_E2E_KEEP"):
            print(f"e2e logs kept in {self.workdir}", file=sys.stderr)
        elif self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _remove_workspaces(self) -> None:
        """The sandbox workspaces (containers, volumes) of this stack's conversations, off the engine."""
        from agentbot.errors import SandboxError
        from agentbot.sandbox.docker import DockerExecutor

        executor = DockerExecutor()
        for root in self.roots:
            with contextlib.suppress(SandboxError):
                executor.remove_workspace(self.key(root).slug)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def llm_log(self) -> Path:
        return self.workdir / "llm-requests.jsonl"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def slack_url(self) -> str:
        return self.slack_api.removesuffix("/api/")

    def agentbot_env(self) -> dict[str, str]:
        """The environment of the Procfile processes: the settings a deployment sets, and no others."""
        base = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(_STRIPPED_PREFIXES) and name not in _STRIPPED
        }
        base.pop("PYTHONPATH", None)
        settings = {
            "REDIS_URL": self.redis_url,
            "SLACK_API_URL": self.slack_api,
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "PORT": str(self.web_port),
            "OPENAI_BASE_URL": self.openai_url,
            "OPENAI_API_KEY": "e2e-key",
            "AGENTBOT_EXECUTOR": self.executor,
            "AGENTBOT_WORKDIR": str(self.workdir / "workspaces"),  # the local executor's
            "AGENTBOT_SANDBOX_IMAGE": IMAGE,
            # The stories use offline data; a test of the egress proxy sets `proxy` in `self.env`.
            "AGENTBOT_SANDBOX_NETWORK": "none",
        }
        return {**base, **settings, **self.env}

    def start_redis(self) -> None:
        """A private `redis-server` with AOF on in this stack's directory (a restart keeps the state)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server is not on the PATH")
        self.redis_port = self.redis_port or free_port()
        data = self.workdir / "redis"
        data.mkdir(exist_ok=True)
        command = [
            binary, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(data),
            "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        self._spawn("redis", command, env=dict(os.environ), cwd=data)
        self.wait_until(self._redis_up, timeout=15, what="redis-server answering PING")

    def stop_redis(self) -> None:
        """Shut Redis down as an operator would (SIGTERM: it writes its AOF and exits)."""
        self.processes.pop("redis").stop(timeout=15)

    def restart_redis(self) -> None:
        self.stop_redis()
        self.start_redis()

    def start_web(self) -> Process:
        self.web_port = self.web_port or free_port()
        return self._spawn("web", ["agentbot", "web"], env=self.agentbot_env(), cwd=self._app_dir())

    def start_worker(self, env: Mapping[str, str] | None = None, *, args: Sequence[str] = ()) -> Process:
        """One more `python -m worker [args]`, with `env` on top of the stack's settings (e.g. engines)."""
        name = f"worker-{len(self.worker_names) + 1}"
        self.worker_names.append(name)
        environment = {**self.agentbot_env(), **(env or {})}
        command = [sys.executable, "-m", "worker", *args]
        return self._spawn(name, command, env=environment, cwd=self._app_dir())

    def worker(self, index: int = 0) -> Process:
        """The `index`-th worker still running."""
        live = [
            self.processes[n] for n in self.worker_names if n in self.processes and self.processes[n].alive()
        ]
        return live[index]

    def kill_worker(self, process: Process) -> None:
        """SIGKILL a whole worker (its scheduler and the step it runs too), as if its machine died."""
        family = descendants(process.pid)
        process.kill(family)
        name = next(n for n, p in self.processes.items() if p is process)
        self.processes.pop(name)
        self.processes[f"{name}-dead"] = process
        self.wait_until(
            lambda: not any(_running(pid) for pid in family), timeout=10, what="the worker's processes to die"
        )

    def kill_work_horse(self) -> int:
        """SIGKILL the forked child running a step in some worker (the youngest child); returns its pid.

        A worker's children are its scheduler (forked at start) and, while a step runs, the horse.
        """
        for name in self.worker_names:
            process = self.processes.get(name)
            if process is None or not process.alive():
                continue
            children = _children(process.pid)
            if len(children) < 2:
                continue
            horse = max(children, key=_start_time)
            os.kill(horse, signal.SIGKILL)
            return horse
        raise StackError("no worker is running a step right now" + self.logs())

    def busy_worker(self) -> Process:
        """The worker process running a step right now (rq's registry of workers says which)."""
        with self.redis() as client:
            busy = {
                w.pid
                for w in Worker.all(connection=client, serializer=JSONSerializer)
                if w.get_current_job_id()
            }
        for name in self.worker_names:
            process = self.processes.get(name)
            if process is not None and process.alive() and process.pid in busy:
                return process
        raise StackError("no worker is running a step right now" + self.logs())

    def _app_dir(self) -> Path:
        app = self.workdir / "app"
        app.mkdir(exist_ok=True)
        return app

    def _spawn(self, name: str, command: list[str], *, env: dict[str, str], cwd: Path) -> Process:
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        log = logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                command,
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509  # only prctl, no locks or allocation to fear
            )
        process = Process(name, popen, log)
        self.processes[name] = process
        return process

    def _start_fake(self, name: str, command: list[str]) -> str:
        """Start a fake that prints `READY <url>` on stdout; returns the url."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        log = logs / f"{name}.log"
        with log.open("ab") as err:
            popen = subprocess.Popen(
                [*command, "--port", "0"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
                start_new_session=True, preexec_fn=_die_with_parent,  # noqa: PLW1509
            )  # fmt: skip
        self.processes[name] = process = Process(name, popen, log)
        assert popen.stdout is not None
        ready, _, _ = select.select([popen.stdout], [], [], 20)
        line = popen.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("READY "):
            raise StackError(f"{name} fake did not start (said {line!r})\n{process.tail()}")
        return line.removeprefix("READY ")

    def _redis_up(self) -> bool:
        try:
            with redis.Redis.from_url(self.redis_url, socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def _web_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.web_url}/healthz", timeout=2) as response:
                return int(response.status) == 200
        except (OSError, urllib.error.URLError):
            return False

    def wait_for_worker(self, process: Process, timeout: float = 30) -> float:
        """Wait until the worker `process` registered itself in Redis (it takes jobs from then on)."""
        return self.wait_until(
            lambda: process.pid in self._registered_pids(), timeout=timeout, what=f"{process.name} registered"
        )

    def _registered_pids(self) -> set[int]:
        with self.redis() as client:
            keys = client.smembers(f"rq:workers:{QUEUE}")
            pids = (client.hget(_text(k), "pid") for k in keys)
            return {int(pid) for pid in pids if pid}

    # -- waiting, with the logs when a wait runs out -------------------------------------------------

    def wait_until(self, condition: Callable[[], bool], *, timeout: float = 30, what: str = "") -> float:
        """Poll `condition` until true; returns the seconds it took. Fails with the processes' logs."""
        began = time.monotonic()
        while True:
            if condition():
                return time.monotonic() - began
            dead = [p.name for n, p in self.processes.items() if not n.endswith("-dead") and not p.alive()]
            if dead:
                raise StackError(f"process(es) {dead} exited while waiting for {what}" + self.logs())
            if time.monotonic() - began > timeout:
                raise StackError(f"not reached within {timeout:g} s: {what}" + self.logs())
            time.sleep(0.05)

    def logs(self, lines: int = 30) -> str:
        parts = [f"\n--- {p.name} (pid {p.pid}) ---\n{p.tail(lines)}" for p in self.processes.values()]
        return "".join(parts)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def state(self, thread_ts: str) -> ConversationState | None:
        with self.redis() as client:
            return RedisStore(client).load(self.key(thread_ts))

    # -- Slack's side: signed requests in ----------------------------------------------------------

    def post(self, body: bytes, content_type: str, *, headers: Mapping[str, str] | None = None) -> int:
        """POST to `/slack/events` as Slack does (signed); returns the HTTP status."""
        all_headers = {"Content-Type": content_type, **sign(body, SECRET), **(headers or {})}
        request = urllib.request.Request(f"{self.web_url}/slack/events", data=body, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as error:
            with error:
                return int(error.code)

    def event(self, event: Mapping[str, Any], *, event_id: str | None = None, channel: str = "") -> int:
        body = {
            "token": "legacy", "team_id": TEAM_ID, "api_app_id": "A0E2E", "type": "event_callback",
            "event": {"event_ts": event["ts"], "channel": channel or self.channel, **event},
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:12]}", "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
        }  # fmt: skip
        return self.post(json.dumps(body).encode(), "application/json")

    def mention(
        self, text: str, *, user: str = "UANA", thread_ts: str | None = None, channel: str = ""
    ) -> str:
        """A person mentions the bot in the channel (or in a thread); returns the new thread's ts."""
        event = self.mention_event(text, user=user, thread_ts=thread_ts, channel=channel)
        status = self.event(event, channel=channel)
        assert status == 200, f"mention answered {status}"
        return str(event.get("thread_ts") or event["ts"])

    def mention_event(
        self, text: str, *, user: str = "UANA", thread_ts: str | None = None, channel: str = ""
    ) -> dict[str, Any]:
        """The message of a mention, put in the fake Slack; returns the `app_mention` event to send."""
        said = f"<@{BOT_USER_ID}> {text}"
        ts = self.add_message(user=user, text=said, thread_ts=thread_ts, channel=channel)
        event: dict[str, Any] = {"type": "app_mention", "user": user, "text": said, "ts": ts}
        if thread_ts:
            event["thread_ts"] = thread_ts
        self.roots.append(thread_ts or ts)
        return event

    def reply(
        self, thread_ts: str, text: str, *, user: str = "UBOB", files: list[dict[str, Any]] | None = None
    ) -> str:
        """A person replies in the thread (with files: a `file_share` message); returns its ts."""
        extra: dict[str, Any] = {"files": files, "subtype": "file_share"} if files else {}
        ts = self.add_message(user=user, text=text, thread_ts=thread_ts, extra=extra)
        event = {
            "type": "message", "channel_type": "channel", "user": user, "text": text, "ts": ts,
            "thread_ts": thread_ts, **extra,
        }  # fmt: skip
        status = self.event(event)
        assert status == 200, f"reply answered {status}"
        return ts

    def click(self, card: Mapping[str, Any], action_id: str, *, user: str, thread_ts: str) -> int:
        """Click a button of a card as recorded by the fake Slack (its value as the bot set it)."""
        self._clicks += 1
        actions = next(b for b in card["blocks"] if b.get("type") == "actions")
        button = next(b for b in actions["elements"] if b["action_id"] == action_id)
        payload = {
            "type": "block_actions", "team": {"id": TEAM_ID, "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM_ID},
            "api_app_id": "A0E2E", "token": "legacy",
            "trigger_id": f"{self._clicks}.{uuid.uuid4().hex[:10]}",
            "container": {"type": "message", "message_ts": card["ts"], "channel_id": self.channel,
                          "is_ephemeral": False, "thread_ts": thread_ts},
            "channel": {"id": self.channel, "name": "e2e"},
            "message": {"type": "message", "bot_id": BOT_ID, "ts": card["ts"], "thread_ts": thread_ts,
                        "text": card.get("text", "")},
            "response_url": "https://hooks.slack.com/actions/T0001/1/x",
            "actions": [{"action_id": action_id, "block_id": actions.get("block_id", "approval"),
                         "type": "button", "value": button["value"], "action_ts": f"{time.time():.6f}"}],
        }  # fmt: skip
        return self.post(
            urlencode({"payload": json.dumps(payload)}).encode(), "application/x-www-form-urlencoded"
        )

    def click_home(self, user: str, action_id: str, *, containing: str = "") -> int:
        """Click a button on `user`'s Home tab (the first `action_id` whose block mentions `containing`).

        A Home click comes from a view: no channel, no message; the button's value names the thread.
        """
        self._clicks += 1
        view = self.home(user)
        actions = [b for b in view["blocks"] if b.get("type") == "actions" and containing in json.dumps(b)]
        button = next(e for b in actions for e in b["elements"] if e["action_id"] == action_id)
        payload = {
            "type": "block_actions", "team": {"id": TEAM_ID, "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM_ID},
            "api_app_id": "A0E2E", "token": "legacy",
            "trigger_id": f"{self._clicks}.{uuid.uuid4().hex[:10]}",
            "container": {"type": "view", "view_id": f"VH{user}"},
            "view": {"id": f"VH{user}", "type": "home", "blocks": view["blocks"]},
            "actions": [{"action_id": action_id, "block_id": actions[0].get("block_id", "home"),
                         "type": "button", "value": button["value"], "action_ts": f"{time.time():.6f}"}],
        }  # fmt: skip
        return self.post(
            urlencode({"payload": json.dumps(payload)}).encode(), "application/x-www-form-urlencoded"
        )

    def open_home(self, user: str) -> int:
        """`user` opens the bot's Home tab (an `app_home_opened` event)."""
        event = {"type": "app_home_opened", "user": user, "tab": "home", "ts": f"{time.time():.6f}"}
        return self.event(event)

    def submit_view(self, view: Mapping[str, Any], values: Mapping[str, str], *, user: str) -> int:
        """Submit a modal the bot opened, with `values` typed into its inputs (block id -> text)."""
        state = {
            block_id: {block_id: {"type": "plain_text_input", "value": text}}
            for block_id, text in values.items()
        }
        payload = {
            "type": "view_submission", "team": {"id": TEAM_ID, "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM_ID},
            "api_app_id": "A0E2E", "token": "legacy", "trigger_id": f"{time.time():.6f}.x",
            "view": {**view, "id": view.get("id") or f"V{uuid.uuid4().hex[:8]}",
                     "hash": f"{time.time():.6f}", "state": {"values": state}},
        }  # fmt: skip
        return self.post(
            urlencode({"payload": json.dumps(payload)}).encode(), "application/x-www-form-urlencoded"
        )

    # -- Slack's side: what people see ---------------------------------------------------------------

    def home(self, user: str) -> dict[str, Any]:
        """The Home tab last published for `user` ({} before the first)."""
        view: dict[str, Any] | None = self._control(f"home?user={user}")
        return view or {}

    def wait_for_home(self, user: str, needle: str, *, timeout: float = 30) -> dict[str, Any]:
        """Wait until `user`'s Home tab shows `needle`; returns it."""
        self.wait_until(
            lambda: needle in json.dumps(self.home(user)),
            timeout=timeout,
            what=f"{needle!r} on {user}'s Home",
        )
        return self.home(user)

    def opened_views(self) -> list[dict[str, Any]]:
        """The modals the bot opened (`views.open`), oldest first."""
        return [call["args"]["view"] for call in self.calls("views.open")]

    def _control(self, route: str, data: Mapping[str, Any] | None = None) -> Any:
        url = f"{self.slack_url}/_control/{route}"
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def add_message(
        self,
        *,
        user: str,
        text: str,
        thread_ts: str | None = None,
        extra: Mapping[str, Any] | None = None,
        channel: str = "",
    ) -> str:
        data = {
            "channel": channel or self.channel,
            "user": user,
            "text": text,
            "thread_ts": thread_ts,
            "extra": extra or {},
        }
        return str(self._control("message", data)["ts"])

    def add_messages(self, thread_ts: str, messages: list[tuple[str, str]]) -> None:
        """Put many `(user, text)` messages into a thread at once (a long thread to mention the bot in)."""
        data = {"channel": self.channel, "thread_ts": thread_ts, "messages": [list(m) for m in messages]}
        self._control("messages", data)

    def set_streaming(self, enabled: bool) -> None:
        """Make the fake Slack refuse `chat.startStream` (`unknown_method`), as a workspace without it."""
        self._control("streaming", {"enabled": enabled})

    def add_file(self, file_id: str, content: bytes, mime_type: str = "text/csv") -> str:
        data = {"file_id": file_id, "content_b64": base64.b64encode(content).decode(), "mime_type": mime_type}
        return str(self._control("file", data)["url"])

    def fail_slack(
        self,
        method: str,
        *,
        status: int = 500,
        times: int = 1,
        retry_after: int | None = None,
        after: bool = False,
    ) -> None:
        """The next `times` calls of `method` fail (with `after`, they take effect and the answer fails)."""
        failure = {
            "method": method,
            "status": status,
            "times": times,
            "retry_after": retry_after,
            "after": after,
        }
        self._control("fail", failure)

    def thread(self, thread_ts: str, *, channel: str = "") -> list[dict[str, Any]]:
        """The bot's messages in the thread, oldest first (the people's messages left out)."""
        messages = self._control(f"thread?channel={channel or self.channel}&ts={thread_ts}")
        return [m for m in messages if m.get("bot_id") == BOT_ID and m["ts"] != thread_ts]

    def cards(self, thread_ts: str) -> list[dict[str, Any]]:
        """Approval cards in the thread still showing their buttons (decided cards show none)."""
        return [
            m
            for m in self.thread(thread_ts)
            if any(b.get("type") == "actions" for b in m.get("blocks") or [])
        ]

    def texts(self, thread_ts: str) -> list[str]:
        return [str(m.get("text", "")) for m in self.thread(thread_ts)]

    def uploads(self, thread_ts: str) -> list[dict[str, Any]]:
        """Files shared into the thread: each `{"filename", "content": bytes, ...}`."""
        found = []
        for upload in self._control("uploads"):
            if upload.get("thread_ts") != thread_ts or upload.get("channel_id") != self.channel:
                continue
            for item in upload["files"]:
                found.append({**item, "content": base64.b64decode(item.pop("content_b64"))})
        return found

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.slack_url}/_calls", timeout=10) as response:
            calls: list[dict[str, Any]] = json.loads(response.read())
        return [c for c in calls if method is None or c["method"] == method]

    def llm_requests(self) -> list[dict[str, Any]]:
        if not self.llm_log.exists():
            return []
        return [json.loads(line) for line in self.llm_log.read_text().splitlines() if line.strip()]

    # -- asserting what matters everywhere ---------------------------------------------------------

    def wait_for_text(self, thread_ts: str, needle: str, *, count: int = 1, timeout: float = 60) -> None:
        self.wait_until(
            lambda: sum(needle in t for t in self.texts(thread_ts)) >= count,
            timeout=timeout,
            what=f"{count} message(s) with {needle!r} in thread {thread_ts} (have: {self.texts(thread_ts)})",
        )

    def wait_for_card(self, thread_ts: str, *, timeout: float = 60) -> dict[str, Any]:
        self.wait_until(
            lambda: len(self.cards(thread_ts)) == 1, timeout=timeout, what=f"an open card in {thread_ts}"
        )
        (card,) = self.cards(thread_ts)
        return card

    def assert_nothing_twice(self, thread_ts: str) -> None:
        """Every post of the bot is in the thread once (effect ids unique), every upload once."""
        effects = []
        for message in self.thread(thread_ts):
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("effect_id"):
                effects.append((payload["effect_id"], payload.get("part", 0)))
        repeated = {e for e in effects if effects.count(e) > 1}
        assert not repeated, f"posted twice: {repeated}\n{self.texts(thread_ts)}"
        names = [u["filename"] for u in self.uploads(thread_ts)]
        uploads_per_run = [m for m in self.texts(thread_ts) if m.startswith(":paperclip:")]
        assert len(names) <= max(len(uploads_per_run), 1) * 10, f"uploads repeated: {names}"

    def key(self, thread_ts: str) -> ConversationKey:
        return ConversationKey(team_id=TEAM_ID, channel_id=self.channel, thread_ts=thread_ts)

    def settled(self, thread_ts: str) -> bool:
        """The conversation waits for people: no outbox, no pending events, not mid-step."""
        state = self.state(thread_ts)
        if state is None or state.outbox or state.phase.value in {"thinking", "running"}:
            return False
        with self.redis() as client:
            return not RedisStore(client).events_after(self.key(thread_ts), state.last_event_id)


def button_value(card: Mapping[str, Any], action_id: str = "run_code") -> dict[str, Any]:
    actions = next(b for b in card["blocks"] if b.get("type") == "actions")
    button = next(b for b in actions["elements"] if b["action_id"] == action_id)
    value: dict[str, Any] = json.loads(button["value"])
    return value


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children first), from /proc."""
    found: list[int] = []
    pending = _children(pid)
    while pending and len(found) < 1000:
        child = pending.pop(0)
        found.append(child)
        pending += _children(child)
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the process that started it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _start_time(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time in clock ticks


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextlib.contextmanager
def stack(script: Mapping[str, Any], **options: Any) -> Iterator[Stack]:
    with Stack(script, **options) as running:
        yield running
