"""Posts out, Slack messages in Block Kit: pure functions that keep every message inside Slack's limits.

Limits respected (https://docs.slack.dev/reference/block-kit/blocks): section text 3,000 characters;
`markdown` blocks 12,000 characters in total per message (Slack rejects a little above that with
`msg_blocks_too_long`); 50 blocks per message; 40,000 characters of `text`. What does not fit in a few
messages is attached as a snippet file instead, so a post never fails with `msg_too_long`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from agentbot.conversation.code import CodeBlock
from agentbot.conversation.egress import audit_line
from agentbot.conversation.posts import (
    AgentPost,
    ApprovalPost,
    Decision,
    EphemeralPost,
    HostsDecision,
    HostsPost,
    MeterPost,
    NoticePost,
    PlanPost,
    Post,
    ReportPost,
    ResultPost,
    SpeakerChoicePost,
    SubTeamPost,
    ToolApprovalPost,
    ToolResultPost,
    UploadPost,
)
from agentbot.slack.parse import (
    ALLOW_HOST_ACTION,
    DENY_HOST_ACTION,
    DETAILS_ACTION,
    EDIT_ACTION,
    FEEDBACK_ACTION,
    MOVE_ACTION,
    PICK_ACTION,
    RUN_ACTION,
    RUN_ALL_ACTION,
    SKIP_ACTION,
    STOP_ACTION,
)

Block = dict[str, Any]

SECTION_LIMIT = 3_000  # section/context text
MARKDOWN_CHUNK = 10_000  # per message, below the 12,000 markdown total, leaving room for fences
MAX_PARTS = 4  # agent text up to ~40,000 characters is posted as messages; beyond that, a snippet
FALLBACK_LIMIT = 300  # the notification `text` next to blocks
CODE_LINES = 60  # lines of code shown on an approval card
CODE_CHARS = 2_500  # characters of code shown per block on an approval card
CODE_TOTAL = 6_000  # characters of code shown on one card, all blocks together
CODE_BLOCKS = 5  # code blocks shown on one card
HOSTS_SHOWN = 20  # hosts named on a blocked-hosts card (each up to ~260 characters: within 3,000 at 10)
OUTPUT_HEAD = 800  # a result shows the head and the tail of the output (tracebacks end at the tail)
OUTPUT_TAIL = 2_000

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_BROADCAST = re.compile(r"<!(here|channel|everyone|subteam\^[A-Z0-9]+)(?:\|([^>]*))?>")
_UNFINISHED_TOKEN = re.compile(r"<[^\s<>]*$")  # `<!chan` at the end: maybe a broadcast to come
_EXTENSIONS = {"python": "py", "sh": "sh"}
_SUBTEAM_STATUS = {
    "pending": ":hourglass_flowing_sand:",
    "running": ":gear:",
    "done": ":white_check_mark:",
    "failed": ":x:",
    "cancelled": ":no_entry_sign:",
}
RUN_ALL_NOTE = (
    ":fast_forward: Ran without asking: *Run all* is on in this thread (reply `manual` to turn it off)."
)
_LEVEL_EMOJI = {"info": ":information_source:", "warning": ":warning:", "error": ":x:"}
_OUTCOME = {
    "approved": (":white_check_mark:", "Approved by {who}"),
    "moved": (
        ":twisted_rightwards_arrows:",
        "Approved by {who} on another engine, in a new, empty workspace",
    ),
    "run_all": (":fast_forward:", "Approved by {who}, with every later run in this thread (Run all)"),
    "edited": (":pencil2:", "Edited by {who}; the edited code runs instead"),
    "skipped": (":next_track_button:", "Skipped by {who}"),
    "stopped": (":octagonal_sign:", "Stopped by {who}"),
    "expired": (":hourglass:", "Expired"),
    "superseded": (":arrows_counterclockwise:", "Superseded by a newer proposal"),
}
_HOSTS_OUTCOME = {
    "allowed": (":white_check_mark:", "Allowed by {who} for this thread; the code runs again"),
    "kept": (":no_entry:", "Kept blocked by {who}"),
    "expired": (":hourglass:", "Nobody decided in time: kept blocked"),
    "stopped": (":octagonal_sign:", "Stopped by {who}"),
}


@dataclass(frozen=True)
class SlackMessage:
    """One `chat.postMessage` worth: notification text, blocks, and the name it is shown under."""

    text: str
    blocks: tuple[Block, ...] = ()
    username: str | None = None
    icon_emoji: str | None = None

    def kwargs(self) -> dict[str, Any]:
        """The message's arguments for `chat.postMessage` / `chat.update`."""
        args: dict[str, Any] = {"text": self.text, "blocks": list(self.blocks)}
        if self.username:
            args["username"] = self.username
        if self.icon_emoji:
            args["icon_emoji"] = self.icon_emoji
        return args


