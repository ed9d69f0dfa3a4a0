"""The real CLI at start: each configuration or connection error is one line on stderr and exit code 2.

A service that is only unreachable now (Slack, the model server, the Docker engine) is a warning line
and the process runs (a worker with `--burst`, so it ends once the empty queue is worked). `agentbot
doctor` prints a table and fails on anything not ok. Every process here is real; Redis, the fake Slack
and the fake model server run on loopback, and "dead" ones are ports nothing listens on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import TOKEN, FakeSlack
from tests.sandbox.docker_fixtures import require_docker

pytestmark = pytest.mark.redis

_STRIPPED = ("AGENTBOT_", "SLACK_", "OPENAI_")


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def base_env(redis_url: str, slack: FakeSlack, llm: FakeOpenAI) -> dict[str, str]:
    """A working configuration: every test breaks one thing in it."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_STRIPPED) and name not in ("REDIS_URL", "PORT")
    }
    return {
        **inherited, "REDIS_URL": redis_url, "SLACK_API_URL": slack.api_url, "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": "secret", "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "test",
        "AGENTBOT_EXECUTOR": "none", "PORT": str(free_port()),
    }  # fmt: skip


def dead_url(scheme: str = "http", path: str = "") -> str:
    """A URL on loopback where nothing listens."""
    return f"{scheme}://127.0.0.1:{free_port()}{path}"


def agentbot(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentbot", *args],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The process failed at start with exactly one line on stderr (and no traceback); that line."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("command", "setting", "named"),
    [
        pytest.param("web", ("AGENTBOT_LOG_LEVEL", "loud"), "AGENTBOT_LOG_LEVEL", id="bad_log_level"),
        pytest.param("worker", ("AGENTBOT_SANDBOX_MEMORY", "lots"), "AGENTBOT_SANDBOX_MEMORY", id="bad_size"),
        pytest.param("web", ("REDIS_URL", "localhost:6379"), "REDIS_URL", id="malformed_redis_url"),
        pytest.param("worker", ("REDIS_URL", "redis://127.0.0.1:x/0"), "REDIS_URL", id="redis_bad_port"),
        pytest.param("web", ("REDIS_URL", dead_url("redis")), "REDIS_URL", id="web_redis_unreachable"),
        pytest.param("worker", ("REDIS_URL", dead_url("redis")), "REDIS_URL", id="worker_redis_unreachable"),
        pytest.param("web", ("SLACK_BOT_TOKEN", "xoxb-revoked"), "SLACK_BOT_TOKEN", id="web_bad_slack_token"),
        pytest.param("worker", ("SLACK_BOT_TOKEN", "xoxb-revoked"), "SLACK_BOT_TOKEN", id="worker_bad_token"),
        pytest.param("worker", ("SLACK_BOT_TOKEN", ""), "SLACK_BOT_TOKEN", id="worker_without_slack_token"),
        pytest.param("web", ("SLACK_SIGNING_SECRET", ""), "SLACK_SIGNING_SECRET", id="web_without_secret"),
        pytest.param("worker", ("AGENTBOT_CONFIG_LIST", "missing.json"), "missing.json", id="no_config_list"),
    ],
)  # fmt: skip
def test_a_bad_setting_or_dead_redis_is_one_line_and_exit_2(
    tmp_path: Path, base_env: dict[str, str], command: str, setting: tuple[str, str], named: str
) -> None:
    name, value = setting
    line = one_line_error(agentbot(tmp_path, {**base_env, name: value}, command))
    assert named in line
    assert line.startswith("agentbot: ")


def test_a_port_in_use_is_one_line(tmp_path: Path, base_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(agentbot(tmp_path, {**base_env, "PORT": str(port)}, "web"))
    assert f"PORT {port}" in line


@pytest.mark.parametrize(
    ("name", "value", "warned"),
    [
        pytest.param("SLACK_API_URL", dead_url(path="/api/"), "slack: Slack at 127.0.0.1", id="dead_slack"),
        pytest.param("OPENAI_BASE_URL", dead_url(path="/v1"), "model: 127.0.0.1", id="dead_model_server"),
    ],
)  # fmt: skip
def test_an_unreachable_service_is_a_warning_line_and_the_worker_runs(
    tmp_path: Path, base_env: dict[str, str], name: str, value: str, warned: str
) -> None:
    done = agentbot(tmp_path, {**base_env, name: value}, "worker", "--burst")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line and warned in line]
    assert len(warnings) == 1, done.stderr
    assert "not reachable" in warnings[0]


