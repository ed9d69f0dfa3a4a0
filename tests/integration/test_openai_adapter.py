"""The OpenAI adapter with the real SDK against the scripted fake server over loopback HTTP."""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentbot.conversation.llm import ChatMessage, Completion
from agentbot.errors import ConfigError, LLMError
from agentbot.llm import ModelConfig, OpenAIChat
from agentbot.llm.openai_chat import price_per_1k
from agentbot.settings import load_settings
from tests.fakes.openai_server import Cut, Delay, Drop, FakeOpenAI, Garbage, Reply, Status

QUESTION = [
    ChatMessage(role="system", content="You are a helpful assistant."),
    ChatMessage(role="user", content="Plot a chart of NVDA", name="alice"),
]
MakeChat = Callable[..., OpenAIChat]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def make_chat(fake: FakeOpenAI) -> Iterator[MakeChat]:
    """Builds adapters on the fake (one config per model name) and closes them after the test."""
    made: list[OpenAIChat] = []

    def make(
        *models: str, timeout: float = 5.0, max_retries: int = 0, api_key: str = "test-key"
    ) -> OpenAIChat:
        configs = [ModelConfig(model=m, base_url=fake.base_url, api_key=api_key) for m in models]
        chat = OpenAIChat(configs, timeout=timeout, max_retries=max_retries)
        made.append(chat)
        return chat

    yield make
    for chat in made:
        chat.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No agentbot or OpenAI variables from the outer environment, and no `.env` file."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "AGENTBOT_MODEL",
        "AGENTBOT_CONFIG_LIST",
        "OAI_CONFIG_LIST",
        "AGENTBOT_CONFIG_TAGS",
        "AGENTBOT_MAX_COST_USD",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AGENTBOT_LLM_MAX_RETRIES", "0")
    return monkeypatch


def failure_of(chat: OpenAIChat) -> LLMError:
    with pytest.raises(LLMError) as caught:
        chat.complete(QUESTION)
    return caught.value


def test_reply_carries_content_usage_and_cost(fake: FakeOpenAI, make_chat: MakeChat) -> None:
    fake.script("Here is the code you asked for")

    completion = make_chat("gpt-4o-mini").complete(QUESTION)

    assert completion.content == "Here is the code you asked for"
    assert completion.model == "gpt-4o-mini"
    assert (completion.prompt_tokens, completion.completion_tokens) == (10, 7)
    assert completion.cost_usd == pytest.approx((10 * 0.15 + 7 * 0.60) / 1_000_000)
    [request] = fake.requests
    assert request["model"] == "gpt-4o-mini"
    assert request["messages"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Plot a chart of NVDA", "name": "alice"},
    ]
    assert fake.request_headers[0]["authorization"] == "Bearer test-key"


def test_unknown_model_counts_tokens_and_its_cost_is_unknown_not_zero(
    fake: FakeOpenAI, make_chat: MakeChat
) -> None:
    fake.script("hi")

    completion = make_chat("llama3.1:8b").complete(QUESTION)

    assert completion.completion_tokens == 1
    assert completion.cost_usd is None


def test_rate_limit_is_retried_by_the_sdk_honouring_retry_after(
    fake: FakeOpenAI, make_chat: MakeChat
) -> None:
    # The SDK ignores `Retry-After: 0` (it honours only delays > 0) and would back off ~0.5 s instead.
    fake.script(Status(429, headers={"retry-after-ms": "10"}), "after the wait")
    started = time.monotonic()

    completion = make_chat("gpt-4o", max_retries=2).complete(QUESTION)

    assert completion.content == "after the wait"
    assert len(fake.requests) == 2
    assert time.monotonic() - started < 0.35  # the SDK's own backoff would be at least 0.375 s


def test_server_error_on_first_config_falls_back_to_second(fake: FakeOpenAI, make_chat: MakeChat) -> None:
    fake.script(Status(500), "from the second model")

    completion = make_chat("gpt-4o", "gpt-4o-mini").complete(QUESTION)

    assert completion.content == "from the second model"
    assert completion.model == "gpt-4o-mini"
    assert [request["model"] for request in fake.requests] == ["gpt-4o", "gpt-4o-mini"]


def test_all_configs_failing_raise_llm_error_naming_each_cause(fake: FakeOpenAI, make_chat: MakeChat) -> None:
    fake.script(Status(429), Status(503))

    error = failure_of(make_chat("gpt-4o", "gpt-4o-mini"))

    assert error.user_message.startswith("None of the 2 configured models answered:")
    assert "gpt-4o is rate-limited (429)" in error.user_message
    assert "gpt-4o-mini had a server error (503)" in error.user_message
    assert "Try again in a minute." in error.user_message
    assert error.retryable  # both causes may pass: the job may run again later
    assert len(fake.requests) == 2  # max_retries=0: no retry, and no retry of the whole call


