"""A real MCP server over stdio, built with the `mcp` SDK, for tests: `python -m tests.fakes.mcp_server`.

Tools: `add` (two integers), `echo`, `fail` (raises), `slow` (sleeps), `die` (the process exits
mid-call, as a crashed server would), `pid` (which process answers: tells a restarted server apart).
With `--calls FILE` each call appends its name to FILE, so a test can count how often a tool ran.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("agentbot-test-server")
_calls: Path | None = None


def _record(name: str) -> None:
    if _calls is not None:
        with _calls.open("a", encoding="utf-8") as out:
            out.write(name + "\n")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    _record("add")
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    _record("echo")
    return text


@server.tool()
def fail(reason: str = "on purpose") -> str:
    """Raise an error."""
    _record("fail")
    raise ValueError(reason)


@server.tool()
def slow(seconds: float) -> str:
    """Sleep, then say so."""
    _record("slow")
    time.sleep(seconds)
    return f"slept {seconds} s"


@server.tool()
def die() -> str:
    """End this server's process in the middle of the call."""
    _record("die")
    os._exit(3)


@server.tool()
def pid() -> int:
    """The process id of this server."""
    return os.getpid()


def main() -> int:
    global _calls  # noqa: PLW0603  # set once, before serving
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=Path)
    _calls = parser.parse_args().calls
    server.run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