@dataclass(frozen=True)
class Snippet:
    """A text file attached to the thread when the whole text does not fit in messages."""

    filename: str
    content: str
    title: str


@dataclass(frozen=True)
class Rendered:
    """Messages to post in order (at least one), and a snippet to attach after them, if any."""

    messages: tuple[SlackMessage, ...]
    snippet: Snippet | None = None
    ephemeral_user: str | None = None  # set for an `EphemeralPost`: only this person sees it


def render(post: Post) -> Rendered:
    """The Slack messages for any post (an `UploadPost` becomes a short line naming the files)."""
    renderer: Callable[[Any], Rendered] = _RENDERERS[post.kind]
    return renderer(post)


def render_agent(post: AgentPost) -> Rendered:
    """An agent's markdown in `markdown` blocks under the agent's name, split or attached when long."""
    who = {"username": post.speaker, "icon_emoji": post.icon or agent_icon(post.speaker)}
    rendered = _markdown_messages(
        post.text,
        fallback_prefix=f"{post.speaker}: ",
        who=who,
        snippet_name=f"{_slug(post.speaker)}-message.md",
    )
    if post.feedback_turn is None:
        return rendered
    *head, last = rendered.messages
    rated = replace(last, blocks=(*last.blocks, feedback_block(post.feedback_turn)))
    return replace(rendered, messages=(*head, rated))


def feedback_block(turn: int) -> Block:
    """Thumbs up / down under a final answer (Slack's `feedback_buttons` in a `context_actions` block)."""

    def button(label: str, vote: str, spoken: str) -> Block:
        value = json.dumps({"turn": turn, "vote": vote})
        return {"text": {"type": "plain_text", "text": label}, "value": value, "accessibility_label": spoken}

    element = {
        "type": "feedback_buttons",
        "action_id": FEEDBACK_ACTION,
        "positive_button": button(":thumbsup:", "up", "Good answer"),
        "negative_button": button(":thumbsdown:", "down", "Bad answer"),
    }
    return {"type": "context_actions", "block_id": f"feedback-{turn}", "elements": [element]}


def live_text(text: str, limit: int = MARKDOWN_CHUNK) -> str:
    """What of a reply being written can be shown now (streamed, or edited in): pure, monotone.

    Broadcasts neutralized, and a `<…` not closed yet held back (it may become `<!channel>`); cut at
    `limit`, since one message holds about that much markdown (the rest shows when it is finished).
    """
    safe = neutralize(text)
    unfinished = _UNFINISHED_TOKEN.search(safe)
    return safe[: unfinished.start() if unfinished else len(safe)][:limit]


def render_live(post: AgentPost, text: str) -> SlackMessage:
    """The message of a reply still being written, for a post or an edit: its code fence closed."""
    shown = close_fences(text) if text.strip() else "…"
    fallback = truncate(f"{post.speaker}: " + _one_line(text), FALLBACK_LIMIT) if text.strip() else "…"
    who = {"username": post.speaker, "icon_emoji": post.icon or agent_icon(post.speaker)}
    return SlackMessage(text=escape(fallback), blocks=({"type": "markdown", "text": shown},), **who)


