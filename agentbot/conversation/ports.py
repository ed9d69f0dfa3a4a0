"""The small Protocols the engine talks to; one adapter module per technology implements each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from agentbot.conversation.code import Artifact, CodeBlock, CodeResult, EgressGrant, InputFile
from agentbot.conversation.events import Event, FileRef
from agentbot.conversation.llm import ChatMessage, Completion, TextSink
from agentbot.conversation.posts import Post
from agentbot.conversation.state import ConversationKey, ConversationState
from agentbot.conversation.team import TeamChoice


class LLM(Protocol):
    """Chat completion with usage. Raises `LLMError` (with a `user_message`) when no model answers."""

    def complete(self, messages: Sequence[ChatMessage], *, model: str | None = None) -> Completion:
        """The reply to `messages`; `model` names the agent's model (tried first), None the default."""
        ...


@runtime_checkable
class StreamingLLM(LLM, Protocol):
    """An `LLM` that can show its reply while it is written (OpenAI's `stream=True`)."""

    def stream(
        self, messages: Sequence[ChatMessage], *, on_text: TextSink, model: str | None = None
    ) -> Completion:
        """`complete`, calling `on_text` with the text so far as the reply arrives; usage at the end."""
        ...


class TeamCatalog(Protocol):
    """The agent teams people can choose from (`agentbot.teams`)."""

    def choose(self, key: ConversationKey, requested: str | None) -> TeamChoice:
        """The team of a new conversation: `requested` by name, else the channel's, else the default."""
        ...


class CodeExecutor(Protocol):
    """Runs code blocks in a per-conversation workspace that persists across runs.

    `workspace` is a conversation slug (letters, digits, `_`, `-`). Raises `SandboxError` only when
    the code could not be run at all; failures and timeouts of the code are data in `CodeResult`.
    """

    def run(
        self, workspace: str, blocks: Sequence[CodeBlock], *, grant: EgressGrant | None = None
    ) -> CodeResult:
        """Run `blocks`; `grant` is what this run may reach through the egress proxy (None: nothing)."""
        ...

    def put_files(self, workspace: str, files: Sequence[InputFile]) -> None: ...

    def remove_workspace(self, workspace: str) -> None: ...


class ChatPlatform(Protocol):
    """Shows posts in a conversation's thread. Raises `PlatformError` when the platform refuses."""

    def post(self, key: ConversationKey, post: Post, *, effect_id: str) -> str:
        """Show `post`; return the platform's id of the new message ("" if it has none).

        `effect_id` is unique per post; a platform that can find an earlier post by it should do so
        in `find_posted`, so that a post interrupted by a crash is not shown twice.
        """
        ...

    def find_posted(self, key: ConversationKey, effect_id: str) -> str | None:
        """The message id of a post made earlier with `effect_id`, or None if there is none."""
        ...

    def update(self, key: ConversationKey, message_id: str, post: Post) -> None: ...

    def upload(
        self, key: ConversationKey, artifacts: Sequence[Artifact], *, run_id: str, resume: bool = False
    ) -> None:
        """Share a run's files in the thread; with `resume`, skip what an earlier attempt already shared."""
        ...

    def download(self, file: FileRef) -> bytes:
        """The bytes of a file a person shared (raises `PlatformError` above the size cap)."""
        ...

    def set_status(self, key: ConversationKey, text: str) -> None:
        """Show (or clear, with "") what the agents are doing right now; best effort."""
        ...


class ConversationStore(Protocol):
    """Conversation state, inbound events and run artifacts, keyed by conversation."""

    def load(self, key: ConversationKey) -> ConversationState | None: ...

    def save(self, state: ConversationState) -> ConversationState:
        """Store `state` as the next version; raises `StoreError` if someone else saved meanwhile."""
        ...

    def append_event(self, key: ConversationKey, event: Event) -> str:
        """Add an event to the conversation's inbox; returns its id (ids sort in arrival order)."""
        ...

    def events_after(self, key: ConversationKey, event_id: str) -> list[tuple[str, Event]]: ...

    def put_artifacts(self, run_id: str, artifacts: Sequence[Artifact]) -> None: ...

    def get_artifacts(self, run_id: str) -> list[Artifact]: ...


class JobQueue(Protocol):
    """Runs `agentbot.jobs.step` for a conversation soon, never two at once for one conversation."""

    def enqueue_step(self, key: ConversationKey) -> None: ...

    def enqueue_step_at(self, key: ConversationKey, at: datetime, *, name: str) -> None:
        """Run a step for `key` at `at` (not before); one per `name` per conversation, repeats ignored."""
        ...
