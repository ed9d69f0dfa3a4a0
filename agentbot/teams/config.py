"""The teams file (TOML): teams, the default team, per-workspace and per-channel choices, egress lists.

Egress (what code runs may reach through the egress proxy) is set per channel and per team::

    [egress.channels]
    C0123456789 = ["data.internal:8080"]     # runs in this channel

    [teams.trio]
    allow_hosts = ["*.example.org"]          # runs of this team

Reserved for tools and MCP servers (not accepted yet; planned names, so that one schema serves both)::

    [[teams.trio.agents]]
    tools = ["pkg.module:function"]          # Python functions the agent may call
    mcp_servers = ["NAME"]                   # MCP servers whose tools it may call

    [mcp_servers.NAME]                       # `command`, `args`, `env` (stdio) or `url`, and `include`

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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentbot.conversation.team import HostEntries, Team
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


class TeamsFile(BaseModel):
    """What a teams file holds; `default`, `workspaces` and `channels` name teams."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: str | None = None
    workspaces: dict[str, str] = Field(default_factory=dict)  # Slack team (workspace) id -> team
    channels: dict[str, str] = Field(default_factory=dict)  # Slack channel id -> team
    teams: dict[str, Team] = Field(default_factory=dict)
    egress: Egress = Field(default_factory=Egress)


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
    return parsed


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