def render_notice(post: NoticePost) -> Rendered:
    """agentbot's own words, under the app's own name, with an icon for the level."""
    text = f"{_LEVEL_EMOJI[post.level]} {post.text}"
    return _markdown_messages(
        text, fallback_prefix="", who={}, snippet_name="agentbot-notice.md", markup=True
    )


def render_ephemeral(post: EphemeralPost) -> Rendered:
    """A line only `post.user_id` sees (sent with `chat.postEphemeral`)."""
    text = truncate(neutralize(post.text), SECTION_LIMIT)
    block = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    return Rendered(messages=(SlackMessage(text=text, blocks=(block,)),), ephemeral_user=post.user_id)


def render_upload(post: UploadPost) -> Rendered:
    """Files are shared by `SlackPlatform.upload` under `upload_comment`; if ever posted, one line."""
    names = ", ".join(f"`{escape(name)}`" for name in post.names) or "none"
    text = truncate(f":paperclip: Files from this run: {names}", SECTION_LIMIT)
    return Rendered(messages=(SlackMessage(text=text, blocks=(context_block(text),)),))


def upload_comment(run_id: str, number: int = 1, batches: int = 1) -> str:
    """The comment a run's files are shared under; unique in the thread, so a repeat can be spotted."""
    part = f" ({number}/{batches})" if batches > 1 else ""
    return f":paperclip: Files from run {escape(run_id)}{part}"


def render_approval(post: ApprovalPost) -> Rendered:
    """The approval card: code (truncated), language, and Run / Skip / Stop — or who decided, when."""
    shown, truncated = _code_sections(post.blocks)
    network = [context_block(f":globe_with_meridians: {escape(post.network)}")] if post.network else []
    blocks: list[Block] = [section_block(_card_intro(post)), *network, *shown]
    if truncated:
        note = f"Long code is cut here; the full code is attached as `{_code_filename(post)}`."
        blocks.append(context_block(note))
    blocks.append(_decision_context(post.decision) if post.decision else _buttons(post))
    text = _card_fallback(post)
    snippet = Snippet(_code_filename(post), full_code(post.blocks), "Proposed code") if truncated else None
    return Rendered(messages=(SlackMessage(text=text, blocks=tuple(blocks)),), snippet=snippet)


def render_tool_approval(post: ToolApprovalPost) -> Rendered:
    """A tool-call card: each call (tool, server, JSON arguments) and Run / Skip / Stop, or the decision."""
    who = " or ".join(f"<@{u}>" for u in dict.fromkeys((post.requested_by, *post.approvers)) if u)
    if post.decision:
        intro = f":hammer_and_wrench: Proposed tool calls of {escape(post.speaker)}"
    else:
        until = slack_date(post.expires_at, fmt="{time}")
        intro = (
            f":hammer_and_wrench: {escape(post.speaker)} wants to call these tools. {who} can approve "
            f"them with *Run* (until {until})."
        )
    blocks: list[Block] = [section_block(intro)]
    budget = CODE_TOTAL
    for view in post.calls[:CODE_BLOCKS]:
        arguments, _ = _head(view.arguments, min(CODE_CHARS, budget))
        budget = max(budget - len(arguments), 200)
        blocks += [context_block(f"*{escape(view.name)}* · {escape(view.server)}"), _preformatted(arguments)]
    if len(post.calls) > CODE_BLOCKS:
        blocks.append(context_block(f"… and {len(post.calls) - CODE_BLOCKS} more calls."))
    blocks.append(_decision_context(post.decision) if post.decision else _buttons(post))
    names = ", ".join(view.name for view in post.calls)
    if post.decision:
        _, words = _OUTCOME[post.decision.outcome]
        text = words.format(who=_who(post.decision)) + f" — tool calls: {names}"
    else:
        text = f"{post.speaker} wants to call {names}: Run, Skip or Stop?"
    return Rendered(messages=(SlackMessage(text=truncate(text, FALLBACK_LIMIT), blocks=tuple(blocks)),))


