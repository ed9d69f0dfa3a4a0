"""What the bot says about itself: the teams people can choose, and how to use it (pure text).

Written in standard markdown (`**bold**`), as a `markdown` block shows it; `mrkdwn` gives the same text
in Slack's older markup (`*bold*`) for places that take only that, such as a slash command's reply.
"""

from __future__ import annotations

import re

from agentbot.slack.parse import Topic
from agentbot.teams import Catalog

_USAGE = """\
**Start** a conversation by mentioning me with a task, `@agentbot plot NVDA and TSLA YTD`, or with \
`/agentbot <task>`.
**Choose a team** with a prefix: `@agentbot team:translate_summarize <text>`. `@agentbot teams` lists them.
**Reply in the thread** to give feedback; start a reply with an agent's name (`critic: ...` or \
`@critic ...`) to have that agent answer next.
**Code** runs only when someone allowed clicks **Run** on its card. Say `stop` in the thread to end it."""
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"(`[^`]*`)")


def answer(topic: Topic, catalog: Catalog) -> str:
    """The reply to `teams` or `help` (both name the teams)."""
    teams = catalog.describe() or "Only the built-in assistant and user proxy."
    if topic == "teams":
        return f"**Agent teams** (choose one with `team:<name>` at the start of a mention):\n{teams}"
    return f"{_USAGE}\n\n**Teams:**\n{teams}"


def mrkdwn(markdown: str) -> str:
    """The same text in Slack's `mrkdwn`: `**bold**` becomes `*bold*` (code spans left alone)."""
    pieces = _CODE.split(markdown)
    return "".join(piece if piece.startswith("`") else _BOLD.sub(r"*\1*", piece) for piece in pieces)
