"""What the engine asks the chat platform to show; each platform renders these its own way."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentbot.conversation.code import CodeBlock


class AgentPost(BaseModel):
    """A message from an agent, in markdown, under the agent's name."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["agent"] = "agent"
    speaker: str
    text: str


class Decision(BaseModel):
    """Who decided about a proposed run, how, and when."""

    model_config = ConfigDict(frozen=True)

    outcome: Literal["approved", "skipped", "stopped", "expired", "superseded"]
    user_id: str | None = None
    at: datetime


class ApprovalPost(BaseModel):
    """A proposed run waiting for a person: the code, and Run / Skip / Stop until decided."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["approval"] = "approval"
    run_id: str
    code_hash: str
    blocks: tuple[CodeBlock, ...]
    requested_by: str
    approvers: tuple[str, ...]
    expires_at: datetime
    decision: Decision | None = None


class ResultPost(BaseModel):
    """What a run printed, its exit code, and the names of the files it made."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["result"] = "result"
    run_id: str
    exit_code: int
    output: str
    timed_out: bool = False
    output_truncated: bool = False
    artifact_names: tuple[str, ...] = ()


class UploadPost(BaseModel):
    """Upload the artifacts of a run (kept in the store by run id) into the thread."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["upload"] = "upload"
    run_id: str
    names: tuple[str, ...]


class NoticePost(BaseModel):
    """A message from agentbot itself: an error in words, a hand-over to humans, a summary."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["notice"] = "notice"
    text: str
    level: Literal["info", "warning", "error"] = "info"


class EphemeralPost(BaseModel):
    """A message only one person sees (e.g. "only @ana can approve this run")."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["ephemeral"] = "ephemeral"
    user_id: str
    text: str


Post = Annotated[
    AgentPost | ApprovalPost | ResultPost | UploadPost | NoticePost | EphemeralPost,
    Field(discriminator="kind"),
]
