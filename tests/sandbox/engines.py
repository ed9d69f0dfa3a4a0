"""A second real Docker engine on this machine, for tests that need two engines (`second_engine`).

`scripts/docker-engine-2` runs the machine's dockerd a second time, with its own socket, data root, exec
root and network namespace, and gives it the sandbox image of the first engine (same image ID). Loading
the image is paid once per machine: the data root outlives the engine. Like every Docker test, this
skips on a laptop without what it needs (dockerd, root or password-less sudo, the first engine and its
image) and fails under CI.

At the session's end the engine is stopped if this session started it (about a second, after every
test: nothing else waits for it, and no idle dockerd and containerd stay behind on a shared machine);
one that was already running (started by hand, or by CI ahead of the tests) is left running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from agentbot.sandbox.docker import ROLE_LABEL
from tests.conftest import require
from tests.sandbox.docker_fixtures import IMAGE, require_docker

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "docker-engine-2"
START_SECONDS = 90.0  # the script waits 60 s for dockerd to answer
LOAD_SECONDS = 600.0  # a docker save | docker load of the sandbox image (seconds here, minutes elsewhere)
STOP_SECONDS = 60.0  # SIGTERM, 30 s for dockerd to stop its containers, then SIGKILL


def engine_script(*args: str, timeout: float) -> str:
    """Run scripts/docker-engine-2 with `args`; its stdout, or the test fails with its stderr."""
    done = subprocess.run(
        [str(SCRIPT), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/docker-engine-2 {' '.join(args)} failed:\n{done.stderr}", pytrace=False)
    return done.stdout.strip()


@dataclass
class SecondEngine:
    """The second engine: its URL, and the hands that stop, kill and restart it (image and data kept)."""

    url: str

    def start(self) -> None:
        """Start it again (after `stop` or `kill`); returns once it answers."""
        engine_script("start", timeout=START_SECONDS)

    def stop(self) -> None:
        """Stop it as an operator would (SIGTERM, dockerd stops its containers)."""
        engine_script("stop", timeout=STOP_SECONDS)

    def kill(self) -> None:
        """SIGKILL the dockerd at once: an engine dying under its clients."""
        engine_script("kill", timeout=STOP_SECONDS)

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=30)


def _may_run_engines() -> bool:
    if os.geteuid() == 0:
        return True
    sudo = shutil.which("sudo")
    if sudo is None:
        return False
    return subprocess.run([sudo, "-n", "true"], capture_output=True, check=False).returncode == 0


def remove_left_behind(engine: SecondEngine) -> None:
    """Remove the agentbot containers and volumes (label `agentbot.role`) the tests left on the engine."""
    client = engine.client()
    try:
        for info in client.api.containers(all=True, filters={"label": ROLE_LABEL}):
            with contextlib.suppress(docker.errors.NotFound):  # auto-removed meanwhile
                client.api.remove_container(info["Id"], force=True, v=True)
        for volume in client.api.volumes(filters={"label": ROLE_LABEL}).get("Volumes") or []:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_volume(volume["Name"], force=True)
    finally:
        client.close()


@pytest.fixture(scope="session")
def second_engine() -> Iterator[SecondEngine]:
    """A second engine with the sandbox image, for the session (see the module docstring)."""
    require_docker()  # the first engine and the image to copy
    require(shutil.which("dockerd") is not None, "dockerd (docker.io) for a second engine")
    require(_may_run_engines(), "root or password-less sudo, to start a second dockerd")
    was_running = subprocess.run([str(SCRIPT), "status"], capture_output=True, check=False).returncode == 0
    engine = SecondEngine(url=engine_script("start", timeout=START_SECONDS))
    engine_script("load", IMAGE, timeout=LOAD_SECONDS)
    yield engine
    engine.start()  # a test may have left it stopped or killed; no-op when it runs
    remove_left_behind(engine)
    if not was_running:
        engine.stop()
