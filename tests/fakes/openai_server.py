"""A scripted fake of the OpenAI Chat Completions API, served over real HTTP on loopback.

In tests::

    with FakeOpenAI() as llm:
        llm.script("Hello!", Status(429, headers={"retry-after-ms": "10"}), "After the retry")
        client = OpenAI(base_url=llm.base_url, api_key="test")
        ...
        assert llm.requests[0]["model"] == "gpt-4o-mini"

Replies are taken from the script queue in order; when it is empty, from `responder(body)` if given,
else `default`, else the server answers 500 "fake server: no scripted reply" so a test fails loudly.

As a process, for end-to-end tests::

    python -m tests.fakes.openai_server --port 0 --script script.json [--record requests.jsonl]
                                        [--tokens-per-second 50]

prints `READY http://127.0.0.1:PORT/v1` once listening. The script file is either a JSON list of
replies (the queue) or an object::

    {"replies": [...], "rules": [{"match": "exitcode: 0", "reply": "Done. TERMINATE"}], "default": "..."}

where a rule answers (once the queue is empty) when its `match` is a substring of the last user
message. A reply in JSON is a string (the assistant's text), `{"status": 429, "body": ..., "headers":
{...}}`, `{"delay": 2, "then": <reply>}`, `{"garbage": "not json"}` or `{"cut": "text"}` (a reply
stopped at the length limit, `finish_reason: "length"`), or `{"tool_calls": [{"name": "add", "arguments":
{"a": 1}}, ...], "content": ""}` (function calls, several in parallel; ids are `call_<request>_<n>`).

A request with `"stream": true` is answered as OpenAI does, in server-sent events: one chunk per token
(a word with the whitespace before it), `tokens_per_second` of them (as fast as possible when None),
a last chunk with the `finish_reason`, then the usage chunk if `stream_options.include_usage` asked for
it, then `data: [DONE]`. `first_token_at` holds when each streamed reply's first token was sent
(`time.time()`), for benchmarks. `{"stall": "text"}` streams `text`, then hangs (until the server
closes) without finishing: a reply a worker can be killed in the middle of; `{"drop": "text"}`
streams `text`, then closes the connection without finishing.

Azure OpenAI's routes are served too: `POST /openai/deployments/<deployment>/chat/completions
?api-version=...` with the key in an `api-key` header (`paths` records the path and query of each
request, so a test sees which route a client took).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, ClassVar, Self

from tests.fakes.http import LoopbackServer, QuietHandler

NO_REPLY_MESSAGE = "fake server: no scripted reply"


@dataclass(frozen=True)
class Status:
    """An HTTP answer with this status; `body` None gives an OpenAI-shaped error, a str is sent raw."""

    code: int
    body: object | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` (e.g. longer than the client's timeout), then answer with `then`."""

    seconds: float
    then: Reply = ""


@dataclass(frozen=True)
class Garbage:
    """A 200 answer whose body is `body` verbatim (invalid JSON, or JSON of the wrong shape)."""

    body: str


@dataclass(frozen=True)
class Cut:
    """A 200 answer with `content` and `finish_reason: "length"`: the reply hit the token limit."""

    content: str


