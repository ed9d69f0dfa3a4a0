"""The teams file: presets, validation with file and line context, and the choice of team."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentbot.conversation.state import ConversationKey
from agentbot.errors import ConfigError
from agentbot.settings import load_settings
from agentbot.teams import Catalog, load_catalog, parse, split_team_prefix
from agentbot.teams.config import key_lines

GOOD = """\
default = "trio"

[channels]
C_PM = "project_manager"

[teams.trio]
pattern = "group_chat"
speaker_selection = "manual"

[[teams.trio.agents]]
name = "planner"

[[teams.trio.agents]]
name = "writer"
system_message = \"\"\"
Write.
name = "not a key"
\"\"\"
"""


def test_presets_ship_one_team_per_pattern() -> None:
    catalog = load_catalog(None)
    assert {name: team.pattern for name, team in catalog.teams.items()} == {
        "coder": "two_agent",
        "analyst": "two_agent",
        "translate_summarize": "group_chat",
        "project_manager": "hierarchical",
    }
    pm = catalog.teams["project_manager"]
    assert list(pm.subteams) == ["timeline", "budget", "staffing"]
    assert catalog.default is None  # without a teams file, the settings' pair answers


def test_a_teams_file_adds_teams_and_may_name_presets(tmp_path: Path) -> None:
    path = tmp_path / "teams.toml"
    path.write_text(GOOD, encoding="utf-8")
    catalog = load_catalog(path)
    assert catalog.default == "trio"
    assert catalog.teams["trio"].names == ("planner", "writer")
    assert catalog.teams["trio"].agents[1].system_message == 'Write.\nname = "not a key"\n'
    assert "coder" in catalog.teams and catalog.channels == {"C_PM": "project_manager"}


def test_the_teams_file_setting_is_read(tmp_path: Path) -> None:
    settings = load_settings(teams_file=str(tmp_path / "teams.toml"))
    assert settings.teams_file == tmp_path / "teams.toml"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param(
            '[teams.trio]\npattern = "group_chat"\nspeaker_selection = "random"\nagents = [{ name = "a" }]\n',
            "teams.toml:3: teams.trio.speaker_selection: Input should be 'auto', 'round_robin' or 'manual'"
            " (got 'random')\n    3 | speaker_selection = \"random\"",
            id="bad_value_on_its_line",
        ),
        pytest.param(
            '[teams.trio]\npattern = "group_chat"\n\n[[teams.trio.agents]]\nname = "a"\n\n'
            '[[teams.trio.agents]]\nname = "b c"\n',
            "teams.toml:8: teams.trio.agents[1].name: String should match pattern",
            id="second_array_entry",
        ),
        pytest.param(
            '[teams.trio]\npattern = "group_chat"\n\n[[teams.trio.agents]]\nname = "a"\n\n'
            '[[teams.trio.agents]]\ndescription = "no name"\n',
            "teams.toml:7: teams.trio.agents[1].name: Field required\n    7 | [[teams.trio.agents]]",
            id="missing_key_points_at_its_table",
        ),
        pytest.param(
            '[teams.trio]\npattern = "group_chat"\nagents = [{ name = "a" }, { name = "b", colour = 1 }]\n',
            "teams.toml:3: teams.trio.agents[1].colour: Extra inputs are not permitted",
            id="inline_table_points_at_its_key",
        ),
        pytest.param(
            '[teams.pair]\nmax_round = 0\nagents = [{ name = "a" }]\n',
            "teams.toml:2: teams.pair.max_round: Input should be greater than 0 (got 0)",
            id="number_out_of_range",
        ),
        pytest.param(
            '[teams.pair]\npattern = "two_agent"\nagents = [{ name = "a" }, { name = "b" }]\n',
            "teams.toml:1: teams.pair: Value error, a two_agent team has exactly one agent",
            id="pattern_rule_points_at_the_team",
        ),
        pytest.param(
            '[teams.pm]\npattern = "hierarchical"\nlead = { name = "boss" }\n\n[teams.pm.subteams.dev]\n'
            'agents = [{ name = "coder", may_propose_code = true }]\n',
            "teams.toml:1: teams.pm: Value error, sub-team 'dev': agents of sub-teams cannot run code",
            id="sub_teams_run_no_code",
        ),
        pytest.param(
            '[teams.trio]\npattern = "group_chat"\nagents = [{ name = "a" }, { name = "A" }]\n',
            "teams.toml:1: teams.trio: Value error, agent names must be unique",
            id="duplicate_names",
        ),
        pytest.param(
            'default = "nobody"\n[channels]\nC1 = "trio"\n',
            "teams.toml:1: default: no team named 'nobody' (coder)\n    1 | default = \"nobody\"\n"
            "teams.toml:3: channels.C1: no team named 'trio' (coder)",
            id="choices_name_known_teams",
        ),
        pytest.param(
            "[teams.trio]\npattern = group_chat\n",
            "teams.toml:2: Invalid value\n    2 | pattern = group_chat",
            id="toml_syntax",
        ),
        pytest.param(
            "colour = 1\n", "teams.toml:1: colour: Extra inputs are not permitted", id="unknown_key"
        ),
    ],
)
def test_mistakes_are_reported_with_file_line_and_key(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, "teams.toml", known={"coder": load_catalog(None).teams["coder"]})
    assert error in str(caught.value)


def test_an_unreadable_teams_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"AGENTBOT_TEAMS_FILE: cannot read .*missing.toml"):
        load_catalog(tmp_path / "missing.toml")


def test_key_lines_follow_tables_arrays_and_dotted_keys() -> None:
    text = "[a]\nx = 1\nb.c = 2\n\n[[a.list]]\ny = 3\n[[a.list]]\ny = 4\n[a.list.sub]\nz = 5\n"
    assert key_lines(text) == {
        ("a",): 1,
        ("a", "x"): 2,
        ("a", "b", "c"): 3,
        ("a", "list"): 5,
        ("a", "list", 0): 5,
        ("a", "list", 0, "y"): 6,
        ("a", "list", 1): 7,
        ("a", "list", 1, "y"): 8,
        ("a", "list", 1, "sub"): 9,
        ("a", "list", 1, "sub", "z"): 10,
    }


# ---------------------------------------------------------------- choosing a team


KEY = ConversationKey(team_id="T1", channel_id="C_PM", thread_ts="1.2")


def catalog(**choices: object) -> Catalog:
    teams = load_catalog(None).teams
    return Catalog(teams=teams, **choices)  # type: ignore[arg-type]  # test choices are well-typed


@pytest.mark.parametrize(
    ("choices", "requested", "team"),
    [
        pytest.param({}, None, None, id="nothing_configured_is_the_built_in_pair"),
        pytest.param({"default": "coder"}, None, "coder", id="file_default"),
        pytest.param({"default": "coder", "workspaces": {"T1": "translate_summarize"}}, None,
                     "translate_summarize", id="workspace_over_default"),
        pytest.param({"workspaces": {"T1": "coder"}, "channels": {"C_PM": "project_manager"}}, None,
                     "project_manager", id="channel_over_workspace"),
        pytest.param({"channels": {"C_PM": "project_manager"}}, "Coder", "coder", id="mention_over_channel"),
    ],
)  # fmt: skip
def test_team_choice_precedence(choices: dict[str, object], requested: str | None, team: str | None) -> None:
    chosen = catalog(**choices).choose(KEY, requested)
    assert (chosen.team.name if chosen.team else None, chosen.notice) == (team, None)


def test_an_unknown_team_asked_for_falls_back_with_a_notice() -> None:
    chosen = catalog(channels={"C_PM": "project_manager"}).choose(KEY, "analysts")
    assert chosen.team is not None and chosen.team.name == "project_manager"
    assert chosen.notice == (
        "There is no team called “analysts”, so the project_manager team answers. "
        "Teams: coder, analyst, translate_summarize, project_manager."
    )


@pytest.mark.parametrize(
    ("text", "split"),
    [
        pytest.param("team:analysts plot sales", ("analysts", "plot sales"), id="prefix"),
        pytest.param("  Team: pm, plan the launch", ("pm", "plan the launch"), id="spaces_and_comma"),
        pytest.param("team=pm plan", ("pm", "plan"), id="equals"),
        pytest.param("plot team:analysts", (None, "plot team:analysts"), id="not_a_prefix"),
        pytest.param("teams", (None, "teams"), id="no_colon"),
    ],
)
def test_split_team_prefix(text: str, split: tuple[str | None, str]) -> None:
    assert split_team_prefix(text) == split


def test_describe_lists_every_team_and_its_members() -> None:
    text = catalog(default="coder").describe()
    assert "**coder** (default) — two agent:" in text  # markdown, as a `markdown` block shows it
    assert "    translator, summarizer (round robin, max_round 2)" in text
    assert "lead project_manager; sub-teams timeline: timeline_planner; budget: budget_analyst" in text


EGRESS = """\
[egress.channels]
C_DATA = ["Data.Internal:8080", "*.example.org"]