def render_tool_result(post: ToolResultPost) -> Rendered:
    """What a tool call returned (head and tail, the whole as a snippet when long), or its error."""
    excerpt, cut = excerpt_output(post.text)
    icon, verb = (":x:", "failed") if post.is_error else (":white_check_mark:", "returned")
    headline = f"{icon} `{escape(post.name)}` ({escape(post.server)}) {verb}"
    blocks: list[Block] = [section_block(headline), _preformatted(excerpt or "(empty result)")]
    name = f"tool-{_slug(post.run_id)}-{_slug(post.call_id)}.txt"
    if cut:
        blocks.append(context_block(f"Result shortened; the full result is attached as `{name}`."))
    snippet = Snippet(name, post.text, "Full tool result") if cut else None
    return Rendered(
        messages=(SlackMessage(text=truncate(headline, FALLBACK_LIMIT), blocks=tuple(blocks)),),
        snippet=snippet,
    )


def render_result(post: ResultPost) -> Rendered:
    """Exit code in AutoGen's words, the output's head and tail in a code block, and the files made."""
    excerpt, cut = excerpt_output(post.output)
    status = "succeeded" if post.exit_code == 0 else "failed"
    icon = ":white_check_mark:" if post.exit_code == 0 else ":x:"
    headline = f"{icon} exitcode: {post.exit_code} (execution {status})"
    if post.timed_out:
        headline += " — timed out"
    blocks: list[Block] = [section_block(headline), _preformatted(excerpt or "(no output)")]
    notes = _result_notes(post, cut=cut)
    if notes:
        blocks.append(context_block(notes))
    if audit := audit_line(post.egress):
        blocks.append(context_block(f":globe_with_meridians: {escape(audit)}"))
    if post.run_all:
        blocks.append(context_block(RUN_ALL_NOTE))
    snippet = Snippet(f"run-{_slug(post.run_id)}-output.txt", post.output, "Full output") if cut else None
    return Rendered(messages=(SlackMessage(text=headline, blocks=tuple(blocks)),), snippet=snippet)


def render_hosts(post: HostsPost) -> Rendered:
    """The hosts a run was refused: Allow and run again / Keep blocked — or who decided, and when."""
    names = ", ".join(f"`{escape(host)}`" for host in post.hosts[:HOSTS_SHOWN])
    if len(post.hosts) > HOSTS_SHOWN:
        names += f" and {len(post.hosts) - HOSTS_SHOWN} more"
    head = f":no_entry: The egress proxy refused the run these hosts: {names}."
    if post.decision is not None:
        blocks = (section_block(head), _hosts_decision(post.decision))
        return Rendered(messages=(SlackMessage(text=truncate(head, FALLBACK_LIMIT), blocks=blocks),))
    who = " or ".join(f"<@{u}>" for u in post.approvers)
    until = slack_date(post.expires_at, fmt="{time}")
    ask = f"{who} can allow them in this thread and run the same code again (until {until})."
    value = json.dumps({"run_id": post.run_id, "code_hash": post.code_hash})
    actions = {
        "type": "actions",
        "block_id": f"hosts-{_slug(post.run_id)}",
        "elements": [
            button("Allow and run again", ALLOW_HOST_ACTION, value, style="primary"),
            button("Keep blocked", DENY_HOST_ACTION, value),
        ],
    }
    text = "A run was refused hosts: allow them and run again, or keep them blocked?"
    return Rendered(messages=(SlackMessage(text=text, blocks=(section_block(f"{head}\n{ask}"), actions)),))


def _hosts_decision(decision: HostsDecision) -> Block:
    emoji, words = _HOSTS_OUTCOME[decision.outcome]
    who = f"<@{decision.user_id}>" if decision.user_id else "someone"
    return context_block(f"{emoji} {words.format(who=who)} at {slack_date(decision.at)}")


