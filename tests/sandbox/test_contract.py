"""The contract every `CodeExecutor` keeps, run against each one in `conftest.FACTORIES`.

Only the port's API is used here, so the same tests hold the local and the Docker executor to the
same behaviour: AutoGen 0.2's semantics, workspaces that persist and stay apart, artifacts, limits.
"""

from __future__ import annotations

import time

import pytest

from agentbot.conversation.code import CodeBlock, CodeResult, InputFile, Language
from agentbot.conversation.ports import CodeExecutor
from agentbot.errors import SandboxError
from tests.sandbox.conftest import Limits, MakeExecutor

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def block(code: str, language: Language = "python", filename: str | None = None) -> CodeBlock:
    return CodeBlock(code=code, language=language, filename=filename)


def run(executor: CodeExecutor, workspace: str, *codes: str) -> CodeResult:
    return executor.run(workspace, [block(code) for code in codes])


def names(result: CodeResult) -> list[str]:
    return sorted(artifact.name for artifact in result.artifacts)


def test_print_comes_back_with_exit_code_zero(executor: CodeExecutor, workspace: str) -> None:
    result = run(executor, workspace, "print('hello', 6 * 7)")
    assert result.exit_code == 0
    assert result.output.strip() == "hello 42"
    assert not result.timed_out
    assert not result.output_truncated


def test_exception_gives_exit_code_one_and_the_traceback(executor: CodeExecutor, workspace: str) -> None:
    result = run(executor, workspace, "raise ValueError('bad input')")
    assert result.exit_code == 1
    assert "Traceback" in result.output
    assert "ValueError: bad input" in result.output


def test_sys_exit_code_is_returned(executor: CodeExecutor, workspace: str) -> None:
    assert run(executor, workspace, "import sys\nsys.exit(3)").exit_code == 3


def test_stderr_is_captured_in_order_with_stdout(executor: CodeExecutor, workspace: str) -> None:
    code = "import sys\nprint('one')\nprint('two', file=sys.stderr)\nprint('three')"
    result = run(executor, workspace, code)
    assert result.output.split() == ["one", "two", "three"]


def test_unicode_output_round_trips(executor: CodeExecutor, workspace: str) -> None:
    assert run(executor, workspace, "print('héllo ✓ 数据')").output.strip() == "héllo ✓ 数据"


def test_shell_block_runs_with_its_exit_code(executor: CodeExecutor, workspace: str) -> None:
    result = executor.run(workspace, [block("echo from shell\nexit 4", "sh")])
    assert result.exit_code == 4
    assert result.output.strip() == "from shell"


def test_filename_saves_the_block_under_that_name(executor: CodeExecutor, workspace: str) -> None:
    saved = executor.run(workspace, [block("# filename: greet.py\nprint('hi')")])
    assert saved.output.strip() == "hi"
    nested = executor.run(workspace, [block("print('nested')", filename="src/app.py")])
    assert nested.output.strip() == "nested"
    check = run(
        executor, workspace, "print(open('greet.py').read().splitlines()[1], open('src/app.py').read())"
    )
    assert check.output.strip() == "print('hi') print('nested')"


def test_saved_code_files_are_not_artifacts(executor: CodeExecutor, workspace: str) -> None:
    result = executor.run(workspace, [block("# filename: greet.py\nprint('hi')"), block("echo x", "sh")])
    assert result.artifacts == ()


def test_blocks_run_in_order_and_stop_at_the_first_failure(executor: CodeExecutor, workspace: str) -> None:
    blocks = [block("print('first')"), block("echo second; exit 2", "sh"), block("print('third')")]
    result = executor.run(workspace, blocks)
    assert result.exit_code == 2
    assert result.output.split() == ["first", "second"]


def test_workspace_persists_across_runs(executor: CodeExecutor, workspace: str) -> None:
    run(executor, workspace, "open('notes.txt', 'w').write('kept')")
    assert run(executor, workspace, "print(open('notes.txt').read())").output.strip() == "kept"


def test_workspaces_do_not_see_each_other(
    executor: CodeExecutor, workspace: str, other_workspace: str
) -> None:
    run(executor, workspace, "open('secret.txt', 'w').write('mine')")
    result = run(executor, other_workspace, "import os\nprint(os.path.exists('secret.txt'))")
    assert result.output.strip() == "False"


def test_new_file_comes_back_as_an_artifact(executor: CodeExecutor, workspace: str) -> None:
    result = run(executor, workspace, "open('table.csv', 'w').write('a,b\\n1,2\\n')")
    [artifact] = result.artifacts
    assert (artifact.name, artifact.mime_type, artifact.size) == ("table.csv", "text/csv", 8)
    assert artifact.content == b"a,b\n1,2\n"


def test_only_files_changed_by_the_run_come_back(executor: CodeExecutor, workspace: str) -> None:
    run(executor, workspace, "open('a.txt', 'w').write('1')\nopen('b.txt', 'w').write('1')")
    result = run(executor, workspace, "open('b.txt', 'w').write('22')")
    assert names(result) == ["b.txt"]
    assert result.artifacts[0].content == b"22"


def test_plt_show_returns_a_png_without_overwriting_earlier_charts(
    executor: CodeExecutor, workspace: str
) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()\nprint('shown')"
    first = run(executor, workspace, code)
    assert first.exit_code == 0, first.output
    assert first.output.strip() == "shown"
    [chart] = first.artifacts
    assert chart.is_image
    assert chart.mime_type == "image/png"
    assert chart.content.startswith(PNG_MAGIC)
    second = run(executor, workspace, code)
    [again] = second.artifacts
    assert again.name != chart.name


