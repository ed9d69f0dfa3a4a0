"""Docker pieces for the sandbox tests: is an engine there, is the image built, and a factory for the suite.

Every Docker test goes through `require(...)`: it skips on a laptop without Docker and fails under CI.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import docker
import docker.errors
import pytest
import requests.exceptions

from agentbot.sandbox.docker import ROLE_LABEL, SANDBOX_ROLE, DockerExecutor
from tests.conftest import require

if TYPE_CHECKING:
    from tests.sandbox.conftest import Limits

# The image under test: scripts/build-sandbox-image's default, or AGENTBOT_SANDBOX_IMAGE (so that two
# checkouts on one engine, each with its own recipe, test their own image).
IMAGE = os.environ.get("AGENTBOT_SANDBOX_IMAGE") or "agentbot-sandbox:latest"


@contextlib.contextmanager
def dead_sockets() -> Iterator[None]:
    """For calls to an engine that is down: docker-py leaves the socket of a failed connect to the garbage
    collector (the error's traceback holds it), so its ResourceWarning is ignored and it is collected here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield
        gc.collect()


@functools.cache
def docker_client() -> docker.DockerClient | None:
    """A client for the local engine, or None when there is no engine to talk to."""
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return None
    return client


def image_present(client: docker.DockerClient) -> bool:
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        return False
    return True


def require_docker() -> docker.DockerClient:
    """The engine's client, after skipping (laptop) or failing (CI) when the engine or image is missing."""
    client = docker_client()
    require(client is not None, "a Docker engine")
    assert client is not None
    require(image_present(client), f"the sandbox image {IMAGE} (scripts/build-sandbox-image)")
    return client


def sandbox_containers(client: docker.DockerClient, workspace: str | None = None) -> list[str]:
    """Names of sandbox containers still on the engine (all of them, or one workspace's)."""
    # one list call, no inspect per container: containers of other tests may go in between
    listed = client.api.containers(all=True, filters={"label": [f"{ROLE_LABEL}={SANDBOX_ROLE}"]})
    names = [name.lstrip("/") for info in listed for name in info.get("Names") or []]
    if workspace is None:
        return names
    # by label, or by name: a claimed pool container keeps the labels of the pool
    labelled = {
        name.lstrip("/")
        for info in listed
        if (info.get("Labels") or {}).get("agentbot.workspace") == workspace
        for name in info.get("Names") or []
    }
    return [name for name in names if name in labelled or name == f"agentbot-sbx-{workspace}"]


def make_docker_executor(request: pytest.FixtureRequest, limits: Limits) -> DockerExecutor:
    """The contract suite's factory: a `DockerExecutor` with the test's limits on the local engine."""
    client = require_docker()
    return DockerExecutor(
        image=IMAGE,
        timeout=limits.timeout,
        output_limit=limits.output_limit,
        artifact_limit=limits.artifact_limit,
        client=client,
    )
