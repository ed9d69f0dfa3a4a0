"""Table tests for `plan_run`: file names, commands and the filenames that must never leave the workspace."""

from __future__ import annotations

import pytest

from agentbot.conversation.code import CodeBlock, Language
from agentbot.sandbox.plan import PlanError, Step, plan_run, safe_filename


def _one(code: str, language: Language = "python", filename: str | None = None) -> Step:
    [step] = plan_run([CodeBlock(code=code, language=language, filename=filename)])
    return step


def test_python_block_without_filename_gets_a_generated_py_name() -> None:
    step = _one("print(1)")
    assert step.filename.startswith("tmp_code_")
    assert step.filename.endswith(".py")
    assert step.argv == ("python", step.filename)
    assert step.content == "print(1)"


def test_shell_block_runs_with_sh_from_a_generated_sh_name() -> None:
    step = _one("echo hi", "sh")
    assert step.filename.startswith("tmp_code_")
    assert step.filename.endswith(".sh")
    assert step.argv == ("sh", step.filename)


def test_generated_name_depends_on_the_code_only() -> None:
    assert _one("print(1)").filename == _one("print(1)").filename
    assert _one("print(1)").filename != _one("print(2)").filename


@pytest.mark.parametrize(
    ("code", "filename", "expected"),
    [
        ("# filename: plot.py\nprint(1)", "plot.py", "plot.py"),
        ("print(1)", "src/app.py", "src/app.py"),
        ("print(1)", "./a.py", "a.py"),
        ("print(1)", "src//pkg/./m.py", "src/pkg/m.py"),
        ("print(1)", "  spaced.py  ", "spaced.py"),
        ("# filename: from_code.py\nprint(1)", None, "from_code.py"),
        ("#filename:tight.py\nprint(1)", None, "tight.py"),
        ("# FileName: upper.py\nprint(1)", None, "upper.py"),
        ("# filename: given.py\nprint(1)", "wins.py", "wins.py"),
    ],
)
def test_filename_is_taken_from_the_block_or_its_first_line(
    code: str, filename: str | None, expected: str
) -> None:
    step = _one(code, filename=filename)
    assert step.filename == expected
    assert step.argv == ("python", expected)
    assert step.content == code


def test_filename_comment_below_the_first_line_is_ignored() -> None:
    assert _one("print(1)\n# filename: late.py").filename.startswith("tmp_code_")


@pytest.mark.parametrize(
    "filename",
    [
        "",
        "   ",
        "/etc/passwd",
        "/tmp/x.py",
        "../x.py",
        "a/../../x.py",
        "a/../b.py",
        "..",
        ".",
        "-c",
        "--help.py",
        "a\x00b.py",
        "a\nb.py",
        "a\\..\\x.py",
        "x" * 300 + ".py",
    ],
)
def test_unsafe_or_malformed_filenames_are_refused(filename: str) -> None:
    with pytest.raises(PlanError):
        _one("print(1)", filename=filename)


def test_unsafe_filename_in_the_first_line_is_refused() -> None:
    with pytest.raises(PlanError, match=r"\.\."):
        _one("# filename: ../escape.py\nprint(1)")


def test_one_unsafe_block_refuses_the_whole_run() -> None:
    blocks = [
        CodeBlock(code="print(1)", language="python"),
        CodeBlock(code="print(2)", language="python", filename="/abs.py"),
    ]
    with pytest.raises(PlanError):
        plan_run(blocks)


def test_blocks_keep_their_order() -> None:
    blocks = [
        CodeBlock(code="echo 1", language="sh", filename="one.sh"),
        CodeBlock(code="print(2)", language="python", filename="two.py"),
    ]
    assert [step.argv for step in plan_run(blocks)] == [("sh", "one.sh"), ("python", "two.py")]


def test_safe_filename_is_usable_for_shared_files() -> None:
    assert safe_filename("data/prices.csv") == "data/prices.csv"
    with pytest.raises(PlanError):
        safe_filename("../prices.csv")


def test_filename_comment_without_a_name_is_no_filename() -> None:
    assert _one("# filename:\nprint(1)").filename.startswith("tmp_code_")