def test_plt_show_saves_every_open_figure(executor: CodeExecutor, workspace: str) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1])\nplt.figure()\nplt.bar([1], [2])\nplt.show()"
    result = run(executor, workspace, code)
    assert result.exit_code == 0, result.output
    assert len(result.artifacts) == 2
    assert all(artifact.content.startswith(PNG_MAGIC) for artifact in result.artifacts)


def test_plt_savefig_works_as_usual(executor: CodeExecutor, workspace: str) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.savefig('chart.png')"
    result = run(executor, workspace, code)
    assert result.exit_code == 0, result.output
    assert names(result) == ["chart.png"]
    assert result.artifacts[0].content.startswith(PNG_MAGIC)


def test_timeout_is_reported_as_data(make_executor: MakeExecutor, workspace: str) -> None:
    executor = make_executor(Limits(timeout=1.5))
    started = time.monotonic()
    result = run(executor, workspace, "import time\nprint('started', flush=True)\ntime.sleep(60)")
    assert time.monotonic() - started < 15
    assert result.timed_out
    assert result.exit_code == 124
    assert "started" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("Timeout")


def test_output_is_capped(make_executor: MakeExecutor, workspace: str) -> None:
    executor = make_executor(Limits(output_limit=1_000))
    result = run(executor, workspace, "for i in range(200_000):\n    print('x' * 99)")
    assert result.exit_code == 0
    assert result.output_truncated
    assert result.output.startswith("x" * 99)
    assert len(result.output.encode()) < 2_000


def test_printing_forever_is_capped_and_stopped(make_executor: MakeExecutor, workspace: str) -> None:
    executor = make_executor(Limits(timeout=1.5, output_limit=1_000))
    result = run(executor, workspace, "while True:\n    print('y' * 99)")
    assert result.timed_out
    assert result.output_truncated
    assert len(result.output.encode()) < 2_000


def test_put_files_places_files_the_code_can_read(executor: CodeExecutor, workspace: str) -> None:
    files = [
        InputFile(name="prices.csv", content=b"day,price\n1,10\n"),
        InputFile(name="in/b.bin", content=b"\0"),
    ]
    executor.put_files(workspace, files)
    result = run(
        executor,
        workspace,
        "print(open('prices.csv').read().splitlines()[1], len(open('in/b.bin', 'rb').read()))",
    )
    assert result.output.strip() == "1,10 1"
    assert result.artifacts == ()


@pytest.mark.parametrize("filename", ["../escape.py", "/tmp/agentbot-escape.py", "a/../../escape.py"])
def test_filename_outside_the_workspace_is_refused(
    executor: CodeExecutor, workspace: str, filename: str
) -> None:
    result = executor.run(workspace, [block(f"# filename: {filename}\nprint('ran')")])
    assert result.exit_code == 1
    assert "ran" not in result.output
    assert "workspace" in result.output
    check = run(
        executor,
        workspace,
        "import os\nprint(os.path.exists('../escape.py'), os.path.exists('/tmp/agentbot-escape.py'))",
    )
    assert check.output.strip() == "False False"


def test_refused_filename_stops_the_whole_run(executor: CodeExecutor, workspace: str) -> None:
    result = executor.run(workspace, [block("print('first')"), block("print(2)", filename="../x.py")])
    assert result.exit_code == 1
    assert "first" not in result.output


def test_symlink_out_of_the_workspace_is_not_written_through(executor: CodeExecutor, workspace: str) -> None:
    run(executor, workspace, "import os, tempfile\nos.symlink(tempfile.gettempdir(), 'out')")
    result = executor.run(workspace, [block("print('ran')", filename="out/agentbot-escape.py")])
    assert result.exit_code == 1
    assert "ran" not in result.output


def test_put_files_refuses_a_name_outside_the_workspace(executor: CodeExecutor, workspace: str) -> None:
    with pytest.raises(SandboxError):
        executor.put_files(workspace, [InputFile(name="../evil.csv", content=b"x")])


def test_code_does_not_see_the_workers_environment(
    executor: CodeExecutor, workspace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTBOT_TEST_SECRET", "hunter2")
    result = run(
        executor, workspace, "import os\nprint(sorted(v for v in os.environ.values() if 'hunter2' in v))"
    )
    assert result.output.strip() == "[]"


def test_workspace_name_must_be_a_slug(executor: CodeExecutor) -> None:
    with pytest.raises(ValueError, match="slug"):
        run(executor, "../other", "print(1)")


def test_removed_workspace_starts_empty(executor: CodeExecutor, workspace: str) -> None:
    run(executor, workspace, "open('old.txt', 'w').write('x')")
    executor.remove_workspace(workspace)
    assert run(executor, workspace, "import os\nprint(os.path.exists('old.txt'))").output.strip() == "False"


def test_file_over_the_artifact_limit_is_named_in_the_output(
    make_executor: MakeExecutor, workspace: str
) -> None:
    executor = make_executor(Limits(artifact_limit=1_000))
    result = run(
        executor, workspace, "open('big.bin', 'wb').write(bytes(5000))\nopen('small.txt', 'w').write('ok')"
    )
    assert result.exit_code == 0
    assert names(result) == ["small.txt"]
    assert "big.bin" in result.output
