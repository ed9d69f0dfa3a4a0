"""What the engine asks the chat platform to show; each platform renders these its own way."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field

from agentbot.conversation.code import CodeBlock, EgressReport


class AgentPost(BaseModel):
    """A message from an agent, in markdown, under the agent's name."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["agent"] = "agent"
    speaker: str
    text: str
    icon: str | None = None  # the agent's emoji (e.g. ":calendar:") when its team names one
    feedback_turn: int | None = None  # a final answer (its transcript entry): thumbs up / down buttons
    plan_ref: str | None = None  # a team turn the plan message `plan_ref` shows: posted only without it

    def answer(self, turn: int) -> AgentPost:
        """This message as the final answer `turn` of the transcript, which people can rate."""
        return AgentPost(speaker=self.speaker, text=self.text, icon=self.icon, feedback_turn=turn)


RunOutcome = Literal["approved", "moved", "run_all", "edited", "skipped", "stopped", "expired", "superseded"]


class Decision(BaseModel):
    """Who decided about a proposed run, how, and when."""

    model_config = ConfigDict(frozen=True)

    outcome: RunOutcome
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
    network: str = ""  # the network the run will have, in words (`egress.network_line`)
    editable: bool = False  # people may edit the code before it runs (one language: `edit.editable_code`)
    engine_down: str = ""  # the engine holding the workspace is down: offer to continue on another one


class ToolCallView(BaseModel):
    """One tool call as a card shows it: the tool, where it runs, and its arguments as pretty JSON."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    name: str
    server: str  # "python", or the MCP server's name
    arguments: str


class ToolApprovalPost(BaseModel):
    """Tool calls waiting for a person: each call, and Run / Skip / Stop until decided (as a code run)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["tool_approval"] = "tool_approval"
    run_id: str  # the round's id ("t1"): the buttons name it as a code card names its run
    code_hash: str  # the hash of the calls shown, so a click approves exactly these
    speaker: str
    calls: tuple[ToolCallView, ...]
    requested_by: str
    approvers: tuple[str, ...]
    expires_at: datetime
    decision: Decision | None = None


class ToolResultPost(BaseModel):
    """What one tool call returned (or the error it became), capped like code output."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["tool_result"] = "tool_result"
    run_id: str
    call_id: str
    name: str
    server: str
    text: str
    is_error: bool = False


class HostsDecision(BaseModel):
    """Who decided about blocked hosts, how, and when (no `user_id`: nobody decided in time)."""

    model_config = ConfigDict(frozen=True)

    outcome: Literal["allowed", "kept", "expired", "stopped"]
    user_id: str | None = None
    at: datetime


class HostsPost(BaseModel):
    """The hosts a run was refused: Allow and run again / Keep blocked until decided, then who decided."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["hosts"] = "hosts"
    run_id: str
    code_hash: str
    hosts: tuple[str, ...]
    approvers: tuple[str, ...]
    expires_at: datetime
    decision: HostsDecision | None = None


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
    egress: EgressReport | None = None  # hosts contacted and refused (None: the run had no egress proxy)
    run_all: bool = False  # run without a card, because Run all is on in the thread


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


class MeterPost(BaseModel):
    """The running cost of a conversation against its budget: posted once, then updated in place."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["meter"] = "meter"
    spent_usd: float
    budget_usd: float | None = None
    tokens: int = 0
    cost_known: bool = True  # False: a model's price is unknown, `spent_usd` counts only the others


TaskStatus = Literal["pending", "in_progress", "complete", "error"]


class PlanTask(BaseModel):
    """One step of a team's plan: an agent's turn, with its speaker, status and a short output."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    title: str
    status: TaskStatus = "complete"
    output: str = ""  # the turn's first words
    details: str = ""  # more of it, shown when the task is opened


class PlanPost(BaseModel):
    """A team's turns since people last acted, as one plan message (Slack: task and plan chunks).

    Posted at the first turn, updated with each one, and `done` once the team waits for people.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["plan"] = "plan"
    title: str
    tasks: tuple[PlanTask, ...]
    recipient: str  # the person the plan streams to (Slack asks for one in channels)
    done: bool = False


class SpeakerOption(BaseModel):
    """One agent the humans can give the word to."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    icon: str | None = None


class SpeakerChoicePostChanges(TypedDict, total=False):
    """The fields of `SpeakerChoicePost`, for `SpeakerChoicePost.evolve`."""

    kind: Literal["speaker_choice"]
    pick_id: str
    options: tuple[SpeakerOption, ...]
    suggested: str | None
    chosen: str | None
    chosen_by: str | None


class SpeakerChoicePost(BaseModel):
    """`manual` speaker selection: one button per agent until someone picks (then updated with the pick)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["speaker_choice"] = "speaker_choice"
    pick_id: str
    options: tuple[SpeakerOption, ...]
    suggested: str | None = None  # who would speak in round-robin order
    chosen: str | None = None
    chosen_by: str | None = None  # a user id; None with `chosen` set: a typed reply addressed the agent

    def evolve(self, **changes: Unpack[SpeakerChoicePostChanges]) -> SpeakerChoicePost:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)


class SubTeamPost(BaseModel):
    """One delegated sub-task, collapsed into a single message that is updated as the sub-team works."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["subteam"] = "subteam"
    sub_id: str
    subteam: str
    task: str
    status: Literal["pending", "running", "done", "failed", "cancelled"]
    members: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()  # the latest messages of the sub-team, shortened
    summary: str = ""
    cost_usd: float = 0.0
    detail_thread: str = ""  # `thread_ts` of the sub-conversation's key, to load its full transcript


class ReportPost(BaseModel):
    """A sub-team's result for its lead; never shown directly (the driver forwards it to the parent)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["report"] = "report"
    outcome: Literal["done", "failed"]
    summary: str
    note: str = ""
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0


Post = Annotated[
    AgentPost
    | ApprovalPost
    | ToolApprovalPost
    | ToolResultPost
    | HostsPost
    | ResultPost
    | UploadPost
    | NoticePost
    | EphemeralPost
    | MeterPost
    | PlanPost
    | SpeakerChoicePost
    | SubTeamPost
    | ReportPost,
    Field(discriminator="kind"),
]
