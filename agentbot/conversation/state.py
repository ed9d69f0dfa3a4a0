"""The stored state of one conversation: transcript, phase, pending run, counters, usage, outbox."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentbot.conversation.code import CodeBlock, EgressGrant
from agentbot.conversation.events import FileRef
from agentbot.conversation.llm import ToolCall
from agentbot.conversation.posts import PlanTask, Post
from agentbot.conversation.team import Team
from agentbot.conversation.tools import ToolRound

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class ConversationKeyChanges(TypedDict, total=False):
    """The fields of `ConversationKey`, for `ConversationKey.evolve`."""

    team_id: str
    channel_id: str
    thread_ts: str


class ConversationKey(BaseModel):
    """Where a conversation lives: one thread of one channel of one workspace."""

    model_config = ConfigDict(frozen=True)

    team_id: str
    channel_id: str
    thread_ts: str

    def evolve(self, **changes: Unpack[ConversationKeyChanges]) -> ConversationKey:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)

    @property
    def id(self) -> str:
        """Readable and unique: used in Redis keys and logs."""
        return f"{self.team_id}:{self.channel_id}:{self.thread_ts}"

    @property
    def slug(self) -> str:
        """Only letters, digits, `_` and `-`: safe for RQ job ids, Docker names and file names."""
        return "-".join(_UNSAFE.sub("_", part) for part in (self.team_id, self.channel_id, self.thread_ts))


class HumanInputMode(StrEnum):
    """AutoGen 0.2's `human_input_mode`, with the same meaning."""

    ALWAYS = "ALWAYS"
    TERMINATE = "TERMINATE"
    NEVER = "NEVER"


class CodeApproval(StrEnum):
    """Whether a person must approve each code run."""

    ALWAYS = "always"
    NEVER = "never"


# The rules a team definition may set for its conversations (see `Team`).
_TEAM_RULES = ("human_input_mode", "code_approval", "max_consecutive_auto_reply", "max_turns", "max_cost_usd")


class PolicyChanges(TypedDict, total=False):
    """The fields of `Policy`, for `Policy.evolve`."""

    human_input_mode: HumanInputMode
    code_approval: CodeApproval
    max_consecutive_auto_reply: int
    max_turns: int | None
    approval_ttl_seconds: int
    approvers: tuple[str, ...]
    assistant_name: str
    proxy_name: str
    system_message: str
    max_cost_usd: float | None


class Policy(BaseModel):
    """The rules of one conversation, fixed when it starts (from settings or the team)."""

    model_config = ConfigDict(frozen=True)

    human_input_mode: HumanInputMode = HumanInputMode.TERMINATE
    code_approval: CodeApproval = CodeApproval.ALWAYS
    max_consecutive_auto_reply: int = 10
    max_turns: int | None = None
    approval_ttl_seconds: int = 3600
    approvers: tuple[str, ...] = ()
    assistant_name: str = "assistant"
    proxy_name: str = "user_proxy"
    system_message: str = ""
    max_cost_usd: float | None = None

    def evolve(self, **changes: Unpack[PolicyChanges]) -> Policy:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)

    @property
    def needs_approval(self) -> bool:
        return self.code_approval is CodeApproval.ALWAYS or self.human_input_mode is HumanInputMode.ALWAYS

    def for_team(self, team: Team) -> Policy:
        """These rules with the team's: its first speaker as the assistant, its overrides applied."""
        first = team.members[0]
        updates: dict[str, object] = {"assistant_name": first.name, "proxy_name": team.proxy_name}
        if first.system_message:
            updates["system_message"] = first.system_message
        for name in _TEAM_RULES:
            value = getattr(team, name)
            if value is not None:
                updates[name] = value
        return Policy.model_validate({**self.model_dump(), **updates})