[channels]
C_DATA = "trio"

[teams.trio]
pattern = "group_chat"
allow_hosts = ["warehouse.example.net", "*.example.org"]

[[teams.trio.agents]]
name = "planner"
"""


def test_channel_and_team_hosts_come_with_the_choice(tmp_path: Path) -> None:
    path = tmp_path / "teams.toml"
    path.write_text(EGRESS, encoding="utf-8")
    catalog = load_catalog(path)
    in_channel = ConversationKey(team_id="T1", channel_id="C_DATA", thread_ts="1.0")
    elsewhere = ConversationKey(team_id="T1", channel_id="C_OTHER", thread_ts="1.0")
    choice = catalog.choose(in_channel, None)
    assert choice.team is not None and choice.team.name == "trio"
    assert choice.allow_hosts == ("data.internal:8080", "*.example.org", "warehouse.example.net")
    assert catalog.choose(elsewhere, "trio").allow_hosts == ("warehouse.example.net", "*.example.org")
    assert catalog.choose(elsewhere, None).allow_hosts == ()
    assert catalog.choose(in_channel, "coder").allow_hosts == ("data.internal:8080", "*.example.org")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            '[egress.channels]\nC1 = ["ok.org", "https://bad.org"]\n',
            "teams.toml:2: egress.channels.C1: Value error, 'https://bad.org' is not a host entry",
        ),
        (
            '[teams.t]\nallow_hosts = ["a.org:0"]\n[[teams.t.agents]]\nname = "a"\n',
            "teams.toml:2: teams.t.allow_hosts: Value error, 'a.org:0': the port must be",
        ),
        ('[egress.workspaces]\nT1 = ["a.org"]\n', "teams.toml:1: egress.workspaces: Extra inputs are not"),
    ],
)
def test_a_bad_egress_entry_names_file_line_and_key(text: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, "teams.toml")
    assert said in str(caught.value)
