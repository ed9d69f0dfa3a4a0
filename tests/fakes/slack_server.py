"""A fake of the Slack Web API over real HTTP on loopback: records every call and answers like Slack.

In tests::

    with FakeSlack() as slack:
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        client.chat_postMessage(channel="C1", text="hi")
        assert slack.calls_to("chat.postMessage")[0].args["text"] == "hi"
        slack.fail("chat.postMessage", status=429, times=1, retry_after=1)

It keeps the messages it was sent per channel (with metadata) and serves them back from
`conversations.replies` (in pages of `limit`, with a cursor); streams messages as Slack's chat
streaming does (`chat.startStream` opens an empty message, `chat.appendStream` adds `markdown_text` or
markdown chunks while it streams, `chat.stopStream` ends it, and a message not streaming answers
`message_not_in_streaming_state`; `streaming = False` makes `chat.startStream` answer `unknown_method`,
as a workspace without streaming would); serves the three-step file upload
(`files.getUploadURLExternal` gives an upload URL on this server, the POST there stores the bytes,
`files.completeUploadExternal` shares them in `channel_id`/`thread_ts`); and serves shared files at
`/files/<id>` to bearer tokens.

As a process, for end-to-end tests::

    python -m tests.fakes.slack_server --port 0

prints `READY http://127.0.0.1:PORT/api/`; `GET /_calls` returns the recorded calls as JSON.

`sign(body, secret)` gives the `X-Slack-Signature` / `X-Slack-Request-Timestamp` headers Slack sends.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl

from tests.fakes.http import LoopbackHTTPServer, QuietHandler

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T0001"
TOKEN = "xoxb-test-token"
_JSON_FIELDS = ("blocks", "metadata", "files", "attachments", "loading_messages", "view", "chunks", "prompts")
_CHUNK_TYPES = {"markdown_text", "task_update", "plan_update", "blocks"}
_TASK_CHUNKS = {"task_update", "plan_update"}


@dataclass(frozen=True)
class Call:
    """One recorded Web API call: the method name, its arguments (JSON fields decoded) and when."""

    method: str
    args: dict[str, Any]
    token: str | None
    at: float


@dataclass
class _Failure:
    status: int
    times: int
    retry_after: int | None = None
    error: str | None = None  # with status 200: an `{"ok": false, "error": ...}` answer
    after: bool = False  # the call takes effect, then its answer fails (a response lost on the way)


@dataclass
class _Upload:
    file_id: str
    filename: str
    length: int
    content: bytes | None = None


@dataclass
class FakeSlackState:
    """What the fake knows; every method is thread-safe."""

    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    uploads: dict[str, _Upload] = field(default_factory=dict)
    shared: list[dict[str, Any]] = field(default_factory=list)  # completed uploads
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # served at /files/<id>
    redirects: dict[str, str] = field(default_factory=dict)  # /files/<id> answered with a 302 there
    failures: dict[str, list[_Failure]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    homes: dict[str, dict[str, Any]] = field(default_factory=dict)  # views.publish: user id -> view
    plans: bool = False  # task and plan chunks accepted (a workspace with AI features); else refused
    streaming: bool = True  # False: chat.startStream answers `unknown_method`
    lock: threading.Lock = field(default_factory=threading.Lock)
    _clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_ts(self) -> str:
        return f"{1_700_000_000 + next(self._clock)}.000100"


class FakeSlack:
    """The fake Slack Web API, serving on 127.0.0.1 at a free port until `close()`."""

    def __init__(self, *, port: int = 0, token: str = TOKEN, plans: bool = False) -> None:
        self.state = FakeSlackState(token=token, plans=plans)
        handler = type("BoundSlackHandler", (_SlackHandler,), {"state": self.state, "fake": self})
        self.httpd = LoopbackHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-slack", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """The Web API base URL (`SLACK_API_URL`), with the trailing slash slack_sdk expects."""
        return f"{self.url}/api/"

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- arranging ---------------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        status: int = 500,
        times: int = 1,
        retry_after: int | None = None,
        error: str | None = None,
        after: bool = False,
    ) -> None:
        """Answer the next `times` calls of `method` with `status` (429 carries `Retry-After`).

        With `error` (and status 200), answer `{"ok": false, "error": error}` as Slack does for
        refusals such as `not_in_channel`. With `after`, each call takes effect first and only its
        answer fails, as when a response is lost on its way back.
        """
        with self.state.lock:
            self.state.failures.setdefault(method, []).append(
                _Failure(status=status, times=times, retry_after=retry_after, error=error, after=after)
            )

    def add_message(
        self,
        channel: str,
        *,
        user: str,
        text: str,
        thread_ts: str | None = None,
        ts: str | None = None,
        **extra: Any,
    ) -> str:
        """Put a message in a channel as if a person (or `bot_id=...`) had written it; returns its ts."""
        with self.state.lock:
            ts = ts or self.state.next_ts()
            message = {"type": "message", "user": user, "text": text, "ts": ts, **extra}
            if thread_ts:
                message["thread_ts"] = thread_ts
            self.state.messages.setdefault(channel, []).append(message)
            return ts

    def add_file(self, file_id: str, content: bytes, *, mime_type: str = "text/csv") -> str:
        """Serve `content` at the returned URL to requests bearing the bot token."""
        with self.state.lock:
            self.state.files[file_id] = (content, mime_type)
        return f"{self.url}/files/{file_id}"

    def add_redirect(self, file_id: str, location: str) -> str:
        """Answer requests bearing the bot token at the returned URL with a 302 to `location`."""
        with self.state.lock:
            self.state.redirects[file_id] = location
        return f"{self.url}/files/{file_id}"

    def set_streaming(self, enabled: bool) -> None:
        """Whether `chat.startStream` works (False: it answers `unknown_method`, as an older Slack)."""
        with self.state.lock:
            self.state.streaming = enabled

    def add_user(self, user_id: str, *, name: str, real_name: str = "") -> None:
        with self.state.lock:
            self.state.users[user_id] = {
                "id": user_id,
                "name": name,
                "real_name": real_name or name,
                "profile": {"display_name": name, "real_name": real_name or name},
            }

    # -- inspecting --------------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self.state.lock:
            return list(self.state.calls)

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def methods(self) -> list[str]:
        return [call.method for call in self.calls]

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Messages of a thread, root first, as `conversations.replies` would list them."""
        with self.state.lock:
            messages = list(self.state.messages.get(channel, []))
        return [m for m in messages if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts]

    def uploaded(self) -> list[dict[str, Any]]:
        """Completed uploads: `{"channel_id", "thread_ts", "files": [{"id", "filename", "content", ...}]}`."""
        with self.state.lock:
            return list(self.state.shared)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Poll until `predicate()` holds (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.005)
        return predicate()

    def home(self, user_id: str) -> dict[str, Any] | None:
        """The Home tab last published for `user_id` (`views.publish`), or None."""
        with self.state.lock:
            return self.state.homes.get(user_id)

    def reset(self) -> None:
        with self.state.lock:
            self.state.calls.clear()
            self.state.messages.clear()
            self.state.shared.clear()
            self.state.failures.clear()


