"""Faults, end to end: each ends with the conversation usable, nothing lost and nothing done twice.

Workers SIGKILLed mid-step (the forked step alone, and the whole worker), Redis restarted between steps
(AOF on), Slack answering 429 and 500 for a while, the model answering 500, timing out or returning
garbage, and the Docker engine going away and coming back.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.e2e.conftest import MakeStack
from tests.e2e.docker_proxy import DockerSocketProxy, engine_socket
from tests.e2e.harness import Stack
from tests.e2e.story import TASK, UNSCRIPTED, script

# A dead worker's step is offered again when its lease (15 s) ran out and a live worker swept (every
# 5 s): about 20 s. The bound is generous: this is not a timed benchmark.
RECOVERY_WAIT = 60
pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(240)]

OK = ":white_check_mark: exitcode: 0 (execution succeeded)"
HELLO = "Hello! How can I help? TERMINATE"
AGAIN = "Sorry about that. Here I am again. TERMINATE"
# Short model limits so the faults show within seconds: 2 attempts of 3 s at most.
FAST_LLM = {"AGENTBOT_LLM_TIMEOUT": "3", "AGENTBOT_LLM_MAX_RETRIES": "1"}

# A run that records itself in the workspace, then (only the first time) sleeps long enough to be
# killed: a second run prints "runs so far: 2"; a run repeated behind our back would make it 3.
COUNTED_CODE = """\
import time
with open("runs.txt", "a+") as f:
    f.seek(0)
    n = len(f.read().splitlines()) + 1
    f.write("run\\n")
print(f"runs so far: {n}", flush=True)
if n == 1:
    time.sleep(40)
