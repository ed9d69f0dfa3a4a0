"""Values that cross the language-model seam: chat messages in, a completion with usage out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Role = Literal["system", "user", "assistant"]


class ChatMessage(BaseModel):
    """One Chat Completions message; `name` carries the speaker (agent or person) when known."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str
    name: str | None = None


class Completion(BaseModel):
    """A model's reply with the tokens and cost it took."""

    model_config = ConfigDict(frozen=True)

    content: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