class Phase(StrEnum):
    """What the conversation needs next."""

    THINKING = "thinking"  # an LLM reply
    AWAITING_APPROVAL = "awaiting_approval"  # a person to click Run / Skip / Stop
    RUNNING = "running"  # an approved code run
    AWAITING_TOOLS = "awaiting_tools"  # a person to click Run / Skip / Stop on a tool-call card
    CALLING_TOOLS = "calling_tools"  # tool calls that need no (more) approval, to be made
    IMPORTING = "importing"  # shared files to be copied into the workspace
    AWAITING_HUMAN = "awaiting_human"  # a person to reply
    AWAITING_PICK = "awaiting_pick"  # a person to pick the next speaker (group chat, `manual`)
    AWAITING_HOSTS = "awaiting_hosts"  # a person to allow the hosts a run was refused, or keep them blocked
    DELEGATING = "delegating"  # sub-teams to be started (hierarchical)
    AWAITING_SUBTEAMS = "awaiting_subteams"  # sub-teams to report back, each in its own conversation
    FINISHED = "finished"  # nothing, until someone mentions the bot again


class Message(BaseModel):
    """One transcript entry, with its speaker (agent name, or a person's name).

    An agent's message may carry the `tool_calls` it proposed; each result is a `tool` message
    answering one of them by `tool_call_id`.
    """

    model_config = ConfigDict(frozen=True)

    speaker: str
    role: Literal["assistant", "user", "tool"]
    content: str
    kind: Literal["agent", "human", "execution", "auto", "context", "subteam", "tool"] = "agent"
    author_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


class Vote(BaseModel):
    """One person's thumbs up or down on an agent's final answer (the transcript entry `turn`)."""

    model_config = ConfigDict(frozen=True)

    turn: int
    user_id: str
    vote: Literal["up", "down"]
    at: datetime


RunStatus = Literal["awaiting_approval", "approved", "running", "done", "skipped", "cancelled", "expired"]


class PendingRunChanges(TypedDict, total=False):
    """The fields of `PendingRun`, for `PendingRun.evolve`."""

    run_id: str
    blocks: tuple[CodeBlock, ...]
    code_hash: str
    requested_by: str
    approvers: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    status: RunStatus
    decided_by: str | None
    by_run_all: bool
    engine_down: str


class PendingRun(BaseModel):
    """A code run the assistant proposed: checked server-side against every click."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    blocks: tuple[CodeBlock, ...]
    code_hash: str
    requested_by: str
    approvers: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    status: RunStatus = "awaiting_approval"
    decided_by: str | None = None
    by_run_all: bool = False  # approved without a card, because Run all is on
    engine_down: str = ""  # the engine holding the workspace did not answer: the card offers to move

    def evolve(self, **changes: Unpack[PendingRunChanges]) -> PendingRun:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)


AskStatus = Literal["open", "allowed", "kept", "expired", "stopped"]


class HostsAskChanges(TypedDict, total=False):
    """The fields of `HostsAsk`, for `HostsAsk.evolve`."""

    run_id: str
    blocks: tuple[CodeBlock, ...]
    code_hash: str
    hosts: tuple[str, ...]
    blocked: tuple[str, ...]
    approvers: tuple[str, ...]
    held: str
    created_at: datetime
    expires_at: datetime
    status: AskStatus
    decided_by: str | None


class HostsAsk(BaseModel):
    """A run the egress proxy refused hosts to, waiting for people: allow them and run again, or not.

    `held` is the run's result in AutoGen's words; the assistant gets it only once the hosts are kept
    blocked (by a click, a reply, or the approval TTL). Allowing is checked like a Run click.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str  # the refused run; also names the card and the delayed expiry step
    blocks: tuple[CodeBlock, ...]
    code_hash: str
    hosts: tuple[str, ...]  # what people may allow, named as in `hosts.name`
    blocked: tuple[str, ...]  # everything the proxy refused (a superset of `hosts`)
    approvers: tuple[str, ...]
    held: str
    created_at: datetime
    expires_at: datetime
    status: AskStatus = "open"
    decided_by: str | None = None

    def evolve(self, **changes: Unpack[HostsAskChanges]) -> HostsAsk:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)

    def closed(self, status: AskStatus, user_id: str | None) -> HostsAsk:
        return self.evolve(status=status, decided_by=user_id)


ThreadAllow = Literal["public", "any", "none"]


