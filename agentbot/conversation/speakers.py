"""Who speaks next, and what each speaker sees: round robin, the model's choice (`auto`), or a person's pick.

In a group chat every agent sees the whole thread; its own messages as `assistant`, everyone else's
(agents and people) as `user` under their names, as AutoGen 0.2's `GroupChat` does. A person's reply
that starts with an agent's name (`planner: ...`, `@planner ...`) gives that agent the word.
"""

from __future__ import annotations

import re

from agentbot.conversation.actions import CallLLM, SelectSpeaker
from agentbot.conversation.events import PickSpeaker
from agentbot.conversation.llm import ChatMessage, Completion
from agentbot.conversation.moves import add_usage, emit, to
from agentbot.conversation.posts import EphemeralPost, NoticePost, SpeakerChoicePost, SpeakerOption
from agentbot.conversation.prompts import (
    DEFAULT_SYSTEM_MESSAGE,
    SELECT_SPEAKER_PROMPT,
    SELECT_SPEAKER_SYSTEM,
    agent_role,
)
from agentbot.conversation.state import ConversationState, HumanInputMode, Message, Phase
from agentbot.conversation.team import Agent, Team
from agentbot.conversation.tools import NOT_RUN

_NAME = re.compile(r"[^A-Za-z0-9_-]")
_ADDRESS = re.compile(r"^\s*(?:@([A-Za-z][\w-]*)(?=[\s:,]|$)|([A-Za-z][\w-]*)\s*[:,])")
_CHOICE_STRIP = " \t\n`'\"*.:,;!()[]<>"


# ---------------------------------------------------------------- who speaks


def group(state: ConversationState) -> Team | None:
    """The team, when the conversation is a group chat."""
    team = state.team
    return team if team is not None and team.pattern == "group_chat" else None


def current_speaker(state: ConversationState) -> str | None:
    """The agent whose message the conversation waits for; None when the model must choose it first."""
    team = group(state)
    if team is None:
        return state.policy.assistant_name
    chosen = team.agent(state.next_speaker) if state.next_speaker else None
    if chosen is not None:
        return chosen.name
    if len(team.members) == 1:
        return team.members[0].name
    if team.speaker_selection == "auto":
        return None
    return round_robin_next(team, state.transcript)


def round_robin_next(team: Team, transcript: tuple[Message, ...]) -> str:
    """The agent after the last one who spoke, in the team's order (the first when none has)."""
    names = team.names
    for message in reversed(transcript):
        if message.kind == "agent" and message.speaker in names:
            return names[(names.index(message.speaker) + 1) % len(names)]
    return names[0]


def next_turn(state: ConversationState) -> ConversationState:
    """Give the word on: think (the speaker is known or chosen by the model), or ask people to pick."""
    team = group(state)
    if team is None or team.speaker_selection != "manual" or _decided(state, team):
        return to(state, Phase.THINKING)
    return _ask_pick(state, team)


def _decided(state: ConversationState, team: Team) -> bool:
    chosen = team.agent(state.next_speaker) if state.next_speaker else None
    return chosen is not None or len(team.members) == 1


def after_message(state: ConversationState) -> ConversationState:
    """A group-chat message without code to run: the next agent speaks (ALWAYS: the people first)."""
    if state.policy.human_input_mode is HumanInputMode.ALWAYS:
        return to(state, Phase.AWAITING_HUMAN)
    return next_turn(state)


def round_limit(state: ConversationState) -> str | None:
    """Why the group chat stops: `max_round` agent messages since a person last spoke (else None)."""
    team = group(state)
    if team is None or state.turns < team.max_round:
        return None
    return f"Reached max_round ({team.max_round})."


def may_run_code(state: ConversationState, speaker: str) -> bool:
    if state.team is None:
        return True
    agent = state.team.agent(speaker)
    return agent is not None and agent.may_propose_code


def icon_of(state: ConversationState, speaker: str) -> str | None:
    agent = state.team.agent(speaker) if state.team is not None else None
    return agent.icon if agent is not None else None


# ---------------------------------------------------------------- people address agents and pick them


