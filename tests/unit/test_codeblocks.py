"""Table tests for code-block extraction and termination, with AutoGen 0.2's edge cases."""

from __future__ import annotations

import pytest

from agentbot.conversation.code import CodeBlock, Language
from agentbot.conversation.codeblocks import extract_code_blocks, is_termination

F = "```"  # a fence, so the tables read like the messages they stand for


def _py(code: str, filename: str | None = None) -> CodeBlock:
    return CodeBlock(code=code, language="python", filename=filename)


def _sh(code: str, filename: str | None = None) -> CodeBlock:
    return CodeBlock(code=code, language="sh", filename=filename)


@pytest.mark.parametrize(
    ("label", "language"),
    [
        pytest.param("python", "python", id="python"),
        pytest.param("py", "python", id="py"),
        pytest.param("python3", "python", id="python3"),
        pytest.param("Python", "python", id="label_case_insensitive"),
        pytest.param("sh", "sh", id="sh"),
        pytest.param("bash", "sh", id="bash"),
        pytest.param("shell", "sh", id="shell"),
        pytest.param("python   ", "python", id="trailing_spaces_after_label"),
        pytest.param("sh\t", "sh", id="trailing_tab_after_label"),
        pytest.param(" python", "python", id="space_between_fence_and_label"),
    ],
)
def test_labeled_block_is_extracted_with_its_language(label: str, language: Language) -> None:
    message = f"Run this:\n{F}{label}\nprint('hi')\n{F}\n"
    assert extract_code_blocks(message) == [CodeBlock(code="print('hi')", language=language)]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            f"First:\n{F}sh\npip install pandas\n{F}\nThen:\n{F}python\nimport pandas\n{F}",
            [_sh("pip install pandas"), _py("import pandas")],
            id="several_blocks_keep_their_order",
        ),
        pytest.param(
            f'{F}python\na = 1\n{F}\n{F}json\n{{"a": 1}}\n{F}\n{F}bash\necho a\n{F}',
            [_py("a = 1"), _sh("echo a")],
            id="non_code_block_between_code_blocks_is_skipped",
        ),
        pytest.param(
            f"{F}\nimport math\nprint(math.pi)\n{F}",
            [_py("import math\nprint(math.pi)")],
            id="unlabeled_valid_python_is_python",
        ),
        pytest.param(f"{F}\npip install yfinance\n{F}", [_sh("pip install yfinance")], id="unlabeled_pip"),
        pytest.param(f"{F}\npython plot.py\n{F}", [_sh("python plot.py")], id="unlabeled_python_command"),
        pytest.param(f"{F}\npython3 plot.py\n{F}", [_sh("python3 plot.py")], id="unlabeled_python3_command"),
        pytest.param(
            f"{F}\nThe chart shows NVDA up 80% and TSLA down 10% this year.\n{F}",
            [],
            id="unlabeled_prose_that_does_not_compile_is_skipped",
        ),
        pytest.param(f'{F}json\n{{"ticker": "NVDA"}}\n{F}', [], id="json_skipped"),
        pytest.param(f"{F}text\nhello world\n{F}", [], id="text_skipped"),
        pytest.param(f"{F}csv\ndate,close\n2024-01-02,481.68\n{F}", [], id="csv_skipped"),
        pytest.param(f"{F}output\nexitcode: 0\n{F}", [], id="output_skipped"),
        pytest.param(
            f"{F}python\n# filename: plot.py\nprint(1)\n{F}",
            [_py("# filename: plot.py\nprint(1)", "plot.py")],
            id="filename_first_line",
        ),
        pytest.param(
            f"{F}python\n#filename:plot.py\nprint(1)\n{F}",
            [_py("#filename:plot.py\nprint(1)", "plot.py")],
            id="filename_without_spaces",
        ),
        pytest.param(
            f"{F}sh\n# filename: setup.sh\necho hi\n{F}",
            [_sh("# filename: setup.sh\necho hi", "setup.sh")],
            id="filename_in_shell_block",
        ),
        pytest.param(
            f"{F}python\nimport os\n# filename: plot.py\n{F}",
            [_py("import os\n# filename: plot.py")],
            id="filename_on_second_line_is_not_a_filename",
        ),
        pytest.param(
            f"Here:\r\n{F}python\r\n# filename: a.py\r\nx = 1\r\nprint(x)\r\n{F}\r\n",
            [_py("# filename: a.py\nx = 1\nprint(x)", "a.py")],
            id="windows_line_endings",
        ),
        pytest.param(
            f"{F}sh\r\ncd data\r\nls\r\n{F}",
            [_sh("cd data\nls")],
            id="windows_line_endings_do_not_reach_shell_code",
        ),
        pytest.param(f"{F}python\n\n{F}", [], id="empty_block_skipped"),
        pytest.param(f"{F}python\n   \n  \n{F}", [], id="blank_block_skipped"),
        pytest.param(
            f"{F}python\n{F}\nThen the real one:\n{F}python\nprint(1)\n{F}",
            [_py("print(1)")],
            id="empty_block_does_not_swallow_the_next_block",
        ),
        pytest.param(f"{F}python\nprint(1)\n   {F}", [_py("print(1)")], id="indented_closing_fence"),
        pytest.param(f"{F}python\nprint(1)\n", [], id="unclosed_block_is_not_run"),
        pytest.param("No code here, just an answer. TERMINATE", [], id="no_code"),
        pytest.param("Use `print(1)` inline.", [], id="inline_code_is_not_a_block"),
    ],
)
def test_extract_code_blocks(message: str, expected: list[CodeBlock]) -> None:
    assert extract_code_blocks(message) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param("TERMINATE", True, id="only_terminate"),
        pytest.param("The chart is saved as chart.png. TERMINATE", True, id="at_end_of_sentence"),
        pytest.param("Done.\n\nTERMINATE", True, id="on_its_own_line"),
        pytest.param("Done. TERMINATE   ", True, id="trailing_spaces"),
        pytest.param("Done.\nTERMINATE\n\n", True, id="trailing_newlines"),
        pytest.param("Done.\r\nTERMINATE\r\n", True, id="trailing_windows_newline"),
        pytest.param(f"{F}python\nprint(1)\n{F}\nTERMINATE", True, id="after_a_closed_block"),
        pytest.param(
            f"{F}sh\nls\n{F}\n{F}python\nprint(1)\n{F}\nAll done. TERMINATE",
            True,
            id="after_two_closed_blocks",
        ),
        # AutoGen 0.2's check is `content.rstrip().endswith("TERMINATE")`: a trailing period is not it.
        pytest.param("Done. TERMINATE.", False, id="trailing_period_is_not_termination_as_in_autogen"),
        pytest.param("Done. terminate", False, id="lowercase"),
        pytest.param("TERMINATE is not what I do yet: which ticker?", False, id="not_at_the_end"),
        pytest.param("", False, id="empty"),
        pytest.param(f"{F}python\nprint('TERMINATE')\n{F}", False, id="inside_a_closed_block"),
        pytest.param(f"{F}sh\necho done\nTERMINATE\n{F}", False, id="last_line_of_a_closed_block"),
        pytest.param(f"Here:\n{F}python\nprint(1)\nTERMINATE", False, id="inside_an_unclosed_final_block"),
        pytest.param(f"Here:\n{F}\nTERMINATE\n", False, id="inside_an_unclosed_unlabeled_block"),
    ],
)
def test_is_termination(message: str, expected: bool) -> None:
    assert is_termination(message) is expected
