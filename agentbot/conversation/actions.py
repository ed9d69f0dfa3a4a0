"""What a conversation needs from outside next: the actions `engine.next_action` returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agentbot.conversation.events import Delegated, FileRef
from agentbot.conversation.llm import ChatMessage
from agentbot.conversation.state import ConversationKey, PendingRun
from agentbot.conversation.tools import PendingToolCall, ToolSource


@dataclass(frozen=True)
class CallLLM:
    """Ask the model for the next message of `speaker` ("" : the assistant), with its `model` and `tools`."""

    messages: tuple[ChatMessage, ...]
    model: str | None = None
    speaker: str = ""
    tools: tuple[ToolSource, ...] = ()  # where the speaker's tools come from (their schemas: the driver's)


@dataclass(frozen=True)
class SelectSpeaker:
    """Ask the model which agent of a group chat speaks next (`auto` selection)."""

    messages: tuple[ChatMessage, ...]
    model: str | None = None


@dataclass(frozen=True)
class RunCode:
    """Run the approved code of `run`."""

    run: PendingRun


@dataclass(frozen=True)
class CallTool:
    """Make one approved tool call of the open round; `source` None: the team no longer has its tool."""

    pending: PendingToolCall
    source: ToolSource | None


@dataclass(frozen=True)
class ImportFiles:
    """Copy files people shared into the workspace."""

    files: tuple[FileRef, ...]


@dataclass(frozen=True)
class Launch:
    """Start one sub-team's conversation under `key` with `event`."""

    key: ConversationKey
    event: Delegated


@dataclass(frozen=True)
class Delegate:
    """Start the sub-teams' conversations the lead asked for."""

    launches: tuple[Launch, ...]


@dataclass(frozen=True)
class CancelSubTeams:
    """The lead's conversation ended while sub-teams still work: stop their conversations."""

    keys: tuple[ConversationKey, ...]
    user_id: str


@dataclass(frozen=True)
class Wait:
    """Nothing to do until a person acts, or until `wake_at` (then a step named `wake_name` is due)."""

    wake_at: datetime | None = None
    wake_name: str = ""


Action = CallLLM | SelectSpeaker | RunCode | CallTool | ImportFiles | Delegate | CancelSubTeams | Wait
