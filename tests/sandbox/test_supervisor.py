"""Pre-imported runs on the real engine: a fresh process per block, nothing of one run reaches the next,
the supervisor survives nothing the code does to it, and a workspace that shadows a module gets a fresh
interpreter.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator

import docker
import pytest

from agentbot.conversation.code import CodeBlock, CodeResult, Language
from agentbot.sandbox.docker import DockerExecutor
from tests.sandbox.docker_fixtures import IMAGE, require_docker, sandbox_containers

pytestmark = pytest.mark.docker

SITE = ".local/lib/python3.11/site-packages"


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return require_docker()


@pytest.fixture(scope="module")
def executor(client: docker.DockerClient) -> DockerExecutor:
    return DockerExecutor(image=IMAGE, timeout=5.0, pids=64, client=client)


@pytest.fixture
def workspace(executor: DockerExecutor, client: docker.DockerClient) -> Iterator[str]:
    """A conversation whose container is warm: a cold start runs its first block by exec."""
    name = f"sup-{uuid.uuid4().hex[:10]}"
    executor.run(name, [block("pass")])
    executor.settle()
    yield name
    executor.remove_workspace(name)
    assert sandbox_containers(client, name) == []


def block(code: str, language: Language = "python") -> CodeBlock:
    return CodeBlock(code=textwrap.dedent(code), language=language)


def run(executor: DockerExecutor, workspace: str, *codes: str) -> CodeResult:
    return executor.run(workspace, [block(code) for code in codes])


def container_id(client: docker.DockerClient, workspace: str) -> str:
    return str(client.api.inspect_container(f"agentbot-sbx-{workspace}")["Id"])


def test_python_blocks_run_pre_imported_in_a_child_of_the_supervisor(
    executor: DockerExecutor, workspace: str
) -> None:
    code = "import os, sys; print('pandas' in sys.modules, open(f'/proc/{os.getppid()}/cmdline').read())"
    result = run(executor, workspace, code)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("True python3\0/opt/agentbot/supervisor.py\0serve"), result.output


def test_state_of_one_block_does_not_leak_into_the_next_block_or_run(
    executor: DockerExecutor, workspace: str
) -> None:
    leak = """
    import os, sys, numpy, matplotlib.pyplot as plt
    numpy.leaked = 1
    sys.leaked = 2
    os.environ["LEAKED"] = "3"
    os.chdir("/tmp")
    plt.plot([1, 2])
    leaked_global = 4
    print(numpy.random.rand())
    """
    check = """
    import os, sys, numpy, matplotlib.pyplot as plt
    print(hasattr(numpy, "leaked"), hasattr(sys, "leaked"), "LEAKED" in os.environ, os.getcwd(),
          plt.get_fignums(), "leaked_global" in globals(), __name__)
    print(numpy.random.rand())
    """
    fresh = "False False False /workspace [] False __main__"
    within = run(executor, workspace, leak, check)
    assert within.exit_code == 0, within.output
    first, line, second = within.output.splitlines()
    assert line == fresh
    assert first != second  # numpy's generator is seeded anew in every child
    across = run(executor, workspace, check)
    assert across.output.splitlines()[0] == fresh


def test_a_traceback_and_an_exit_code_are_as_python_gives_them(
    executor: DockerExecutor, workspace: str
) -> None:
    boom = CodeBlock(code="x = 1\n1 / 0\n", language="python", filename="boom.py")
    failed = executor.run(workspace, [boom])
    assert failed.exit_code == 1
    assert failed.output.startswith('Traceback (most recent call last):\n  File "/workspace/boom.py", line 2')
    assert "supervisor" not in failed.output
    assert failed.output.rstrip().endswith("ZeroDivisionError: division by zero")
    assert run(executor, workspace, "import sys; sys.exit(7)").exit_code == 7
    exited = run(executor, workspace, "raise SystemExit('bye')")
    assert (exited.exit_code, exited.output.strip()) == (1, "bye")


def test_the_code_cannot_read_the_supervisors_memory_or_token(
    executor: DockerExecutor, workspace: str
) -> None:
    code = """
    import os
    for name in ("mem", "environ"):
        try:
            open(f"/proc/{os.getppid()}/{name}", "rb").read(1)
            print(name, "read")
        except OSError as exc:
            print(name, "refused")
    print(sorted(k for k in os.environ if "TOKEN" in k))
    """
    result = run(executor, workspace, code)
    assert result.output.split() == ["mem", "refused", "environ", "refused", "[]"], result.output


@pytest.mark.parametrize(
    "attack",
    [
        "import os, signal; os.kill(-1, signal.SIGKILL)",
        "import os, signal; os.kill(os.getppid(), signal.SIGSTOP); import time; time.sleep(30)",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    ],
    ids=["kill -9 -1", "stop the supervisor", "fork bomb"],
)
def test_what_the_code_does_to_its_supervisor_does_not_break_the_next_run(
    executor: DockerExecutor, workspace: str, attack: str
) -> None:
    run(executor, workspace, "open('kept.txt', 'w').write('kept')")
    result = run(executor, workspace, attack)
    assert result.exit_code != 0
    after = run(executor, workspace, "print(open('kept.txt').read())")
    assert after.output.strip() == "kept", after.output
    again = run(executor, workspace, "import sys; print('numpy' in sys.modules)")  # pre-imported again
    assert again.output.strip() == "True", again.output


def test_the_timeout_kills_the_whole_tree_of_a_pre_imported_block(
    executor: DockerExecutor, workspace: str
) -> None:
    code = """
    import subprocess, time
    subprocess.Popen(["setsid", "sh", "-c", "sleep 6; echo escaped > escaped.txt"])
    print("started", flush=True)
    time.sleep(60)
    """
    result = run(executor, workspace, code)
    assert result.timed_out
    assert result.output.startswith("started")
    check = run(executor, workspace, "import time, os; time.sleep(2); print(os.path.exists('escaped.txt'))")
    assert check.output.strip() == "False"


def test_a_module_in_the_workspace_shadows_a_pre_imported_one_in_a_fresh_interpreter(
    executor: DockerExecutor, workspace: str
) -> None:
    write = "open('numpy.py', 'w').write('print(\"the workspace numpy\")')"
    result = run(executor, workspace, write, "import sys, numpy; print('pandas' in sys.modules)")
    assert result.output.splitlines() == ["the workspace numpy", "False"], result.output


def test_a_package_installed_into_the_workspace_wins_within_the_run_and_after(
    executor: DockerExecutor, workspace: str
) -> None:
    install = f"""
    import os
    os.makedirs("{SITE}/pandas", exist_ok=True)
    open("{SITE}/pandas/__init__.py", "w").write("WHOSE = 'installed by people'")
    """
    show = "import pandas; print(pandas.WHOSE)"
    assert run(executor, workspace, install, show).output.strip() == "installed by people"
    assert run(executor, workspace, show).output.strip() == "installed by people"  # the next supervisor's


def test_sh_blocks_and_other_commands_still_run(executor: DockerExecutor, workspace: str) -> None:
    blocks = [block("echo from sh; ls /opt/agentbot/supervisor.py", "sh"), block("print('then python')")]
    result = executor.run(workspace, blocks)
    assert result.output.splitlines() == ["from sh", "/opt/agentbot/supervisor.py", "then python"]


def test_a_run_without_a_ready_supervisor_still_runs_by_exec(
    executor: DockerExecutor, workspace: str, client: docker.DockerClient
) -> None:
    run(executor, workspace, "print('warm')")
    executor.settle()
    # every process of the code's uid goes, the next supervisor too: the broker has nobody to hand the run to
    container = container_id(client, workspace)
    kill = client.api.exec_create(container, ["sh", "-c", "kill -9 -1"], user="1000:1000")
    client.api.exec_start(kill["Id"])
    result = run(executor, workspace, "import sys; print('pandas' in sys.modules)")
    assert result.output.strip() == "False"  # a fresh interpreter: the wrapper's exec
    assert container_id(client, workspace) == container
    assert run(executor, workspace, "import sys; print('pandas' in sys.modules)").output.strip() == "True"
