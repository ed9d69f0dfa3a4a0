"""What the local executor adds to the contract: process-group cleanup, settings, and the none executor."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from agentbot.conversation.code import CodeBlock
from agentbot.sandbox.local import LocalExecutor
from agentbot.sandbox.none import DISABLED_MESSAGE, NoExecutor
from agentbot.settings import load_settings


def _executor(tmp_path: Path, timeout: float = 30.0) -> LocalExecutor:
    return LocalExecutor(tmp_path, timeout=timeout, output_limit=10_000, artifact_limit=1_000_000)


def _run(executor: LocalExecutor, code: str) -> str:
    result = executor.run("ws", [CodeBlock(code=code, language="python")])
    return result.output


def _alive(pid: int) -> bool:
    """Whether `pid` still runs 2 s from now (SIGKILL is delivered asynchronously)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state == "Z":  # a zombie waiting for a reaper is already dead
            return False
        time.sleep(0.02)
    return True


SPAWN = (
    "import subprocess\np = subprocess.Popen(['sleep', '60']{extra})\nopen('pid', 'w').write(str(p.pid))\n"
)


def test_background_child_does_not_outlive_the_run(tmp_path: Path) -> None:
    started = time.monotonic()
    _run(_executor(tmp_path), SPAWN.format(extra=""))
    assert time.monotonic() - started < 10
    assert not _alive(int((tmp_path / "ws" / "pid").read_text()))


def test_timeout_kills_the_children_too(tmp_path: Path) -> None:
    output = _run(_executor(tmp_path, timeout=1.0), SPAWN.format(extra="") + "import time\ntime.sleep(60)")
    assert "Timeout" in output
    assert not _alive(int((tmp_path / "ws" / "pid").read_text()))


def test_run_returns_when_a_detached_child_keeps_the_output_open(tmp_path: Path) -> None:
    started = time.monotonic()
    _run(_executor(tmp_path), SPAWN.format(extra=", start_new_session=True"))
    assert time.monotonic() - started < 10
    os.kill(int((tmp_path / "ws" / "pid").read_text()), signal.SIGKILL)  # unsafe executor: it escaped


def test_killed_by_a_signal_reports_128_plus_the_signal(tmp_path: Path) -> None:
    result = _executor(tmp_path).run("ws", [CodeBlock(code="kill -9 $$", language="sh")])
    assert result.exit_code == 137


def test_code_runs_in_its_workspace_with_home_there(tmp_path: Path) -> None:
    output = _run(_executor(tmp_path), "import os\nprint(os.getcwd() == os.environ['HOME'])")
    assert output.strip() == "True"
    assert (tmp_path / "ws").is_dir()


def test_from_settings_uses_the_sandbox_settings(tmp_path: Path) -> None:
    settings = load_settings(workdir=tmp_path, sandbox_timeout=5, output_limit=123, artifact_limit=456)
    executor = LocalExecutor.from_settings(settings)
    assert (executor.workdir, executor.timeout, executor.output_limit, executor.artifact_limit) == (
        tmp_path,
        5,
        123,
        456,
    )


def test_no_executor_answers_with_a_failed_run() -> None:
    result = NoExecutor().run("ws", [CodeBlock(code="print(1)", language="python")])
    assert (result.exit_code, result.output) == (1, DISABLED_MESSAGE)
    assert DISABLED_MESSAGE == "Code execution is disabled (AGENTBOT_EXECUTOR=none)."
