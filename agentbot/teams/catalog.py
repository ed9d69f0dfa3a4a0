"""Which team a conversation gets: asked for by name (`team:<name>`), else the channel's, else the default."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agentbot.conversation.state import ConversationKey
from agentbot.conversation.team import Team, TeamChoice
from agentbot.teams.config import read_file, read_presets

_PREFIX = re.compile(r"^\s*team\s*[:=]\s*([A-Za-z0-9_-]+)[\s,.:;]*", re.IGNORECASE)
_BUILT_IN = "the built-in assistant and user proxy"


def split_team_prefix(text: str) -> tuple[str | None, str]:
    """`"team:analysts plot sales"` -> `("analysts", "plot sales")`; text without a prefix is unchanged."""
    match = _PREFIX.match(text)
    if match is None:
        return None, text
    return match.group(1), text[match.end() :].strip()


@dataclass(frozen=True)
class Catalog:
    """The teams people can choose from, and the defaults per workspace and per channel."""

    teams: Mapping[str, Team] = field(default_factory=dict)
    default: str | None = None  # None: the built-in pair of the settings
    workspaces: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)
    channel_hosts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # `[egress.channels]`

    def choose(self, key: ConversationKey, requested: str | None) -> TeamChoice:
        """`requested` if there is such a team; else the channel's, the workspace's, or the default.

        The choice carries the egress entries of the channel and of the chosen team.
        """
        fallback = self.default_for(key)
        team = self.find(requested) if requested is not None else fallback
        notice = None
        if team is None and requested is not None:
            team, notice = fallback, self._missing(requested, fallback)
        team_hosts = team.allow_hosts if team is not None else ()
        allow = tuple(dict.fromkeys((*self.channel_hosts.get(key.channel_id, ()), *team_hosts)))
        return TeamChoice(team=team, notice=notice, allow_hosts=allow)

    def _missing(self, requested: str, fallback: Team | None) -> str:
        who = f"the {fallback.name} team" if fallback is not None else _BUILT_IN
        return f"There is no team called “{requested}”, so {who} answers. Teams: {', '.join(self.teams)}."

    def default_for(self, key: ConversationKey) -> Team | None:
        name = self.channels.get(key.channel_id) or self.workspaces.get(key.team_id) or self.default
        return self.teams.get(name) if name else None

    def find(self, name: str) -> Team | None:
        """The team called `name`, ignoring case."""
        return next((team for key, team in self.teams.items() if key.lower() == name.lower()), None)

    def describe(self) -> str:
        """Every team and its members, in markdown (for a `teams` request from the chat)."""
        return "\n".join(_describe(name, team, name == self.default) for name, team in self.teams.items())


def _describe(name: str, team: Team, is_default: bool) -> str:
    marker = " (default)" if is_default else ""
    head = f"**{name}**{marker} — {team.pattern.replace('_', ' ')}: {team.description}".rstrip(": ")
    members = ", ".join(team.names)
    if team.pattern == "hierarchical":
        subs = "; ".join(f"{sub_name}: {', '.join(sub.names)}" for sub_name, sub in team.subteams.items())
        return f"{head}\n    lead {members}; sub-teams {subs}{_tools_lines(team)}"
    if team.pattern == "group_chat":
        return (
            f"{head}\n    {members} ({team.speaker_selection.replace('_', ' ')}, max_round {team.max_round})"
            + _tools_lines(team)
        )
    return f"{head}\n    {members} + {team.proxy_name}{_tools_lines(team)}"


def _tools_lines(team: Team) -> str:
    """One line per agent with tools: the Python functions and MCP servers it may call."""
    lines = []
    for agent in team.members:
        names = [path.rpartition(":")[2] for path in agent.tools]
        names += [f"{server} (MCP server)" for server in agent.mcp_servers]
        if names:
            lines.append(f"\n    {agent.name} tools: {', '.join(names)}")
    return "".join(lines)


def load_catalog(path: Path | None) -> Catalog:
    """The shipped presets, plus the teams and choices of the file at `path` (`AGENTBOT_TEAMS_FILE`)."""
    presets = read_presets()
    if path is None:
        return Catalog(teams=presets.teams)
    file = read_file(path, presets.teams)
    return Catalog(
        teams={**presets.teams, **file.teams},
        default=file.default,
        workspaces=file.workspaces,
        channels=file.channels,
        channel_hosts=file.egress.channels,
    )
