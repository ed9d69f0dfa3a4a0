"""The child process that runs Python tools: JSON lines in on stdin, JSON lines out, one at a time.

The tool host starts it once and reuses it (importing operator code once, not per call); when a call
hangs past its timeout the host kills it and starts a new one. Whatever a tool prints goes to stderr:
stdout is the protocol's own channel, and a stray `print` must not corrupt it.

    {"op": "describe", "path": "pkg.mod:fn"}                       -> {"spec": {...}} | {"error": "..."}
    {"op": "call", "path": ..., "arguments": "{...}", "cap": N}    -> {"text": "...", "is_error": false}
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import IO, Any

from agentbot.tools import schema


def cap(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how long it was (as code output is capped)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n... (output truncated: {len(text):,} characters in all)"


class Runner:
    """Answers requests; keeps each function it imported."""

    def __init__(self) -> None:
        self._functions: dict[str, Callable[..., Any]] = {}

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        path = str(request.get("path", ""))
        try:
            function = self._function(path)
        except Exception as exc:  # an operator's module may fail to import in any way
            return {"error": f"cannot load {path}: {type(exc).__name__}: {exc}"}
        if request.get("op") == "describe":
            return {"spec": schema.spec(path, function).model_dump()}
        text, failed = schema.call(function, str(request.get("arguments", "{}")))
        return {"text": cap(text, int(request.get("cap", 64_000))), "is_error": failed}

    def _function(self, path: str) -> Callable[..., Any]:
        if path not in self._functions:
            self._functions[path] = schema.load(path)
        return self._functions[path]


def serve(requests: IO[str], replies: IO[str]) -> None:
    runner = Runner()
    for line in requests:
        if line.strip():
            replies.write(json.dumps(runner.answer(json.loads(line))) + "\n")
            replies.flush()


def main() -> None:
    if len(sys.argv) > 1:  # the worker's import path: its tools import as they would there
        sys.path[:0] = [entry for entry in json.loads(sys.argv[1]) if entry not in sys.path]
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # fd 1 (and `print`) now go to stderr; the replies keep their own copy of stdout
    sys.stdout = sys.stderr
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