class EgressStateChanges(TypedDict, total=False):
    """The fields of `EgressState`, for `EgressState.evolve`."""

    network: str
    operator_hosts: tuple[str, ...]
    thread_hosts: tuple[str, ...]
    thread_allow: ThreadAllow


class EgressState(BaseModel):
    """What a conversation's runs may reach through the egress proxy, and who may widen it.

    `operator_hosts` are the operator's entries for this conversation (workspace, channel and team
    lists and the package index), fixed when it starts; `thread_hosts` are what people allowed in the
    thread. `thread_allow` (AGENTBOT_SANDBOX_THREAD_ALLOW) decides what people may open: `public` hosts,
    `any` exact `host:port` (private and Docker-host addresses too), or `none`.
    """

    model_config = ConfigDict(frozen=True)

    network: str = "none"  # the sandbox network mode: `proxy`, `none` or `bridge`
    operator_hosts: tuple[str, ...] = ()
    thread_hosts: tuple[str, ...] = ()
    thread_allow: ThreadAllow = "public"

    def evolve(self, **changes: Unpack[EgressStateChanges]) -> EgressState:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)

    def with_operator_hosts(self, entries: tuple[str, ...]) -> EgressState:
        """These lists with more operator entries (a channel's, a team's) added after the others."""
        merged = tuple(dict.fromkeys((*self.operator_hosts, *entries)))
        return self.evolve(operator_hosts=merged)

    def allowing(self, entries: tuple[str, ...]) -> EgressState:
        """These lists with `entries` allowed by people in the thread."""
        return self.evolve(thread_hosts=tuple(dict.fromkeys((*self.thread_hosts, *entries))))

    def grant(self) -> EgressGrant:
        """What the next run may reach: exact operator entries (and `any` thread ones) open private ones."""
        exact = tuple(entry for entry in self.operator_hosts if not entry.startswith("*."))
        thread_exact = self.thread_hosts if self.thread_allow == "any" else ()
        return EgressGrant(
            hosts=tuple(dict.fromkeys((*self.operator_hosts, *self.thread_hosts))),
            private_hosts=tuple(dict.fromkeys((*exact, *thread_exact))),
            people_may_open_private=self.thread_allow == "any",
        )


class ModelUsage(BaseModel):
    """Tokens and cost spent on one model, like the usage in AutoGen's `ChatResult.cost`."""

    model_config = ConfigDict(frozen=True)

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0  # calls to a model of unknown price: their cost is not in cost_usd


DelegationStatus = Literal["pending", "running", "done", "failed", "cancelled"]


class DelegationChanges(TypedDict, total=False):
    """The fields of `Delegation`, for `Delegation.evolve`."""

    sub_id: str
    subteam: str
    task: str
    status: DelegationStatus
    lines: tuple[str, ...]
    summary: str
    cost_usd: float
    seen_item: int


class Delegation(BaseModel):
    """A sub-task the lead handed to a sub-team, which works on it in its own conversation."""

    model_config = ConfigDict(frozen=True)

    sub_id: str
    subteam: str
    task: str
    status: DelegationStatus = "pending"
    lines: tuple[str, ...] = ()
    summary: str = ""
    cost_usd: float = 0.0
    seen_item: int = 0  # the last update applied: updates are delivered at least once

    def evolve(self, **changes: Unpack[DelegationChanges]) -> Delegation:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)


class OutboxItemChanges(TypedDict, total=False):
    """The fields of `OutboxItem`, for `OutboxItem.evolve`."""

    item_id: int
    post: Post
    ref: str | None
    update_ref: str | None
    status: Literal["pending", "sending"]
    live_message: str


class OutboxItem(BaseModel):
    """A post the engine decided on; delivered (and marked sent) by the driver, exactly once."""

    model_config = ConfigDict(frozen=True)

    item_id: int
    post: Post
    ref: str | None = None  # a name to remember the platform's message id under (e.g. "card:<run>")
    update_ref: str | None = None  # update that earlier message instead of posting a new one
    status: Literal["pending", "sending"] = "pending"
    live_message: str = ""  # the post was shown in this message as it was written: delivering finishes it

    def evolve(self, **changes: Unpack[OutboxItemChanges]) -> OutboxItem:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)


