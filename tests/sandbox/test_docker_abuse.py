"""Hostile code against the real Docker engine: each attack fails, and the host, the worker, the other
conversations and the engine (no container left behind) stay healthy. Also the Docker executor's own
lifecycle: retire and restore, reaping after a killed worker, idle cleanup, missing image, no engine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator

import docker
import pytest

from agentbot.conversation.code import CodeBlock, CodeResult, Language
from agentbot.errors import SandboxError
from agentbot.sandbox.docker import DockerExecutor
from tests.sandbox.docker_fixtures import IMAGE, dead_sockets, require_docker, sandbox_containers

pytestmark = pytest.mark.docker

TIMEOUT = 3.0


@pytest.fixture
def client() -> docker.DockerClient:
    return require_docker()


def _executor(client: docker.DockerClient, **overrides: object) -> DockerExecutor:
    limits: dict[str, object] = {
        "image": IMAGE,
        "timeout": TIMEOUT,
        "memory": "256m",
        "pids": 64,
        "disk": "32m",
        "output_limit": 10_000,
        "artifact_limit": 1_000_000,
        "client": client,
    }
    limits.update(overrides)
    return DockerExecutor(**limits)  # type: ignore[arg-type]  # keyword limits of mixed types


@pytest.fixture
def executor(client: docker.DockerClient) -> DockerExecutor:
    return _executor(client)


def _new_workspace(executor: DockerExecutor, client: docker.DockerClient) -> Iterator[str]:
    name = f"abuse-{uuid.uuid4().hex[:10]}"
    yield name
    executor.remove_workspace(name)
    assert sandbox_containers(client, name) == [], "a sandbox container was left behind"


@pytest.fixture
def workspace(executor: DockerExecutor, client: docker.DockerClient) -> Iterator[str]:
    yield from _new_workspace(executor, client)


@pytest.fixture
def bystander(executor: DockerExecutor, client: docker.DockerClient) -> Iterator[str]:
    """Another conversation, warm before the attack, that must keep working through it."""
    yield from _new_workspace(executor, client)


def run(executor: DockerExecutor, workspace: str, code: str, language: Language = "python") -> CodeResult:
    block = CodeBlock(code=textwrap.dedent(code), language=language)
    return executor.run(workspace, [block])


_STRAYS = """
import os
def parent(pid):
    return int(open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[1])
mine, pid = set(), os.getpid()
while pid > 1:
    mine.add(pid)
    pid = parent(pid)
def uid(pid):
    return int(next(l for l in open(f'/proc/{pid}/status') if l.startswith('Uid:')).split()[1])
# PID 1, the broker and the relay run as other users: only processes of the code's uid can be left over
print(sorted(int(p) for p in os.listdir('/proc')
             if p.isdigit() and int(p) not in mine and uid(p) == os.getuid()))
