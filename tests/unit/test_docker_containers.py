"""The sandbox container's configuration and the helpers around it, built without an engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import docker
import pytest

from agentbot.sandbox.docker import parse_size
from agentbot.sandbox.docker.containers import (
    EXPIRES_LABEL,
    WRAPPER,
    ContainerOptions,
    check_slug,
    container_config,
    environment,
    expiry,
)


@pytest.fixture
def api() -> Iterator[docker.APIClient]:
    """A client that never connects: with its API version given, `create_host_config` is pure."""
    client = docker.APIClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    yield client
    client.close()


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512m", 512 * 1024**2),
        ("1g", 1024**3),
        ("1.5k", 1536),
        ("100", 100),
        (" 2 MB ", 2 * 1024**2),
        ("7b", 7),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "m", "1t", "-1m", "1 g b"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize("workspace", ["", "a/b", "a b", "..", "x" * 129])
def test_workspace_must_be_a_slug(workspace: str) -> None:
    with pytest.raises(ValueError, match="slug"):
        check_slug(workspace)


@pytest.mark.parametrize(
    ("labels", "when"),
    [({EXPIRES_LABEL: "1700000000"}, 1700000000.0), ({}, 0.0), ({EXPIRES_LABEL: "soon"}, 0.0)],
)
def test_expiry_from_labels(labels: dict[str, str], when: float) -> None:
    assert expiry(labels) == when


def test_container_is_hardened(api: docker.APIClient) -> None:
    options = ContainerOptions(memory=parse_size("512m"), disk=parse_size("256m"), cpus=2.0, pids=64)
    config = container_config(api, options, "ws-1")
    host: dict[str, Any] = config["host_config"]
    assert config["name"] == "agentbot-sbx-ws-1"
    assert config["user"] == "65534:65534"
    assert config["network_disabled"] is True
    assert (host["NetworkMode"], host["ReadonlyRootfs"], host["CapDrop"]) == ("none", True, ["ALL"])
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert (host["Init"], host["AutoRemove"], host["PidsLimit"], host["NanoCpus"]) == (
        True,
        True,
        64,
        2 * 10**9,
    )
    assert host["Memory"] == (512 + 256 + 64) * 1024**2  # tmpfs pages count against the memory cgroup
    assert host["Binds"] == ["agentbot-ws-ws-1:/keep:rw"]
    assert "size=268435456,uid=1000" in host["Tmpfs"]["/workspace"]
    # the broker reads runs from stdin, kept open between attaches; the code's output is never logged
    assert config["stdin_open"] is True and config["detach"] is True
    assert host["LogConfig"]["Type"] == "none"


def test_environment_is_built_from_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    env = environment(2.7)
    assert "OPENAI_API_KEY" not in env
    assert (env["OMP_NUM_THREADS"], env["OPENBLAS_NUM_THREADS"], env["HOME"]) == ("2", "2", "/tmp")
    assert environment(0.5)["MKL_NUM_THREADS"] == "1"


def test_wrapper_ships_with_the_package() -> None:
    assert WRAPPER.startswith("#!/usr/bin/env bash\n")
    assert WRAPPER.rstrip().endswith('"$@"')