def addressed(state: ConversationState, text: str) -> str | None:
    """The agent a person's reply starts with (`planner: ...`, `@planner ...`), if it names one."""
    team = group(state)
    match = _ADDRESS.match(text)
    if team is None or match is None:
        return None
    agent = team.agent(match.group(1) or match.group(2))
    return agent.name if agent is not None else None


def on_human(state: ConversationState, text: str) -> ConversationState:
    """A person wrote: an agent they address speaks next (closing an open pick card)."""
    name = addressed(state, text)
    if name is None:
        return state
    if state.phase is Phase.AWAITING_PICK:
        state = _close_pick(state, name, None)
    return state.evolve_team(next_speaker=name)


def on_pick(state: ConversationState, event: PickSpeaker) -> ConversationState:
    """A click on a speaker-choice button: checked against the open card, then that agent speaks."""
    team = group(state)
    current = state.phase is Phase.AWAITING_PICK and event.pick_id == f"p{state.pick_seq}"
    agent = team.agent(event.speaker) if team is not None and current else None
    if agent is None:
        text = "This choice is no longer current." if not current else f"No agent is called {event.speaker}."
        return emit(state, EphemeralPost(user_id=event.user_id, text=text))
    state = _close_pick(state, agent.name, event.user_id)
    return to(state.evolve_team(next_speaker=agent.name), Phase.THINKING)


def _ask_pick(state: ConversationState, team: Team) -> ConversationState:
    state = state.evolve_team(pick_seq=state.pick_seq + 1)
    card = _choice_card(state, team)
    return to(emit(state, card, ref=f"pick:{card.pick_id}"), Phase.AWAITING_PICK)


def _close_pick(state: ConversationState, name: str, user_id: str | None) -> ConversationState:
    assert state.team is not None
    card = _choice_card(state, state.team).evolve(chosen=name, chosen_by=user_id)
    return emit(state, card, update_ref=f"pick:{card.pick_id}")


def _choice_card(state: ConversationState, team: Team) -> SpeakerChoicePost:
    options = tuple(SpeakerOption(name=a.name, description=a.description, icon=a.icon) for a in team.members)
    suggested = round_robin_next(team, state.transcript)
    return SpeakerChoicePost(pick_id=f"p{state.pick_seq}", options=options, suggested=suggested)


# ---------------------------------------------------------------- the model chooses (`auto`)


def selection_messages(team: Team, transcript: tuple[Message, ...]) -> tuple[ChatMessage, ...]:
    """AutoGen's speaker-selection prompt: the roles, the conversation, then 'only return the role'."""
    roles = "\n".join(f"{a.name}: {a.description or a.system_message[:200]}" for a in team.members)
    agentlist = str(list(team.names))
    system = ChatMessage(
        role="system", content=SELECT_SPEAKER_SYSTEM.format(roles=roles, agentlist=agentlist)
    )
    seen = tuple(ChatMessage(role="user", content=as_text(m), name=safe_name(m.speaker)) for m in transcript)
    ask = ChatMessage(role="user", content=SELECT_SPEAKER_PROMPT.format(agentlist=agentlist))
    return (system, *seen, ask)


def on_selection(state: ConversationState, completion: Completion) -> ConversationState:
    """The model named the next speaker; if it named nobody valid, round robin decides, and we say so."""
    team = group(state)
    assert team is not None
    state = add_usage(state, completion)
    name = parse_choice(completion.content, team.names)
    if name is None:
        name = round_robin_next(team, state.transcript)
        said = completion.content.strip().replace("\n", " ")[:80]
        text = (
            f"The speaker selector answered “{said}”, which names none of {', '.join(team.names)}; "
            f"falling back to round robin: {name} speaks next."
        )
        state = emit(state, NoticePost(text=text, level="warning"))
    return to(state.evolve_team(next_speaker=name), Phase.THINKING)


def parse_choice(reply: str, names: tuple[str, ...]) -> str | None:
    """The one agent `reply` names: the whole reply, else the only name mentioned in it; else None."""
    bare = reply.strip(_CHOICE_STRIP).lower()
    exact = [name for name in names if name.lower() == bare]
    if exact:
        return exact[0]
    mentioned = [
        name for name in names if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", reply, re.IGNORECASE)
    ]
    return mentioned[0] if len(mentioned) == 1 else None


