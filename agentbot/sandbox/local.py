"""UNSAFE development executor: runs code as a subprocess of the worker in `<workdir>/<workspace>/`.

Nothing isolates the code from the host: it runs as the worker's user, with its network, and can read
and write whatever that user can. Use it on your own machine for code you would run yourself; use the
Docker executor anywhere else. What it does bound: wall time per run (the whole process group is
killed), output size (capped while it streams) and the environment the code sees (no secrets of the bot).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from agentbot.conversation.code import CodeBlock, CodeResult, EgressGrant, InputFile
from agentbot.errors import SandboxError
from agentbot.sandbox.artifacts import changed_files, make_artifacts, snapshot
from agentbot.sandbox.mpl import BACKEND, BACKEND_DIR
from agentbot.sandbox.output import CappedOutput
from agentbot.sandbox.plan import PlanError, Step, plan_run, safe_filename
from agentbot.settings import Settings

logger = logging.getLogger(__name__)

TIMEOUT_EXIT_CODE = 124  # what coreutils `timeout` and AutoGen report
_SLUG = re.compile(r"[A-Za-z0-9_-]{1,128}")
_CHUNK = 65_536
_POLL_SECONDS = 0.05


class LocalExecutor:
    """UNSAFE: runs each code block as a local subprocess; for development only (see the module doc)."""

    def __init__(self, workdir: Path, *, timeout: float, output_limit: int, artifact_limit: int) -> None:
        self.workdir = workdir
        self.timeout = timeout
        self.output_limit = output_limit
        self.artifact_limit = artifact_limit

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalExecutor:
        return cls(
            settings.workdir,
            timeout=settings.sandbox_timeout,
            output_limit=settings.output_limit,
            artifact_limit=settings.artifact_limit,
        )

    def run(
        self, workspace: str, blocks: Sequence[CodeBlock], *, grant: EgressGrant | None = None
    ) -> CodeResult:
        """Run `blocks` in order within one time limit, stopping at the first that fails."""
        root = self._workspace(workspace, create=True)
        try:
            steps = plan_run(blocks)
            for step in steps:
                write_file(root, step.filename, step.content.encode())
        except PlanError as exc:
            return CodeResult(exit_code=1, output=f"Code not run: {exc}.")
        before = snapshot(root)
        output = CappedOutput(self.output_limit)
        exit_code, timed_out = self._run_steps(root, steps, output)
        artifacts, notes = make_artifacts(root, changed_files(before, snapshot(root)), self.artifact_limit)
        text = output.render(timed_out=timed_out, timeout=self.timeout, notes=notes)
        logger.info("workspace %s: ran %d block(s), exit code %d", workspace, len(steps), exit_code)
        return CodeResult(
            exit_code=exit_code,
            output=text,
            artifacts=artifacts,
            timed_out=timed_out,
            output_truncated=output.truncated,
        )

    def put_files(self, workspace: str, files: Sequence[InputFile]) -> None:
        """Place `files` in the workspace; raises `SandboxError` for a name that would leave it."""
        root = self._workspace(workspace, create=True)
        for file in files:
            try:
                write_file(root, safe_filename(file.name), file.content)
            except PlanError as exc:
                message = f"Could not place {file.name!r} in the workspace: {exc}."
                raise SandboxError(message, user_message=message) from exc

    def remove_workspace(self, workspace: str) -> None:
        shutil.rmtree(self._workspace(workspace, create=False), ignore_errors=True)

    def _workspace(self, workspace: str, *, create: bool) -> Path:
        if not _SLUG.fullmatch(workspace):
            raise ValueError(f"workspace must be a slug of letters, digits, '_' and '-', not {workspace!r}")
        root = self.workdir / workspace
        if create:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return root

    def _run_steps(self, root: Path, steps: Sequence[Step], output: CappedOutput) -> tuple[int, bool]:
        deadline = time.monotonic() + self.timeout
        exit_code, timed_out = 0, False
        env = self._environment(root)
        for step in steps:
            exit_code, timed_out = _run_step(root, _argv(step), env, deadline, output)
            if exit_code != 0:
                break
        return exit_code, timed_out

    def _environment(self, root: Path) -> dict[str, str]:
        # Built from scratch: the code never sees the worker's environment (API keys, tokens).
        mplconfig = self.workdir / ".mplconfig"  # not a slug, so never a workspace
        mplconfig.mkdir(mode=0o700, parents=True, exist_ok=True)
        return {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(root.resolve()),
            "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8",
            "PYTHONUNBUFFERED": "1",  # stdout and stderr then interleave in the order they were written
            "PYTHONPATH": str(BACKEND_DIR),
            "MPLBACKEND": BACKEND,
            "MPLCONFIGDIR": str(mplconfig.resolve()),
        }


def write_file(root: Path, name: str, content: bytes) -> None:
    """Write `content` to `root/name`, refusing a path that leaves `root` through a symlink."""
    real_root = root.resolve()
    target = (real_root / name).resolve()
    if target == real_root or not target.is_relative_to(real_root):
        raise PlanError(f"filename {name!r} leads outside the workspace through a symlink")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as file:
            file.write(content)
    except OSError as exc:
        raise PlanError(f"cannot write {name!r}: {exc.strerror}") from exc


def _argv(step: Step) -> list[str]:
    command, *rest = step.argv
    return [sys.executable if command == "python" else command, *rest]


def _run_step(
    root: Path, argv: list[str], env: dict[str, str], deadline: float, output: CappedOutput
) -> tuple[int, bool]:
    try:
        proc = subprocess.Popen(
            argv,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a kill reaches every child
        )
    except OSError as exc:
        raise SandboxError(f"could not start {argv[0]}: {exc}") from exc
    assert proc.stdout is not None
    try:
        timed_out = _pump(proc, proc.stdout, deadline, output)
    finally:
        _kill_group(proc)
        proc.wait()
        _drain(proc.stdout, output)
        proc.stdout.close()
    return (TIMEOUT_EXIT_CODE if timed_out else _exit_code(proc.returncode)), timed_out


def _pump(proc: subprocess.Popen[bytes], pipe: IO[bytes], deadline: float, output: CappedOutput) -> bool:
    """Stream the output until the process exits; True when the deadline passes first."""
    fd = pipe.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while proc.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if selector.select(min(remaining, _POLL_SECONDS)):
                chunk = os.read(fd, _CHUNK)
                if not chunk:  # the code closed its output but may still run
                    return _wait(proc, deadline)
                output.add(chunk)  # past the cap this only drains, so the child never blocks
    return False


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> bool:
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        return True
    return False


def _drain(pipe: IO[bytes], output: CappedOutput) -> None:
    """Read what is left in the pipe without waiting for a writer that escaped the process group."""
    os.set_blocking(pipe.fileno(), False)
    while True:
        try:
            chunk = os.read(pipe.fileno(), _CHUNK)
        except BlockingIOError:
            return
        if not chunk:
            return
        output.add(chunk)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # Also after a normal exit: background children of the code do not outlive its run.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode  # killed by signal N -> 128 + N, as shells say
