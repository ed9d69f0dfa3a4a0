"""The `LLM` port over the OpenAI SDK (Chat Completions), for OpenAI or any compatible server.

An ordered list of `ModelConfig` works like AutoGen's `config_list`: when one model fails (after the
SDK's own retries), the next is tried; when all fail, `LLMError` says why in words for the thread. An
agent with a model of its own names it: its config is tried first (one is made on the first config's
server when the list has none), then the rest of the list.
Errors from the SDK are translated here, at the boundary:

    openai.RateLimitError        -> "is rate-limited (429)"
    openai.APITimeoutError       -> "did not answer within N s"
    openai.APIConnectionError    -> "could not be reached"
    openai.AuthenticationError   -> "rejected the API key (401)"
    openai.APIStatusError        -> "had a server error (5xx)" / "refused the request (4xx)"
    unreadable or empty reply    -> "sent a reply that could not be read" / "sent an empty reply"
    a stream broken mid-reply    -> "stopped answering mid-reply"

`stream` is `complete` with `stream=True` and `stream_options={"include_usage": True}`: the text is
handed on as it arrives, and the usage (so the cost) comes in the stream's last chunk.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Self, cast

import httpx2
import openai
from openai.types import CompletionUsage
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from agentbot.conversation.llm import ChatMessage, Completion, TextSink, ToolCall, ToolSpec
from agentbot.errors import ConfigError, LLMError
from agentbot.llm.config_list import (
    OPENAI_BASE_URL,
    ModelConfig,
    configs_from_settings,
    price_per_1k,
)
from agentbot.settings import Settings

__all__ = ["ModelConfig", "OpenAIChat", "price_per_1k", "safe_name", "to_wire"]

logger = logging.getLogger(__name__)

# Sent to servers that need no key (Ollama, vLLM): the SDK refuses to build a client without one.
PLACEHOLDER_API_KEY = "not-needed"

_VALID_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def safe_name(name: str | None) -> str | None:
    """`name` as Chat Completions accepts it (`^[A-Za-z0-9_-]{1,64}$`), or None if nothing is left."""
    if name is None or _VALID_NAME.match(name):
        return name
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = _INVALID_NAME_CHARS.sub("_", ascii_name).strip("_")[:64]
    return cleaned or None


def to_wire(message: ChatMessage) -> ChatCompletionMessageParam:
    """The request form of one message, with a sanitized `name` when there is one (and tool calls)."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": message.content}
    wire: dict[str, object] = {"role": message.role, "content": message.content}
    name = safe_name(message.name)
    if name:
        wire["name"] = name
    if message.tool_calls:
        wire["content"] = message.content or None  # a reply of calls only has no text
        wire["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    # The dict has exactly the keys of the role's TypedDict (system, user or assistant message).
    return cast(ChatCompletionMessageParam, wire)


class _ModelFailedError(Exception):
    """One model's failure: `phrase` completes "The model (x) ...", `advice` is the next step.

    `transient` marks failures the same call may not meet later (rate limit, timeout, 5xx, no
    connection); when every model failed transiently, the `LLMError` is `retryable`.
    """

    def __init__(self, phrase: str, advice: str = "", *, transient: bool = False) -> None:
        super().__init__(phrase)
        self.phrase = phrase
        self.advice = advice
        self.transient = transient


class OpenAIChat:
    """Chat completions from the first model of `configs` that answers."""

    def __init__(
        self, configs: Sequence[ModelConfig], *, timeout: float = 60.0, max_retries: int = 2
    ) -> None:
        if not configs:
            raise ConfigError("no language model is configured (AGENTBOT_MODEL or AGENTBOT_CONFIG_LIST)")
        for config in configs:
            _check_key(config)
        self.configs = tuple(configs)
        self.timeout = timeout
        self._max_retries = max_retries
        self._clients = [_client(config, timeout, max_retries) for config in self.configs]
        self._named: dict[str, tuple[ModelConfig, openai.OpenAI]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIChat:
        """From `AGENTBOT_CONFIG_LIST` if set, else `AGENTBOT_MODEL` x `OPENAI_BASE_URL`/`OPENAI_API_KEY`."""
        configs = configs_from_settings(settings)
        return cls(configs, timeout=settings.llm_timeout, max_retries=settings.llm_max_retries)

    def complete(
        self, messages: Sequence[ChatMessage], *, model: str | None = None, tools: Sequence[ToolSpec] = ()
    ) -> Completion:
        """The first model's reply that arrives (`model` first, if named); `LLMError` when all failed.

        `tools` are offered as functions (`tools=`); the reply's `tool_calls` come back in the completion.
        """
        wire = [to_wire(message) for message in messages]
        offered = [tool_param(tool) for tool in tools]
        return self._first_answer(
            model, lambda config, client: self._complete_with(config, client, wire, offered)
        )

    def stream(
        self, messages: Sequence[ChatMessage], *, on_text: TextSink, model: str | None = None
    ) -> Completion:
        """`complete` with `stream=True`: `on_text` gets the text so far as it arrives, usage comes last.

        A model that fails part-way is followed by the next one, which starts over: `on_text` then gets
        a text that does not extend the previous one.
        """
        wire = [to_wire(message) for message in messages]
        return self._first_answer(
            model, lambda config, client: self._stream_with(config, client, wire, on_text)
        )

    def _first_answer(
        self, model: str | None, attempt: Callable[[ModelConfig, openai.OpenAI], Completion]
    ) -> Completion:
        failures: list[tuple[ModelConfig, _ModelFailedError]] = []
        for config, client in self._in_order(model):
            try:
                return attempt(config, client)
            except _ModelFailedError as failure:
                logger.warning("model %s at %s failed: %s", config.model, config.where, failure.phrase)
                failures.append((config, failure))
        last = failures[-1][1]
        raise _all_failed(failures) from (last.__cause__ or last)

    def _in_order(self, model: str | None) -> list[tuple[ModelConfig, openai.OpenAI]]:
        pairs = list(zip(self.configs, self._clients, strict=True))
        if model is None:
            return pairs
        named = [pair for pair in pairs if pair[0].model == model] or [self._made_for(model)]
        return named + [pair for pair in pairs if pair[0].model != model]

    def _made_for(self, model: str) -> tuple[ModelConfig, openai.OpenAI]:
        """A config for a model the list does not name: the first config's server, key and no prices."""
        if model not in self._named:
            config = replace(self.configs[0], model=model, price_in_per_1k=None, price_out_per_1k=None)
            self._named[model] = (config, _client(config, self.timeout, self._max_retries))
        return self._named[model]

    def close(self) -> None:
        """Close the HTTP connection pools."""
        for client in (*self._clients, *(client for _, client in self._named.values())):
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _complete_with(
        self,
        config: ModelConfig,
        client: openai.OpenAI,
        wire: list[ChatCompletionMessageParam],
        offered: list[ChatCompletionToolParam],
    ) -> Completion:
        try:
            if offered:
                response = client.chat.completions.create(model=config.model, messages=wire, tools=offered)
            else:
                response = client.chat.completions.create(model=config.model, messages=wire)
        except openai.OpenAIError as exc:
            raise self._translate(exc) from exc
        except ValueError as exc:  # the SDK lets a 200 with a non-JSON body escape as JSONDecodeError
            raise _ModelFailedError("sent a reply that could not be read") from exc
        return _to_completion(config, response)

    def _stream_with(
        self,
        config: ModelConfig,
        client: openai.OpenAI,
        wire: list[ChatCompletionMessageParam],
        on_text: TextSink,
    ) -> Completion:
        try:
            chunks = client.chat.completions.create(
                model=config.model,
                messages=wire,
                stream=True,
                stream_options={"include_usage": True},  # the usage arrives in a last chunk
            )
            reply = _read_stream(chunks, on_text)
        except openai.OpenAIError as exc:
            raise self._translate(exc) from exc
        except httpx2.HTTPError as exc:  # the connection broke mid-reply (the SDK's transport lets it out)
            raise _ModelFailedError("stopped answering mid-reply", transient=True) from exc
        except ValueError as exc:  # a chunk that is not JSON
            raise _ModelFailedError("sent a reply that could not be read") from exc
        return _streamed_completion(config, reply)

    def _translate(self, exc: openai.OpenAIError) -> _ModelFailedError:
        if isinstance(exc, openai.APITimeoutError):
            return _ModelFailedError(
                f"did not answer within {self.timeout:g} s", "Try again, or ask for less at once."
            )
        if isinstance(exc, openai.APIConnectionError):
            return _ModelFailedError(
                "could not be reached", "Check that the model server is running.", transient=True
            )
        if isinstance(exc, openai.APIStatusError):
            return _status_failure(exc)
        return _ModelFailedError(f"failed ({type(exc).__name__})")


def _status_failure(exc: openai.APIStatusError) -> _ModelFailedError:
    code = exc.status_code
    if isinstance(exc, openai.RateLimitError):
        return _ModelFailedError(f"is rate-limited ({code})", "Try again in a minute.", transient=True)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return _ModelFailedError(
            f"rejected the API key ({code})", "Check the API key setting (OPENAI_API_KEY)."
        )
    if isinstance(exc, openai.NotFoundError):
        return _ModelFailedError(f"is not known to the server ({code})", "Check the model name setting.")
    if code >= 500:
        return _ModelFailedError(f"had a server error ({code})", "Try again in a minute.", transient=True)
    return _ModelFailedError(f"refused the request ({code}): {_server_message(exc)}")


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:200]
    return exc.message[:200]


def _to_completion(config: ModelConfig, response: object) -> Completion:
    if not isinstance(response, ChatCompletion) or not response.choices:
        raise _ModelFailedError("sent a reply that could not be read")
    choice = response.choices[0]
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None) or getattr(message, "refusal", None)
    calls = _tool_calls(message)
    if calls and not isinstance(content, str):
        content = ""
    if not isinstance(content, str) or not (content.strip() or calls):
        if choice.finish_reason == "content_filter":
            raise _ModelFailedError("withheld its reply (content filter)")
        raise _ModelFailedError("sent an empty reply")
    return _priced(config, content, response.usage, response.model or "", choice.finish_reason, calls=calls)


