"""The teams file (TOML): teams, the default team, per-workspace and per-channel choices, egress lists.

Egress (what code runs may reach through the egress proxy) is set per channel and per team::

    [egress.channels]
    C0123456789 = ["data.internal:8080"]     # runs in this channel

    [teams.trio]
    allow_hosts = ["*.example.org"]          # runs of this team

Tools (AutoGen's `register_function`, and MCP servers) are given per agent; the servers and the
approval rules are top-level tables, shared by every team of the file::

    [[teams.trio.agents]]
    tools = ["pkg.module:function"]          # Python functions the agent may call
    mcp_servers = ["files"]                  # MCP servers whose tools it may call

    [tools."pkg.module:function"]
    approve = "never"                        # read-only: runs without a card ("always" is the default)

    [mcp_servers.files]                      # a stdio server: `command`, `args`, `env`
    command = "npx"
    args = ["-y", "@modelcontextprotocol/server-filesystem", "/srv/shared"]
    include = ["read_file", "list_directory"]    # only these of its tools (default: all)
    approve = { read_file = "never" }        # per tool; or `approve = "never"` for all of them

    [mcp_servers.search]                     # a streamable HTTP server
    url = "http://mcp.internal:8000/mcp"

Errors say which file and line they are about, with the line itself, e.g.::

    teams.toml:14: teams.analysts.speaker_selection: Input should be 'auto', 'round_robin' or 'manual'
        14 | speaker_selection = "random"

pydantic reports where a value is by its path (`teams.analysts.agents[1].name`); `key_lines` finds the
TOML line that sets that key (or the table or array entry around it, when the key is missing).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Self, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from agentbot.conversation.team import AGENT_NAME, PYTHON_TOOL, Agent, HostEntries, Team
from agentbot.conversation.tools import Approval, ToolSource
from agentbot.errors import ConfigError

Loc = tuple[str | int, ...]

_ARRAY_TABLE = re.compile(r"^\[\[\s*(.+?)\s*\]\]")
_TABLE = re.compile(r"^\[\s*(.+?)\s*\]")
_KEY_PART = r'(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')'
_KEY = re.compile(rf"^({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")
_DECODE_LINE = re.compile(r"\(at line (\d+), column \d+\)")


class Egress(BaseModel):
    """`[egress]`: hosts the runs of a channel's conversations may reach, on top of the workspace's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channels: dict[str, HostEntries] = Field(default_factory=dict)  # Slack channel id -> entries


class McpServer(BaseModel):
    """`[mcp_servers.NAME]`: a stdio `command` (with `args`, `env`) or a streamable HTTP `url`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    url: Annotated[str, StringConstraints(pattern=r"^https?://")] | None = None
    include: tuple[str, ...] = ()
    approve: Approval | dict[str, Approval] = "always"

    @model_validator(mode="after")
    def _one_transport(self) -> Self:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either `command` (a stdio server) or `url` (streamable HTTP), not both")
        if self.url is not None and (self.args or self.env):
            raise ValueError("`args` and `env` belong to a stdio server (`command`)")
        return self

    def source(self, name: str) -> ToolSource:
        return ToolSource(kind="mcp", name=name, **self.model_dump())


class ToolRule(BaseModel):
    """`[tools."pkg.module:function"]`: how calls of a Python tool are approved."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approve: Approval = "always"


ServerName = Annotated[str, StringConstraints(pattern=AGENT_NAME)]
ToolPath = Annotated[str, StringConstraints(pattern=PYTHON_TOOL)]


class TeamsFileChanges(TypedDict, total=False):
    """The fields of `TeamsFile` that its reader completes, for `TeamsFile.evolve`."""

    teams: dict[str, Team]


class TeamsFile(BaseModel):
    """What a teams file holds; `default`, `workspaces` and `channels` name teams."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: str | None = None
    workspaces: dict[str, str] = Field(default_factory=dict)  # Slack team (workspace) id -> team
    channels: dict[str, str] = Field(default_factory=dict)  # Slack channel id -> team
    teams: dict[str, Team] = Field(default_factory=dict)
    egress: Egress = Field(default_factory=Egress)
    mcp_servers: dict[ServerName, McpServer] = Field(default_factory=dict)
    tools: dict[ToolPath, ToolRule] = Field(default_factory=dict)

    def evolve(self, **changes: Unpack[TeamsFileChanges]) -> TeamsFile:
        """A copy with `changes`: unlike `model_copy(update=...)`, mypy checks every name and type."""
        return self.model_copy(update=changes)


def read_presets() -> TeamsFile:
    """The teams agentbot ships (`presets.toml` in this package)."""
    text = resources.files("agentbot.teams").joinpath("presets.toml").read_text(encoding="utf-8")
    return parse(text, "presets.toml")


def read_file(path: Path, known: Mapping[str, Team]) -> TeamsFile:
    """A teams file; its choices may name its own teams or `known` ones (the presets)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"AGENTBOT_TEAMS_FILE: cannot read {path}: {exc.strerror or exc}") from exc
    return parse(text, str(path), known=known)


def parse(text: str, source: str, *, known: Mapping[str, Team] | None = None) -> TeamsFile:
    """The teams of a TOML text; `ConfigError` naming `source`, line and key for anything wrong."""
    lines = text.splitlines()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _DECODE_LINE.search(str(exc))
        line = int(found.group(1)) if found else 0
        raise ConfigError(_problem(source, lines, line, _DECODE_LINE.sub("", str(exc)).strip())) from exc
    try:
        parsed = TeamsFile.model_validate(_named(raw))
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source, text)) from exc
    _check_choices(parsed, {**(known or {}), **parsed.teams}, source, text)
    return _with_toolboxes(parsed, source, text)


