"""The workers' housekeeping on the real engine: an idle container is retired on time with no other
traffic, its workspace saved first.
"""

from __future__ import annotations

import time
import uuid

import pytest

from agentbot.conversation.code import CodeBlock
from agentbot.sandbox.docker import DockerExecutor
from agentbot.sandbox.docker.housekeeping import Housekeeper, interval
from tests.sandbox.docker_fixtures import IMAGE, require_docker, sandbox_containers

pytestmark = pytest.mark.docker

WARM_SECONDS = 10.0


@pytest.mark.parametrize(("warm", "every"), [(600.0, 15.0), (20.0, 2.0), (5.0, 1.0)])
def test_the_housekeeping_interval_is_a_tenth_of_the_warm_time_within_bounds(
    warm: float, every: float
) -> None:
    assert interval(warm) == every


def test_an_idle_container_is_retired_on_time_with_no_traffic_and_its_workspace_kept() -> None:
    client = require_docker()
    executor = DockerExecutor(image=IMAGE, timeout=3.0, warm_seconds=WARM_SECONDS, client=client)
    housekeeper = Housekeeper(
        DockerExecutor(image=IMAGE, timeout=3.0, warm_seconds=WARM_SECONDS, client=client)
    ).start()
    workspace = f"idle-{uuid.uuid4().hex[:10]}"
    try:
        started = time.monotonic()
        executor.run(workspace, [CodeBlock(code="open('kept.txt', 'w').write('kept')", language="python")])
        assert sandbox_containers(client, workspace) != []
        while sandbox_containers(client, workspace) and time.monotonic() - started < WARM_SECONDS + 20:
            time.sleep(0.5)
        gone_after = time.monotonic() - started
        assert sandbox_containers(client, workspace) == []
        assert gone_after < WARM_SECONDS + 1 + 2 * housekeeper.every + 5  # expiry, a round, the save
        result = executor.run(
            workspace, [CodeBlock(code="print(open('kept.txt').read())", language="python")]
        )
        assert result.output.strip() == "kept"
    finally:
        housekeeper.stop()
        executor.remove_workspace(workspace)
