"""Fixtures of the end-to-end suite: a `Stack` factory, and the executor every stack runs code with.

The executor is the Docker sandbox by default (the product's default). Without an engine or the image,
the Docker tests skip on a laptop and fail under `CI`, like every Docker test. `AGENTBOT_E2E_EXECUTOR=local`
runs the suite with the local executor instead (development machines without Docker).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import require
from tests.e2e.harness import Stack

MakeStack = Callable[..., Stack]


def require_executor(executor: str) -> None:
    """Skip (laptop) or fail (CI) when the executor's engine is missing."""
    require(shutil.which("redis-server") is not None, "redis-server")
    if executor == "docker":
        from tests.sandbox.docker_fixtures import require_docker

        require_docker()


@pytest.fixture
def executor() -> str:
    return os.environ.get("AGENTBOT_E2E_EXECUTOR", "docker")


@pytest.fixture
def make_stack(executor: str) -> Iterator[MakeStack]:
    """Start stacks (`make_stack(script, workers=1, env={...})`); every one is stopped after the test."""
    started: list[Stack] = []

    def make(script: dict[str, Any], **options: Any) -> Stack:
        options.setdefault("executor", executor)
        require_executor(options["executor"])
        stack = Stack(script, **options)
        started.append(stack)
        return stack.start()

    yield make
    for stack in reversed(started):
        stack.close()