def sign(body: bytes | str, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 request signature headers for `body` (https://docs.slack.dev/authentication/verifying-requests-from-slack)."""
    raw = body.encode() if isinstance(body, str) else body
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


class _SlackHandler(QuietHandler):
    state: ClassVar[FakeSlackState]
    fake: ClassVar[FakeSlack]

    def do_GET(self) -> None:  # noqa: N802  # http.server's naming
        path, _, query = self.path.partition("?")
        if path == "/_calls":
            self.send_json(200, [c.__dict__ for c in self.fake.calls])
        elif path.startswith("/files/"):
            self._serve_file(path.removeprefix("/files/"))
        elif path.startswith("/api/"):
            self._api(path.removeprefix("/api/"), dict(parse_qsl(query)))
        else:
            self.send_json(404, {"ok": False, "error": "not_found"})

    def do_POST(self) -> None:  # noqa: N802  # http.server's naming
        path, _, query = self.path.partition("?")
        body = self.read_body()
        if path.startswith("/_upload/"):
            self._receive_upload(path.removeprefix("/_upload/"), body)
        elif path.startswith("/api/"):
            self._api(path.removeprefix("/api/"), {**dict(parse_qsl(query)), **self._form(body)})
        else:
            self.send_json(404, {"ok": False, "error": "not_found"})

    def _form(self, body: bytes) -> dict[str, Any]:
        content_type = self.headers.get("Content-Type") or ""
        if content_type.startswith("application/json"):
            data = json.loads(body or b"{}")
            return data if isinstance(data, dict) else {}
        return dict(parse_qsl(body.decode()))

    def _api(self, method: str, args: dict[str, Any]) -> None:
        token = self._token(args)
        args = {name: _decoded(name, value) for name, value in args.items() if name != "token"}
        with self.state.lock:
            self.state.calls.append(Call(method=method, args=args, token=token, at=time.time()))
            failure = self._take_failure(method)
        if failure is not None:
            if failure.after and token == self.state.token:
                _METHODS.get(method, _unknown)(self, args)
            self._send_failure(failure)
            return
        if token != self.state.token:
            self.send_json(200, {"ok": False, "error": "invalid_auth"})
            return
        answer = _METHODS.get(method, _unknown)(self, args)
        self.send_json(200, answer)

    def _token(self, args: dict[str, Any]) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.get("token")

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self.state.failures.get(method) or []
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    def _send_failure(self, failure: _Failure) -> None:
        if failure.error:
            self.send_json(failure.status, {"ok": False, "error": failure.error})
            return
        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
        error = "ratelimited" if failure.status == 429 else "internal_error"
        self.send_json(failure.status, {"ok": False, "error": error}, headers=headers)

    def _serve_file(self, file_id: str) -> None:
        auth = self.headers.get("Authorization") or ""
        found = self.state.files.get(file_id)
        redirect = self.state.redirects.get(file_id)
        if auth == f"Bearer {self.state.token}" and redirect is not None:
            self.send_bytes(302, b"", content_type="text/plain", headers={"Location": redirect})
            return
        if auth != f"Bearer {self.state.token}" or found is None:
            # Slack answers a missing token with its HTML sign-in page, not an error status.
            self.send_bytes(200, b"<html>sign in</html>", content_type="text/html")
            return
        self.send_bytes(200, found[0], content_type=found[1])

    def _receive_upload(self, file_id: str, body: bytes) -> None:
        with self.state.lock:
            upload = self.state.uploads.get(file_id)
            if upload is not None:
                upload.content = body
        status = 200 if upload is not None else 404
        self.send_bytes(status, f"OK - {len(body)}".encode(), content_type="text/plain")


def _decoded(name: str, value: Any) -> Any:
    """Form fields that carry JSON (`blocks`, `metadata`, `files`) decoded, as Slack reads them."""
    if name in _JSON_FIELDS and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if name == "include_all_metadata" and isinstance(value, str):
        return value.lower() in {"1", "true"}
    return value


def _auth_test(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "ok": True,
        "url": "https://acme.slack.com/",
        "team": "Acme",
        "user": "agentbot",
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }


def _post_message(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    channel = str(args.get("channel") or "")
    if not channel:
        return {"ok": False, "error": "channel_not_found"}
    state = handler.state
    with state.lock:
        ts = state.next_ts()
        message = {
            "type": "message",
            "subtype": "bot_message",
            "bot_id": BOT_ID,
            "user": BOT_USER_ID,
            "ts": ts,
            "text": args.get("text", ""),
            "blocks": args.get("blocks") or [],
            "username": args.get("username"),
            "icon_emoji": args.get("icon_emoji"),
        }
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        if args.get("metadata"):
            message["metadata"] = args["metadata"]
        state.messages.setdefault(channel, []).append(message)
    return {"ok": True, "channel": channel, "ts": ts, "message": message}


def _update(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    channel, ts = args.get("channel"), args.get("ts")
    with handler.state.lock:
        message = _find(handler.state, channel, ts)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if message.get("streaming"):
            return {"ok": False, "error": "cant_update_message"}  # a streaming message is stopped first
        message.update(text=args.get("text", ""), blocks=args.get("blocks") or [])
        if args.get("metadata"):
            message["metadata"] = args["metadata"]
        return {"ok": True, "channel": channel, "ts": ts, "text": args.get("text", "")}


def _find(state: FakeSlackState, channel: object, ts: object) -> dict[str, Any] | None:
    """The message at `ts` in `channel` (the caller holds the lock)."""
    return next((m for m in state.messages.get(str(channel), []) if m["ts"] == ts), None)


def _streamed_text(args: dict[str, Any]) -> str:
    """The markdown a streaming call adds: `markdown_text`, then any markdown text chunks."""
    chunks: object = args.get("chunks")
    items = chunks if isinstance(chunks, list) else []
    markdown = [c for c in items if isinstance(c, dict) and c.get("type") == "markdown_text"]
    texts = [str(c.get("text", "")) for c in markdown]
    return str(args.get("markdown_text") or "") + "".join(texts)


def _post_ephemeral(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    if not args.get("user"):
        return {"ok": False, "error": "user_not_in_channel"}
    return {"ok": True, "message_ts": handler.state.next_ts()}


def _replies(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    thread = handler.fake.thread(str(args.get("channel")), str(args.get("ts")))
    if not thread:
        return {"ok": False, "error": "thread_not_found"}
    if not args.get("include_all_metadata"):
        thread = [{k: v for k, v in m.items() if k != "metadata"} for m in thread]
    start = int(args.get("cursor") or 0)
    limit = min(int(args.get("limit") or 1000), 1000)
    page, more = thread[start : start + limit], start + limit < len(thread)
    cursor = str(start + limit) if more else ""
    return {"ok": True, "messages": page, "has_more": more, "response_metadata": {"next_cursor": cursor}}


def _users_info(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    user_id = str(args.get("user"))
    with handler.state.lock:
        user = handler.state.users.get(user_id)
    if user is None:
        user = {
            "id": user_id,
            "name": user_id.lower(),
            "real_name": user_id,
            "profile": {"display_name": "", "real_name": user_id},
        }
    return {"ok": True, "user": user}


def _get_upload_url(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    state = handler.state
    with state.lock:
        file_id = f"F{len(state.uploads) + 1:05d}"
        state.uploads[file_id] = _Upload(file_id, str(args.get("filename")), int(args.get("length") or 0))
    return {"ok": True, "upload_url": f"{handler.fake.url}/_upload/{file_id}", "file_id": file_id}


def _complete_upload(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    files = args.get("files")
    if not isinstance(files, list) or not files:
        return {"ok": False, "error": "invalid_arguments"}
    state = handler.state
    with state.lock:
        done = []
        for item in files:
            upload = state.uploads.get(str(item.get("id")))
            if upload is None or upload.content is None:
                return {"ok": False, "error": "file_not_found"}
            done.append(
                {
                    "id": upload.file_id,
                    "title": item.get("title") or upload.filename,
                    "filename": upload.filename,
                    "name": upload.filename,
                    "content": upload.content,
                }
            )
        state.shared.append(
            {
                "channel_id": args.get("channel_id"),
                "thread_ts": args.get("thread_ts"),
                "initial_comment": args.get("initial_comment"),
                "files": done,
            }
        )
        public = [{k: v for k, v in f.items() if k != "content"} for f in done]
        if args.get("channel_id"):  # shared: a message with the files (and the comment) appears
            _share(state, str(args["channel_id"]), args.get("thread_ts"), args.get("initial_comment"), public)
    return {"ok": True, "files": public}


def _share(
    state: FakeSlackState, channel: str, thread_ts: object, comment: object, files: list[dict[str, Any]]
) -> None:
    """The message Slack posts for shared files: the bot's, with the comment as its text."""
    message = {
        "type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": state.next_ts(),
        "text": str(comment or ""), "files": files, "upload": True,
    }  # fmt: skip
    if thread_ts:
        message["thread_ts"] = thread_ts
    state.messages.setdefault(channel, []).append(message)


def _views_open(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    """A modal, checked against Slack's limits: 24-character title, 100 blocks, 3,000 per section."""
    view = args.get("view")
    if isinstance(view, str):
        view = json.loads(view)
    if not args.get("trigger_id"):
        return {"ok": False, "error": "invalid_trigger_id"}
    if not isinstance(view, dict) or view.get("type") != "modal":
        return {"ok": False, "error": "invalid_arguments"}
    blocks = view.get("blocks") or []
    sections = [b.get("text", {}).get("text", "") for b in blocks if b.get("type") == "section"]
    too_long = len(view["title"]["text"]) > 24 or any(len(t) > 3000 for t in sections)
    if too_long or len(blocks) > 100:  # Slack's limits
        return {"ok": False, "error": "invalid_arguments"}
    return {"ok": True, "view": {"id": f"V{handler.state.next_ts().replace('.', '')}", **view}}


def _views_publish(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    """A Home tab, checked like Slack: `type: home`, at most 100 blocks, unique block ids."""
    view = args.get("view")
    if isinstance(view, str):
        view = json.loads(view)
    user_id = str(args.get("user_id") or "")
    if not user_id:
        return {"ok": False, "error": "invalid_arguments"}
    if not isinstance(view, dict) or view.get("type") != "home" or len(view.get("blocks") or []) > 100:
        return {"ok": False, "error": "invalid_arguments"}
    ids = [b["block_id"] for b in view["blocks"] if "block_id" in b]
    if len(ids) != len(set(ids)):
        return {"ok": False, "error": "duplicate_block_id"}
    with handler.state.lock:
        handler.state.homes[user_id] = view
    return {"ok": True, "view": {"id": f"VH{user_id}", **view}}


def _start_stream(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    """A streamed message in a thread; in a channel it needs its recipient (user and team)."""
    channel, thread_ts = str(args.get("channel") or ""), args.get("thread_ts")
    if not handler.state.streaming:
        return {"ok": False, "error": "unknown_method"}
    if not channel or not thread_ts:
        return {"ok": False, "error": "invalid_arguments"}
    if not channel.startswith("D") and not (args.get("recipient_user_id") and args.get("recipient_team_id")):
        return {"ok": False, "error": "missing_recipient_user_id"}
    refused = _refused_chunks(handler.state, args)
    if refused:
        return {"ok": False, "error": refused}
    state = handler.state
    with state.lock:
        message: dict[str, Any] = {
            "type": "message", "subtype": "bot_message", "bot_id": BOT_ID, "user": BOT_USER_ID,
            "ts": state.next_ts(), "thread_ts": thread_ts, "text": "", "blocks": [],
            "username": args.get("username"), "icon_emoji": args.get("icon_emoji"), "streaming": True,
            "stream": {"state": "streaming", "mode": args.get("task_display_mode") or "timeline",
                       "title": "", "tasks": {}},
        }  # fmt: skip
        _apply_chunks(message, args)
        state.messages.setdefault(channel, []).append(message)
    return {"ok": True, "channel": channel, "ts": message["ts"]}


def _append_stream(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    return _streamed(handler, args, stop=False)


def _stop_stream(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    return _streamed(handler, args, stop=True)


def _streamed(handler: _SlackHandler, args: dict[str, Any], *, stop: bool) -> dict[str, Any]:
    """More chunks for a streaming message (`chat.appendStream`), or its end (`chat.stopStream`)."""
    refused = _refused_chunks(handler.state, args)
    if refused:
        return {"ok": False, "error": refused}
    channel, ts = str(args.get("channel") or ""), args.get("ts")
    with handler.state.lock:
        message = next((m for m in handler.state.messages.get(channel, []) if m["ts"] == ts), None)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if (message.get("stream") or {}).get("state") != "streaming":
            return {"ok": False, "error": "message_not_in_streaming_state"}
        _apply_chunks(message, args)
        if not stop:
            return {"ok": True, "channel": channel, "ts": ts}
        message["stream"]["state"] = "stopped"
        message["streaming"] = False
        for name in ("metadata", "blocks"):
            if args.get(name):
                message[name] = args[name]
        return {"ok": True, "channel": channel, "ts": ts, "message": dict(message)}


def _refused_chunks(state: FakeSlackState, args: dict[str, Any]) -> str:
    """Why Slack would refuse these chunks ("" when it would not)."""
    chunks = args.get("chunks") or []
    if not isinstance(chunks, list) or any(
        not isinstance(c, dict) or c.get("type") not in _CHUNK_TYPES for c in chunks
    ):
        return "invalid_chunks"
    if not state.plans and any(c["type"] in _TASK_CHUNKS for c in chunks):
        return "feature_not_enabled"
    return ""


def _apply_chunks(message: dict[str, Any], args: dict[str, Any]) -> None:
    """What people see after these chunks: streamed text, the plan's title and its tasks by id."""
    stream = message["stream"]
    text = _streamed_text(args)
    for chunk in args.get("chunks") or []:
        if chunk["type"] == "plan_update":
            stream["title"] = chunk.get("title", "")
        elif chunk["type"] == "task_update":
            stream["tasks"][chunk["id"]] = {**stream["tasks"].get(chunk["id"], {}), **chunk}
    stream["text"] = stream.get("text", "") + text
    lines = [f"{t.get('title')} ({t.get('status')}): {t.get('output', '')}" for t in stream["tasks"].values()]
    message["text"] = "\n".join(part for part in (stream["title"], stream["text"], *lines) if part)


def _ok(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True}


def _connections_open(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    url = getattr(handler.fake, "socket_url", None)
    return {"ok": True, "url": url} if url else {"ok": False, "error": "not_allowed_token_type"}


def _unknown(handler: _SlackHandler, args: dict[str, Any]) -> dict[str, Any]:
    return {"ok": False, "error": "unknown_method"}


_METHODS: dict[str, Callable[[_SlackHandler, dict[str, Any]], dict[str, Any]]] = {
    "auth.test": _auth_test,
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "chat.postEphemeral": _post_ephemeral,
    "conversations.replies": _replies,
    "users.info": _users_info,
    "files.getUploadURLExternal": _get_upload_url,
    "files.completeUploadExternal": _complete_upload,
    "views.open": _views_open,
    "views.publish": _views_publish,
    "chat.startStream": _start_stream,
    "chat.appendStream": _append_stream,
    "chat.stopStream": _stop_stream,
    "reactions.add": _ok,
    "reactions.remove": _ok,
    "assistant.threads.setStatus": _ok,
    "assistant.threads.setSuggestedPrompts": _ok,
    "apps.connections.open": _connections_open,
}


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, printing `READY <api url>` once listening."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=TOKEN)
    args = parser.parse_args(argv)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with FakeSlack(port=args.port, token=args.token) as fake:
        print(f"READY {fake.api_url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
