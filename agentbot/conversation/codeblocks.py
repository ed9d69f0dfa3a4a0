"""Code blocks and termination in assistant messages, parsed the way AutoGen 0.2 parses them."""

from __future__ import annotations

import re

from agentbot.conversation.code import CodeBlock, Language

# AutoGen 0.2's CODE_BLOCK_PATTERN: a fence, an optional language word, the code, a closing fence.
# The code and its newline are a lazy optional group, so an empty block ("```python\n```") closes at
# its own fence instead of swallowing the text up to the next block's opening fence.
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\r?\n(?:(.*?)\r?\n)??[ \t]*```", re.DOTALL)
_FILENAME = re.compile(r"^\s*#\s*filename:\s*(\S.*?)\s*$", re.IGNORECASE)

_PYTHON = {"python", "py", "python3", "ipython"}
_SHELL = {"sh", "bash", "shell", "console", "zsh"}


def extract_code_blocks(message: str) -> list[CodeBlock]:
    """The runnable blocks of `message`, in order; blocks in other languages (json, text…) are skipped."""
    blocks = []
    # Windows line endings would reach the file as "\r" at each line's end, which breaks shell code.
    for label, code in _FENCE.findall(message.replace("\r\n", "\n")):
        language = _language(label.lower(), code)
        if language is not None and code.strip():
            blocks.append(CodeBlock(code=code, language=language, filename=filename_of(code)))
    return blocks


def is_termination(message: str) -> bool:
    """AutoGen's default `is_termination_msg`: the message ends with TERMINATE (outside any code block)."""
    text = message.rstrip()
    # An odd number of fences means the last block is still open: the TERMINATE is code, not a verdict.
    return text.endswith("TERMINATE") and text.count("```") % 2 == 0


def _language(label: str, code: str) -> Language | None:
    if label in _PYTHON:
        return "python"
    if label in _SHELL:
        return "sh"
    if label:
        return None
    return _infer_language(code)


def _infer_language(code: str) -> Language | None:
    """AutoGen's `infer_lang`: shell for pip/python command lines, Python if it compiles."""
    first = code.lstrip().split("\n", 1)[0]
    if first.startswith(("python ", "python3 ", "pip ", "pip3 ", "sh ", "bash ", "ls", "cat ", "echo ")):
        return "sh"
    try:
        compile(code, "<block>", "exec")
    except (SyntaxError, ValueError):
        return None
    return "python"


def filename_of(code: str) -> str | None:
    """The name a `# filename: <name>` first line gives the block, if it has one."""
    first = code.split("\n", 1)[0]
    match = _FILENAME.match(first)
    return match.group(1) if match else None
