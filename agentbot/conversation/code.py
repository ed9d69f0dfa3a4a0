"""Values that cross the code-execution seam: code blocks in, results and artifacts out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Language = Literal["python", "sh"]


class CodeBlock(BaseModel):
    """One fenced block the assistant proposed; `filename` comes from a `# filename:` first line."""

    model_config = ConfigDict(frozen=True)

    code: str
    language: Language
    filename: str | None = None


class Artifact(BaseModel):
    """A file a run created or changed in the workspace."""

    model_config = ConfigDict(frozen=True)

    name: str
    mime_type: str
    size: int
    content: bytes = Field(repr=False)

    @property
    def is_image(self) -> bool:
        return self.mime_type.startswith("image/")


class InputFile(BaseModel):
    """A file a person shared, to be placed in the workspace before the next run."""

    model_config = ConfigDict(frozen=True)

    name: str
    content: bytes = Field(repr=False)


class CodeResult(BaseModel):
    """What a run produced. A timeout is data (`timed_out`, exit code 124), never an exception."""

    model_config = ConfigDict(frozen=True)

    exit_code: int
    output: str
    artifacts: tuple[Artifact, ...] = ()
    timed_out: bool = False
    output_truncated: bool = False
