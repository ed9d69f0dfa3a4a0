"""The fake OpenAI server keeps its promises: script parsing, fallbacks of the queue, the process mode."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_server import (
    NO_REPLY_MESSAGE,
    Delay,
    FakeOpenAI,
    Garbage,
    Rule,
    Script,
    Status,
    parse_script,
)

ROOT = Path(__file__).resolve().parents[2]


def post(base_url: str, content: str, model: str = "m") -> tuple[int, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_script_json_parses_every_reply_kind() -> None:
    data = {
        "replies": [
            "text",
            {"status": 429, "headers": {"retry-after-ms": "5"}},
            {"delay": 1, "then": "late"},
        ],
        "rules": [{"match": "exitcode: 0", "reply": {"garbage": "{"}}],
        "default": "fallback",
    }

    script = parse_script(data)

    assert script == Script(
        replies=("text", Status(429, None, {"retry-after-ms": "5"}), Delay(1.0, "late")),
        rules=(Rule("exitcode: 0", Garbage("{")),),
        default="fallback",
    )
    assert parse_script(["a", "b"]).replies == ("a", "b")


def test_queue_then_responder_then_500_when_nothing_is_scripted() -> None:
    with FakeOpenAI(responder=lambda body: f"echo {body['model']}") as fake:
        fake.script("first")
        assert post(fake.base_url, "hi")[1]["choices"][0]["message"]["content"] == "first"
        assert post(fake.base_url, "hi", model="x")[1]["choices"][0]["message"]["content"] == "echo x"
    with FakeOpenAI() as fake:
        status, body = post(fake.base_url, "hi")
        assert (status, body["error"]["message"]) == (500, NO_REPLY_MESSAGE)


def test_completion_has_the_wire_shape_and_word_count_usage() -> None:
    with FakeOpenAI(default="three word reply") as fake:
        status, body = post(fake.base_url, "one two", model="gpt-4o")

    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert fake.requests[0]["model"] == "gpt-4o"


def test_standalone_process_serves_a_script_with_rules(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "replies": ["```python\nprint(1)\n```"],
                "rules": [{"match": "exitcode: 0", "reply": "Done. TERMINATE"}],
            }
        )
    )
    record = tmp_path / "requests.jsonl"
    command = [
        sys.executable,
        "-m",
        "tests.fakes.openai_server",
        "--port",
        "0",
        "--script",
        str(script),
        "--record",
        str(record),
    ]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            ready, base_url = proc.stdout.readline().split()
            assert ready == "READY"
            assert "print(1)" in post(base_url, "Plot a chart")[1]["choices"][0]["message"]["content"]
            answer = post(base_url, "exitcode: 0 (execution succeeded)\nCode output: 1")[1]
            assert answer["choices"][0]["message"]["content"] == "Done. TERMINATE"
            assert post(base_url, "something else")[0] == 500
        finally:
            proc.terminate()
        assert proc.wait(timeout=10) == 0
    assert len(record.read_text().splitlines()) == 3


@pytest.mark.parametrize("path", ["/v1/models", "/models"])
def test_models_lists_the_configured_names(path: str) -> None:
    with FakeOpenAI(models=("a", "b")) as fake:
        url = fake.base_url.removesuffix("/v1") + path
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())

    assert [model["id"] for model in body["data"]] == ["a", "b"]