def test_rate_limit_after_sdk_retries_is_a_clear_sentence(fake: FakeOpenAI, make_chat: MakeChat) -> None:
    fake.default = Status(429, headers={"retry-after-ms": "1"})

    error = failure_of(make_chat("gpt-4o-mini", max_retries=2))

    assert error.user_message == "The model (gpt-4o-mini) is rate-limited (429). Try again in a minute."
    assert len(fake.requests) == 3
    assert isinstance(error.__cause__, Exception)


def test_client_timeout_says_it_timed_out(fake: FakeOpenAI, make_chat: MakeChat) -> None:
    fake.script(Delay(3.0, "too late"))
    started = time.monotonic()

    error = failure_of(make_chat("gpt-4o", timeout=0.5))

    assert error.user_message.startswith("The model (gpt-4o) did not answer within 0.5 s.")
    assert not error.retryable  # another job would wait just as long, leaving the thread stuck
    assert time.monotonic() - started < 2.0


def test_bad_credentials_are_named() -> None:
    with FakeOpenAI(api_key="right-key", default="unreachable") as strict:
        chat = OpenAIChat([ModelConfig("gpt-4o", strict.base_url, "wrong-key")], max_retries=0)
        with chat:
            error = failure_of(chat)

    assert "rejected the API key (401)" in error.user_message
    assert "OPENAI_API_KEY" in error.user_message
    assert not error.retryable


def test_unreachable_server_is_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the call: nothing listens there
    with OpenAIChat([ModelConfig("gpt-4o", f"http://127.0.0.1:{port}/v1")], max_retries=0) as chat:
        error = failure_of(chat)

    assert error.user_message.startswith("The model (gpt-4o) could not be reached.")
    assert error.retryable


@pytest.mark.parametrize(
    "reply",
    [
        Garbage("this is not JSON {"),
        Garbage('{"unexpected": "shape"}'),
        Garbage("[]"),
        Status(200, {"id": "x", "object": "chat.completion", "choices": []}),
    ],
    ids=["not-json", "wrong-object", "json-list", "no-choices"],
)
def test_unreadable_reply_is_an_llm_error(fake: FakeOpenAI, make_chat: MakeChat, reply: Reply) -> None:
    fake.script(reply)

    error = failure_of(make_chat("gpt-4o"))

    assert error.user_message == "The model (gpt-4o) sent a reply that could not be read."


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "   \n",
        Status(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": None}}]}),
    ],
    ids=["empty", "blank", "null-content"],
)
def test_empty_reply_is_an_llm_error(fake: FakeOpenAI, make_chat: MakeChat, reply: Reply) -> None:
    fake.script(reply)

    error = failure_of(make_chat("gpt-4o"))

    assert error.user_message == "The model (gpt-4o) sent an empty reply."


def test_empty_reply_from_first_model_falls_back(fake: FakeOpenAI, make_chat: MakeChat) -> None:
    fake.script("", "something")

    assert make_chat("a", "b").complete(QUESTION).content == "something"


def test_speaker_names_are_sanitised_for_the_api(fake: FakeOpenAI, make_chat: MakeChat) -> None:
    fake.script("ok")
    names = ["user_proxy", "Ana María", "bob smith!", "🤖", "x" * 80, None]
    messages = [ChatMessage(role="user", content=f"m{i}", name=name) for i, name in enumerate(names)]

    make_chat("gpt-4o").complete(messages)

    sent = [message.get("name") for message in fake.requests[0]["messages"]]
    assert sent == ["user_proxy", "Ana_Maria", "bob_smith", None, "x" * 64, None]


