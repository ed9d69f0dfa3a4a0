"""The tool host as a worker starts it: Python tools in a reused child, MCP servers over stdio (real SDK)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator

import pytest

from agentbot.conversation.llm import ToolCall
from agentbot.conversation.tools import ToolSource
from agentbot.errors import ToolError
from agentbot.tools.client import ToolHost

TIMEOUT = 2.0
LIMIT = 64_000
SERVER = ToolSource(kind="mcp", name="fake", command=sys.executable, args=("-m", "tests.fakes.mcp_server"))


def python(name: str) -> ToolSource:
    return ToolSource(kind="python", name=f"tests.fakes.tools:{name}")


def call(name: str, **arguments: object) -> ToolCall:
    return ToolCall(id=f"c-{name}", name=name, arguments=json.dumps(arguments))


@pytest.fixture
def host() -> Iterator[ToolHost]:
    started = ToolHost(timeout=TIMEOUT, limit=LIMIT).start()
    yield started
    started.close()


def test_a_python_tool_is_described_from_its_signature_and_called(host: ToolHost) -> None:
    (spec,) = host.describe([ToolSource(kind="python", name="agentbot.tools.examples:summary_stats")])
    assert spec.name == "summary_stats" and spec.server == "python"
    assert spec.parameters["required"] == ["numbers"]
    assert spec.parameters["properties"]["numbers"]["description"] == "the values to summarize"
    source = ToolSource(kind="python", name="agentbot.tools.examples:summary_stats")
    outcome = host.call(source, call("summary_stats", numbers=[1, 2, 3, 4]))
    assert not outcome.is_error and json.loads(outcome.text)["median"] == 2.5


def test_a_tool_that_raises_is_an_error_result(host: ToolHost) -> None:
    outcome = host.call(python("boom"), call("boom", reason="disk full"))
    assert outcome.is_error and outcome.text == "Error: RuntimeError: disk full"


def test_wrong_arguments_are_answered_in_words(host: ToolHost) -> None:
    outcome = host.call(python("hang"), call("hang", seconds="soon"))
    assert outcome.is_error and "invalid arguments: seconds" in outcome.text


def test_a_tool_that_hangs_is_stopped_at_the_timeout_and_the_next_call_works(host: ToolHost) -> None:
    started = time.monotonic()
    outcome = host.call(python("hang"), call("hang"))
    assert outcome.is_error and f"did not return within {TIMEOUT:g} s" in outcome.text
    assert time.monotonic() - started < TIMEOUT + 3
    assert host.call(python("chatty"), call("chatty", text="still here")).text == "still here"


def test_a_ten_megabyte_result_is_capped(host: ToolHost) -> None:
    outcome = host.call(python("huge"), call("huge"))
    assert not outcome.is_error
    assert len(outcome.text) < LIMIT + 200
    assert outcome.text.endswith("(output truncated: 10,000,000 characters in all)")


def test_garbage_and_prints_do_not_break_the_protocol(host: ToolHost) -> None:
    assert host.call(python("garbage"), call("garbage")).text == '"{1, 2, 3}"'  # a set: JSON of its str
    assert host.call(python("chatty"), call("chatty", text="clean")).text == "clean"


def test_an_async_tool_is_awaited(host: ToolHost) -> None:
    assert host.call(python("later"), call("later", text="done")).text == "DONE"


def test_a_tool_that_kills_its_process_is_an_error_and_the_runner_comes_back(host: ToolHost) -> None:
    outcome = host.call(python("exits"), call("exits"))
    assert outcome.is_error and "exit code 7" in outcome.text
    assert host.call(python("chatty"), call("chatty", text="back")).text == "back"


def test_the_python_runner_is_reused_between_calls(host: ToolHost, tmp_path: object) -> None:
    log = f"{tmp_path}/runs"
    first = host.call(python("record"), call("record", path=log)).text
    second = host.call(python("record"), call("record", path=log)).text
    assert first == second  # the same child process answered both


def test_a_tool_that_does_not_import_is_a_tool_error(host: ToolHost) -> None:
    with pytest.raises(ToolError, match=r"cannot load tests\.fakes\.nothing:here"):
        host.describe([ToolSource(kind="python", name="tests.fakes.nothing:here")])


def test_an_mcp_servers_tools_are_described_and_called(host: ToolHost) -> None:
    specs = host.describe([SERVER.model_copy(update={"include": ("add", "echo")})])
    assert [(s.name, s.server) for s in specs] == [("add", "fake"), ("echo", "fake")]
    assert specs[0].parameters["required"] == ["a", "b"]
    assert host.call(SERVER, call("add", a=2, b=40)).text == "42"
    failed = host.call(SERVER, call("fail", reason="nope"))
    assert failed.is_error


def test_an_mcp_server_is_reused_across_calls(host: ToolHost) -> None:
    first = host.call(SERVER, call("pid")).text
    assert host.call(SERVER, call("pid")).text == first


def test_an_mcp_server_that_dies_is_reported_and_started_again(host: ToolHost) -> None:
    before = host.call(SERVER, call("pid")).text
    died = host.call(SERVER, call("die"))
    assert died.is_error and "the MCP server fake failed during the call" in died.text
    after = host.call(SERVER, call("pid"))
    assert not after.is_error and after.text != before


def test_an_mcp_server_that_cannot_start_is_a_tool_error(host: ToolHost) -> None:
    missing = ToolSource(kind="mcp", name="ghost", command="/nonexistent/mcp-server")
    with pytest.raises(ToolError, match="ghost did not start"):
        host.describe([missing])
    assert host.call(missing, call("x")).is_error
