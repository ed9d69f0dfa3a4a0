"""A step's lease on a real Redis: a live worker's step is left alone, a dead one's is offered once."""

from __future__ import annotations

import time
import uuid
from typing import cast

import redis
from rq.job import JobStatus
from rq.registry import StartedJobRegistry

from agentbot.conversation.state import ConversationKey
from agentbot.queue import RQJobQueue
from agentbot.workers import LEASE_TTL, LeasedWorker

KEY = ConversationKey(team_id="T1", channel_id="C1", thread_ts="1700000000.000100")


def taken_by_a_worker(client: redis.Redis, queue: RQJobQueue) -> tuple[LeasedWorker, str]:
    """A worker took the step from the queue and started it (as rq's worker and its horse do)."""
    queue.enqueue_step(KEY)
    taker = LeasedWorker([queue.queue], connection=client, name=f"taker-{uuid.uuid4().hex[:6]}")
    job, _ = queue.queue.dequeue_any([queue.queue], timeout=None, connection=client)  # type: ignore[misc]
    taker.prepare_execution(job)
    job.set_status(JobStatus.STARTED)
    return taker, job.id


def lease(client: redis.Redis, key: str) -> list[tuple[str, float]]:
    """The started registry's entries: (job id:execution id, when its lease runs out)."""
    entries = cast(list[tuple[bytes, float]], client.zrange(key, 0, -1, withscores=True))
    return [(member.decode(), score) for member, score in entries]


def test_a_renewed_lease_keeps_the_step_and_an_expired_one_offers_it_again_once(
    redis_client: redis.Redis,
) -> None:
    queue = RQJobQueue(redis_client, queue_name=f"test-lease-{uuid.uuid4().hex[:6]}")
    _, job_id = taken_by_a_worker(redis_client, queue)
    started = StartedJobRegistry(queue=queue.queue)
    ((member, expiry),) = lease(redis_client, started.key)
    assert expiry <= time.time() + LEASE_TTL + 1  # a short lease, not rq's 60 s and more

    sweepers = [LeasedWorker([queue.queue], connection=redis_client) for _ in range(2)]
    assert sweepers[0].sweep() == 0  # its worker is alive: the lease holds
    assert queue.queue.job_ids == []

    redis_client.zadd(started.key, {member: time.time() - 1})  # LEASE_TTL s without a renewal
    assert [sweeper.sweep() for sweeper in sweepers] == [1, 0]
    assert queue.queue.job_ids == [job_id]  # offered again, once, at once (the first retry waits 0 s)
    job = queue.queue.fetch_job(job_id)
    assert job is not None and job.get_status() is JobStatus.QUEUED


def test_a_sweep_waits_while_another_holds_the_queue_lock(redis_client: redis.Redis) -> None:
    queue = RQJobQueue(redis_client, queue_name=f"test-lease-{uuid.uuid4().hex[:6]}")
    _, job_id = taken_by_a_worker(redis_client, queue)
    started = StartedJobRegistry(queue=queue.queue)
    ((member, _),) = lease(redis_client, started.key)
    redis_client.zadd(started.key, {member: time.time() - 1})
    assert queue.queue.acquire_maintenance_lock()  # rq's own registry cleaning, in another worker

    assert LeasedWorker([queue.queue], connection=redis_client).sweep() == 0
    queue.queue.release_maintenance_lock()  # type: ignore[no-untyped-call]  # rq: no hints
    assert LeasedWorker([queue.queue], connection=redis_client).sweep() == 1
    assert queue.queue.job_ids == [job_id]