class LiveReplyChanges(TypedDict, total=False):
    """The fields of `LiveReply`, for `LiveReply.evolve`."""

    item_id: int
    message_id: str
    cut_off: bool
    after_event: str


class LiveReply(BaseModel):
    """An agent reply shown in the thread while the model writes it, before the engine has it.

    Saved before any of its text is shown (with `message_id` once the platform gave one), so a step
    retried after its worker died finds the message: says in it that it was cut off, then rewrites it
    with the new reply instead of opening a second one.
    """

    model_config = ConfigDict(frozen=True)

    item_id: int  # the outbox item the reply becomes (its effect id)
    message_id: str = ""  # "" while the message is being opened
    cut_off: bool = False  # its worker died mid-reply; the message says so until it is rewritten
    after_event: str = (
        "0-0"  # the last inbox event applied when it opened: a retry with newer ones starts anew
    )

    def evolve(self, **changes: Unpack[LiveReplyChanges]) -> LiveReply:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)


_TEAM_FIELDS = ("team", "next_speaker", "pick_seq", "delegations", "delegation_seq", "parent", "sub_id")
# (`plan` and `plan_seq` came after `Teamwork`: they were never stored flat.)


class TeamworkChanges(TypedDict, total=False):
    """The fields of `Teamwork`, for `Teamwork.evolve`."""

    team: Team | None
    next_speaker: str | None
    pick_seq: int
    delegations: tuple[Delegation, ...]
    delegation_seq: int
    parent: ConversationKey | None
    sub_id: str
    plan: tuple[PlanTask, ...]
    plan_seq: int


class Teamwork(BaseModel):
    """An agent team's progress in one conversation: who speaks next, picks, delegations, its lead."""

    model_config = ConfigDict(frozen=True)

    team: Team | None = None  # None: the assistant + user proxy of the settings
    next_speaker: str | None = None  # the agent who speaks next, when already decided
    pick_seq: int = 0
    delegations: tuple[Delegation, ...] = ()
    delegation_seq: int = 0
    parent: ConversationKey | None = None  # set on a sub-team's conversation: its lead's
    sub_id: str = ""
    plan: tuple[PlanTask, ...] = ()  # the turns since people last acted (`plan.py`)
    plan_seq: int = 0  # plan messages shown so far; the open one is `plan:<plan_seq>`

    def evolve(self, **changes: Unpack[TeamworkChanges]) -> Teamwork:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)


class ConversationStateChanges(TypedDict, total=False):
    """The fields of `ConversationState`, for `ConversationState.evolve`."""

    key: ConversationKey
    version: int
    created_at: datetime
    updated_at: datetime
    starter_id: str
    policy: Policy
    phase: Phase
    transcript: tuple[Message, ...]
    run: PendingRun | None
    run_seq: int
    auto_replies: int
    turns: int
    usage: dict[str, ModelUsage]
    pending_files: tuple[FileRef, ...]
    workspace_files: tuple[str, ...]
    last_event_id: str
    outbox: tuple[OutboxItem, ...]
    next_item_id: int
    message_refs: dict[str, str]
    metered: bool
    teamwork: Teamwork
    egress: EgressState
    hosts_ask: HostsAsk | None
    run_all_by: str | None
    votes: tuple[Vote, ...]
    tool_round: ToolRound | None
    tool_seq: int
    live: LiveReply | None
    sandbox_engine: str
    engines_left: tuple[str, ...]


