"""Agent teams as a conversation stores them: agents, the pattern that decides who speaks, sub-teams.

A conversation copies its team into its state when it starts, so editing the teams file later never
changes a conversation that is under way. `agentbot.teams` reads these models from TOML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Self, TypedDict, Unpack

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from agentbot.conversation import hosts
from agentbot.conversation.tools import ToolSource

AGENT_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
PYTHON_TOOL = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"  # `package.module:function`


def _entries(value: object) -> object:
    return hosts.parse_entries(value) if isinstance(value, list | tuple) else value


# Egress entries (`host`, `*.domain`, `host:port`), normalised; a bad one is a one-line ValueError.
HostEntries = Annotated[tuple[str, ...], BeforeValidator(_entries)]
Pattern = Literal["two_agent", "group_chat", "hierarchical"]
SpeakerSelection = Literal["auto", "round_robin", "manual"]


class Agent(BaseModel):
    """One agent: its name (what people address it by), role, model, and whether its code is run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=AGENT_NAME)]
    system_message: str = ""
    description: str = ""
    model: str | None = None  # None: the configured default model (AGENTBOT_MODEL)
    may_propose_code: bool = False
    icon: Annotated[str, Field(pattern=r"^:[a-z0-9_+'-]+:$")] | None = None  # a Slack emoji name
    tools: tuple[Annotated[str, Field(pattern=PYTHON_TOOL)], ...] = ()  # Python functions it may call
    mcp_servers: tuple[str, ...] = ()  # MCP servers (`[mcp_servers.NAME]`) whose tools it may call


class TeamChanges(TypedDict, total=False):
    """The fields of `Team`, for `Team.evolve`."""

    name: str
    description: str
    pattern: Pattern
    agents: tuple[Agent, ...]
    lead: Agent | None
    subteams: dict[str, Team]
    speaker_selection: SpeakerSelection
    max_round: int
    proxy_name: Annotated[str, Field(pattern=AGENT_NAME)]
    human_input_mode: Literal["ALWAYS", "TERMINATE", "NEVER"] | None
    code_approval: Literal["always", "never"] | None
    max_consecutive_auto_reply: int | None
    max_turns: int | None
    max_cost_usd: float | None
    allow_hosts: HostEntries
    toolbox: dict[str, ToolSource]


class Team(BaseModel):
    """A team and its pattern; the rules below override the settings for its conversations."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = ""
    description: str = ""
    pattern: Pattern = "two_agent"
    agents: tuple[Agent, ...] = ()
    lead: Agent | None = None
    subteams: dict[str, Team] = Field(default_factory=dict)
    speaker_selection: SpeakerSelection = "auto"
    max_round: int = Field(10, gt=0)
    proxy_name: Annotated[str, Field(pattern=AGENT_NAME)] = "user_proxy"
    human_input_mode: Literal["ALWAYS", "TERMINATE", "NEVER"] | None = None
    code_approval: Literal["always", "never"] | None = None
    max_consecutive_auto_reply: int | None = Field(None, ge=0)
    max_turns: int | None = Field(None, gt=0)
    max_cost_usd: float | None = Field(None, gt=0)
    allow_hosts: HostEntries = ()  # what its runs may reach through the egress proxy
    # Where its agents' tools come from, by `ToolSource.name`: filled by the teams file's reader from
    # the agents' `tools` and the file's `[tools."pkg.module:function"]` and `[mcp_servers.NAME]`.
    toolbox: dict[str, ToolSource] = Field(default_factory=dict)

    def evolve(self, **changes: Unpack[TeamChanges]) -> Team:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)

    @model_validator(mode="after")
    def _fits_pattern(self) -> Self:
        if self.pattern == "hierarchical":
            _check_hierarchical(self)
        elif self.lead is not None or self.subteams:
            raise ValueError("`lead` and `subteams` belong to pattern = 'hierarchical'")
        elif self.pattern == "two_agent" and len(self.agents) != 1:
            raise ValueError(
                "a two_agent team has exactly one agent (the assistant; the executor is built in)"
            )
        elif self.pattern == "group_chat" and not self.agents:
            raise ValueError("a group_chat team needs at least one agent")
        names = [agent.name.lower() for agent in self.members] + [self.proxy_name.lower()]
        if len(set(names)) != len(names):
            raise ValueError(f"agent names must be unique (the executor is {self.proxy_name!r})")
        return self

    @property
    def members(self) -> tuple[Agent, ...]:
        """The agents who speak: the lead of a hierarchy, else the agents."""
        return (self.lead,) if self.lead is not None else self.agents

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(agent.name for agent in self.members)

    def agent(self, name: str) -> Agent | None:
        """The member called `name` (case-insensitive), if any."""
        return next((agent for agent in self.members if agent.name.lower() == name.lower()), None)

    def tools_of(self, agent: Agent) -> tuple[ToolSource, ...]:
        """The sources of `agent`'s tools, in the order it names them (Python functions first)."""
        names = (*agent.tools, *agent.mcp_servers)
        return tuple(self.toolbox[name] for name in names if name in self.toolbox)


def _check_hierarchical(team: Team) -> None:
    if team.lead is None or not team.subteams:
        raise ValueError("a hierarchical team needs a `lead` agent and at least one entry in `subteams`")
    if team.agents:
        raise ValueError("a hierarchical team has a `lead` and `subteams`, not `agents`")
    for name, sub in team.subteams.items():
        if sub.pattern == "hierarchical" or (sub.speaker_selection == "manual" and len(sub.members) > 1):
            raise ValueError(f"sub-team {name!r}: sub-teams run on their own (no hierarchy, no manual pick)")
        if any(agent.may_propose_code for agent in sub.members):
            raise ValueError(f"sub-team {name!r}: agents of sub-teams cannot run code (may_propose_code)")
        if any(agent.tools or agent.mcp_servers for agent in sub.members):
            raise ValueError(f"sub-team {name!r}: agents of sub-teams cannot call tools (nobody approves)")


@dataclass(frozen=True)
class TeamChoice:
    """The team a new conversation gets (None: the built-in assistant + user proxy of the settings)."""

    team: Team | None = None
    notice: str | None = None  # said in the thread when the choice differs from what was asked
    allow_hosts: tuple[str, ...] = ()  # the channel's and the team's egress entries
