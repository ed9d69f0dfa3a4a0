"""Agent teams from TOML: the shipped presets, a teams file, and the choice of team per conversation."""

from agentbot.teams.catalog import Catalog, load_catalog, split_team_prefix
from agentbot.teams.config import TeamsFile, parse

__all__ = ["Catalog", "TeamsFile", "load_catalog", "parse", "split_team_prefix"]
