"""The Redis keys KEDA scales workers on (deploy/kubernetes/keda.yaml) are the ones rq really writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from rq.rate_limit import RateLimitRegistry

from agentbot.conversation.state import ConversationKey
from agentbot.queue import QUEUE_NAME, STEP_FUNCTION, RQJobQueue

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


def keda_trigger() -> dict[str, Any]:
    docs = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/keda.yaml").read_text(encoding="utf-8")))
    (scaled,) = [doc for doc in docs if doc["kind"] == "ScaledObject"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    metadata: dict[str, Any] = trigger["metadata"]
    return metadata


def test_keda_reads_the_list_of_ready_steps_and_not_the_held_ones(redis_client: redis.Redis) -> None:
    list_name = keda_trigger()["listName"]
    queue = RQJobQueue(redis_client)
    assert queue.queue.key == list_name == f"rq:queue:{QUEUE_NAME}"

    first = ConversationKey(team_id="T1", channel_id="C1", thread_ts="1.1")
    other = ConversationKey(team_id="T1", channel_id="C1", thread_ts="2.2")
    queue.enqueue_step(first)
    queue.enqueue_step(first)  # held back until the first step of this conversation is done
    queue.enqueue_step(other)

    assert redis_client.type(list_name) == b"list"  # KEDA's redis scaler takes LLEN of a list
    assert redis_client.llen(list_name) == 2
    held = f"rq:rl:conv-{first.slug}:rate_limited"
    assert redis_client.type(held) == b"zset" and redis_client.zcard(held) == 1
    assert "rq:rl:conv-<id>:rate_limited" in (ROOT / "deploy/kubernetes/keda.yaml").read_text()


def test_a_step_written_by_our_script_is_the_job_rq_writes(redis_client: redis.Redis) -> None:
    """`ENQUEUE_STEP_LUA` writes the keys and job fields rq's own rate-limited enqueue does."""
    ours = RQJobQueue(redis_client, queue_name="keys-ours")
    theirs = RQJobQueue(redis_client, queue_name="keys-theirs")

    def conversations(team: str) -> list[ConversationKey]:
        first = ConversationKey(team_id=team, channel_id="C1", thread_ts="1.1")
        held = ConversationKey(team_id=team, channel_id="C2", thread_ts="1.1")
        return [first, held, held]  # the held one's second step waits for its first: the limit

    for conversation in conversations("T1"):
        ours.enqueue_step(conversation)
    for conversation in conversations("T2"):  # the same jobs, through rq's own code
        writes = theirs.step_writes(conversation)
        job = theirs.queue.create_job(
            STEP_FUNCTION, args=(conversation.model_dump(),), job_id=str(writes.args[6]),
            timeout=900, **theirs._options(conversation),
        )  # fmt: skip
        theirs.queue.enqueue_job(job)

    def shape(queue: RQJobQueue) -> dict[str, Any]:
        jobs = [redis_client.hgetall(f"rq:job:{job_id}") for job_id in [*queue.queue.job_ids]]
        return {
            "queued": len(queue.queue.job_ids),
            "fields": [sorted(job) for job in jobs],
            "statuses": [job[b"status"] for job in jobs],
            "func": {job[b"data"][:40] for job in jobs},
        }

    assert shape(ours) == shape(theirs)
    assert shape(ours)["queued"] == 2
    for team in ("T1", "T2"):
        held = conversations(team)[1]
        limit = RateLimitRegistry(f"conv-{held.slug}", redis_client)
        assert limit.get_rate_limited_job_count() == 1 and limit.get_allowed_job_count() == 1
        assert redis_client.hget(limit.config_key, "concurrency") == b"1"
        assert f"conv-{held.slug}".encode() in redis_client.smembers(RateLimitRegistry.rl_keys_key)
    assert {b"rq:queue:keys-ours", b"rq:queue:keys-theirs"} <= redis_client.smembers("rq:queues")
