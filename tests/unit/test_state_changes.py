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
    (state.ConversationState, state.ConversationStateChanges),
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
