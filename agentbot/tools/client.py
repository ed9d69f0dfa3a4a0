"""The `Toolbox` port over the tool host: start the host once per worker, ask it over a Unix socket.

`ToolHost.start` runs `python -m agentbot.tools.host` with this process's import path and
environment (tools are operator code), and waits for its READY line. Forked work horses inherit the
`ToolHost` object and connect to the same socket: one connection per request, so nothing is shared
across a fork. The host's own failures never end a step: a call it cannot answer is an error result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentbot.conversation.llm import ToolCall, ToolSpec
from agentbot.conversation.tools import ToolOutcome, ToolSource
from agentbot.errors import ToolError
from agentbot.tools.host import READY

logger = logging.getLogger(__name__)

_START_TIMEOUT = 30.0
_DESCRIBE_GRACE = 40.0  # describing may start an MCP server (the host allows it its timeout + 30 s)
_CALL_GRACE = 10.0


class ToolHost:
    """A tool host process for this worker, started on first use (or by `start`), and its client."""

    def __init__(self, *, timeout: float, limit: int) -> None:
        self.timeout = timeout
        self.limit = limit
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = os.getpid()
        self._lock = threading.Lock()

    @property
    def socket_path(self) -> Path:
        assert self._dir is not None
        return self._dir / "host.sock"

    def start(self) -> ToolHost:
        """Start the host now (the worker's parent does, before forking horses); no-op when running."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return self
            self._dir = self._dir or Path(tempfile.mkdtemp(prefix="agentbot-tools-"))
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            self._process = self._spawn()
            self._owner = os.getpid()
        return self

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "agentbot.tools.host", "--socket", str(self.socket_path)]
        command += ["--timeout", str(self.timeout), "--limit", str(self.limit)]
        command += ["--path", json.dumps([entry for entry in sys.path if entry])]  # the worker's import path
        # The environment is inherited as it is: tools are operator code, configured like the worker.
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert process.stdout is not None
        ready = _read_line(process.stdout, _START_TIMEOUT)
        if ready.strip() != READY:
            process.kill()
            raise ToolError(
                f"the tool host did not start (said {ready!r})", user_message="The tools did not start."
            )
        return process

    def close(self) -> None:
        """Stop the host (closing its stdin ends it; MCP servers and the runner go with it)."""
        process, self._process = self._process, None
        if process is None or os.getpid() != self._owner:
            return  # a forked horse never stops its parent's host
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    # ------------------------------------------------------------ the Toolbox port

    def describe(self, sources: Sequence[ToolSource]) -> list[ToolSpec]:
        """The tools of `sources`; `ToolError` (in words for the thread) when they cannot be loaded."""
        request = {"op": "describe", "sources": [source.model_dump() for source in sources]}
        try:
            reply = self._ask(request, self.timeout + _DESCRIBE_GRACE)
        except (OSError, ValueError) as exc:
            raise ToolError(
                f"tool host: {exc}", user_message=f"The tools could not be loaded ({exc})."
            ) from exc
        if "error" in reply:
            raise ToolError(reply["error"], user_message=f"The tools could not be loaded: {reply['error']}")
        return [ToolSpec.model_validate(tool) for tool in reply.get("tools", [])]

    def call(self, source: ToolSource, call: ToolCall) -> ToolOutcome:
        """The call's result; anything that goes wrong on the way is the result's text."""
        request = {"op": "call", "source": source.model_dump(), "call": call.model_dump()}
        try:
            reply = self._ask(request, self.timeout + _CALL_GRACE)
        except (OSError, ValueError) as exc:
            logger.warning("tool host: call %s failed: %s", call.name, exc)
            return ToolOutcome(text=f"Error: the tool could not be called ({exc}).", is_error=True)
        return ToolOutcome(text=str(reply.get("text", "")), is_error=bool(reply.get("is_error", False)))

    def _ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self._process is None:
            self.start()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(self.socket_path))
            connection.sendall((json.dumps(request) + "\n").encode())
            chunks: list[bytes] = []
            while not (chunks and chunks[-1].endswith(b"\n")):
                chunk = connection.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("the tool host closed the connection without an answer")
                chunks.append(chunk)
        return dict(json.loads(b"".join(chunks)))


def _read_line(stream: Any, timeout: float) -> str:
    """One line from a child's stdout, or "" after `timeout` seconds (a host that never says READY)."""
    found: list[bytes] = []
    reader = threading.Thread(target=lambda: found.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return found[0].decode(errors="replace") if found else ""
