"""Code a person edited before it runs: what the Edit modal holds, the blocks it becomes, the diff."""

from __future__ import annotations

import difflib

from agentbot.conversation.code import CodeBlock
from agentbot.conversation.codeblocks import filename_of

DIFF_LINES = 400  # a diff longer than this is cut in the transcript (the model sees its head)


def editable_code(blocks: tuple[CodeBlock, ...]) -> str | None:
    """The proposal as one text to edit; None when its blocks mix languages (one input cannot say which)."""
    if not blocks or len({block.language for block in blocks}) != 1:
        return None
    return "\n\n".join(block.code.rstrip("\n") for block in blocks) + "\n"


def edited_blocks(blocks: tuple[CodeBlock, ...], code: str) -> tuple[CodeBlock, ...]:
    """The edited text as the one block that runs, in the proposal's language."""
    text = code.replace("\r\n", "\n")
    text = text if text.endswith("\n") else text + "\n"
    return (CodeBlock(code=text, language=blocks[0].language, filename=filename_of(text)),)


def unified_diff(before: str, after: str) -> str:
    """A unified diff of the proposal and the edit (`proposed` → `edited`), cut at `DIFF_LINES` lines."""
    lines = list(
        difflib.unified_diff(
            before.splitlines(), after.replace("\r\n", "\n").splitlines(), "proposed", "edited", lineterm=""
        )
    )
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... ({len(lines) - DIFF_LINES} more diff lines)"]
    return "\n".join(lines)


def edit_message(diff: str) -> str:
    """What the assistant reads from the person who edited: their change, as a human reply would say it."""
    return (
        "I edited your code before running it. This is what runs instead (unified diff):\n"
        f"```diff\n{diff}\n```"
    )
