"""Python tools that misbehave, for the tool host's tests: they raise, hang, flood, print, count."""

from __future__ import annotations

import os
import time
from pathlib import Path


def boom(reason: str = "on purpose") -> str:
    """Raise an error."""
    raise RuntimeError(reason)


def hang(seconds: float = 3600) -> str:
    """Sleep far past any timeout."""
    time.sleep(seconds)
    return "woke up"


def huge(size: int = 10_000_000) -> str:
    """Return `size` characters (10 MB by default)."""
    return "x" * size


def garbage() -> object:
    """Return something that is not JSON."""
    return {1, 2, 3}


def chatty(text: str) -> str:
    """Print to stdout (the runner's protocol channel, were it not redirected) and return `text`."""
    print("noise on stdout")
    return text


def exits() -> str:
    """End the runner process mid-call."""
    os._exit(7)


def record(path: str, seconds: float = 0.0) -> int:
    """Append a line to `path` (so a test can count runs), sleep `seconds`, return the runner's pid."""
    with Path(path).open("a", encoding="utf-8") as out:
        out.write("ran\n")
    time.sleep(seconds)
    return os.getpid()


async def later(text: str) -> str:
    """An `async def` tool."""
    return text.upper()
