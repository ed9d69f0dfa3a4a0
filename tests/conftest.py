"""Shared fixtures: a private Redis server, and the rule that real services never skip under CI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import redis

# The second Docker engine (`second_engine`): one session fixture for every module that needs two engines.
pytest_plugins = ["tests.sandbox.engines"]


def require(available: bool, what: str) -> None:
    """Skip when `what` is missing on a laptop; fail when it is missing under CI (`CI` set)."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required when CI is set", pytrace=False)
    pytest.skip(f"{what} is not available")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis server for this test session: `REDIS_URL` if given, else a private `redis-server`."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    require(binary is not None, "redis-server")
    assert binary is not None
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="agentbot-redis-")
    options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir]
    proc = subprocess.Popen([binary, "--port", str(port), *options], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.02)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on a database flushed before and after the test (as rq's own tests do)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
