"""Tool-call round trip: a call through the tool host, against the same function called directly.

Run: `python -m bench.tools`. Side by side in one run: `summary_stats` (the analyst preset's Python
tool) called in this process, then through the `Toolbox` port as a work horse calls it (a Unix socket
to the worker's tool host, a pipe to its reused runner child, and back); an MCP tool (`add` of the test
server, a real `mcp` SDK stdio server) called through the port once the server is warm, against the same
addition done in-process; and, for scale, a fresh runner process per call (what reusing it saves).
Approval is excluded (a person's click is not overhead). Targets: ≤ 10 ms
added at p50 for a Python tool, ≤ 20 ms for a warm MCP stdio tool.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from agentbot.conversation.llm import ToolCall
from agentbot.conversation.tools import ToolSource
from agentbot.tools.client import ToolHost
from agentbot.tools.examples import summary_stats

CALLS = 300
NUMBERS = [3.0, 5.0, 8.0, 13.0, 21.0]
PYTHON = ToolSource(kind="python", name="agentbot.tools.examples:summary_stats")
MCP = ToolSource(kind="mcp", name="bench", command=sys.executable, args=("-m", "tests.fakes.mcp_server"))


def timed(call: Callable[[], object], count: int = CALLS) -> list[float]:
    """Milliseconds per call, after a few warm-up calls."""
    for _ in range(5):
        call()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def one_off(call: ToolCall) -> None:
    """What reusing the runner saves: a fresh interpreter per call (import, validate, call, exit)."""
    request = {"op": "call", "path": PYTHON.name, "arguments": call.arguments}
    subprocess.run(
        [sys.executable, "-m", "agentbot.tools.runner"],
        input=json.dumps(request) + "\n",
        capture_output=True,
        text=True,
        check=True,
    )


def row(name: str, times: list[float]) -> tuple[str, float, float]:
    cuts = statistics.quantiles(times, n=100)
    print(f"{name:<46} p50 {statistics.median(times):8.3f} ms   p95 {cuts[94]:8.3f} ms")
    return name, statistics.median(times), cuts[94]


def main() -> int:
    host = ToolHost(timeout=30, limit=64_000).start()
    try:
        python_call = ToolCall(id="b1", name="summary_stats", arguments=json.dumps({"numbers": NUMBERS}))
        add_call = ToolCall(id="b2", name="add", arguments=json.dumps({"a": 2, "b": 40}))
        started = time.perf_counter()
        host.describe([MCP])  # starts the MCP server: the warm-up is not what is measured
        print(
            f"MCP stdio server start (cold, once per worker): {(time.perf_counter() - started) * 1000:.0f} ms"
        )
        assert host.call(MCP, add_call).text == "42"
        direct = row("summary_stats, direct call", timed(lambda: summary_stats(NUMBERS)))
        python = row("summary_stats, through the tool host", timed(lambda: host.call(PYTHON, python_call)))
        fresh = row("summary_stats, a new process per call", timed(lambda: one_off(python_call), count=20))
        in_process = row("add, in-process", timed(lambda: 2 + 40))
        mcp = row("add, warm MCP stdio server via the tool host", timed(lambda: host.call(MCP, add_call)))
    finally:
        host.close()
    python_added = python[1] - direct[1]
    mcp_added = mcp[1] - in_process[1]
    print(f"\nadded per call, p50: Python tool {python_added:.2f} ms (target ≤ 10 ms)", end="; ")
    print(f"MCP stdio tool {mcp_added:.2f} ms (target ≤ 20 ms); a new process per call: {fresh[1]:.0f} ms")
    return 0 if python_added <= 10 and mcp_added <= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