@dataclass(frozen=True)
class Call:
    """One function call of a `ToolCalls` reply; `arguments` is sent as JSON text (a str as it is)."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)


@dataclass(frozen=True)
class ToolCalls:
    """A 200 answer asking for `calls` (`finish_reason: "tool_calls"`), with optional `content`."""

    calls: Sequence[Call]
    content: str = ""


@dataclass(frozen=True)
class Stall:
    """Streamed: `content` token by token, then nothing more until the server closes (no finish)."""

    content: str


@dataclass(frozen=True)
class Drop:
    """Streamed: `content` token by token, then the connection closes without a finish or `[DONE]`."""

    content: str


Reply = str | Status | Delay | Garbage | Cut | Stall | Drop | ToolCalls
Responder = Callable[[dict[str, Any]], Reply]


@dataclass(frozen=True)
class Rule:
    """Answer `reply` when `match` is a substring of the last user message."""

    match: str
    reply: Reply


def match_responder(rules: Sequence[Rule], default: Reply | None = None) -> Responder:
    """A responder choosing the first rule whose `match` occurs in the last user message."""

    def respond(body: dict[str, Any]) -> Reply:
        text = last_user_text(body)
        for rule in rules:
            if rule.match in text:
                return rule.reply
        if default is None:
            return Status(500, {"error": {"message": f"{NO_REPLY_MESSAGE} (no rule matched)"}})
        return default

    return respond


def last_user_text(body: Mapping[str, Any]) -> str:
    """The text of the last `user` (or `tool` result) message of a Chat Completions request ("" if none)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") in ("user", "tool"):
            return _text_of(message.get("content"))
    return ""


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: the number of whitespace-separated words."""
    return len(text.split())


def prompt_tokens(body: Mapping[str, Any]) -> int:
    messages = body.get("messages") or []
    return sum(count_tokens(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))


def completion_body(
    request: Mapping[str, Any], content: str, number: int, finish_reason: str = "stop"
) -> dict[str, Any]:
    """The Chat Completions answer with `content`, echoing the requested model."""
    return {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(request.get("model", "fake-model")),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_body(request, content),
    }


def usage_body(request: Mapping[str, Any], content: str) -> dict[str, int]:
    used_in, used_out = prompt_tokens(request), count_tokens(content)
    return {"prompt_tokens": used_in, "completion_tokens": used_out, "total_tokens": used_in + used_out}


_TOKEN = re.compile(r"\s*\S+|\s+$")


def stream_tokens(content: str) -> list[str]:
    """`content` in the pieces a streamed reply sends: each word with the whitespace before it."""
    return _TOKEN.findall(content) or [content]


def chunk_body(
    request: Mapping[str, Any], number: int, delta: dict[str, str], finish_reason: str | None = None
) -> dict[str, Any]:
    """One `chat.completion.chunk` of a streamed answer."""
    return {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": str(request.get("model", "fake-model")),
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def tool_calls_body(request: Mapping[str, Any], reply: ToolCalls, number: int) -> dict[str, Any]:
    """A Chat Completions answer whose message asks for `reply.calls`."""
    body = completion_body(request, reply.content, number, finish_reason="tool_calls")
    message = body["choices"][0]["message"]
    message["content"] = reply.content or None
    message["tool_calls"] = [
        {
            "id": f"call_{number}_{index}",
            "type": "function",
            "function": {
                "name": call.name,
                "arguments": call.arguments
                if isinstance(call.arguments, str)
                else json.dumps(call.arguments),
            },
        }
        for index, call in enumerate(reply.calls, start=1)
    ]
    return body


def error_body(code: int, message: str) -> dict[str, Any]:
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_exceeded",
    }
    kind = kinds.get(code, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


class FakeOpenAI:
    """The scripted server; a context manager that serves while the `with` block runs."""

    def __init__(
        self,
        responder: Responder | None = None,
        default: Reply | None = None,
        latency: float = 0.0,
        *,
        api_key: str | None = None,
        models: Sequence[str] = ("gpt-4o-mini",),
        port: int = 0,
        record: Path | None = None,
        tokens_per_second: float | None = None,
    ) -> None:
        """`api_key`, when set, makes requests without `Authorization: Bearer <api_key>` get a 401."""
        self.tokens_per_second = tokens_per_second
        self.first_token_at: list[float] = []
        self.responder = responder
        self.default = default
        self.latency = latency
        self.api_key = api_key
        self.models = tuple(models)
        self._record = record
        self._queue: deque[Reply] = deque()
        self._requests: list[dict[str, Any]] = []
        self._headers: list[dict[str, str]] = []
        self._paths: list[str] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = LoopbackServer(_handler_for(self), port=port)

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`, the value for the SDK's `base_url` / `OPENAI_BASE_URL`."""
        return f"{self._server.url}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat completion requests received so far, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """The headers (lower-cased names) of the same requests, in the same order (a copy)."""
        with self._lock:
            return list(self._headers)

    @property
    def paths(self) -> list[str]:
        """The path and query of the same requests, in the same order (a copy)."""
        with self._lock:
            return list(self._paths)

    @property
    def pending(self) -> int:
        """How many scripted replies have not been used yet."""
        with self._lock:
            return len(self._queue)

    def script(self, *replies: Reply) -> None:
        """Append replies to the queue; each request takes the next one."""
        with self._lock:
            self._queue.extend(replies)

    def start(self) -> None:
        self._server.start()

    def close(self) -> None:
        self._closing.set()  # wake handlers sleeping in a Delay
        self._server.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- used by the request handler -------------------------------------------------------------

    def _take(self, body: dict[str, Any], headers: dict[str, str], path: str) -> tuple[int, Reply]:
        with self._lock:
            self._requests.append(body)
            self._headers.append(headers)
            self._paths.append(path)
            number = len(self._requests)
            if self._record is not None:
                with self._record.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(body) + "\n")
            if self._queue:
                return number, self._queue.popleft()
        if self.responder is not None:
            return number, self.responder(body)
        if self.default is not None:
            return number, self.default
        return number, Status(500, error_body(500, NO_REPLY_MESSAGE))

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server closes first; True if it is closing."""
        return self._closing.wait(seconds) if seconds > 0 else False


