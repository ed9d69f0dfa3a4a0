"""Tools as a conversation stores them: where each comes from, and a round of calls the model proposed.

A `ToolSource` is one entry of the teams file: a Python function (`pkg.module:function`) or an MCP
server (all its tools, or its `include` list), with the approval rule of each tool. A `ToolRound` is
what one assistant message asked for: its calls, each with a status, checked server-side against
every click exactly like a code run (`PendingRun`), and each result stored before it is fed back.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Literal, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field

from agentbot.conversation.llm import ToolCall

Approval = Literal["always", "never"]
ToolCallStatus = Literal["awaiting_approval", "approved", "running", "done", "declined"]

DECLINED = "The person declined this call."
NOT_RUN = "This call was not run."


class ToolSource(BaseModel):
    """One Python function, or one MCP server reached by a stdio `command` or a streamable HTTP `url`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["python", "mcp"]
    name: str  # `pkg.module:function`, or the MCP server's NAME in the teams file
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    include: tuple[str, ...] = ()  # MCP: only these tools of the server (empty: all)
    approve: Approval | dict[str, Approval] = "always"  # for all its tools, or per tool name

    def approval(self, tool: str) -> Approval:
        """Whether a person approves each call of `tool` (`always`, the default) or not (`never`)."""
        if isinstance(self.approve, str):
            return self.approve
        return self.approve.get(tool, "always")

    @property
    def server(self) -> str:
        """How cards name the place the tool runs: `python`, or the MCP server's name."""
        return "python" if self.kind == "python" else self.name


class ToolOutcome(BaseModel):
    """What one call returned, as text for the model; `is_error` when it failed (in words)."""

    model_config = ConfigDict(frozen=True)

    text: str
    is_error: bool = False


class PendingToolCallChanges(TypedDict, total=False):
    """The fields of `PendingToolCall`, for `PendingToolCall.evolve`."""

    call: ToolCall
    source: str
    server: str
    approve: Approval
    status: ToolCallStatus
    result: str | None
    is_error: bool


class PendingToolCall(BaseModel):
    """One call of a round: `running` is stored before it starts, `result` before it is fed back."""

    model_config = ConfigDict(frozen=True)

    call: ToolCall
    source: str  # the `ToolSource.name` that provides the tool ("" : no such tool was offered)
    server: str = "python"
    approve: Approval = "always"
    status: ToolCallStatus = "awaiting_approval"
    result: str | None = None
    is_error: bool = False

    def evolve(self, **changes: Unpack[PendingToolCallChanges]) -> PendingToolCall:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)

    @property
    def pretty_arguments(self) -> str:
        """The arguments as indented JSON (as the model wrote them, when they are not JSON)."""
        try:
            return json.dumps(json.loads(self.call.arguments), indent=2, ensure_ascii=False)
        except ValueError:
            return self.call.arguments


class ToolRoundChanges(TypedDict, total=False):
    """The fields of `ToolRound`, for `ToolRound.evolve`."""

    round_id: str
    speaker: str
    calls: tuple[PendingToolCall, ...]
    calls_hash: str
    requested_by: str
    approvers: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    decided_by: str | None


class ToolRound(BaseModel):
    """The tool calls of one assistant message; a card (Run / Skip / Stop) covers those awaiting approval.

    `round_id` ("t1", "t2", ...) is what the card's buttons name, as a code run's `run_id` ("r1");
    `calls_hash` binds a click to the exact calls the card showed.
    """

    model_config = ConfigDict(frozen=True)

    round_id: str
    speaker: str
    calls: tuple[PendingToolCall, ...]
    calls_hash: str = ""
    requested_by: str
    approvers: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    decided_by: str | None = None

    def evolve(self, **changes: Unpack[ToolRoundChanges]) -> ToolRound:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)

    def with_status(
        self, before: ToolCallStatus, after: ToolCallStatus, result: str | None = None
    ) -> ToolRound:
        """Every call in `before` now in `after` (with `result`, when given)."""
        calls = tuple(
            (c.evolve(status=after, result=result) if result is not None else c.evolve(status=after))
            if c.status == before
            else c
            for c in self.calls
        )
        return self.evolve(calls=calls)

    def replace(self, changed: PendingToolCall) -> ToolRound:
        calls = tuple(changed if c.call.id == changed.call.id else c for c in self.calls)
        return self.evolve(calls=calls)

    def find(self, call_id: str) -> PendingToolCall | None:
        return next((c for c in self.calls if c.call.id == call_id), None)

    def having(self, status: ToolCallStatus) -> tuple[PendingToolCall, ...]:
        return tuple(c for c in self.calls if c.status == status)


def calls_hash(calls: tuple[PendingToolCall, ...]) -> str:
    """A short hash of the exact calls awaiting approval: a click must name the calls it approves."""
    digest = hashlib.sha256()
    for pending in calls:
        digest.update(f"{pending.call.id}\0{pending.call.name}\0{pending.call.arguments}\0".encode())
    return digest.hexdigest()[:16]
