"""agentbot: a Slack bot that bridges people to AutoGen-style agent teams."""

__version__ = "0.1.0"
