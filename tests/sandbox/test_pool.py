"""The warm pool on the real engine: a new conversation's first run takes a pre-started, hardened
container, never one another conversation has; the pool is refilled in the background; workspaces of
claimed containers are saved, restored and removed like any other.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import docker
import pytest

from agentbot.conversation.code import CodeBlock, CodeResult
from agentbot.sandbox.docker import DockerExecutor
from agentbot.sandbox.docker.containers import POOL_PREFIX, workspace_of
from tests.sandbox.docker_fixtures import IMAGE, require_docker, sandbox_containers

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return require_docker()


@pytest.fixture
def executor(client: docker.DockerClient) -> Iterator[DockerExecutor]:
    executor = DockerExecutor(image=IMAGE, timeout=10.0, pool=1, client=client)
    yield executor
    executor.settle()
    for info in executor.containers.pool(None):
        executor.containers.remove_workspace(workspace_of(info))


@pytest.fixture
def workspaces(executor: DockerExecutor, client: docker.DockerClient) -> Iterator[list[str]]:
    names = [f"pooled-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    yield names
    for name in names:
        executor.remove_workspace(name)
        assert sandbox_containers(client, name) == []


def run(executor: DockerExecutor, workspace: str, code: str) -> CodeResult:
    return executor.run(workspace, [CodeBlock(code=code, language="python")])


def pool_ids(executor: DockerExecutor) -> list[str]:
    return [str(info["Id"]) for info in executor.containers.pool(None)]


def filled(executor: DockerExecutor) -> list[str]:
    executor.settle()
    executor.housekeeping()
    return pool_ids(executor)


def test_a_conversation_named_like_a_pool_container_is_not_taken_for_one(
    executor: DockerExecutor, client: docker.DockerClient
) -> None:
    name = f"{POOL_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        run(executor, name, "print(1)")
        executor.settle()
        assert f"agentbot-sbx-{name}" not in [info["Names"][0][1:] for info in executor.containers.pool(None)]
    finally:
        executor.remove_workspace(name)
    assert sandbox_containers(client, name) == []


def test_a_new_conversation_claims_a_warm_pre_imported_container_under_its_own_name(
    executor: DockerExecutor, workspaces: list[str], client: docker.DockerClient
) -> None:
    [ready] = filled(executor)
    result = run(executor, workspaces[0], "import sys; print('pandas' in sys.modules)")
    assert result.output.strip() == "True"
    info = client.api.inspect_container(f"agentbot-sbx-{workspaces[0]}")
    assert info["Id"] == ready
    assert info["HostConfig"]["CapDrop"] == ["ALL"]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["Config"]["User"] == "65534:65534"


def test_pool_containers_are_never_shared_and_are_replaced_in_the_background(
    executor: DockerExecutor, workspaces: list[str], client: docker.DockerClient
) -> None:
    [first] = filled(executor)
    run(executor, workspaces[0], "open('mine.txt', 'w').write('first')")
    executor.settle()  # the replacement starts after the run, not before its result
    [second] = pool_ids(executor)
    assert second != first
    result = run(executor, workspaces[1], "import os; print(os.path.exists('mine.txt'))")
    assert result.output.strip() == "False"
    ids = {client.api.inspect_container(f"agentbot-sbx-{name}")["Id"] for name in workspaces}
    assert ids == {first, second}


def test_a_conversation_seen_before_does_not_take_from_the_pool(
    executor: DockerExecutor, workspaces: list[str]
) -> None:
    filled(executor)
    run(executor, workspaces[0], "print(1)")
    containers = executor.containers
    info = containers.api.inspect_container(f"agentbot-sbx-{workspaces[0]}")
    containers.retire(info["Id"], workspaces[0], save=True)
    executor.settle()
    [refilled] = filled(executor)
    run(executor, workspaces[0], "print(2)")
    assert pool_ids(executor) == [refilled]


def test_a_claimed_containers_workspace_is_saved_restored_and_removed(
    executor: DockerExecutor, workspaces: list[str], client: docker.DockerClient
) -> None:
    filled(executor)
    run(executor, workspaces[0], "open('kept.txt', 'w').write('kept')")
    volume = executor.containers.volume_of(workspaces[0])
    assert volume.startswith(f"agentbot-ws-{POOL_PREFIX}")
    info = client.api.inspect_container(f"agentbot-sbx-{workspaces[0]}")
    executor.containers.retire(info["Id"], workspaces[0], save=True)
    assert run(executor, workspaces[0], "print(open('kept.txt').read())").output.strip() == "kept"
    assert workspaces[0] not in executor.containers.idle_workspaces(3600)
    executor.remove_workspace(workspaces[0])
    assert client.volumes.list(filters={"name": volume}) == []


def test_housekeeping_retires_expired_pool_containers_with_their_volumes(client: docker.DockerClient) -> None:
    executor = DockerExecutor(image=IMAGE, timeout=1.0, warm_seconds=4.0, pool=1, client=client)
    [old] = filled(executor)
    volume = f"agentbot-ws-{workspace_of(executor.containers.pool(None)[0])}"
    time.sleep(4.5)
    try:
        [new] = filled(executor)
        assert new != old
        assert client.volumes.list(filters={"name": volume}) == []
    finally:
        for info in executor.containers.pool(None):
            executor.containers.remove_workspace(workspace_of(info))