def _priced(
    config: ModelConfig,
    content: str,
    usage: CompletionUsage | None,
    served_model: str,
    finish_reason: str | None,
    *,
    calls: tuple[ToolCall, ...] = (),
) -> Completion:
    tokens_in = usage.prompt_tokens if usage and isinstance(usage.prompt_tokens, int) else 0
    tokens_out = usage.completion_tokens if usage and isinstance(usage.completion_tokens, int) else 0
    price = price_per_1k(config, served_model)
    return Completion(
        content=content,
        model=config.model,
        prompt_tokens=tokens_in,
        completion_tokens=tokens_out,
        cost_usd=None if price is None else (tokens_in * price[0] + tokens_out * price[1]) / 1000,
        truncated=finish_reason == "length",
        tool_calls=calls,
    )


def tool_param(tool: ToolSpec) -> ChatCompletionToolParam:
    """A tool as Chat Completions offers a function: name, description, JSON schema of its arguments."""
    function = {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
    return cast(ChatCompletionToolParam, {"type": "function", "function": function})


def _tool_calls(message: object) -> tuple[ToolCall, ...]:
    """The function calls of a reply (other kinds of calls are not offered, so not expected)."""
    calls = getattr(message, "tool_calls", None) or ()
    return tuple(
        ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments or "{}")
        for call in calls
        if getattr(call, "type", "function") == "function" and getattr(call, "function", None) is not None
    )


