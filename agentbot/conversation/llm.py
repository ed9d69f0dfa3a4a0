"""Values that cross the language-model seam: chat messages in, a completion with usage out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

Role = Literal["system", "user", "assistant"]

# Called with the reply's whole text so far, each time more of it arrives. A text that does not
# extend the previous one means the model failed part-way and the next configured model started over.
TextSink = Callable[[str], None]


class ChatMessage(BaseModel):
    """One Chat Completions message; `name` carries the speaker (agent or person) when known."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str
    name: str | None = None


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