def render_meter(post: MeterPost) -> Rendered:
    """The running cost, one context line (updated in place as the conversation spends)."""
    budget = f" of ${post.budget_usd:,.2f}" if post.budget_usd is not None else ""
    text = f":moneybag: ${post.spent_usd:,.4f}{budget} spent · {post.tokens:,} tokens"
    if not post.cost_known:  # never a silent $0: the tokens count, the cost is said to be unknown
        known = f"${post.spent_usd:,.4f} + unknown" if post.spent_usd else "unknown"
        cap = f" · budget ${post.budget_usd:,.2f}" if post.budget_usd is not None else ""
        text = f":moneybag: {post.tokens:,} tokens · cost {known} (a model has no price){cap}"
    return Rendered(messages=(SlackMessage(text=text, blocks=(context_block(text),)),))


def render_speaker_choice(post: SpeakerChoicePost) -> Rendered:
    """`manual` speaker selection: a button per agent (the round-robin choice highlighted), or the pick."""
    if post.chosen:
        by = f" (picked by <@{post.chosen_by}>)" if post.chosen_by else ""
        text = f":arrow_right: *{escape(post.chosen)}* speaks next{by}."
        return Rendered(messages=(SlackMessage(text=text, blocks=(section_block(text),)),))
    lines = [
        f"{o.icon or agent_icon(o.name)} *{escape(o.name)}* {escape(o.description)}".rstrip()
        for o in post.options
    ]
    intro = "Who speaks next? Pick an agent, or reply starting with its name.\n" + "\n".join(lines)
    buttons = [
        button(
            truncate(o.name, 75),
            f"{PICK_ACTION}:{i}",
            json.dumps({"pick_id": post.pick_id, "speaker": o.name}),
            style="primary" if o.name == post.suggested else None,
        )
        for i, o in enumerate(post.options[:25])  # an actions block holds at most 25 elements
    ]
    actions = {"type": "actions", "block_id": f"pick-{_slug(post.pick_id)}", "elements": buttons}
    return Rendered(messages=(SlackMessage(text="Who speaks next?", blocks=(section_block(intro), actions)),))


def render_subteam(post: SubTeamPost) -> Rendered:
    """A delegated sub-task as one message: status, members, the latest lines, then the summary."""
    icon = _SUBTEAM_STATUS[post.status]
    head = f"{icon} *{escape(post.subteam)}* ({post.status}): {escape(post.task)}"
    blocks: list[Block] = [section_block(head)]
    if post.detail_thread:  # the whole sub-conversation, a click away (`views.open`)
        value = json.dumps({"thread": post.detail_thread})
        blocks[0]["accessory"] = button("Details", DETAILS_ACTION, value)
    if post.lines:
        blocks.append(context_block("\n".join(escape(line) for line in post.lines[-10:])))
    if post.summary:
        blocks.append({"type": "markdown", "text": truncate(neutralize(post.summary), MARKDOWN_CHUNK)})
    members = ", ".join(escape(m) for m in post.members)
    cost = f"${post.cost_usd:,.4f}"
    blocks.append(context_block(f"{members} · {cost}" if members else cost))
    return Rendered(messages=(SlackMessage(text=truncate(head, FALLBACK_LIMIT), blocks=tuple(blocks)),))


def render_report(post: ReportPost) -> Rendered:
    """A sub-team's report is forwarded by the driver, never shown; if it ever is, one quiet line."""
    text = truncate(f"Sub-team {post.outcome}: {escape(post.summary)}", SECTION_LIMIT)
    return Rendered(messages=(SlackMessage(text=text, blocks=(context_block(text),)),))


_TASK_ICONS = {
    "pending": ":white_circle:",
    "in_progress": ":gear:",
    "complete": ":white_check_mark:",
    "error": ":x:",
}


def render_plan(post: PlanPost) -> Rendered:
    """A team's plan as plain blocks, one line per task (where task and plan chunks cannot be streamed)."""
    lines = [f"{_TASK_ICONS[t.status]} *{escape(t.title)}*: {escape(t.output)}" for t in post.tasks]
    head = f":clipboard: *{escape(post.title)}*"
    text = truncate(f"{head}\n" + "\n".join(lines), SECTION_LIMIT)
    return Rendered(
        messages=(SlackMessage(text=truncate(post.title, FALLBACK_LIMIT), blocks=(section_block(text),)),)
    )