"""


def assert_healthy(executor: DockerExecutor, *workspaces: str) -> None:
    """Each conversation still runs code; no process of the code's uid is left but the run's own."""
    for name in workspaces:
        result = run(executor, name, _STRAYS)
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "[]", f"processes left in {name}: {result.output}"


def test_fork_bomb_is_contained_by_the_pids_limit(
    executor: DockerExecutor, workspace: str, bystander: str
) -> None:
    run(executor, bystander, "print('warm')")
    started = time.monotonic()
    result = run(
        executor,
        workspace,
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
    )
    assert time.monotonic() - started < TIMEOUT + 10
    assert result.exit_code != 0
    assert_healthy(executor, workspace, bystander)


def test_allocating_4_gb_is_killed_by_the_memory_limit(
    executor: DockerExecutor, workspace: str, bystander: str
) -> None:
    result = run(executor, workspace, "data = bytearray(4 * 1024 ** 3)\nprint('allocated')")
    assert result.exit_code != 0
    assert "allocated" not in result.output
    assert not result.timed_out
    assert_healthy(executor, workspace, bystander)


def test_filling_the_disk_stops_at_the_workspace_limit(
    executor: DockerExecutor, workspace: str, client: docker.DockerClient
) -> None:
    free_before = shutil.disk_usage("/var/lib/docker" if os.path.exists("/var/lib/docker") else "/").free
    result = run(
        executor,
        workspace,
        """
        chunk = b'x' * 1024 * 1024
        written = 0
        try:
            with open('fill.bin', 'wb') as file:
                while True:
                    file.write(chunk)
                    written += 1
        except OSError as exc:
            print('stopped after', written, 'MB:', exc.strerror)
        """,
    )
    assert "No space left on device" in result.output
    written = int(result.output.split()[2])
    assert written <= 32
    free_after = shutil.disk_usage("/var/lib/docker" if os.path.exists("/var/lib/docker") else "/").free
    assert free_before - free_after < 200 * 1024 * 1024
    cleaned = run(executor, workspace, "import os\nos.remove('fill.bin')\nprint('cleaned')")
    assert cleaned.output.splitlines()[-1] == "cleaned"


def test_printing_forever_keeps_the_worker_memory_bounded(executor: DockerExecutor, workspace: str) -> None:
    started = time.monotonic()
    result = run(executor, workspace, "while True:\n    print('z' * 1000)")
    assert time.monotonic() - started < TIMEOUT + 6
    assert result.timed_out
    assert result.output_truncated
    assert len(result.output.encode()) < 11_000
    assert_healthy(executor, workspace)


def test_ignoring_sigterm_and_sleeping_is_killed_at_the_limit(
    executor: DockerExecutor, workspace: str
) -> None:
    started = time.monotonic()
    result = run(
        executor,
        workspace,
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('ignoring', flush=True)
        time.sleep(600)
        """,
    )
    assert time.monotonic() - started < TIMEOUT + 3
    assert result.timed_out
    assert result.exit_code == 124
    assert "ignoring" in result.output
    assert_healthy(executor, workspace)


def test_setsid_child_does_not_outlive_a_finished_run(executor: DockerExecutor, workspace: str) -> None:
    result = run(
        executor,
        workspace,
        "setsid sh -c 'sleep 2; echo escaped > escaped.txt' >/dev/null 2>&1 < /dev/null &\necho parent done",
        "sh",
    )
    assert result.output.strip() == "parent done"
    time.sleep(2.5)
    check = run(executor, workspace, "import os\nprint(os.path.exists('escaped.txt'))")
    assert check.output.strip() == "False"
    assert_healthy(executor, workspace)


def test_setsid_child_does_not_outlive_a_timed_out_run(executor: DockerExecutor, workspace: str) -> None:
    result = run(
        executor,
        workspace,
        """
        import subprocess, time
        subprocess.Popen(['setsid', 'sh', '-c', 'sleep 4; echo escaped > escaped.txt'])
        time.sleep(600)
        """,
    )
    assert result.timed_out
    time.sleep(2)
    check = run(executor, workspace, "import os\nprint(os.path.exists('escaped.txt'))")
    assert check.output.strip() == "False"
    assert_healthy(executor, workspace)


def test_killing_the_wrapper_gets_the_container_replaced(executor: DockerExecutor, workspace: str) -> None:
    run(executor, workspace, "open('kept.txt', 'w').write('kept')")
    result = run(
        executor,
        workspace,
        """
        import os, signal, subprocess
        subprocess.Popen(['setsid', 'sleep', '300'])
        os.kill(os.getppid(), signal.SIGKILL)  # the steps shell
        def cmdline(pid):
            return open(f'/proc/{pid}/cmdline', 'rb').read()
        for pid in [p for p in os.listdir('/proc') if p.isdigit() and b'agentbot' in cmdline(p)]:
            os.kill(int(pid), signal.SIGKILL)
        """,
    )
    assert result.exit_code != 0
    assert_healthy(executor, workspace)
    assert run(executor, workspace, "print(open('kept.txt').read())").output.strip() == "kept"


