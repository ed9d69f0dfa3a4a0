"""The small Protocols the engine talks to; one adapter module per technology implements each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from agentbot.conversation.code import Artifact, CodeBlock, CodeResult, EgressGrant, InputFile
from agentbot.conversation.events import Event, FileRef, PriorMessage
from agentbot.conversation.llm import ChatMessage, Completion, TextSink, ToolCall, ToolSpec
from agentbot.conversation.posts import AgentPost, Post
from agentbot.conversation.state import ConversationKey, ConversationState
from agentbot.conversation.team import TeamChoice
from agentbot.conversation.tools import ToolOutcome, ToolSource

Activity = Literal["", "thinking", "running"]  # what a status is about: the model, or code running


class LLM(Protocol):
    """Chat completion with usage. Raises `LLMError` (with a `user_message`) when no model answers."""

    def complete(
        self, messages: Sequence[ChatMessage], *, model: str | None = None, tools: Sequence[ToolSpec] = ()
    ) -> Completion:
        """The reply to `messages`; `model` names the agent's model (tried first), None the default.

        `tools` are offered to the model; the functions it asks to call are the completion's `tool_calls`.
        """
        ...


class Toolbox(Protocol):
    """Describes and calls the tools of `ToolSource`s (Python functions, MCP servers).

    A tool's failure (it raised, hung past its timeout, returned garbage, its server died) is the
    result's text with `is_error`, never an exception: the model hears it as the tool's answer.
    """

    def describe(self, sources: Sequence[ToolSource]) -> list[ToolSpec]:
        """The tools of `sources`, with their JSON schemas; `ToolError` when one cannot be loaded."""
        ...

    def call(self, source: ToolSource, call: ToolCall) -> ToolOutcome:
        """Make `call` of a tool of `source` and return its result, capped like code output."""
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

    def set_status(self, key: ConversationKey, text: str, *, activity: Activity = "") -> None:
        """Show (or clear, with "") what the agents are doing right now; best effort.

        `activity` says what kind of work it is (the model thinking, code running), for platforms that
        show more than the text.
        """
        ...


class LiveMessage(Protocol):
    """A message whose text is shown while it is written (`LivePlatform.open_live`)."""

    @property
    def message_id(self) -> str: ...

    def show(self, text: str) -> None:
        """The whole text so far; the platform shows what is new as often as its limits allow.

        Never raises: a message that cannot be updated now shows the text when it is finished.
        """
        ...


@runtime_checkable
class LivePlatform(Protocol):
    """A `ChatPlatform` that shows agent messages as they are written (Slack's chat streaming)."""

    def open_live(
        self, key: ConversationKey, post: AgentPost, *, effect_id: str, recipient: str
    ) -> LiveMessage:
        """A new message under `post`'s speaker, empty until `show`; `recipient` is who asked."""
        ...

    def resume_live(self, key: ConversationKey, message_id: str, post: AgentPost) -> LiveMessage:
        """A message opened by an earlier attempt (its worker died): `show` replaces its text."""
        ...

    def find_live(self, key: ConversationKey, effect_id: str) -> str | None:
        """The message an earlier attempt opened with `effect_id`, if the platform can find it."""
        ...

    def cut_off(self, key: ConversationKey, message_id: str) -> None:
        """Say in the message that its reply was cut off (the worker or the model stopped); best effort."""
        ...

    def finish_live(
        self, key: ConversationKey, message_id: str, post: Post, *, effect_id: str, resume: bool = False
    ) -> None:
        """Show `post` whole in that message and end its stream; safe to repeat (with `resume`)."""
        ...


@runtime_checkable
class ThreadReader(Protocol):
    """A `ChatPlatform` that reads what people wrote, for the worker (never before the ack)."""

    def user_name(self, key: ConversationKey, user_id: str) -> str:
        """A person's display name ("" when the platform does not say)."""
        ...

    def thread_context(self, key: ConversationKey, *, before: str) -> tuple[PriorMessage, ...]:
        """The thread's messages before the message `before` (a mention), with their authors' names."""
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


class Engines(Protocol):
    """The Docker engines code can run on (`AGENTBOT_DOCKER_HOSTS`), as this process sees them.

    A conversation's workspace lives on one engine, recorded in its state at its first sandbox action.
    """

    @property
    def names(self) -> tuple[str, ...]:
        """Every configured engine."""
        ...

    def executor(self, name: str) -> CodeExecutor | None:
        """The executor of engine `name` when this process serves it, else None (its workers do)."""
        ...

    def is_up(self, name: str) -> bool:
        """Whether engine `name` answers and some worker serves it."""
        ...

    def choose(self, key: ConversationKey, avoid: Sequence[str] = ()) -> str | None:
        """An engine that is up for `key`'s new workspace, one not in `avoid` first; None when none is."""
        ...


class JobQueue(Protocol):
    """Runs `agentbot.jobs.step` for a conversation soon, never two at once for one conversation."""

    def enqueue_step(self, key: ConversationKey, *, engine: str | None = None) -> None:
        """A step soon; with `engine`, on the queue of the workers serving that Docker engine."""
        ...

    def enqueue_step_at(self, key: ConversationKey, at: datetime, *, name: str) -> None:
        """Run a step for `key` at `at` (not before); one per `name` per conversation, repeats ignored."""
        ...
