"""Tools in the teams file: Python functions and MCP servers per agent, approval rules, and mistakes."""

from __future__ import annotations

import pytest

from agentbot.conversation.state import ConversationKey
from agentbot.conversation.tools import ToolSource
from agentbot.errors import ConfigError
from agentbot.teams.catalog import Catalog
from agentbot.teams.config import parse, read_presets

TOOLS = """\
[teams.desk]
[[teams.desk.agents]]
name = "analyst"
tools = ["agentbot.tools.examples:summary_stats", "statistics:fmean"]
mcp_servers = ["files", "search"]

[tools."statistics:fmean"]
approve = "never"

[mcp_servers.files]
command = "npx"
args = ["-y", "server-filesystem", "/srv"]
env = { LOG = "quiet" }
include = ["read_file"]
approve = { read_file = "never" }

[mcp_servers.search]
url = "http://127.0.0.1:9/mcp"
approve = "never"
"""


def test_an_agents_tools_come_with_its_team() -> None:
    team = parse(TOOLS, "teams.toml").teams["desk"]
    agent = team.agents[0]
    sources = team.tools_of(agent)
    assert [s.name for s in sources] == [
        "agentbot.tools.examples:summary_stats",
        "statistics:fmean",
        "files",
        "search",
    ]
    stats, fmean, files, search = sources
    assert stats == ToolSource(kind="python", name="agentbot.tools.examples:summary_stats")
    assert (stats.approval("summary_stats"), fmean.approval("fmean")) == ("always", "never")
    assert files.command == "npx" and files.args == ("-y", "server-filesystem", "/srv")
    assert files.env == {"LOG": "quiet"} and files.include == ("read_file",)
    assert (files.approval("read_file"), files.approval("write_file")) == ("never", "always")
    assert search.url == "http://127.0.0.1:9/mcp" and search.approval("anything") == "never"
    assert (files.server, stats.server) == ("files", "python")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            '[teams.t]\n[[teams.t.agents]]\nname = "a"\nmcp_servers = ["nope"]\n',
            "teams.toml:4: teams.t.agents[0].mcp_servers: no MCP server named 'nope' (none)",
        ),
        (
            '[teams.t]\n[[teams.t.agents]]\nname = "a"\ntools = ["not a path"]\n',
            "teams.toml:4: teams.t.agents[0].tools[0]: String should match pattern",
        ),
        (
            '[mcp_servers.x]\ncommand = "a"\nurl = "http://h/mcp"\n',
            "teams.toml:1: mcp_servers.x: Value error, give either `command`",
        ),
        ("[mcp_servers.x]\nargs = []\n", "mcp_servers.x: Value error, give either `command`"),
        (
            '[mcp_servers.x]\ncommand = "a"\napprove = "sometimes"\n',
            "teams.toml:3: mcp_servers.x.approve",
        ),
        ('[tools."m:f"]\napprove = "maybe"\n', "teams.toml:2: tools.m:f.approve: Input should be 'always'"),
    ],
)
def test_a_tool_mistake_names_file_line_and_key(text: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, "teams.toml")
    assert said in str(caught.value)


def test_sub_teams_cannot_call_tools() -> None:
    text = """\
[teams.h]
pattern = "hierarchical"
[teams.h.lead]
name = "lead"
[teams.h.subteams.s]
[[teams.h.subteams.s.agents]]
name = "worker"
tools = ["m:f"]
"""
    with pytest.raises(ConfigError, match="agents of sub-teams cannot call tools"):
        parse(text, "teams.toml")


def test_the_analyst_preset_has_an_example_tool_and_teams_lists_it() -> None:
    presets = read_presets()
    analyst = presets.teams["analyst"]
    sources = analyst.tools_of(analyst.agents[0])
    assert [s.name for s in sources] == [
        "agentbot.tools.examples:summary_stats",
        "agentbot.tools.examples:percent_change",
    ]
    assert [s.approval(s.name.rpartition(":")[2]) for s in sources] == ["always", "never"]
    listing = Catalog(teams=presets.teams).describe()
    assert "analyst tools: summary_stats, percent_change" in listing
    choice = Catalog(teams=presets.teams).choose(
        ConversationKey(team_id="T", channel_id="C", thread_ts="1"), "analyst"
    )
    assert choice.team is not None and choice.team.toolbox
