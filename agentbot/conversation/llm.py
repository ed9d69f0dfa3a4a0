"""Values that cross the language-model seam: chat messages and tools in, a completion with usage out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(BaseModel):
    """A function call the model proposed: `arguments` is the JSON text exactly as the model wrote it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: str = "{}"


class ToolSpec(BaseModel):
    """A tool offered to the model: its name, description and JSON schema, and where it lives.

    `source` names the teams file entry that provides it (`pkg.module:function`, or an MCP server's
    NAME); `server` is how a card shows that place ("python", or the MCP server's name).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    source: str
    server: str = "python"


# Called with the reply's whole text so far, each time more of it arrives. A text that does not
# extend the previous one means the model failed part-way and the next configured model started over.
TextSink = Callable[[str], None]


class ChatMessage(BaseModel):
    """One Chat Completions message; `name` carries the speaker (agent or person) when known.

    An assistant message may carry `tool_calls`; a `tool` message answers one by its `tool_call_id`.
    """

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


class Completion(BaseModel):
    """A model's reply with the tokens and cost it took.

    `cost_usd` is None when the model's price is unknown: the tokens still count, the cost is not
    taken as $0. `truncated` is set when the reply was cut off at the length limit
    (`finish_reason="length"`).
    """

    model_config = ConfigDict(frozen=True)

    content: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    truncated: bool = False
    tool_calls: tuple[ToolCall, ...] = ()  # functions the model asks to call (several: in parallel)
