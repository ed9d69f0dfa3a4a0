"""The executor for `AGENTBOT_EXECUTOR=none`: code is never run, and the assistant is told so."""

from __future__ import annotations

from collections.abc import Sequence

from agentbot.conversation.code import CodeBlock, CodeResult, EgressGrant, InputFile

DISABLED_MESSAGE = "Code execution is disabled (AGENTBOT_EXECUTOR=none)."


class NoExecutor:
    """Answers every run with a failed result saying execution is disabled; keeps no files."""

    def run(
        self, workspace: str, blocks: Sequence[CodeBlock], *, grant: EgressGrant | None = None
    ) -> CodeResult:
        return CodeResult(exit_code=1, output=DISABLED_MESSAGE)

    def put_files(self, workspace: str, files: Sequence[InputFile]) -> None:
        return None

    def remove_workspace(self, workspace: str) -> None:
        return None