def plan_chunks(post: PlanPost) -> list[Block]:
    """The plan as Slack's streaming chunks: its title (`plan_update`), then each task (`task_update`)."""
    chunks: list[Block] = [{"type": "plan_update", "title": truncate(post.title, 256)}]
    for task in post.tasks:
        chunk: Block = {"type": "task_update", "id": task.task_id, "title": truncate(task.title, 256)}
        chunk["status"] = task.status
        if task.output:
            chunk["output"] = truncate(task.output, 256)
        if task.details:
            chunk["details"] = truncate(task.details, 256)
        chunks.append(chunk)
    return chunks


_RENDERERS: dict[str, Callable[[Any], Rendered]] = {
    "plan": render_plan,
    "agent": render_agent,
    "approval": render_approval,
    "tool_approval": render_tool_approval,
    "tool_result": render_tool_result,
    "hosts": render_hosts,
    "result": render_result,
    "notice": render_notice,
    "ephemeral": render_ephemeral,
    "upload": render_upload,
    "meter": render_meter,
    "speaker_choice": render_speaker_choice,
    "subteam": render_subteam,
    "report": render_report,
}


def render_command_root(
    user_id: str, task: str, team: str | None, *, not_started: bool = False
) -> SlackMessage:
    """The channel message a `/agentbot <task>` conversation threads under (slash commands post nothing).

    `not_started`: the same message once its conversation could not be stored (nothing answers it).
    """
    chosen = f" (team *{escape(team)}*)" if team else ""
    text = f"<@{user_id}> asked{chosen}: {escape(task)}"
    if not_started:
        text += "\n:warning: Not started: I could not save this conversation. Please try again."
    return SlackMessage(text=truncate(text, FALLBACK_LIMIT), blocks=(section_block(text),))