def test_missing_sandbox_image_is_one_line_and_exit_2(tmp_path: Path, base_env: dict[str, str]) -> None:
    require_docker()
    env = {**base_env, "AGENTBOT_EXECUTOR": "docker", "AGENTBOT_SANDBOX_IMAGE": "agentbot-no-such-image:0"}
    line = one_line_error(agentbot(tmp_path, env, "worker", "--burst"))
    assert "agentbot-no-such-image:0" in line
    assert "scripts/build-sandbox-image" in line


def test_an_unreachable_docker_engine_is_a_warning_and_the_worker_runs(
    tmp_path: Path, base_env: dict[str, str]
) -> None:
    env = {**base_env, "AGENTBOT_EXECUTOR": "docker", "DOCKER_HOST": dead_url("tcp")}
    done = agentbot(tmp_path, env, "worker", "--burst")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if "docker: the engine is not reachable" in line]
    assert len(warnings) == 1, done.stderr


def test_debug_log_level_shows_the_traceback(tmp_path: Path, base_env: dict[str, str]) -> None:
    env = {**base_env, "AGENTBOT_LOG_LEVEL": "DEBUG", "REDIS_URL": dead_url("redis")}
    done = agentbot(tmp_path, env, "worker")
    assert done.returncode == 2
    assert "agentbot: redis: 127.0.0.1" in done.stderr
    assert "Traceback" in done.stderr  # kept for whoever asks for DEBUG


# -- agentbot doctor -------------------------------------------------------------------------------


def test_doctor_all_ok(tmp_path: Path, base_env: dict[str, str]) -> None:
    done = agentbot(tmp_path, base_env, "doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[1]: line.split()[0] for line in done.stdout.splitlines()[1:]}
    assert rows == {"redis": "ok", "slack": "ok", "model": "ok", "docker": "skip"}


def test_doctor_against_dead_redis_and_dead_slack(tmp_path: Path, base_env: dict[str, str]) -> None:
    with FakeSlack() as gone:
        dead_slack = gone.api_url
    env = {**base_env, "REDIS_URL": dead_url("redis"), "SLACK_API_URL": dead_slack}
    done = agentbot(tmp_path, env, "doctor")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    rows = {line.split()[1]: line for line in done.stdout.splitlines()[1:]}
    assert rows["redis"].startswith("FAIL") and "not reachable" in rows["redis"]
    assert rows["slack"].startswith("warn") and "not reachable" in rows["slack"]
    assert rows["model"].startswith("ok")


def test_doctor_names_a_bad_slack_token(tmp_path: Path, base_env: dict[str, str]) -> None:
    done = agentbot(tmp_path, {**base_env, "SLACK_BOT_TOKEN": "xoxb-revoked"}, "doctor")
    assert done.returncode == 1
    slack_row = next(line for line in done.stdout.splitlines() if line.split()[1] == "slack")
    assert slack_row.startswith("FAIL") and "invalid_auth" in slack_row and "SLACK_BOT_TOKEN" in slack_row


def test_a_worker_whose_engines_are_all_down_says_so_in_one_line_and_runs(
    tmp_path: Path, base_env: dict[str, str]
) -> None:
    hosts = f"a={dead_url('tcp')}, b=unix:///nonexistent/agentbot-b.sock"
    env = {**base_env, "AGENTBOT_EXECUTOR": "docker", "AGENTBOT_DOCKER_HOSTS": hosts}
    done = agentbot(tmp_path, env, "worker", "--burst")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "docker" in line.lower()]
    assert len(lines) == 1, done.stderr
    assert "docker: no engine answers (a: " in lines[0] and "; b: " in lines[0]
    assert "agentbot-engine-a" in done.stderr and "agentbot-engine-b" in done.stderr  # it takes their steps


def test_a_worker_serving_no_engine_that_exists_stops_with_one_line(
    tmp_path: Path, base_env: dict[str, str]
) -> None:
    env = {
        **base_env, "AGENTBOT_EXECUTOR": "docker", "AGENTBOT_DOCKER_HOSTS": "a=unix:///a.sock,b=unix:///b.sock",
        "AGENTBOT_WORKER_ENGINES": "c",
    }  # fmt: skip
    line = one_line_error(agentbot(tmp_path, env, "worker", "--burst"))
    assert "AGENTBOT_WORKER_ENGINES" in line and "c: none is in AGENTBOT_DOCKER_HOSTS (a, b)" in line
