"""Two real Docker engines, end to end: a conversation lives on one, and when that engine dies the thread
says so, and a person's click moves it on to the other in a new, empty workspace.

Engine `one` is this machine's engine; engine `two` is a second dockerd (`tests.sandbox.engines`), with
its own socket, data root, exec root and network namespace. Each has a worker of its own
(`AGENTBOT_WORKER_ENGINES`). The model's code counts its runs in a file of the workspace, so the output
shows which workspace a run had.
"""

from __future__ import annotations

import os

import pytest

from tests.e2e.conftest import MakeStack
from tests.e2e.harness import Process, Stack
from tests.e2e.story import script
from tests.sandbox.engines import SecondEngine

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.docker, pytest.mark.timeout(900)]

COUNT_CODE = """\
with open("runs.txt", "a+") as f:
    f.seek(0)
    n = len(f.read().splitlines()) + 1
    f.write("run\\n")
print(f"runs in this workspace: {n}")
"""
COUNT = f"Counting.\n\n```python\n{COUNT_CODE}```"
DONE = "Counted. TERMINATE"


def run_and_wait(bot: Stack, root: str, count: int, *, action: str = "run_code") -> None:
    card = bot.wait_for_card(root)
    assert bot.click(card, action, user="UANA", thread_ts=root) == 200
    bot.wait_for_text(root, DONE, count=count, timeout=120)


def outputs(bot: Stack, root: str) -> list[str]:
    found = []
    for message in bot.thread(root):
        text = str(message.get("blocks") or "")
        found += [
            f"runs in this workspace: {n}" for n in range(1, 4) if f"runs in this workspace: {n}" in text
        ]
    return found


def test_a_conversation_lives_on_its_engine_and_moves_on_when_it_dies(
    make_stack: MakeStack,
    second_engine: SecondEngine,
) -> None:
    second_engine.start()  # a test before may have left it stopped (a no-op when it runs)
    hosts = f"one={os.environ.get('DOCKER_HOST') or 'unix:///var/run/docker.sock'}, two={second_engine.url}"
    bot = make_stack(
        script(COUNT, DONE, COUNT, DONE, COUNT, DONE),
        workers=0,
        env={"AGENTBOT_DOCKER_HOSTS": hosts, "AGENTBOT_SANDBOX_POOL": "0"},
    )
    two = bot.start_worker({"AGENTBOT_WORKER_ENGINES": "two"})  # the only engine up: it gets the workspace
    bot.wait_for_worker(two)

    root = bot.mention("count the runs", user="UANA")
    run_and_wait(bot, root, 1)
    bot.reply(root, "once more", user="UANA")
    run_and_wait(bot, root, 2)
    state = bot.state(root)
    assert state is not None and state.sandbox_engine == "two"
    assert outputs(bot, root) == ["runs in this workspace: 1", "runs in this workspace: 2"]  # kept on two

    one = bot.start_worker({"AGENTBOT_WORKER_ENGINES": "one"})
    bot.wait_for_worker(one)
    second_engine.kill()
    try:
        move_on(bot, root, two)
    finally:
        second_engine.start()  # for the tests after this one


def move_on(bot: Stack, root: str, two: Process) -> None:
    """Engine two is dead: the next run is refused in words, and a click moves the conversation to one."""
    bot.reply(root, "and again", user="UANA")
    card = bot.wait_for_card(root)
    assert bot.click(card, "run_code", user="UANA", thread_ts=root) == 200
    bot.wait_for_text(root, "Docker engine `two` that holds this conversation's files is not answering")
    bot.wait_until(
        lambda: "Docker engine two is not reachable" in two.tail(200),
        timeout=45,
        what="worker two saying its engine is down (its housekeeping looks every 15 s)",
    )

    run_and_wait(bot, root, 3, action="move_engine")
    state = bot.state(root)
    assert state is not None and (state.sandbox_engine, state.engines_left) == ("one", ("two",))
    assert outputs(bot, root)[-1] == "runs in this workspace: 1"  # a new, empty workspace on one
    fed = [m["content"] for m in bot.llm_requests()[-1]["messages"] if m["role"] == "user"]
    assert any("moved to a new, empty one" in str(text) for text in fed)
    assert "moved this conversation off the Docker engine `two`" in " ".join(bot.texts(root))
    bot.assert_nothing_twice(root)
