"""Each `evolve` is checked by mypy against a TypedDict of its model's fields: these must stay in step."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from agentbot.conversation import posts, state, team

MODELS: list[tuple[type[BaseModel], type]] = [
    (state.ConversationKey, state.ConversationKeyChanges),
    (state.Policy, state.PolicyChanges),
    (state.PendingRun, state.PendingRunChanges),
    (state.HostsAsk, state.HostsAskChanges),
    (state.EgressState, state.EgressStateChanges),
    (state.Delegation, state.DelegationChanges),
    (state.OutboxItem, state.OutboxItemChanges),
    (state.LiveReply, state.LiveReplyChanges),
    (state.ConversationState, state.ConversationStateChanges),
    (state.Teamwork, state.TeamworkChanges),
    (team.Team, team.TeamChanges),
    (posts.SpeakerChoicePost, posts.SpeakerChoicePostChanges),
]


@pytest.mark.parametrize(("model", "changes"), MODELS, ids=[m.__name__ for m, _ in MODELS])
def test_the_changes_name_every_field_of_their_model(model: type[BaseModel], changes: type) -> None:
    assert set(typing.get_type_hints(changes, localns=vars(state) | vars(team) | vars(posts))) == set(
        model.model_fields
    )


def test_evolve_changes_only_what_it_is_given() -> None:
    key = state.ConversationKey(team_id="T", channel_id="C", thread_ts="1.0")
    assert key.evolve(thread_ts="2.0") == state.ConversationKey(team_id="T", channel_id="C", thread_ts="2.0")


def test_a_state_stored_with_flat_team_fields_loads_into_teamwork() -> None:
    from datetime import UTC, datetime

    key = state.ConversationKey(team_id="T", channel_id="C", thread_ts="1.0")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    stored = {
        "key": key.model_dump(), "created_at": now, "updated_at": now, "starter_id": "U",
        "policy": state.Policy().model_dump(), "next_speaker": "critic", "pick_seq": 3, "sub_id": "d1",
    }  # fmt: skip
    loaded = state.ConversationState.model_validate(stored)
    assert (loaded.next_speaker, loaded.pick_seq, loaded.sub_id) == ("critic", 3, "d1")
    assert "next_speaker" not in loaded.model_dump() and loaded.model_dump()["teamwork"]["pick_seq"] == 3
    assert state.ConversationState.model_validate_json(loaded.model_dump_json()) == loaded