@dataclass
class _Streamed:
    """What a streamed reply added up to."""

    text: str = ""
    finish_reason: str | None = None
    served_model: str = ""
    usage: CompletionUsage | None = None


def _read_stream(chunks: Iterable[ChatCompletionChunk], on_text: TextSink) -> _Streamed:
    reply = _Streamed()
    for chunk in chunks:
        reply.served_model = chunk.model or reply.served_model
        reply.usage = chunk.usage or reply.usage
        if not chunk.choices:  # the usage chunk, or Azure's content-filter notes
            continue
        choice = chunk.choices[0]
        delta = choice.delta.content or choice.delta.refusal if choice.delta else None
        if delta:
            reply.text += delta
            on_text(reply.text)
        reply.finish_reason = choice.finish_reason or reply.finish_reason
    return reply


def _streamed_completion(config: ModelConfig, reply: _Streamed) -> Completion:
    if reply.finish_reason is None:  # the stream ended without saying why: the connection broke
        raise _ModelFailedError("stopped answering mid-reply", transient=True)
    if not reply.text.strip():
        if reply.finish_reason == "content_filter":
            raise _ModelFailedError("withheld its reply (content filter)")
        raise _ModelFailedError("sent an empty reply")
    return _priced(config, reply.text, reply.usage, reply.served_model, reply.finish_reason)


def _all_failed(failures: Sequence[tuple[ModelConfig, _ModelFailedError]]) -> LLMError:
    detail = "; ".join(f"{config.model} at {config.where}: {failure.phrase}" for config, failure in failures)
    advice = " ".join(dict.fromkeys(failure.advice for _, failure in failures if failure.advice))
    if len(failures) == 1:
        config, failure = failures[0]
        said = f"The model ({config.model}) {failure.phrase}."
    else:
        each = "; ".join(f"{config.model} {failure.phrase}" for config, failure in failures)
        said = f"None of the {len(failures)} configured models answered: {each}."
    retryable = all(failure.transient for _, failure in failures)
    return LLMError(
        f"every model failed: {detail}", user_message=f"{said} {advice}".strip(), retryable=retryable
    )


def _check_key(config: ModelConfig) -> None:
    if config.api_type == "azure" and not (config.base_url and config.api_version):
        raise ConfigError(f"model {config.model!r}: api_type azure needs base_url and api_version")
    if config.api_type == "azure" and not config.api_key:
        raise ConfigError(
            f"model {config.model!r} (Azure OpenAI at {config.where}) has no api_key; give one in its "
            "config list entry or set OPENAI_API_KEY"
        )
    if config.uses_openai and not config.api_key:
        raise ConfigError(
            f"OPENAI_API_KEY is not set but model {config.model!r} uses api.openai.com; set the key, "
            "or set OPENAI_BASE_URL to a server that needs none (Ollama, vLLM)"
        )


def _client(config: ModelConfig, timeout: float, max_retries: int) -> openai.OpenAI:
    # Endpoint, key and version are always passed, so the SDK never reads the environment itself.
    if config.api_type == "azure":  # /openai/deployments/<model>/chat/completions?api-version=...
        return openai.AzureOpenAI(
            api_key=config.api_key,
            api_version=config.api_version,
            azure_endpoint=config.base_url or "",  # never empty: _check_key refuses that
            timeout=timeout,
            max_retries=max_retries,
        )
    return openai.OpenAI(
        api_key=config.api_key or PLACEHOLDER_API_KEY,
        base_url=config.base_url or OPENAI_BASE_URL,
        timeout=timeout,
        max_retries=max_retries,
    )