def _with_toolboxes(parsed: TeamsFile, source: str, text: str) -> TeamsFile:
    """Each team gets the sources of its agents' tools; an MCP server nobody defined is an error."""
    where, lines = key_lines(text), text.splitlines()
    problems: list[str] = []
    teams: dict[str, Team] = {}
    for name, team in parsed.teams.items():
        box: dict[str, ToolSource] = {}
        for loc, agent in _agents_at(name, team):
            box |= {path: ToolSource(kind="python", name=path, **_rule(parsed, path)) for path in agent.tools}
            for server in agent.mcp_servers:
                if server in parsed.mcp_servers:
                    box[server] = parsed.mcp_servers[server].source(server)
                    continue
                known = ", ".join(sorted(parsed.mcp_servers)) or "none"
                message = f"{_dotted((*loc, 'mcp_servers'))}: no MCP server named {server!r} ({known})"
                problems.append(_problem(source, lines, _line_of(where, (*loc, "mcp_servers")), message))
        teams[name] = team.evolve(toolbox=box) if box else team
    if problems:
        raise ConfigError("\n".join(problems))
    return parsed.evolve(teams=teams)


def _agents_at(name: str, team: Team) -> list[tuple[Loc, Agent]]:
    if team.lead is not None:
        return [(("teams", name, "lead"), team.lead)]
    return [(("teams", name, "agents", index), agent) for index, agent in enumerate(team.agents)]


def _rule(parsed: TeamsFile, path: str) -> dict[str, Approval]:
    rule = parsed.tools.get(path)
    return {"approve": rule.approve} if rule is not None else {}


def _named(raw: dict[str, Any]) -> dict[str, Any]:
    """Each team gets the name of its table (`[teams.analysts]` is the team `analysts`)."""
    teams = raw.get("teams")
    if isinstance(teams, dict):
        named = {n: {**t, "name": n} if isinstance(t, dict) else t for n, t in teams.items()}
        return {**raw, "teams": named}
    return raw


def _check_choices(parsed: TeamsFile, teams: Mapping[str, Team], source: str, text: str) -> None:
    choices: list[tuple[Loc, str]] = [(("default",), parsed.default)] if parsed.default else []
    choices += [(("workspaces", key), name) for key, name in parsed.workspaces.items()]
    choices += [(("channels", key), name) for key, name in parsed.channels.items()]
    where = key_lines(text)
    known = ", ".join(sorted(teams)) or "none"
    problems = [
        _problem(
            source,
            text.splitlines(),
            _line_of(where, loc),
            f"{_dotted(loc)}: no team named {name!r} ({known})",
        )
        for loc, name in choices
        if name not in teams
    ]
    if problems:
        raise ConfigError("\n".join(problems))


def _explain(exc: ValidationError, source: str, text: str) -> str:
    where, lines = key_lines(text), text.splitlines()
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        message = f"{_dotted(loc)}: {error['msg']}"
        if error["type"] not in ("missing", "model_type", "dict_type") and "input" in error:
            message += f" (got {_short(error['input'])})"
        problems.append(_problem(source, lines, _line_of(where, loc), message))
    return "\n".join(problems)


def _problem(source: str, lines: list[str], line: int, message: str) -> str:
    if not 0 < line <= len(lines):
        return f"{source}: {message}"
    return f"{source}:{line}: {message}\n    {line} | {lines[line - 1].strip()}"


def _line_of(where: Mapping[Loc, int], loc: Loc) -> int:
    """The line of `loc`, or of the nearest table or key around it; 0 when none is known."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in where:
            return where[loc[:end]]
    return 0


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "file"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


# ---------------------------------------------------------------- where each key is


def key_lines(text: str) -> dict[Loc, int]:
    """The line (1-based) that opens each table and sets each key, by its pydantic-style path."""
    where: dict[Loc, int] = {}
    arrays: dict[Loc, int] = {}  # array-of-tables path -> index of its latest entry
    table: Loc = ()
    in_string = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        starts_in_string = in_string
        in_string ^= (line.count('"""') + line.count("'''")) % 2 == 1
        if starts_in_string or not line or line.startswith("#"):
            continue
        if (match := _ARRAY_TABLE.match(line)) is not None:
            path = _resolve(_parts(match.group(1)), arrays)
            arrays[path] = arrays.get(path, -1) + 1
            table = (*path, arrays[path])
            where.setdefault(path, number)
        elif (match := _TABLE.match(line)) is not None:
            table = _resolve(_parts(match.group(1)), arrays)
        elif (match := _KEY.match(line)) is not None:
            where[(*table, *_parts(match.group(1)))] = number
            continue
        else:
            continue
        where[table] = number
    return where


def _resolve(parts: tuple[str, ...], arrays: Mapping[Loc, int]) -> Loc:
    """A header's path, with the latest index of each array of tables it goes through."""
    path: Loc = ()
    for position, part in enumerate(parts):
        path = (*path, part)
        if position < len(parts) - 1 and path in arrays:
            path = (*path, arrays[path])
    return path


def _parts(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in re.findall(rf"{_KEY_PART}", key))
