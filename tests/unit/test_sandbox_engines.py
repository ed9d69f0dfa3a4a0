"""Which engine a new workspace goes to: one that is up, spread by conversation, never one left behind."""

from __future__ import annotations

from pathlib import Path

import fakeredis
import pytest

from agentbot.conversation.state import ConversationKey
from agentbot.sandbox.engines import UP_SECONDS, DockerEngines, preference
from agentbot.sandbox.local import LocalExecutor
from agentbot.settings import EngineSpec

SPECS = tuple(EngineSpec(name, f"unix:///run/{name}.sock") for name in ("a", "b", "c"))


def key(n: int) -> ConversationKey:
    return ConversationKey(team_id="T1", channel_id="C1", thread_ts=f"1700000000.{n:06d}")


def engines(
    up: set[str],
    *,
    served: tuple[str, ...] = (),
    specs: tuple[EngineSpec, ...] = SPECS,
    client: fakeredis.FakeRedis | None = None,
) -> DockerEngines:
    """`up` engines reported by their workers (served ones answer their ping instead)."""
    client = client or fakeredis.FakeRedis()
    never_run = LocalExecutor(Path("/nonexistent"), timeout=1, output_limit=1, artifact_limit=1)
    executors = dict.fromkeys(served, never_run)  # only which engines are served here matters
    found = DockerEngines(specs, executors, client, ping=lambda name: name in up)
    for name in up - set(served):
        found.report(name, up=True)
    return found


def test_preference_is_a_stable_rotation_per_conversation() -> None:
    names = ["a", "b", "c"]
    firsts = {preference(key(n).slug, names)[0] for n in range(30)}
    assert firsts == {"a", "b", "c"}  # thirty conversations land on all three engines
    for n in range(5):
        order = preference(key(n).slug, names)
        assert sorted(order) == names and order == preference(key(n).slug, names)
    assert preference("x", []) == []


@pytest.mark.parametrize(
    ("up", "avoid", "chosen"),
    [
        ({"a", "b", "c"}, (), None),
        ({"b"}, (), "b"),
        ({"a", "b"}, ("a",), "b"),
        (set(), (), ""),
        ({"a"}, ("a",), "a"),
        ({"a", "b"}, ("a", "b", "c"), None),
    ],
    ids=[
        "any",
        "the_one_up",
        "not_one_left_behind",
        "none_up",
        "left_behind_but_alone_up",
        "all_left_behind",
    ],
)
def test_a_new_workspace_goes_to_an_engine_that_is_up(
    up: set[str], avoid: tuple[str, ...], chosen: str | None
) -> None:
    for n in range(10):
        found = engines(up).choose(key(n), avoid) or ""
        assert found == chosen if chosen is not None else found in up


def test_an_engine_served_here_is_asked_directly_and_others_by_their_workers_reports() -> None:
    client = fakeredis.FakeRedis()
    found = engines({"a"}, served=("a", "b"), client=client)
    assert found.is_up("a") and not found.is_up("b") and not found.is_up("c")
    found.report("c", up=True)
    assert found.is_up("c")
    assert 0 < int(client.ttl("agentbot:engine-up:c")) <= UP_SECONDS  # a report expires
    found.report("c", up=False)
    assert not found.is_up("c")
    assert found.served == ("a", "b") and found.executor("c") is None


def test_with_one_engine_there_is_nothing_to_choose_and_nothing_to_ask() -> None:
    one = engines(set(), specs=(EngineSpec("default"),))
    assert one.choose(key(1)) == "default"
    assert one.choose(key(1), avoid=("default",)) == "default"