def test_network_redis_and_the_docker_socket_are_out_of_reach(
    executor: DockerExecutor, workspace: str
) -> None:
    result = run(
        executor,
        workspace,
        """
        import os, socket
        for host, port in [('1.1.1.1', 53), ('pypi.org', 443), ('127.0.0.1', 6379), ('172.17.0.1', 6379),
                           ('172.17.0.1', 2375), ('host.docker.internal', 6379)]:
            try:
                socket.create_connection((host, port), timeout=1).close()
                print('reached', host, port)
            except OSError:
                pass
        for path in ['/var/run/docker.sock', '/run/docker.sock', '/var/run/redis/redis-server.sock']:
            if os.path.exists(path):
                print('found', path)
        print('done')
        """,
    )
    assert result.output.strip() == "done", result.output


@pytest.mark.parametrize("filename", ["../x.py", "/tmp/x.py", "/etc/x.py"])
def test_filenames_outside_the_workspace_are_refused(
    executor: DockerExecutor, workspace: str, filename: str
) -> None:
    result = executor.run(workspace, [CodeBlock(code="print('ran')", language="python", filename=filename)])
    assert result.exit_code == 1
    assert "ran" not in result.output


def test_symlinks_do_not_lead_writes_out_of_the_workspace(executor: DockerExecutor, workspace: str) -> None:
    run(executor, workspace, "import os\nos.symlink('/tmp', 'out')\nos.symlink('/tmp/target.py', 'link.py')")
    for name in ["out/x.py", "link.py"]:
        result = executor.run(workspace, [CodeBlock(code="print('ran')", language="python", filename=name)])
        assert result.exit_code == 1, name
        assert "outside the workspace" in result.output
    check = run(
        executor, workspace, "import os\nprint(os.path.exists('/tmp/x.py'), os.path.exists('/tmp/target.py'))"
    )
    assert check.output.strip() == "False False"


def test_code_cannot_write_outside_its_workspace(executor: DockerExecutor, workspace: str) -> None:
    result = run(
        executor,
        workspace,
        """
        for path in ['/etc/evil', '/usr/evil', '/keep/evil', '/opt/agentbot/evil', '/evil']:
            try:
                open(path, 'w').write('x')
                print('wrote', path)
            except OSError:
                pass
        print('done')
        """,
    )
    assert result.output.strip() == "done", result.output


def test_another_conversations_workspace_is_invisible(
    executor: DockerExecutor, workspace: str, bystander: str
) -> None:
    # Every directory is walked, but only files changed since the token existed are read: the image's
    # own ~360 MB cannot hold it, and reading them all does not fit the run timeout on a cold cache.
    since = time.time() - 60
    token = uuid.uuid4().hex
    run(executor, bystander, f"open('secret.txt', 'w').write('{token}')")
    executor.reap()  # nothing expired: the bystander stays warm
    result = run(
        executor,
        workspace,
        f"""
        import os
        token = '{token[:16]}' + '{token[16:]}'  # never whole in this code, which is a file too
        found, read = [], 0
        for root, dirs, files in os.walk('/'):
            dirs[:] = [d for d in dirs if os.path.join(root, d) not in ('/proc', '/sys', '/dev')]
            for name in files:
                path = os.path.join(root, name)
                try:
                    if name == 'secret.txt':
                        found.append(path)
                    if os.lstat(path).st_mtime < {since}:
                        continue
                    read += 1
                    if token.encode() in open(path, 'rb').read(1_000_000):
                        found.append(path)
                except OSError:
                    pass
        print(found, read > 0)
        """,
    )
    assert result.output.strip() == "[] True", result.output


def test_the_bots_secrets_are_not_in_the_sandbox(
    executor: DockerExecutor, workspace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret-token")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-key")
    result = run(
        executor,
        workspace,
        """
        import os
        seen = dict(os.environ)
        for pid in os.listdir('/proc'):
            try:
                seen[pid] = open(f'/proc/{pid}/environ', 'rb').read().decode(errors='replace')
            except OSError:
                pass
        print(seen)
        """,
    )
    assert "secret" not in result.output
    assert "/root" not in result.output