# ---------------------------------------------------------------- what the speaker sees


def think(state: ConversationState) -> CallLLM | SelectSpeaker:
    """The model call the conversation needs: the speaker's next message, or the choice of a speaker."""
    team = state.team
    if team is None:
        return CallLLM(messages=llm_messages(state))
    speaker = current_speaker(state)
    if speaker is None:
        return SelectSpeaker(messages=selection_messages(team, state.transcript))
    agent = team.agent(speaker)
    tools = team.tools_of(agent) if agent is not None else ()
    if agent is None or team.pattern != "group_chat":
        model = agent.model if agent else None
        return CallLLM(messages=llm_messages(state), model=model, speaker=speaker, tools=tools)
    return CallLLM(
        messages=agent_messages(state, team, agent), model=agent.model, speaker=speaker, tools=tools
    )


def llm_messages(state: ConversationState) -> tuple[ChatMessage, ...]:
    """The system message and transcript as Chat Completions messages, speakers named."""
    system = ChatMessage(role="system", content=state.policy.system_message)
    return (system, *(_chat_message(message) for message in answered(state.transcript)))


def agent_messages(state: ConversationState, team: Team, agent: Agent) -> tuple[ChatMessage, ...]:
    """What `agent` sees in a group chat: its role, its own messages as `assistant`, the rest as `user`.

    Its own tool calls and their results keep their form; the others' are told as text.
    """
    system = ChatMessage(role="system", content=system_message(team, agent))
    transcript = answered(state.transcript)
    own = {call.id for m in transcript if m.speaker == agent.name for call in m.tool_calls}
    seen = (
        _chat_message(m)
        if (m.role == "assistant" and m.speaker == agent.name) or m.tool_call_id in own
        else ChatMessage(role="user", content=as_text(m), name=safe_name(m.speaker))
        for m in transcript
    )
    return (system, *seen)


def answered(transcript: tuple[Message, ...]) -> tuple[Message, ...]:
    """The transcript with each tool call's result right after the message that made it.

    Chat Completions refuses a `tool_calls` message not followed by one `tool` message per call; a
    person may have written in between, or the chat ended before the calls ran ("not run").
    """
    results = {m.tool_call_id: m for m in transcript if m.role == "tool"}
    ordered: list[Message] = []
    for message in transcript:
        if message.role == "tool":
            continue
        ordered.append(message)
        ordered.extend(
            results.get(call.id)
            or Message(
                speaker=message.speaker, role="tool", content=NOT_RUN, kind="tool", tool_call_id=call.id
            )
            for call in message.tool_calls
        )
    return tuple(ordered)


def as_text(message: Message) -> str:
    """A message as plain text, tool calls and results said in words (for those who did not make them)."""
    calls = "\n".join(f"[calls {call.name}({call.arguments})]" for call in message.tool_calls)
    if message.role == "tool":
        return f"[tool result] {message.content}"
    return "\n".join(part for part in (message.content, calls) if part)


def system_message(team: Team, agent: Agent) -> str:
    """An agent's own role (the coder default for agents whose code runs) and how the group chat works."""
    own = agent.system_message or (DEFAULT_SYSTEM_MESSAGE if agent.may_propose_code else agent.description)
    others = ", ".join(
        f"{other.name} ({other.description})" if other.description else other.name
        for other in team.members
        if other.name != agent.name
    )
    return agent_role(own, agent.name, others)


def _chat_message(message: Message) -> ChatMessage:
    if message.role == "tool":
        return ChatMessage(role="tool", content=message.content, tool_call_id=message.tool_call_id)
    role = "assistant" if message.role == "assistant" else "user"
    name = safe_name(message.speaker)
    return ChatMessage(role=role, content=message.content, name=name, tool_calls=message.tool_calls)


def safe_name(speaker: str) -> str:
    """A speaker's name as the `name` field of a chat message accepts it."""
    return _NAME.sub("_", speaker)[:64] or "user"
