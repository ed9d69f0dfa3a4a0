"""`agentbot chat` end to end: the real command, a scripted model server, the local executor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fakes.openai_server import Cut, FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
CHART = """```python
# filename: chart.py
import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [1, 4, 9])
plt.title("NVDA vs TSLA (sample)")
plt.show()
print("plotted")
```"""


def chat(tmp_path: Path, base_url: str, stdin: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AGENTBOT_", "OPENAI_", "OAI_", "REDIS_URL"))
    }
    environ.update(
        OPENAI_BASE_URL=base_url, OPENAI_API_KEY="test", AGENTBOT_EXECUTOR="local",
        AGENTBOT_WORKDIR=str(tmp_path / "ws"), PYTHONPATH=str(ROOT), **env,
    )  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "agentbot", "chat", "Plot a chart of NVDA and TESLA stock price change YTD"],
        input=stdin, capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip


def test_chat_approves_runs_and_reaches_terminate(tmp_path: Path) -> None:
    with FakeOpenAI() as llm:
        llm.script(CHART, "The chart is saved.\nTERMINATE")
        done = chat(tmp_path, llm.base_url, stdin="y\n\n")
    assert done.returncode == 0, done.stderr
    assert "exitcode: 0 (execution succeeded)\nCode output: plotted" in done.stdout
    assert "TERMINATE" in done.stdout
    assert "Conversation ended" in done.stdout
    charts = list((tmp_path / "agentbot-output").glob("*.png"))
    assert charts and charts[0].read_bytes().startswith(b"\x89PNG")
    # the model saw the run result in AutoGen's words
    assert llm.requests[1]["messages"][-1]["content"].startswith("exitcode: 0 (execution succeeded)")


def test_chat_takes_feedback_instead_of_running(tmp_path: Path) -> None:
    with FakeOpenAI() as llm:
        llm.script("```python\nprint('price')\n```", "```python\nprint('% change')\n```", "Done.\nTERMINATE")
        done = chat(tmp_path, llm.base_url, stdin="No, plot % change!\n\n\n")
    assert done.returncode == 0, done.stderr
    assert "Code output: % change" in done.stdout
    assert "Code output: price" not in done.stdout
    assert llm.requests[1]["messages"][-1]["content"] == "No, plot % change!"


def test_bad_setting_fails_at_start_with_one_line(tmp_path: Path) -> None:
    with FakeOpenAI() as llm:
        done = chat(tmp_path, llm.base_url, stdin="", AGENTBOT_HUMAN_INPUT_MODE="sometimes")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "agentbot: invalid setting AGENTBOT_HUMAN_INPUT_MODE: "
        "Input should be 'ALWAYS', 'TERMINATE' or 'NEVER' (got 'SOMETIMES')"
    ]


def test_malformed_inline_config_list_is_one_line_that_never_shows_the_key(tmp_path: Path) -> None:
    secret = "sk-never-print-me-42"
    broken = f'[{{"model": "gpt-4o", "api_key": "{secret}", "price": [1, "x"]}}]'
    done = chat(tmp_path, "http://127.0.0.1:9/v1", stdin="", OAI_CONFIG_LIST=broken)
    assert done.returncode == 2
    assert secret not in done.stderr + done.stdout and "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("agentbot:")]
    assert line.startswith("agentbot: AGENTBOT_CONFIG_LIST (inline JSON): entry 1: price.1: Input should be")


def test_cut_off_reply_and_unknown_cost_are_said(tmp_path: Path) -> None:
    with FakeOpenAI() as llm:
        llm.script(Cut("Here is the first half of"), "Done.\nTERMINATE")
        done = chat(tmp_path, llm.base_url, stdin="go on\nexit\n", AGENTBOT_MODEL="llama3.1")
    assert done.returncode == 0, done.stderr
    assert "This reply was cut off: the model (llama3.1) reached its output length limit" in done.stdout
    assert "no price known for llama3.1" in done.stderr
    assert "cost unknown (no price for this model)" in done.stdout
