"""The Redis keys KEDA scales workers on (deploy/kubernetes/keda.yaml) are the ones rq really writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from agentbot.conversation.state import ConversationKey
from agentbot.queue import QUEUE_NAME, RQJobQueue

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