"""
COUNTED_REPLY = f"Let me count the runs.\n\n```python\n{COUNTED_CODE}```"
COUNTED_RULES = [{"match": "runs so far", "reply": "Counted. TERMINATE"}]
SLOW = {"delay": 60, "then": "too late: this answer must never be shown"}


def agent_texts(bot: Stack, root: str, prefix: str = "assistant: ") -> list[str]:
    return [t.removeprefix(prefix) for t in bot.texts(root) if t.startswith(prefix)]


def notices(bot: Stack, root: str) -> list[str]:
    return [t for t in bot.texts(root) if t.startswith((":x:", ":warning:"))]


def wait_for_llm_calls(bot: Stack, count: int) -> None:
    bot.wait_until(lambda: len(bot.llm_requests()) >= count, timeout=30, what=f"{count} LLM request(s)")


def wait_for_run_to_start(bot: Stack, root: str) -> None:
    """The sandbox is executing the counted code: it has written runs.txt in the workspace."""
    bot.wait_until(lambda: runs_recorded(bot, root), timeout=30, what="the run to start")


def runs_recorded(bot: Stack, root: str) -> bool:
    slug = bot.key(root).slug
    if bot.executor != "docker":
        return any((bot.workdir / "workspaces").glob(f"**/{slug}*/runs.txt"))
    import docker

    from agentbot.sandbox.docker import CODE_USER, WORKSPACE_DIR, WORKSPACE_LABEL

    client = docker.from_env()
    try:
        by_label = client.containers.list(filters={"label": f"{WORKSPACE_LABEL}={slug}"})
        by_name = client.containers.list(filters={"name": f"agentbot-sbx-{slug}"})  # a claimed pool one
        for container in {c.id: c for c in [*by_label, *by_name]}.values():
            try:
                code, out = container.exec_run(["cat", f"{WORKSPACE_DIR}/runs.txt"], user=CODE_USER)
            except docker.errors.APIError:  # it stopped since it was listed (409): not this run's container
                continue
            if code == 0 and b"run" in out:
                return True
    finally:
        client.close()
    return False


def recover_whole_worker(bot: Stack) -> float:
    """After a whole worker was killed: start a new one; returns seconds until it is registered."""
    began = time.monotonic()
    bot.wait_for_worker(bot.start_worker())
    return time.monotonic() - began


# ---------------------------------------------------------------- workers killed


@pytest.mark.parametrize("what", ["work_horse", "whole_worker"])
def test_worker_killed_during_an_llm_call_answers_once(make_stack: MakeStack, what: str) -> None:
    bot = make_stack(script(SLOW))
    root = bot.mention("hello", user="UANA")
    wait_for_llm_calls(bot, 1)  # the step is inside the model call, which hangs
    killed_at = time.monotonic()
    if what == "work_horse":
        bot.kill_work_horse()  # the worker sees its horse die and retries the step
    else:
        bot.kill_worker(bot.worker())
        recover_whole_worker(bot)
    bot.wait_for_text(root, HELLO, timeout=RECOVERY_WAIT)
    recovery = time.monotonic() - killed_at
    print(f"\n{what} killed during an LLM call: answered {recovery:.1f} s later")

    assert agent_texts(bot, root) == [HELLO]
    assert len(bot.llm_requests()) == 2  # the interrupted call, and the retry
    bot.reply(root, "try again", user="UANA")  # and the conversation goes on
    bot.wait_for_text(root, AGAIN)
    bot.assert_nothing_twice(root)


@pytest.mark.parametrize("what", ["work_horse", "whole_worker"])
def test_worker_killed_during_an_approved_run_never_runs_it_twice(make_stack: MakeStack, what: str) -> None:
    bot = make_stack(script(COUNTED_REPLY, rules=COUNTED_RULES), env={"AGENTBOT_SANDBOX_TIMEOUT": "30"})
    root = bot.mention("count the runs", user="UANA")
    card = bot.wait_for_card(root)
    bot.click(card, "run_code", user="UANA", thread_ts=root)
    wait_for_run_to_start(bot, root)
    killed_at = time.monotonic()
    if what == "work_horse":
        bot.kill_work_horse()
    else:
        bot.kill_worker(bot.worker())
        recover_whole_worker(bot)

    bot.wait_for_text(root, "was interrupted", timeout=RECOVERY_WAIT)
    fresh = bot.wait_for_card(root)
    recovery = time.monotonic() - killed_at
    print(f"\n{what} killed during a run: fresh card {recovery:.1f} s later")
    assert fresh["ts"] != card["ts"]
    assert not any(t.startswith(":white_check_mark: exitcode") for t in bot.texts(root))  # not re-run
    assert len(bot.llm_requests()) == 1

    bot.click(fresh, "run_code", user="UANA", thread_ts=root)  # a person decides to run it again
    bot.wait_for_text(root, "Counted. TERMINATE")
    (result,) = [m for m in bot.thread(root) if m.get("text") == OK]
    assert "runs so far: 2" in json.dumps(result["blocks"])  # the killed run, then this one: no other
    bot.assert_nothing_twice(root)


def test_a_dead_worker_machines_run_is_offered_again_by_a_live_worker(make_stack: MakeStack) -> None:
    """Two workers; the one running an approved run dies with its machine (worker, horse, scheduler).

    The other one, sweeping expired leases, offers the step again: the run is reported interrupted and
    a fresh card offered (never re-run behind people's backs), in about 20 s rather than rq's ~2 min.
    """
    bot = make_stack(
        script(COUNTED_REPLY, rules=COUNTED_RULES), workers=2, env={"AGENTBOT_SANDBOX_TIMEOUT": "30"}
    )
    root = bot.mention("count the runs", user="UANA")
    card = bot.wait_for_card(root)
    bot.click(card, "run_code", user="UANA", thread_ts=root)
    wait_for_run_to_start(bot, root)
    dead = bot.busy_worker()
    bot.kill_worker(dead)
    killed_at = time.monotonic()

    bot.wait_for_text(root, "was interrupted", timeout=RECOVERY_WAIT)
    offered = time.monotonic() - killed_at
    fresh = bot.wait_for_card(root)
    print(f"\nworker machine died during a run: offered again {offered:.1f} s later (fresh card after "
          f"{time.monotonic() - killed_at:.1f} s), by the live worker")  # fmt: skip
    assert offered < RECOVERY_WAIT
    assert fresh["ts"] != card["ts"]
    assert not any(t.startswith(":white_check_mark: exitcode") for t in bot.texts(root))  # not re-run
    assert len(bot.llm_requests()) == 1

    bot.click(fresh, "run_code", user="UANA", thread_ts=root)
    bot.wait_for_text(root, "Counted. TERMINATE")
    (result,) = [m for m in bot.thread(root) if m.get("text") == OK]
    assert "runs so far: 2" in json.dumps(result["blocks"])
    bot.assert_nothing_twice(root)


# ---------------------------------------------------------------- Redis restarted


def test_redis_restarted_between_steps_keeps_the_conversation(make_stack: MakeStack) -> None:
    bot = make_stack(script())
    root = bot.mention(TASK, user="UANA")
    card = bot.wait_for_card(root)
    bot.wait_until(lambda: bot.settled(root), timeout=30, what="the conversation to wait for a click")

    bot.restart_redis()  # SIGTERM: Redis writes its AOF; the same port and directory after
    bot.wait_until(bot._web_healthy, timeout=30, what="web healthy again")
    assert bot.click(card, "run_code", user="UANA", thread_ts=root) == 200  # checked against the state

    bot.wait_for_text(root, "prices YTD (sample data). TERMINATE", timeout=60)
    assert bot.texts(root).count(OK) == 1
    assert len(bot.uploads(root)) == 1
    bot.reply(root, "hello again", user="UBOB")
    bot.wait_for_text(root, HELLO)
    state = bot.state(root)
    assert state is not None
    humans = [m.content for m in state.transcript if m.kind == "human"]
    assert humans[0].endswith(TASK) and humans[-1].endswith("hello again")
    bot.assert_nothing_twice(root)


# ---------------------------------------------------------------- Slack failing for a while


def test_slack_429_and_500_for_a_while_then_everything_once(make_stack: MakeStack) -> None:
    bot = make_stack(script())
    bot.fail_slack("chat.postMessage", status=429, times=2, retry_after=1)
    bot.fail_slack("chat.postMessage", status=500, times=2)
    bot.fail_slack("files.completeUploadExternal", status=500, times=3)
    bot.fail_slack("assistant.threads.setStatus", status=500, times=5)
    started = time.monotonic()
    root = bot.mention(TASK, user="UANA")
    card = bot.wait_for_card(root, timeout=90)
    first = time.monotonic() - started
    bot.click(card, "run_code", user="UANA", thread_ts=root)
    bot.wait_for_text(root, "prices YTD (sample data). TERMINATE", timeout=90)
    print(f"\nSlack 429x2 + 500x2 on postMessage: card after {first:.1f} s; story done after "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip

    (chart,) = bot.uploads(root)
    assert chart["content"].startswith(b"\x89PNG")
    assert bot.texts(root).count(OK) == 1
    assert len(bot.llm_requests()) == 2
    assert len([c for c in bot.calls("chat.postMessage") if c["args"].get("thread_ts") == root]) >= 5
    bot.assert_nothing_twice(root)


def test_chart_shared_but_its_answer_lost_is_not_shared_again(make_stack: MakeStack) -> None:
    bot = make_stack(script())
    bot.fail_slack("files.completeUploadExternal", status=500, times=1, after=True)
    root = bot.mention(TASK, user="UANA")
    bot.click(bot.wait_for_card(root), "run_code", user="UANA", thread_ts=root)
    bot.wait_for_text(root, "prices YTD (sample data). TERMINATE", timeout=90)
    (chart,) = bot.uploads(root)
    assert chart["content"].startswith(b"\x89PNG")
    assert len(bot.calls("files.completeUploadExternal")) == 1  # the step's retry looked, then did not share
    assert bot.texts(root).count(":paperclip: Files from run r1") == 1
    bot.assert_nothing_twice(root)


# ---------------------------------------------------------------- the model failing


LLM_FAULTS: dict[str, list[Any]] = {
    "http_500": [{"status": 500}, {"status": 500}],
    "timeout": [SLOW, SLOW],
    "garbage_not_json": [{"garbage": "<html><body>502 Bad Gateway</body></html>"}],
    "garbage_wrong_shape": [{"garbage": '{"object": "chat.completion", "choices": []}'}],
}


@pytest.mark.parametrize("fault", sorted(LLM_FAULTS))
def test_model_failing_says_so_in_the_thread_and_a_reply_retries(make_stack: MakeStack, fault: str) -> None:
    bot = make_stack(script(*LLM_FAULTS[fault]), env=FAST_LLM)
    root = bot.mention("hello", user="UANA")
    bot.wait_until(lambda: bool(notices(bot, root)), timeout=60, what="a notice about the model")
    (notice,) = notices(bot, root)
    print(f"\nmodel {fault}: {notice}")
    assert "The assistant could not answer" in notice and "Reply in the thread to try again" in notice
    assert agent_texts(bot, root) == []
    bot.wait_until(lambda: bot.settled(root), timeout=30, what="the turn to pass to the humans")
    spent = len(bot.llm_requests())

    bot.reply(root, "try again", user="UANA")
    bot.wait_for_text(root, AGAIN)
    assert agent_texts(bot, root) == [AGAIN]
    assert len(bot.llm_requests()) == spent + 1
    assert not any("too late" in t or UNSCRIPTED in t for t in bot.texts(root))
    bot.assert_nothing_twice(root)


# ---------------------------------------------------------------- the Docker engine away and back


def test_docker_engine_stopped_then_started_again(make_stack: MakeStack, executor: str) -> None:
    """The engine goes away (its socket closes) before a run, and comes back.

    The worker talks to the engine through a socket proxy that this test closes and reopens: from the
    worker's side exactly an engine that stops and starts. Stopping the real `dockerd` here would kill
    the containers of every other test and session sharing this engine, so the suite does not.
    """
    if executor != "docker":
        pytest.skip("needs the Docker executor")
    upstream = engine_socket()
    require(upstream is not None, "a Docker engine on a unix socket")
    assert upstream is not None
    sock = Path(tempfile.mkdtemp(prefix="ab-docker-")) / "docker.sock"
    with DockerSocketProxy(sock, upstream) as engine:
        bot = make_stack(script(), env={"DOCKER_HOST": engine.docker_host})
        root = bot.mention(TASK, user="UANA")
        card = bot.wait_for_card(root)

        engine.stop()
        bot.click(card, "run_code", user="UANA", thread_ts=root)
        bot.wait_until(lambda: bool(notices(bot, root)), timeout=60, what="a notice about the engine")
        (notice,) = notices(bot, root)
        assert "Docker engine `default` that holds this conversation's files is not answering" in notice
        assert "Press *Run* to try again once it is back." in notice  # one engine: nowhere else to go
        retry = bot.wait_for_card(root)
        assert "move_engine" not in json.dumps(retry["blocks"])
        assert retry["ts"] != card["ts"]
        assert bot.uploads(root) == []

        engine.start()
        bot.click(retry, "run_code", user="UANA", thread_ts=root)
        bot.wait_for_text(root, "prices YTD (sample data). TERMINATE")
        assert bot.texts(root).count(OK) == 1
        (chart,) = bot.uploads(root)
        assert chart["content"].startswith(b"\x89PNG")
        bot.assert_nothing_twice(root)
