"""`agentbot chat`: the same engine and jobs, with the terminal standing in for the Slack thread."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from agentbot import runtime
from agentbot.conversation.code import Artifact
from agentbot.conversation.driver import submit
from agentbot.conversation.egress import audit_line
from agentbot.conversation.events import (
    AllowHosts,
    Approve,
    Event,
    FileRef,
    HumanMessage,
    KeepBlocked,
    PickSpeaker,
    Skip,
    Start,
    Stop,
)
from agentbot.conversation.ports import Activity
from agentbot.conversation.posts import HostsPost, Post, ToolApprovalPost, ToolResultPost
from agentbot.conversation.state import ConversationKey, ConversationState, Phase
from agentbot.errors import PlatformError

USER_ID = "console-user"
_RULE = "-" * 80
_WAITING = {
    Phase.AWAITING_APPROVAL,
    Phase.AWAITING_TOOLS,
    Phase.AWAITING_HOSTS,
    Phase.AWAITING_HUMAN,
    Phase.AWAITING_PICK,
    Phase.FINISHED,
}


class ConsolePlatform:
    """The `ChatPlatform` of a terminal: prints posts, saves uploaded files under `output_dir`."""

    def __init__(self, out: TextIO, output_dir: Path) -> None:
        self._out = out
        self._output_dir = output_dir
        self._posted: dict[str, str] = {}

    def post(self, key: ConversationKey, post: Post, *, effect_id: str) -> str:
        if post.kind == "plan":
            return ""  # no plan display: the agents' messages print one by one, as in AutoGen
        self._print(render(post))
        self._posted[effect_id] = f"c{len(self._posted) + 1}"
        return self._posted[effect_id]

    def find_posted(self, key: ConversationKey, effect_id: str) -> str | None:
        return self._posted.get(effect_id)

    def update(self, key: ConversationKey, message_id: str, post: Post) -> None:
        if post.kind in ("approval", "hosts") and post.decision is not None:
            self._print(f"[run {post.run_id}: {post.decision.outcome}]")

    def upload(
        self, key: ConversationKey, artifacts: Sequence[Artifact], *, run_id: str, resume: bool = False
    ) -> None:
        self._output_dir.mkdir(parents=True, exist_ok=True)
        for artifact in artifacts:
            path = self._output_dir / Path(artifact.name).name
            path.write_bytes(artifact.content)
            self._print(f"[file saved: {path} ({artifact.size} bytes)]")

    def download(self, file: FileRef) -> bytes:
        raise PlatformError(
            f"console cannot download {file.url}", user_message="the console shares no files."
        )

    def set_status(self, key: ConversationKey, text: str, *, activity: Activity = "") -> None:
        """The console shows no transient status."""

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)


def render(post: Post) -> str:
    """A post as AutoGen's console prints the same moment."""
    if post.kind == "agent":
        return f"{post.speaker} (to user_proxy):\n\n{post.text}\n\n{_RULE}"
    if post.kind == "approval":
        code = "\n\n".join(f"```{b.language}\n{b.code}\n```" for b in post.blocks)
        network = f"\n[{post.network}]" if post.network else ""
        return f">>>>>>>> PROPOSED CODE (run {post.run_id}):\n{code}{network}"
    if post.kind == "result":
        outcome = "execution succeeded" if post.exit_code == 0 else "execution failed"
        result = f"exitcode: {post.exit_code} ({outcome})\nCode output: {post.output}"
        audit = f"\n[network: {line}]" if (line := audit_line(post.egress)) else ""
        return f">>>>>>>> EXECUTED CODE\n{result}{audit}\n{_RULE}"
    if post.kind in ("tool_approval", "tool_result", "hosts"):
        return _render_asks(post)
    if post.kind in ("notice", "ephemeral"):
        return "[agentbot] " + post.text.replace(f"<@{USER_ID}>", "you")
    return ""


def _render_asks(post: ToolApprovalPost | ToolResultPost | HostsPost) -> str:
    """AutoGen's console words for suggested tool calls and their responses; blocked hosts."""
    if isinstance(post, HostsPost):
        hosts = ", ".join(post.hosts)
        return (
            ""
            if post.decision
            else f"[agentbot] the egress proxy refused run {post.run_id} these hosts: {hosts}"
        )
    if isinstance(post, ToolResultPost):
        return f">>>>>>>> TOOL RESPONSE ({post.name}):\n{post.text}\n{_RULE}"
    if post.decision is not None:
        return ""
    calls = "\n".join(f"{view.name} ({view.server}): {view.arguments}" for view in post.calls)
    return f">>>>>>>> SUGGESTED TOOL CALLS ({post.run_id}):\n{calls}"