def split_markdown(text: str, limit: int = MARKDOWN_CHUNK) -> list[str]:
    """Split markdown into chunks of at most `limit` characters, closing and reopening code fences.

    Every chunk is valid on its own: a fence open at a cut is closed at the end of the chunk and
    reopened (same marker and language) at the start of the next; an unclosed fence at the end of
    the text is closed too.
    """
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    fence: tuple[str, str] | None = None  # (marker, opening line) while inside a fenced block
    for line in _bounded_lines(text, limit // 2):
        closing = len(fence[0]) + 1 if fence else 0
        if current and size + len(line) + 1 + closing > limit:
            chunks.append(_finish(current, fence))
            current, size = ([fence[1]], len(fence[1]) + 1) if fence else ([], 0)
        current.append(line)
        size += len(line) + 1
        fence = _track_fence(line, fence)
    if current:
        chunks.append(_finish(current, fence))
    return chunks or [""]


def close_fences(text: str) -> str:
    """`text` with an unclosed code fence at its end closed."""
    fence: tuple[str, str] | None = None
    for line in text.split("\n"):
        fence = _track_fence(line, fence)
    return f"{text}\n{fence[0]}" if fence else text


def excerpt_output(output: str) -> tuple[str, bool]:
    """The head and tail of a run's output, and whether anything was left out."""
    if len(output) <= OUTPUT_HEAD + OUTPUT_TAIL:
        return output, False
    omitted = len(output) - OUTPUT_HEAD - OUTPUT_TAIL
    return f"{output[:OUTPUT_HEAD]}\n… {omitted:,} characters omitted …\n{output[-OUTPUT_TAIL:]}", True


def full_code(blocks: tuple[CodeBlock, ...]) -> str:
    """All proposed blocks as one file, each under a comment naming its language and file."""
    if len(blocks) == 1:
        return blocks[0].code
    parts = [
        f"# --- block {i} ({b.language}{', ' + b.filename if b.filename else ''}) ---\n{b.code}"
        for i, b in enumerate(blocks, start=1)
    ]
    return "\n\n".join(parts)


def agent_icon(speaker: str) -> str:
    """The emoji an agent posts under: a gear for the executing proxy, a robot for the others."""
    lowered = speaker.lower()
    return ":gear:" if "proxy" in lowered or "executor" in lowered else ":robot_face:"


def escape(text: str) -> str:
    """Slack's three control characters escaped, as required in mrkdwn and `text`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def neutralize(text: str) -> str:
    """Broadcast mentions (`<!channel>`, `<!here>`, user groups) made harmless: an agent never pings."""
    return _BROADCAST.sub(lambda m: "@\u200b" + (m.group(2) or m.group(1).split("^")[0]), text)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_date(at: datetime, *, fmt: str = "{date_short_pretty} at {time}") -> str:
    """A date every reader sees in their own time zone (https://docs.slack.dev/messaging/formatting-message-text)."""
    return f"<!date^{int(at.timestamp())}^{fmt}|{at.isoformat(timespec='minutes')}>"


def _markdown_messages(
    text: str, *, fallback_prefix: str, who: dict[str, str], snippet_name: str, markup: bool = False
) -> Rendered:
    """Markdown blocks (split, or attached when too long); `markup`: `text` is ours, its `<@U…>` meant."""
    safe = neutralize(text)
    parts = split_markdown(safe) if safe.strip() else ["_(empty message)_"]
    snippet = None
    if len(parts) > MAX_PARTS:
        note = f"\n\n_…the message continues; the full text is attached as `{snippet_name}`._"
        parts = [close_fences(split_markdown(safe, MARKDOWN_CHUNK - len(note) - 8)[0]) + note]
        snippet = Snippet(snippet_name, text, "Full message")
    line = fallback_prefix + _one_line(safe)
    fallback = truncate(line if markup else escape(line), FALLBACK_LIMIT)
    messages = tuple(
        SlackMessage(text=fallback, blocks=({"type": "markdown", "text": part},), **who) for part in parts
    )
    return Rendered(messages=messages, snippet=snippet)


def _bounded_lines(text: str, limit: int) -> list[str]:
    """Lines of `text`, with any line longer than `limit` cut into pieces (a minified blob, say)."""
    lines: list[str] = []
    for line in text.split("\n"):
        lines.extend(line[i : i + limit] for i in range(0, max(len(line), 1), limit))
    return lines


def _track_fence(line: str, fence: tuple[str, str] | None) -> tuple[str, str] | None:
    match = _FENCE.match(line)
    if not match:
        return fence
    marker, rest = match.groups()
    if fence is None:
        return None if marker[0] == "`" and "`" in rest else (marker, line)
    closes = marker[0] == fence[0][0] and len(marker) >= len(fence[0]) and not rest.strip()
    return None if closes else fence


def _finish(lines: list[str], fence: tuple[str, str] | None) -> str:
    body = "\n".join(lines)
    return f"{body}\n{fence[0]}" if fence else body


def _one_line(text: str) -> str:
    return " ".join(text.split())


def section_block(text: str) -> Block:
    """A mrkdwn section, cut to Slack's 3,000 characters (messages and modals alike)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}}


def context_block(text: str) -> Block:
    """A small grey mrkdwn line, cut to Slack's 3,000 characters."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}]}


def _preformatted(text: str) -> Block:
    """Verbatim text: `rich_text_preformatted` needs no escaping and is immune to ``` in the code."""
    element = {"type": "text", "text": text or " "}
    return {"type": "rich_text", "elements": [{"type": "rich_text_preformatted", "elements": [element]}]}


def _code_sections(blocks: tuple[CodeBlock, ...]) -> tuple[list[Block], bool]:
    sections: list[Block] = []
    truncated = len(blocks) > CODE_BLOCKS
    budget = CODE_TOTAL
    for block in blocks[:CODE_BLOCKS]:
        code, cut = _head(block.code, min(CODE_CHARS, budget))
        budget = max(budget - len(code), 200)
        truncated = truncated or cut
        label = block.language + (f" · `{escape(block.filename)}`" if block.filename else "")
        sections += [context_block(f"*{label}*"), _preformatted(code)]
    return sections, truncated


def _head(code: str, limit: int) -> tuple[str, bool]:
    lines = code.split("\n")
    head = "\n".join(lines[:CODE_LINES])[:limit]
    if head == code:
        return code, False
    return f"{head}\n… ({len(lines)} lines in all)", True


def _card_intro(post: ApprovalPost) -> str:
    who = " or ".join(f"<@{u}>" for u in (post.requested_by, *post.approvers) if u)
    if post.decision:
        return f":robot_face: Proposed code run (requested by <@{post.requested_by}>)"
    return (
        f":robot_face: The assistant wants to run this code. {who} can approve it with *Run* "
        f"(until {slack_date(post.expires_at, fmt='{time}')})."
    )


def _card_fallback(post: ApprovalPost) -> str:
    if post.decision:
        _, words = _OUTCOME[post.decision.outcome]
        return words.format(who=_who(post.decision)) + " — proposed code run"
    return "The assistant wants to run code: Run, Skip or Stop?"


def _decision_context(decision: Decision) -> Block:
    emoji, words = _OUTCOME[decision.outcome]
    return context_block(f"{emoji} {words.format(who=_who(decision))} at {slack_date(decision.at)}")


def _who(decision: Decision) -> str:
    return f"<@{decision.user_id}>" if decision.user_id else "someone"


def _buttons(post: ApprovalPost | ToolApprovalPost) -> Block:
    value = json.dumps({"run_id": post.run_id, "code_hash": post.code_hash})
    confirm = {
        "title": {"type": "plain_text", "text": "Stop this conversation?"},
        "text": {"type": "mrkdwn", "text": "Nothing more runs. Mention me again to start over."},
        "confirm": {"type": "plain_text", "text": "Stop"},
        "deny": {"type": "plain_text", "text": "Keep going"},
        "style": "danger",
    }
    return {
        "type": "actions",
        "block_id": f"approval-{_slug(post.run_id)}"[:255],
        "elements": [
            button("Run", RUN_ACTION, value, style="primary"),
            *(
                [button("Continue on another engine", MOVE_ACTION, value)]
                if isinstance(post, ApprovalPost) and post.engine_down
                else []
            ),
            {**button("Run all in this thread", RUN_ALL_ACTION, value), "confirm": _run_all_confirm()},
            *(
                [button("Edit", EDIT_ACTION, value)]
                if isinstance(post, ApprovalPost) and post.editable
                else []
            ),
            button("Skip", SKIP_ACTION, value),
            {**button("Stop", STOP_ACTION, value, style="danger"), "confirm": confirm},
        ],
    }


def _editable(post: ApprovalPost | ToolApprovalPost) -> bool:
    return isinstance(post, ApprovalPost) and post.editable  # a tool card's arguments are not edited


def _run_all_confirm() -> Block:
    return {
        "title": {"type": "plain_text", "text": "Run all in this thread?"},
        "text": {
            "type": "mrkdwn",
            "text": "This code and every later proposal in this thread run without asking, until someone "
            "replies `manual` or presses Stop. Blocked hosts still ask.",
        },
        "confirm": {"type": "plain_text", "text": "Run all"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }


def button(label: str, action_id: str, value: str, *, style: str | None = None) -> Block:
    """A Block Kit button (shared by the thread's cards and the Home tab)."""
    block: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": value,
    }
    if style:
        block["style"] = style
    return block


def _result_notes(post: ResultPost, *, cut: bool) -> str:
    notes = []
    if post.artifact_names:
        notes.append("Files: " + ", ".join(f"`{escape(n)}`" for n in post.artifact_names))
    if cut:
        name = f"run-{_slug(post.run_id)}-output.txt"
        notes.append(f"Output shortened; the full output is attached as `{name}`.")
    if post.output_truncated:
        notes.append("The run printed more than the output limit; the rest was dropped.")
    return " · ".join(notes)


def _code_filename(post: ApprovalPost) -> str:
    language = post.blocks[0].language if len(post.blocks) == 1 else "text"
    return f"run-{_slug(post.run_id)}.{_EXTENSIONS.get(language, 'txt')}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:60] or "x"