class ConversationState(BaseModel):
    """Everything about one conversation; stored as JSON under its key between steps."""

    model_config = ConfigDict(frozen=True)

    key: ConversationKey
    version: int = 0
    created_at: datetime
    updated_at: datetime
    starter_id: str
    policy: Policy
    phase: Phase = Phase.THINKING
    transcript: tuple[Message, ...] = ()
    run: PendingRun | None = None
    run_seq: int = 0
    auto_replies: int = 0
    turns: int = 0
    usage: dict[str, ModelUsage] = Field(default_factory=dict)
    pending_files: tuple[FileRef, ...] = ()
    workspace_files: tuple[str, ...] = ()
    last_event_id: str = "0-0"
    outbox: tuple[OutboxItem, ...] = ()
    next_item_id: int = 1
    message_refs: dict[str, str] = Field(default_factory=dict)
    metered: bool = False  # the cost meter message has been posted (later ones update it)
    teamwork: Teamwork = Field(default_factory=Teamwork)  # the agent team's own progress
    egress: EgressState = Field(default_factory=EgressState)  # network of the runs (egress proxy lists)
    hosts_ask: HostsAsk | None = None  # the latest run refused hosts that people could allow
    run_all_by: str | None = None  # who turned on Run all: later proposals run without a card
    votes: tuple[Vote, ...] = ()  # feedback on final answers, one per person and answer
    tool_round: ToolRound | None = None  # tool calls proposed and not yet all answered
    tool_seq: int = 0
    live: LiveReply | None = None  # an agent reply being shown as the model writes it
    sandbox_engine: str = ""  # the Docker engine holding the workspace ("" until its first sandbox action)
    engines_left: tuple[str, ...] = ()  # engines people moved the conversation away from (they were down)

    def evolve(self, **changes: Unpack[ConversationStateChanges]) -> ConversationState:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)

    def evolve_team(self, **changes: Unpack[TeamworkChanges]) -> ConversationState:
        """A copy whose `teamwork` has `changes`."""
        return self.evolve(teamwork=self.teamwork.evolve(**changes))

    @model_validator(mode="before")
    @classmethod
    def _nest_team_fields(cls, data: Any) -> Any:
        """Team fields given flat (states stored before `teamwork`, or keyword arguments) move into it."""
        if not isinstance(data, dict) or not any(name in data for name in _TEAM_FIELDS):
            return data
        data = dict(data)
        nested = data.get("teamwork") or {}
        nested = dict(nested) if isinstance(nested, dict) else nested.model_dump()
        nested.update({name: data.pop(name) for name in _TEAM_FIELDS if name in data})
        data["teamwork"] = nested
        return data

    # Shorthands for reading the team's progress (changes go through `evolve_team`).
    @property
    def team(self) -> Team | None:
        return self.teamwork.team

    @property
    def next_speaker(self) -> str | None:
        return self.teamwork.next_speaker

    @property
    def pick_seq(self) -> int:
        return self.teamwork.pick_seq

    @property
    def delegations(self) -> tuple[Delegation, ...]:
        return self.teamwork.delegations

    @property
    def delegation_seq(self) -> int:
        return self.teamwork.delegation_seq

    @property
    def parent(self) -> ConversationKey | None:
        return self.teamwork.parent

    @property
    def sub_id(self) -> str:
        return self.teamwork.sub_id

    @property
    def needs_approval(self) -> bool:
        """Whether a proposed effect (a code run, a tool call) waits for a person: Run all skips that.

        Hosts the egress proxy refused are never covered: they always ask (`engine._ask_hosts`).
        """
        return self.policy.needs_approval and self.run_all_by is None

    @property
    def feedback_counts(self) -> dict[str, int]:
        """Thumbs up and down on this conversation's answers, counted."""
        return {vote: sum(v.vote == vote for v in self.votes) for vote in ("up", "down")}

    @property
    def total_cost_usd(self) -> float:
        return sum(u.cost_usd for u in self.usage.values())

    @property
    def cost_known(self) -> bool:
        """False once a model of unknown price was used: `total_cost_usd` is then a lower bound."""
        return not any(u.unpriced_calls for u in self.usage.values())

    @property
    def total_tokens(self) -> int:
        return sum(u.prompt_tokens + u.completion_tokens for u in self.usage.values())

    @property
    def summary(self) -> str:
        """AutoGen's default `summary_method="last_msg"`: the last agent message, TERMINATE stripped."""
        for message in reversed(self.transcript):
            if message.kind == "agent":
                return message.content.rstrip().removesuffix("TERMINATE").rstrip()
        return ""