def converse(rt: runtime.Runtime, task: str, *, stdin: TextIO, stdout: TextIO, poll: float = 0.02) -> int:
    """Run one conversation in the terminal until it finishes or input ends; returns an exit code.

    `rt` is the console runtime (`runtime.run_chat`), with a worker already taking its steps.
    """
    key = ConversationKey(team_id="console", channel_id="local", thread_ts=f"{time.time():.6f}")
    event: Event | None = Start(event_id="e0", user_id=USER_ID, user_name="you", text=task)
    turn = 0
    while event is not None:
        submit(rt.store, rt.queue, key, event)
        state = _wait_idle(rt, key, poll)
        if state.phase is Phase.FINISHED:
            return 0
        turn += 1
        event = _ask(state, stdin, stdout, f"e{turn}")
    submit(rt.store, rt.queue, key, Stop(event_id="eof", user_id=USER_ID))
    _wait_idle(rt, key, poll)
    return 0


def _wait_idle(rt: runtime.Runtime, key: ConversationKey, poll: float) -> ConversationState:
    while True:
        state = rt.store.load(key)
        if state is not None and _idle(rt, state):
            return state
        time.sleep(poll)


def _idle(rt: runtime.Runtime, state: ConversationState) -> bool:
    return (
        state.phase in _WAITING
        and not state.outbox
        and not rt.store.events_after(state.key, state.last_event_id)
    )


def _ask(state: ConversationState, stdin: TextIO, stdout: TextIO, event_id: str) -> Event | None:
    if state.phase is Phase.AWAITING_APPROVAL and state.run is not None:
        prompt = "Run this code? Enter/y = run, n = skip, exit = end, or type feedback: "
    elif state.phase is Phase.AWAITING_TOOLS:
        prompt = "Make these tool calls? Enter/y = run, n = skip, exit = end, or type feedback: "
    elif state.phase is Phase.AWAITING_HOSTS:
        prompt = "Allow these hosts and run again? y = allow, Enter/n = keep blocked, or type feedback: "
    elif state.phase is Phase.AWAITING_PICK and state.team is not None:
        prompt = f"Who speaks next? ({', '.join(state.team.names)}), or type a message: "
    else:
        prompt = "Reply to the assistant (Enter or exit = end): "
    print(prompt, end="", file=stdout, flush=True)
    line = stdin.readline()
    if not line:
        return None
    return _event_for(state, line.strip(), event_id)


def _pending_card(state: ConversationState) -> tuple[str, str] | None:
    """The id and hash of the code run or tool calls waiting for approval, if any."""
    if state.phase is Phase.AWAITING_APPROVAL and state.run is not None:
        return state.run.run_id, state.run.code_hash
    if state.phase is Phase.AWAITING_TOOLS and state.tool_round is not None:
        return state.tool_round.round_id, state.tool_round.calls_hash
    return None


def _hosts_answer(state: ConversationState, answer: str, event_id: str) -> Event | None:
    """y: Allow and run again; Enter or n: Keep blocked; anything else is feedback (None)."""
    ask = state.hosts_ask
    if ask is None or answer.lower() not in ("", "y", "yes", "n", "no"):
        return None
    if answer.lower() in ("y", "yes"):
        return AllowHosts(event_id=event_id, user_id=USER_ID, run_id=ask.run_id, code_hash=ask.code_hash)
    return KeepBlocked(event_id=event_id, user_id=USER_ID, run_id=ask.run_id)


def _event_for(state: ConversationState, answer: str, event_id: str) -> Event:
    pending = _pending_card(state)
    if pending is not None:
        run_id, code_hash = pending
        if answer.lower() in ("", "y", "yes", "run"):
            return Approve(event_id=event_id, user_id=USER_ID, run_id=run_id, code_hash=code_hash)
        if answer.lower() in ("n", "no", "skip"):
            return Skip(event_id=event_id, user_id=USER_ID, run_id=run_id)
    if state.phase is Phase.AWAITING_HOSTS and (decided := _hosts_answer(state, answer, event_id)):
        return decided
    picked = state.team.agent(answer) if state.team is not None and answer else None
    if state.phase is Phase.AWAITING_PICK and picked is not None:
        return PickSpeaker(
            event_id=event_id, user_id=USER_ID, pick_id=f"p{state.pick_seq}", speaker=picked.name
        )
    if not answer:
        return Stop(event_id=event_id, user_id=USER_ID)  # AutoGen: an empty reply at the end exits
    return HumanMessage(event_id=event_id, user_id=USER_ID, user_name="you", text=answer)