class _OpenAIHandler(QuietHandler):
    owner: ClassVar[FakeOpenAI]

    def do_GET(self) -> None:  # noqa: N802  # the name http.server dispatches to
        if self.path.rstrip("/").endswith("/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.owner.models]
            self.send_json(200, {"object": "list", "data": data})
        else:
            self.send_json(404, error_body(404, f"fake server: no route GET {self.path}"))

    def do_POST(self) -> None:  # noqa: N802  # the name http.server dispatches to
        raw = self.read_body()
        route, _, query = self.path.partition("?")
        if not route.rstrip("/").endswith("/chat/completions"):
            self.send_json(404, error_body(404, f"fake server: no route POST {self.path}"))
            return
        if route.startswith("/openai/deployments/") and "api-version=" not in query:
            self.send_json(404, error_body(404, "fake server: Azure routes need ?api-version="))
            return
        if not self._authorized():
            self.send_json(401, error_body(401, "Incorrect API key provided (fake server)."))
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self.send_json(400, error_body(400, "fake server: request body is not JSON"))
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        number, reply = self.owner._take(body, headers, self.path)
        if self.owner._sleep(self.owner.latency):
            return
        self._answer(body, reply, number)

    def _authorized(self) -> bool:
        """The key as OpenAI takes it (`Authorization: Bearer`) or as Azure OpenAI does (`api-key`)."""
        expected = self.owner.api_key
        if expected is None:
            return True
        return self.headers.get("Authorization") == f"Bearer {expected}" or (
            self.path.startswith("/openai/deployments/") and self.headers.get("api-key") == expected
        )

    def _answer(self, body: dict[str, Any], reply: Reply, number: int) -> None:
        while isinstance(reply, Delay):
            if self.owner._sleep(reply.seconds):
                return
            reply = reply.then
        try:
            if body.get("stream") and isinstance(reply, str | Cut | Stall | Drop):
                self._stream(body, reply, number)
            elif isinstance(reply, str):
                self.send_json(200, completion_body(body, reply, number))
            elif isinstance(reply, ToolCalls):
                self.send_json(200, tool_calls_body(body, reply, number))
            elif isinstance(reply, Cut):
                self.send_json(200, completion_body(body, reply.content, number, finish_reason="length"))
            elif isinstance(reply, Stall | Drop):
                self.send_json(200, completion_body(body, reply.content, number))
            elif isinstance(reply, Garbage):
                self.send_bytes(200, reply.body.encode(), content_type="application/json")
            else:
                self._send_status(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout); nothing to answer

    def _stream(self, body: dict[str, Any], reply: str | Cut | Stall | Drop, number: int) -> None:
        """Server-sent events, one token per chunk at the owner's rate (the connection then closes)."""
        content = reply if isinstance(reply, str) else reply.content
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self._event(chunk_body(body, number, {"role": "assistant", "content": ""}))
        pause = 1 / self.owner.tokens_per_second if self.owner.tokens_per_second else 0.0
        for index, token in enumerate(stream_tokens(content)):
            if index and self.owner._sleep(pause):
                return
            if index == 0:
                with self.owner._lock:
                    self.owner.first_token_at.append(time.time())
            self._event(chunk_body(body, number, {"content": token}))
        if isinstance(reply, Stall):
            self.owner._sleep(3600)
        if isinstance(reply, Stall | Drop):
            return
        finish = "length" if isinstance(reply, Cut) else "stop"
        self._event(chunk_body(body, number, {}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            used_in, used_out = prompt_tokens(body), count_tokens(content)
            usage = {
                "prompt_tokens": used_in,
                "completion_tokens": used_out,
                "total_tokens": used_in + used_out,
            }
            self._event({**chunk_body(body, number, {}), "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _event(self, data: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
        self.wfile.flush()

    def _send_status(self, reply: Status) -> None:
        headers = dict(reply.headers or {})
        if isinstance(reply.body, str):
            self.send_bytes(reply.code, reply.body.encode(), content_type="text/plain", headers=headers)
            return
        payload = (
            reply.body if reply.body is not None else error_body(reply.code, _status_message(reply.code))
        )
        self.send_json(reply.code, payload, headers=headers)


def _status_message(code: int) -> str:
    if code == 429:
        return "fake server: rate limit reached (429)"
    return f"fake server: scripted status {code}"


def _handler_for(owner: FakeOpenAI) -> type[_OpenAIHandler]:
    return type("FakeOpenAIHandler", (_OpenAIHandler,), {"owner": owner})


# --- the script file and the standalone process ----------------------------------------------------


@dataclass(frozen=True)
class Script:
    """A parsed script file: the reply queue, match rules and a default."""

    replies: tuple[Reply, ...] = ()
    rules: tuple[Rule, ...] = field(default=())
    default: Reply | None = None

    def responder(self) -> Responder | None:
        return match_responder(self.rules, self.default) if self.rules else None


_TEXT_REPLIES: dict[str, type[Cut | Stall | Drop]] = {"cut": Cut, "stall": Stall, "drop": Drop}


def parse_reply(value: object) -> Reply:
    """One reply from its JSON form (see the module docstring)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "status" in value:
            return Status(int(value["status"]), value.get("body"), value.get("headers"))
        if "delay" in value:
            return Delay(float(value["delay"]), parse_reply(value.get("then", "")))
        if "garbage" in value:
            return Garbage(str(value["garbage"]))
        if "tool_calls" in value:
            calls = [Call(str(c["name"]), c.get("arguments", {})) for c in value["tool_calls"]]
            return ToolCalls(calls, str(value.get("content", "")))
        for name, kind in _TEXT_REPLIES.items():
            if name in value:
                return kind(str(value[name]))
    raise ValueError(f"not a scripted reply: {value!r}")


def parse_script(data: object) -> Script:
    """A script from the JSON of a script file (a list of replies, or an object with rules)."""
    if isinstance(data, list):
        return Script(replies=tuple(parse_reply(item) for item in data))
    if not isinstance(data, dict):
        raise ValueError("a script is a JSON list of replies or an object with 'replies'/'rules'")
    rules = tuple(Rule(str(r["match"]), parse_reply(r["reply"])) for r in data.get("rules", []))
    default = parse_reply(data["default"]) if "default" in data else None
    return Script(tuple(parse_reply(item) for item in data.get("replies", [])), rules, default)


def load_script(path: Path) -> Script:
    return parse_script(json.loads(path.read_text(encoding="utf-8")))


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a script until SIGTERM or SIGINT, after printing `READY <base_url>`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--script", type=Path, help="JSON script file (see the module docstring)")
    parser.add_argument("--record", type=Path, help="append each request body as a JSON line here")
    parser.add_argument("--api-key", help="require this bearer token")
    parser.add_argument("--tokens-per-second", type=float, help="pace of streamed replies")
    args = parser.parse_args(argv)
    script = load_script(args.script) if args.script else Script()
    fake = FakeOpenAI(
        script.responder(),
        script.default,
        api_key=args.api_key,
        port=args.port,
        record=args.record,
        tokens_per_second=args.tokens_per_second,
    )
    fake.script(*script.replies)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with fake:
        print(f"READY {fake.base_url}", flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