def test_from_settings_tries_each_agentbot_model_in_order(
    fake: FakeOpenAI, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("AGENTBOT_MODEL", "a,b")
    clean_env.setenv("OPENAI_BASE_URL", fake.base_url)
    clean_env.setenv("OPENAI_API_KEY", "env-key")
    fake.script(Status(500), "from b")

    with OpenAIChat.from_settings(load_settings()) as chat:
        completion = chat.complete(QUESTION)

    assert completion.model == "b"
    assert [request["model"] for request in fake.requests] == ["a", "b"]
    assert {headers["authorization"] for headers in fake.request_headers} == {"Bearer env-key"}


def test_from_settings_reads_a_config_list_with_prices(
    fake: FakeOpenAI, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config_list = tmp_path / "OAI_CONFIG_LIST.json"
    entries = [
        {"model": "first", "base_url": fake.base_url, "api_key": "k1", "price": [1.0, 2.0]},
        {"model": "second", "base_url": fake.base_url, "api_key": "k2", "tags": ["ignored"]},
    ]
    config_list.write_text(json.dumps(entries))
    clean_env.setenv("AGENTBOT_CONFIG_LIST", str(config_list))
    fake.script("one two three")

    with OpenAIChat.from_settings(load_settings()) as chat:
        completion = chat.complete(QUESTION)

    assert [config.model for config in chat.configs] == ["first", "second"]
    assert completion.cost_usd == pytest.approx((10 * 1.0 + 3 * 2.0) / 1000)
    assert fake.request_headers[0]["authorization"] == "Bearer k1"


def test_azure_entry_calls_the_deployment_route_with_api_version_and_api_key_header(
    clean_env: pytest.MonkeyPatch,
) -> None:
    entry = {
        "model": "gpt-4o",
        "api_type": "azure",
        "api_version": "2024-06-01",
        "api_key": "azure-key",
        "price": [0.0025, 0.01],
    }
    with FakeOpenAI(api_key="azure-key") as azure:
        entry["base_url"] = azure.base_url.removesuffix("/v1")  # the resource endpoint, no path
        clean_env.setenv("AGENTBOT_CONFIG_LIST", json.dumps([entry]))
        azure.script("from azure")
        with OpenAIChat.from_settings(load_settings()) as chat:
            completion = chat.complete(QUESTION)

    assert completion.content == "from azure" and completion.cost_usd == pytest.approx(
        (10 * 0.0025 + 2 * 0.01) / 1000
    )
    assert azure.paths == ["/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01"]
    headers = azure.request_headers[0]
    assert headers["api-key"] == "azure-key" and "authorization" not in headers


def test_inline_oai_config_list_filtered_by_tags_picks_the_tagged_model(
    fake: FakeOpenAI, clean_env: pytest.MonkeyPatch
) -> None:
    entries = [
        {"model": "big", "base_url": fake.base_url, "api_key": "k1", "tags": ["gpt4"], "price": [1, 1]},
        {"model": "small", "base_url": fake.base_url, "api_key": "k2", "tags": ["fast"], "price": [0, 0]},
    ]
    clean_env.setenv("OAI_CONFIG_LIST", json.dumps(entries))
    clean_env.setenv("AGENTBOT_CONFIG_TAGS", "fast")
    fake.script("quick")

    with OpenAIChat.from_settings(load_settings()) as chat:
        assert chat.complete(QUESTION).content == "quick"

    assert [config.model for config in chat.configs] == ["small"]
    assert [request["model"] for request in fake.requests] == ["small"]
    assert fake.request_headers[0]["authorization"] == "Bearer k2"


def test_reply_cut_at_the_length_limit_is_marked_truncated(fake: FakeOpenAI, make_chat: MakeChat) -> None:
    fake.script(Cut("The first half of"), "A whole answer.")
    chat = make_chat("gpt-4o-mini")
    cut, whole = chat.complete(QUESTION), chat.complete(QUESTION)
    assert cut.truncated and cut.content == "The first half of"
    assert not whole.truncated


def test_unreadable_config_list_is_a_config_error(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config_list = tmp_path / "list.json"
    config_list.write_text('{"model": "not a list"}')
    clean_env.setenv("AGENTBOT_CONFIG_LIST", str(config_list))

    with pytest.raises(ConfigError, match="AGENTBOT_CONFIG_LIST"):
        OpenAIChat.from_settings(load_settings())


def test_missing_key_for_openai_itself_fails_at_construction(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        OpenAIChat.from_settings(load_settings())


def test_custom_server_needs_no_key(fake: FakeOpenAI, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_BASE_URL", fake.base_url)
    clean_env.setenv("AGENTBOT_MODEL", "llama3.1")
    fake.script("hello from ollama")

    with OpenAIChat.from_settings(load_settings()) as chat:
        assert chat.complete(QUESTION).content == "hello from ollama"

    assert fake.request_headers[0]["authorization"] == "Bearer not-needed"


@pytest.mark.parametrize(
    ("model", "per_1k"),
    [
        ("gpt-4o", (0.0025, 0.01)),
        ("gpt-4o-2024-08-06", (0.0025, 0.01)),
        ("gpt-4o-mini-2024-07-18", (0.00015, 0.0006)),
        ("gpt-4.1-nano", (0.0001, 0.0004)),
        ("o4-mini", (0.0011, 0.0044)),
        ("llama3.1", None),
    ],
)
def test_built_in_prices_cover_snapshots_of_known_models(
    model: str, per_1k: tuple[float, float] | None
) -> None:
    assert price_per_1k(ModelConfig(model)) == (None if per_1k is None else pytest.approx(per_1k))


# ---------------------------------------------------------------- an agent's own model


def test_named_model_from_the_list_is_tried_first(fake: FakeOpenAI, make_chat: MakeChat) -> None:
    fake.script("from the named model")
    completion = make_chat("gpt-4o-mini", "gpt-4o").complete(QUESTION, model="gpt-4o")
    assert completion.model == "gpt-4o"
    assert [r["model"] for r in fake.requests] == ["gpt-4o"]


def test_named_model_falls_back_to_the_list_in_order(fake: FakeOpenAI, make_chat: MakeChat) -> None:
    fake.script(Status(500), Status(500), "third time")
    completion = make_chat("a", "b", "c").complete(QUESTION, model="b")
    assert completion.model == "c"
    assert [r["model"] for r in fake.requests] == ["b", "a", "c"]


def test_named_model_missing_from_the_list_uses_the_first_server(
    fake: FakeOpenAI, make_chat: MakeChat
) -> None:
    fake.script(Status(404), "the list answers")
    chat = make_chat("gpt-4o-mini")
    completion = chat.complete(QUESTION, model="llama3.1:8b")
    assert completion.model == "gpt-4o-mini"
    assert [r["model"] for r in fake.requests] == ["llama3.1:8b", "gpt-4o-mini"]
    assert fake.request_headers[0]["authorization"] == "Bearer test-key"


# ---------------------------------------------------------------- streaming


def streamed(chat: OpenAIChat, model: str | None = None) -> tuple[list[str], Completion]:
    seen: list[str] = []
    return seen, chat.stream(QUESTION, on_text=seen.append, model=model)


def test_streamed_reply_arrives_in_pieces_with_usage_at_the_end(
    fake: FakeOpenAI, make_chat: MakeChat
) -> None:
    fake.script("Here is the code:\n```python\nprint(1)\n```")

    seen, completion = streamed(make_chat("gpt-4o-mini"))

    assert completion.content == "Here is the code:\n```python\nprint(1)\n```"
    assert len(seen) > 3 and seen[-1] == completion.content
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))
    assert (completion.prompt_tokens, completion.completion_tokens) == (10, 7)  # words, in the fake
    assert completion.cost_usd is not None and completion.cost_usd > 0
    assert fake.requests[0]["stream"] is True
    assert fake.requests[0]["stream_options"] == {"include_usage": True}


def test_streamed_reply_cut_at_the_length_limit_is_marked_truncated(
    fake: FakeOpenAI, make_chat: MakeChat
) -> None:
    fake.script(Cut("The first half of"))
    _, completion = streamed(make_chat("gpt-4o-mini"))
    assert completion.truncated and completion.content == "The first half of"


def test_stream_broken_mid_reply_starts_over_with_the_next_model(
    fake: FakeOpenAI, make_chat: MakeChat
) -> None:
    fake.script(Drop("This reply will not finish"), "The second model answers.")

    seen, completion = streamed(make_chat("a", "b"))

    assert completion.content == "The second model answers." and completion.model == "b"
    restart = next(i for i, text in enumerate(seen) if not text.startswith("This"))
    assert seen[restart - 1].startswith("This reply") and seen[-1] == completion.content


def test_stream_broken_mid_reply_by_the_only_model_is_a_retryable_error(
    fake: FakeOpenAI, make_chat: MakeChat
) -> None:
    fake.script(Drop("This reply will not finish"))
    with pytest.raises(LLMError) as caught:
        streamed(make_chat("gpt-4o-mini"))
    assert caught.value.retryable
    assert "stopped answering mid-reply" in caught.value.user_message


def test_stream_refused_before_it_starts_falls_over_like_complete(
    fake: FakeOpenAI, make_chat: MakeChat
) -> None:
    fake.script(Status(500), "From the second model.")
    seen, completion = streamed(make_chat("a", "b"))
    assert completion.content == "From the second model." and seen[-1] == completion.content


def test_azure_deployment_streams_on_its_route(fake: FakeOpenAI) -> None:
    config = ModelConfig(
        model="my-deployment",
        base_url=fake.base_url.removesuffix("/v1"),
        api_key="az",
        api_type="azure",
        api_version="2024-06-01",
    )
    fake.script("Streamed from Azure.")
    with OpenAIChat([config], max_retries=0) as chat:
        seen, completion = streamed(chat)
    assert completion.content == "Streamed from Azure." and len(seen) == 3
    assert fake.paths[0].startswith("/openai/deployments/my-deployment/chat/completions?api-version=")