def test_code_runs_as_an_unprivileged_user(executor: DockerExecutor, workspace: str) -> None:
    result = run(
        executor, workspace, "id -u; grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status", "sh"
    )
    lines = result.output.split()
    assert lines[0] == "1000"
    assert lines[lines.index("CapEff:") + 1] == "0000000000000000"
    assert lines[lines.index("NoNewPrivs:") + 1] == "1"


def test_workspace_survives_its_container_being_retired(client: docker.DockerClient) -> None:
    executor = _executor(client, warm_seconds=TIMEOUT + 7)
    for name in _new_workspace(executor, client):
        run(
            executor,
            name,
            "import os\nos.makedirs('d', exist_ok=True)\nopen('d/kept.txt', 'w').write('kept')",
        )
        time.sleep(2.5)  # now the container has too little time left for another run
        result = run(executor, name, "print(open('d/kept.txt').read())")
        assert result.output.strip() == "kept"
        assert len(sandbox_containers(client, name)) == 1


def test_container_of_a_killed_worker_is_reaped(client: docker.DockerClient, tmp_path: object) -> None:
    name = f"abuse-{uuid.uuid4().hex[:10]}"
    script = textwrap.dedent(
        f"""
        from agentbot.conversation.code import CodeBlock
        from agentbot.sandbox.docker import DockerExecutor
        executor = DockerExecutor(image={IMAGE!r}, timeout=60, warm_seconds=1)
        executor.run({name!r}, [CodeBlock(code="open('a.txt','w').write('a')", language='python')])
        print('ready', flush=True)
        executor.run({name!r}, [CodeBlock(code='import time; time.sleep(60)', language='python')])
        """
    )
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    executor = _executor(client, warm_seconds=1)
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
        time.sleep(1)  # mid-run
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert sandbox_containers(client, name) != []
        time.sleep(1)
        assert executor.reap() >= 1
        assert sandbox_containers(client, name) == []
        result = run(executor, name, "print(open('a.txt').read())")
        assert result.output.strip() == "a"
    finally:
        worker.kill()
        worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()
        executor.remove_workspace(name)
    assert sandbox_containers(client, name) == []


def test_idle_workspaces_are_removed_after_the_ttl(client: docker.DockerClient) -> None:
    executor = _executor(client, workspace_ttl=1, warm_seconds=1)
    for name in _new_workspace(executor, client):
        run(executor, name, "open('old.txt', 'w').write('x')")
        time.sleep(1.5)
        executor.reap()
        assert executor.cleanup_idle() >= 1
        assert client.volumes.list(filters={"name": f"agentbot-ws-{name}"}) == []
        result = run(executor, name, "import os\nprint(os.path.exists('old.txt'))")
        assert result.output.strip() == "False"


def test_constructor_starts_nothing_and_a_missing_image_is_a_clear_error(client: docker.DockerClient) -> None:
    before = sandbox_containers(client)
    executor = _executor(client, image="agentbot-sandbox:missing")
    assert sandbox_containers(client) == before
    for name in _new_workspace(executor, client):
        with pytest.raises(SandboxError) as raised:
            run(executor, name, "print(1)")
        assert "agentbot-sandbox:missing is missing" in raised.value.user_message
        assert "scripts/build-sandbox-image" in raised.value.user_message
        executor.image = IMAGE  # the operator builds the image; the conversation goes on
        assert run(executor, name, "print(1)").output.strip() == "1"


def test_unreachable_engine_is_a_sandbox_error() -> None:
    executor = DockerExecutor(image=IMAGE, base_url="unix:///nonexistent/docker.sock")
    with dead_sockets():
        try:
            executor.run("abuse-no-engine", [CodeBlock(code="print(1)", language="python")])
        except SandboxError as exc:
            message = exc.user_message
        else:
            pytest.fail("no SandboxError")
        del executor
    assert "not reachable" in message
