"""The Docker executor on a second real engine: its containers land there and not on the first, an
engine killed under it is a prompt `SandboxError`, and once the engine is back the executor runs again.
"""

from __future__ import annotations

import contextlib
import time
import uuid

import pytest

from agentbot.conversation.code import CodeBlock
from agentbot.errors import EngineDownError, SandboxError
from agentbot.sandbox.docker import DockerExecutor
from tests.sandbox.docker_fixtures import IMAGE, dead_sockets, require_docker, sandbox_containers
from tests.sandbox.engines import SecondEngine

# The first session on a machine copies the image to the second engine inside the first test's time.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

PRINT_1 = [CodeBlock(code="print(1)", language="python")]
FAILS_WITHIN = 10.0  # seconds: a dead engine is an error at once, not after the client's 30 s timeout


def test_executor_on_second_engine_survives_its_death(second_engine: SecondEngine) -> None:
    first = require_docker()
    second_engine.start()  # a test before may have left it stopped (a no-op when it runs)
    second = second_engine.client()
    executor = DockerExecutor(base_url=second_engine.url, image=IMAGE, network="none", timeout=10.0)
    workspace = f"engine2-{uuid.uuid4().hex[:10]}"
    try:
        result = executor.run(workspace, PRINT_1)
        assert (result.exit_code, result.output.strip()) == (0, "1")
        assert sandbox_containers(second, workspace) == [f"agentbot-sbx-{workspace}"]
        assert sandbox_containers(first, workspace) == []
        executor.settle()  # its next supervisor is started in the background: not mid-call at the kill

        second_engine.kill()
        began = time.monotonic()
        with dead_sockets():
            try:
                executor.run(workspace, PRINT_1)
            except EngineDownError as exc:  # down, not a refused call: people may move on to another
                message = exc.user_message
            else:
                pytest.fail("no EngineDownError from a killed engine")
        failed_after = time.monotonic() - began
        print(f"run on a killed engine: SandboxError after {failed_after:.2f} s")
        assert "not reachable" in message
        assert failed_after < FAILS_WITHIN

        began = time.monotonic()
        second_engine.start()  # dockerd stops the containers the dead one left (10 s for a stubborn one)
        print(f"killed engine started again in {time.monotonic() - began:.2f} s")
        result = executor.run(workspace, PRINT_1)
        assert (result.exit_code, result.output.strip()) == (0, "1")
        assert sandbox_containers(second, workspace) == [f"agentbot-sbx-{workspace}"]
    finally:
        _remove_workspace(executor, workspace)
        second.close()
    assert sandbox_containers(first, workspace) == []


def _remove_workspace(executor: DockerExecutor, workspace: str) -> None:
    with contextlib.suppress(SandboxError):  # the engine is down (a failed assertion): the fixture cleans up
        executor.remove_workspace(workspace)
    executor.settle()
    executor.containers.client.close()  # the client the executor made for its base_url
