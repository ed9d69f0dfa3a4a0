"""What happens to a conversation from outside: people start it, reply, click Run, Skip or Stop."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from agentbot.conversation.posts import Post
from agentbot.conversation.team import Team


class FileRef(BaseModel):
    """A file a person shared in the thread; the worker downloads it through the chat platform."""

    model_config = ConfigDict(frozen=True)

    name: str
    url: str
    size: int = 0
    mime_type: str = "application/octet-stream"


class PriorMessage(BaseModel):
    """A message that was in the thread before the bot was mentioned there (context for the agents)."""

    model_config = ConfigDict(frozen=True)

    author: str
    text: str


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: str
    user_id: str


class Start(_Event):
    """Someone mentioned the bot with a task; starts (or re-opens) the thread's conversation."""

    type: Literal["start"] = "start"
    text: str
    user_name: str = ""
    files: tuple[FileRef, ...] = ()
    context: tuple[PriorMessage, ...] = ()
    team: str | None = None
    context_before: str = ""  # a mention inside a thread: the worker reads the messages before this one


class HumanMessage(_Event):
    """A person replied in the thread: feedback, an answer, or a new instruction."""

    type: Literal["human_message"] = "human_message"
    text: str
    user_name: str = ""
    files: tuple[FileRef, ...] = ()


class Approve(_Event):
    """The Run button: run the pending code, if it is still the code the card showed.

    `elsewhere`: the card's *Continue on another engine* (the engine holding the workspace is down):
    run it on another engine, in a new, empty workspace.
    """

    type: Literal["approve"] = "approve"
    run_id: str
    code_hash: str
    elsewhere: bool = False


class RunAll(_Event):
    """**Run all in this thread**: run the pending code, and every later proposal without asking."""

    type: Literal["run_all"] = "run_all"
    run_id: str
    code_hash: str


class EditCode(_Event):
    """The Edit modal was submitted: run `code` instead of the proposal `run_id` (`code_hash`) showed."""

    type: Literal["edit_code"] = "edit_code"
    run_id: str
    code_hash: str  # the proposal's, as the modal was opened for it
    code: str
    user_name: str = ""


class Rate(_Event):
    """A thumbs up or down on an agent's final answer (the transcript entry `turn`)."""

    type: Literal["rate"] = "rate"
    turn: int
    vote: Literal["up", "down"]


class Skip(_Event):
    """The Skip button: do not run; the next human reply is feedback for the assistant."""

    type: Literal["skip"] = "skip"
    run_id: str


class AllowHosts(_Event):
    """**Allow and run again** on a blocked-hosts card: allow its hosts in this thread, run the code again."""

    type: Literal["allow_hosts"] = "allow_hosts"
    run_id: str  # the refused run the card is about
    code_hash: str


class KeepBlocked(_Event):
    """**Keep blocked** on a blocked-hosts card: the assistant gets the refused run's result."""

    type: Literal["keep_blocked"] = "keep_blocked"
    run_id: str


class Stop(_Event):
    """The Stop button, or "stop"/"exit" typed as a reply: end the conversation."""

    type: Literal["stop"] = "stop"


class PickSpeaker(_Event):
    """A button on a speaker-choice card (`manual` selection): `speaker` talks next."""

    type: Literal["pick_speaker"] = "pick_speaker"
    pick_id: str
    speaker: str


class Delegated(_Event):
    """Internal: a lead handed `task` to a sub-team; starts the sub-team's own conversation."""

    type: Literal["delegated"] = "delegated"
    task: str
    team: Team
    parent_thread: str  # the lead's conversation: same workspace and channel, this thread
    sub_id: str
    lead: str
    max_cost_usd: float | None = None


class SubTeamUpdate(_Event):
    """Internal: a sub-team's conversation produced `post` (its item `item_id`); sent to the lead's."""

    type: Literal["subteam_update"] = "subteam_update"
    sub_id: str
    item_id: int
    post: Post


Event = Annotated[
    Start
    | HumanMessage
    | Approve
    | RunAll
    | EditCode
    | Rate
    | Skip
    | AllowHosts
    | KeepBlocked
    | Stop
    | PickSpeaker
    | Delegated
    | SubTeamUpdate,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
