"""The `executor` fixture, parametrized over every `CodeExecutor` the contract suite must hold for.

To add an executor, add a factory to `FACTORIES`: it gets the test's request (for `tmp_path`,
finalizers, or `require(...)` to skip when its engine is missing) and the limits the test asks for.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from agentbot.conversation.ports import CodeExecutor
from agentbot.sandbox.local import LocalExecutor
from tests.sandbox.docker_fixtures import make_docker_executor


@dataclass(frozen=True)
class Limits:
    timeout: float = 30.0
    output_limit: int = 20_000
    artifact_limit: int = 1_000_000


def _local(request: pytest.FixtureRequest, limits: Limits) -> CodeExecutor:
    tmp_path = request.getfixturevalue("tmp_path")
    return LocalExecutor(
        tmp_path / "workspaces",
        timeout=limits.timeout,
        output_limit=limits.output_limit,
        artifact_limit=limits.artifact_limit,
    )


Factory = Callable[[pytest.FixtureRequest, Limits], CodeExecutor]
FACTORIES: dict[str, Factory] = {"docker": make_docker_executor, "local": _local}

MakeExecutor = Callable[[Limits], CodeExecutor]


@pytest.fixture(params=sorted(FACTORIES))
def make_executor(request: pytest.FixtureRequest) -> MakeExecutor:
    """Builds the executor under test with the given limits (tests that need a short timeout, say)."""
    factory = FACTORIES[request.param]
    return lambda limits: factory(request, limits)


@pytest.fixture
def executor(make_executor: MakeExecutor) -> CodeExecutor:
    return make_executor(Limits())


@pytest.fixture
def workspace(executor: CodeExecutor) -> Iterator[str]:
    """A fresh workspace name, removed after the test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    executor.remove_workspace(name)


@pytest.fixture
def other_workspace(executor: CodeExecutor) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    executor.remove_workspace(name)
